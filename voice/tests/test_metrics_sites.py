"""Each operator metric (receptionist/metrics.py) moves where the call does what it counts: live calls, calls by
status, tokens and cost, reconnects and renewals, fallbacks, turn latency, the supervisor's round trip and queue
wait, and frames dropped on the way from the caller to the model.

The metrics are this process's (no PROMETHEUS_MULTIPROC_DIR in tests) and live as long as it does, so each test
compares a value before and after."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from decimal import Decimal

import pytest
import websockets
from channels.layers import InMemoryChannelLayer
from prometheus_client import REGISTRY

from calls.models import Call, TranscriptEntry
from calls.postcall.summary import call_summarize, call_summary_failed
from calls.services.lifecycle import Usage, call_finalize
from tests.factories import make_call
from voice import tasks as voice_tasks
from voice.agent import load_agent_profile
from voice.browser_call import _BrowserCallState
from voice.offline.realtime import RealtimeStandin
from voice.session import CallSession
from voice.session import tools as session_tools
from voice.session.shared import ResponseState
from voice.supervisor import SupervisorResult, record_supervisor_run
from voice.tests.test_numbers import call_webhook, twilio  # noqa: F401 (fixture)
from voice.transports import BrowserTransport, TwilioTransport
from voice.twilio_stream import _StreamState

STREAM_SID = "MZ" + "c" * 32
PAYLOAD = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of mu-law silence


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Sent:
    def __init__(self) -> None:
        self.frames: list[dict] = []

    async def __call__(self, message: dict) -> None:
        self.frames.append(message)


class Upstream:
    """The OpenAI side of a session: what it was sent; `closed` makes every send fail as a dropped socket."""

    def __init__(self, *, closed: bool = False) -> None:
        self.sent: list[dict] = []
        self.closed = closed

    async def send(self, text: str) -> None:
        if self.closed:
            raise websockets.ConnectionClosed(None, None)
        self.sent.append(json.loads(text))

    async def close(self) -> None:
        pass


class FallbackTransport(TwilioTransport):
    """A Twilio transport whose fallback only notes what the live-calls gauge read at that moment."""

    def __init__(self) -> None:
        super().__init__(Sent(), STREAM_SID, "CA" + "c" * 32)
        self.live_at_fallback: float | None = None

    async def fallback(self, *, action: str, language: str, transfer_to: str) -> str:
        self.live_at_fallback = value("receptionist_live_calls")
        return action


def bare_session(**kwargs) -> CallSession:
    return CallSession(call_id=1, business_id=1, transport=TwilioTransport(Sent(), STREAM_SID, "CA" + "d" * 32),
                       **kwargs)


async def unreachable(timeout: float):
    raise OSError("connection refused")


def open_sessions_with(session: CallSession, opener) -> None:
    """The session's engine opens its next OpenAI session with `opener` (a fake socket, or a refusal)."""
    async def connect(*, timeout: float, resume: bool):
        return await opener(timeout)

    session.engine.connect = connect


# --- live calls, fallbacks -----------------------------------------------------------------------------------


def test_a_call_counts_as_live_from_its_start_until_it_ends(harbor, settings):
    call = make_call(harbor, twilio_call_sid="CA" + "1" * 32, status="in_progress")
    transport = FallbackTransport()
    session = CallSession(call_id=call.id, business_id=harbor.id, transport=transport)
    settings.OPENAI_REALTIME_URL = "ws://127.0.0.1:9/v1/realtime"  # refused: start() gives the fallback
    before = value("receptionist_live_calls")
    asyncio.run(session.start())
    assert transport.live_at_fallback == before + 1
    assert value("receptionist_live_calls") == before


@pytest.mark.parametrize("action", ["transfer", "voicemail"])
def test_the_fallback_a_caller_gets_is_counted_by_what_it_was(harbor, action, settings):
    harbor.when_unavailable = action
    harbor.save(update_fields=["when_unavailable"])
    call = make_call(harbor, twilio_call_sid="CA" + "2" * 32, status="in_progress")
    session = CallSession(call_id=call.id, business_id=harbor.id, transport=FallbackTransport())
    settings.OPENAI_REALTIME_URL = "ws://127.0.0.1:9/v1/realtime"  # refused
    before = value("receptionist_fallbacks_total", action=action, by="session")
    asyncio.run(session.start())
    assert value("receptionist_fallbacks_total", action=action, by="session") == before + 1


def test_a_caller_sent_to_voicemail_by_twilios_fallback_url_is_counted(client, alices_business, twilio):  # noqa: F811
    before = value("receptionist_fallbacks_total", action="voicemail", by="twilio_fallback_url")
    response = call_webhook(client, twilio, "/voice/twilio/fallback/", alices_business.phone_number, ErrorCode="11200")
    assert response.status_code == 200 and b"<Record" in response.content
    assert value("receptionist_fallbacks_total", action="voicemail", by="twilio_fallback_url") == before + 1


# --- calls by status, tokens and cost --------------------------------------------------------------------------


def test_a_finalised_call_is_counted_by_status_and_end_reason(harbor):
    call = make_call(harbor, twilio_call_sid="CA" + "3" * 32, status="in_progress")
    before = value("receptionist_calls_total", status="completed", end_reason="caller_hung_up")
    assert call_finalize(call_id=call.id, status=Call.Status.COMPLETED, end_reason="caller_hung_up")
    assert value("receptionist_calls_total", status="completed", end_reason="caller_hung_up") == before + 1


def test_a_call_finalised_twice_is_counted_once(harbor):
    call = make_call(harbor, twilio_call_sid="CA" + "4" * 32, status="in_progress")
    before = value("receptionist_calls_total", status="failed", end_reason="stream_closed")
    call_finalize(call_id=call.id, status=Call.Status.FAILED, end_reason="stream_closed")
    assert not call_finalize(call_id=call.id, status=Call.Status.FAILED, end_reason="stream_closed")
    assert value("receptionist_calls_total", status="failed", end_reason="stream_closed") == before + 1


def test_a_finalised_calls_tokens_and_cost_are_counted_by_kind(harbor):
    call = make_call(harbor, twilio_call_sid="CA" + "5" * 32, status="in_progress")
    usage = Usage(input_audio=1000, cached_audio=400, input_text=300, output_audio=2000, output_text=50)
    kinds = ["realtime_input_audio", "realtime_cached_audio", "realtime_input_text", "realtime_output_audio",
             "realtime_output_text"]
    tokens_before = {kind: value("receptionist_tokens_total", kind=kind) for kind in kinds}
    cost_before = sum(value("receptionist_cost_usd_total", kind=kind) for kind in kinds)
    call_finalize(call_id=call.id, status=Call.Status.COMPLETED, end_reason="caller_hung_up", usage=usage,
                  model="gpt-realtime-2.1")
    gained = {kind: value("receptionist_tokens_total", kind=kind) - tokens_before[kind] for kind in kinds}
    # Cached input is not also counted as input: the kinds add up to every token once.
    assert gained == {"realtime_input_audio": 600, "realtime_cached_audio": 400, "realtime_input_text": 300,
                      "realtime_output_audio": 2000, "realtime_output_text": 50}
    cost = sum(value("receptionist_cost_usd_total", kind=kind) for kind in kinds) - cost_before
    call.refresh_from_db()
    assert cost == pytest.approx(float(call.cost_usd), abs=1e-6) and cost > 0


def test_a_supervisor_runs_tokens_and_cost_are_counted_when_it_is_recorded(harbor, settings):
    settings.OPENAI_SUPERVISOR_MODEL = "gpt-4.1"
    call = make_call(harbor, twilio_call_sid="CA" + "6" * 32, status="in_progress")
    result = SupervisorResult(answer="Booked.", prompt_tokens=1200, cached_tokens=200, completion_tokens=80)
    before = {kind: value("receptionist_tokens_total", kind=kind)
              for kind in ("supervisor_input", "supervisor_cached", "supervisor_output")}
    cost_before = value("receptionist_cost_usd_total", kind="supervisor_input")
    record_supervisor_run(call_id=call.id, result=result)
    assert {kind: value("receptionist_tokens_total", kind=kind) - count for kind, count in before.items()} == {
        "supervisor_input": 1000, "supervisor_cached": 200, "supervisor_output": 80}
    assert value("receptionist_cost_usd_total", kind="supervisor_input") - cost_before == pytest.approx(0.002)


def test_a_summarised_call_is_counted_by_outcome_with_the_summarys_tokens(harbor, settings):
    standin = RealtimeStandin(script={"summary": {"document": {
        "summary": "Ann asked about the opening hours.", "caller_name": "Ann Lee", "reason": "Opening hours.",
        "outcome": "answered", "action_items": [], "sentiment": "positive", "follow_up_needed": False,
        "follow_up_reason": ""}}}, port=0)
    standin.start_in_thread()
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = standin.base_url, "sk-test-standin"
    call = make_call(harbor, twilio_call_sid="CA" + "7" * 32, status="completed")
    TranscriptEntry.objects.create(call=call, order=1, speaker="caller", text="When are you open?")
    before = value("receptionist_call_outcomes_total", outcome="answered")
    tokens_before = value("receptionist_tokens_total", kind="summary_output")
    try:
        assert call_summarize(call_id=call.id)
    finally:
        standin.stop()
    assert value("receptionist_call_outcomes_total", outcome="answered") == before + 1
    call.refresh_from_db()
    assert value("receptionist_tokens_total", kind="summary_output") - tokens_before == call.summary_output_tokens > 0


def test_a_call_whose_summary_failed_is_counted_with_no_outcome(harbor):
    call = make_call(harbor, twilio_call_sid="CA" + "8" * 32, status="completed")
    before = value("receptionist_call_outcomes_total", outcome="none")
    assert call_summary_failed(call_id=call.id, error="The summary model's answer is not valid")
    assert not call_summary_failed(call_id=call.id, error="again")  # stored once, counted once
    assert value("receptionist_call_outcomes_total", outcome="none") == before + 1


# --- reconnects and renewals -----------------------------------------------------------------------------------


def test_a_reconnect_that_finds_openai_gone_is_counted_as_failed(settings):
    settings.OPENAI_RECONNECT_BUDGET_SECONDS = 0.3
    session = bare_session()
    session.upstream = Upstream()
    open_sessions_with(session, unreachable)
    before = value("receptionist_openai_reconnects_total", result="failed")
    assert asyncio.run(session._reconnect("OpenAI connection dropped (code 1011)")) is False
    assert value("receptionist_openai_reconnects_total", result="failed") == before + 1


def test_a_reconnect_that_opens_a_new_session_is_counted_as_succeeded(harbor):
    session = bare_session(profile=load_agent_profile(harbor.id))
    session.upstream = Upstream()

    async def fresh(timeout: float) -> Upstream:
        return Upstream()

    open_sessions_with(session, fresh)
    before = value("receptionist_openai_reconnects_total", result="succeeded")
    assert asyncio.run(session._reconnect("OpenAI connection dropped (code 1011)")) is True
    assert value("receptionist_openai_reconnects_total", result="succeeded") == before + 1


def test_a_renewal_that_cannot_open_the_next_session_is_counted_as_failed():
    session = bare_session()
    session.upstream, session.ready = Upstream(), True
    open_sessions_with(session, unreachable)
    before = value("receptionist_openai_renewals_total", result="failed")
    asyncio.run(session._renew_session())
    assert value("receptionist_openai_renewals_total", result="failed") == before + 1


def test_a_renewal_that_switches_sessions_is_counted_as_succeeded(harbor):
    session = bare_session(profile=load_agent_profile(harbor.id))
    session.upstream, session.ready = Upstream(), True
    fresh = Upstream()

    async def open_fresh(timeout: float) -> Upstream:
        return fresh

    open_sessions_with(session, open_fresh)
    before = value("receptionist_openai_renewals_total", result="succeeded")
    asyncio.run(session._renew_session())
    assert session.upstream is fresh
    assert value("receptionist_openai_renewals_total", result="succeeded") == before + 1


# --- turn latency, supervisor ---------------------------------------------------------------------------------


def test_a_turns_latency_is_observed_when_the_agents_first_audio_arrives():
    session = bare_session()
    session.speech_end_at = time.monotonic() - 0.8  # the caller's turn ended 0.8 s ago
    count = value("receptionist_turn_latency_seconds_count")
    total = value("receptionist_turn_latency_seconds_sum")
    asyncio.run(session._on_audio_delta({"response_id": "resp_1", "item_id": "item_1", "delta": PAYLOAD}))
    asyncio.run(session._on_audio_delta({"response_id": "resp_1", "item_id": "item_1", "delta": PAYLOAD}))
    assert value("receptionist_turn_latency_seconds_count") == count + 1  # once per turn, not per chunk
    assert 0.8 <= value("receptionist_turn_latency_seconds_sum") - total < 2.0


def test_the_supervisors_round_trip_is_observed_from_the_hand_off_to_its_answer(monkeypatch):
    monkeypatch.setattr(session_tools, "enqueue_supervisor", lambda kwargs: None)

    async def scenario() -> None:
        session = bare_session(reply_channel="call.test")
        session.upstream = Upstream()
        handed_off = await session._tool_ask_supervisor(ResponseState("resp_1"), {"request": "Book Tuesday"}, "tool_1")
        assert handed_off is None  # answered later, by the supervisor
        await asyncio.sleep(0.2)
        await session.supervisor_answer({"tool_call_id": "tool_1", "ok": True, "answer": "Booked for Tuesday."})
        for task in session._tasks:
            task.cancel()

    count = value("receptionist_supervisor_round_trip_seconds_count", result="ok")
    total = value("receptionist_supervisor_round_trip_seconds_sum", result="ok")
    asyncio.run(scenario())
    assert value("receptionist_supervisor_round_trip_seconds_count", result="ok") == count + 1
    assert 0.2 <= value("receptionist_supervisor_round_trip_seconds_sum", result="ok") - total < 2.0


def test_a_supervisor_answer_after_the_deadline_is_observed_as_late(monkeypatch, settings):
    monkeypatch.setattr(session_tools, "enqueue_supervisor", lambda kwargs: None)
    settings.SUPERVISOR_DEADLINE_SECONDS = 0.05

    async def scenario() -> None:
        session = bare_session(reply_channel="call.test")
        session.upstream = Upstream()
        await session._tool_ask_supervisor(ResponseState("resp_1"), {"request": "Book Tuesday"}, "tool_1")
        await asyncio.sleep(0.2)  # the deadline passed: the caller was told it could not be done
        await session.supervisor_answer({"tool_call_id": "tool_1", "ok": True, "answer": "Booked."})
        for task in session._tasks:
            task.cancel()

    before = value("receptionist_supervisor_round_trip_seconds_count", result="late")
    asyncio.run(scenario())
    assert value("receptionist_supervisor_round_trip_seconds_count", result="late") == before + 1


def test_a_supervisor_request_is_queued_with_the_time_it_was_queued(monkeypatch):
    sent: list[dict] = []
    monkeypatch.setattr(voice_tasks.ask_supervisor, "apply_async", lambda **options: sent.append(options))
    session_tools.enqueue_supervisor({"call_id": 1})
    assert sent and abs(sent[0]["headers"][voice_tasks.ENQUEUED_AT_HEADER] - time.time()) < 5


def test_the_supervisors_queue_wait_is_observed_when_a_worker_starts_on_it(monkeypatch):
    monkeypatch.setattr(voice_tasks, "run_supervisor", lambda **kwargs: SupervisorResult(answer="Open until five."))
    monkeypatch.setattr(voice_tasks, "record_supervisor_run", lambda **kwargs: None)
    layer = InMemoryChannelLayer()
    monkeypatch.setattr(voice_tasks, "get_channel_layer", lambda: layer)
    count = value("receptionist_supervisor_queue_wait_seconds_count")
    total = value("receptionist_supervisor_queue_wait_seconds_sum")
    voice_tasks.ask_supervisor.apply(
        kwargs={"call_id": 1, "tool_call_id": "tool_1", "reply_channel": "call.test", "request": "Hours?",
                "conversation": []},
        headers={voice_tasks.ENQUEUED_AT_HEADER: time.time() - 1.5})  # it waited 1.5 s in the queue
    assert value("receptionist_supervisor_queue_wait_seconds_count") == count + 1
    assert 1.5 <= value("receptionist_supervisor_queue_wait_seconds_sum") - total < 3.0


# --- frames dropped -------------------------------------------------------------------------------------------


def dropped(reason: str) -> float:
    return value("receptionist_frames_dropped_total", reason=reason)


def test_caller_audio_before_the_agent_is_connected_is_counted_as_dropped():
    before = dropped("not_ready")
    asyncio.run(bare_session().caller_audio(PAYLOAD))
    assert dropped("not_ready") == before + 1


def test_caller_audio_on_a_closed_openai_socket_is_counted_as_dropped():
    session = bare_session()
    session.upstream, session.ready = Upstream(closed=True), True
    before = dropped("upstream_closed")
    asyncio.run(session.caller_audio(PAYLOAD))
    assert dropped("upstream_closed") == before + 1


def test_audio_pushed_out_of_the_reconnect_hold_is_counted_as_dropped(settings):
    settings.OPENAI_RECONNECT_AUDIO_SECONDS = 1  # 50 frames of 20 ms
    session = bare_session()
    before = dropped("reconnect_hold_full")
    for _ in range(60):
        session.hold_caller_audio(PAYLOAD)
    assert dropped("reconnect_hold_full") == before + 10


def test_a_malformed_media_stream_frame_is_counted_as_dropped():
    before = dropped("malformed")
    assert asyncio.run(_StreamState(Sent()).handle("not json", None)) is True
    assert dropped("malformed") == before + 1


def test_a_media_frame_of_another_stream_is_counted_as_dropped():
    stream = _StreamState(Sent())
    stream.started, stream.stream_sid = True, STREAM_SID
    frame = json.dumps({"event": "media", "streamSid": "MZ" + "9" * 32, "media": {"payload": PAYLOAD}})
    before = dropped("other_stream")
    asyncio.run(stream.handle(frame, None))
    assert dropped("other_stream") == before + 1


def test_an_oversized_frame_is_counted_as_dropped():
    before = dropped("oversized")
    assert asyncio.run(_StreamState(Sent()).handle("x" * 70_000, None)) is False
    assert dropped("oversized") == before + 1


def test_browser_audio_faster_than_real_time_is_counted_as_dropped(settings):
    settings.BROWSER_AUDIO_BURST_MS = 100  # 4,800 bytes of PCM16 at 24 kHz
    state = _BrowserCallState(bare_session(), BrowserTransport(Sent()))
    frame = json.dumps({"type": "audio", "audio": base64.b64encode(b"\x00" * 4000).decode()})
    before = dropped("too_fast")
    asyncio.run(state.handle(frame, None))  # fits the burst
    asyncio.run(state.handle(frame, None))  # at once after it: faster than real time
    assert dropped("too_fast") == before + 1


def test_cost_kinds_cover_the_price_table():
    """Every price a call is billed at has its kind in the metrics, so the cost by kind adds up to the call's."""
    usage = Usage(input_audio=10, cached_audio=1, input_text=10, cached_text=1, output_audio=10, output_text=10)
    assert sum(usage.tokens_by_kind().values()) == 10 + 10 + 10 + 10
    assert Decimal(str(round(sum(usage.cost_by_kind_usd("gpt-realtime-2.1").values()), 6))) == \
        usage.cost_usd("gpt-realtime-2.1")
