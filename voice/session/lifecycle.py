"""A call session's life: connecting OpenAI and greeting, caller audio in, the end of the call, and the background
task that writes what was recorded (mixed into `CallSession`)."""

from __future__ import annotations

import asyncio
import logging
import time

import websockets

from calls.live import apublish_call_changed
from calls.models import Call, CallEvent
from calls.services.lifecycle import call_finalize
from calls.services.recording import CallRecord, call_record_entries
from receptionist import metrics as operator_metrics
from voice.agent import load_agent_profile
from voice.drain import LIVE_CALLS
from voice.session.shared import in_db_pool

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
FINAL_FLUSH_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)  # then one last try; a failure is logged with the call


class _Lifecycle:
    """Start, caller audio, finish or fail, and the flushes."""

    async def start(self) -> None:
        """Load the business, open OpenAI, configure the session and have the agent greet the caller."""
        LIVE_CALLS.add(self)  # a deploy's drain reaches it from now on
        operator_metrics.call_started()
        self.counted_live = True
        if self.profile is None:
            self.profile = await in_db_pool(load_agent_profile)(self.business_id, self.caller_number)
        self.use_engine(self.profile.engine)
        # GPT-Live wants nothing before its session has started: the caller's first frames wait (`caller_audio`).
        self.starting = self.engine.buffers_first_audio
        try:
            self.upstream = await self.engine.connect(timeout=8, resume=False)
        except Exception as exc:  # refused, DNS, TLS, HTTP 4xx/5xx on the upgrade, timeout, a refused config
            self.starting = False
            await self.fail(f"Could not connect to {self.engine.label}: {exc}")
            return
        self.session_started_at = time.monotonic()
        await self.engine.begin()
        if self.starting:
            await self._send_held_audio()  # ready only after: frames arriving meanwhile are held and sent in order
            self.starting = False
        self.ready = True
        self._tasks.append(asyncio.create_task(self._read_upstream(), name=f"call-{self.call_id}-upstream"))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name=f"call-{self.call_id}-flush"))

    async def caller_audio(self, payload: str) -> None:
        """Forward one chunk of caller audio (base64, in the transport's format) to OpenAI, untouched."""
        if not self.ready:
            if self.reconnecting or self.starting:
                self.hold_caller_audio(payload)  # sent to the (new) session once it is ready
            else:  # before the agent is connected the caller is still hearing the ring
                operator_metrics.frame_dropped(operator_metrics.DROP_NOT_READY)
            return
        try:
            await self.upstream.send(self.engine.audio_frame(payload))
        except websockets.ConnectionClosed:
            operator_metrics.frame_dropped(operator_metrics.DROP_UPSTREAM_CLOSED)

    def caller_dtmf(self, digit: str) -> None:
        self.add_event(CallEvent.Kind.DTMF, digit=digit)

    async def finish(self, *, status: str, reason: str, error: str = "") -> None:
        """End the call: stop tasks, close OpenAI, write what was recorded, finalise the call. Idempotent."""
        if self._finishing:
            return
        self._finishing = True
        self.ready = False
        LIVE_CALLS.discard(self)
        if self.counted_live:
            self.counted_live = False
            operator_metrics.call_ended()
        current = asyncio.current_task()
        for task in [*self._tasks, *self.pending_supervisor.values()]:
            if task is not current:
                task.cancel()
        self.pending_supervisor.clear()
        await self.engine.close_session()
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
                model=self.engine.model, engine=self.engine.name, error=error)
        except Exception:
            log.exception("Could not record the end of call %s", self.call_id)
        log.info("Call %s ended: %s (%s)%s", self.call_id, status, reason, f": {error}" if error else "")
        self.finished.set()

    async def fail(self, error: str) -> None:
        """OpenAI is gone: let the caller hear something sensible, then end the call as failed."""
        log.warning("Call %s: %s", self.call_id, error)
        action, transfer_to = self.unavailable_action()
        language = self.profile.language if self.profile else "en"
        try:
            taken = await self.transport.fallback(action=action, language=language, transfer_to=transfer_to)
        except Exception as exc:
            error += f"; the fallback ({action}) failed too: {exc}"
            self.add_event(CallEvent.Kind.FALLBACK, action=action, ok=False, cause=error)
        else:
            self.add_event(CallEvent.Kind.FALLBACK, action=taken, ok=True, cause=error,
                           **({"to": transfer_to} if taken == "transfer" else {}))
            operator_metrics.fallback_taken(taken)
        await self.finish(status=Call.Status.FAILED, reason="upstream_failed", error=error)
        await self.transport.close()

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
            await self.engine.tick()  # may end the call (a hang-up waiting for the agent's last words)
            if self._finishing:
                return
            if self.renewal_due(time.monotonic()):
                self._tasks.append(asyncio.create_task(self._renew_session(), name=f"call-{self.call_id}-renew"))
            if self.allowance_recheck_due(time.monotonic()):
                await self._check_allowance()
            if await self._enforce_allowance():
                return
