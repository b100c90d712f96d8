"""A business's post-call settings: the notification email switch and the webhook endpoint (URL and secret)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.models import Business


@transaction.atomic
def notification_settings_save(*, business: Business, email_mode: str, webhook_url: str,
                               rotate_secret: bool = False) -> tuple[Any, str]:
    """Save the email switch and the webhook URL. Returns (endpoint or None, the new secret if one was made)."""
    from calls.models import NotificationSettings, WebhookEndpoint
    from calls.postcall.webhooks import webhook_secret_new

    NotificationSettings.objects.update_or_create(business=business, defaults={"email_mode": email_mode})
    endpoint = WebhookEndpoint.objects.select_for_update().filter(business=business).first()
    if not webhook_url:
        if endpoint is not None and endpoint.is_active:
            endpoint.is_active = False
            endpoint.save(update_fields=["is_active", "updated_at"])
        return endpoint, ""
    if endpoint is None:
        secret = webhook_secret_new()
        endpoint = WebhookEndpoint.objects.create(business=business, url=webhook_url, secret=secret)
        return endpoint, secret
    secret = webhook_secret_new() if rotate_secret or not endpoint.secret else ""
    endpoint.url, endpoint.is_active = webhook_url, True
    if secret:
        endpoint.secret = secret
    endpoint.save()
    return endpoint, secret
