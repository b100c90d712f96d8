"""Reads for accounts."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from accounts.models import Business


@dataclass(frozen=True)
class ChecklistItem:
    label: str
    done: bool
    url: str
    hint: str


def setup_checklist(business: Business) -> list[ChecklistItem]:
    """What a new business still has to do before its receptionist is useful."""
    return [
        ChecklistItem("Get your phone number", bool(business.phone_number), reverse("settings_number"),
                      "Pick a number callers dial; it is set up for your receptionist straight away."),
        ChecklistItem("Set your opening hours", business.opening_hours.exists(), reverse("settings_hours"),
                      "The receptionist tells callers when you are open."),
        ChecklistItem("List your services", business.services.exists(), reverse("settings_services"),
                      "Callers book appointments by service name."),
        ChecklistItem("Answer common questions", business.faq_entries.exists(), reverse("settings_faq"),
                      "Parking, prices, insurance: whatever people ask."),
        ChecklistItem("Add a transfer number", bool(business.transfer_number), reverse("settings_profile"),
                      "So callers who want a person can reach one."),
    ]
