"""Whole calls answered by the GPT-Live engine: uvicorn as the Procfile runs it (and a real Celery worker), the
stand-in speaking GPT-Live at /v1/live/sessions, the Twilio REST stand-in and the call simulator playing Twilio.
The business picks the engine (`Business.voice_engine`), so the same server answers both engines."""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import pytest
from django.utils import timezone

from calls.models import Appointment, Call, CallEvent, TranscriptEntry
from calls.services.bookings import NOT_THE_CALLERS_APPOINTMENT
from tests.factories import make_appointment, make_customer
from voice.offline.realtime import Script
from voice.tests.conftest import BUSINESS_NUMBER, HARBOR_SCRIPT, TRANSFER_NUMBER, server_and_worker, start_asgi_server, stop_process
from voice.tests.test_call_e2e import LONG_REPLY_SCRIPT, finalized_call, simulate, tool_script
from voice.tests.test_supervisor_e2e import (BOOKING_SUPERVISOR, BOOKING_TURN, hostile_cancel_script,  # noqa: F401
                                             open_harbor)

pytestmark = pytest.mark.e2e

BOOKING_SCRIPT = {"greeting": "Harbor Dental, how can I help?", "turns": [BOOKING_TURN],
                  "supervisor": [BOOKING_SUPERVISOR]}


def use_live(business) -> None:
    business.voice_engine = "live"
    business.save(update_fields=["voice_engine"])


def live_record(standin, timeout: float = 8.0, sessions: int = 1) -> list[dict]:
    """The stand-in's GPT-Live sessions (oldest first), once the last one has closed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = sorted((r for r in standin.sessions.values() if r.get("protocol") == "live"),
                         key=lambda r: r["started_at"])
        if len(records) >= sessions and records[-1].get("closed_by"):
            return records
        time.sleep(0.05)
    raise AssertionError(f"the GPT-Live session is still open: {standin.sessions}")


def transcript_of(call: Call) -> list[tuple[str, str]]:
    return list(TranscriptEntry.objects.filter(call=call).order_by("order").values_list("speaker", "text"))


def supervisor_steps(call: Call) -> list[tuple[str, str | None]]:
    return list(CallEvent.objects.filter(call=call, kind="supervisor").order_by("offset_ms", "order")
                .values_list("payload__step", "payload__name"))


@pytest.fixture
def live_harbor(open_harbor):
    use_live(open_harbor)
    return open_harbor


@pytest.fixture
def server(request, live_harbor, standin, twilio_standin):
    """uvicorn alone (no worker: these calls need no post-call work); `extra_env` by indirect parametrisation."""
    live = start_asgi_server("uvicorn", standin=standin, twilio_standin=twilio_standin,
                             extra_env=getattr(request, "param", {}))
    yield live
    stop_process(live.process)


@pytest.fixture
def stack(request, live_harbor, standin, twilio_standin):
    """uvicorn and a Celery worker sharing Redis (the post-call summary); `extra_env` by indirect parametrisation."""
    with server_and_worker("uvicorn", standin=standin, twilio_standin=twilio_standin,
                           extra_env=getattr(request, "param", {})) as both:
        yield both


def test_a_phone_call_is_answered_by_gpt_live_recorded_and_closed_with_its_usage(server, standin):
    standin.script = Script.from_obj(HARBOR_SCRIPT)
    report = simulate(server, utterances=2, send_status_callback=True)
    assert report.ok, (report.failures, server.log())
    assert report.greeting_received_ms is not None
    assert report.marks_echoed == report.marks_sent_by_server > 0

    call = finalized_call(report.call_sid)
    assert (call.status, call.end_reason, call.engine, call.model) == ("completed", "caller_hung_up", "live",
                                                                       "gpt-live-1.1")
    assert transcript_of(call) == [("agent", "Thanks for calling Harbor Dental, how can I help?"),
                                   ("caller", "What are your opening hours?"),
                                   ("agent", "We're open eight to five, Monday to Friday."),
                                   ("caller", "That's all, thank you."),
                                   ("agent", "You're welcome, have a nice day!")]
    assert CallEvent.objects.filter(call=call, kind="latency", payload__engine="live").count() >= 2

    [record] = live_record(standin)
    assert record["session"]["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}
    assert record["closed_reason"] == "close_requested"  # our session.close at hang-up
    # The active seconds GPT-Live reported at session.closed are what the call is billed for.
    assert float(call.voice_seconds) == pytest.approx(record["usage_seconds"], abs=0.011) and call.voice_seconds > 0
    assert float(call.cost_usd) == pytest.approx(record["usage_seconds"] * 0.05 / 60, abs=1e-6)
    closed = CallEvent.objects.get(call=call, kind="status", payload__step="live_session_closed")
    assert closed.payload["reason"] == "close_requested"


def test_a_booking_goes_through_delegation_and_our_tool_layer(stack, standin):
    server, worker = stack
    standin.script = Script.from_obj(BOOKING_SCRIPT)
    report = simulate(server, utterances=1, reply_timeout_s=15)
    assert report.ok, (report.failures, server.log(), worker.log())
    call = finalized_call(report.call_sid)

    appointment = Appointment.objects.get()
    local = timezone.localtime(appointment.starts_at, call.business.tzinfo)
    assert local.date() == timezone.localdate(timezone=call.business.tzinfo) + dt.timedelta(days=1)
    assert local.time() == dt.time(8, 0) and appointment.created_by_call == call
    assert ("agent", "You're booked for a cleaning tomorrow at eight.") in transcript_of(call)

    steps = supervisor_steps(call)
    assert [s for s in steps if s[0] == "tool"] == [("tool", "check_availability"), ("tool", "book_appointment")]
    assert ("delegation", None) in steps and ("answer", None) in steps and ("model", None) in steps
    assert not CallEvent.objects.filter(call=call, kind="tool_call").exists()  # no ask_supervisor on Live
    assert call.supervisor_input_tokens > 0 and call.cost_usd > call.supervisor_cost_usd > 0

    [record] = live_record(standin)
    [delegation] = [d for d in record["delegations"] if d["function_calls"]]
    assert [c["name"] for c in delegation["function_calls"]] == ["check_availability", "book_appointment"]
    assert all(o["known"] for o in delegation["outputs"]) and len(delegation["outputs"]) == 2
    assert delegation["continued"]
    assert not [e for e in record["errors"] if e["code"] == "function_call_outputs_required"]


@pytest.mark.parametrize("server", [{"LIVE_TOOL_PROGRESS_SECONDS": "0"}], indirect=True)
def test_a_tool_slower_than_the_progress_threshold_has_the_agent_say_what_it_is_doing(server, standin):
    standin.script = Script.from_obj(BOOKING_SCRIPT)
    report = simulate(server, utterances=1, reply_timeout_s=15)
    assert report.ok, (report.failures, server.log())
    call = finalized_call(report.call_sid)
    progress = list(CallEvent.objects.filter(call=call, kind="supervisor", payload__step="progress")
                    .values_list("payload__name", "payload__said"))
    assert ("check_availability", "I'm checking the calendar.") in progress
    [record] = live_record(standin)
    commentary = [a["content"] for a in record["appended"] if a["type"] == "commentary"]
    assert "I'm checking the calendar." in commentary  # spoken by the voice model, not sent as a tool result
    assert Appointment.objects.filter(created_by_call=call).count() == 1


def test_a_caller_asking_for_someone_elses_booking_is_refused_by_the_tool_layer(server, standin, live_harbor):
    """The backend model does what a hostile one would; our tools act on the call's own number only."""
    neighbour = make_customer(live_harbor, phone="+14155550199", name="Walter Bishop", notes="Owes $400")
    starts_at = (timezone.now() + dt.timedelta(days=2)).replace(microsecond=0)
    appointment = make_appointment(live_harbor, starts_at, customer=neighbour)
    refusal = "I can't change that booking, but I can take a message for the team."
    standin.script = Script.from_obj(hostile_cancel_script(appointment, refusal))
    report = simulate(server, utterances=1, reply_timeout_s=15)
    assert report.ok, (report.failures, server.log())
    call = finalized_call(report.call_sid)

    appointment.refresh_from_db()
    assert (appointment.status, appointment.starts_at, appointment.cancelled_at) == ("booked", starts_at, None)
    [record] = live_record(standin)
    outputs = [json.loads(o["output"]) for d in record["delegations"] for o in d["outputs"]]
    assert outputs == [{"error": "find_appointments has no parameter phone. Its parameters are: none."},
                       {"error": NOT_THE_CALLERS_APPOINTMENT}, {"error": NOT_THE_CALLERS_APPOINTMENT}]
    assert "Bishop" not in json.dumps(outputs) and "Owes" not in json.dumps(outputs)
    assert ("agent", refusal) in transcript_of(call)


def test_the_backend_ends_the_call_after_the_agents_goodbye(server, standin, twilio_standin):
    standin.script = Script.from_obj(tool_script("end_call", "caller is done", "Goodbye!"))
    call_sid = twilio_standin.add_call(to=BUSINESS_NUMBER, from_="+12025550143")
    report = simulate(server, call_sid=call_sid, utterances=1, hang_up_after_s=15)
    call = finalized_call(call_sid)
    assert (call.status, call.end_reason) == ("completed", "agent_ended"), server.log()
    assert {"Status": "completed"}.items() <= twilio_standin.updates(call_sid)[-1].items()
    assert report.closed_by == "server"
    assert transcript_of(call)[-1] == ("agent", "Goodbye!")  # heard before the hang-up
    tool = CallEvent.objects.get(call=call, kind="supervisor", payload__step="tool")
    assert tool.payload["name"] == "end_call" and tool.payload["result"]["ok"] is True


def test_the_backend_transfers_the_caller_after_the_agent_says_so(server, standin, twilio_standin):
    standin.script = Script.from_obj(tool_script("transfer_to_human", "wants a person", "Connecting you now."))
    call_sid = twilio_standin.add_call(to=BUSINESS_NUMBER, from_="+12025550143")
    simulate(server, call_sid=call_sid, utterances=1, hang_up_after_s=15)
    call = finalized_call(call_sid)
    assert (call.status, call.end_reason) == ("completed", "transferred"), server.log()
    assert f"<Number>{TRANSFER_NUMBER}</Number>" in twilio_standin.updates(call_sid)[-1]["Twiml"]
    assert CallEvent.objects.get(call=call, kind="transfer").payload["ok"] is True
    assert ("agent", "Connecting you now.") in transcript_of(call)


def test_talking_over_the_agent_clears_what_twilio_still_holds_and_is_recorded(server, standin):
    standin.script = Script.from_obj(LONG_REPLY_SCRIPT)
    report = simulate(server, utterances=2, barge_in=True, barge_in_delay_ms=600)
    assert report.ok, (report.failures, server.log())
    assert report.clears_received, "the server never sent clear"
    call = finalized_call(report.call_sid)
    barge_ins = list(CallEvent.objects.filter(call=call, kind="barge_in"))
    assert barge_ins and all(e.payload["engine"] == "live" for e in barge_ins)
    assert all(0 <= e.payload["heard_ms"] <= e.payload["sent_ms"] for e in barge_ins)
    assert sum(e.payload["heard_ms"] for e in barge_ins) <= report.agent_audio_played_ms + 1
    assert TranscriptEntry.objects.filter(call=call, speaker="agent", interrupted=True).exists()
    [record] = live_record(standin)
    assert any(s["interrupted"] for s in record["spoken"]), record["spoken"]  # the model stopped itself


@pytest.mark.parametrize("server", [{"OPENAI_SESSION_RENEW_MARGIN_SECONDS": "6"}], indirect=True)
def test_a_session_about_to_expire_is_renewed_mid_call_with_the_conversation(server, standin):
    standin.script = Script.from_obj({**HARBOR_SCRIPT, "live": {"session_seconds": 9}})
    report = simulate(server, utterances=2, hang_up_after_s=14)
    assert report.ok, (report.failures, server.log())
    call = finalized_call(report.call_sid)
    renewals = list(CallEvent.objects.filter(call=call, kind="reconnect"))  # every 3 s of session, at a quiet moment
    assert renewals and all(e.payload["ok"] and e.payload["renewal"] for e in renewals)
    records = live_record(standin, sessions=len(renewals) + 1)
    assert [r["closed_reason"] for r in records] == ["close_requested"] * len(records)  # none expired on the caller
    history = [item["content"][0]["text"] for item in records[-1]["input"]]
    assert "What are your opening hours?" in history and "do not greet" in history[0]
    assert float(call.voice_seconds) == pytest.approx(sum(r["usage_seconds"] for r in records), abs=0.05)
    assert transcript_of(call)[-1] == ("agent", "You're welcome, have a nice day!")


def test_a_lost_connection_is_replaced_by_a_session_that_knows_the_conversation(server, standin):
    standin.script = Script.from_obj({**HARBOR_SCRIPT, "fail": {"drop_after_ms": 3000, "sessions": 1}})
    report = simulate(server, utterances=2, hang_up_after_s=9)
    assert report.ok, (report.failures, server.log())
    call = finalized_call(report.call_sid)
    assert call.status == "completed"
    reconnect = CallEvent.objects.get(call=call, kind="reconnect")
    assert reconnect.payload["ok"] and not reconnect.payload.get("renewal"), reconnect.payload
    first, second = live_record(standin, sessions=2)[:2]
    assert first["closed_reason"] is None and second["closed_reason"] == "close_requested"
    history = [item["content"][0]["text"] for item in second["input"]]
    assert "Thanks for calling Harbor Dental, how can I help?" in history
    # The lost session never said how long it ran: its time is estimated, and said so on the timeline.
    assert CallEvent.objects.filter(call=call, kind="status", payload__step="live_usage_estimated").exists()
    assert call.voice_seconds > second["usage_seconds"]


@pytest.fixture
def both_engines(open_harbor, standin, twilio_standin):
    """uvicorn and a Celery worker (the Realtime supervisor and every call's summary), for either engine."""
    with server_and_worker("uvicorn", standin=standin, twilio_standin=twilio_standin) as both:
        yield both


def summarized(call: Call, timeout: float = 20.0) -> Call:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        call.refresh_from_db()
        if call.summarized_at is not None:
            return call
        time.sleep(0.1)
    raise AssertionError(f"call {call.id} was not summarised")


def records_of_a_booking_call(server, worker, standin, business, engine: str) -> dict:
    """One booking call on `engine`: what the dashboard shows of it, without what differs by nature (ids, times)."""
    business.voice_engine = engine
    business.save(update_fields=["voice_engine"])
    standin.script = Script.from_obj({"greeting": "Harbor Dental, how can I help?", "turns": [
        BOOKING_TURN, {"caller": "That's all, thanks.", "agent": "You're welcome, goodbye!"}],
        "supervisor": [BOOKING_SUPERVISOR]})
    report = simulate(server, utterances=2, reply_timeout_s=15)
    assert report.ok, (engine, report.failures, server.log(), worker.log())
    call = summarized(finalized_call(report.call_sid))
    appointment = Appointment.objects.select_related("customer", "service").get(created_by_call=call)
    records = {
        # The stand-in's summary quotes when the call was made and how long it lasted: those differ by nature.
        "call": (call.status, call.end_reason, call.outcome,
                 re.sub(r"Call at [0-9-]+ [0-9:]+|lasted [0-9]+ s", "…", call.summary)),
        "transcript": transcript_of(call),
        "appointment": (appointment.service.name, timezone.localtime(appointment.starts_at, business.tzinfo).time(),
                        appointment.customer.name, appointment.customer.phone, appointment.status),
    }
    appointment.delete()  # the next call books the same slot again
    appointment.customer.delete()
    return records


def test_the_same_script_on_both_engines_leaves_the_same_records(both_engines, standin, open_harbor):
    server, worker = both_engines
    realtime = records_of_a_booking_call(server, worker, standin, open_harbor, "realtime")
    live = records_of_a_booking_call(server, worker, standin, open_harbor, "live")
    assert live == realtime, (live, realtime)
    assert ("agent", "You're booked for a cleaning tomorrow at eight.") in live["transcript"]
    assert list(Call.objects.order_by("id").values_list("engine", flat=True)) == ["realtime", "live"]
