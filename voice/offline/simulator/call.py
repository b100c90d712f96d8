"""One simulated inbound call: setup, the entry point and the caller's behaviour (speaking, waiting,
barging in, hanging up). The webhook and media-stream halves are mixins (``webhooks``, ``media``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from voice.offline.audio import (
    BYTES_PER_MS, FRAME_BYTES, FRAME_MS, MULAW_SILENCE, audioop, load_wav_pcm16, mulaw_frames_b64,
    synthetic_speech_pcm16, trim_silence, write_wav,
)
from voice.offline.simulator.config import STILL_STREAMING_GAP_S
from voice.offline.simulator.media import _MediaStream
from voice.offline.simulator.report import _MAX_LOG, _AgentTurn, BargeIn, CallReport, TurnReport
from voice.offline.simulator.webhooks import _Webhooks, new_sid

if TYPE_CHECKING:
    from voice.offline.simulator.config import SimulatedCallConfig


class SimulatedCall(_Webhooks, _MediaStream):
    """One inbound call. `await SimulatedCall(config).run()` → CallReport.
    `send_dtmf()` may be called while `run()` is in progress."""

    def __init__(self, config: SimulatedCallConfig) -> None:
        self.config = config
        base = config.base_url.rstrip("/")
        public = (config.public_url or config.base_url).rstrip("/")
        self._base = base
        self._public = public
        self.call_sid = config.call_sid or new_sid("CA")
        self.stream_sid = config.stream_sid or new_sid("MZ")
        self.report = CallReport(
            call_sid=self.call_sid,
            stream_sid=self.stream_sid,
            account_sid=config.account_sid,
            from_number=config.from_number,
            to_number=config.to_number,
            webhook_url=base + config.incoming_path,
            signed_url=public + config.incoming_path,
        )
        self._utterances = self._load_utterances()
        self._silence_b64 = base64.b64encode(bytes([MULAW_SILENCE]) * FRAME_BYTES).decode("ascii")
        self._dtmf: deque[tuple[float, str]] = deque(sorted((float(ms), str(d)) for ms, d in config.dtmf))

        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws: ClientConnection | None = None
        self._t0 = 0.0  # loop time the media socket opened (≈ `start` sent)
        self._t_media0 = 0.0
        self._start_sent_at: float | None = None
        self._seq = 0
        self._chunk = 0
        self._stopping = False
        self._closing = False
        self._tick_event = asyncio.Event()

        # Caller speech currently being sent.
        self._speech: list[str] | None = None
        self._speech_i = 0
        self._speech_done: asyncio.Future[float] | None = None

        # Playback emulation. Invariant: queued_total - played_total == len(buf).
        self._buf = bytearray()
        self._queued_total = 0
        self._played_total = 0
        self._play_clock = 0.0
        self._empty_since = 0.0
        self._pending_marks: deque[tuple[int, str, dict[str, Any] | None]] = deque()
        self._listen: _AgentTurn | None = None
        self._unplayed: list[_AgentTurn] = []  # turns whose first byte is queued but not yet played
        self._greeting: _AgentTurn | None = None
        self._turn_listeners: list[_AgentTurn] = []
        self._barge_played_at: int | None = None
        self._recording: bytearray | None = bytearray() if config.record_agent_audio_path else None
        self._received_bytes = 0
        self._last_media_at: float | None = None  # loop time the last agent audio arrived
        self._cleared_bytes = 0

    # ---------------------------------------------------------------- setup

    def _load_utterances(self) -> list[list[str]]:
        cfg = self.config
        if cfg.wav_path:
            paths = [cfg.wav_path] if isinstance(cfg.wav_path, str) else list(cfg.wav_path)
            pcms = [trim_silence(load_wav_pcm16(p)) for p in paths]
        else:
            pcms = [
                trim_silence(synthetic_speech_pcm16(cfg.utterance_ms, seed=cfg.seed * 1000 + i))
                for i in range(max(0, cfg.utterances))
            ]
        return [mulaw_frames_b64(pcm) for pcm in pcms]

    def _ms(self, t: float | None) -> float | None:
        return None if t is None else (t - self._t0) * 1000.0

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _protocol_error(self, message: str) -> None:
        self.report.protocol_error_count += 1
        if len(self.report.protocol_errors) < _MAX_LOG:
            self.report.protocol_errors.append(f"{self._ms(self._now()):.0f}ms: {message}")

    # ---------------------------------------------------------------- entry point

    async def run(self) -> CallReport:
        self._loop = asyncio.get_running_loop()
        cfg = self.config
        t_call = self._loop.time()
        answered = False
        try:
            async with httpx.AsyncClient(timeout=cfg.webhook_timeout_s, follow_redirects=False) as http:
                twiml = await self._post_webhook(http)
                answered = twiml.http_status is not None
                if twiml.outcome == "stream":
                    await self._stream(twiml)
                else:
                    self.report.ended_by = "no_stream"
                if cfg.send_status_callback and answered:
                    await self._post_status(http, self._loop.time() - t_call)
        except Exception as exc:  # the report is the product: never raise out of a run
            self.report.error = self.report.error or f"{type(exc).__name__}: {exc}"
            self.report.ended_by = self.report.ended_by or "error"
        self._finish_report()
        return self.report

    def send_dtmf(self, digit: str) -> None:
        """Send a DTMF digit at the next 20 ms tick."""
        self._dtmf.appendleft((-1.0, str(digit)))


    # ---------------------------------------------------------------- the caller's behaviour

    async def _tick(self) -> float:
        await self._tick_event.wait()
        return self._now()

    async def _wait_playing(self, turn: _AgentTurn, timeout_s: float) -> bool:
        """Until the turn's first agent audio is audible (True) or timeout (False)."""
        deadline = self._now() + timeout_s
        while turn.first_played is None:
            if await self._tick() >= deadline:
                return False
        return True

    async def _wait_for_a_pause(self, pause_s: float, timeout_s: float = 5.0) -> bool:
        """Until the playback queue has been empty for `pause_s` while agent audio is still arriving."""
        deadline = self._now() + timeout_s
        while True:
            now = await self._tick()
            streaming = self._last_media_at is not None and now - self._last_media_at < STILL_STREAMING_GAP_S
            if not self._buf and streaming and now - self._empty_since >= pause_s:
                return True
            if now >= deadline:
                self.report.warnings.append("no pause in the agent's reply to barge into")
                return False

    async def _wait_done(self, turn: _AgentTurn, first_audio_timeout_s: float) -> bool:
        """Until the agent spoke and its playback buffer has been empty for wait_for_agent_ms."""
        cfg = self.config
        if not await self._wait_playing(turn, first_audio_timeout_s):
            return False
        quiet = cfg.wait_for_agent_ms / 1000.0
        deadline = self._now() + cfg.max_agent_turn_s
        while True:
            now = await self._tick()
            if not self._buf and now - self._empty_since >= quiet:
                if turn.turn is not None:
                    turn.turn.agent_done_ms = self._ms(self._empty_since)
                return True
            if now >= deadline:
                return True

    async def _speak(self, frames: list[str]) -> float:
        """Queue an utterance for the 20 ms clock; returns the loop time its last frame was sent."""
        assert self._loop is not None
        if not frames:
            return self._now()
        self._speech_done = self._loop.create_future()
        self._speech_i = 0
        self._speech = frames
        return await self._speech_done

    async def _script(self) -> None:
        cfg = self.config
        if cfg.hang_up_after_s is None:
            await self._conversation()
            self.report.ended_by = "script"
            return
        try:
            await asyncio.wait_for(self._conversation(), timeout=cfg.hang_up_after_s)
        except TimeoutError:
            pass
        await asyncio.sleep(max(0.0, self._t0 + cfg.hang_up_after_s - self._now()))
        self.report.ended_by = "hang_up_after"

    async def _conversation(self) -> None:
        cfg = self.config
        report = self.report
        previous = self._greeting
        assert previous is not None
        for i, frames in enumerate(self._utterances):
            barge = False
            is_greeting = previous is self._greeting
            if cfg.barge_in and i >= cfg.barge_in_from_utterance:
                timeout = cfg.greeting_timeout_s if is_greeting else cfg.reply_timeout_s
                if await self._wait_playing(previous, timeout):
                    await asyncio.sleep(cfg.barge_in_delay_ms / 1000.0)
                    if cfg.barge_in_pause_ms > 0:
                        await self._wait_for_a_pause(cfg.barge_in_pause_ms / 1000.0)
                    # Only a barge-in if the agent is still talking: audio is queued, or (a model generating
                    # slower than real time leaves the queue empty between chunks) its next chunk is due.
                    streaming = (self._last_media_at is not None
                                 and self._now() - self._last_media_at < STILL_STREAMING_GAP_S)
                    barge = bool(self._buf) or streaming
                    if not barge:
                        report.warnings.append(f"utterance {i}: agent already silent, no barge-in")
            elif is_greeting and not cfg.wait_for_greeting:
                pass
            else:
                replied = await self._wait_done(previous, cfg.greeting_timeout_s if is_greeting else cfg.reply_timeout_s)
                if not replied:
                    report.warnings.append("no greeting" if is_greeting else f"no agent reply to utterance {i - 1}")
            now = self._now()
            for echo in self._advance_playback(now):  # exact playback position for the report
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.send(echo)  # type: ignore[union-attr]
            turn = TurnReport(index=i, barge_in=barge, utterance_start_ms=self._ms(now) or 0.0)
            turn.utterance_audio_ms = len(frames) * FRAME_MS
            report.turns.append(turn)
            if barge:
                report.barge_ins.append(
                    BargeIn(
                        utterance=i,
                        at_ms=turn.utterance_start_ms,
                        agent_playing_since_ms=self._ms(previous.first_played),
                        agent_buffered_ms=len(self._buf) / BYTES_PER_MS,
                    )
                )
                self._barge_played_at = self._played_total
            end = await self._speak(frames)
            turn.utterance_end_ms = self._ms(end)
            report.caller_speech_ms += turn.utterance_audio_ms
            previous = self._listen = _AgentTurn(turn)
            self._turn_listeners.append(previous)
        if self._utterances or cfg.wait_for_greeting:
            is_greeting = previous is self._greeting
            replied = await self._wait_done(previous, cfg.greeting_timeout_s if is_greeting else cfg.reply_timeout_s)
            if not replied:
                report.warnings.append("no greeting" if is_greeting else f"no agent reply to utterance {len(self._utterances) - 1}")
        await asyncio.sleep(cfg.hang_up_pause_ms / 1000.0)

    # ---------------------------------------------------------------- report

    def _finish_report(self) -> None:
        report = self.report
        report.agent_audio_received_ms = self._received_bytes / BYTES_PER_MS
        report.agent_audio_played_ms = self._played_total / BYTES_PER_MS
        report.agent_audio_cleared_ms = self._cleared_bytes / BYTES_PER_MS
        report.marks_pending_at_end = len(self._pending_marks)
        report.media_frames_sent = self._chunk
        greeting = self._greeting
        if greeting is not None and self._start_sent_at is not None:
            if greeting.first_recv is not None:
                report.greeting_received_ms = (greeting.first_recv - self._start_sent_at) * 1000.0
            if greeting.first_played is not None:
                report.greeting_latency_ms = (greeting.first_played - self._start_sent_at) * 1000.0
        for listener in self._turn_listeners:
            turn = listener.turn
            assert turn is not None
            turn.agent_audio_received_ms = listener.received_bytes / BYTES_PER_MS
            turn.first_agent_audio_received_ms = self._ms(listener.first_recv)
            turn.first_agent_audio_played_ms = self._ms(listener.first_played)
            if turn.utterance_end_ms is not None:
                if turn.first_agent_audio_received_ms is not None:
                    turn.latency_received_ms = turn.first_agent_audio_received_ms - turn.utterance_end_ms
                if turn.first_agent_audio_played_ms is not None:
                    turn.latency_played_ms = turn.first_agent_audio_played_ms - turn.utterance_end_ms
        if self._recording is not None and self.config.record_agent_audio_path:
            write_wav(self.config.record_agent_audio_path, audioop.ulaw2lin(bytes(self._recording), 2))



async def run_simulated_call(config: SimulatedCallConfig) -> CallReport:
    """Place one simulated inbound call against `config.base_url` and return its report."""
    return await SimulatedCall(config).run()


def simulate_call(config: SimulatedCallConfig) -> CallReport:
    """Synchronous wrapper (own event loop) for scripts and management commands."""
    return asyncio.run(run_simulated_call(config))
