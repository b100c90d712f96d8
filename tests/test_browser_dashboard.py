"""A business owner reads their dashboard in real headless Chromium: calls, one call, analytics and the rest.

Screenshots of every page land in test-artifacts/ (kept by CI as artifacts).
"""

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.utils import timezone

from calls.models import Call, CallEvent, TranscriptEntry
from calls.services.search_document import call_search_refresh
from tests.browser import ARTIFACTS
from tests.factories import PASSWORD, make_appointment, make_call, make_customer, make_message

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def seed_a_week_of_calls(business) -> "object":
    """A few finished calls over the last days, the newest with a full timeline, a booking and a message."""
    now = timezone.now()
    for days_ago, outcome, seconds in [(6, "message_taken", 95), (4, "answered", 40), (2, "transferred", 130),
                                       (1, "answered", 61)]:
        make_call(business, from_number="+14155550111", status="completed", outcome=outcome,
                  started_at=now - dt.timedelta(days=days_ago, hours=1), duration_seconds=seconds,
                  cost_usd=Decimal("0.0420"), summary="Asked about opening hours.", finalized_at=now)
    call = make_call(business, from_number="+14155550199", status="completed", outcome="booked",
                     started_at=now - dt.timedelta(minutes=30), ended_at=now - dt.timedelta(minutes=28),
                     duration_seconds=118, cost_usd=Decimal("0.1834"), supervisor_cost_usd=Decimal("0.0031"),
                     summary_cost_usd=Decimal("0.0004"), caller_name="Walter Bishop",
                     summary="Walter booked a cleaning for Tuesday at 10:00.", reason="Wants a cleaning.",
                     action_items=["Send Walter the new-patient form"], finalized_at=now, end_reason="agent_ended")
    lines = [("agent", "Thanks for calling Alice Dental, how can I help?"),
             ("caller", "I would like to book a cleaning on Tuesday morning."),
             ("agent", "Let me check Tuesday for you."),
             ("agent", "You're booked for Tuesday at ten. Anything else?"),
             ("caller", "No, that's all, thanks.")]
    for order, (speaker, text) in enumerate(lines, start=1):
        TranscriptEntry.objects.create(call=call, order=order, speaker=speaker, text=text, start_ms=order * 4000,
                                       end_ms=order * 4000 + 2500)
    CallEvent.objects.create(call=call, order=1, offset_ms=8700, kind="latency", payload={"ms": 640})
    CallEvent.objects.create(call=call, order=2, offset_ms=9000, kind="tool_call", payload={
        "name": "ask_supervisor", "arguments": {"request": "Book a cleaning Tuesday 10:00 for Walter Bishop"},
        "result": "sent to the supervisor"})
    CallEvent.objects.create(call=call, order=3, offset_ms=11800, kind="supervisor", payload={
        "step": "tool", "tool": "book_appointment", "arguments": {"service": "Cleaning"}, "result": {"ok": True}})
    CallEvent.objects.create(call=call, order=4, offset_ms=16700, kind="latency", payload={"ms": 910})
    customer = make_customer(business, phone="+14155550199", name="Walter Bishop")
    make_appointment(business, now + dt.timedelta(days=2), customer=customer, created_by_call=call)
    make_message(business, customer=customer, name="Walter Bishop", callback_number="+14155550199",
                 body="Please send the new-patient form.", call=call)
    for seeded in Call.objects.filter(business=business):
        call_search_refresh(call_id=seeded.id)  # as the product's own writers do after storing words
    return call


def sign_in(page, base_url: str, email: str) -> None:
    page.goto(base_url + "/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(re.compile("/dashboard/"))


def test_an_owner_reads_calls_a_call_and_analytics_in_a_real_browser(page, live_server, alice, alices_business):
    call = seed_a_week_of_calls(alices_business)
    sign_in(page, live_server.url, alice.email)
    page.screenshot(path=str(ARTIFACTS / "dashboard-home.png"), full_page=True)

    page.goto(live_server.url + "/dashboard/calls/")
    rows = page.locator("table tbody tr")
    assert rows.count() == 5
    assert "Walter Bishop" in rows.first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-calls.png"), full_page=True)

    page.fill("input[name=q]", "cleaning")
    page.locator("input[name=q]").press("Enter")
    page.wait_for_url(re.compile(r"q=cleaning"))
    assert page.locator("table tbody tr").count() == 1

    page.get_by_role("link", name=re.compile("Walter Bishop")).first.click()
    page.wait_for_url(re.compile(rf"/dashboard/calls/{call.id}/"))
    body = page.locator("main").inner_text()
    for text in ["I would like to book a cleaning on Tuesday morning.", "Asked the assistant", "Booked Cleaning",
                 "Walter booked a cleaning for Tuesday at 10:00.", "Send Walter the new-patient form"]:
        assert text in body
    # The timeline is in call order: the booking request comes before the confirmation.
    assert body.index("book a cleaning on Tuesday") < body.index("You're booked for Tuesday at ten")
    page.screenshot(path=str(ARTIFACTS / "dashboard-call-detail.png"), full_page=True)

    page.goto(live_server.url + "/dashboard/analytics/")
    charts = page.locator("main svg[role=img]")
    assert charts.count() >= 4
    assert charts.first.bounding_box()["width"] > 200  # drawn, not collapsed
    page.screenshot(path=str(ARTIFACTS / "dashboard-analytics.png"), full_page=True)

    for name in ["appointments", "messages", "customers"]:
        page.goto(f"{live_server.url}/dashboard/{name}/")
        assert "Walter Bishop" in page.locator("main").inner_text()
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def test_another_business_sees_none_of_the_calls_in_a_real_browser(page, live_server, alices_business, charlie):
    seed_a_week_of_calls(alices_business)
    sign_in(page, live_server.url, charlie.email)
    page.goto(live_server.url + "/dashboard/calls/")
    assert "Walter Bishop" not in page.content()
    assert page.locator("table tbody tr").count() == 0


def test_a_member_plays_a_voicemail_on_the_messages_page_in_a_real_browser(page, live_server, alice, alices_business,
                                                                         settings):
    from calls.services.voicemail import call_voicemail_start, voicemail_recorded
    from tests.factories import make_wav
    from voice.offline.twilio import TwilioStandin

    with TwilioStandin(account_sid="AC" + "b" * 32, auth_token="browser-voicemail-token") as twilio:
        settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = twilio.account_sid, twilio.auth_token
        settings.TWILIO_API_BASE_URL = twilio.base_url
        call = make_call(alices_business, from_number="+14155550177", twilio_call_sid="CA" + "5" * 32,
                         status="failed", finalized_at=timezone.now())
        call_voicemail_start(twilio_call_sid=call.twilio_call_sid)
        recording = twilio.add_recording(call.twilio_call_sid, make_wav(2.0), duration=2)
        voicemail_recorded(twilio_call_sid=call.twilio_call_sid, recording_sid=recording,
                           recording_status="completed", duration="2", to_number="", from_number="")
        sign_in(page, live_server.url, alice.email)
        page.goto(live_server.url + "/dashboard/messages/")
        item = page.locator(".message-item", has_text="Voicemail")
        assert "+14155550177" in item.inner_text()
        # The browser fetches the recording from our server (never from Twilio) and decodes it.
        duration = item.locator("audio").evaluate("""audio => new Promise((resolve, reject) => {
            audio.addEventListener('loadedmetadata', () => resolve(audio.duration), {once: true});
            audio.addEventListener('error', () => reject(new Error('audio error ' + audio.error.code)), {once: true});
            audio.load();
        })""")
        assert abs(duration - 2.0) < 0.05
        assert item.locator("audio").get_attribute("src").startswith("/dashboard/messages/")
        page.screenshot(path=str(ARTIFACTS / "dashboard-voicemail.png"), full_page=True)
