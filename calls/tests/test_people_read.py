"""What a person hears and reads about a call: times in the business's time zone and language, a timeline in
words with the raw payloads behind a disclosure, in the order things happened, and one name for one caller."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.urls import reverse

from accounts import services as account_services
from calls.models import Call, CallEvent, CallNotification, TranscriptEntry
from calls.postcall.notifications import call_notification_send
from calls.postcall.webhooks import call_completed_payload
from calls.selectors import local_time
from calls.selectors.timeline import call_timeline
from calls.tools import run_business_tool
from tests.factories import (make_appointment, make_business, make_call, make_customer, make_event, make_hours,
                             make_message, make_service, make_transcript, make_user)
from voice.transports import page_message

UTC = dt.timezone.utc
SLOTS = [f"2026-12-08T{h:02d}:{m:02d}" for h in range(9, 16) for m in (0, 15, 30, 45)]  # 28 slots, 9:00–15:45


def business_in(language: str = "en", time_zone: str = "America/Los_Angeles", **fields):
    return make_business(name="Harbor Dental", language=language, time_zone=time_zone, **fields)


# --- times as people say them -----------------------------------------------------------------------------

@pytest.mark.parametrize("language,said", [
    ("en", "Monday 7 December at 8 am"),
    ("fr", "lundi 7 décembre à 8 h"),
    ("de", "Montag, 7. Dezember um 8 Uhr"),
    ("es", "lunes 7 de diciembre a las 8:00"),
])
def test_a_time_is_said_in_the_business_time_zone_and_language(db, language, said):
    business = business_in(language)
    assert local_time.say_local(dt.datetime(2026, 12, 7, 16, 0, tzinfo=UTC), business) == said


def test_minutes_noon_and_the_afternoon_are_said_as_people_say_them():
    assert [local_time.say_wall(dt.time(*t)) for t in ((8, 30), (12, 0), (15, 45), (0, 0))] == [
        "8:30 am", "noon", "3:45 pm", "midnight"]


def test_check_availability_says_its_day_and_free_times_beside_the_iso_ones(db):
    business = business_in("fr")
    make_hours(business, weekday=0, opens="09:00", closes="10:00")
    make_service(business, "Nettoyage", minutes=30)
    result = run_business_tool(business_id=business.id, call_id=None, name="check_availability",
                               arguments={"date": "2030-01-07", "service": "Nettoyage"})
    assert result["slots"][:2] == ["2030-01-07T09:00", "2030-01-07T09:15"]  # what book_appointment takes
    assert result["date_spoken"] == "lundi 7 janvier"
    assert result["slots_spoken"][:2] == ["9 h", "9 h 15"]


def test_a_booking_and_a_taken_slots_alternatives_are_said_for_the_caller(db):
    business = business_in()
    make_hours(business, weekday=0)
    make_service(business, "Cleaning", minutes=30)
    first, second = make_call(business, from_number="+14155550123"), make_call(business, from_number="+14155550124")
    book = {"name": "Alex Morgan", "service": "Cleaning", "start": "2030-01-07T09:00"}
    booked = run_business_tool(business_id=business.id, call_id=first.id, name="book_appointment", arguments=book)
    assert (booked["start"], booked["start_spoken"]) == ("2030-01-07T09:00", "Monday 7 January at 9 am")

    taken = run_business_tool(business_id=business.id, call_id=second.id, name="book_appointment", arguments=book)
    assert taken["alternatives"] and len(taken["alternatives_spoken"]) == len(taken["alternatives"])
    said = taken["alternatives_spoken"][0]
    assert said.startswith("Monday 7 January at ") and said in taken["error"]
    assert not any(iso in taken["error"] for iso in taken["alternatives"])  # passed back, never said


def test_the_supervisor_is_told_to_say_the_spoken_times(db):
    from voice.supervisor import supervisor_system_prompt

    prompt = supervisor_system_prompt(business_in(), "")
    assert "_spoken" in prompt and "never say them" in prompt


# --- the timeline in words --------------------------------------------------------------------------------

def availability_call(business) -> Call:
    call = make_call(business, channel=Call.Channel.BROWSER, from_number="owner@demo.example",
                     caller_name="Alex Morgan", status=Call.Status.COMPLETED)
    make_transcript(call, [("agent", "Thanks for calling Harbor Dental.", 0),
                           ("caller", "I'd like a cleaning, please.", 3000)])
    make_event(call, "tool_call", 6000, name="ask_supervisor", arguments={"request": "First free cleaning"},
               result="sent to the supervisor")
    make_event(call, "supervisor", 6100, step="request", request="First free cleaning")
    make_event(call, "supervisor", 6900, step="model", model="gpt-4.1", duration_ms=800, prompt_tokens=900,
               completion_tokens=20, finish_reason="tool_calls")
    make_event(call, "supervisor", 7000, step="tool", name="check_availability",
               arguments={"date": "2026-12-08", "service": "Cleaning"},
               result={"date": "2026-12-08", "weekday": "Tuesday", "service": "Cleaning", "slots": SLOTS})
    make_event(call, "supervisor", 7500, step="tool", name="book_appointment",
               arguments={"name": "Alex Morgan", "service": "Cleaning", "start": "2026-12-07T08:00"},
               result={"appointment_id": 5, "service": "Cleaning", "start": "2026-12-07T08:00",
                       "customer_name": "Alex Morgan"})
    # The caller's goodbye was said at 20 s, but its transcription (and so its order) came after the agent's
    # end_call at 21 s: the transcript's order is not the call's.
    TranscriptEntry.objects.create(call=call, order=4, speaker="caller", text="No, that's all. Bye!",
                                   start_ms=20000, end_ms=21500)
    TranscriptEntry.objects.create(call=call, order=3, speaker="agent", text="Anything else?", start_ms=15000)
    make_event(call, "tool_call", 21000, name="end_call", arguments={"reason": "caller said goodbye"},
               result={"ok": True})
    make_event(call, "hangup", 24000, by="agent", reason="caller said goodbye")
    make_event(call, "hangup", 24010, reason="agent_ended", status="completed")
    return call


def timeline_of(call: Call):
    entries = list(TranscriptEntry.objects.filter(call=call).order_by("order"))
    events = list(CallEvent.objects.filter(call=call).order_by("offset_ms", "order"))
    return call_timeline(entries, events, call.business)[0]


def test_an_availability_result_reads_as_a_sentence_not_a_list_of_slots(db):
    texts = [item.text for item in timeline_of(availability_call(business_in()))]
    assert "Checked availability for Cleaning on Tuesday 8 December: 28 free times, 9 am to 3:45 pm" in texts
    assert "Booked Cleaning for Alex Morgan on Monday 7 December at 8 am" in texts
    assert not any("2026-12-0" in text for text in texts)


def test_the_raw_payloads_stay_in_the_details_with_the_supervisors_bookkeeping_folded_in(db):
    items = timeline_of(availability_call(business_in()))
    checked = next(item for item in items if item.text.startswith("Checked availability"))
    assert [d.get("step") for d in checked.details] == ["request", "model", "tool"]
    assert checked.details[-1]["result"]["slots"] == SLOTS
    assert not any(item.kind == "supervisor" and item.payload.get("step") in ("request", "model") for item in items)


def test_a_supervisor_request_with_no_step_after_it_still_shows(db):
    call = make_call(business_in(), status=Call.Status.COMPLETED)
    make_event(call, "supervisor", 5000, step="request", request="Is Friday free?")
    make_event(call, "hangup", 9000, by="caller", reason="caller_hung_up")
    items = timeline_of(call)
    assert [item.text for item in items] == ["Looked into the request; no answer was recorded", "The caller hung up"]
    assert items[0].details == [{"step": "request", "request": "Is Friday free?"}]


def test_the_agents_and_the_sessions_hang_up_records_make_one_line(db):
    items = timeline_of(availability_call(business_in()))
    ended = [item for item in items if item.kind == "hangup"]
    assert len(ended) == 1
    assert ended[0].text == "The receptionist hung up (caller said goodbye)"
    assert len(ended[0].details) == 2


def test_the_callers_last_words_come_before_the_end_of_the_call_they_led_to(db):
    texts = [item.text for item in timeline_of(availability_call(business_in()))]
    assert texts.index("No, that's all. Bye!") < texts.index(
        "Decided to end the call after saying goodbye (caller said goodbye)")
    assert texts.index("Anything else?") < texts.index("No, that's all. Bye!")


def test_the_call_page_shows_words_and_keeps_json_behind_a_details_disclosure(client, alice, alices_business):
    call = availability_call(alices_business)
    client.force_login(alice)
    html = client.get(reverse("call_detail", kwargs={"call_id": call.id})).content.decode()
    timeline = html[html.index('class="call-timeline"'):html.index("</ol>", html.index('class="call-timeline"'))]
    outside = "".join(part.split("</details>")[-1] for part in timeline.split("<details"))
    assert "28 free times, 9 am to 3:45 pm" in outside
    assert "2026-12-08T09:00" not in outside and "2026-12-08T09:00" in timeline
    assert timeline.count("<summary>details</summary>") >= 3
    assert " · " not in outside  # no separator left hanging


def test_the_test_call_page_is_told_when_each_line_happened():
    caller = page_message({"type": "transcript", "speaker": "caller", "text": "Bye!", "order": 9,
                           "start_ms": 20000, "end_ms": 21500, "interrupted": False})
    tool = page_message({"type": "event", "kind": "tool_call", "offset_ms": 21000, "payload": {"name": "end_call"}})
    assert (caller["at_ms"], tool["at_ms"]) == (20000, 21000)


# --- times in emails --------------------------------------------------------------------------------------

def test_the_summary_email_gives_the_calls_local_time_not_the_servers(db, settings):
    settings.TIME_ZONE = "UTC"  # an email renders outside any request: the active zone is the server's
    business = business_in(notification_email="desk@harbor.example")
    # 23:50 UTC is 15:50 in Los Angeles, as the dashboard shows it.
    call = make_call(business, status=Call.Status.COMPLETED, started_at=dt.datetime(2026, 12, 7, 23, 50, tzinfo=UTC),
                     duration_seconds=60, summary="Asked about hours.", outcome="answered")
    CallNotification.objects.create(call=call)
    assert call_notification_send(call_id=call.id) == "sent"
    body = mail.outbox[0].body
    assert "Monday 7 December at 3:50 pm (America/Los_Angeles)" in body
    assert "23:50" not in body


def test_the_invitation_gives_its_expiry_in_the_business_time_zone(db, settings, django_capture_on_commit_callbacks):
    settings.TIME_ZONE = "UTC"
    inviter = make_user("owner@harbor.example")
    business = make_business(owner=inviter, name="Harbor Dental", time_zone="Asia/Tokyo")
    with django_capture_on_commit_callbacks(execute=True):
        invite = account_services.invite_create(business=business, email="dana@example.com", role="staff",
                                                invited_by=inviter)
    local = invite.expires_at.astimezone(business.tzinfo)
    assert f"{local:%H:%M} JST" in mail.outbox[0].body


# --- one name for one caller ------------------------------------------------------------------------------

def test_a_browser_call_is_named_once_in_the_email_subject(db):
    business = business_in(notification_email="desk@harbor.example")
    call = make_call(business, channel=Call.Channel.BROWSER, from_number="owner@demo.example",
                     caller_name="Alex Morgan", status=Call.Status.COMPLETED, outcome="message_taken")
    CallNotification.objects.create(call=call)
    call_notification_send(call_id=call.id)
    subject = mail.outbox[0].subject
    assert "call from Alex Morgan (" in subject and "owner@demo.example" not in subject


def test_a_browser_call_without_a_name_says_who_made_it(db):
    business = business_in(notification_email="desk@harbor.example")
    call = make_call(business, channel=Call.Channel.BROWSER, from_number="owner@demo.example",
                     status=Call.Status.COMPLETED)
    assert call_completed_payload(call)["data"]["caller_display_name"] == "Browser test call (by owner@demo.example)"


def test_the_overview_the_list_and_the_call_page_use_the_customers_name(client, alice, alices_business):
    make_customer(alices_business, phone="+14155550123", name="Dana Scully")
    call = make_call(alices_business, from_number="+14155550123", caller_name="Dana", status=Call.Status.COMPLETED)
    client.force_login(alice)
    pages = [client.get(reverse(name, **kwargs)) for name, kwargs in [
        ("dashboard", {}), ("call_list", {}), ("call_detail", {"kwargs": {"call_id": call.id}})]]
    assert pages[0].context["home"].latest_calls[0].caller_display == "Dana Scully"
    assert pages[1].context["page"].calls[0].caller_display == "Dana Scully"
    assert pages[2].context["detail"].caller_name == "Dana Scully"
    assert pages[2].context["detail"].caller_note == "+1 415-555-0123"


def test_a_customers_page_counts_and_lists_the_calls_linked_to_them(client, alice, alices_business):
    customer = make_customer(alices_business, phone="+14155550123", name="Alex Morgan")
    booked_by = make_call(alices_business, channel=Call.Channel.BROWSER, from_number="alice@example.com",
                          caller_name="Alex Morgan", status=Call.Status.COMPLETED)
    make_appointment(alices_business, dt.datetime(2030, 1, 7, 17, tzinfo=UTC), customer=customer,
                     created_by_call=booked_by)
    left_by = make_call(alices_business, from_number="+14155550999", status=Call.Status.COMPLETED)
    make_message(alices_business, customer=customer, call=left_by)
    make_call(alices_business, from_number="+14155550888")  # someone else's
    client.force_login(alice)
    response = client.get(reverse("customer_detail", kwargs={"customer_id": customer.id}))
    history = response.context["history"]
    assert history.call_count == 2 and {c.id for c in history.calls} == {booked_by.id, left_by.id}
    assert "2 calls" in response.content.decode()
    listed = client.get(reverse("customer_list")).context["page"].object_list
    assert [c.calls for c in listed] == [2]


def test_a_call_linked_to_a_customer_more_than_once_counts_once_on_the_list_and_the_page(client, alice,
                                                                                         alices_business):
    customer = make_customer(alices_business, phone="+14155550123", name="Alex Morgan")
    from_number = make_call(alices_business, from_number="+14155550123", status=Call.Status.COMPLETED)
    other_phone = make_call(alices_business, from_number="+14155550999", status=Call.Status.COMPLETED)
    for call, hour in [(from_number, 17), (other_phone, 18), (other_phone, 19)]:
        make_appointment(alices_business, dt.datetime(2030, 1, 7, hour, tzinfo=UTC), customer=customer,
                         created_by_call=call)
        make_message(alices_business, customer=customer, call=call)
    client.force_login(alice)
    history = client.get(reverse("customer_detail", kwargs={"customer_id": customer.id})).context["history"]
    listed = client.get(reverse("customer_list")).context["page"].object_list
    assert history.call_count == 2 and [c.calls for c in listed] == [2]
