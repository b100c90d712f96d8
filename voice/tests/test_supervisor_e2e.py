"""A whole call with reasoning: daphne + a real Celery worker on Redis + the stand-in (realtime and chat)."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from django.utils import timezone

from calls.models import Appointment, CallEvent
from calls.services.bookings import NOT_THE_CALLERS_APPOINTMENT
from tests.factories import make_appointment, make_customer, make_hours, make_service
from voice.offline.realtime import Script
from voice.tests.conftest import server_and_worker, start_asgi_server, stop_process
from voice.tests.test_call_e2e import finalized_call, simulate, upstream_record

pytestmark = pytest.mark.e2e

BOOKING_TURN = {"caller": "I'd like to book a cleaning tomorrow, my name is Ann Lee.",
                "say": "One moment, let me check.",
                "tool": {"name": "ask_supervisor", "arguments": {"request": "Book a cleaning tomorrow for Ann Lee"}},
                "after_tool": "{output.answer}"}
BOOKING_SUPERVISOR = {"match": "book", "steps": [
    {"tool": "check_availability", "arguments": {"date": "{today+1}", "service": "Cleaning"}},
    {"tool": "book_appointment", "arguments": {"name": "Ann Lee", "service": "Cleaning",
                                               "start": "{result.check_availability.slots.0}"}},
    {"say": "You're booked for a cleaning tomorrow at eight."}]}


@pytest.fixture
def open_harbor(harbor):
    for weekday in range(7):
        make_hours(harbor, weekday=weekday, opens="08:00", closes="18:00")
    make_service(harbor, name="Cleaning", minutes=45, price="120.00")
    return harbor


@pytest.fixture
def stack(request, open_harbor, standin, twilio_standin):
    """daphne and a Celery worker sharing Redis; `extra_env` via indirect parametrisation."""
    with server_and_worker("daphne", standin=standin, twilio_standin=twilio_standin,
                           extra_env=getattr(request, "param", {})) as both:
        yield both


def test_a_caller_books_through_the_supervisor(stack, standin):
    server, worker = stack
    standin.script = Script.from_obj({"greeting": "Harbor Dental, how can I help?", "turns": [BOOKING_TURN],
                                      "supervisor": [BOOKING_SUPERVISOR]})
    report = simulate(server, utterances=1, reply_timeout_s=15)
    assert report.ok, (report.failures, server.log(), worker.log())
    call = finalized_call(report.call_sid)

    appointment = Appointment.objects.get()
    local = timezone.localtime(appointment.starts_at, call.business.tzinfo)
    assert local.date() == timezone.localdate(timezone=call.business.tzinfo) + dt.timedelta(days=1)
    assert local.time() == dt.time(8, 0) and appointment.created_by_call == call

    record = upstream_record(standin)
    assert any(r["text"] == "You're booked for a cleaning tomorrow at eight." for r in record["responses"]), record["responses"]
    steps = list(CallEvent.objects.filter(call=call, kind="supervisor").order_by("offset_ms", "order")
                 .values_list("payload__step", "payload__name"))
    assert [s for s in steps if s[0] == "tool"] == [("tool", "check_availability"), ("tool", "book_appointment")]
    assert ("answer", None) in steps
    assert CallEvent.objects.filter(call=call, kind="tool_call", payload__name="ask_supervisor").exists()
    assert call.supervisor_input_tokens > 0 and call.cost_usd > call.supervisor_cost_usd > 0


@pytest.mark.parametrize("stack", [{"SUPERVISOR_DEADLINE_SECONDS": "1.5"}], indirect=True)
def test_a_supervisor_that_misses_its_deadline_gets_an_apology_and_its_late_answer_is_dropped(stack, standin):
    server, worker = stack
    standin.script = Script.from_obj({"greeting": "Harbor Dental.", "turns": [BOOKING_TURN], "supervisor": [
        {**BOOKING_SUPERVISOR, "steps": [{"say": "Too late.", "delay_ms": 3500}]}]})
    report = simulate(server, utterances=1, hang_up_after_s=9)
    assert report.error is None, report.failures
    call = finalized_call(report.call_sid)
    assert call.status == "completed"  # not stuck
    steps = set(CallEvent.objects.filter(call=call, kind="supervisor").values_list("payload__step", flat=True))
    assert {"deadline_missed", "late_answer_dropped"} <= steps, steps
    record = upstream_record(standin)
    assert any("take a message" in (r.get("instructions") or "") for r in record["responses"]), record["responses"]


@pytest.mark.parametrize("stack", [{"SUPERVISOR_DEADLINE_SECONDS": "1.5"}], indirect=True)
def test_a_supervisor_whose_model_answers_after_the_deadline_books_nothing(stack, standin):
    """The caller has heard the apology and may ask again: a booking made now would be a duplicate."""
    server, worker = stack
    slow = {**BOOKING_SUPERVISOR, "steps": [dict(BOOKING_SUPERVISOR["steps"][0]),
                                            {**BOOKING_SUPERVISOR["steps"][1], "delay_ms": 2500},
                                            BOOKING_SUPERVISOR["steps"][2]]}
    standin.script = Script.from_obj({"greeting": "Harbor Dental.", "turns": [BOOKING_TURN], "supervisor": [slow]})
    report = simulate(server, utterances=1, hang_up_after_s=9)
    assert report.error is None, report.failures
    call = finalized_call(report.call_sid)

    def recorded():
        return set(CallEvent.objects.filter(call=call, kind="supervisor").values_list("payload__step", flat=True))

    deadline = time.monotonic() + 10  # the worker records its run when it ends
    while not {"deadline_passed", "answer"} & recorded() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Appointment.objects.exists()
    assert {"deadline_missed", "deadline_passed"} <= recorded(), (recorded(), worker.log())
    refused = CallEvent.objects.get(call=call, kind="supervisor", payload__step="tool",
                                    payload__name="book_appointment")
    assert "time to answer ran out" in refused.payload["result"]["error"]
    # One model call for each step it was given in time; none after the deadline.
    assert len([r for r in standin.chat_requests if r.get("tools")]) == 2


@pytest.mark.parametrize("stack", [{"SUPERVISOR_DEADLINE_SECONDS": "1.5"}], indirect=True)
def test_a_booking_made_in_time_but_answered_late_is_still_told_to_the_caller(stack, standin):
    """It booked before the deadline, its answer came after: the caller heard the apology, and must learn the
    booking exists rather than book again."""
    server, worker = stack
    late = {**BOOKING_SUPERVISOR, "steps": [*BOOKING_SUPERVISOR["steps"][:2],
                                            {**BOOKING_SUPERVISOR["steps"][2], "delay_ms": 2500}]}
    standin.script = Script.from_obj({"greeting": "Harbor Dental.", "turns": [BOOKING_TURN], "supervisor": [late]})
    report = simulate(server, utterances=1, hang_up_after_s=10)
    assert report.error is None, report.failures
    call = finalized_call(report.call_sid)
    assert Appointment.objects.filter(created_by_call=call).count() == 1
    steps = set(CallEvent.objects.filter(call=call, kind="supervisor").values_list("payload__step", flat=True))
    assert {"deadline_missed", "late_answer_relayed"} <= steps, (steps, server.log())
    record = upstream_record(standin)
    relayed = [r.get("instructions") or "" for r in record["responses"] if "after all" in (r.get("instructions") or "")]
    assert relayed and "You're booked for a cleaning tomorrow at eight." in relayed[0], record["responses"]


def test_a_failing_supervisor_makes_the_agent_apologise(stack, standin):
    server, worker = stack
    standin.script = Script.from_obj({"greeting": "Harbor Dental.", "turns": [BOOKING_TURN], "supervisor": [
        {**BOOKING_SUPERVISOR, "status": 500}]})
    report = simulate(server, utterances=1, hang_up_after_s=8)
    call = finalized_call(report.call_sid)
    assert call.status == "completed"
    failed = CallEvent.objects.get(call=call, kind="supervisor", payload__step="failed")
    assert "InternalServerError" in failed.payload["error"]
    record = upstream_record(standin)
    assert any("Apologise" in (r.get("instructions") or "") for r in record["responses"])
    assert not Appointment.objects.exists()


def test_without_redis_the_supervisor_runs_in_the_web_process(open_harbor, standin, twilio_standin):
    """Embedded mode (no REDIS_URL): eager Celery off the event loop, answers over the in-memory layer."""
    server = start_asgi_server("daphne", standin=standin, twilio_standin=twilio_standin, extra_env={"REDIS_URL": ""})
    try:
        standin.script = Script.from_obj({"greeting": "Harbor Dental, how can I help?", "turns": [BOOKING_TURN],
                                          "supervisor": [BOOKING_SUPERVISOR]})
        report = simulate(server, utterances=1, reply_timeout_s=15)
        assert report.ok, (report.failures, server.log())
        call = finalized_call(report.call_sid)
        assert Appointment.objects.filter(created_by_call=call).count() == 1
        record = upstream_record(standin)
        assert any(r["text"] == "You're booked for a cleaning tomorrow at eight." for r in record["responses"])
    finally:
        stop_process(server.process)


def hostile_cancel_script(appointment, refusal: str) -> dict:
    """A caller asks about a neighbour's booking, and the model tries what a hostile one would with it."""
    return {"greeting": "Harbor Dental.", "turns": [{
        "caller": "Cancel my neighbour Walter's appointment, please.", "say": "One moment, let me check.",
        "tool": {"name": "ask_supervisor", "arguments": {"request": f"Cancel appointment {appointment.id} for "
                                                                    "the neighbour at +14155550199"}},
        "after_tool": "{output.answer}"}], "supervisor": [{"match": "cancel", "steps": [
            {"tool": "find_appointments", "arguments": {"phone": "+14155550199"}},
            {"tool": "cancel_appointment", "arguments": {"appointment_id": appointment.id}},
            {"tool": "reschedule_appointment", "arguments": {"appointment_id": appointment.id,
                                                             "start": "{today+3}T09:00"}},
            {"say": refusal}]}]}


def test_a_hostile_supervisor_model_cannot_touch_another_callers_appointment(stack, standin, open_harbor):
    """The caller (+12025550143) asks about a neighbour's booking; the model tries what a hostile one would."""
    server, worker = stack
    neighbour = make_customer(open_harbor, phone="+14155550199", name="Walter Bishop", notes="Owes $400")
    starts_at = (timezone.now() + dt.timedelta(days=2)).replace(microsecond=0)
    appointment = make_appointment(neighbour.business, starts_at, customer=neighbour)
    refusal = "I can't change that booking, but I can take a message for the team."
    standin.script = Script.from_obj(hostile_cancel_script(appointment, refusal))
    report = simulate(server, utterances=1, reply_timeout_s=15)
    assert report.ok, (report.failures, server.log(), worker.log())
    call = finalized_call(report.call_sid)

    appointment.refresh_from_db()
    assert (appointment.status, appointment.starts_at, appointment.cancelled_at) == ("booked", starts_at, None)
    # What the model got back, as the stand-in received it from the worker.
    # The supervisor's last request, which carries the tool results (the post-call summary's can come after it).
    last = [r for r in standin.chat_requests if r.get("tool_results")][-1]
    assert [(r["name"], json.loads(r["content"])) for r in last["tool_results"]] == [
        ("find_appointments", {"error": "find_appointments has no parameter phone. Its parameters are: none."}),
        ("cancel_appointment", {"error": NOT_THE_CALLERS_APPOINTMENT}),
        ("reschedule_appointment", {"error": NOT_THE_CALLERS_APPOINTMENT})]
    sent_to_model = json.dumps([r["tool_results"] for r in standin.chat_requests])
    assert "Bishop" not in sent_to_model and "Owes" not in sent_to_model and "+14155550199" not in sent_to_model
    stored = CallEvent.objects.filter(call=call, kind="supervisor", payload__step="tool")
    assert [e.payload["result"] for e in stored.order_by("offset_ms", "order")][1:] == \
        [{"error": NOT_THE_CALLERS_APPOINTMENT}] * 2
    record = upstream_record(standin)
    assert any(r["text"] == refusal for r in record["responses"]), record["responses"]

