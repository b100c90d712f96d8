"""A deploy's SIGTERM on a real uvicorn process (as the Procfile runs it) with a live call: the caller hears the
restart sentence and is hung up, new streams are refused, the call is recorded as ended by a server shutdown,
and the process exits within the drain bound."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from calls.models import CallEvent, TranscriptEntry
from voice.offline.realtime import Script
from voice.offline.simulator import SimulatedCall, SimulatedCallConfig, new_sid
from voice.phrases import PHRASES
from voice.tests.conftest import ACCOUNT_SID, AUTH_TOKEN, BUSINESS_NUMBER, HARBOR_SCRIPT, start_asgi_server, stop_process
from voice.tests.test_call_e2e import closed_with, finalized_call, open_stream, upstream_record

pytestmark = pytest.mark.e2e

GRACEFUL_S = 10  # uvicorn's --timeout-graceful-shutdown in these tests (the Procfile's is 20)


def start_uvicorn(standin, twilio_standin, drain_s: int):
    return start_asgi_server("uvicorn", standin=standin, twilio_standin=twilio_standin,
                             extra_env={"CALL_DRAIN_SECONDS": str(drain_s)},
                             extra_args=("--timeout-graceful-shutdown", str(GRACEFUL_S)))


def caller(live, call_sid: str) -> SimulatedCall:
    """A caller who listens (says nothing) and would stay on the line for 30 s."""
    return SimulatedCall(SimulatedCallConfig(
        base_url=live.base_url, auth_token=AUTH_TOKEN, account_sid=ACCOUNT_SID, to_number=BUSINESS_NUMBER,
        from_number="+12025550143", call_sid=call_sid, utterances=0, hang_up_after_s=30, max_duration_s=40))


def received_ms(sim: SimulatedCall) -> float:
    """Agent audio the simulated caller has received so far (its report is only filled in at the end)."""
    return sim._received_bytes / 8


async def until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_sigterm_lets_the_agent_finish_tells_the_caller_and_hangs_up(harbor, standin, twilio_standin):
    drain_s = 12
    live = start_uvicorn(standin, twilio_standin, drain_s)
    call_sid = twilio_standin.add_call(to=BUSINESS_NUMBER, from_="+12025550143")
    sim = caller(live, call_sid)

    async def scenario():
        run = asyncio.create_task(sim.run())
        await until(lambda: received_ms(sim) > 0, 15, "the greeting")
        heard_before = received_ms(sim)
        os.kill(live.process.pid, signal.SIGTERM)
        signalled = time.monotonic()
        await until(lambda: "draining 1 live call" in live.log(), 5, "the drain to start")
        # A new call reaching this process now is refused cleanly (Twilio then runs the TwiML after <Connect>).
        ws, _ = await open_stream(live, new_sid("CA"))
        refused = await closed_with(ws)
        report = await asyncio.wait_for(run, timeout=30)
        return report, heard_before, refused, signalled

    try:
        report, heard_before, refused, signalled = asyncio.run(scenario())
        live.process.wait(timeout=drain_s + GRACEFUL_S)
        exited_after = time.monotonic() - signalled
    finally:
        stop_process(live.process)
    assert refused == 1012
    # The caller heard more after the signal (the sentence), every mark came back, and the server hung up cleanly.
    assert report.agent_audio_received_ms > heard_before
    assert report.marks_echoed == report.marks_sent_by_server > 0
    assert (report.ended_by, report.closed_by, report.close_code) == ("server", "server", 1000), live.log()
    record = upstream_record(standin)
    said = [r for r in record["responses"] if PHRASES["server_restart"]["en"] in (r.get("instructions") or "")]
    assert len(said) == 1 and said[0]["status"] == "completed" and said[0]["audio_ms"] > 0, record["responses"]
    assert record["responses"][0]["status"] == "completed"  # the greeting was let finish, not cut
    assert {"Status": "completed"}.items() <= twilio_standin.updates(call_sid)[-1].items()

    call = finalized_call(call_sid)
    assert (call.status, call.end_reason, call.error) == ("completed", "server_shutdown", ""), live.log()
    assert not TranscriptEntry.objects.filter(call=call, interrupted=True).exists()
    assert CallEvent.objects.filter(call=call, kind="status", payload__step="server_shutdown").exists()
    assert exited_after < drain_s, f"the process took {exited_after:.1f} s to exit"


def test_a_call_that_cannot_finish_is_ended_at_the_drain_bound_and_the_process_exits(harbor, standin, twilio_standin):
    standin.script = Script.from_obj({**HARBOR_SCRIPT, "response_delay_ms": 60_000})  # the agent never speaks
    drain_s = 3
    live = start_uvicorn(standin, twilio_standin, drain_s)
    call_sid = twilio_standin.add_call(to=BUSINESS_NUMBER, from_="+12025550143")
    sim = caller(live, call_sid)

    async def scenario():
        run = asyncio.create_task(sim.run())
        await until(lambda: any((s.get("events_sent") or {}).get("response.created")
                                for s in standin.sessions.values()), 15, "the greeting to start")
        os.kill(live.process.pid, signal.SIGTERM)
        signalled = time.monotonic()
        report = await asyncio.wait_for(run, timeout=30)
        return report, signalled

    try:
        report, signalled = asyncio.run(scenario())
        live.process.wait(timeout=drain_s + GRACEFUL_S)
        exited_after = time.monotonic() - signalled
    finally:
        stop_process(live.process)
    assert (report.ended_by, report.close_code) == ("server", 1000), live.log()
    call = finalized_call(call_sid)
    assert (call.status, call.end_reason, call.error) == ("interrupted", "server_shutdown", ""), live.log()
    assert {"Status": "completed"}.items() <= twilio_standin.updates(call_sid)[-1].items()
    assert drain_s <= exited_after < drain_s + 5, f"the process took {exited_after:.1f} s to exit"


def test_without_a_drain_a_call_cut_by_the_shutdown_is_recorded_as_a_server_shutdown(harbor, standin, twilio_standin):
    live = start_uvicorn(standin, twilio_standin, drain_s=0)  # CALL_DRAIN_SECONDS=0: uvicorn closes sockets at once
    call_sid = twilio_standin.add_call(to=BUSINESS_NUMBER, from_="+12025550143")
    sim = caller(live, call_sid)

    async def scenario():
        run = asyncio.create_task(sim.run())
        await until(lambda: received_ms(sim) > 0, 15, "the greeting")
        os.kill(live.process.pid, signal.SIGTERM)
        return await asyncio.wait_for(run, timeout=30)

    try:
        report = asyncio.run(scenario())
        live.process.wait(timeout=GRACEFUL_S + 5)
    finally:
        stop_process(live.process)
    assert report.close_code == 1012
    call = finalized_call(call_sid)
    assert (call.status, call.end_reason, call.error) == ("interrupted", "server_shutdown", ""), live.log()
