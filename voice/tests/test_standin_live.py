"""Tests of the stand-in's GPT-Live mode (voice/offline/realtime/live.py): real sockets to the in-process stand-in,
every server event validated against the openai SDK's Live ``ServerEvent`` union (and every nested backend event
against the Responses stream events), every client event the tests send against the SDK's Live ``ClientEvent``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import math
import time

import pytest
from openai import OpenAI
from openai.types.live.client_event import ClientEvent
from openai.types.live.server_event import ServerEvent
from openai.types.responses import ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voice.offline.realtime import RealtimeStandin
from voice.tests.test_standin import b64, make_standin, pcm_tone, ulaw_silence, ulaw_tone  # noqa: F401 - a fixture
from voice.tests.test_standin_chat import fake_tool

AUTH = {"Authorization": "Bearer sk-test"}
SERVER_EVENTS = TypeAdapter(ServerEvent)
CLIENT_EVENTS = TypeAdapter(ClientEvent)
BACKEND_EVENTS = TypeAdapter(ResponseStreamEvent)
BACKEND_PROMPT = ("You are the supervisor behind the phone receptionist of Harbor Dental. Today is 2026-03-09 "
                  "(Monday). The caller's number is +15551234567.")
TOOLS = [{"type": "function", "name": name, "description": name.replace("_", " "),
          "parameters": {"type": "object", "properties": {}}}
         for name in ("check_availability", "book_appointment", "take_message", "transfer_to_human")]
SUPERVISOR = [
    {"match": "book", "steps": [
        {"tool": "check_availability", "arguments": {"date": "{today+1}", "service": "Cleaning"}},
        {"tool": "book_appointment", "arguments": {"name": "Ann Lee", "phone": "{caller}", "service": "Cleaning",
                                                   "start": "{result.check_availability.slots.0}"}},
        {"say": "You're booked for a cleaning on {result.book_appointment.start}."}]},
    {"default": True, "steps": [{"say": "I can help with bookings and questions."}]},
]
BOOK_REQUEST = "The caller wants to BOOK a cleaning tomorrow."
SCRIPT = {
    "greeting": "Thanks for calling {business.name}, how can I help?",
    "turns": [
        {"caller": "What are your opening hours?", "agent": "We're open nine to five."},
        {"caller": "I'd like to book a cleaning tomorrow.", "say": "One moment, let me check.",
         "tool": {"name": "ask_supervisor", "arguments": {"request": BOOK_REQUEST}}},
        {"caller": "Great, thanks.", "agent": "You're welcome. " * 6},
    ],
    "default_agent": "Sorry, could you say that again?",
    "supervisor": SUPERVISOR,
}
SESSION = {
    "model": "gpt-live-1",
    "instructions": "You are the friendly receptionist of Harbor Dental. Speak briefly.",
    "audio": {"format": {"type": "audio/pcmu", "rate": 8000}, "output": {"voice": "marin"}},
    "delegation": {"type": "responses", "responses": {
        "model": "gpt-5.6-terra", "instructions": BACKEND_PROMPT, "tools": TOOLS, "tool_choice": "auto",
        "parallel_tool_calls": False, "reasoning": {"effort": "low"}}},
}


# ---- audio and validation helpers ----------------------------------------------------------------

def strict(model: BaseModel, where: str) -> None:
    """No field the SDK model does not declare, at any depth (the SDK's models accept extras silently)."""
    assert not model.model_extra, f"{where}: unexpected field(s) {sorted(model.model_extra)}"
    for name in type(model).model_fields:
        _strict_value(getattr(model, name), f"{where}.{name}")


def _strict_value(value: object, where: str) -> None:
    if isinstance(value, BaseModel):
        strict(value, where)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _strict_value(v, f"{where}[{i}]")


def check_server_event(event: dict) -> None:
    model = SERVER_EVENTS.validate_python(event)
    assert model.type == event["type"], event
    strict(model, event["type"])
    if event["type"] == "response.event":
        nested = BACKEND_EVENTS.validate_python(event["event"])
        assert nested.type == event["event"]["type"]
        strict(nested, "response.event:" + event["event"]["type"])


def check_client_event(event: dict) -> None:
    model = CLIENT_EVENTS.validate_python(event)
    assert model.type == event["type"]
    strict(model, "client:" + event["type"])


class Live:
    """A raw GPT-Live client over ``websockets`` that validates what goes either way and keeps what it received."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.events: list[dict] = []
        self.n = 0

    async def send(self, type_: str, *, validate: bool = True, **fields) -> str:
        self.n += 1
        event = {"type": type_, "event_id": f"client_{self.n}", **fields}
        if validate:
            check_client_event(event)
        await self.ws.send(json.dumps(event))
        return event["event_id"]

    async def recv(self, timeout: float = 3.0) -> dict:
        event = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        check_server_event(event)
        self.events.append(event)
        return event

    async def until(self, type_: str, timeout: float = 5.0, **match) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.recv(timeout)
                if event["type"] == type_ and all(event.get(k) == v for k, v in match.items()):
                    return event

    async def nested(self, type_: str, timeout: float = 5.0) -> dict:
        """The next ``response.event`` whose nested event is ``type_``."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.until("response.event", timeout)
                if event["event"]["type"] == type_:
                    return event

    async def hear(self, text: str, timeout: float = 5.0) -> list[dict]:
        """Events up to the output transcript delta that completes ``text`` (whatever was said before it)."""
        start = len(self.events)
        heard = ""
        async with asyncio.timeout(timeout):
            while not heard.strip().endswith(text.strip()):
                event = await self.recv(timeout)
                if event["type"] == "session.output_transcript.delta":
                    heard += event["delta"]
        return self.events[start:]

    async def settle(self, quiet_s: float = 0.2) -> None:
        """Read until nothing arrives for ``quiet_s`` (the model's audio tail after its last words)."""
        with contextlib.suppress(TimeoutError):
            while True:
                await self.recv(quiet_s)

    async def speak(self, tone_ms: int = 600, silence_ms: int = 600) -> None:
        audio = ulaw_tone(tone_ms) + ulaw_silence(silence_ms)
        for i in range(0, len(audio), 160):
            await self.send("session.input_audio.append", audio=b64(audio[i:i + 160]))

    async def start(self, session: dict | None = None) -> dict:
        await self.send("session.start", session=copy.deepcopy(session or SESSION))
        return await self.until("session.started")


@contextlib.asynccontextmanager
async def live(standin: RealtimeStandin, url: str | None = None, headers=AUTH):
    async with connect(url or standin.live_url, additional_headers=headers) as ws:
        yield Live(ws)


async def answer_calls(client: Live, n_calls: int = 1) -> list[dict]:
    """Collect the backend's function calls up to its response.completed, answer them, send response.create."""
    calls = []
    async with asyncio.timeout(5):
        while True:
            event = await client.until("response.event")
            nested = event["event"]
            if nested["type"] == "response.output_item.done" and nested["item"]["type"] == "function_call":
                calls.append(nested["item"])
            if nested["type"] == "response.completed":
                break
    assert len(calls) == n_calls
    for call in calls:
        await client.send("response.item.create", item={
            "type": "function_call_output", "call_id": call["call_id"],
            "output": json.dumps(fake_tool(call["name"], call["arguments"]))})
    await client.send("response.create")
    return calls


@pytest.fixture
async def standin(make_standin):
    return await make_standin(script=SCRIPT)


# ---- a whole call ------------------------------------------------------------------------------

async def test_a_scripted_call_speaks_gpt_live_and_every_event_validates(standin):
    async with live(standin) as client:
        started = await client.start()
        resource = started["session"]
        assert resource["id"].startswith("live_") and resource["status"] == "active"
        assert resource["model"] == "gpt-live-1" and resource["expires_at"] > time.time() + 7000
        assert resource["audio"] == SESSION["audio"] and resource["delegation"] == SESSION["delegation"]
        assert started["client_event_id"] == "client_1"

        # the greeting, asked for with an instruction
        greet_id = await client.send("session.instructions.append", content="Greet the caller now.",
                                     delegation_id=None)
        appended = await client.until("session.instructions.appended")
        assert appended["client_event_id"] == greet_id
        events = await client.hear("Thanks for calling Harbor Dental, how can I help?")
        assert any(e["type"] == "session.output_audio.delta" for e in events)
        await client.settle()

        # a plain turn: the caller's words arrive early and late, then the answer
        await client.speak()
        first = await client.until("session.input_transcript.delta")
        rest = await client.until("session.input_transcript.delta")
        assert first["delta"] + rest["delta"] == "What are your opening hours?"
        assert first["delta"] == "What are " and first["start_ms"] <= first["end_ms"] <= rest["start_ms"]
        await client.hear("We're open nine to five.")
        await client.settle()

        # an ask_supervisor turn: the model speaks while the backend books with the business tools
        await client.speak()
        delegation = (await client.until("session.delegation.created"))["delegation"]
        assert delegation["target"] == "responses" and delegation["id"].startswith("item_")
        created = await client.nested("response.created")
        assert created["delegation_id"] == delegation["id"]
        assert created["event"]["response"]["output"] == []
        [check] = await answer_calls(client)
        assert check["name"] == "check_availability"
        assert json.loads(check["arguments"]) == {"date": "2026-03-10", "service": "Cleaning"}
        [book] = await answer_calls(client)
        assert book["name"] == "book_appointment"
        assert json.loads(book["arguments"])["start"] == "2026-03-10T09:00"
        done = await client.nested("response.output_item.done")
        assert done["event"]["item"]["type"] == "reasoning"
        done = await client.nested("response.output_item.done")
        final = "You're booked for a cleaning on 2026-03-10T09:00."
        assert done["event"]["item"]["content"][0]["text"] == final
        completed = await client.nested("response.completed")
        usage = completed["event"]["response"]["usage"]
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
        await client.hear(final)
        await client.settle()

        # a barge-in: the caller talks over the answer and the model stops itself
        await client.speak()
        await client.until("session.output_audio.delta")
        await client.speak(tone_ms=400)
        await client.hear(SCRIPT["default_agent"])
        await client.settle()

        close_id = await client.send("session.close")
        closed = await client.until("session.closed")
        assert closed["reason"] == "close_requested" and closed["client_event_id"] == close_id
        assert closed["usage"]["seconds"] > 0 and closed["session"]["id"] == resource["id"]
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.ws.close_code == 1000

    record = await standin.wait_for_close()
    assert record["protocol"] == "live" and not record["errors"] and record["closed_reason"] == "close_requested"
    assert [t["transcript"] for t in record["caller_turns"]] == [
        "What are your opening hours?", "I'd like to book a cleaning tomorrow.", "Great, thanks.",
        "(caller speech 4)"]
    assert record["caller_turns"][3]["barged_in"] is True
    spoken = record["spoken"]
    assert [s["kind"] for s in spoken] == ["greeting", "turn", "turn", "after_tool", "turn", "turn"]
    interrupted = spoken[4]
    assert interrupted["interrupted"] is True and 0 < interrupted["audio_ms"] < 65 * len(interrupted["text"])
    assert not any(s["interrupted"] for s in spoken[:4] + spoken[5:])
    [d] = record["delegations"]
    assert d["id"] == delegation["id"] and len(d["response_ids"]) == 3 and d["continued"] == 2
    assert [c["name"] for c in d["function_calls"]] == ["check_availability", "book_appointment"]
    assert all(o["known"] for o in d["outputs"]) and d["final_text"] == final
    assert record["response_creates"] == 2 and record["appended"][0]["type"] == "instructions"


async def test_the_supervisor_mapping_calls_what_the_chat_supervisor_calls_in_realtime_mode(standin):
    async with live(standin) as client:
        await client.start()
        await client.speak()
        await client.until("session.input_transcript.delta")
        await client.speak()  # the booking turn
        live_calls = [await answer_calls(client), await answer_calls(client)]
        await client.nested("response.completed")
    live_calls = [(c["name"], json.loads(c["arguments"])) for [c] in live_calls]

    # the Realtime engine's supervisor: chat completions, driven the way voice/supervisor.py drives them
    messages = [{"role": "system", "content": BACKEND_PROMPT},
                {"role": "user", "content": json.dumps({"agent_request": BOOK_REQUEST})}]
    chat_calls = []
    with OpenAI(api_key="sk-test", base_url=standin.base_url, max_retries=0, timeout=5) as sdk:
        for _ in range(3):
            completion = await asyncio.to_thread(
                sdk.chat.completions.create, model="gpt-4.1-mini", messages=messages,
                tools=[{"type": "function", "function": {"name": t["name"], "parameters": t["parameters"]}}
                       for t in TOOLS])
            message = completion.choices[0].message
            if not message.tool_calls:
                break
            [call] = message.tool_calls
            chat_calls.append((call.function.name, json.loads(call.function.arguments)))
            messages.append({"role": "assistant", "content": None, "tool_calls": [call.model_dump(
                include={"id", "type", "function"})]})
            messages.append({"role": "tool", "tool_call_id": call.id,
                             "content": json.dumps(fake_tool(call.function.name, call.function.arguments))})
    assert live_calls == chat_calls and len(chat_calls) == 2


async def test_a_direct_tool_turn_calls_the_tool_and_speaks_after_tool(make_standin):
    standin = await make_standin(script={"turns": [
        {"caller": "Any time tomorrow?", "say": "Let me look.",
         "tool": {"name": "check_availability", "arguments": {"date": "2026-03-10"}},
         "after_tool": "There are {output.count} free slots."}]})
    async with live(standin) as client:
        await client.start()
        await client.speak()
        [call] = await answer_calls(client)
        assert (call["name"], json.loads(call["arguments"])) == ("check_availability", {"date": "2026-03-10"})
        await client.hear("There are 2 free slots.")
    record = await standin.wait_for_close()
    assert [s["text"] for s in record["spoken"]] == ["Let me look.", "There are 2 free slots."]


async def test_a_function_the_session_does_not_declare_is_not_called(make_standin):
    standin = await make_standin(script={"default_agent": "Sorry?", "turns": [
        {"tool": {"name": "end_call", "arguments": {}}}]})
    async with live(standin) as client:
        await client.start()
        await client.speak()
        await client.hear("Sorry?")
    record = await standin.wait_for_close()
    assert record["tool_calls"] == [] and "end_call" in record["warnings"][0]


# ---- session.start ---------------------------------------------------------------------------------

@pytest.mark.parametrize("change, param", [
    ({"audio": {"format": {"type": "audio/pcmu", "rate": 8000}, "input": {"turn_detection": None}}},
     "session.audio.input"),
    ({"type": "realtime"}, "session.type"),
    ({"turn_detection": {"type": "server_vad"}}, "session.turn_detection"),
    ({"tools": []}, "session.tools"),
    ({"output_modalities": ["audio"]}, "session.output_modalities"),
    ({"delegation": {"type": "responses", "responses": {"model": "m", "temperature": 0.2}}},
     "session.delegation.responses.temperature"),
])
async def test_an_unknown_field_refuses_the_start_with_its_path(standin, change, param):
    async with live(standin) as client:
        start_id = await client.send("session.start", validate=False, session={**SESSION, **change})
        error = await client.until("error")
        assert error["error"]["code"] == "unknown_parameter" and error["error"]["param"] == param
        assert error["error"]["client_event_id"] == start_id
        with pytest.raises(ConnectionClosed):
            await client.recv()
    assert "session.started" not in [e["type"] for e in client.events]
    record = await standin.wait_for_close()
    assert record["rejected"] == "unknown_parameter" and record["closed_by"] == "server"


@pytest.mark.parametrize("audio, code, param", [
    ({"format": {"type": "audio/pcmu", "rate": 16000}}, "invalid_value", "session.audio.format.rate"),
    ({"format": {"type": "audio/pcmu"}}, "invalid_value", "session.audio.format.rate"),
    ({"output": {"voice": "nova"}}, "forbidden", "session.audio.output.voice"),
])
async def test_a_bad_format_or_voice_refuses_the_start(standin, audio, code, param):
    async with live(standin) as client:
        await client.send("session.start", validate=False, session={**SESSION, "audio": audio})
        error = await client.until("error")
        assert (error["error"]["code"], error["error"]["param"]) == (code, param)
        with pytest.raises(ConnectionClosed):
            await client.recv()


async def test_a_missing_model_refuses_the_start(standin):
    async with live(standin) as client:
        await client.send("session.start", validate=False, session={"instructions": "Hi"})
        error = await client.until("error")
        assert (error["error"]["code"], error["error"]["param"]) == ("missing_required_parameter", "session.model")


async def test_a_custom_voice_pcm_16k_and_the_seed_input_are_accepted(standin):
    seed = [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello again."}]}]
    session = {"model": "gpt-live-1", "audio": {"format": {"type": "audio/pcm", "rate": 16000},
                                                "output": {"voice": {"id": "voice_123"}}}, "input": seed}
    async with live(standin) as client:
        started = await client.start(session)
        assert started["session"]["input"] == seed and started["session"]["delegation"] == {"type": "client"}
        await client.send("session.commentary.append", content="  Just a moment.  ", delegation_id=None)
        await client.until("session.commentary.appended")
        events = await client.hear("Just a moment.")
        audio = [e for e in events if e["type"] == "session.output_audio.delta"]
        assert audio and all(len(base64.b64decode(e["delta"])) % 2 == 0 for e in audio)
    record = await standin.wait_for_close()
    assert record["input"] == seed and record["spoken"][0]["kind"] == "commentary"


async def test_a_model_query_parameter_is_an_unknown_parameter(standin):
    async with live(standin, url=standin.live_url + "?model=gpt-live-1") as client:
        error = await client.until("error")
        assert (error["error"]["code"], error["error"]["param"]) == ("unknown_parameter", "model")
        with pytest.raises(ConnectionClosed):
            await client.recv()


async def test_it_rejects_an_upgrade_without_a_bearer_token(standin):
    with pytest.raises(InvalidStatus) as exc:
        async with connect(standin.live_url):
            pass
    assert exc.value.response.status_code == 401


async def test_events_before_session_start_are_errors_and_realtime_events_too(standin):
    async with live(standin) as client:
        await client.send("session.input_audio.append", audio=b64(ulaw_silence(20)))
        assert (await client.until("error"))["error"]["code"] == "session_not_started"
        await client.start()
        await client.send("input_audio_buffer.commit", validate=False)
        assert (await client.until("error"))["error"]["param"] == "type"


# ---- delegation commands ----------------------------------------------------------------------------

async def test_response_create_with_a_call_unanswered_is_refused_and_the_session_goes_on(make_standin):
    standin = await make_standin(script={"turns": [
        {"tool": {"name": "book_appointment", "arguments": {"start": "2026-03-10T09:00"}},
         "after_tool": "Booked for {output.start}."}]})
    async with live(standin) as client:
        await client.start()
        await client.speak()
        call = (await client.nested("response.output_item.done"))["event"]["item"]
        if call["type"] == "reasoning":
            call = (await client.nested("response.output_item.done"))["event"]["item"]
        await client.nested("response.completed")
        await client.send("response.create")
        error = await client.until("error")
        assert error["error"]["code"] == "function_call_outputs_required"
        await client.send("response.item.create", item={"type": "function_call_output", "call_id": "call_nope",
                                                        "output": "{}"})
        assert (await client.until("error"))["error"]["param"] == "item.call_id"
        await client.send("response.item.create", item={
            "type": "function_call_output", "call_id": call["call_id"],
            "output": json.dumps(fake_tool(call["name"], call["arguments"]))})
        await client.send("response.create")
        await client.hear("Booked for 2026-03-10T09:00.")
    record = await standin.wait_for_close()
    assert [e["code"] for e in record["errors"]] == ["function_call_outputs_required", "invalid_value"]
    assert [o["known"] for o in record["tool_outputs"]] == [False, True]
    assert record["response_creates"] == 2


async def test_client_delegation_announces_the_delegation_to_the_client(make_standin):
    standin = await make_standin(script={"turns": [{"tool": {"name": "ask_supervisor", "arguments": {}}}]})
    async with live(standin) as client:
        await client.start({**SESSION, "delegation": {"type": "client"}})
        await client.speak()
        created = await client.until("session.delegation.created")
        assert created["delegation"]["target"] == "client" and "response_id" not in created["delegation"]
        await client.send("session.commentary.append", content="It's booked.",
                          delegation_id=created["delegation"]["id"])
        await client.hear("It's booked.")
        await client.send("response.create")
        assert (await client.until("error"))["error"]["code"] == "invalid_value"
    record = await standin.wait_for_close()
    assert record["delegations"][0]["target"] == "client"


async def test_session_update_changes_the_backend_but_nothing_else(standin):
    async with live(standin) as client:
        await client.start()
        await client.send("session.update", session={"delegation": {"type": "responses", "responses": {
            "instructions": "Be brief."}}})
        updated = await client.until("session.updated")
        backend = updated["session"]["delegation"]["responses"]
        assert backend["instructions"] == "Be brief." and backend["model"] == "gpt-5.6-terra"
        await client.send("session.update", validate=False, session={"instructions": "New voice."})
        error = await client.until("error")
        assert (error["error"]["code"], error["error"]["param"]) == ("immutable_field_update", "session.instructions")
        await client.send("session.update", session={"delegation": {"type": "client"}})
        error = await client.until("error")
        assert error["error"]["param"] == "session.delegation.type"
        await client.send("session.instructions.append", content="Redirect.", delegation_id="item_x")
        assert (await client.until("error"))["error"]["param"] == "delegation_id"


# ---- usage, expiry, close ---------------------------------------------------------------------------

async def test_usage_updates_are_cumulative_and_close_reports_the_total(make_standin):
    standin = await make_standin(script={"live": {"usage_interval_ms": 100}})
    async with live(standin) as client:
        await client.start()
        seconds = [(await client.until("session.usage.updated"))["usage"]["seconds"] for _ in range(3)]
        assert seconds == sorted(seconds) and seconds[0] >= 0.09 and seconds[2] >= 0.27
        await client.send("session.close")
        closed = await client.until("session.closed")
        assert closed["usage"]["seconds"] >= seconds[-1]
    record = await standin.wait_for_close()
    assert record["usage_seconds"] == closed["usage"]["seconds"] and record["close_code"] == 1000


async def test_expire_after_ms_closes_the_session_as_expired(make_standin):
    standin = await make_standin(script={"fail": {"expire_after_ms": 300}})
    async with live(standin) as client:
        started = await client.start()
        assert started["session"]["expires_at"] <= math.ceil(time.time() + 0.3)
        closed = await client.until("session.closed")
        assert closed["reason"] == "expired"
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.ws.close_code == 1000
    record = await standin.wait_for_close()
    assert record["closed_reason"] == "expired" and record["closed_by"] == "server"


async def test_refuse_connection_and_drop_work_on_the_live_path(make_standin):
    standin = await make_standin(script={"fail": {"refuse_connection": {"count": 1}}})
    with pytest.raises(InvalidStatus) as exc:
        async with live(standin):
            pass
    assert exc.value.response.status_code == 500
    async with live(standin) as client:
        await client.start()
        assert standin.drop_live_sessions(1.0) == [standin.last_session["id"]]
        with pytest.raises(ConnectionClosed):
            await client.recv()


# ---- echo mode -------------------------------------------------------------------------------

async def test_echo_mode_sends_every_append_straight_back_and_says_nothing_of_its_own(make_standin):
    standin = await make_standin(echo=True)
    # A loud tone then quiet: without echo this would be a caller turn and an answer.
    audio = ulaw_tone(600) + ulaw_silence(700)
    frames = [b64(audio[i:i + 160]) for i in range(0, len(audio), 160)]
    async with live(standin) as client:
        await client.send("session.input_audio.append", audio=frames[0])
        assert (await client.until("error"))["error"]["code"] == "session_not_started"  # no echo before the start
        await client.start()
        await client.send("session.instructions.append", content="Greet the caller.", delegation_id=None)
        appended = await client.until("session.instructions.appended")
        replies = []
        for i, frame in enumerate(frames):
            event = {"type": "session.input_audio.append", "audio": frame}
            check_client_event(event)
            # both compact JSON and Python's default separators take the fast path
            await client.ws.send(json.dumps(event, separators=(",", ":")) if i % 2 else json.dumps(event))
            replies.append(await client.recv())
        await client.settle()
        await client.send("session.close")
        closed = await client.until("session.closed")
    assert appended["start_ms"] == appended["end_ms"]
    for reply in replies:  # exactly the SDK's OutputAudioDeltaEvent: no event_id, no timing
        assert type(SERVER_EVENTS.validate_python(reply)).__name__ == "OutputAudioDeltaEvent"
        assert set(reply) == {"type", "delta"}
    assert [r["delta"] for r in replies] == frames
    assert closed["reason"] == "close_requested" and closed["usage"]["seconds"] >= 0
    assert {e["type"] for e in client.events} == {
        "error", "session.started", "session.instructions.appended", "session.output_audio.delta", "session.closed"}
    record = await standin.wait_for_close()
    assert record["mode"] == "echo"
    assert record["spoken"] == [] and record["caller_turns"] == []
    assert record["event_counts"]["session.input_audio.append"] == len(frames) + 1
    assert record["events_sent"]["session.output_audio.delta"] == len(frames)


async def test_echo_scripted_mode_echoes_every_append_and_still_runs_the_script(make_standin):
    standin = await make_standin(script=SCRIPT, echo_scripted=True)
    audio = ulaw_tone(600) + ulaw_silence(700)
    frames = [audio[i:i + 160] for i in range(0, len(audio), 160)]
    async with live(standin) as client:
        await client.start()
        for frame in frames:
            await client.send("session.input_audio.append", audio=b64(frame))
        await client.hear("We're open nine to five.")
    echoed = [e["delta"] for e in client.events if e["type"] == "session.output_audio.delta"][:len(frames)]
    assert echoed == [b64(frame) for frame in frames]  # every frame, in order, before the answer
    record = await standin.wait_for_close()
    assert record["mode"] == "echo+scripted"
    assert [t["transcript"] for t in record["caller_turns"]] == ["What are your opening hours?"]


async def test_the_sessions_log_tells_the_protocols_apart(standin):
    async with live(standin) as client:
        await client.start()
    async with connect(standin.url + "?model=gpt-realtime", additional_headers=AUTH) as ws:
        await ws.recv()
    await standin.wait_for_close()
    assert [r["protocol"] for r in standin.sessions.values()] == ["live", "realtime"]


async def test_odd_pcm_audio_is_invalid_and_mute_stops_the_detector(standin):
    async with live(standin) as client:
        await client.start({"model": "gpt-live-1"})
        await client.send("session.input_audio.append", audio=b64(b"\x00\x01\x02"))
        error = await client.until("error")
        assert (error["error"]["code"], error["error"]["param"]) == ("invalid_audio", "audio")
        await client.send("session.input_audio.mute")
        await client.until("session.input_audio.muted")
        await client.send("session.input_audio.append", audio=b64(pcm_tone(600)))
        await client.send("session.input_audio.unmute")
        await client.until("session.input_audio.unmuted")
    record = await standin.wait_for_close()
    assert record["caller_turns"] == [] and record["input_audio_ms"] == 600


async def test_drop_after_ms_aborts_a_live_session_after_its_start(make_standin):
    standin = await make_standin(script={"fail": {"drop_after_ms": 100, "sessions": 1}})
    async with live(standin) as client:
        await client.start()
        with pytest.raises(ConnectionClosed):
            await client.until("never", timeout=2)
    record = await standin.wait_for_close()
    assert record["close_code"] == 1006 and record["closed_by"] == "server"
    async with live(standin) as client:  # the next session behaves
        await client.start()
        await client.send("session.close")
        await client.until("session.closed")


async def test_a_supervisor_delay_slows_the_backend_but_not_the_voice(make_standin):
    script = {**SCRIPT, "supervisor": [{"default": True, "delay_ms": 400, "steps": [{"say": "All done."}]}],
              "turns": [SCRIPT["turns"][1]]}
    standin = await make_standin(script=script)
    async with live(standin) as client:
        await client.start()
        await client.speak()
        await client.until("session.delegation.created")
        began = time.monotonic()
        await client.nested("response.completed")
        assert time.monotonic() - began >= 0.35
        await client.hear("All done.")
        await client.settle()
    record = await standin.wait_for_close()
    assert [(s["text"], s["interrupted"]) for s in record["spoken"]] == [
        ("One moment, let me check.", False), ("All done.", False)]


async def test_a_resumed_session_carries_on_from_the_script_turn_after_its_seeded_history(make_standin):
    standin = await make_standin(script={"greeting": "Hello!", "turns": [
        {"caller": "First question?", "agent": "First answer."},
        {"caller": "Second question?", "agent": "Second answer."}]})
    seed = [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Resumed."}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello!"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "First question?"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "First answer."}]}]
    async with live(standin) as client:
        await client.start({**SESSION, "input": seed})
        await client.speak()
        await client.hear("Second answer.")
    record = await standin.wait_for_close()
    assert [s["text"] for s in record["spoken"]] == ["Second answer."]  # no second greeting, no repeated turn
    assert [t["transcript"] for t in record["caller_turns"]] == ["Second question?"]
