"""Reconnecting to OpenAI mid-call, and renewing a session before its time cap (mixed into `CallSession`).

When the upstream socket drops or the session expires, the caller is still on the line: a new session is opened
within a short budget, configured the same way, and seeded with the call's own transcript as text items (caller
turns as `input_text`, agent turns as `output_text`: audio items cannot be created), the tool calls still waiting
for their result, and whatever the session meant to send meanwhile. Caller audio that arrives in the gap is held
(bounded) and sent once the new session is ready, so nothing the caller said is lost. Only when the budget is
spent does the call fall back (`fail`).

A Realtime session lasts at most an hour (OPENAI_SESSION_MAX_SECONDS). OPENAI_SESSION_RENEW_MARGIN_SECONDS before
that, the next session is opened and seeded the same way, and the call switches to it at the next moment nobody
speaks.

What a new session is given and how is the engine's (`voice/session/engine.py`): the above is Realtime's. GPT-Live
takes the conversation as the `input` history of its `session.start`, so its renewal waits for the quiet moment
first and then opens the next session; its cap is the `expires_at` the session announced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any

import websockets
from django.conf import settings

from calls.models import CallEvent
from receptionist import metrics as operator_metrics
from voice.agent import session_update
from voice.session.shared import b64_len_to_bytes, close_quietly

log = logging.getLogger(__name__)

RENEWAL_CAUSE = "renewal before the session's time cap"
RENEW_RETRY_S = 30.0  # a renewal that could not open its socket is tried again this much later
RENEW_LAST_CHANCE_S = 10.0  # switch even mid-sentence this long before the cap, rather than be cut by it
QUIET_POLL_S = 0.05
SEED_TURNS = 60  # the latest transcript turns a new session is seeded with
SEED_TEXT_CHARS = 2000  # of each turn
RECONNECT_INSTRUCTIONS = (
    "The phone line to you dropped for a moment and is back now; the caller may not have heard your last words. "
    "In one short sentence, in the language of the conversation, apologise (for example \"Sorry, I lost you for a "
    "second\") and pick up where the conversation was: if the caller's last request is unanswered, answer it, "
    "otherwise repeat your last point briefly.")


class _Reconnect:
    """`_reconnect` and the gap's bookkeeping: held caller audio, held upstream events."""

    def _init_reconnect(self) -> None:
        self.reconnecting = False
        self.reconnects = 0
        self.upstream_lost_cause = ""  # why OpenAI ended the session, when it said so before closing
        self.reading_upstream: Any = None  # the socket the reader is on (the old one during a renewal's switch)
        self.session_started_at = time.monotonic()
        self._renewing = False
        self._renew_not_before = 0.0
        self.caller_speaking = False
        self._held_audio: deque[str] = deque()
        self._held_audio_bytes = 0
        self._held_audio_dropped = 0
        self._held_events: list[dict[str, Any]] = []
        self.tool_calls_seen: dict[str, tuple[str, str]] = {}  # call_id -> (name, arguments JSON)

    def hold_caller_audio(self, payload: str) -> None:
        """Caller audio during a reconnect: kept, up to OPENAI_RECONNECT_AUDIO_SECONDS (the oldest goes first)."""
        self._held_audio.append(payload)
        self._held_audio_bytes += b64_len_to_bytes(payload)
        limit = settings.OPENAI_RECONNECT_AUDIO_SECONDS * 1000 * self.transport.bytes_per_ms
        while self._held_audio_bytes > limit and self._held_audio:
            dropped = self._held_audio.popleft()
            self._held_audio_bytes -= b64_len_to_bytes(dropped)
            self._held_audio_dropped += b64_len_to_bytes(dropped)
            operator_metrics.frame_dropped(operator_metrics.DROP_HOLD_FULL)

    async def _reconnect(self, cause: str) -> bool:
        """Open, configure and seed a new session after the old one was lost. False when the budget is spent (or
        this call already reconnected OPENAI_RECONNECTS_PER_CALL times): the caller then gets the fallback."""
        dropped_at = time.monotonic()
        if self.reconnects >= settings.OPENAI_RECONNECTS_PER_CALL:
            self.add_event(CallEvent.Kind.RECONNECT, ok=False, cause=cause, attempts=0,
                           error=f"already reconnected {self.reconnects} times on this call")
            operator_metrics.openai_reconnected(ok=False)
            return False
        self.reconnecting, self.ready = True, False
        old, self.upstream = self.upstream, None
        if old is not None:
            asyncio.create_task(close_quietly(old))
        carried = self.engine.forget_session()  # what the lost session had not handed over is seeded below
        self.caller_speaking = False
        budget = settings.OPENAI_RECONNECT_BUDGET_SECONDS
        attempts, error, upstream = 0, "", None
        for delay in _backoff():
            remaining = budget - (time.monotonic() - dropped_at)
            if remaining <= 0 or self._finishing:
                break
            if delay:
                await asyncio.sleep(min(delay, remaining))
                remaining = budget - (time.monotonic() - dropped_at)
                if remaining <= 0:
                    break
            attempts += 1
            try:
                upstream = await self.engine.connect(timeout=max(0.5, remaining), resume=True)
                break
            except Exception as exc:  # refused, reset, HTTP 5xx on the upgrade, timeout
                error = f"{type(exc).__name__}: {exc}"[:300]
        if upstream is None:
            self.reconnecting = False
            self.add_event(CallEvent.Kind.RECONNECT, ok=False, cause=cause, attempts=attempts,
                           waited_ms=round((time.monotonic() - dropped_at) * 1000), error=error)
            operator_metrics.openai_reconnected(ok=False)
            return False
        self.upstream = upstream
        self.reconnects += 1
        try:
            wanted = await self.engine.seed(carried)
            instructions = RECONNECT_INSTRUCTIONS
            if any(wanted):
                instructions += " Then do this: " + " ".join(w for w in wanted if w)
            held_ms = round(self._held_audio_bytes / self.transport.bytes_per_ms)
            await self._send_held_audio()  # what the caller said in the gap, before the reply
            await self.engine.resume(instructions)
        except websockets.ConnectionClosed:
            self.reconnecting = False
            return await self._reconnect("the new session closed while it was being seeded")
        self.reconnecting, self.ready = False, True
        self.session_started_at = time.monotonic()
        self.add_event(CallEvent.Kind.RECONNECT, ok=True, cause=cause, attempts=attempts,
                       waited_ms=round((time.monotonic() - dropped_at) * 1000), held_audio_ms=held_ms,
                       dropped_audio_ms=round(self._held_audio_dropped / self.transport.bytes_per_ms))
        self._held_audio_dropped = 0
        operator_metrics.openai_reconnected(ok=True)
        log.info("Call %s: reconnected to OpenAI after %s (%d attempt(s))", self.call_id, cause, attempts)
        return True

    async def _send_held_audio(self) -> None:
        """The caller audio held in the gap, to the new session. Frames arriving meanwhile are held too, and sent
        by this loop: the session is marked ready only after it."""
        while self._held_audio:
            await self.upstream.send(self.engine.audio_frame(self._held_audio.popleft()))
        self._held_audio_bytes = 0

    async def _seed_new_session(self, unsent_outputs: list[dict[str, Any]],
                                pending_instructions: str | None) -> list[str]:
        """The same configuration, the conversation so far as text, the tool calls still open; returns the
        instructions of the replies the session asked for meanwhile (to be folded into one)."""
        async def send(event: dict[str, Any]) -> None:
            await self.upstream.send(json.dumps(event))

        await send(session_update(self.profile, self.transport.audio_format))
        for turn in self.conversation[-SEED_TURNS:]:
            text = (turn.get("text") or "")[:SEED_TEXT_CHARS]
            if not text:
                continue
            caller = turn.get("speaker") == "caller"
            await send({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user" if caller else "assistant",
                "content": [{"type": "input_text" if caller else "output_text", "text": text}]}})
        # A tool call the old session made and still awaits (the supervisor is working on it), or whose result it
        # never got: the call is recreated so its result can be attached.
        waiting = [*self.pending_supervisor, *(o["call_id"] for o in unsent_outputs)]
        for call_id in dict.fromkeys(waiting):
            name, arguments = self.tool_calls_seen.get(call_id, ("ask_supervisor", "{}"))
            await send({"type": "conversation.item.create", "item": {
                "type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}})
        for output in unsent_outputs:
            await send({"type": "conversation.item.create", "item": output})
        # What the session tried to send in the gap: items go as they were; a reply it asked for is folded into
        # the one reply asked for below (two would be refused).
        held, self._held_events = self._held_events, []
        wanted = [pending_instructions] if pending_instructions else []
        for event in held:
            if event.get("type") == "response.create":
                wanted.append(((event.get("response") or {}).get("instructions")) or "")
            elif event.get("type") == "conversation.item.create":
                await send(event)
        return wanted

    def caller_is_quiet_and_nothing_plays(self) -> bool:
        """A moment to switch sessions: the caller is not speaking, no reply is coming, nothing is still playing."""
        return self.engine.quiet()

    def renewal_due(self, now: float) -> bool:
        renew_at = self.engine.session_ends_at() - settings.OPENAI_SESSION_RENEW_MARGIN_SECONDS
        return (not self.reconnecting and not self._renewing and self.upstream is not None and self.ready
                and now >= renew_at and now >= self._renew_not_before)

    async def _renew_session(self) -> None:
        """Before the session's time cap: open the next session, and switch to it at the next moment nobody speaks
        (no audio lost, no reply said twice). Until then the current one carries on; if it expires first, the drop
        path takes over. An engine that takes the conversation when a session starts (GPT-Live) opens the next
        one at that quiet moment, so that it gets all of it; the other (Realtime) opens it first and seeds it at
        the switch."""
        self._renewing = True
        began = time.monotonic()
        open_first = not self.engine.seeds_at_connect()
        try:
            fresh = await self._open_renewal(began) if open_first else None
            if open_first and fresh is None:
                return
            last_chance = min(RENEW_LAST_CHANCE_S, settings.OPENAI_SESSION_RENEW_MARGIN_SECONDS / 2)
            hard_deadline = self.engine.session_ends_at() - last_chance
            while not self.caller_is_quiet_and_nothing_plays() and time.monotonic() < hard_deadline:
                if self._finishing or self.reconnecting or self.upstream is None:
                    if fresh is not None:
                        await close_quietly(fresh)
                    return
                await asyncio.sleep(QUIET_POLL_S)
            waited_for_quiet = time.monotonic() - began
            carried = None
            if fresh is None:
                self.reconnecting, self.ready = True, False  # caller audio held while the new session starts
                carried = self.engine.forget_session()
                fresh = await self._open_renewal(began)
                if fresh is None:
                    self.reconnecting, self.ready = False, True
                    return
            old, self.upstream = self.upstream, fresh
            self.reconnecting, self.ready = True, False  # caller audio held while the new session is seeded
            try:
                wanted = await self.engine.seed(carried)
                await self._send_held_audio()
                if any(wanted):  # a reply asked for during the switch (a supervisor answer, say)
                    await self.engine.resume(" ".join(w for w in wanted if w))
            except websockets.ConnectionClosed:
                pass  # the reader sees the new socket closed and reconnects
            self.reconnecting, self.ready = False, True
            self.session_started_at = time.monotonic()
            self.add_event(CallEvent.Kind.RECONNECT, ok=True, renewal=True, cause=RENEWAL_CAUSE, attempts=1,
                           waited_for_quiet_ms=round(waited_for_quiet * 1000))
            operator_metrics.openai_renewed(ok=True)
            # The old session's reader ends when its socket closes, and reads the new one (`_read_upstream`).
            await self.engine.retire(old)
        finally:
            self._renewing = False

    async def _open_renewal(self, began: float) -> Any:
        """The next session's socket, or None (recorded; tried again RENEW_RETRY_S later)."""
        try:
            return await self.engine.connect(timeout=8, resume=True)
        except Exception as exc:
            self._renew_not_before = time.monotonic() + RENEW_RETRY_S
            self.add_event(CallEvent.Kind.RECONNECT, ok=False, renewal=True, cause=RENEWAL_CAUSE, attempts=1,
                           error=f"{type(exc).__name__}: {exc}"[:300])
            operator_metrics.openai_renewed(ok=False)
            return None


def _backoff() -> Any:
    """Delays before each attempt: at once, then growing, then every second until the budget is spent."""
    yield from (0.0, 0.2, 0.4, 0.8)
    while True:
        yield 1.0
