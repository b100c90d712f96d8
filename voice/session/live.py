"""The GPT-Live engine: a call session's primary WebSocket to `/v1/live/sessions`, full duplex.

GPT-Live listens while it speaks and decides itself when to talk and when to stop; there is no VAD, no
`response.create` to speak, no truncate. Its reasoning and tools are delegated to a Responses backend configured at
`session.start`: the supervisor's instructions (for this business and caller) and our tools — the business tools of
`calls.tools` plus end_call and transfer_to_human. The backend's function calls arrive inside `response.event` on
this socket; our server runs them with the same tool layer as the supervisor (scoped to the call's business and the
call's own caller number, whatever the model passes), answers each with `response.item.create` and continues with
one `response.create` once all are answered. Every step is a supervisor step on the call's timeline.

What the caller heard is still ours to know: agent audio goes out with marks as on Realtime; when the caller's
transcript shows them talking over audio still queued at their side, that audio is cleared and the interruption
recorded (the model stops itself). Transcripts come as fragments with session-relative times and no turn events:
they are grouped here into turns (a change of speaker, or a pause of TURN_GAP_S).

A session ends with `session.close` and its `session.closed`, which carries the active seconds billed (per second,
LIVE_PRICES). Expiry (`expires_at` from `session.started`) and lost connections go through the session's reconnect
and renewal (voice/session/reconnect.py): a new session starts with the conversation as its `input` history.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import websockets
from django.conf import settings

from calls.caller_text import caller_data_block
from calls.models import CallEvent
from calls.selectors.mcp_tools import is_mcp_function
from calls.tools import SUPERVISOR_TOOLS, run_business_tool
from receptionist import metrics as operator_metrics
from voice.agent import REALTIME_TOOLS, AgentProfile
from voice.session.engine import VoiceEngine
from voice.session.realtime import open_openai_socket
from voice.session.shared import ItemAudio, b64_len_to_bytes, close_quietly, in_db_pool, in_io_threads
from voice.session.shutdown import shutdown_instructions
from voice.supervisor import json_or_text

if TYPE_CHECKING:
    from voice.session.call import CallSession

log = logging.getLogger(__name__)

# Fragments are grouped into turns by their own (session) times: a pause longer than this between one speaker's
# fragments starts a new turn. The agent's replies follow each other closely (a filler, then the answer), the
# caller pauses mid-sentence.
CALLER_GAP_MS = 1200
AGENT_GAP_MS = 400
TURN_GAP_S = 1.2  # agent audio (which carries no times) this long after the last starts a new turn
CALLER_IDLE_S = 5.0  # a caller turn nobody answered is written after this long without a fragment
QUIET_S = 0.8  # no agent audio for this long: the agent has stopped speaking
OVERLAP_S = 0.3  # caller speech this soon after agent audio was sent talks over it
SILENT_ACTION_WAIT_S = 4.0  # a hang-up or transfer whose goodbye never comes goes ahead after this much quiet
APPEND_CHARS = 1800  # appended instructions and commentary are capped at 500 tokens each
SEED_MESSAGES = 120  # a new session's `input` history takes at most 128 messages ...
SEED_CHARS = 24_000  # ... and 8,192 tokens: the latest turns that fit
SEED_TEXT_CHARS = 2000  # of each turn
GREETING = "Greet the caller with exactly this, then wait: {greeting}"
RESUMED_NOTE = ("This phone call is already under way: your connection was renewed. The conversation so far follows "
                "as text; continue it and do not greet the caller again.")
# What the caller hears while a business tool takes longer than LIVE_TOOL_PROGRESS_SECONDS.
PROGRESS = {
    "check_availability": "I'm checking the calendar.",
    "book_appointment": "I'm booking that for you now.",
    "reschedule_appointment": "I'm moving that appointment now.",
    "cancel_appointment": "I'm cancelling that now.",
    "find_appointments": "I'm looking up your appointments.",
    "take_message": "I'm writing that down for the team.",
}
PROGRESS_DEFAULT = "I'm still checking, one moment."
FATAL_ERRORS = {"invalid_api_key", "insufficient_quota"}  # a new session would be refused the same way


class LiveStartError(Exception):
    """GPT-Live refused the session (an `error` instead of `session.started`)."""


def live_audio_format(audio_format: dict[str, Any]) -> dict[str, Any]:
    """The transport's audio (GA Realtime names) as GPT-Live's `audio.format`: one format both ways, with its rate."""
    if audio_format.get("type") == "audio/pcmu":
        return {"type": "audio/pcmu", "rate": 8000}
    return {"type": "audio/pcm", "rate": int(audio_format.get("rate") or 24000)}


def backend_tools(mcp_tools: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The delegation backend's tools (Responses function format): the supervisor's business tools, the
    business's enabled MCP tools (`mcp_tools`, Chat Completions format, loaded with the call's profile), and the
    voice agent's own end_call and transfer_to_human (GPT-Live cannot call functions itself)."""
    tools = [{"type": "function", "name": t["function"]["name"], "description": t["function"]["description"],
              "parameters": t["function"]["parameters"]} for t in SUPERVISOR_TOOLS + list(mcp_tools or [])]
    tools += [{key: tool[key] for key in ("type", "name", "description", "parameters")}
              for tool in REALTIME_TOOLS if tool["name"] in {"end_call", "transfer_to_human"}]
    return tools


def live_session_config(profile: AgentProfile, audio_format: dict[str, Any],
                        history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The `session` of `session.start` for a call (`history`: a resumed call's conversation so far)."""
    config: dict[str, Any] = {
        "model": settings.OPENAI_LIVE_MODEL,
        "instructions": profile.instructions,
        "audio": {"format": live_audio_format(audio_format), "output": {"voice": profile.voice}},
        "delegation": {"type": "responses", "responses": {
            "model": settings.OPENAI_DELEGATION_MODEL,
            "instructions": profile.backend_instructions,
            "tools": backend_tools(profile.mcp_tools),
            "tool_choice": "auto",
            # One call at a time: the caller's requests are sequential, and each result is recorded in order.
            "parallel_tool_calls": False,
        }},
    }
    if history:
        config["input"] = history
    return config


def history_input(conversation: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The conversation so far as `input` history: the latest turns within GPT-Live's limits, oldest first."""
    items: list[dict[str, Any]] = []
    budget = SEED_CHARS
    for turn in reversed(conversation):
        text = (turn.get("text") or "")[:SEED_TEXT_CHARS]
        if not text:
            continue
        if len(items) >= SEED_MESSAGES or len(text) > budget:
            break
        budget -= len(text)
        caller = turn.get("speaker") == "caller"
        items.append({"type": "message", "role": "user" if caller else "assistant",
                      "content": [{"type": "input_text" if caller else "output_text", "text": text}]})
    items.append({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": RESUMED_NOTE}]})
    return items[::-1]


@dataclass
class _Turn:
    """One speaker's run of transcript fragments."""

    speaker: str  # "caller" | "agent"
    order: int
    start_ms: int
    end_ms: int
    last_at: float  # monotonic: the last fragment (or, for the agent, audio)
    parts: list[str] = field(default_factory=list)
    item_id: str = ""  # the agent's audio item (marks, barge-in)
    interrupted: bool = False
    latency_done: bool = False
    session_end_ms: float | None = None  # the last fragment's end, on the session's clock


class LiveEngine(VoiceEngine):
    name = "live"
    label = "OpenAI GPT-Live"
    buffers_first_audio = True

    def __init__(self, session: "CallSession") -> None:
        super().__init__(session)
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "session.output_audio.delta": self._on_output_audio,
            "session.output_transcript.delta": self._on_output_transcript,
            "session.input_transcript.delta": self._on_input_transcript,
            "session.delegation.created": self._on_delegation_created,
            "response.event": self._on_response_event,
            "session.usage.updated": self._on_usage_updated,
            "session.closed": self._on_closed,
            "error": self._on_error,
        }
        self.session_id = ""
        self.t0 = time.monotonic()  # monotonic time of the current session's start (its transcript times count from it)
        self.offset_ms = 0  # the call's clock (ms) at that moment
        self.expires_at = time.monotonic() + settings.OPENAI_LIVE_SESSION_MAX_SECONDS
        self._event_seq = 0
        self._item_seq = 0
        self.caller_turn: _Turn | None = None
        self.agent_turn: _Turn | None = None
        self.last_caller_at = 0.0
        self.last_caller_end: float | None = None  # monotonic end of the caller's last turn (for latency)
        self.last_output_at = 0.0
        # The backend's answer has arrived: the agent's next sentence is that answer, a new utterance (its filler,
        # "one moment", may run straight into it on the session's clock).
        self.answer_due = False
        # The backend: its responses under way, the function calls our server is running, and whether answered
        # calls still wait for their one `response.create`.
        self.open_responses: dict[str, float] = {}
        self.pending_calls: dict[str, asyncio.Task] = {}
        self.answered_calls = 0
        self._calls_session: dict[str, str] = {}  # call_id -> the session id it came from
        # Active seconds per session socket: (seconds, confirmed by session.closed, when it started).
        self._seconds: dict[int, list[Any]] = {}
        self._armed_action: Any = None
        self._armed_at = 0.0
        self._spoke_for: Any = None  # the pending hang-up or transfer the agent has spoken since it was armed

    # --- the interface ---------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return settings.OPENAI_LIVE_MODEL

    def handler(self, event_type: str) -> Callable[[dict[str, Any]], Awaitable[None]] | None:
        return self._handlers.get(event_type)

    async def connect(self, *, timeout: float, resume: bool) -> Any:
        began = time.monotonic()
        socket = await open_openai_socket(settings.OPENAI_LIVE_URL, timeout)
        session = self.session
        try:
            history = history_input(session.conversation) if resume else None
            await socket.send(json.dumps({"type": "session.start", "event_id": self._event_id("start"),
                                          "session": live_session_config(session.profile,
                                                                         session.transport.audio_format, history)}))
            started = await asyncio.wait_for(self._await_started(socket),
                                             timeout=max(0.5, timeout - (time.monotonic() - began)))
        except BaseException:
            await close_quietly(socket)
            raise
        resource = started.get("session") or {}
        now = time.monotonic()
        self.session_id = str(resource.get("id") or "")
        expires_at = resource.get("expires_at")
        self.expires_at = (now + max(0.0, float(expires_at) - time.time()) if isinstance(expires_at, (int, float))
                           else now + settings.OPENAI_LIVE_SESSION_MAX_SECONDS)
        self.t0, self.offset_ms = now, session.now_ms()
        self._seconds[id(socket)] = [0.0, False, now]
        session.add_event(CallEvent.Kind.STATUS, step="live_session_started", session_id=self.session_id,
                          model=resource.get("model") or self.model, expires_in_s=round(self.expires_at - now),
                          resumed=resume, history_items=len(history or []))
        return socket

    async def begin(self) -> None:
        await self._append("session.instructions.append", GREETING.format(greeting=self.session.profile.greeting))

    def audio_frame(self, payload: str) -> str:
        return '{"type":"session.input_audio.append","audio":"' + payload + '"}'

    async def request_speech(self, instructions: str) -> None:
        # An appended instruction can interrupt the model's current speech: it says this now.
        await self._append("session.instructions.append", instructions)

    async def speak_shutdown(self, language: str) -> None:
        while self.pending_calls or self.open_responses:  # a lookup the caller is waiting for comes first
            await asyncio.sleep(0.1)
        session = self.session

        async def hang_up() -> None:
            session.shutdown_said = True
            await session._end_by_agent("server_shutdown")

        await self.request_speech(shutdown_instructions(language))
        session._wait_for_playback(hang_up)

    def forget_session(self) -> Any:
        self._close_turns()
        session = self.session
        session.items.clear()
        self.open_responses.clear()
        self.answered_calls = 0
        return None

    def session_ended(self, socket: Any) -> None:
        # A lost session's seconds are estimated if it never reported them; a closed one's are confirmed.
        self._bank_seconds(socket)

    async def seed(self, carried: Any) -> list[str]:
        # The conversation went in with session.start; what the session meant to say in the gap is asked for again.
        held, self.session._held_events = self.session._held_events, []
        return [str(event.get("content") or "") for event in held
                if event.get("type") in {"session.instructions.append", "session.commentary.append"}]

    async def resume(self, instructions: str) -> None:
        # Sent straight to the new socket: the session still counts as reconnecting (send_upstream would hold it).
        await self.session.upstream.send(json.dumps({
            "type": "session.instructions.append", "event_id": self._event_id("resume"),
            "content": instructions[:APPEND_CHARS], "delegation_id": None}))

    async def retire(self, old: Any) -> None:
        """The old session's reader collects its session.closed (and usage) before its socket closes."""
        try:
            await old.send(json.dumps({"type": "session.close", "event_id": self._event_id("close")}))
            await asyncio.wait_for(old.wait_closed(), timeout=settings.LIVE_CLOSE_WAIT_SECONDS)
        except (websockets.ConnectionClosed, asyncio.TimeoutError, OSError):
            pass
        self._bank_seconds(old)
        await close_quietly(old)

    async def close_session(self) -> None:
        session = self.session
        upstream = session.upstream
        self._close_turns()
        for task in self.pending_calls.values():
            task.cancel()
        if upstream is None:
            return
        reader = next((t for t in session._tasks if t.get_name().endswith("-upstream")), None)
        if reader is not None and reader is not asyncio.current_task() and not reader.done():
            await asyncio.wait({reader}, timeout=1)  # cancelled by finish(): nobody else reads the socket now
        try:
            await upstream.send(json.dumps({"type": "session.close", "event_id": self._event_id("close")}))
            async with asyncio.timeout(settings.LIVE_CLOSE_WAIT_SECONDS):
                async for raw in upstream:
                    event = json.loads(raw)
                    if event.get("type") in {"session.closed", "session.usage.updated"}:
                        session.reading_upstream = upstream
                        await self._handlers[event["type"]](event)
                    if event.get("type") == "session.closed":
                        break
        except (websockets.ConnectionClosed, TimeoutError, OSError, ValueError):
            pass
        self._bank_seconds(upstream)
        await close_quietly(upstream)

    def playback_drained(self) -> bool:
        session = self.session
        now = time.monotonic()
        if session.after_playback is not self._armed_action:  # a hang-up or transfer was just armed
            self._armed_action, self._armed_at = session.after_playback, now
        if session.pending_marks > 0 or self.pending_calls or self.open_responses or self.answered_calls:
            return False
        if now - self.last_output_at < QUIET_S:
            return False
        # Its goodbye (or "connecting you now") is spoken after the backend's answer: wait for it, within reason.
        spoke = self._spoke_for is not None and self._spoke_for is session.after_playback
        return spoke or now - max(self._armed_at, self.last_output_at) >= SILENT_ACTION_WAIT_S

    def quiet(self) -> bool:
        session = self.session
        return (not session.caller_speaking and session.pending_marks == 0 and session.after_playback is None
                and time.monotonic() - self.last_output_at >= QUIET_S and not self.pending_calls
                and not self.open_responses and not self.answered_calls)

    def session_ends_at(self) -> float:
        return self.expires_at

    def seeds_at_connect(self) -> bool:
        return True

    async def tick(self) -> None:
        session = self.session
        now = time.monotonic()
        if self.caller_turn is not None and now - self.caller_turn.last_at > CALLER_IDLE_S:
            self._close_caller_turn()
        if self.agent_turn is not None and now - self.agent_turn.last_at > TURN_GAP_S and session.pending_marks == 0:
            self._close_agent_turn()
        if session.after_playback is not None and not session._finishing:
            await session.check_playback()

    # --- events ----------------------------------------------------------------------------------

    async def _on_output_audio(self, event: dict[str, Any]) -> None:
        session = self.session
        now = time.monotonic()
        turn = self._agent_turn(now, None)
        audio = session.items.get(turn.item_id)
        if audio is None:
            audio = session.items[turn.item_id] = ItemAudio(response_id=self.session_id, order=turn.order,
                                                            started_ms=session.now_ms())
        if not turn.latency_done:
            turn.latency_done = True
            if self.last_caller_end is not None:
                session.add_event(CallEvent.Kind.LATENCY, ms=max(0, round((now - self.last_caller_end) * 1000)),
                                  item_id=turn.item_id, engine="live", measured_from="caller transcript end")
                operator_metrics.turn_latency(max(0.0, now - self.last_caller_end))
                self.last_caller_end = None
        delta = event["delta"]
        audio.sent_ms += b64_len_to_bytes(delta) / session.transport.bytes_per_ms
        self.last_output_at = now
        if session.after_playback is not None:
            self._spoke_for = session.after_playback
        await session.transport.send_audio(delta)
        session.pending_marks += 1
        await session.transport.send_mark(f"{turn.item_id}:{audio.sent_ms:.0f}")

    async def _on_output_transcript(self, event: dict[str, Any]) -> None:
        current, start = self.agent_turn, event.get("start_ms")
        if current is not None and current.parts and (
                _gap_ms(current, start) > AGENT_GAP_MS
                or (self.answer_due and current.parts[-1].rstrip().endswith((".", "?", "!")))):
            self._close_agent_turn()  # a new utterance: the audio that follows belongs to it
        if self.agent_turn is None:
            self.answer_due = False
        turn = self._agent_turn(time.monotonic(), event)
        turn.parts.append(str(event.get("delta") or ""))
        turn.end_ms = max(turn.end_ms, self._call_ms(event.get("end_ms"), turn.end_ms))
        if isinstance(event.get("end_ms"), (int, float)):
            turn.session_end_ms = float(event["end_ms"])

    async def _on_input_transcript(self, event: dict[str, Any]) -> None:
        session = self.session
        now = time.monotonic()
        agent = self.agent_turn
        if agent is not None and (session.pending_marks > 0 or now - self.last_output_at < OVERLAP_S):
            await self._barge_in(agent)
        if agent is not None:
            self._close_agent_turn()
        turn = self.caller_turn
        if turn is None or _gap_ms(turn, event.get("start_ms")) > CALLER_GAP_MS:
            if turn is not None:
                self._close_caller_turn()
            start = self._call_ms(event.get("start_ms"), session.now_ms())
            turn = self.caller_turn = _Turn("caller", session.reserve_transcript(), start, start, now)
        turn.parts.append(str(event.get("delta") or ""))
        turn.last_at = now
        turn.end_ms = max(turn.end_ms, self._call_ms(event.get("end_ms"), session.now_ms()))
        end_ms = event.get("end_ms")
        if isinstance(end_ms, (int, float)):
            turn.session_end_ms = float(end_ms)
        self.last_caller_end = self.t0 + end_ms / 1000 if isinstance(end_ms, (int, float)) else now
        self.last_caller_at = now
        session.caller_speaking = True

    async def _on_delegation_created(self, event: dict[str, Any]) -> None:
        delegation = event.get("delegation") or {}
        self.session.add_event(CallEvent.Kind.SUPERVISOR, step="delegation", engine="live",
                               delegation_id=str(delegation.get("id") or ""), target=delegation.get("target") or "")

    async def _on_response_event(self, event: dict[str, Any]) -> None:
        nested = event.get("event") or {}
        kind = nested.get("type")
        session = self.session
        if kind == "response.created":
            self.open_responses[str((nested.get("response") or {}).get("id") or "")] = time.monotonic()
        elif kind == "response.output_item.done":
            item = nested.get("item") or {}
            if item.get("type") == "function_call":
                call_id = str(item["call_id"])
                self._calls_session[call_id] = self.session_id
                self.pending_calls[call_id] = asyncio.create_task(
                    self._run_function(call_id, str(item.get("name") or ""), item.get("arguments") or "{}"),
                    name=f"call-{session.call_id}-tool-{call_id}")
            elif item.get("type") == "message":
                answer = "".join(part.get("text") or "" for part in item.get("content") or []
                                 if part.get("type") == "output_text")
                if answer:
                    self.answer_due = True
                    session.add_event(CallEvent.Kind.SUPERVISOR, step="answer", engine="live", answer=answer)
        elif kind in {"response.completed", "response.failed", "response.incomplete"}:
            response = nested.get("response") or {}
            began = self.open_responses.pop(str(response.get("id") or ""), None)
            tokens_in, cached, tokens_out = session.usage.add_backend_usage(response.get("usage") or {})
            step = {"step": "model", "engine": "live", "model": response.get("model") or settings.OPENAI_DELEGATION_MODEL,
                    "status": response.get("status") or kind.rpartition(".")[2], "prompt_tokens": tokens_in,
                    "cached_tokens": cached, "completion_tokens": tokens_out}
            if began is not None:
                step["duration_ms"] = round((time.monotonic() - began) * 1000)
            session.add_event(CallEvent.Kind.SUPERVISOR, **step)
            if kind != "response.completed":
                error = (response.get("error") or {}).get("message") or (response.get("incomplete_details") or {})
                session.add_event(CallEvent.Kind.SUPERVISOR, step="error", engine="live", error=str(error)[:500])
            await self._continue_if_answered()
        elif kind == "error":
            session.add_event(CallEvent.Kind.SUPERVISOR, step="error", engine="live",
                              error=str(nested.get("message") or nested.get("code") or "backend error")[:500])

    async def _on_usage_updated(self, event: dict[str, Any]) -> None:
        seconds = (event.get("usage") or {}).get("seconds")
        entry = self._seconds.get(id(self.session.reading_upstream))
        if entry is not None and isinstance(seconds, (int, float)):
            entry[0] = max(entry[0], float(seconds))  # cumulative: the latest is the total so far

    async def _on_closed(self, event: dict[str, Any]) -> None:
        session = self.session
        reason = str(event.get("reason") or "")
        seconds = (event.get("usage") or {}).get("seconds")
        entry = self._seconds.get(id(session.reading_upstream))
        if entry is not None and isinstance(seconds, (int, float)):
            entry[0], entry[1] = float(seconds), True
        session.add_event(CallEvent.Kind.STATUS, step="live_session_closed", reason=reason,
                          session_id=str((event.get("session") or {}).get("id") or self.session_id),
                          seconds=seconds)
        if reason == "content" and not session._finishing:
            await session.fail("GPT-Live ended the session (its safety filter)")
        elif reason in {"expired", "connection_lost"}:
            # The socket closes next: the reader then opens a new session with the conversation (`_reconnect`).
            session.upstream_lost_cause = f"GPT-Live closed the session: {reason}"

    async def _on_error(self, event: dict[str, Any]) -> None:
        error = event.get("error") or {}
        code = error.get("code") or error.get("type") or "error"
        self.session.add_event(CallEvent.Kind.ERROR, source="openai", code=code, message=error.get("message", ""),
                               param=error.get("param") or "")
        # Most errors refuse one command and the session goes on: the call does too.
        if code in FATAL_ERRORS:
            await self.session.fail(f"GPT-Live ended the session: {code}")

    # --- the backend's function calls --------------------------------------------------------------

    async def _run_function(self, call_id: str, name: str, arguments: str) -> None:
        session = self.session
        began = time.monotonic()
        progress = asyncio.create_task(self._progress_after(name))
        try:
            output = await self._call_tool(name, arguments)
        except Exception:
            log.exception("Call %s: the %s tool failed", session.call_id, name)
            output = {"error": "That did not work just now. Apologise and offer to take a message."}
        finally:
            progress.cancel()
        session.add_event(CallEvent.Kind.SUPERVISOR, step="tool", engine="live", name=name, call_id=call_id,
                          arguments=json_or_text(arguments), result=output,
                          duration_ms=round((time.monotonic() - began) * 1000))
        self.pending_calls.pop(call_id, None)
        if session._finishing:
            return
        if self._calls_session.pop(call_id, None) != self.session_id:
            # The session that asked is gone (a reconnect): its backend cannot take the result; the agent says it.
            await self.request_speech(
                "A lookup you started before the line dropped has finished. Tell the caller its result in one or two "
                "short sentences, in the language of the conversation.\n\n"
                + caller_data_block({"tool": name, "result": output}, source="a business tool's result"))
            return
        await session.send_upstream({"type": "response.item.create", "event_id": self._event_id("output"),
                                     "item": {"type": "function_call_output", "call_id": call_id,
                                              "output": json.dumps(output)}})
        self.answered_calls += 1
        await self._continue_if_answered()

    async def _call_tool(self, name: str, arguments: str) -> dict[str, Any]:
        session = self.session
        parsed = json_or_text(arguments)
        reason = str(parsed.get("reason") or "")[:200] if isinstance(parsed, dict) else ""
        if name == "end_call":
            session._wait_for_playback(lambda: session._end_by_agent("agent_ended", reason or "conversation finished"))
            return {"ok": True, "status": "The call ends after the agent's goodbye: answer with a short, warm goodbye."}
        if name == "transfer_to_human":
            refused = session.arm_transfer(reason)
            if refused is not None:
                return refused
            return {"ok": True, "status": "Transferring after the agent tells the caller: answer with one sentence "
                                          "saying you are connecting them to a person now."}
        # The business tools: scoped to this call's business, and to its caller's own number from the Call row.
        # An MCP tool waits on the business's own server: on the IO threads, never holding a database thread.
        run = in_io_threads if is_mcp_function(name) else in_db_pool
        return await run(run_business_tool)(business_id=session.business_id, call_id=session.call_id,
                                            name=name, arguments=arguments)

    async def _progress_after(self, name: str) -> None:
        await asyncio.sleep(settings.LIVE_TOOL_PROGRESS_SECONDS)
        said = PROGRESS.get(name, PROGRESS_DEFAULT)
        self.session.add_event(CallEvent.Kind.SUPERVISOR, step="progress", engine="live", name=name, said=said)
        await self._append("session.commentary.append", said)

    async def _continue_if_answered(self) -> None:
        """One `response.create` once every function call is answered and the response that made them is done."""
        if self.answered_calls and not self.pending_calls and not self.open_responses:
            self.answered_calls = 0
            await self.session.send_upstream({"type": "response.create", "event_id": self._event_id("continue")})

    # --- helpers ---------------------------------------------------------------------------------

    async def _await_started(self, socket: Any) -> dict[str, Any]:
        async for raw in socket:
            event = json.loads(raw)
            if event.get("type") == "session.started":
                return event
            if event.get("type") == "error":
                error = event.get("error") or {}
                raise LiveStartError(f"{error.get('code') or error.get('type')}: {error.get('message', '')}"
                                     + (f" ({error['param']})" if error.get("param") else ""))
        raise LiveStartError("the socket closed before session.started")

    async def _append(self, kind: str, content: str) -> None:
        await self.session.send_upstream({"type": kind, "event_id": self._event_id("append"),
                                          "content": content[:APPEND_CHARS], "delegation_id": None})

    async def _barge_in(self, agent: _Turn) -> None:
        """The caller talks over agent audio still queued at their side: drop it (the model stops by itself)."""
        session = self.session
        await session.transport.clear_audio()
        agent.interrupted = True
        for item_id, audio in session.items.items():
            if audio.cleared or audio.played_ms >= audio.sent_ms - 0.5:
                continue
            audio.cleared = True
            heard = int(min(audio.played_ms, audio.sent_ms))
            session.add_event(CallEvent.Kind.BARGE_IN, item_id=item_id, heard_ms=heard, sent_ms=round(audio.sent_ms),
                              engine="live")
        session.after_playback = None  # a hang-up or transfer waits for the caller's new turn

    def _agent_turn(self, now: float, event: dict[str, Any] | None) -> _Turn:
        turn = self.agent_turn
        if turn is not None and now - turn.last_at <= TURN_GAP_S:
            turn.last_at = now
            return turn
        if turn is not None:
            self._close_agent_turn()
        if self.caller_turn is not None:  # the agent answers: the caller's turn is over
            self._close_caller_turn()
        session = self.session
        self._item_seq += 1
        start = self._call_ms((event or {}).get("start_ms"), session.now_ms())
        turn = self.agent_turn = _Turn("agent", session.reserve_transcript(), start, start, now,
                                       item_id=f"live_{self._item_seq}")
        return turn

    def _close_caller_turn(self) -> None:
        turn, self.caller_turn = self.caller_turn, None
        # No speech events on GPT-Live: the caller counts as speaking from their first fragment until the agent
        # answers (or CALLER_IDLE_S of nothing), so a session switch never falls mid-sentence.
        self.session.caller_speaking = False
        if turn is None:
            return
        text = "".join(turn.parts).strip()
        self.session.conversation.append({"speaker": "caller", "text": text})
        self.session.add_transcript(turn.order, "caller", text or "[not transcribed]", turn.start_ms, turn.end_ms)

    def _close_agent_turn(self) -> None:
        turn, self.agent_turn = self.agent_turn, None
        if turn is None:
            return
        text = "".join(turn.parts).strip()
        audio = self.session.items.get(turn.item_id)
        end_ms = max(turn.end_ms, turn.start_ms + round(audio.sent_ms) if audio else turn.end_ms)
        if not text:
            return  # audio without a transcript (or nothing): nothing to show
        self.session.conversation.append({"speaker": "agent", "text": text})
        self.session.add_transcript(turn.order, "agent", text, turn.start_ms, end_ms,
                                    interrupted=turn.interrupted or bool(audio and audio.cleared))

    def _close_turns(self) -> None:
        self._close_caller_turn()
        self._close_agent_turn()

    def _call_ms(self, session_ms: Any, default: int) -> int:
        """A time in the session's clock (ms from its start) on the call's clock."""
        return self.offset_ms + int(session_ms) if isinstance(session_ms, (int, float)) else default

    def _bank_seconds(self, socket: Any) -> None:
        """Add a finished session's active seconds to the call's usage, once; estimated from the wall clock (and
        said so on the timeline) when GPT-Live never reported them."""
        entry = self._seconds.pop(id(socket), None)
        if entry is None:
            return
        seconds, confirmed, started = entry
        if not confirmed and not seconds:
            seconds = time.monotonic() - started
            self.session.add_event(CallEvent.Kind.STATUS, step="live_usage_estimated", seconds=round(seconds, 1))
        self.session.usage.voice_seconds += seconds

    def _event_id(self, kind: str) -> str:
        self._event_seq += 1
        return f"{kind}_{self._event_seq}"


def _gap_ms(turn: _Turn, start_ms: Any) -> float:
    """The pause between a turn's last fragment and a new one, on the session's clock (0 when either has no time)."""
    if turn.session_end_ms is None or not isinstance(start_ms, (int, float)):
        return 0.0
    return start_ms - turn.session_end_ms

