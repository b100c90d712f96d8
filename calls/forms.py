from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django import forms
from django.conf import settings

from calls.models import NotificationSettings


class NotificationSettingsForm(forms.Form):
    email_mode = forms.ChoiceField(
        label="Email me about", choices=NotificationSettings.EmailMode.choices, widget=forms.RadioSelect,
        help_text="Sent to the business's notification email after each call.")
    webhook_url = forms.URLField(
        label="Webhook URL", required=False, max_length=500, assume_scheme="https",
        help_text="Optional. We POST a signed call.completed event (Standard Webhooks) here after every call. "
                  "Leave empty to turn the webhook off.")
    rotate_secret = forms.BooleanField(label="Make a new signing secret", required=False,
                                       help_text="The old secret stops working at once.")

    def clean_webhook_url(self) -> str:
        url = self.cleaned_data["webhook_url"].strip()
        if not url:
            return ""
        parts = urlsplit(url)
        if settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
            return url
        if parts.scheme != "https":
            raise forms.ValidationError("Use an https:// address.")
        try:
            literal = ipaddress.ip_address(parts.hostname or "")
        except ValueError:
            literal = None
        if (literal is not None and not literal.is_global) or (parts.hostname or "").lower() == "localhost":
            raise forms.ValidationError("Webhooks can't be sent to private or local addresses.")
        return url
