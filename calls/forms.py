from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings

from accounts.models import Business
from calls import analytics
from calls.models import MCP_SERVER_NAME_MAX, MCP_SERVER_NAME_RE, Call, McpServer, NotificationSettings
from calls.postcall.address_guard import BlockedAddress, resolve_guarded_target
from calls.postcall.queueing import TransientError
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


RESERVED_HEADERS = frozenset({"host", "content-type", "content-length", "accept", "connection", "transfer-encoding",
                              "mcp-session-id", "mcp-protocol-version", "last-event-id"})


class McpServerForm(forms.Form):
    name = forms.CharField(
        label="Name", max_length=MCP_SERVER_NAME_MAX,
        help_text="Short, lower-case letters, digits and single underscores (e.g. orders). The assistant sees "
                  "each tool as name__tool.")
    url = forms.URLField(label="Server URL", max_length=500, assume_scheme="https",
                         help_text="The server's Streamable HTTP endpoint, e.g. https://tools.example.com/mcp.")
    auth_kind = forms.ChoiceField(label="Authentication", choices=McpServer.AuthKind.choices,
                                  initial=McpServer.AuthKind.NONE, widget=forms.RadioSelect)
    header_name = forms.CharField(label="Header name", max_length=100, required=False,
                                  help_text="Only for a custom header, e.g. X-Api-Key.")
    secret = forms.CharField(label="Token or header value", required=False, max_length=2000,
                             widget=forms.PasswordInput(render_value=False),
                             help_text="Stored encrypted and never shown again.")

    def __init__(self, *args: Any, business: Business, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.business = business

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not re.match(MCP_SERVER_NAME_RE, name):
            raise forms.ValidationError("Use lower-case letters and digits, words joined by single underscores, "
                                        "starting with a letter.")
        if McpServer.objects.filter(business=self.business, name=name).exists():
            raise forms.ValidationError("You already have a server with this name.")
        return name

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        try:  # checked again on every connection: the name may point elsewhere later
            resolve_guarded_target(url, timeout=5, allowed_hosts=settings.MCP_ALLOWED_HOSTS)
        except BlockedAddress:
            raise forms.ValidationError("This address is private or local: tools can only be reached on public "
                                        "addresses.") from None
        except TransientError:
            raise forms.ValidationError("This server's name could not be resolved.") from None
        # The token travels with every request: in clear only to a server the operator allowed by name.
        if urlsplit(url).scheme != "https" and (urlsplit(url).hostname or "").lower() not in settings.MCP_ALLOWED_HOSTS:
            raise forms.ValidationError("Use an https:// address.")
        return url

    def clean_header_name(self) -> str:
        header = self.cleaned_data["header_name"].strip()
        if header and (not re.match(r"^[A-Za-z0-9-]+$", header) or header.lower() in RESERVED_HEADERS):
            raise forms.ValidationError("Use a header name such as X-Api-Key (letters, digits and dashes).")
        return header

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("auth_kind")
        if kind == McpServer.AuthKind.HEADER and not data.get("header_name"):
            self.add_error("header_name", "Name the header the token goes in.")
        if kind in (McpServer.AuthKind.BEARER, McpServer.AuthKind.HEADER) and not data.get("secret"):
            self.add_error("secret", "Enter the token.")
        return data
