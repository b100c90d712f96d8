"""Tests of the local OpenAI Realtime stand-in (voice/offline/realtime/).

Protocol checks use plain ``websockets`` clients; one test drives the official openai SDK's GA
realtime client and validates every event it receives against the SDK's typed models.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import typing
import urllib.error
import urllib.request
import warnings
from array import array
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from voice.offline.realtime import BETA_DISABLED_MESSAGE, RealtimeStandin, Script, load_script

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

AUTH = {"Authorization": "Bearer sk-test"}
REPO = Path(__file__).resolve().parents[2]
SCRIPT = {
    "greeting": "Thanks for calling Harbor Dental, how can I help?",
    "turns": [
        {"caller": "What are your opening hours?", "agent": "We're open nine to five, Monday to Friday."},
        {"caller": "Please put me through to someone.", "say": "Let me connect you.",
         "tool": {"name": "transfer_to_human", "arguments": {"reason": "caller asked"}},
         "after_tool": "Transferring you now, {output.agent} will pick up."},
    ],
    "default_agent": "I'm sorry, could you say that again?",
}
LONG_GREETING = {"greeting": "Thanks for calling Harbor Dental. " * 6}  # ~13 s of audio


# ---- audio helpers ---------------------------------------------------------------------------

def _sine(rate: int, ms: int, freq: int = 440, amplitude: int = 8000) -> bytes:
    n = rate * ms // 1000
    return array("h", (int(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(n))).tobytes()


def ulaw_tone(ms: int) -> bytes:
    return audioop.lin2ulaw(_sine(8000, ms), 2)


def ulaw_silence(ms: int) -> bytes:
    return b"\xff" * (8 * ms)


def pcm_tone(ms: int) -> bytes:
    return _sine(24000, ms)


def pcm_silence(ms: int) -> bytes:
    return b"\x00" * (48 * ms)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---- client helpers --------------------------------------------------------------------------

class Client:
    """A raw GA Realtime client over ``websockets`` that keeps every event it received."""

    def __init__(self, ws):
        self.ws = ws
        self.events: list[dict] = []

    async def send(self, type_: str, **fields) -> None:
        await self.ws.send(json.dumps({"type": type_, **fields}))

    async def recv(self, timeout: float = 3.0) -> dict:
        event = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.events.append(event)
        return event

    async def until(self, type_: str, timeout: float = 5.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.recv(timeout)
                if event["type"] == type_:
                    return event

    async def between(self, type_: str, timeout: float = 5.0) -> list[dict]:
        """Events received from now up to and including the next ``type_``."""
        start = len(self.events)
        await self.until(type_, timeout)
        return self.events[start:]

    async def append(self, audio: bytes, frame_bytes: int) -> None:
        for i in range(0, len(audio), frame_bytes):
            await self.send("input_audio_buffer.append", audio=b64(audio[i:i + frame_bytes]))

    async def update(self, **session) -> dict:
        await self.send("session.update", session={"type": "realtime", **session})
        return await self.until("session.updated")


@contextlib.asynccontextmanager
async def realtime(standin: RealtimeStandin, headers=AUTH, model: str = "gpt-realtime"):
    async with connect(f"{standin.url}?model={model}", additional_headers=headers) as ws:
        client = Client(ws)
        yield client


def types_of(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def http(method: str, url: str, headers: dict | None = None, body: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
async def make_standin():
    started: list[RealtimeStandin] = []

    async def make(**kwargs) -> RealtimeStandin:
        kwargs.setdefault("script", SCRIPT)
        kwargs.setdefault("speed", 20)
        standin = await RealtimeStandin(port=0, **kwargs).start()
        started.append(standin)
        return standin

    yield make
    for standin in started:
        await standin.aclose()


@pytest.fixture
async def standin(make_standin):
    return await make_standin()


# ---- connecting ------------------------------------------------------------------------------

async def test_session_created_describes_the_default_ga_session(standin):
    async with realtime(standin, model="gpt-realtime-mini") as rt:
        event = await rt.recv()
    session = event["session"]
    assert event["type"] == "session.created" and event["event_id"].startswith("event_")
    assert session["type"] == "realtime" and session["object"] == "realtime.session"
    assert session["id"].startswith("sess_") and session["model"] == "gpt-realtime-mini"
    assert session["output_modalities"] == ["audio"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["voice"] == "marin"
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
        "idle_timeout_ms": None, "create_response": True, "interrupt_response": True}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}])
async def test_it_rejects_an_upgrade_without_a_bearer_token(standin, headers):
    with pytest.raises(InvalidStatus) as info:
        async with realtime(standin, headers=headers):
            pass
    assert info.value.response.status_code == 401
    assert standin.sessions == {}


async def test_beta_header_gets_beta_api_shape_disabled_and_close_4000(standin):
    async with realtime(standin, headers={**AUTH, "OpenAI-Beta": "realtime=v1"}) as rt:
        event = await rt.recv()
        with pytest.raises(ConnectionClosed):
            await rt.recv()
        assert rt.ws.close_code == 4000
    assert event["type"] == "error"
    assert event["error"]["type"] == "invalid_request_error"
    assert event["error"]["code"] == "beta_api_shape_disabled"
    assert event["error"]["message"] == BETA_DISABLED_MESSAGE
    record = await standin.wait_for_close()
    assert record["rejected"] == "beta_api_shape_disabled"
    assert record["headers"]["openai_beta"] == "realtime=v1"
    assert (record["closed_by"], record["close_code"]) == ("server", 4000)


# ---- session.update --------------------------------------------------------------------------

async def test_it_rejects_session_update_without_type(standin):
    async with realtime(standin) as rt:
        await rt.until("session.created")
        await rt.send("session.update", event_id="evt_client_7", session={"instructions": "Be a pirate."})
        error = await rt.until("error")
        updated = await rt.update(output_modalities=["audio"])
    assert error["error"] == {
        "type": "invalid_request_error", "code": "missing_required_parameter",
        "message": "Missing required parameter: 'session.type'.", "param": "session.type",
        "event_id": "evt_client_7"}
    assert updated["session"]["instructions"] != "Be a pirate."  # nothing of the rejected update applied


async def test_session_update_merges_partial_fields(standin):
    async with realtime(standin) as rt:
        await rt.update(instructions="Answer for Harbor Dental.",
                        audio={"input": {"format": {"type": "audio/pcmu"}, "transcription": {"model": "whisper-1"}}})
        event = await rt.update(audio={"output": {"voice": "cedar"}})
    session = event["session"]
    assert session["instructions"] == "Answer for Harbor Dental."
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["input"]["transcription"] == {"model": "whisper-1"}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "cedar", "speed": 1.0}


@pytest.mark.parametrize("field", ["temperature", "modalities", "voice", "input_audio_format", "turn_detection"])
async def test_it_rejects_beta_shaped_session_fields(standin, field):
    async with realtime(standin) as rt:
        await rt.send("session.update", session={"type": "realtime", field: "x"})
        error = (await rt.until("error"))["error"]
    assert error["code"] == "unknown_parameter"
    assert error["param"] == f"session.{field}"
    assert error["message"] == f"Unknown parameter: 'session.{field}'."


# ---- input audio and VAD ---------------------------------------------------------------------

async def test_server_vad_commits_a_pcm16_turn_and_responds(standin):
    async with realtime(standin) as rt:
        await rt.append(pcm_tone(600) + pcm_silence(700), frame_bytes=960)  # 20 ms frames
        events = await rt.between("response.done")
    types = types_of(events)
    started, stopped, committed = (events[types.index(t)] for t in (
        "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "input_audio_buffer.committed"))
    assert started["audio_start_ms"] == 0
    assert stopped["audio_end_ms"] == 1100  # 600 ms of speech + 500 ms of silence
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    added = events[types.index("conversation.item.added")]
    assert added["item"]["role"] == "user" and added["item"]["id"] == committed["item_id"]
    assert types.index("conversation.item.done") < types.index("response.created")
    assert "conversation.item.input_audio_transcription.completed" not in types  # transcription not configured
    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0]["transcript"] == SCRIPT["turns"][0]["agent"]


async def test_speech_started_includes_prefix_padding(standin):
    async with realtime(standin) as rt:
        await rt.append(pcm_silence(1000) + pcm_tone(200), frame_bytes=960)
        started = await rt.until("input_audio_buffer.speech_started")
    assert started["audio_start_ms"] == 700


async def test_transcription_reports_script_caller_text_then_echo_style(standin):
    async with realtime(standin) as rt:
        await rt.update(audio={"input": {"format": {"type": "audio/pcmu"}, "turn_detection": None,
                                         "transcription": {"model": "gpt-4o-mini-transcribe"}}})
        transcripts = []
        for _ in range(3):
            await rt.append(ulaw_tone(300), frame_bytes=160)
            await rt.send("input_audio_buffer.commit")
            transcripts.append(await rt.until("conversation.item.input_audio_transcription.completed"))
    assert [t["transcript"] for t in transcripts] == [
        "What are your opening hours?", "Please put me through to someone.", "(caller speech 3)"]
    assert transcripts[0]["content_index"] == 0
    assert transcripts[0]["usage"]["type"] == "tokens" and transcripts[0]["usage"]["input_tokens"] == 3


async def test_manual_commit_rejects_less_than_100ms(standin):
    async with realtime(standin) as rt:
        await rt.update(audio={"input": {"turn_detection": None}})
        await rt.append(pcm_tone(50), frame_bytes=960)
        await rt.send("input_audio_buffer.commit", event_id="evt_c")
        error = (await rt.until("error"))["error"]
    assert error["code"] == "input_audio_buffer_commit_empty"
    assert error["message"].startswith("Error committing input audio buffer: buffer too small. "
                                       "Expected at least 100ms of audio")
    assert error["event_id"] == "evt_c"


async def test_input_audio_buffer_clear_empties_the_buffer(standin):
    async with realtime(standin) as rt:
        await rt.update(audio={"input": {"turn_detection": None}})
        await rt.append(pcm_tone(300), frame_bytes=960)
        await rt.send("input_audio_buffer.clear")
        await rt.until("input_audio_buffer.cleared")
        await rt.send("input_audio_buffer.commit")
        error = (await rt.until("error"))["error"]
    assert error["code"] == "input_audio_buffer_commit_empty"


# ---- responses -------------------------------------------------------------------------------

async def test_response_streams_audio_and_transcript_in_the_output_format(standin):
    greeting = SCRIPT["greeting"]
    async with realtime(standin) as rt:
        await rt.update(audio={"output": {"format": {"type": "audio/pcmu"}}})
        await rt.send("response.create")
        events = await rt.between("response.done")
    types = types_of(events)
    deltas = [base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"]
    audio_ms = sum(len(d) for d in deltas) // 8
    assert audio_ms == max(400, 65 * len(greeting))
    assert all(len(d) == 800 for d in deltas[:-1])  # 100 ms of μ-law per delta
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
    assert text == greeting
    assert types[:3] == ["response.created", "rate_limits.updated", "response.output_item.added"]
    assert types[-6:] == ["response.output_audio.done", "response.output_audio_transcript.done",
                          "response.content_part.done", "response.output_item.done", "conversation.item.done",
                          "response.done"]
    response = events[-1]["response"]
    assert response["output"][0]["content"] == [{"type": "output_audio", "transcript": greeting}]
    usage = response["usage"]
    assert usage["output_token_details"]["audio_tokens"] == math.ceil(audio_ms / 50)
    assert usage["output_token_details"]["text_tokens"] == math.ceil(len(greeting.split()) * 1.3)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert set(usage["input_token_details"]) == {"text_tokens", "audio_tokens", "image_tokens", "cached_tokens",
                                                 "cached_tokens_details"}


async def test_audio_is_generated_faster_than_real_time_by_the_speed_factor(make_standin):
    standin = await make_standin(speed=10)
    loop = asyncio.get_running_loop()
    async with realtime(standin) as rt:
        await rt.send("response.create")
        await rt.until("response.output_audio.delta")
        t0 = loop.time()
        await rt.until("response.done")
        elapsed = loop.time() - t0
    audio_ms = 65 * len(SCRIPT["greeting"])
    assert (audio_ms - 100) / 10 / 1000 * 0.8 < elapsed < audio_ms / 10 / 1000 + 0.5


async def test_first_response_greets_and_later_ones_without_input_use_the_default(standin):
    async with realtime(standin) as rt:
        await rt.send("response.create")
        first = await rt.until("response.output_audio_transcript.done")
        await rt.until("response.done")
        await rt.send("response.create")
        second = await rt.until("response.output_audio_transcript.done")
    assert first["transcript"] == SCRIPT["greeting"]
    assert second["transcript"] == SCRIPT["default_agent"]


async def test_it_rejects_response_create_while_a_response_is_active(make_standin):
    standin = await make_standin(script=LONG_GREETING, speed=3)
    async with realtime(standin) as rt:
        await rt.send("response.create")
        created = await rt.until("response.created")
        await rt.send("response.create", event_id="evt_second")
        error = (await rt.until("error"))["error"]
        await rt.send("response.cancel")
        events = await rt.between("response.done")
    assert error["code"] == "conversation_already_has_active_response"
    assert error["message"] == (
        f"Conversation already has an active response in progress: {created['response']['id']}. "
        "Wait until the response is finished before creating a new one.")
    assert error["event_id"] == "evt_second"
    assert types_of(rt.events).count("response.created") == 1
    assert events[-1]["response"]["id"] == created["response"]["id"]


async def test_response_cancel_cancels_with_client_cancelled(make_standin):
    standin = await make_standin(script=LONG_GREETING, speed=3)
    async with realtime(standin) as rt:
        await rt.send("response.create")
        await rt.until("response.output_audio.delta")
        await rt.send("response.cancel")
        events = await rt.between("response.done")
    response = events[-1]["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert "response.output_audio.done" in types_of(events)


async def test_response_cancel_without_an_active_response_is_a_harmless_error(standin):
    async with realtime(standin) as rt:
        await rt.send("response.cancel")
        error = (await rt.until("error"))["error"]
        await rt.update(instructions="still open")
    assert error["code"] == "response_cancel_not_active"


async def test_barge_in_cancels_the_active_response_with_turn_detected(make_standin):
    standin = await make_standin(script=LONG_GREETING, speed=3)
    async with realtime(standin) as rt:
        await rt.send("response.create")
        await rt.until("response.output_audio.delta")
        await rt.append(pcm_tone(100), frame_bytes=960)
        events = await rt.between("response.done")
    types = types_of(events)
    assert types.index("input_audio_buffer.speech_started") < types.index("response.output_audio.done")
    transcript_done = events[types.index("response.output_audio_transcript.done")]
    assert LONG_GREETING["greeting"].startswith(transcript_done["transcript"])
    assert len(transcript_done["transcript"]) < len(LONG_GREETING["greeting"].strip())
    item_done = events[types.index("response.output_item.done")]
    assert item_done["item"]["status"] == "incomplete"
    response = events[-1]["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    generated = standin.sessions[next(iter(standin.sessions))]["audio_ms_by_item"][item_done["item"]["id"]]
    assert generated < 65 * len(LONG_GREETING["greeting"])
    assert response["usage"]["output_token_details"]["audio_tokens"] == math.ceil(generated / 50)


# ---- truncation ------------------------------------------------------------------------------

async def _spoken_item(rt: Client) -> tuple[str, int]:
    await rt.send("response.create")
    events = await rt.between("response.done")
    item_id = events[-1]["response"]["output"][0]["id"]
    ms = sum(len(base64.b64decode(e["delta"])) for e in events if e["type"] == "response.output_audio.delta") // 48
    return item_id, ms


async def test_it_rejects_truncate_beyond_generated_audio(standin):
    async with realtime(standin) as rt:
        item_id, generated = await _spoken_item(rt)
        await rt.send("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=generated + 60)
        error = (await rt.until("error"))["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_value"
    assert error["message"] == f"Audio content of {generated}ms is already shorter than {generated + 60}ms"
    [truncation] = standin.last_session["truncations"]
    assert truncation["accepted"] is False and truncation["generated_ms"] == generated


async def test_truncate_within_generated_audio_is_acknowledged(standin):
    async with realtime(standin) as rt:
        item_id, generated = await _spoken_item(rt)
        await rt.send("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=1200)
        event = await rt.until("conversation.item.truncated")
    assert (event["item_id"], event["content_index"], event["audio_end_ms"]) == (item_id, 0, 1200)
    [truncation] = standin.last_session["truncations"]
    assert truncation["accepted"] is True and truncation["audio_end_ms"] == 1200


async def test_truncate_rejects_an_item_that_is_not_assistant_audio(standin):
    async with realtime(standin) as rt:
        await rt.send("conversation.item.create", item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]})
        added = await rt.until("conversation.item.added")
        await rt.send("conversation.item.truncate", item_id=added["item"]["id"], content_index=0, audio_end_ms=0)
        error = (await rt.until("error"))["error"]
    assert error["message"] == "Only model output audio messages can be truncated."


# ---- function calls --------------------------------------------------------------------------

async def test_function_call_flow(standin):
    tools = [{"type": "function", "name": "transfer_to_human", "description": "Transfer the call.",
              "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}}}]
    async with realtime(standin) as rt:
        await rt.update(tools=tools)
        for text in ("What are your opening hours?", "Please put me through to someone."):
            await rt.send("conversation.item.create", item={
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
            await rt.send("response.create")
            events = await rt.between("response.done")
        types = types_of(events)
        args_done = events[types.index("response.function_call_arguments.done")]
        output = events[-1]["response"]["output"]
        await rt.send("conversation.item.create", item={
            "type": "function_call_output", "call_id": args_done["call_id"], "output": json.dumps({"agent": "Dana"})})
        await rt.until("conversation.item.done")
        await rt.send("response.create")
        after = await rt.until("response.output_audio_transcript.done")
    assert [o["type"] for o in output] == ["message", "function_call"]
    assert output[0]["content"][0]["transcript"] == "Let me connect you."
    assert args_done["call_id"].startswith("call_") and args_done["name"] == "transfer_to_human"
    assert json.loads(args_done["arguments"]) == {"reason": "caller asked"}
    assert output[1]["call_id"] == args_done["call_id"] and output[1]["status"] == "completed"
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert deltas == args_done["arguments"]
    assert after["transcript"] == "Transferring you now, Dana will pick up."
    record = standin.last_session
    assert record["tool_outputs"] == [{"call_id": args_done["call_id"], "output": '{"agent": "Dana"}', "known": True}]
    assert record["warnings"] == []


async def test_function_call_output_for_an_unknown_call_id_is_rejected(standin):
    async with realtime(standin) as rt:
        await rt.send("conversation.item.create", item={
            "type": "function_call_output", "call_id": "call_nope", "output": "{}"})
        error = (await rt.until("error"))["error"]
    assert error["code"] == "invalid_value" and error["param"] == "item.call_id"


# ---- robustness ------------------------------------------------------------------------------

async def test_invalid_json_is_an_error_and_the_socket_stays_open(standin):
    async with realtime(standin) as rt:
        await rt.ws.send("{not json")
        error = await rt.until("error")
        await rt.update(instructions="still here")
    assert error["error"]["type"] == "invalid_request_error"


async def test_an_unknown_event_type_is_an_error(standin):
    async with realtime(standin) as rt:
        await rt.send("response.audio.delta", event_id="evt_x")
        error = (await rt.until("error"))["error"]
        await rt.update(instructions="still here")
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Invalid value: 'response.audio.delta'.")
    assert error["event_id"] == "evt_x"


# ---- echo mode -------------------------------------------------------------------------------

async def test_echo_mode_returns_the_same_payload(make_standin):
    standin = await make_standin(echo=True)
    payloads = [b64(bytes([i]) * 160) for i in range(5)]
    async with realtime(standin) as rt:
        await rt.until("session.created")
        replies = []
        for i, payload in enumerate(payloads):
            event = {"type": "input_audio_buffer.append", "audio": payload}
            # both compact JSON and Python's default separators take the fast path
            await rt.ws.send(json.dumps(event, separators=(",", ":")) if i % 2 else json.dumps(event))
            replies.append(await rt.recv())
        await rt.send("response.create")
        updated = await rt.update(instructions="x")
    assert [r["type"] for r in replies] == ["response.output_audio.delta"] * 5
    assert [r["delta"] for r in replies] == payloads
    assert len({r["response_id"] for r in replies}) == len({r["item_id"] for r in replies}) == 1
    assert len({r["event_id"] for r in replies}) == 5
    assert updated["type"] == "session.updated"  # response.create produced nothing in between
    assert standin.last_session["event_counts"]["input_audio_buffer.append"] == 5


async def test_echo_scripted_mode_echoes_every_append_and_still_runs_the_script(make_standin):
    standin = await make_standin(echo_scripted=True)
    frames = [pcm_tone(600)[i:i + 960] for i in range(0, 28800, 960)] + \
             [pcm_silence(700)[i:i + 960] for i in range(0, 33600, 960)]
    async with realtime(standin) as rt:
        await rt.until("session.created")
        for frame in frames:
            await rt.send("input_audio_buffer.append", audio=b64(frame))
        await rt.until("response.done")
        echo_item = next(e["item_id"] for e in rt.events if e["type"] == "response.output_audio.delta")
        await rt.send("conversation.item.truncate", item_id=echo_item, content_index=0, audio_end_ms=0)
        truncated = await rt.until("conversation.item.truncated")
    echoed = [e["delta"] for e in rt.events if e["type"] == "response.output_audio.delta" and e["item_id"] == echo_item]
    assert echoed == [b64(frame) for frame in frames]  # every frame, in order, before and during the reply
    types = types_of(rt.events)
    assert "input_audio_buffer.speech_started" in types and "input_audio_buffer.committed" in types
    record = standin.last_session
    assert record["mode"] == "echo+scripted" and not record["errors"]
    assert record["responses"][0]["text"] == SCRIPT["turns"][0]["agent"]
    assert record["event_counts"]["input_audio_buffer.append"] == len(frames)
    assert truncated["item_id"] == echo_item


async def test_drop_aborts_the_chosen_share_of_live_sessions(standin):
    async with realtime(standin) as first, realtime(standin) as second, realtime(standin) as third:
        for rt in (first, second, third):
            await rt.until("session.created")
        status, body = await asyncio.to_thread(http, "POST", standin.http_url + "/standin/drop",
                                               {"Content-Type": "application/json"}, b'{"share": 0.5}')
        assert status == 200 and len(body["dropped"]) == 1 and body["live"] == 3
        with pytest.raises(ConnectionClosedError):
            await second.recv()  # every 2nd session in connection order: the second, without a close frame
        await first.update(instructions="still here")
        await third.update(instructions="still here")
    assert standin.sessions[body["dropped"][0]]["close_code"] == 1006
    status, _ = await asyncio.to_thread(http, "POST", standin.http_url + "/standin/drop", None, b'{"share": 2}')
    assert status == 400


# ---- HTTP and the session log ----------------------------------------------------------------

async def test_sessions_log_shows_the_socket_closed_by_the_client(standin):
    async with realtime(standin) as rt:
        await rt.update(instructions="Log me.")
        await rt.append(pcm_silence(100), frame_bytes=4800)
    await standin.wait_for_close()
    status, body = await asyncio.to_thread(http, "GET", standin.http_url + "/standin/sessions")
    assert status == 200
    [record] = body["sessions"].values()
    assert record["events_received"] == ["session.update", "input_audio_buffer.append"]
    assert record["headers"]["authorization"] is True and record["headers"]["openai_beta"] is None
    assert record["session"]["instructions"] == "Log me."
    assert record["input_audio_ms"] == 100
    assert (record["closed_by"], record["close_code"]) == ("client", 1000)
    assert record["started_at"] <= record["ended_at"]


async def test_reset_clears_the_session_log(standin):
    async with realtime(standin) as rt:
        await rt.recv()
    await standin.wait_for_close()
    status, body = await asyncio.to_thread(http, "POST", standin.http_url + "/standin/reset")
    assert (status, body["cleared"]) == (200, 1)
    assert standin.sessions == {}


async def test_models_endpoint_answers_in_openai_list_shape(standin):
    status, body = await asyncio.to_thread(http, "GET", standin.base_url + "/models", AUTH)
    assert status == 200 and body["object"] == "list"
    assert {"id": "gpt-realtime", "object": "model", "created": 1756339200, "owned_by": "system"} in body["data"]
    status, body = await asyncio.to_thread(http, "GET", standin.base_url + "/models")
    assert status == 401 and body["error"]["type"] == "invalid_request_error"


async def test_added_http_routes_receive_the_request_body(standin):
    standin.add_http_route("POST", "/v1/chat/completions", lambda req: (200, {"echo": req.json()}))
    body = json.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "x" * 5000}]}).encode()
    status, answer = await asyncio.to_thread(
        http, "POST", standin.base_url + "/chat/completions", {**AUTH, "Content-Type": "application/json"}, body)
    assert status == 200 and answer["echo"] == json.loads(body)


# ---- scripted failures -----------------------------------------------------------------------

async def test_refuse_connection_fails_the_upgrade_with_http_500(make_standin):
    standin = await make_standin(script={"fail": {"refuse_connection": True}})
    with pytest.raises(InvalidStatus) as info:
        async with realtime(standin):
            pass
    assert info.value.response.status_code == 500


async def test_drop_after_ms_aborts_the_connection_without_a_close_frame(make_standin):
    standin = await make_standin(script={"fail": {"drop_after_ms": 100}})
    async with realtime(standin) as rt:
        await rt.update(instructions="x")
        with pytest.raises(ConnectionClosedError):
            await rt.until("never", timeout=3)
        assert rt.ws.protocol.close_rcvd is None
    record = await standin.wait_for_close()
    assert (record["closed_by"], record["close_code"]) == ("server", 1006)


async def test_error_on_session_update_answers_with_the_configured_error(make_standin):
    standin = await make_standin(script={"fail": {"error_on_session_update": {"code": "server_error", "count": 1}}})
    async with realtime(standin) as rt:
        await rt.send("session.update", session={"type": "realtime"})
        error = (await rt.until("error"))["error"]
        updated = await rt.update(instructions="second try")
    assert error["code"] == "server_error"
    assert updated["session"]["instructions"] == "second try"


async def test_expire_after_ms_sends_session_expired_and_closes_1001(make_standin):
    standin = await make_standin(script={"fail": {"expire_after_ms": 50}})
    async with realtime(standin) as rt:
        error = (await rt.until("error"))["error"]
        with pytest.raises(ConnectionClosed):
            await rt.recv()
        assert rt.ws.close_code == 1001
    assert error["code"] == "session_expired"


# ---- running it ------------------------------------------------------------------------------

def test_start_in_thread_serves_synchronous_clients():
    from websockets.sync.client import connect as sync_connect

    standin = RealtimeStandin(port=0).start_in_thread()
    try:
        with sync_connect(standin.url + "?model=gpt-realtime", additional_headers=AUTH) as ws:
            assert json.loads(ws.recv(timeout=3))["type"] == "session.created"
        status, body = http("GET", standin.http_url + "/standin/health")
        assert (status, body) == (200, {"status": "ok"})
        assert len(standin.sessions) == 1
    finally:
        standin.stop()
    with pytest.raises(OSError):
        http("GET", standin.http_url + "/standin/health")


def test_script_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown key"):
        Script.from_obj({"turns": [{"caller": "hi", "agnet": "typo"}]})
    with pytest.raises(ValueError, match="after_tool"):
        Script.from_obj({"turns": [{"agent": "hi", "after_tool": "needs a tool"}]})


def test_the_example_fixture_script_loads():
    script = load_script(REPO / "voice" / "fixtures" / "standin_harbor_dental.json")
    assert script.turns[1].tool["name"] == "ask_supervisor"
    assert script.turns[2].tool["name"] == "end_call"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
async def test_espeak_audio_speaks_the_reply_text(make_standin):
    standin = await make_standin(script={"greeting": "Hello there."}, audio="espeak", speed=0)
    async with realtime(standin) as rt:
        await rt.update(audio={"output": {"format": {"type": "audio/pcmu"}}})
        await rt.send("response.create")
        events = await rt.between("response.done")
    audio = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
    lin = audioop.ulaw2lin(audio, 2)
    assert len(audio) % 8 == 0 and 400 < len(audio) // 8 < 3000
    assert len(audio) // 8 != max(400, 65 * len("Hello there."))  # not the tone
    assert audioop.rms(lin, 2) > 300


def test_management_command_prints_the_urls_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "realtime_standin", "--port", "0", "--speed", "5"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ},
    )
    try:
        lines = []
        while not any(line.strip().startswith("OPENAI_BASE_URL=") for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        realtime_url = next(l.split("=", 1)[1].strip() for l in lines if "OPENAI_REALTIME_URL=" in l)
        base_url = next(l.split("=", 1)[1].strip() for l in lines if "OPENAI_BASE_URL=" in l)
        assert realtime_url.startswith("ws://127.0.0.1:") and realtime_url.endswith("/v1/realtime")
        assert base_url == realtime_url.replace("ws://", "http://").removesuffix("/realtime")
        assert http("GET", base_url + "/models", AUTH)[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- the official openai SDK -----------------------------------------------------------------

async def test_openai_sdk_realtime_client_parses_every_event(make_standin):
    from openai import AsyncOpenAI
    from openai.types.realtime import RealtimeErrorEvent

    standin = await make_standin(speed=50)
    client = AsyncOpenAI(api_key="sk-test", base_url=standin.base_url)
    seen: list[str] = []
    event_ids: list[str] = []
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={
            "type": "realtime",
            "output_modalities": ["audio"],
            "audio": {
                "input": {"format": {"type": "audio/pcmu"}, "transcription": {"model": "gpt-4o-mini-transcribe"},
                          "turn_detection": {"type": "server_vad", "create_response": True,
                                             "interrupt_response": True}},
                "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
            },
        })
        audio = ulaw_tone(1000) + ulaw_silence(1000)
        for i in range(0, len(audio), 160):
            await conn.input_audio_buffer.append(audio=b64(audio[i:i + 160]))
        async with asyncio.timeout(10):
            async for event in conn:
                cls = type(event)
                # not the SDK's fallback (an unknown type lands in the union's first member) ...
                assert event.type in typing.get_args(cls.model_fields["type"].annotation), event
                # ... and what was sent validates strictly against that typed model
                cls.model_validate(event.to_dict())
                assert not isinstance(event, RealtimeErrorEvent), event
                seen.append(event.type)
                event_ids.append(event.event_id)
                if {"response.done", "conversation.item.input_audio_transcription.completed"} <= set(seen):
                    break
    assert {
        "session.created", "session.updated", "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed", "response.created",
        "response.output_audio.delta", "response.output_audio.done", "response.done",
    } <= set(seen)
    assert len(set(event_ids)) == len(event_ids)
    record = await standin.wait_for_close()
    assert record["closed_by"] == "client"
    assert record["caller_turns"][0]["transcript"] == SCRIPT["turns"][0]["caller"]
