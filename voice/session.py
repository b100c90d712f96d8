"""The call session: one caller, one OpenAI Realtime socket, whatever the transport (Twilio or browser).

The audio path is kept lean: caller audio goes to OpenAI as the same base64 string it arrived as, agent
audio goes back the same way, and nothing on that path touches the database, logs, or leaves the event
loop. Transcripts, events and latencies are collected in memory and flushed by a background task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

import websockets
from asgiref.sync import sync_to_async
from channels.db import DatabaseSyncToAsync
from django.conf import settings

from accounts.transfers import transfer_number_problem
from billing.services.gate import CallAllowance, call_allowance
from calls.live import apublish_call_changed
from calls.caller_text import caller_data_block
from calls.models import Call, CallEvent
from calls.services.lifecycle import Usage, call_finalize
from calls.services.recording import CallRecord, call_record_entries
from voice.agent import LANGUAGE_NAMES, AgentProfile, greeting_response, load_agent_profile, session_update
from voice.drain import LIVE_CALLS
from voice.phrases import phrase
from voice.supervisor import SUPERVISOR_FAILED_ANSWER

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
LATE_ACTION_WORDS = {"book_appointment": "an appointment was booked", "reschedule_appointment": "an appointment was "
                     "moved", "cancel_appointment": "an appointment was cancelled",
                     "take_message": "a message was saved for the team"}
CANCEL_EVENT_PREFIX = "barge_in_cancel_"  # event_id of our response.cancel, echoed in the error it may cause
FINAL_FLUSH_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)  # then one last try; a failure is logged with the call
PLAYBACK_WAIT_S = 20.0  # longest we wait for a goodbye to finish playing before hanging up anyway
# When the call's minutes (free trial, hard-capped plan, test-call quota) are about to run out, the agent is asked
# for a goodbye this long before; the call ends when they run out, goodbye finished or not.
ALLOWANCE_GOODBYE_LEAD_S = 12.0
ALLOWANCE_GOODBYE = {
    "billing_cap_reached": (
        "You have to end this call now: the receptionist's call minutes have run out. In one or two short "
        "sentences, in the language of the conversation, apologise, say that you have to end the call now and "
        "that the caller is welcome to call back later, and say goodbye. Do not ask anything else."),
    "test_call_quota_reached": (
        "You have to end this test call now: today's test-call minutes are used up. In one short sentence, in the "
        "language of the conversation, say so and say goodbye. Do not ask anything else."),
}


# The response that tells the caller the server is restarting carries this in its metadata.
SHUTDOWN_PURPOSE = "server_shutdown"


def shutdown_instructions(language: str) -> str:
    sentence = phrase("server_restart", language)
    return ("The phone system is restarting and this call has to end now. Do not call any tool and do not ask "
            f"anything. Say exactly this sentence to the caller, in {LANGUAGE_NAMES.get(language, 'English')}, "
            f"and nothing else: \"{sentence}\"")


def in_db_pool(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Run a call's database writes on the shared thread pool rather than the one thread-sensitive thread,
    so a hundred calls ending together are written in parallel (connections are still closed after)."""
    return DatabaseSyncToAsync(func, thread_sensitive=False)


def enqueue_supervisor(kwargs: dict[str, Any]) -> None:
    from voice.tasks import ask_supervisor

    ask_supervisor.apply_async(kwargs=kwargs)


class CallTransport(Protocol):
    """What a session needs from the caller's side (Twilio media stream or browser socket)."""

    audio_format: dict[str, Any]
    bytes_per_ms: int

    async def send_audio(self, payload: str) -> None: ...
    async def send_mark(self, name: str) -> None: ...
    async def clear_audio(self) -> None: ...
    async def hang_up(self) -> None: ...
    async def transfer(self, number: str) -> None: ...
    async def fallback(self, message: str, *, language: str, transfer_to: str) -> None: ...
    async def close(self) -> None: ...

    def notify(self, event: dict[str, Any]) -> None:
        """A transcript entry or call event as it is recorded, for a caller's side that shows the call live
        (the browser test call). Must return at once: it is called from the session's event handlers."""


@dataclass
class ItemAudio:
    """Agent audio of one conversation item: how much we forwarded and how much the caller has heard."""

    response_id: str
    order: int
    started_ms: int
    sent_ms: float = 0.0
    played_ms: float = 0.0
    cleared: bool = False
    transcript: str = ""


@dataclass
class ResponseState:
    response_id: str
    spoke: bool = False
    tool_outputs: list[dict[str, Any]] = field(default_factory=list)
    follow_up: str | None = None  # instructions for the response we ask for after this one


def b64_len_to_bytes(payload: str) -> int:
    """Decoded size of a base64 string, without decoding it."""
    padding = 2 if payload.endswith("==") else 1 if payload.endswith("=") else 0
    return len(payload) * 3 // 4 - padding


class CallSession:
    def __init__(self, *, call_id: int, business_id: int, transport: CallTransport, caller_number: str = "",
                 reply_channel: str = "", profile: AgentProfile | None = None,
                 max_seconds: int | None = None, allowance: CallAllowance | None = None) -> None:
        self.call_id = call_id
        self.caller_number = caller_number
        self.reply_channel = reply_channel  # where the supervisor's answers come back (channel layer)
        self.business_id = business_id
        self.transport = transport
        self.profile = profile
        self.max_seconds = max_seconds or settings.CALL_MAX_SECONDS  # then the agent ends the call
        self.t0 = time.monotonic()
        self.upstream: Any = None
        self.ready = False
        self.finished = asyncio.Event()
        self._finishing = False
        self._tasks: list[asyncio.Task] = []
        self.usage = Usage()
        self.record = CallRecord()
        self._flush_lock = asyncio.Lock()
        self._transcript_order = 0
        self._caller_items: dict[str, dict[str, Any]] = {}
        self.items: dict[str, ItemAudio] = {}
        self.pending_marks = 0
        self.responses: dict[str, ResponseState] = {}
        self.active_response: str | None = None
        self.dropped_responses: set[str] = set()
        self.speech_end_at: float | None = None  # monotonic time the caller's last turn ended
        # The silence server VAD waits for before it ends a turn, as the OpenAI session reports it (session.created,
        # then session.updated); until then, what we ask for. Turn latencies count from before that silence.
        self.vad_silence_ms = settings.VAD_SILENCE_MS
        self.speech_stopped_at: float | None = None
        self.after_playback: Callable[[], Awaitable[None]] | None = None
        self._after_playback_deadline: float | None = None
        self.bad_upstream_events = 0
        self.conversation: list[dict[str, str]] = []  # what was said, for the supervisor
        self.pending_supervisor: dict[str, asyncio.Task] = {}  # tool call id -> its deadline
        self.response_create_pending: str | None = None  # instructions to send once no response is active
        # A response.create is on its way and its response.created has not arrived: until it does, a second one
        # would be refused, and "nothing is playing" is not yet true (a goodbye is coming).
        self.response_requested = False
        # The minutes left (free trial, hard cap, test-call quota): read at the start and every
        # CALL_ALLOWANCE_RECHECK_SECONDS off the audio path; the agent says goodbye and ends the call at the deadline.
        self.allowance_deadline: float | None = None  # monotonic; None: not capped
        self.allowance_reason = ""
        self._allowance_goodbye = False
        self._allowance_checked_at = 0.0
        if allowance is not None:  # read with the rest of the call's set-up: no separate check at the start
            self._apply_allowance(allowance, asked_at=self.t0)
        # The server is shutting down (voice/drain.py): the agent says the restart sentence, then hangs up.
        self.draining = False
        self.shutdown_said = False  # the restart sentence was spoken in full

    # --- small helpers ---------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    def add_event(self, kind: str, **payload: Any) -> None:
        # Numbered when written, from the call's one sequence (the supervisor's events share it).
        event = {"offset_ms": self.now_ms(), "kind": kind, "payload": payload}
        self.record.events.append(event)
        self.transport.notify({"type": "event", **event})

    def reserve_transcript(self) -> int:
        self._transcript_order += 1
        return self._transcript_order

    def add_transcript(self, order: int, speaker: str, text: str, start_ms: int | None, end_ms: int | None,
                       interrupted: bool = False) -> None:
        entry = {"order": order, "speaker": speaker, "text": text, "start_ms": start_ms, "end_ms": end_ms,
                 "interrupted": interrupted}
        self.record.transcripts.append(entry)
        self.transport.notify({"type": "transcript", **entry})

    async def send_upstream(self, event: dict[str, Any]) -> None:
        try:
            await self.upstream.send(json.dumps(event))
        except websockets.ConnectionClosed:
            pass  # the reader notices the closed socket and ends the call

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the business, open OpenAI, configure the session and have the agent greet the caller."""
        LIVE_CALLS.add(self)  # a deploy's drain reaches it from now on
        if self.profile is None:
            self.profile = await in_db_pool(load_agent_profile)(self.business_id, self.caller_number)
        url = f"{settings.OPENAI_REALTIME_URL}?model={settings.OPENAI_REALTIME_MODEL}"
        try:
            self.upstream = await websockets.connect(
                url, additional_headers={"Authorization": f"Bearer {settings.OPENAI_API_KEY}"},
                open_timeout=8, max_size=16 * 2**20, ping_interval=20, ping_timeout=20,
                # Base64 audio hardly compresses: per-message deflate would cost CPU on every frame for ~25% of a
                # few kB/s. Not offered, so never negotiated.
                compression=None)
        except Exception as exc:  # refused, DNS, TLS, HTTP 4xx/5xx on the upgrade, timeout
            await self.fail(f"Could not connect to OpenAI Realtime: {exc}")
            return
        await self.send_upstream(session_update(self.profile, self.transport.audio_format))
        self.response_requested = True
        await self.send_upstream(greeting_response(self.profile))
        self.ready = True
        self._tasks.append(asyncio.create_task(self._read_upstream(), name=f"call-{self.call_id}-upstream"))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name=f"call-{self.call_id}-flush"))

    async def caller_audio(self, payload: str) -> None:
        """Forward one chunk of caller audio (base64, in the transport's format) to OpenAI, untouched."""
        if not self.ready:
            return  # before the agent is connected the caller is still hearing the ring
        try:
            await self.upstream.send('{"type":"input_audio_buffer.append","audio":"' + payload + '"}')
        except websockets.ConnectionClosed:
            pass

    def playback_marked(self, name: str) -> None:
        """The transport reports that the audio before mark `name` has been played (or cleared)."""
        if self.pending_marks > 0:
            self.pending_marks -= 1
        item_id, _, sent = name.rpartition(":")
        audio = self.items.get(item_id)
        if audio is not None and not audio.cleared:
            try:
                audio.played_ms = max(audio.played_ms, float(sent))
            except ValueError:
                pass

    def caller_dtmf(self, digit: str) -> None:
        self.add_event(CallEvent.Kind.DTMF, digit=digit)

    async def finish(self, *, status: str, reason: str, error: str = "") -> None:
        """End the call: stop tasks, close OpenAI, write what was recorded, finalise the call. Idempotent."""
        if self._finishing:
            return
        self._finishing = True
        self.ready = False
        LIVE_CALLS.discard(self)
        current = asyncio.current_task()
        for task in [*self._tasks, *self.pending_supervisor.values()]:
            if task is not current:
                task.cancel()
        self.pending_supervisor.clear()
        if self.upstream is not None:
            try:
                await asyncio.wait_for(self.upstream.close(), timeout=2)
            except Exception:
                pass
        if error:
            self.add_event(CallEvent.Kind.ERROR, message=error)
        self.add_event(CallEvent.Kind.HANGUP, reason=reason, status=status)
        for item_id, caller in self._caller_items.items():
            if not caller.get("written"):
                self.add_transcript(caller["order"], "caller", "[not transcribed]", caller.get("start_ms"),
                                    caller.get("end_ms"))
        try:
            await self._final_flush()
            await in_db_pool(call_finalize)(
                call_id=self.call_id, status=status, end_reason=reason, usage=self.usage,
                model=settings.OPENAI_REALTIME_MODEL, error=error)
        except Exception:
            log.exception("Could not record the end of call %s", self.call_id)
        log.info("Call %s ended: %s (%s)%s", self.call_id, status, reason, f": {error}" if error else "")
        self.finished.set()

    async def fail(self, error: str) -> None:
        """OpenAI is gone: let the caller hear something sensible, then end the call as failed."""
        log.warning("Call %s: %s", self.call_id, error)
        transfer_to = self.allowed_transfer_number()
        language = self.profile.language if self.profile else "en"
        message = phrase("unavailable_transfer" if transfer_to else "unavailable", language)
        try:
            await self.transport.fallback(message, language=language, transfer_to=transfer_to)
        except Exception as exc:
            error += f"; the fallback message failed too: {exc}"
        await self.finish(status=Call.Status.FAILED, reason="upstream_failed", error=error)
        await self.transport.close()

    # --- background tasks --------------------------------------------------------------------------

    async def _flush(self) -> None:
        async with self._flush_lock:  # one write at a time, so batches reach the database in order
            if not self.record.transcripts and not self.record.events:
                return
            record, self.record = self.record, CallRecord()
            try:
                await in_db_pool(call_record_entries)(call_id=self.call_id, record=record)
            except Exception:
                # The write is all or nothing: put the batch back ahead of what was recorded meanwhile, so the
                # next flush sends it again, in order.
                self.record.transcripts[:0] = record.transcripts
                self.record.events[:0] = record.events
                raise
        if not self._finishing:  # the last flush is announced by call_finalize, with the final status
            # Dashboards showing this call re-read it (best effort, bounded wait).
            await apublish_call_changed(call_id=self.call_id, business_id=self.business_id,
                                        status=Call.Status.IN_PROGRESS)

    async def _final_flush(self) -> None:
        """The last write of the call: retried for a few seconds, the database may be briefly away."""
        for delay in FINAL_FLUSH_RETRY_DELAYS_S:
            try:
                await self._flush()
                return
            except Exception:
                log.warning("Call %s: the last transcript/event write failed; retrying in %.1f s", self.call_id,
                            delay, exc_info=True)
                await asyncio.sleep(delay)
        await self._flush()

    async def _housekeeping(self) -> None:
        if not self._allowance_checked_at:
            await self._check_allowance()  # here rather than in start(): the greeting doesn't wait for it
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                # Shielded: when the call ends meanwhile, the write in progress completes (or puts its batch back)
                # before the last flush, instead of being abandoned half-way.
                await asyncio.shield(self._flush())
            except Exception:
                log.exception("Call %s: could not write transcript/events; will retry", self.call_id)
            if self.after_playback is not None and self._after_playback_deadline is not None \
                    and time.monotonic() > self._after_playback_deadline:
                await self._run_after_playback()
            if time.monotonic() - self.t0 > self.max_seconds:
                await self._end_by_agent("max_duration")
                return
            if self.allowance_recheck_due(time.monotonic()):
                await self._check_allowance()
            if await self._enforce_allowance():
                return

    async def _check_allowance(self) -> None:
        """Re-read the minutes this call has left (the database, on the pool: never on the audio path). Other
        calls of the business share them, so the deadline can move either way."""
        asked_at = time.monotonic()
        try:
            allowance: CallAllowance | None = await in_db_pool(call_allowance)(call_id=self.call_id)
        except Exception:
            log.exception("Call %s: could not read the minutes left; keeping the last deadline", self.call_id)
            allowance = None
        if allowance is not None:
            self._apply_allowance(allowance, asked_at=asked_at)
        else:
            self._allowance_checked_at = asked_at

    def allowance_recheck_due(self, now: float) -> bool:
        """Time to read the minutes left again: a capped call every CALL_ALLOWANCE_RECHECK_SECONDS; an uncapped
        one (a metered plan) only every CALL_ALLOWANCE_UNCAPPED_RECHECK_SECONDS, as only a plan change can cap it."""
        every = (settings.CALL_ALLOWANCE_RECHECK_SECONDS if self.allowance_deadline is not None
                 else settings.CALL_ALLOWANCE_UNCAPPED_RECHECK_SECONDS)
        return now - self._allowance_checked_at >= every

    def _apply_allowance(self, allowance: CallAllowance, *, asked_at: float) -> None:
        self._allowance_checked_at = asked_at
        if allowance.seconds_left is None:
            self.allowance_deadline, self.allowance_reason = None, ""
        else:
            self.allowance_deadline = asked_at + allowance.seconds_left
            self.allowance_reason = allowance.end_reason

    async def _enforce_allowance(self) -> bool:
        """Ask for the goodbye shortly before the deadline, end the call at it. True once the call is ended."""
        if self.allowance_deadline is None or self._finishing:
            return False
        now = time.monotonic()
        if now >= self.allowance_deadline:
            await self._end_by_agent(self.allowance_reason)
            return True
        # Not before the greeting has started: until its response.created arrives, another response.create
        # would be refused by OpenAI (one response at a time) and the goodbye lost.
        greeting_started = bool(self.items) or self.active_response is not None
        if not self._allowance_goodbye and greeting_started \
                and now >= self.allowance_deadline - ALLOWANCE_GOODBYE_LEAD_S:
            self._allowance_goodbye = True
            self.add_event(CallEvent.Kind.STATUS, step="minutes_running_out", reason=self.allowance_reason,
                           seconds_left=round(self.allowance_deadline - now, 1))
            self._wait_for_playback(lambda: self._end_by_agent(self.allowance_reason))
            await self._create_response(ALLOWANCE_GOODBYE.get(self.allowance_reason,
                                                              ALLOWANCE_GOODBYE["billing_cap_reached"]))
        return False

    async def _read_upstream(self) -> None:
        error = "OpenAI closed the connection"
        try:
            async for raw in self.upstream:
                try:
                    event = json.loads(raw)
                    handler = self.HANDLERS.get(event.get("type"))
                    if handler is not None:
                        await handler(self, event)
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
            error = f"Upstream reader crashed: {exc!r}"
        if not self._finishing:
            await self.fail(error)

    # --- OpenAI events ---------------------------------------------------------------------------

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
                self.speech_end_at = None
        delta = event["delta"]
        audio.sent_ms += b64_len_to_bytes(delta) / self.transport.bytes_per_ms
        await self.transport.send_audio(delta)
        self.pending_marks += 1
        await self.transport.send_mark(f"{item_id}:{audio.sent_ms:.0f}")

    async def _on_speech_started(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id") or f"caller-{self.now_ms()}"
        self._caller_items[item_id] = {"order": self.reserve_transcript(), "start_ms": self.now_ms()}
        self.speech_end_at = None
        # Unplayed audio at the caller's side is not the only sign the agent is talking: a model slower than real
        # time keeps that queue empty (every mark comes back before the next chunk), yet its reply is still coming.
        if self.pending_marks > 0 or self.active_response is not None:
            await self._barge_in()

    async def _barge_in(self) -> None:
        """The caller talks over the agent: stop the reply still being generated, stop playback, and tell
        OpenAI how much of each interrupted item was actually heard."""
        talking = self.active_response
        if talking is not None:
            self.dropped_responses.add(talking)  # deltas already on their way are not played
            # With interrupt_response the server may have cancelled it already: then this one gets a harmless
            # `response_cancel_not_active`, which _on_error recognises by its event_id.
            await self.send_upstream({"type": "response.cancel", "response_id": talking,
                                      "event_id": CANCEL_EVENT_PREFIX + talking})
        await self.transport.clear_audio()
        for item_id, audio in self.items.items():
            if audio.cleared:
                continue
            if audio.response_id != talking and audio.played_ms >= audio.sent_ms - 0.5:
                continue  # an earlier reply, heard to the end
            audio.cleared = True
            if audio.sent_ms <= 0:
                continue  # no audio yet: nothing to truncate (OpenAI refuses it), nothing was heard
            # played_ms comes from echoed marks, sent_ms from what we forwarded: never more than was generated.
            heard = int(min(audio.played_ms, audio.sent_ms))
            await self.send_upstream({"type": "conversation.item.truncate", "item_id": item_id,
                                      "content_index": 0, "audio_end_ms": heard})
            self.add_event(CallEvent.Kind.BARGE_IN, item_id=item_id, heard_ms=heard, sent_ms=round(audio.sent_ms),
                           still_generating=audio.response_id == talking)
        self.after_playback = None  # a hang-up or transfer waits for the caller's new turn

    async def _on_speech_stopped(self, event: dict[str, Any]) -> None:
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
        if code in {"session_expired", "beta_api_shape_disabled", "invalid_api_key"}:
            await self.fail(f"OpenAI ended the session: {code}")

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

    # --- tools -----------------------------------------------------------------------------------

    def _wait_for_playback(self, action: Callable[[], Awaitable[None]]) -> None:
        self.after_playback = action
        self._after_playback_deadline = time.monotonic() + PLAYBACK_WAIT_S

    async def _run_after_playback(self) -> None:
        action, self.after_playback = self.after_playback, None
        self._after_playback_deadline = None
        if action is not None:
            await action()

    def playback_drained(self) -> bool:
        return self.pending_marks == 0 and self.active_response is None and not self.response_requested

    async def check_playback(self) -> None:
        """Called by transports after each echoed mark: run a pending hang-up/transfer once all is heard."""
        if self.after_playback is not None and self.playback_drained():
            await self._run_after_playback()

    async def _tool_end_call(self, state: ResponseState, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
        reason = str(arguments.get("reason") or "conversation finished")[:200]
        if not state.spoke:
            state.follow_up = "Say a short, warm goodbye. Do not ask anything else."
        self._wait_for_playback(lambda: self._end_by_agent("agent_ended", reason))
        return {"ok": True, "status": "The call will end after your goodbye."}

    async def _end_by_agent(self, end_reason: str, detail: str = "") -> None:
        try:
            await self.transport.hang_up()
            self.add_event(CallEvent.Kind.HANGUP, by="agent", reason=detail or end_reason)
        except Exception as exc:
            self.add_event(CallEvent.Kind.ERROR, source="twilio", message=f"Hang-up failed: {exc}")
        await self.finish(status=Call.Status.COMPLETED, reason=end_reason)
        await self.transport.close()  # no socket outlives its call, whatever the provider does next

    # --- the server shutting down (a deploy) ------------------------------------------------------

    def start_shutdown(self) -> None:
        """The server is shutting down: let the agent finish, tell the caller, hang up (voice/drain.py bounds it)."""
        if self._finishing or self.draining:
            return
        self.draining = True
        self._tasks.append(asyncio.create_task(self._shutdown_goodbye(), name=f"call-{self.call_id}-shutdown"))

    async def _shutdown_goodbye(self) -> None:
        self.add_event(CallEvent.Kind.STATUS, step="server_shutdown",
                       message="The server is restarting: the agent tells the caller and ends the call.")
        # Whatever the agent is saying, a lookup it is waiting for, or a response already asked for comes first.
        while self.active_response is not None or self.pending_supervisor or self.response_create_pending is not None:
            await asyncio.sleep(0.1)
        if self.after_playback is not None or not self.ready:
            return  # a hang-up or transfer is already on its way (or OpenAI is gone): the drain waits for it
        language = self.profile.language if self.profile else "en"
        await self.send_upstream({"type": "response.create", "response": {
            "instructions": shutdown_instructions(language), "tool_choice": "none",
            "metadata": {"purpose": SHUTDOWN_PURPOSE}}})

    async def end_for_shutdown(self) -> None:
        """The drain time is up and the call is still live: hang up and record why."""
        try:
            await asyncio.wait_for(self.transport.hang_up(), timeout=3)
            self.add_event(CallEvent.Kind.HANGUP, by="agent", reason="server_shutdown")
        except Exception as exc:
            self.add_event(CallEvent.Kind.ERROR, source="server", message=f"Hang-up at shutdown failed: {exc!r}")
        await self.finish(status=Call.Status.COMPLETED if self.shutdown_said else Call.Status.INTERRUPTED,
                          reason="server_shutdown")
        await self.transport.close()

    def allowed_transfer_number(self) -> str:
        """The transfer number if the toll-fraud rules allow dialling it right now (settings may have changed
        since the call started, and the stored number may predate the rules), else ""."""
        number = self.profile.transfer_number if self.profile else ""
        if number and transfer_number_problem(number, home_number=self.profile.phone_number):
            return ""
        return number

    async def _tool_transfer(self, state: ResponseState, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
        reason = str(arguments.get("reason") or "")[:200]
        stored = self.profile.transfer_number if self.profile else ""
        number = self.allowed_transfer_number()
        if not number:
            problem = (transfer_number_problem(stored, home_number=self.profile.phone_number) if stored
                       else "no transfer number")
            self.add_event(CallEvent.Kind.TRANSFER, ok=False, reason=reason, error=problem)
            return {"error": "Nobody is available to take the call right now. Apologise and offer to take a "
                             "message with the caller's name, number and what it is about."}
        if not state.spoke:
            state.follow_up = "Tell the caller in one sentence that you are connecting them to a person now."
        self._wait_for_playback(lambda: self._transfer(number, reason))
        return {"ok": True, "status": "Transferring after you tell the caller."}

    async def _transfer(self, number: str, reason: str) -> None:
        try:
            await self.transport.transfer(number)
        except Exception as exc:
            self.add_event(CallEvent.Kind.TRANSFER, ok=False, to=number, reason=reason, error=str(exc))
            await self._create_response("The transfer did not go through. Apologise briefly and offer to take a "
                                        "message with the caller's name, number and what it is about.")
            return
        self.add_event(CallEvent.Kind.TRANSFER, ok=True, to=number, reason=reason)
        await self.finish(status=Call.Status.COMPLETED, reason="transferred")
        await self.transport.close()  # the call now runs the <Dial>; our stream is done

    # --- the supervisor hand-off ----------------------------------------------------------------

    async def _tool_ask_supervisor(self, state: ResponseState, arguments: dict[str, Any], call_id: str) -> dict[str, Any] | None:
        request = str(arguments.get("request") or "").strip()[:2000]
        if not request:
            return {"error": "Put what the caller needs in `request` and call ask_supervisor again."}
        if not self.reply_channel:
            return {"error": "The supervisor is not available on this call. Offer to take a message."}
        # The worker gets the same deadline, as a wall-clock time (it runs elsewhere): after it, it must not book
        # or cancel anything, since the caller has been told it could not be done.
        deadline_at = time.time() + settings.SUPERVISOR_DEADLINE_SECONDS
        self.pending_supervisor[call_id] = asyncio.create_task(self._supervisor_deadline(call_id))
        self._tasks.append(asyncio.create_task(self._dispatch_supervisor(call_id, request, deadline_at)))
        return None

    async def _dispatch_supervisor(self, tool_call_id: str, request: str, deadline_at: float) -> None:
        kwargs = {"call_id": self.call_id, "tool_call_id": tool_call_id, "reply_channel": self.reply_channel,
                  "request": request, "conversation": self.conversation[-30:], "deadline_at": deadline_at}
        try:
            # Publishing to the broker (or, embedded, running the task) happens off the event loop's thread.
            await sync_to_async(enqueue_supervisor, thread_sensitive=False)(kwargs)
        except Exception as exc:
            log.exception("Call %s: could not hand the request to the supervisor", self.call_id)
            await self.supervisor_answer({"tool_call_id": tool_call_id, "ok": False,
                                          "answer": SUPERVISOR_FAILED_ANSWER, "error": f"queue unavailable: {exc}"})

    async def _supervisor_deadline(self, tool_call_id: str) -> None:
        await asyncio.sleep(settings.SUPERVISOR_DEADLINE_SECONDS)
        if self.pending_supervisor.pop(tool_call_id, None) is None:
            return
        self.add_event(CallEvent.Kind.SUPERVISOR, step="deadline_missed", tool_call_id=tool_call_id,
                       deadline_s=settings.SUPERVISOR_DEADLINE_SECONDS)
        await self._answer_tool(tool_call_id, {"error": "The lookup is taking too long."}, instructions=(
            "Apologise: you could not find that out right now. Offer to take a message with the caller's name, "
            "number and what it is about, so someone from the team calls back."))

    async def supervisor_answer(self, message: dict[str, Any]) -> None:
        """The supervisor's answer arrived over the channel layer."""
        tool_call_id = str(message.get("tool_call_id", ""))
        deadline = self.pending_supervisor.pop(tool_call_id, None)
        if deadline is None:
            acted = [str(name) for name in message.get("acted") or []][:10]
            if message.get("ok") and acted and not self._finishing:
                # It booked (or cancelled, or saved a message) in time but answered late: the caller heard that it
                # could not be done and might ask again. Tell them what did happen.
                self.add_event(CallEvent.Kind.SUPERVISOR, step="late_answer_relayed", tool_call_id=tool_call_id,
                               acted=acted)
                # The answer is model output shaped by what the caller said: quoted as data, never as instructions.
                note = caller_data_block({"supervisor_answer": str(message.get("answer") or ""), "done": acted},
                                         source="the supervisor's late answer, shaped by the conversation")
                await self._create_response(
                    "Correct what you said a moment ago: the caller's request did go through after all ("
                    + ", ".join(LATE_ACTION_WORDS.get(name, "done") for name in acted) + "). In one or two short "
                    "sentences, in the language of the conversation, tell the caller what was done, using the "
                    "supervisor's answer below, and do not do it again.\n\n" + note)
                return
            log.info("Call %s: dropped a supervisor answer that came after its deadline", self.call_id)
            self.add_event(CallEvent.Kind.SUPERVISOR, step="late_answer_dropped", tool_call_id=tool_call_id)
            return
        deadline.cancel()
        answer = str(message.get("answer") or SUPERVISOR_FAILED_ANSWER)
        if message.get("ok"):
            await self._answer_tool(tool_call_id, {"answer": answer}, instructions="")
        else:
            self.add_event(CallEvent.Kind.SUPERVISOR, step="failed", tool_call_id=tool_call_id,
                           error=str(message.get("error", ""))[:500])
            await self._answer_tool(tool_call_id, {"answer": answer, "error": "lookup failed"}, instructions=(
                f"Apologise and tell the caller: {answer}"))

    async def _answer_tool(self, tool_call_id: str, output: dict[str, Any], *, instructions: str) -> None:
        await self.send_upstream({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": tool_call_id, "output": json.dumps(output)}})
        await self._create_response(instructions)

    async def channel_message(self, message: dict[str, Any]) -> None:
        """A message for this call from elsewhere (workers, the dashboard), via the channel layer."""
        if message.get("type") == "supervisor.answer":
            await self.supervisor_answer(message)

    TOOLS: dict[str, Callable[["CallSession", ResponseState, dict[str, Any], str], Awaitable[dict[str, Any] | None]]] = {
        "ask_supervisor": _tool_ask_supervisor,
        "end_call": _tool_end_call,
        "transfer_to_human": _tool_transfer,
    }
