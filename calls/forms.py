from __future__ import annotations

import datetime as dt
import ipaddress
from urllib.parse import urlsplit

from django import forms
from django.conf import settings

from calls import analytics
from calls.models import Call, NotificationSettings
from calls.outcomes import OUTCOME_LABELS, OUTCOMES
from calls.selectors.search import CallFilters


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


class AnalyticsPeriodForm(forms.Form):
    """The analytics page's period: the last 7/30/90 days, or a custom from–to range of local dates (GET)."""

    PERIOD_CHOICES = [(str(days), f"Last {days} days") for days in analytics.PRESET_DAYS] + [("custom", "Custom")]
    max_days = analytics.MAX_PERIOD_DAYS

    CHANNEL_CHOICES = [("", "All calls"), ("twilio", "Phone calls"), ("browser", "Browser test calls")]

    period = forms.ChoiceField(choices=PERIOD_CHOICES, required=False)
    channel = forms.ChoiceField(choices=CHANNEL_CHOICES, required=False)
    start = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, today: dt.date, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.today = today
        for name in ("start", "end"):
            self.fields[name].widget.attrs["max"] = today.isoformat()

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if not data.get("period"):  # dates alone mean a custom range
            data["period"] = "custom" if (start or end or self.errors) else str(analytics.DEFAULT_PRESET_DAYS)
        if data["period"] != "custom" or self.errors:
            return data
        if start is None:
            self.add_error("start", "Choose the first day.")
        if end is None:
            self.add_error("end", "Choose the last day.")
        if start is None or end is None:
            return data
        if end > self.today:
            self.add_error("end", "Choose a day up to today.")
        elif start > end:
            self.add_error("start", "The first day comes after the last day.")
        elif (end - start).days + 1 > analytics.MAX_PERIOD_DAYS:
            self.add_error(None, f"Choose at most {analytics.MAX_PERIOD_DAYS} days.")
        return data

    def chosen_period(self) -> analytics.Period:
        """The period asked for; call after `is_valid()`."""
        data = self.cleaned_data
        channel = data.get("channel") or ""
        if data["period"] == "custom":
            return analytics.Period(start=data["start"], end=data["end"], channel=channel)
        return analytics.Period.last_days(int(data["period"]), today=self.today, channel=channel)


# --- dashboard: the calls list's filters --------------------------------------------------------------------

class CallFilterForm(forms.Form):
    """The calls list's and CSV export's filters (GET). Dates are the business's local calendar dates."""

    OUTCOME_CHOICES = [("", "Any outcome")] + [(o, OUTCOME_LABELS[o]) for o in OUTCOMES]

    q = forms.CharField(label="Search", required=False, max_length=200,
                        widget=forms.TextInput(attrs={"type": "search",
                                                      "placeholder": "Words said, a name or a number"}))
    date_from = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    outcome = forms.ChoiceField(label="Outcome", required=False, choices=OUTCOME_CHOICES)
    status = forms.ChoiceField(label="Status", required=False,
                               choices=[("", "Any status")] + list(Call.Status.choices))
    channel = forms.ChoiceField(label="Channel", required=False,
                                choices=[("", "Any channel")] + list(Call.Channel.choices))

    def clean(self) -> dict:
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", "The last day comes before the first day.")
        return data

    def filters(self) -> CallFilters:
        """The valid filters (call after `is_valid()`); a field with an error is left out, not guessed."""
        data = getattr(self, "cleaned_data", {})
        return CallFilters(q=data.get("q") or "", date_from=data.get("date_from"), date_to=data.get("date_to"),
                           outcome=data.get("outcome") or "", status=data.get("status") or "",
                           channel=data.get("channel") or "")
