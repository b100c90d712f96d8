"""The OpenAI Realtime events a call session handles, and the reader task that dispatches them (mixed into
`CallSession`): agent audio, turns, transcripts, responses and function calls, errors."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import websockets

from calls.models import CallEvent
from receptionist import metrics as operator_metrics
from voice.session.playback import CANCEL_EVENT_PREFIX
from voice.session.shared import ItemAudio, ResponseState, b64_len_to_bytes, close_quietly
from voice.session.shutdown import SHUTDOWN_PURPOSE

if TYPE_CHECKING:
    from voice.session.call import CallSession

log = logging.getLogger(__name__)


class _OpenAIEvents:
    """OpenAI's events in, by type (`HANDLERS`)."""

    async def _read_upstream(self) -> None:
        """Read OpenAI's events until the call ends; a lost session is replaced (`_reconnect`) while the budget
        lasts, then the caller gets the fallback."""
        while True:
            reading = self.upstream
            cause, reconnectable = await self._read_session(reading)
            self.engine.session_ended(reading)
            if self._finishing:
                return
            if reading is not self.upstream and self.upstream is not None:
                continue  # a renewal retired that session: read the one that replaced it
            if not reconnectable or not await self._reconnect(cause):
                await self.fail(cause)
                return

    async def _read_session(self, upstream: Any) -> tuple[str, bool]:
        """One upstream session's events, until it ends: why it ended, and whether a new session may replace it."""
        error = "OpenAI closed the connection"
        self.upstream_lost_cause = ""
        self.reading_upstream = upstream
        try:
            async for raw in upstream:
                try:
                    event = json.loads(raw)
                    handler = self.engine.handler(event.get("type"))
                    if handler is not None:
                        await handler(event)
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    self.bad_upstream_events += 1
                    if self.bad_upstream_events <= 3:
                        log.warning("Call %s: ignoring a malformed OpenAI event: %r", self.call_id, exc)
        except websockets.ConnectionClosed as exc:
            error = f"OpenAI connection dropped (code {exc.code})"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("Call %s: upstream reader crashed", self.call_id)
            return f"Upstream reader crashed: {exc!r}", False  # our bug: a new session would crash the same way
        return self.upstream_lost_cause or error, True

    async def _on_audio_delta(self, event: dict[str, Any]) -> None:
        response_id = event["response_id"]
        if response_id in self.dropped_responses:
            return
        item_id = event["item_id"]
        audio = self.items.get(item_id)
        if audio is None:
            audio = self.items[item_id] = ItemAudio(response_id=response_id, order=self.reserve_transcript(),
                                                    started_ms=self.now_ms())
            state = self.responses.get(response_id)
            if state is not None:
                state.spoke = True
            if self.speech_end_at is not None:
                now = time.monotonic()
                self.add_event(CallEvent.Kind.LATENCY,
                               ms=round((now - self.speech_end_at) * 1000),
                               after_vad_ms=round((now - self.speech_stopped_at) * 1000) if self.speech_stopped_at else None,
                               vad_silence_ms=self.vad_silence_ms, item_id=item_id)
                operator_metrics.turn_latency(now - self.speech_end_at)
                self.speech_end_at = None
        delta = event["delta"]
        audio.sent_ms += b64_len_to_bytes(delta) / self.transport.bytes_per_ms
        await self.transport.send_audio(delta)
        self.pending_marks += 1
        await self.transport.send_mark(f"{item_id}:{audio.sent_ms:.0f}")

    async def _on_speech_started(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id") or f"caller-{self.now_ms()}"
        self.caller_speaking = True
        self._caller_items[item_id] = {"order": self.reserve_transcript(), "start_ms": self.now_ms()}
        self.speech_end_at = None
        # Unplayed audio at the caller's side is not the only sign the agent is talking: a model slower than real
        # time keeps that queue empty (every mark comes back before the next chunk), yet its reply is still coming.
        if self.pending_marks > 0 or self.active_response is not None:
            await self._barge_in()

    async def _on_speech_stopped(self, event: dict[str, Any]) -> None:
        self.caller_speaking = False
        now = time.monotonic()
        self.speech_stopped_at = now
        # The caller stopped speaking silence_duration ago; that is when the turn really ended.
        self.speech_end_at = now - self.vad_silence_ms / 1000
        caller = self._caller_items.get(event.get("item_id", ""))
        if caller is not None:
            # Never before the turn's start (nor negative, which the database refuses along with the whole batch):
            # audio that arrives faster than real time, e.g. a browser flushing its queue, ends turns early.
            caller["end_ms"] = max(caller.get("start_ms") or 0, self.now_ms() - self.vad_silence_ms)

    async def _on_session_configured(self, event: dict[str, Any]) -> None:
        """session.created / session.updated: the session's effective configuration, as OpenAI applied it."""
        audio_input = ((event.get("session") or {}).get("audio") or {}).get("input") or {}
        if "turn_detection" not in audio_input:
            return
        detection = audio_input.get("turn_detection") or {}
        # semantic_vad (or none) has no fixed silence: latency then counts from the end of the turn as detected.
        silence = detection.get("silence_duration_ms") if detection.get("type") == "server_vad" else 0
        self.vad_silence_ms = int(silence) if isinstance(silence, (int, float)) and silence >= 0 else 0
        if event.get("type") == "session.updated":
            self.add_event(CallEvent.Kind.STATUS, step="turn_detection", vad=detection.get("type") or "none",
                           vad_silence_ms=self.vad_silence_ms)

    async def _on_caller_transcript(self, event: dict[str, Any]) -> None:
        caller = self._caller_items.get(event["item_id"])
        if caller is None:
            caller = self._caller_items[event["item_id"]] = {"order": self.reserve_transcript()}
        caller["written"] = True
        self.conversation.append({"speaker": "caller", "text": event.get("transcript", "").strip()})
        self.add_transcript(caller["order"], "caller", event.get("transcript", "").strip(), caller.get("start_ms"),
                            caller.get("end_ms"))

    async def _on_agent_transcript(self, event: dict[str, Any]) -> None:
        audio = self.items.get(event["item_id"])
        if audio is None:  # text-only item
            audio = self.items[event["item_id"]] = ItemAudio(response_id=event.get("response_id", ""),
                                                             order=self.reserve_transcript(), started_ms=self.now_ms())
        self.conversation.append({"speaker": "agent", "text": event.get("transcript", "").strip()})
        self.add_transcript(audio.order, "agent", event.get("transcript", "").strip(), audio.started_ms,
                            audio.started_ms + round(audio.sent_ms), interrupted=audio.cleared)

    async def _on_response_created(self, event: dict[str, Any]) -> None:
        response_id = event["response"]["id"]
        self.active_response = response_id
        self.response_requested = False
        self.responses[response_id] = ResponseState(response_id)

    async def _on_response_done(self, event: dict[str, Any]) -> None:
        response = event["response"]
        response_id = response.get("id", "")
        if self.active_response == response_id:
            self.active_response = None
        usage = response.get("usage")
        if usage:
            self.usage.add_realtime_usage(usage)
        if (response.get("metadata") or {}).get("purpose") == SHUTDOWN_PURPOSE:
            self.shutdown_said = response.get("status") == "completed"
            self._wait_for_playback(lambda: self._end_by_agent("server_shutdown"))
        await self._settle_response(self.responses.pop(response_id, None))

    async def _settle_response(self, state: ResponseState | None) -> None:
        """A response is over: hand its tool outputs to the model and start whatever comes next."""
        for output in state.tool_outputs if state else ():
            await self.send_upstream({"type": "conversation.item.create", "item": output})
        if state is not None and state.follow_up is not None:
            await self._create_response(state.follow_up)
        elif self.response_create_pending is not None:
            instructions, self.response_create_pending = self.response_create_pending, None
            await self._create_response(instructions)
        elif self.after_playback is not None and self.pending_marks == 0:
            await self._run_after_playback()

    async def _create_response(self, instructions: str) -> None:
        """Ask for a response now, or as soon as the active one is done (only one may run at a time)."""
        if self.active_response is not None or self.response_requested:
            self.response_create_pending = instructions
            return
        self.response_requested = True
        await self.send_upstream({"type": "response.create", "response": {"instructions": instructions}}
                                 if instructions else {"type": "response.create"})

    async def _on_function_call(self, event: dict[str, Any]) -> None:
        name, call_id = event.get("name", ""), event["call_id"]
        state = self.responses.get(event.get("response_id", "")) or ResponseState(event.get("response_id", ""))
        try:
            arguments = json.loads(event.get("arguments") or "{}")
            if not isinstance(arguments, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as exc:
            arguments, result = {}, {"error": f"The arguments were not valid JSON ({exc}). Call the tool again."}
        else:
            tool = self.TOOLS.get(name)
            result = await tool(self, state, arguments, call_id) if tool else {
                "error": f"There is no tool called {name!r}. Use ask_supervisor, end_call or transfer_to_human."}
        self.tool_calls_seen[call_id] = (name, json.dumps(arguments))  # recreated if the session is replaced
        self.add_event(CallEvent.Kind.TOOL_CALL, name=name, arguments=arguments, call_id=call_id,
                       result=result if result is not None else "sent to the supervisor")
        if result is None:
            return  # answered later, when the supervisor replies
        state.tool_outputs.append({"type": "function_call_output", "call_id": call_id, "output": json.dumps(result)})
        if state.follow_up is None and "error" in result:
            state.follow_up = ""  # let the model react to the error
        if event.get("response_id") not in self.responses:  # its response already finished: settle now
            await self._settle_response(state)

    async def _on_error(self, event: dict[str, Any]) -> None:
        error = event.get("error") or {}
        code = error.get("code") or error.get("type") or "error"
        if code == "response_cancel_not_active" and str(error.get("event_id") or "").startswith(CANCEL_EVENT_PREFIX):
            return  # our barge-in's cancel of a reply the server had already stopped (or finished)
        self.add_event(CallEvent.Kind.ERROR, source="openai", code=code, message=error.get("message", ""))
        # A refused response.create never gets its response.created; don't wait for it (a queued one goes now).
        self.response_requested = False
        if self.active_response is None and self.response_create_pending is not None:
            instructions, self.response_create_pending = self.response_create_pending, None
            await self._create_response(instructions)
        if code == "session_expired":
            # OpenAI closes the socket (1001) after this: a new session takes over (`_read_upstream`).
            self.upstream_lost_cause = "OpenAI ended the session: session_expired"
            await close_quietly(self.reading_upstream, timeout=1)  # and so do we, in case it does not
        elif code in {"beta_api_shape_disabled", "invalid_api_key"}:
            await self.fail(f"OpenAI ended the session: {code}")  # a new session would be refused the same way

    HANDLERS: dict[str, Callable[["CallSession", dict[str, Any]], Awaitable[None]]] = {
        "response.output_audio.delta": _on_audio_delta,
        "session.created": _on_session_configured,
        "session.updated": _on_session_configured,
        "input_audio_buffer.speech_started": _on_speech_started,
        "input_audio_buffer.speech_stopped": _on_speech_stopped,
        "conversation.item.input_audio_transcription.completed": _on_caller_transcript,
        "response.output_audio_transcript.done": _on_agent_transcript,
        "response.created": _on_response_created,
        "response.done": _on_response_done,
        "response.function_call_arguments.done": _on_function_call,
        "error": _on_error,
    }
