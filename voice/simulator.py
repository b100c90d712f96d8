"""Call simulator: plays Twilio against a running server of ours.

It does what Twilio does for an inbound call to a number whose voice URL is our webhook:

1. POSTs the signed "a call comes in" form to ``{base_url}/voice/twilio/incoming/``;
2. parses the TwiML; on ``<Connect><Stream>`` opens the media WebSocket (same path, our base host);
3. speaks the bidirectional Media Streams protocol (``connected``, ``start``, ``media`` every 20 ms in
   real time, ``dtmf``, ``stop``), plays the agent's audio back in real time the way Twilio's
   playback buffer does (marks echoed once the audio queued before them has played, ``clear``
   flushes the buffer and returns pending marks at once);
4. optionally POSTs the signed ``completed`` status callback.

The caller speaks a WAV file or synthetic speech bursts, waits for the agent to finish between
utterances (or barges in), and the run ends with a :class:`CallReport` (latencies, marks, clears,
protocol errors, close code).

No Django here: this module runs against any server. ``voice/management/commands/simulate_call.py``
is the CLI. Protocol reference: docs in ``/work/shared/reference/twilio.md`` §1-§3.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import math
import random
import secrets
import struct
import time
import warnings
import xml.etree.ElementTree as ET
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

with warnings.catch_warnings():
    # Deprecated since 3.11, removed in 3.13 (then `pip install audioop-lts` provides the same module).
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = [
    "BargeIn",
    "CallReport",
    "SimulatedCall",
    "SimulatedCallConfig",
    "TurnReport",
    "load_wav_pcm16",
    "parse_twiml",
    "run_simulated_call",
    "simulate_call",
    "synthetic_speech_pcm16",
    "twilio_signature",
]

SAMPLE_RATE = 8000
BYTES_PER_MS = 8  # μ-law, 8 kHz, mono: one byte per sample
FRAME_MS = 20
FRAME_BYTES = FRAME_MS * BYTES_PER_MS  # 160
MULAW_SILENCE = 0xFF
INCOMING_PATH = "/voice/twilio/incoming/"
STATUS_PATH = "/voice/twilio/status/"
STILL_STREAMING_GAP_S = 0.15  # agent audio arriving with shorter gaps than this is one reply still being spoken
_MAX_LOG = 500  # cap on list-type report entries (mark log, protocol errors)


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two-letter prefix + 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None) -> str:
    """X-Twilio-Signature for a form POST to `url` (or a WebSocket upgrade with params=None)."""
    return RequestValidator(auth_token).compute_signature(url, dict(params or {}))


# --------------------------------------------------------------------------------------------
# Caller audio
# --------------------------------------------------------------------------------------------


def load_wav_pcm16(path: str) -> bytes:
    """Read a WAV file (PCM 8/16/24/32-bit, float32, A-law or μ-law; any rate; mono or multi-channel)
    and return 16-bit mono PCM at 8 kHz."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None  # (format tag, channels, rate, bits)
    frames: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = data[pos + 8 : pos + 8 + size]  # slicing clamps a streamed (0xFFFFFFFF) size
        if chunk_id == b"fmt ":
            tag, channels, rate, _byte_rate, _align, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: real tag is the GUID's first word
                (tag,) = struct.unpack("<H", body[24:26])
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            frames = body
        pos += 8 + size + (size & 1)
    if fmt is None or frames is None:
        raise ValueError(f"{path}: missing fmt or data chunk")
    tag, channels, rate, bits = fmt
    if channels < 1 or rate < 1:
        raise ValueError(f"{path}: bad header (channels={channels}, rate={rate})")
    if tag == 1:  # PCM
        width = bits // 8
        if width not in (1, 2, 3, 4):
            raise ValueError(f"{path}: unsupported PCM width {bits} bits")
        frames = frames[: len(frames) - len(frames) % (width * channels)]
        if width == 1:  # 8-bit WAV is unsigned
            frames = audioop.bias(frames, 1, -128)
        pcm = audioop.lin2lin(frames, width, 2) if width != 2 else frames
    elif tag == 3 and bits == 32:  # IEEE float
        floats = array("f")
        floats.frombytes(frames[: len(frames) - len(frames) % 4])
        pcm = array("h", (int(max(-1.0, min(1.0, s)) * 32767) for s in floats)).tobytes()
    elif tag == 7:
        pcm = audioop.ulaw2lin(frames, 2)
    elif tag == 6:
        pcm = audioop.alaw2lin(frames, 2)
    else:
        raise ValueError(f"{path}: unsupported WAV format tag {tag} ({bits} bits)")
    if channels == 2:
        pcm = audioop.tomono(pcm, 2, 0.5, 0.5)
    elif channels > 2:  # keep the first channel
        samples = array("h")
        samples.frombytes(pcm[: len(pcm) - len(pcm) % (2 * channels)])
        pcm = samples[::channels].tobytes()
    if rate != SAMPLE_RATE:
        pcm, _ = audioop.ratecv(pcm, 2, 1, rate, SAMPLE_RATE, None)
    return pcm


def synthetic_speech_pcm16(length_ms: int, seed: int = 0) -> bytes:
    """Speech-like 8 kHz 16-bit PCM: voiced 'syllables' (a glottal-ish harmonic series shaped by two
    random formants, sin² envelope, 110-270 ms) separated by short gaps. Deterministic per seed.
    Enough to trip energy-based VADs and to tell "speech" from μ-law silence; not intelligible."""
    rng = random.Random(seed)
    total = max(0, int(length_ms)) * BYTES_PER_MS
    out = array("h", bytes(2 * total))
    two_pi = 2.0 * math.pi
    t = 0
    while t < total:
        syllable = rng.randint(110, 270) * BYTES_PER_MS
        gap = rng.randint(15, 70) * BYTES_PER_MS
        f0 = rng.uniform(105.0, 190.0)
        glide = rng.uniform(-0.15, 0.15)
        f1, f2 = rng.uniform(300.0, 800.0), rng.uniform(900.0, 2300.0)
        amplitude = rng.uniform(0.45, 0.8) * 12000.0
        harmonics = [k for k in range(1, 16) if k * f0 < 3400.0]
        weights = [
            math.exp(-(((k * f0 - f1) / 160.0) ** 2)) + 0.6 * math.exp(-(((k * f0 - f2) / 220.0) ** 2)) + 0.12 / k
            for k in harmonics
        ]
        norm = sum(weights)
        weights = [w / norm for w in weights]
        pairs = list(zip(harmonics, weights))
        phase = 0.0
        n = min(syllable, total - t)
        for j in range(n):
            x = j / syllable
            phase += two_pi * f0 * (1.0 + glide * x) / SAMPLE_RATE
            s = 0.0
            for k, w in pairs:
                s += w * math.sin(k * phase)
            env = math.sin(math.pi * x) ** 2
            out[t + j] = int(amplitude * env * (s + 0.04 * (rng.random() - 0.5)))
        t += syllable + gap
    return out.tobytes()


def _trim_silence(pcm: bytes, threshold: int = 300, margin_frames: int = 1) -> bytes:
    """Cut leading/trailing 20 ms frames whose RMS is under `threshold`, so an utterance's end
    (what latency is measured from) is the end of speech, not of the file."""
    step = FRAME_BYTES * 2  # 20 ms of 16-bit samples
    levels = [audioop.rms(pcm[i : i + step], 2) for i in range(0, len(pcm), step)]
    loud = [i for i, level in enumerate(levels) if level >= threshold]
    if not loud:
        return pcm
    first = max(0, loud[0] - margin_frames)
    last = min(len(levels), loud[-1] + 1 + margin_frames)
    return pcm[first * step : last * step]


def _mulaw_frames_b64(pcm: bytes) -> list[str]:
    """16-bit 8 kHz PCM → base64 μ-law payloads of exactly 160 bytes (last one padded with silence)."""
    mulaw = audioop.lin2ulaw(pcm, 2)
    if len(mulaw) % FRAME_BYTES:
        mulaw += bytes([MULAW_SILENCE]) * (FRAME_BYTES - len(mulaw) % FRAME_BYTES)
    return [base64.b64encode(mulaw[i : i + FRAME_BYTES]).decode("ascii") for i in range(0, len(mulaw), FRAME_BYTES)]


# --------------------------------------------------------------------------------------------
# TwiML
# --------------------------------------------------------------------------------------------


@dataclass
class TwimlResult:
    outcome: str  # stream | dial | say | hangup | reject | redirect | empty | other | invalid | http_error | no_response
    http_status: int | None = None
    verbs: list[str] = field(default_factory=list)
    stream_url: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    say: list[str] = field(default_factory=list)
    dial: str | None = None
    raw: str | None = None


def parse_twiml(text: str) -> TwimlResult:
    """Classify a voice webhook's TwiML. `outcome` is the most significant verb: a bidirectional
    stream beats a transfer, which beats a spoken refusal, which beats a bare hang-up."""
    result = TwimlResult(outcome="invalid", raw=text[:4000])
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return result
    if root.tag != "Response":
        return result
    result.verbs = [child.tag for child in root]
    stream = root.find("Connect/Stream")
    if stream is not None:
        result.stream_url = stream.get("url")
        result.parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    result.say = [(el.text or "").strip() for el in root.iter("Say")]
    dial = root.find("Dial")
    if dial is not None:
        target = (dial.text or "").strip()
        if not target:
            for noun in dial:
                if (noun.text or "").strip():
                    target = f"{noun.tag}:{noun.text.strip()}"
                    break
        result.dial = target
    if result.stream_url:
        result.outcome = "stream"
    elif dial is not None:
        result.outcome = "dial"
    elif result.say:
        result.outcome = "say"
    elif "Hangup" in result.verbs:
        result.outcome = "hangup"
    elif "Reject" in result.verbs:
        result.outcome = "reject"
    elif "Redirect" in result.verbs:
        result.outcome = "redirect"
    elif not result.verbs:
        result.outcome = "empty"
    else:
        result.outcome = "other"
    return result


# --------------------------------------------------------------------------------------------
# Config and report
# --------------------------------------------------------------------------------------------


@dataclass
class SimulatedCallConfig:
    """One simulated inbound call. Times are milliseconds unless the name says `_s`."""

    base_url: str  # where to connect, e.g. http://127.0.0.1:8000
    auth_token: str  # signs the webhook (and the WebSocket upgrade)
    to_number: str = "+14155550100"
    from_number: str = "+14155550123"
    public_url: str | None = None  # the server's PUBLIC_BASE_URL, used for signing; default base_url
    account_sid: str = "AC" + "0" * 32
    call_sid: str | None = None  # default: random CA…
    stream_sid: str | None = None  # default: random MZ…

    # Caller audio: WAV file(s) (each file is one utterance) or synthetic speech bursts.
    wav_path: str | Sequence[str] | None = None
    utterances: int = 2
    utterance_ms: int = 1500
    seed: int = 1

    # Turn-taking.
    wait_for_greeting: bool = True
    greeting_timeout_s: float = 8.0  # no greeting audio by then → start talking anyway
    wait_for_agent_ms: int = 700  # agent is "done" after its playback buffer was empty this long
    reply_timeout_s: float = 10.0  # no agent audio this long after an utterance → go on
    max_agent_turn_s: float = 30.0  # cap on one agent turn once it started
    barge_in: bool = False  # talk over the agent's reply instead of waiting for it to finish
    barge_in_delay_ms: int = 450  # … this long after the reply starts playing
    barge_in_from_utterance: int = 1  # 0 = also interrupt the greeting
    # > 0: barge in only once the reply's audio has paused this long while it is still streaming (a caller who
    # starts talking in a gap of a reply generated slower than real time, when every mark has come back)
    barge_in_pause_ms: int = 0
    dtmf: Sequence[tuple[int, str]] = ()  # (ms after start, digit)

    # Ending.
    max_duration_s: float = 60.0
    hang_up_after_s: float | None = None  # fixed call length; None = after the last reply
    hang_up_pause_ms: int = 300  # silence after the last reply before hanging up
    send_status_callback: bool = False

    # Protocol knobs, for negative tests of the server.
    send_start: bool = True
    media_before_start: int = 0  # silence frames sent between `connected` and `start`
    custom_parameters_override: Mapping[str, str | None] | None = None  # merged over TwiML's; None deletes
    start_hook: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None  # edit the `start` message
    webhook_params: Mapping[str, str | None] | None = None  # extra/overriding form fields; None deletes
    signature_override: str | None = None  # send this X-Twilio-Signature instead of the right one
    sign_websocket: bool = True  # X-Twilio-Signature on the upgrade (signed over the Stream URL)

    incoming_path: str = INCOMING_PATH
    status_path: str = STATUS_PATH
    webhook_timeout_s: float = 15.0  # Twilio gives up after 15 s
    connect_timeout_s: float = 10.0
    record_agent_audio_path: str | None = None  # write the audio that was played as 16-bit WAV


@dataclass
class TurnReport:
    index: int
    barge_in: bool
    utterance_start_ms: float
    utterance_end_ms: float | None = None
    utterance_audio_ms: float = 0.0
    first_agent_audio_received_ms: float | None = None
    first_agent_audio_played_ms: float | None = None
    latency_received_ms: float | None = None  # end of caller speech → first agent audio received
    latency_played_ms: float | None = None  # end of caller speech → first agent audio played
    agent_audio_received_ms: float = 0.0
    agent_done_ms: float | None = None


@dataclass
class BargeIn:
    utterance: int
    at_ms: float
    agent_playing_since_ms: float | None
    agent_buffered_ms: float  # agent audio still queued for playback when the caller started talking
    clear_ms: float | None = None
    clear_after_ms: float | None = None  # barge-in start → server's `clear`
    talk_over_ms: float | None = None  # agent audio played between barge-in start and the clear


@dataclass
class CallReport:
    call_sid: str
    stream_sid: str
    account_sid: str
    from_number: str
    to_number: str
    webhook_url: str
    signed_url: str
    webhook_status: int | None = None
    webhook_ms: float | None = None
    twiml: dict[str, Any] = field(default_factory=dict)
    ws_url: str | None = None
    ws_handshake_status: int | None = None
    connected: bool = False
    connect_ms: float | None = None
    start_sent: bool = False
    greeting_latency_ms: float | None = None  # `start` sent → first agent audio played
    greeting_received_ms: float | None = None  # `start` sent → first agent audio received
    turns: list[TurnReport] = field(default_factory=list)
    agent_audio_received_ms: float = 0.0
    agent_audio_played_ms: float = 0.0
    agent_audio_cleared_ms: float = 0.0
    caller_speech_ms: float = 0.0
    media_frames_sent: int = 0
    max_send_lag_ms: float = 0.0  # how late the simulator sent a frame (its own health)
    server_messages: dict[str, int] = field(default_factory=dict)
    marks_sent_by_server: int = 0
    marks_echoed: int = 0
    marks_pending_at_end: int = 0
    mark_log: list[dict[str, Any]] = field(default_factory=list)
    clears_received: list[dict[str, Any]] = field(default_factory=list)
    barge_ins: list[BargeIn] = field(default_factory=list)
    dtmf_sent: list[dict[str, Any]] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)
    protocol_error_count: int = 0
    ended_by: str | None = None  # script | hang_up_after | max_duration | server | error
    closed_by: str | None = None  # caller | server
    close_code: int | None = None
    close_reason: str | None = None
    duration_ms: float | None = None  # media socket open → closed
    status_callback_status: int | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def failures(self) -> list[str]:
        """Why the call counts as failed; empty when it went fine."""
        out: list[str] = []
        if self.error:
            out.append(f"error: {self.error}")
        outcome = self.twiml.get("outcome")
        if outcome != "stream":
            out.append(f"twiml outcome is {outcome!r}, not a stream")
        elif not self.connected:
            out.append("media WebSocket never connected")
        if self.protocol_error_count:
            out.append(f"{self.protocol_error_count} protocol error(s)")
        if self.connected:
            normal = (1000, 1001, 1005) if self.closed_by == "caller" else (1000,)
            if self.close_code not in normal:
                out.append(f"socket closed by {self.closed_by} with code {self.close_code}")
        return out

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["failures"] = self.failures
        return _round_floats(data)


def _round_floats(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 1)
    if isinstance(value, dict):
        return {k: _round_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round_floats(v) for v in value]
    return value


class _AgentTurn:
    """Agent audio that arrives after a given moment (the greeting, or the reply to an utterance)."""

    __slots__ = ("first_recv", "first_pos", "first_played", "received_bytes", "turn")

    def __init__(self, turn: TurnReport | None) -> None:
        self.first_recv: float | None = None  # loop time
        self.first_pos: int | None = None  # queue offset of its first byte
        self.first_played: float | None = None  # loop time
        self.received_bytes = 0
        self.turn = turn


# --------------------------------------------------------------------------------------------
# The call
# --------------------------------------------------------------------------------------------

_MEDIA_TEMPLATE = (
    '{"event":"media","sequenceNumber":"%d","media":{"track":"inbound","chunk":"%d",'
    '"timestamp":"%d","payload":"%s"},"streamSid":"%s"}'
)
_KNOWN_SERVER_EVENTS = ("media", "mark", "clear")


class SimulatedCall:
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
            pcms = [_trim_silence(load_wav_pcm16(p)) for p in paths]
        else:
            pcms = [
                _trim_silence(synthetic_speech_pcm16(cfg.utterance_ms, seed=cfg.seed * 1000 + i))
                for i in range(max(0, cfg.utterances))
            ]
        return [_mulaw_frames_b64(pcm) for pcm in pcms]

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

    # ---------------------------------------------------------------- HTTP

    def _webhook_params(self) -> dict[str, str]:
        cfg = self.config
        params = {
            "AccountSid": cfg.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": cfg.from_number,
            "To": cfg.to_number,
            "Caller": cfg.from_number,
            "Called": cfg.to_number,
        }
        for role, number, geo in (
            ("From", cfg.from_number, ("SAN FRANCISCO", "CA", "94103", "US")),
            ("To", cfg.to_number, ("", "CA", "", "US")),
        ):
            if number.startswith("+1"):
                twin = "Caller" if role == "From" else "Called"
                for prefix in (role, twin):
                    params.update(
                        {f"{prefix}City": geo[0], f"{prefix}State": geo[1], f"{prefix}Zip": geo[2], f"{prefix}Country": geo[3]}
                    )
        for key, value in (cfg.webhook_params or {}).items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return params

    def _signed_headers(self, url: str, params: Mapping[str, str]) -> dict[str, str]:
        cfg = self.config
        signature = cfg.signature_override if cfg.signature_override is not None else twilio_signature(cfg.auth_token, url, params)
        return {
            "X-Twilio-Signature": signature,
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }

    async def _post_webhook(self, http: httpx.AsyncClient) -> TwimlResult:
        params = self._webhook_params()
        headers = self._signed_headers(self.report.signed_url, params)
        started = time.monotonic()
        try:
            response = await http.post(self.report.webhook_url, data=params, headers=headers)
        except httpx.HTTPError as exc:
            self.report.error = f"webhook request failed: {type(exc).__name__}: {exc}"
            twiml = TwimlResult(outcome="no_response")
            self.report.twiml = asdict(twiml)
            return twiml
        self.report.webhook_ms = (time.monotonic() - started) * 1000.0
        self.report.webhook_status = response.status_code
        if response.status_code != 200:
            twiml = TwimlResult(outcome="http_error", http_status=response.status_code, raw=response.text[:2000])
            self.report.error = f"webhook answered HTTP {response.status_code}"
        else:
            twiml = parse_twiml(response.text)
            twiml.http_status = response.status_code
            if twiml.outcome == "invalid":
                self.report.error = "webhook answered something that is not TwiML"
        self.report.twiml = asdict(twiml)
        return twiml

    async def _post_status(self, http: httpx.AsyncClient, elapsed_s: float) -> None:
        cfg = self.config
        params = {
            "AccountSid": cfg.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": "completed",
            "CallDuration": str(int(math.ceil(elapsed_s))),
            "Duration": str(max(1, int(math.ceil(elapsed_s / 60.0)))),
            "Direction": "inbound",
            "From": cfg.from_number,
            "To": cfg.to_number,
            "Caller": cfg.from_number,
            "Called": cfg.to_number,
            "CallbackSource": "call-progress-events",
            "SequenceNumber": "0",
            "Timestamp": format_datetime(datetime.now(timezone.utc)),
        }
        url = self._public + cfg.status_path
        try:
            response = await http.post(self._base + cfg.status_path, data=params, headers=self._signed_headers(url, params))
            self.report.status_callback_status = response.status_code
            if response.status_code >= 400:
                self.report.warnings.append(f"status callback answered HTTP {response.status_code}")
        except httpx.HTTPError as exc:
            self.report.warnings.append(f"status callback failed: {type(exc).__name__}: {exc}")

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
            _write_wav(self.config.record_agent_audio_path, audioop.ulaw2lin(bytes(self._recording), 2))


def _write_wav(path: str, pcm16: bytes) -> None:
    import wave

    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm16)


async def run_simulated_call(config: SimulatedCallConfig) -> CallReport:
    """Place one simulated inbound call against `config.base_url` and return its report."""
    return await SimulatedCall(config).run()


def simulate_call(config: SimulatedCallConfig) -> CallReport:
    """Synchronous wrapper (own event loop) for scripts and management commands."""
    return asyncio.run(run_simulated_call(config))
