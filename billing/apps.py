import threading

from django.apps import AppConfig
from django.conf import settings


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        # Compile the SDK's webhook-payload loader in the background at start-up, not on the first webhook.
        if settings.POLAR_WEBHOOK_SECRET and settings.POLAR_WARM_UP:
            from billing.polar_client import warm_up

            threading.Thread(target=warm_up, name="polar-warm-up", daemon=True).start()
