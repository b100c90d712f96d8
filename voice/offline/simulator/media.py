"""The media WebSocket of a simulated call: Twilio's Media Streams protocol and its playback buffer
(marks echoed once the audio before them has played, ``clear`` flushes it); mixed into ``SimulatedCall``."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from voice.offline.audio import BYTES_PER_MS, FRAME_MS, SAMPLE_RATE
from voice.offline.simulator.report import _MAX_LOG, _AgentTurn
from voice.offline.simulator.webhooks import twilio_signature

if TYPE_CHECKING:
    from voice.offline.simulator.twiml import TwimlResult


_MEDIA_TEMPLATE = (
    '{"event":"media","sequenceNumber":"%d","media":{"track":"inbound","chunk":"%d",'
    '"timestamp":"%d","payload":"%s"},"streamSid":"%s"}'
)
_KNOWN_SERVER_EVENTS = ("media", "mark", "clear")



class _MediaStream:
    """Media Streams socket, 20 ms ticker and playback emulation of a
    :class:`~voice.offline.simulator.call.SimulatedCall`."""

    # ---------------------------------------------------------------- media stream

    def _ws_url(self, stream_url: str) -> tuple[str, str]:
        """(where Twilio would connect = the TwiML URL made absolute, where we connect)."""
        public = urlsplit(self._public)
        public_ws = urlunsplit(("wss" if public.scheme == "https" else "ws", public.netloc, public.path, "", ""))
        absolute = urljoin(public_ws + self.config.incoming_path, stream_url)
        target = urlsplit(absolute)
        base = urlsplit(self._base)
        scheme = "wss" if base.scheme == "https" else "ws"
        return absolute, urlunsplit((scheme, base.netloc, target.path, target.query, ""))

    async def _stream(self, twiml: TwimlResult) -> None:
        cfg = self.config
        report = self.report
        assert twiml.stream_url is not None and self._loop is not None
        signed_ws_url, ws_url = self._ws_url(twiml.stream_url)
        report.ws_url = ws_url
        headers = {}
        if cfg.sign_websocket:
            headers["X-Twilio-Signature"] = twilio_signature(cfg.auth_token, signed_ws_url, None)
        t_connect = self._loop.time()
        try:
            ws = await connect(
                ws_url,
                additional_headers=headers,
                user_agent_header="Twilio.TmeWs/1.0",
                compression=None,
                open_timeout=cfg.connect_timeout_s,
                close_timeout=3,
                ping_interval=None,
                max_size=2**23,
            )
        except InvalidStatus as exc:
            report.ws_handshake_status = exc.response.status_code
            report.error = f"media WebSocket handshake rejected: HTTP {exc.response.status_code}"
            return
        except Exception as exc:  # refused, DNS, TLS, timeout…
            report.error = f"media WebSocket connect failed: {type(exc).__name__}: {exc}"
            return
        self._ws = ws
        report.ws_handshake_status = 101
        report.connected = True
        self._t0 = self._loop.time()
        report.connect_ms = (self._t0 - t_connect) * 1000.0
        self._play_clock = self._empty_since = self._t0
        self._greeting = self._listen = _AgentTurn(None)
        recv_task = tick_task = script_task = None
        try:
            try:
                await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
                for _ in range(max(0, cfg.media_before_start)):
                    await self._send_caller_frame(ws, self._silence_b64)
                if cfg.send_start:
                    await ws.send(json.dumps(self._start_message(twiml)))
                    self._start_sent_at = self._loop.time()
                    report.start_sent = True
            except ConnectionClosed:
                report.ended_by = report.closed_by = "server"
                return
            # Frame n (1-based) is due at t_media0 + (n-1)·20 ms; frames sent before `start` count.
            self._t_media0 = self._loop.time() - self._chunk * FRAME_MS / 1000.0

            recv_task = asyncio.create_task(self._receiver(ws), name="sim-recv")
            tick_task = asyncio.create_task(self._ticker(ws), name="sim-tick")
            script_task = asyncio.create_task(self._script(), name="sim-script")
            remaining = cfg.max_duration_s - (self._loop.time() - self._t0)
            done, _ = await asyncio.wait(
                {recv_task, tick_task, script_task}, timeout=max(0.0, remaining), return_when=asyncio.FIRST_COMPLETED
            )
            if script_task in done:
                script_task.result()  # a bug in the script surfaces as report.error
            elif done:
                report.ended_by = "server"
            else:
                report.ended_by = "max_duration"
            await self._hang_up(ws, tick_task)
            try:
                await asyncio.wait_for(recv_task, timeout=5)
            except TimeoutError:
                report.warnings.append("server did not close the socket within 5 s of `stop`")
        finally:
            for task in (script_task, tick_task, recv_task):
                if task is not None and not task.done():
                    task.cancel()
            await ws.close()
            report.close_code = ws.close_code
            report.close_reason = ws.close_reason or None
            report.duration_ms = (self._loop.time() - self._t0) * 1000.0

    def _start_message(self, twiml: TwimlResult) -> dict[str, Any]:
        cfg = self.config
        params = dict(twiml.parameters)
        for key, value in (cfg.custom_parameters_override or {}).items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        message: dict[str, Any] = {
            "event": "start",
            "sequenceNumber": str(self._next_seq()),
            "start": {
                "accountSid": cfg.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": SAMPLE_RATE, "channels": 1},
                "customParameters": params,
            },
            "streamSid": self.stream_sid,
        }
        if cfg.start_hook is not None:
            message = cfg.start_hook(message) or message
        return message

    async def _hang_up(self, ws: ClientConnection, tick_task: asyncio.Task[None]) -> None:
        """Like Twilio when the caller hangs up: media stops, `stop`, close."""
        self._stopping = True
        try:
            await asyncio.wait_for(asyncio.shield(tick_task), timeout=0.2)
        except (TimeoutError, asyncio.CancelledError):
            tick_task.cancel()
        except Exception:
            pass
        if ws.state is not State.OPEN:
            return
        self._closing = True
        self.report.closed_by = "caller"
        stop = {
            "event": "stop",
            "sequenceNumber": str(self._next_seq()),
            "streamSid": self.stream_sid,
            "stop": {"accountSid": self.config.account_sid, "callSid": self.call_sid},
        }
        try:
            await ws.send(json.dumps(stop))
            await ws.close(1000)
        except ConnectionClosed:
            pass

    # ---------------------------------------------------------------- sending (the 20 ms clock)

    async def _send_caller_frame(self, ws: ClientConnection, payload_b64: str) -> None:
        self._seq += 1
        self._chunk += 1
        await ws.send(
            _MEDIA_TEMPLATE % (self._seq, self._chunk, (self._chunk - 1) * FRAME_MS, payload_b64, self.stream_sid)
        )

    async def _ticker(self, ws: ClientConnection) -> None:
        """Every 20 ms: advance playback (echo marks), send the due caller frame(s), wake the script.
        Frames are scheduled on an absolute clock so jitter does not accumulate."""
        assert self._loop is not None
        loop = self._loop
        period = FRAME_MS / 1000.0
        report = self.report
        try:
            while not self._stopping:
                now = loop.time()
                for echo in self._advance_playback(now):
                    await ws.send(echo)
                due = int((now - self._t_media0) / period) + 1
                burst = 0
                while self._chunk < due and burst < 50 and not self._stopping:
                    lag = (now - (self._t_media0 + self._chunk * period)) * 1000.0
                    if lag > report.max_send_lag_ms:
                        report.max_send_lag_ms = lag
                    speech = self._speech
                    if speech is not None and self._speech_i < len(speech):
                        payload = speech[self._speech_i]
                        self._speech_i += 1
                        await self._send_caller_frame(ws, payload)
                        if self._speech_i == len(speech):
                            self._speech = None
                            if self._speech_done is not None and not self._speech_done.done():
                                self._speech_done.set_result(loop.time())
                    else:
                        await self._send_caller_frame(ws, self._silence_b64)
                    burst += 1
                if self._dtmf and self._dtmf[0][0] <= (now - self._t0) * 1000.0:
                    _, digit = self._dtmf.popleft()
                    await ws.send(
                        json.dumps(
                            {
                                "event": "dtmf",
                                "streamSid": self.stream_sid,
                                "sequenceNumber": str(self._next_seq()),
                                "dtmf": {"track": "inbound_track", "digit": digit},
                            }
                        )
                    )
                    report.dtmf_sent.append({"digit": digit, "at_ms": self._ms(now)})
                event, self._tick_event = self._tick_event, asyncio.Event()
                event.set()
                await asyncio.sleep(max(0.0, self._t_media0 + self._chunk * period - loop.time()))
        except ConnectionClosed:
            pass
        report.media_frames_sent = self._chunk

    def _advance_playback(self, now: float) -> list[str]:
        """Play buffered agent audio up to `now` (8 bytes per ms); return mark echoes now due."""
        buf = self._buf
        if not buf:
            self._play_clock = now
            return []
        n = int((now - self._play_clock) * SAMPLE_RATE)
        if n <= 0:
            return []
        n = min(n, len(buf))
        start_total, start_clock = self._played_total, self._play_clock
        if self._recording is not None:
            self._recording += buf[:n]
        del buf[:n]
        self._played_total += n
        if buf:
            self._play_clock += n / SAMPLE_RATE
        else:
            self._empty_since = start_clock + n / SAMPLE_RATE
            self._play_clock = now
        if self._unplayed:
            still = []
            for turn in self._unplayed:
                if turn.first_pos is not None and turn.first_pos < self._played_total:
                    turn.first_played = start_clock + (turn.first_pos - start_total) / SAMPLE_RATE
                else:
                    still.append(turn)
            self._unplayed = still
        echoes: list[str] = []
        marks = self._pending_marks
        while marks and marks[0][0] <= self._played_total:
            pos, name, log = marks.popleft()
            echoes.append(self._echo_mark(name, log, start_clock + (pos - start_total) / SAMPLE_RATE, "played"))
        return echoes

    def _echo_mark(self, name: str, log: dict[str, Any] | None, played_at: float, how: str) -> str:
        self.report.marks_echoed += 1
        if log is not None:
            log["echoed_ms"] = self._ms(self._now())
            log["played_ms"] = self._ms(played_at)
            log["how"] = how
        return json.dumps(
            {
                "event": "mark",
                "sequenceNumber": str(self._next_seq()),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    # ---------------------------------------------------------------- receiving

    async def _receiver(self, ws: ClientConnection) -> None:
        counts = self.report.server_messages
        try:
            async for raw in ws:
                now = self._now()
                if isinstance(raw, bytes):
                    self._protocol_error(f"binary frame ({len(raw)} bytes); Twilio expects JSON text")
                    continue
                try:
                    message = json.loads(raw)
                except ValueError:
                    self._protocol_error(f"not JSON: {raw[:80]!r}")
                    continue
                if not isinstance(message, dict):
                    self._protocol_error(f"JSON is not an object: {raw[:80]!r}")
                    continue
                event = message.get("event")
                counts[str(event)] = counts.get(str(event), 0) + 1
                if event not in _KNOWN_SERVER_EVENTS:
                    self._protocol_error(f"unknown event {event!r}")
                    continue
                if message.get("streamSid") != self.stream_sid:
                    self._protocol_error(f"{event}: streamSid {message.get('streamSid')!r} is not {self.stream_sid!r}")
                    continue
                for echo in self._advance_playback(now):  # bring playback up to this instant first
                    await ws.send(echo)
                if event == "media":
                    self._on_media(message, now)
                elif event == "mark":
                    mark = message.get("mark")
                    name = mark.get("name") if isinstance(mark, dict) else None
                    if not isinstance(name, str) or not name:
                        self._protocol_error(f"mark without mark.name: {raw[:120]!r}")
                        continue
                    echo = self._on_mark(name, now)
                    if echo is not None:
                        await ws.send(echo)
                else:
                    for echo in self._on_clear(now):
                        await ws.send(echo)
        except ConnectionClosed:
            pass
        if not self._closing:
            self.report.closed_by = "server"

    def _on_media(self, message: dict[str, Any], now: float) -> None:
        media = message.get("media")
        payload = media.get("payload") if isinstance(media, dict) else None
        if not isinstance(payload, str):
            self._protocol_error("media without media.payload string")
            return
        try:
            audio = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            self._protocol_error(f"media.payload is not base64 ({len(payload)} chars)")
            return
        if not audio:
            self._protocol_error("media.payload is empty")
            return
        if not self._buf:  # playback (re)starts when audio lands in an empty buffer
            self._play_clock = now
        turn = self._listen
        if turn is not None:
            if turn.first_recv is None:
                turn.first_recv = now
                turn.first_pos = self._queued_total
                self._unplayed.append(turn)
            turn.received_bytes += len(audio)
        self._buf += audio
        self._queued_total += len(audio)
        self._received_bytes += len(audio)
        self._last_media_at = now

    def _on_mark(self, name: str, now: float) -> str | None:
        self.report.marks_sent_by_server += 1
        log = None
        if len(self.report.mark_log) < _MAX_LOG:
            log = {"name": name, "received_ms": self._ms(now), "buffered_ms": len(self._buf) / BYTES_PER_MS}
            self.report.mark_log.append(log)
        if not self._buf:  # nothing left to play: Twilio returns it right away
            return self._echo_mark(name, log, now, "immediate")
        self._pending_marks.append((self._queued_total, name, log))
        return None

    def _on_clear(self, now: float) -> list[str]:
        dropped = len(self._buf)
        self._buf.clear()
        self._queued_total -= dropped
        self._cleared_bytes += dropped
        if dropped:
            self._empty_since = now
        self._play_clock = now
        for turn in self._unplayed:  # its first audio was flushed before it was heard
            turn.first_pos = None
        self._unplayed = []
        echoes = [self._echo_mark(name, log, now, "clear") for _, name, log in self._pending_marks]
        self._pending_marks.clear()
        self.report.clears_received.append(
            {"at_ms": self._ms(now), "flushed_ms": dropped / BYTES_PER_MS, "marks_returned": len(echoes)}
        )
        if self.report.barge_ins and self.report.barge_ins[-1].clear_ms is None and self._barge_played_at is not None:
            barge = self.report.barge_ins[-1]
            barge.clear_ms = self._ms(now)
            barge.clear_after_ms = barge.clear_ms - barge.at_ms
            barge.talk_over_ms = (self._played_total - self._barge_played_at) / BYTES_PER_MS
        return echoes

