"""The setup checklist on the dashboard: what is true of the business now, each item with where to fix it."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from accounts.models import Business
from calls.models import TranscriptEntry


@dataclass(frozen=True)
class ChecklistItem:
    label: str
    done: bool
    url: str
    hint: str  # what to do, or what is wrong, while the item is not done


def _number_item(business: Business) -> ChecklistItem:
    url = reverse("settings_number")
    if not business.phone_number:
        return ChecklistItem("Get your phone number", False, url,
                             "Pick a number callers dial; it is set up for your receptionist straight away.")
    if business.number_reaches_us:
        return ChecklistItem("Connect your phone number", True, url, "")
    if not business.phone_number_sid:
        hint = (f"{business.phone_number} was entered by hand, so this server can't confirm that its calls reach "
                "your receptionist. Ask the people who run this service to check it.")
    elif business.phone_number_checked_at is None:
        hint = (f"This server has not checked with Twilio yet where calls to {business.phone_number} go. "
                "Check it in Settings → Phone number.")
    else:
        hint = (f"When Twilio was last asked, it did not send calls to {business.phone_number} to this server. "
                "Check it again, or connect it, in Settings → Phone number.")
    return ChecklistItem("Connect your phone number", False, url, hint)


def receptionist_has_answered(business: Business) -> bool:
    """A call (a browser test call or a real one) on which the receptionist spoke."""
    return TranscriptEntry.objects.filter(call__business=business, speaker=TranscriptEntry.Speaker.AGENT).exists()


def setup_checklist(business: Business) -> list[ChecklistItem]:
    """What a new business still has to do before its receptionist is useful, as it stands now."""
    return [
        _number_item(business),
        ChecklistItem("Set your opening hours", business.opening_hours.exists(), reverse("settings_hours"),
                      "The receptionist tells callers when you are open, and books only inside these hours."),
        ChecklistItem("List your services", business.services.exists(), reverse("settings_services"),
                      "Callers book appointments by service name."),
        ChecklistItem("Make a test call", receptionist_has_answered(business), reverse("test_call"),
                      "Talk to your receptionist from the browser and hear what callers hear."),
        ChecklistItem("Answer common questions", business.faq_entries.exists(), reverse("settings_faq"),
                      "Parking, prices, insurance: whatever people ask."),
        ChecklistItem("Add a transfer number", bool(business.transfer_number), reverse("settings_profile"),
                      "So callers who want a person can reach one."),
    ]
