"""One simulated call of the load generator: a Twilio call through a server (uvicorn, daphne, relay) or the OpenAI
protocol straight to the stand-in (direct: Realtime, or GPT-Live with its `session.start` first); it times every
frame's round trip by its tag."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from bench.bridge.config import BUSINESS_NUMBERS, LIVE_MODEL, MODEL, PROBE_EVERY_S, SETUP_TIMEOUT_S, STOP_TIMEOUT_S
from bench.bridge.wire import FRAME_S, MAGIC_FRAME, MAGIC_PROBE, LeanWebSocket, frame_payload, http_request, read_tag


@dataclass
class Target:
    kind: str            # uvicorn | daphne | relay | direct
    base_url: str = ""   # our server: http://127.0.0.1:P (PUBLIC_BASE_URL)
    ws_url: str = ""     # relay: its media URL; direct: the stand-in's URL for the engine
    auth_token: str = ""
    account_sid: str = ""
    engine: str = "realtime"  # realtime | live: the called business's voice engine (direct: the protocol spoken)


@dataclass
class CallResult:
    index: int
    frames: int
    call_sid: str = ""
    stream_sid: str = ""
    sent: int = 0
    received: int = 0
    rtts: list[float] = field(default_factory=list)
    recv_at: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    duplicates: int = 0
    misrouted: int = 0
    foreign: int = 0      # media we could not read a tag from
    marks: int = 0
    clears: int = 0       # Twilio `clear` (a barge-in stopped the agent's audio)
    probes: int = 0
    error: str = ""       # setup failed
    closed_early: str = ""
    # cold/burst arrivals (perf_counter times; 0 = did not happen)
    arrival_lag: float = 0.0  # how late the load generator started this call after its scheduled arrival
    setup_start: float = 0.0  # webhook sent (relay: socket connect)
    webhook_done: float = 0.0  # TwiML read (our server only)
    start_sent: float = 0.0   # socket open, `connected` + `start` sent
    first_echo: float = 0.0   # the first of this call's frames came back: the stream flows
    streamed: bool = False    # `start` was sent, so the server owes us a finalised call

    def __post_init__(self) -> None:
        self.send_t = [0.0] * self.frames
        self.got = bytearray(self.frames)


# The direct leg's GPT-Live session: the format our server asks for on a phone call (μ-law straight through).
LIVE_START = json.dumps({"type": "session.start", "session": {
    "model": LIVE_MODEL, "audio": {"format": {"type": "audio/pcmu", "rate": 8000}}}})
OUTPUT_DELTA = {"realtime": "response.output_audio.delta", "live": "session.output_audio.delta"}


class LoadCall:
    """One simulated call: Twilio (uvicorn/daphne/relay) or OpenAI protocol (direct)."""

    def __init__(self, target: Target, index: int, frames: int) -> None:
        self.target = target
        self.twilio = target.kind != "direct"
        self.r = CallResult(index=index, frames=frames)
        self.r.call_sid = "CA" + secrets.token_hex(16)
        self.r.stream_sid = "MZ" + secrets.token_hex(16)
        self.ws: LeanWebSocket | None = None
        self.seq = 0           # Twilio sequenceNumber of the next message we send
        self.chunk = 0
        self.probe_back = asyncio.Event()
        self.stopping = False
        self.live = target.engine == "live"
        self.to_number = BUSINESS_NUMBERS[target.engine]
        self.session_started = asyncio.Event()  # direct GPT-Live: `session.started` came
        self._delta_type = OUTPUT_DELTA[target.engine]
        self.from_number = ""  # "": one of its own from the call's index (not a valid number: nothing is booked)
        self.quiet = False     # quiet tags: frames are silence to a VAD unless is_loud(seq) (bench/soak.py)
        self._index = index & 0xFFFF
        self._webhook_request: tuple[str, bytes, dict[str, str]] | None = None
        if self.twilio:
            self._head = '{"event":"media","sequenceNumber":"%d","media":{"track":"inbound","chunk":"%d",' \
                         '"timestamp":"%d","payload":"%s"},"streamSid":"' + self.r.stream_sid + '"}'
            self._mark = '{"event":"mark","sequenceNumber":"%d","streamSid":"' + self.r.stream_sid + \
                         '","mark":{"name":%s}}'
        elif self.live:
            self._head = '{"type":"session.input_audio.append","audio":"%s"}'
        else:
            self._head = '{"type":"input_audio_buffer.append","audio":"%s"}'

    @property
    def open(self) -> bool:
        return self.ws is not None and not self.ws.closed.is_set()

    # -- setup --

    def prepare_webhook(self) -> None:
        """Sign the incoming-call webhook ahead of time, so the load generator's own work (and its first import of
        the validator) stays out of the set-up time."""
        from twilio.request_validator import RequestValidator

        url = self.target.base_url + "/voice/twilio/incoming/"
        # Each call from a caller of its own, as calls arriving together are (one shared number would make every
        # call update the same customer row).
        caller = self.from_number or f"+1555011{self.r.index % 10000:04d}"
        params = {"CallSid": self.r.call_sid, "AccountSid": self.target.account_sid, "From": caller,
                  "To": self.to_number, "Caller": caller, "Called": self.to_number,
                  "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}
        signature = RequestValidator(self.target.auth_token).compute_signature(url, params)
        self._webhook_request = (url, urllib.parse.urlencode(params).encode(), {
            "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})

    async def _webhook(self) -> tuple[str, dict[str, str]]:
        """The signed incoming-call webhook, as Twilio sends it; returns the TwiML's stream URL and parameters."""
        if self._webhook_request is None:
            self.prepare_webhook()
        url, form, headers = self._webhook_request
        status, body = await http_request(url, body=form, headers=headers)
        if status != 200:
            raise RuntimeError(f"webhook answered HTTP {status}: {body[:200]}")
        root = ET.fromstring(body)
        stream = root.find("./Connect/Stream")
        if stream is None or not stream.get("url"):
            raise RuntimeError(f"webhook answered without <Connect><Stream>: {body[:200]}")
        parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        return stream.get("url", ""), parameters

    async def _open_stream(self) -> None:
        """Twilio's side of a call up to its first media frame: webhook (not for the relay), socket, `connected`,
        `start`. The OpenAI protocol (direct) opens the socket (GPT-Live: and starts the session, as our server does
        before it sends audio)."""
        if not self.twilio:
            # The OpenAI leg, with the stand-in's required bearer header (as voice/session/lifecycle.py sends it).
            url = self.target.ws_url if self.live else f"{self.target.ws_url}?model={MODEL}"
            self.ws = await LeanWebSocket.connect(url, self._on_text, headers={"Authorization": "Bearer sk-bench"})
            if self.live:
                self.ws.send(LIVE_START)
                await self.session_started.wait()  # bounded by the caller's set-up timeout
            return
        if self.target.kind == "relay":
            url, params = self.target.ws_url, {"call_id": "0", "token": "relay"}
        else:
            url, params = await self._webhook()
            self.r.webhook_done = time.perf_counter()
        # Twilio's leg: no compression offered, no client pings during a short call.
        self.ws = await LeanWebSocket.connect(url, self._on_text)
        self.ws.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')
        self.seq = 1
        self.ws.send(json.dumps({
            "event": "start", "sequenceNumber": str(self.seq), "streamSid": self.r.stream_sid,
            "start": {"accountSid": self.target.account_sid, "streamSid": self.r.stream_sid,
                      "callSid": self.r.call_sid, "tracks": ["inbound"],
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                      "customParameters": params}}))
        self.r.streamed = True
        self.r.start_sent = time.perf_counter()

    async def setup(self, probe_deadline: float) -> None:
        """Steady state: open the stream, then probe until one frame makes the whole round trip."""
        await self._open_stream()
        while time.monotonic() < probe_deadline:
            if not self.open:
                raise RuntimeError(f"socket closed during setup: {self._closed_why()}")
            self._send_frame(MAGIC_PROBE, self.r.probes)
            self.r.probes += 1
            try:
                await asyncio.wait_for(self.probe_back.wait(), PROBE_EVERY_S)
                return
            except asyncio.TimeoutError:
                continue
        raise RuntimeError(f"no probe frame came back within {SETUP_TIMEOUT_S:.0f} s")

    async def arrive(self, at: float, drain_s: float) -> None:
        """Cold start and burst: arrive at `at` (perf_counter) like a Twilio call and stream media right after
        `start`, without waiting for anything; set-up time runs from the webhook to this call's first echo."""
        r = self.r
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        r.setup_start = time.perf_counter()
        r.arrival_lag = r.setup_start - at
        try:
            await asyncio.wait_for(self._open_stream(), SETUP_TIMEOUT_S)
        except Exception as exc:
            r.error = f"{type(exc).__name__}: {exc}"[:300]
            await self.close()
            return
        await self.media(time.perf_counter(), drain_s)
        if not r.first_echo:
            r.error = "no frame came back during the call" + (f" ({r.closed_early})" if r.closed_early else "")

    def _closed_why(self) -> str:
        ws = self.ws
        if ws is None:
            return "never opened"
        return f"code {ws.close_code} {ws.close_reason}".strip() + (f" ({ws.error})" if ws.error else "")

    def is_loud(self, seq: int) -> bool:
        """Whether frame `seq` is speech (quiet tags only); a soak's call says when its caller speaks."""
        return False

    def _send_frame(self, magic: int, seq: int) -> None:
        payload = (frame_payload(magic, self.r.index, seq, quiet=True, loud=self.is_loud(seq)) if self.quiet
                   else frame_payload(magic, self.r.index, seq))
        if self.twilio:
            self.seq += 1
            self.chunk += 1
            self.ws.send(self._head % (self.seq, self.chunk, (self.chunk - 1) * 20, payload))
        else:
            self.ws.send(self._head % payload)

    # -- the call --

    def _on_text(self, raw: str | None) -> None:
        """Every server message, straight from data_received: time it, echo marks."""
        now = time.perf_counter()
        r = self.r
        if raw is None:
            r.foreign += 1
            return
        try:
            message = json.loads(raw)
        except ValueError:
            r.foreign += 1
            return
        if self.twilio:
            event = message.get("event")
            if event == "mark":
                r.marks += 1
                if not self.stopping and self.open:
                    self.seq += 1  # Twilio echoes the mark once the audio before it has played
                    self.ws.send(self._mark % (self.seq, json.dumps((message.get("mark") or {}).get("name", ""))))
                return
            if event == "clear":
                r.clears += 1
                return
            if event != "media":
                return
            payload = (message.get("media") or {}).get("payload")
        else:
            etype = message.get("type")
            if etype != self._delta_type:
                if etype == "session.started":
                    self.session_started.set()
                return
            payload = message.get("delta")
        tag = read_tag(payload)
        if tag is None or tag[0] not in (MAGIC_FRAME, MAGIC_PROBE):
            r.foreign += 1
            return
        magic, call, seq = tag
        if call != self._index:
            r.misrouted += 1
        elif magic == MAGIC_PROBE:
            self.probe_back.set()
        elif seq >= r.frames or r.send_t[seq] == 0.0:
            r.foreign += 1
        elif r.got[seq]:
            r.duplicates += 1
        else:
            if not r.first_echo:
                r.first_echo = now
            r.got[seq] = 1
            r.received += 1
            r.rtts.append(now - r.send_t[seq])
            r.recv_at.append(now)

    async def media(self, start_at: float, drain_s: float) -> None:
        """Send every frame on a drift-free 20 ms schedule from start_at, then drain, stop and close."""
        r = self.r
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        perf = time.perf_counter

        def tick(seq: int) -> None:
            if finished.done():
                return
            if seq >= r.frames or not self.open:
                finished.set_result(None)
                return
            target = start_at + seq * FRAME_S
            now = perf()
            if now < target - 0.001:  # timers are ~1 ms coarse: send within 1 ms of the frame's time
                loop.call_later(target - now, tick, seq)
                return
            r.lags.append(max(0.0, now - target))
            r.send_t[seq] = now
            try:
                self._send_frame(MAGIC_FRAME, seq)
            except Exception as exc:
                r.send_t[seq] = 0.0
                r.closed_early = r.closed_early or f"send failed: {exc}"
                finished.set_result(None)
                return
            r.sent += 1
            loop.call_later(max(0.0, start_at + (seq + 1) * FRAME_S - perf()), tick, seq + 1)

        loop.call_later(max(0.0, start_at - perf()), tick, 0)
        try:
            await finished
        finally:
            if not finished.done():
                finished.set_result(None)
        drain_until = perf() + drain_s
        while r.received < r.sent and perf() < drain_until and self.open:
            await asyncio.sleep(0.01)
        if not self.open and not r.closed_early:
            r.closed_early = f"closed by the server: {self._closed_why()}"
        await self.close()

    async def close(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        if self.ws is None:
            return
        try:
            if self.twilio and self.open:
                self.seq += 1
                self.ws.send(json.dumps({"event": "stop", "sequenceNumber": str(self.seq),
                                         "streamSid": self.r.stream_sid,
                                         "stop": {"accountSid": self.target.account_sid,
                                                  "callSid": self.r.call_sid}}))
            elif self.live and self.open and self.session_started.is_set():
                # As our server ends a GPT-Live session: `session.close`; the stand-in answers and closes.
                self.ws.send('{"type":"session.close"}')
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.ws.closed.wait(), STOP_TIMEOUT_S)
            await self.ws.close(STOP_TIMEOUT_S)
        except Exception:
            if self.ws.transport is not None:
                self.ws.transport.abort()
