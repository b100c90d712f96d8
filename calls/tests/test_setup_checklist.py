"""The dashboard's setup checklist says what is true: a number that came through the portal and whose calls
Twilio sends here, opening hours, services, and a call the receptionist answered; each item links to its fix."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from calls.models import TranscriptEntry
from calls.selectors.setup import setup_checklist
from tests.factories import make_business, make_call, make_hours, make_service, make_transcript, make_user

PUBLIC = "https://rx.example.com"
SID = "PN" + "a" * 32


@pytest.fixture(autouse=True)
def public_url(settings):
    settings.PUBLIC_BASE_URL = PUBLIC


def item(business, label_start: str):
    [found] = [i for i in setup_checklist(business) if i.label.startswith(label_start)]
    return found


def numbered(**fields):
    fields.setdefault("phone_number_checked_at", timezone.now())
    return make_business(owner=make_user(), phone_number="+14155550111", phone_number_sid=SID, **fields)


def test_a_fresh_business_has_nothing_ticked(db):
    business = make_business(owner=make_user())
    assert [(i.label, i.done) for i in setup_checklist(business)] == [
        ("Get your phone number", False), ("Set your opening hours", False), ("List your services", False),
        ("Make a test call", False), ("Answer common questions", False), ("Add a transfer number", False)]


def test_each_item_links_to_where_it_is_fixed(db):
    business = make_business(owner=make_user())
    assert [i.url for i in setup_checklist(business)] == [
        reverse("settings_number"), reverse("settings_hours"), reverse("settings_services"), reverse("test_call"),
        reverse("settings_faq"), reverse("settings_profile")]


def test_a_number_typed_in_by_hand_is_not_ticked(db):
    business = make_business(owner=make_user(), phone_number="+14155550111")
    number = item(business, "Connect your phone number")
    assert not number.done and "entered by hand" in number.hint


def test_a_portal_number_whose_calls_twilio_sends_here_is_ticked(db):
    assert item(numbered(phone_number_webhooks_base=PUBLIC), "Connect your phone number").done


def test_a_portal_number_whose_calls_went_elsewhere_when_checked_is_not_ticked(db):
    number = item(numbered(phone_number_webhooks_base=""), "Connect your phone number")
    assert not number.done and "did not send calls to +14155550111 to this server" in number.hint


def test_a_portal_number_that_pointed_at_this_server_before_it_moved_is_not_ticked(db, settings):
    business = numbered(phone_number_webhooks_base="https://old.example.com")
    assert not item(business, "Connect your phone number").done


def test_a_portal_number_never_checked_is_not_ticked(db):
    business = numbered(phone_number_webhooks_base="", phone_number_checked_at=None)
    number = item(business, "Connect your phone number")
    assert not number.done and "has not checked with Twilio yet" in number.hint


def test_hours_and_services_are_ticked_once_set(db):
    business = make_business(owner=make_user())
    make_hours(business, 0)
    make_service(business)
    assert item(business, "Set your opening hours").done and item(business, "List your services").done


def test_a_call_the_receptionist_answered_ticks_the_test_call(db):
    business = make_business(owner=make_user())
    call = make_call(business, channel="browser", from_number="Owner")
    make_transcript(call, [("agent", "Hello, how can I help?", 0)])
    assert item(business, "Make a test call").done


def test_a_call_the_receptionist_never_spoke_on_does_not_tick_the_test_call(db, alices_business):
    business = make_business(owner=make_user())
    make_call(business, status="failed", started_at=timezone.now() - dt.timedelta(minutes=5))  # e.g. refused
    other = make_call(alices_business)  # another business's answered call does not count
    make_transcript(other, [("agent", "Hello!", 0)])
    assert TranscriptEntry.objects.exists()
    assert not item(business, "Make a test call").done


# --- the dashboard says the same ----------------------------------------------------------------------------

def test_the_dashboard_says_a_number_is_connected_only_when_it_reaches_us(client, db):
    business = numbered(phone_number_webhooks_base=PUBLIC)
    client.force_login(business.memberships.get().user)
    page = client.get(reverse("dashboard")).content.decode()
    assert "Your number +14155550111 is connected" in page and "Answering <strong>+14155550111" in page


def test_the_dashboard_does_not_call_a_typed_in_number_connected(client, db):
    owner = make_user()
    make_business(owner=owner, phone_number="+14155550111")
    client.force_login(owner)
    page = client.get(reverse("dashboard")).content.decode()
    assert "is connected" not in page and "Answering" not in page
    assert "is not confirmed to reach your receptionist" in page and "Connect your phone number" in page
