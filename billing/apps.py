import threading

from django.apps import AppConfig
from django.conf import settings


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        # Usage is recorded when a call is finalised, whichever path did it (session, status callback, reaper).
        # `calls` can't import billing (billing depends on calls), so billing subscribes to what calls announces.
        from billing.services.usage import usage_on_call_finalized
        from calls.signals import call_finalized

        call_finalized.connect(usage_on_call_finalized, dispatch_uid="billing.usage_on_call_finalized")
        # Compile the SDK's webhook-payload loader in the background at start-up, not on the first webhook.
        if settings.POLAR_WEBHOOK_SECRET and settings.POLAR_WARM_UP:
            from billing.polar_client import warm_up

            threading.Thread(target=warm_up, name="polar-warm-up", daemon=True).start()
