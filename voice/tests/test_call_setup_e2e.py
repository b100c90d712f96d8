"""Setting up a phone call on a real uvicorn process: Twilio streams from the moment the socket opens, and the
server connects the agent beside those frames instead of letting them pile up."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest

from calls.models import Call, CallEvent
from voice.offline.realtime import Script
from voice.offline.simulator import new_sid
from voice.tests.conftest import HARBOR_SCRIPT
from voice.tests.test_call_e2e import closed_with, finalized_call, open_stream, start_message, upstream_record

pytestmark = pytest.mark.e2e

CONNECT_DELAY_MS = 800  # how long OpenAI takes to accept the socket in these tests
FRAME_MS = 20
SILENCE = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of μ-law silence


def media(stream_sid: str, seq: int) -> str:
    return json.dumps({"event": "media", "sequenceNumber": str(seq + 2), "streamSid": stream_sid,
                       "media": {"track": "inbound", "chunk": str(seq + 1), "timestamp": str(seq * FRAME_MS),
                                 "payload": SILENCE}})


def stop(call_sid: str, stream_sid: str, seq: int) -> str:
    return json.dumps({"event": "stop", "sequenceNumber": str(seq), "streamSid": stream_sid,
                       "stop": {"accountSid": "AC", "callSid": call_sid}})


@pytest.mark.parametrize("live_asgi", ["uvicorn"], indirect=True)
def test_media_that_arrives_while_the_agent_connects_is_dropped_not_delivered_late(live_asgi, standin):
    standin.script = Script.from_obj({**HARBOR_SCRIPT, "connect_delay_ms": CONNECT_DELAY_MS})
    call_sid, stream_sid = new_sid("CA"), new_sid("MZ")
    frames = 100  # 2 s of audio, from the moment the stream starts, as Twilio sends it

    async def scenario() -> None:
        ws, params = await open_stream(live_asgi, call_sid)
        await ws.send(start_message(call_sid, params, stream_sid))
        started = time.monotonic()
        for seq in range(frames):
            await asyncio.sleep(max(0.0, started + seq * FRAME_MS / 1000 - time.monotonic()))
            await ws.send(media(stream_sid, seq))
        await ws.send(stop(call_sid, stream_sid, frames + 2))
        await closed_with(ws)

    asyncio.run(scenario())
    call = finalized_call(call_sid)
    assert call.end_reason == "caller_hung_up"
    connected = CallEvent.objects.get(call=call, kind=CallEvent.Kind.STATUS, payload__step="agent_connected")
    assert connected.payload["setup_ms"] >= CONNECT_DELAY_MS
    assert connected.payload["early_audio_ms"] >= CONNECT_DELAY_MS - 4 * FRAME_MS
    # Before OpenAI accepted the socket no frame could be sent on; held back and sent later, those frames would
    # reach OpenAI late and all of them would arrive. Only frames sent after the agent connected are there.
    received_ms = upstream_record(standin)["input_audio_ms"]
    assert 0 < received_ms <= frames * FRAME_MS - CONNECT_DELAY_MS + 4 * FRAME_MS, received_ms


@pytest.mark.parametrize("live_asgi", ["uvicorn"], indirect=True)
def test_a_stop_while_the_agent_connects_ends_the_call_as_hung_up(live_asgi, standin):
    # Longer than the server's OpenAI open timeout (8 s) and than closed_with's wait (5 s): a server that held the
    # socket until the connect ended would not close it in time.
    standin.script = Script.from_obj({**HARBOR_SCRIPT, "connect_delay_ms": 10_000})
    call_sid, stream_sid = new_sid("CA"), new_sid("MZ")

    async def scenario() -> int | None:
        ws, params = await open_stream(live_asgi, call_sid)
        await ws.send(start_message(call_sid, params, stream_sid))
        for seq in range(10):
            await ws.send(media(stream_sid, seq))
            await asyncio.sleep(FRAME_MS / 1000)
        await ws.send(stop(call_sid, stream_sid, 12))
        return await closed_with(ws)

    assert asyncio.run(scenario()) == 1000
    call = finalized_call(call_sid)
    assert (call.status, call.end_reason) == (Call.Status.COMPLETED, "caller_hung_up")
