"""Whole calls: a real ASGI server (daphne, and uvicorn as in the Procfile) in a subprocess, the OpenAI
Realtime stand-in, the Twilio REST stand-in, and the call simulator playing Twilio."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import xml.etree.ElementTree as ET

import httpx
import pytest
import websockets
from twilio.request_validator import RequestValidator

from accounts.models import Business
from calls.models import Call, CallEvent, TranscriptEntry
from voice.offline.realtime import Script
from voice.offline.simulator import SimulatedCallConfig, new_sid, parse_twiml, run_simulated_call
from voice.tests.conftest import (ACCOUNT_SID, AUTH_TOKEN, BUSINESS_NUMBER, HARBOR_SCRIPT, TRANSFER_NUMBER,
                                 start_asgi_server, stop_process)

pytestmark = pytest.mark.e2e


def simulate(live, **over):
    config = SimulatedCallConfig(base_url=live.base_url, auth_token=AUTH_TOKEN, account_sid=ACCOUNT_SID,
                                 to_number=BUSINESS_NUMBER, from_number="+12025550143", max_duration_s=40, **over)
    return asyncio.run(run_simulated_call(config))


def finalized_call(call_sid: str, timeout: float = 10.0) -> Call:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        call = Call.objects.filter(twilio_call_sid=call_sid, finalized_at__isnull=False).first()
        if call is not None:
            return call
        time.sleep(0.1)
    raise AssertionError(f"call {call_sid} was not finalised: {Call.objects.filter(twilio_call_sid=call_sid).values()}")


def upstream_record(standin, timeout: float = 5.0) -> dict:
    """The stand-in's log of the (last) OpenAI session, once its socket has closed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = standin.last_session
        if record and record.get("closed_by"):
            return record
        time.sleep(0.05)
    raise AssertionError(f"the OpenAI socket is still open: {standin.last_session}")


@pytest.mark.parametrize("live_asgi", ["daphne", "uvicorn"], indirect=True)
def test_a_phone_call_is_answered_recorded_and_closed(live_asgi, standin):
    report = simulate(live_asgi, utterances=2, send_status_callback=True)
    assert report.ok, (report.failures, live_asgi.log())
    assert report.greeting_received_ms is not None
    assert all(turn.latency_received_ms is not None for turn in report.turns)
    assert report.marks_echoed == report.marks_sent_by_server > 0

    call = finalized_call(report.call_sid)
    assert (call.status, call.end_reason) == ("completed", "caller_hung_up")
    assert call.duration_seconds is not None and call.output_audio_tokens > 0 and call.cost_usd > 0
    entries = list(TranscriptEntry.objects.filter(call=call).order_by("order").values_list("speaker", "text"))
    assert ("agent", "Thanks for calling Harbor Dental, how can I help?") in entries
    assert ("caller", "What are your opening hours?") in entries
    assert ("agent", "We're open eight to five, Monday to Friday.") in entries
    latencies = CallEvent.objects.filter(call=call, kind="latency")
    assert latencies.count() >= 2 and all(event.payload["ms"] >= 0 for event in latencies)

    upstream = upstream_record(standin)
    assert upstream["closed_by"] == "client"  # no OpenAI socket outlives its call
    assert upstream["headers"]["openai_beta"] in (None, "")
    assert upstream["session"]["audio"]["input"]["format"]["type"] == "audio/pcmu"


# A reply long enough for the caller to talk over it.
LONG_REPLY_SCRIPT = {**HARBOR_SCRIPT, "turns": [
    {"caller": "What are your opening hours?",
     "agent": "We're open from eight in the morning until five in the afternoon, Monday to Friday, and on "
              "Saturday mornings from nine until one, except on public holidays when we are closed."},
    {"caller": "Thanks.", "agent": "You're welcome."}]}


def test_barge_in_clears_the_caller_and_truncates_at_what_was_played(live_asgi, standin):
    standin.script = Script.from_obj(LONG_REPLY_SCRIPT)
    report = simulate(live_asgi, utterances=2, barge_in=True, barge_in_delay_ms=600)
    assert report.ok, (report.failures, live_asgi.log())
    assert report.clears_received, "the server never sent clear"
    call = finalized_call(report.call_sid)
    record = upstream_record(standin)
    assert record["truncations"], "no conversation.item.truncate reached OpenAI"
    for truncation in record["truncations"]:
        assert truncation["accepted"], truncation
        assert truncation["audio_end_ms"] <= truncation["generated_ms"]
    # What we told OpenAI the caller heard never exceeds what the caller's side actually played.
    heard = sum(event.payload["heard_ms"] for event in CallEvent.objects.filter(call=call, kind="barge_in"))
    assert 0 < heard <= report.agent_audio_played_ms + 1
    assert TranscriptEntry.objects.filter(call=call, speaker="agent", interrupted=True).exists()


SLOW_MODEL_RUNS = 8
SLOW_GREETING = ("Thanks for calling Harbor Dental, this is the front desk, how can I help you today with your "
                 "appointment or anything else?")


def assert_barge_ins_over_a_slow_model(live_asgi, standin, *, speed: float, **caller) -> None:
    standin.speed, standin.chunk_ms = speed, 20
    standin.script = Script.from_obj({"greeting": SLOW_GREETING, "turns": [{"caller": "Can I book a cleaning?",
                                                                            "agent": "Sure."}],
                                      "default_agent": "Sure."})
    for run in range(SLOW_MODEL_RUNS):
        report = simulate(live_asgi, utterances=1, barge_in=True, barge_in_from_utterance=0, **caller)
        assert report.error is None, (run, report.failures, live_asgi.log())
        assert report.turns[0].barge_in and not report.warnings, (run, report.warnings)  # it did talk over it
        assert report.clears_received, f"run {run}: the server never sent clear"
        call = finalized_call(report.call_sid)
        record = upstream_record(standin)
        greeting = record["responses"][0]
        assert greeting["status"] == "cancelled", (run, greeting)
        assert record["truncations"], f"run {run}: no conversation.item.truncate reached OpenAI"
        for truncation in record["truncations"]:
            assert truncation["accepted"] and truncation["audio_end_ms"] <= truncation["generated_ms"], (run, truncation)
        barge_ins = list(CallEvent.objects.filter(call=call, kind="barge_in"))
        assert barge_ins, f"run {run}: no barge-in recorded"
        assert all(0 <= e.payload["heard_ms"] <= e.payload["sent_ms"] for e in barge_ins), run
        assert sum(e.payload["heard_ms"] for e in barge_ins) <= report.agent_audio_played_ms + 1, run
        assert TranscriptEntry.objects.filter(call=call, speaker="agent", interrupted=True).exists(), run
        assert not CallEvent.objects.filter(call=call, kind="error").exists(), (
            run, list(CallEvent.objects.filter(call=call, kind="error").values_list("payload", flat=True)))


def test_talking_over_a_reply_from_a_model_slower_than_real_time_is_a_barge_in_every_time(live_asgi, standin):
    """0.9x real time in 20 ms deltas: Twilio's queue holds at most one chunk, often none."""
    assert_barge_ins_over_a_slow_model(live_asgi, standin, speed=0.9, barge_in_delay_ms=600)


def test_talking_in_a_pause_of_a_reply_slower_than_real_time_is_a_barge_in_every_time(live_asgi, standin):
    """0.2x real time in 20 ms deltas, the caller starting in a gap: every mark has come back, nothing is queued
    at Twilio's side, and the reply is still being generated. That is a barge-in too."""
    assert_barge_ins_over_a_slow_model(live_asgi, standin, speed=0.2, barge_in_delay_ms=600, barge_in_pause_ms=20)


def tool_script(tool: str, reason: str, after: str):
    return {"greeting": "Harbor Dental, how can I help?",
            "turns": [{"caller": "Can I talk to someone?", "say": "Of course.",
                       "tool": {"name": tool, "arguments": {"reason": reason}}, "after_tool": after}],
            "default_agent": "Is there anything else?"}


def test_end_call_says_goodbye_then_hangs_up_through_twilio(live_asgi, standin, twilio_standin):
    standin.script = Script.from_obj(tool_script("end_call", "caller is done", "Goodbye!"))
    call_sid = twilio_standin.add_call(to=BUSINESS_NUMBER, from_="+12025550143")
    report = simulate(live_asgi, call_sid=call_sid, utterances=1, hang_up_after_s=12)
    call = finalized_call(call_sid)
    assert (call.status, call.end_reason) == ("completed", "agent_ended"), live_asgi.log()
    assert {"Status": "completed"}.items() <= twilio_standin.updates(call_sid)[-1].items()
    assert report.closed_by == "server"
    tool_event = CallEvent.objects.get(call=call, kind="tool_call")
    assert tool_event.payload["name"] == "end_call" and tool_event.payload["result"]["ok"] is True


def test_transfer_dials_the_business_transfer_number(live_asgi, standin, twilio_standin):
    standin.script = Script.from_obj(tool_script("transfer_to_human", "wants a person", "Connecting you."))
    call_sid = twilio_standin.add_call(to=BUSINESS_NUMBER, from_="+12025550143")
    simulate(live_asgi, call_sid=call_sid, utterances=1, hang_up_after_s=12)
    call = finalized_call(call_sid)
    assert (call.status, call.end_reason) == ("completed", "transferred"), live_asgi.log()
    twiml = twilio_standin.updates(call_sid)[-1]["Twiml"]
    assert f"<Number>{TRANSFER_NUMBER}</Number>" in twiml and "<Dial" in twiml
    dial = ET.fromstring(twiml).find("Dial")
    assert dial.get("timeLimit") == str(30 * 60)
    assert dial.get("action") == live_asgi.base_url + "/voice/twilio/dial-result/"
    assert CallEvent.objects.get(call=call, kind="transfer").payload["ok"] is True
    assert call.forward_status == "dialing" and call.forwarded_to == TRANSFER_NUMBER  # its minutes wait for the report


def test_a_stored_transfer_number_that_breaks_the_rules_is_never_dialled(live_asgi, standin, twilio_standin, harbor):
    # Premium rate, saved before the rules existed (or in the admin): the form never saw it.
    Business.objects.filter(pk=harbor.pk).update(transfer_number="+19005550123")
    standin.script = Script.from_obj(tool_script("transfer_to_human", "wants a person", "{output}"))
    call_sid = twilio_standin.add_call(to=BUSINESS_NUMBER, from_="+12025550143")
    simulate(live_asgi, call_sid=call_sid, utterances=1, hang_up_after_s=8)
    call = finalized_call(call_sid)
    assert not any("<Dial" in update.get("Twiml", "") for update in twilio_standin.updates(call_sid))
    transfer = CallEvent.objects.get(call=call, kind="transfer")
    assert transfer.payload["ok"] is False and "premium-rate" in transfer.payload["error"]
    output = json.loads(upstream_record(standin)["tool_outputs"][0]["output"])
    assert "take a message" in output["error"]
    assert call.forward_status == ""


def test_a_failed_transfer_makes_the_agent_offer_to_take_a_message(live_asgi, standin, twilio_standin):
    standin.script = Script.from_obj(tool_script("transfer_to_human", "wants a person", "Connecting you."))
    call_sid = twilio_standin.add_call(to=BUSINESS_NUMBER, from_="+12025550143")
    twilio_standin.fail_call(call_sid, status=400, code=21220, message="Call is not in-progress. Cannot redirect.")
    simulate(live_asgi, call_sid=call_sid, utterances=1, hang_up_after_s=10)
    call = finalized_call(call_sid)
    assert (call.status, call.end_reason) == ("completed", "caller_hung_up")  # the caller stayed on the line
    transfer = CallEvent.objects.get(call=call, kind="transfer")
    assert transfer.payload["ok"] is False and "21220" in transfer.payload["error"]
    record = upstream_record(standin)
    instructions = [r.get("instructions") or "" for r in record["responses"]]
    assert any("take a message" in text for text in instructions), record["responses"]


def test_without_a_transfer_number_the_tool_tells_the_agent_to_take_a_message(live_asgi, standin, harbor):
    harbor.transfer_number = ""
    harbor.save()
    standin.script = Script.from_obj(tool_script("transfer_to_human", "wants a person", "{output}"))
    report = simulate(live_asgi, utterances=1, hang_up_after_s=8)
    call = finalized_call(report.call_sid)
    record = upstream_record(standin)
    output = json.loads(record["tool_outputs"][0]["output"])
    assert "take a message" in output["error"]
    assert CallEvent.objects.get(call=call, kind="transfer").payload["ok"] is False


def test_openai_refusing_the_connection_plays_a_fallback_and_fails_the_call(live_asgi, standin, twilio_standin,
                                                                             harbor):
    harbor.when_unavailable = Business.WhenUnavailable.TRANSFER
    harbor.save()
    standin.script = Script.from_obj({"fail": {"refuse_connection": True}})
    call_sid = twilio_standin.add_call(to=BUSINESS_NUMBER, from_="+12025550143")
    simulate(live_asgi, call_sid=call_sid, utterances=1, hang_up_after_s=4, wait_for_greeting=False)
    call = finalized_call(call_sid)
    assert (call.status, call.end_reason) == ("failed", "upstream_failed")
    assert "Could not connect to OpenAI" in call.error
    fallback = twilio_standin.updates(call_sid)[-1]["Twiml"]
    assert "<Say" in fallback and f"<Number>{TRANSFER_NUMBER}</Number>" in fallback


def sessions_in_order(standin) -> list[dict]:
    return sorted(standin.sessions.values(), key=lambda record: record["started_at"])


def test_openai_dropping_mid_call_reconnects_within_2_s_and_the_call_goes_on(live_asgi, standin):
    standin.script = Script.from_obj({**HARBOR_SCRIPT, "fail": {"drop_after_ms": 1500, "sessions": 1}})
    report = simulate(live_asgi, utterances=1)  # hangs up after the reply to its question
    call = finalized_call(report.call_sid)
    assert (call.status, call.end_reason) == ("completed", "caller_hung_up")
    reconnect = CallEvent.objects.get(call=call, kind="reconnect")
    assert reconnect.payload["ok"] is True and "dropped" in reconnect.payload["cause"]
    assert reconnect.payload["waited_ms"] < 2000
    first, second = sessions_in_order(standin)
    assert first["closed_by"] == "server" and second["session_updates"] >= 1
    # Seeded with what was said (the greeting, as text), then asked to pick up the conversation.
    received = second["events_received"]
    assert received.index("conversation.item.create") < received.index("response.create")
    assert "dropped for a moment" in second["responses"][0]["instructions"]
    # The caller's question, asked after the drop, got its normal answer from the new session.
    entries = list(TranscriptEntry.objects.filter(call=call).values_list("speaker", "text"))
    assert ("agent", "We're open eight to five, Monday to Friday.") in entries


def test_a_new_session_is_seeded_with_the_transcript_so_the_conversation_continues(live_asgi, standin):
    # Dropped right after the answer to the first question: the second session must know that question was
    # asked and answered, so the caller's next words are the conversation's next turn.
    standin.script = Script.from_obj({**HARBOR_SCRIPT, "fail": {"drop_after_responses": 2, "sessions": 1}})
    report = simulate(live_asgi, utterances=2)
    call = finalized_call(report.call_sid)
    first, second = sessions_in_order(standin)
    assert second["caller_turns"][0] == {"item_id": second["caller_turns"][0]["item_id"], "via": "text",
                                         "transcript": "What are your opening hours?",
                                         "audio_start_ms": None, "audio_end_ms": None}
    entries = list(TranscriptEntry.objects.filter(call=call).values_list("speaker", "text"))
    assert ("agent", "You're welcome, have a nice day!") in entries
    assert CallEvent.objects.get(call=call, kind="reconnect").payload["ok"] is True


def test_an_expired_session_is_renewed_and_the_call_goes_on(live_asgi, standin):
    standin.script = Script.from_obj({**HARBOR_SCRIPT, "fail": {"expire_after_ms": 1500, "sessions": 1}})
    report = simulate(live_asgi, utterances=1)
    call = finalized_call(report.call_sid)
    assert (call.status, call.end_reason) == ("completed", "caller_hung_up")
    assert "session_expired" in CallEvent.objects.get(call=call, kind="reconnect").payload["cause"]
    assert len(standin.sessions) == 2


@pytest.fixture
def live_asgi_short_sessions(harbor, standin, twilio_standin):
    """uvicorn with OpenAI sessions capped at 6 s, renewed 3 s before the cap."""
    server = start_asgi_server("uvicorn", standin=standin, twilio_standin=twilio_standin, extra_env={
        "OPENAI_SESSION_MAX_SECONDS": "6", "OPENAI_SESSION_RENEW_MARGIN_SECONDS": "3"})
    yield server
    stop_process(server.process)


def test_a_session_near_its_cap_is_renewed_when_nobody_speaks_without_losing_or_repeating_a_reply(
        live_asgi_short_sessions, standin):
    report = simulate(live_asgi_short_sessions, utterances=2)
    call = finalized_call(report.call_sid)
    assert (call.status, call.end_reason) == ("completed", "caller_hung_up")
    renewals = [e.payload for e in CallEvent.objects.filter(call=call, kind="reconnect")]
    assert renewals and all(p["renewal"] and p["ok"] for p in renewals), renewals
    sessions = sessions_in_order(standin)
    assert len(sessions) == len(renewals) + 1
    assert all(record["closed_by"] == "client" for record in sessions)  # retired by us, never cut by the cap
    # Each reply said once, whole: the switch waited for the reply in progress and the caller's turn.
    agent_lines = list(TranscriptEntry.objects.filter(call=call, speaker="agent").values_list("text", flat=True))
    assert agent_lines.count("We're open eight to five, Monday to Friday.") == 1
    assert agent_lines.count("You're welcome, have a nice day!") == 1
    assert report.ok, report.failures


# --- refused streams and bad input ------------------------------------------------------------


async def open_stream(live, call_sid: str):
    """Do what Twilio does up to the open socket: signed webhook, TwiML, WebSocket. Returns (ws, params)."""
    params = {"AccountSid": ACCOUNT_SID, "CallSid": call_sid, "From": "+12025550143", "To": BUSINESS_NUMBER,
              "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}
    url = live.base_url + "/voice/twilio/incoming/"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    async with httpx.AsyncClient() as http:
        response = await http.post(url, data=params, headers={"X-Twilio-Signature": signature})
    twiml = parse_twiml(response.text)
    ws = await websockets.connect(live.base_url.replace("http", "ws") + "/ws/twilio/media/")
    return ws, twiml.parameters


def start_message(call_sid: str, parameters: dict, stream_sid: str | None = None) -> str:
    stream_sid = stream_sid or new_sid("MZ")
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
                       "start": {"accountSid": ACCOUNT_SID, "streamSid": stream_sid, "callSid": call_sid,
                                 "tracks": ["inbound"], "customParameters": parameters,
                                 "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


async def closed_with(ws) -> int | None:
    try:
        async with asyncio.timeout(5):
            async for _ in ws:
                pass
    except TimeoutError:
        return None
    except websockets.ConnectionClosed:
        pass
    return ws.close_code


def test_a_forged_token_closes_the_stream_and_opens_nothing_upstream(live_asgi, standin):
    async def scenario():
        ws, params = await open_stream(live_asgi, new_sid("CA"))
        await ws.send(start_message(params and new_sid("CA"), {**params, "token": params["token"][:-4] + "AAAA"}))
        return await closed_with(ws)

    assert asyncio.run(scenario()) == 4403
    assert standin.sessions == {}


def test_a_reused_token_is_refused(live_asgi, standin):
    call_sid = new_sid("CA")

    async def scenario():
        ws, params = await open_stream(live_asgi, call_sid)
        await ws.send(start_message(call_sid, params))
        await asyncio.sleep(0.5)
        second = await websockets.connect(live_asgi.base_url.replace("http", "ws") + "/ws/twilio/media/")
        await second.send(start_message(call_sid, params))
        code = await closed_with(second)
        await ws.send(json.dumps({"event": "stop", "sequenceNumber": "3", "streamSid": "x"}))
        await ws.close()
        return code

    assert asyncio.run(scenario()) == 4403
    assert len(standin.sessions) == 1


def test_an_expired_token_is_refused(harbor, standin, twilio_standin):
    live = start_asgi_server("daphne", standin=standin, twilio_standin=twilio_standin,
                             extra_env={"STREAM_TOKEN_MAX_AGE_SECONDS": "1"})
    try:
        async def scenario():
            call_sid = new_sid("CA")
            ws, params = await open_stream(live, call_sid)
            await asyncio.sleep(2.2)
            await ws.send(start_message(call_sid, params))
            return await closed_with(ws)

        assert asyncio.run(scenario()) == 4403
        assert standin.sessions == {}
    finally:
        stop_process(live.process)


def test_media_before_start_closes_the_stream(live_asgi, standin):
    async def scenario():
        ws, _ = await open_stream(live_asgi, new_sid("CA"))
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(json.dumps({"event": "media", "sequenceNumber": "2", "streamSid": new_sid("MZ"),
                                  "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "/////w=="}}))
        return await closed_with(ws)

    assert asyncio.run(scenario()) == 4400
    assert standin.sessions == {}


@pytest.mark.parametrize("live_asgi", ["daphne", "uvicorn"], indirect=True)
def test_bad_frames_are_ignored_an_oversized_frame_closes_and_the_call_is_still_finalised(live_asgi, standin):
    call_sid = new_sid("CA")

    async def scenario():
        ws, params = await open_stream(live_asgi, call_sid)
        stream_sid = new_sid("MZ")
        await ws.send(start_message(call_sid, params, stream_sid))
        await ws.send("{not json")
        await ws.send(json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": "@@@not base64@@"}}))
        await ws.send(json.dumps({"event": "teleport", "streamSid": stream_sid}))
        await ws.send(json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": "never-sent:1"}}))
        await ws.send(json.dumps({"event": "start", "streamSid": stream_sid}))  # out of order: a second start
        await ws.send(b"\x00\x01binary")
        await asyncio.sleep(0.3)
        alive = ws.state.name == "OPEN"
        try:
            await ws.send(json.dumps({"event": "media", "media": {"payload": "A" * (1024 * 1024)}}))
        except websockets.ConnectionClosed:
            return alive, ws.close_code  # daphne may drop the connection while the frame is still being sent
        return alive, await closed_with(ws)

    alive, code = asyncio.run(scenario())
    assert alive, "the stream was closed by frames that should only be ignored"
    call = finalized_call(call_sid)
    if live_asgi.kind == "daphne":
        # daphne itself drops a connection that sends a 1 MB message before the application sees it.
        assert code == 1006 and (call.status, call.end_reason) == ("interrupted", "stream_closed")
    else:
        assert code == 1009, (code, live_asgi.log())
        assert (call.status, call.end_reason) == ("failed", "stream_protocol_error")
    # The same server process goes on serving other calls.
    report = simulate(live_asgi, utterances=1)
    assert report.ok, report.failures
    assert finalized_call(report.call_sid).status == "completed"


def test_twilio_rest_calls_run_off_the_event_loop(live_asgi, standin, twilio_standin):
    """While Twilio holds our hang-up request open, the same server process keeps serving requests."""
    import threading

    standin.script = Script.from_obj(tool_script("end_call", "caller is done", "Goodbye!"))
    call_sid = twilio_standin.add_call(to=BUSINESS_NUMBER, from_="+12025550143")
    held, release, answered = threading.Event(), threading.Event(), []

    def hold_the_hang_up(sid, form):
        if form.get("Status") == "completed":
            held.set()
            release.wait(timeout=20)

    def probe_while_held():
        try:
            if held.wait(timeout=30):
                answered.append(httpx.get(live_asgi.base_url + "/healthz/", timeout=5).status_code)
        finally:
            release.set()

    twilio_standin.on_update = hold_the_hang_up
    prober = threading.Thread(target=probe_while_held)
    prober.start()
    simulate(live_asgi, call_sid=call_sid, utterances=1, hang_up_after_s=15)
    prober.join(timeout=30)
    assert held.is_set(), "the hang-up never reached Twilio"
    assert answered == [200]
    assert finalized_call(call_sid).end_reason == "agent_ended"


# --- what an unauthenticated or misbehaving media socket gets -------------------------------------------------

SILENCE_FRAME = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of μ-law silence


def media_frame(stream_sid: str) -> str:
    return json.dumps({"event": "media", "streamSid": stream_sid,
                       "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": SILENCE_FRAME}})


def stop_frame(call_sid: str, stream_sid: str) -> str:
    return json.dumps({"event": "stop", "sequenceNumber": "99", "streamSid": stream_sid,
                       "stop": {"accountSid": ACCOUNT_SID, "callSid": call_sid}})


async def first_server_message(ws) -> dict:
    async with asyncio.timeout(10):
        return json.loads(await ws.recv())


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
def test_a_socket_that_sends_no_start_is_closed_at_the_start_deadline(harbor, standin, twilio_standin, kind):
    live = start_asgi_server(kind, standin=standin, twilio_standin=twilio_standin,
                             extra_env={"MEDIA_STREAM_START_SECONDS": "1"})
    try:
        async def scenario():
            ws = await websockets.connect(live.base_url.replace("http", "ws") + "/ws/twilio/media/")
            try:
                for _ in range(25):  # `connected` frames every 200 ms do not keep it open
                    await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
                    await asyncio.sleep(0.2)
            except websockets.ConnectionClosed:
                pass
            return await closed_with(ws), ws.close_reason

        code, reason = asyncio.run(scenario())
    finally:
        stop_process(live.process)
    assert code == 4408, live.log()
    if kind == "uvicorn":  # daphne sends the code without the reason
        assert "no start message within 1 s" in reason
    assert standin.sessions == {}


@pytest.mark.parametrize("live_asgi", ["daphne", "uvicorn"], indirect=True)
def test_after_twilios_stop_the_server_closes_the_socket_with_1000(live_asgi, standin):
    call_sid, stream_sid = new_sid("CA"), new_sid("MZ")

    async def scenario():
        ws, params = await open_stream(live_asgi, call_sid)
        await ws.send(start_message(call_sid, params, stream_sid))
        await first_server_message(ws)  # the greeting is playing
        await ws.send(stop_frame(call_sid, stream_sid))  # and Twilio waits for the server to close
        return await closed_with(ws), ws.protocol.close_rcvd

    code, close_frame = asyncio.run(scenario())
    assert code == 1000 and close_frame is not None, (code, live_asgi.log())
    assert finalized_call(call_sid).end_reason == "caller_hung_up"


def test_frames_of_another_stream_are_dropped_and_ignored_frames_are_counted_on_the_call(live_asgi, standin, client):
    call_sid, stream_sid, other_sid = new_sid("CA"), new_sid("MZ"), new_sid("MZ")

    async def scenario():
        ws, params = await open_stream(live_asgi, call_sid)
        await ws.send(start_message(call_sid, params, stream_sid))
        await first_server_message(ws)  # the session is up: this caller's audio now reaches OpenAI
        for _ in range(25):
            await ws.send(media_frame(stream_sid))
        for _ in range(10):
            await ws.send(media_frame(other_sid))
        await ws.send(json.dumps({"event": "dtmf", "streamSid": other_sid, "dtmf": {"digit": "5"}}))
        await ws.send(stop_frame(call_sid, other_sid))  # another stream's stop does not end this call
        await ws.send("{not json")
        await ws.send(stop_frame(call_sid, stream_sid))
        return await closed_with(ws)

    assert asyncio.run(scenario()) == 1000
    call = finalized_call(call_sid)
    assert (call.status, call.end_reason) == ("completed", "caller_hung_up")
    assert upstream_record(standin)["input_audio_ms"] == 25 * 20  # only this stream's 25 frames of 20 ms
    assert not CallEvent.objects.filter(call=call, kind="dtmf").exists()
    counted = CallEvent.objects.get(call=call, kind="error", payload__source="twilio")
    assert (counted.payload["bad_frames"], counted.payload["other_stream_frames"]) == (13, 12)
    client.force_login(call.business.memberships.get().user)
    page = client.get(f"/dashboard/calls/{call.id}/").content.decode()
    assert "Ignored 13 malformed frames from Twilio&#x27;s media stream." in page
