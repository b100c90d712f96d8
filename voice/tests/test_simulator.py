"""The call simulator, run against a tiny fake receptionist (aiohttp: webhook + media WebSocket) that
checks Twilio signatures, answers Connect/Stream TwiML and plays audio, marks and clears back."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import math
import re
import struct
import threading
import warnings
import wave
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import WSMsgType, web
from twilio.request_validator import RequestValidator

from voice.offline.simulator import (
    SimulatedCallConfig,
    load_wav_pcm16,
    parse_twiml,
    run_simulated_call,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

TOKEN = "test-auth-token-0123456789abcdef"
PUBLIC = "https://rx.example.test"  # what the server believes its public URL is; we connect to 127.0.0.1
ACCOUNT = "AC" + "1" * 32
SID_RE = re.compile(r"^(CA|MZ)[0-9a-f]{32}$")


def _tone(ms: int) -> bytes:
    """μ-law 440 Hz: agent audio that is clearly not silence."""
    pcm = struct.pack(f"<{ms * 8}h", *(int(4000 * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(ms * 8)))
    return audioop.lin2ulaw(pcm, 2)


AGENT_AUDIO = _tone(3000)


class MediaSession:
    """Server side of one media WebSocket: records what the caller sends, with arrival times, and a
    crude energy VAD over the caller's audio."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self.messages: list[tuple[float, dict]] = []
        self.stream_sid: str | None = None
        self.start: dict | None = None
        self.speech_starts: list[float] = []
        self.speech_ends: list[float] = []
        self.echoes: dict[str, float] = {}
        self._speaking = False
        self._quiet_ms = 0
        self._changed = asyncio.Event()

    def feed(self, text: str) -> None:
        now = self.loop.time()
        message = json.loads(text)
        self.messages.append((now, message))
        event = message["event"]
        if event == "start":
            self.start = message
            self.stream_sid = message["streamSid"]
        elif event == "media":
            pcm = audioop.ulaw2lin(base64.b64decode(message["media"]["payload"]), 2)
            if audioop.rms(pcm, 2) > 400:
                if not self._speaking:
                    self._speaking = True
                    self.speech_starts.append(now)
                self._quiet_ms = 0
            elif self._speaking:
                self._quiet_ms += 20
                if self._quiet_ms >= 200:  # 200 ms of silence ends a caller utterance
                    self._speaking = False
                    self.speech_ends.append(now)
        elif event == "mark":
            self.echoes[message["mark"]["name"]] = now
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    def events(self) -> list[str]:
        return [m["event"] for _, m in self.messages]

    async def send_audio(self, ms: int, chunk_ms: int = 200) -> float:
        """Queue `ms` of agent audio at once (like a fast model), in `chunk_ms` messages."""
        sent = self.loop.time()
        audio = AGENT_AUDIO[: ms * 8]
        for i in range(0, len(audio), chunk_ms * 8):
            payload = base64.b64encode(audio[i : i + chunk_ms * 8]).decode()
            await self.ws.send_str(json.dumps({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}}))
        return sent

    async def send_mark(self, name: str) -> float:
        await self.ws.send_str(json.dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}}))
        return self.loop.time()

    async def send_clear(self) -> float:
        await self.ws.send_str(json.dumps({"event": "clear", "streamSid": self.stream_sid}))
        return self.loop.time()


Behavior = Callable[[MediaSession], Awaitable[None]]


class FakeReceptionist:
    def __init__(self, behavior: Behavior | None = None, twiml: str | None = None) -> None:
        self.behavior = behavior
        self.twiml = twiml
        self.validator = RequestValidator(TOKEN)
        self.webhooks: list[tuple[dict, bool]] = []
        self.statuses: list[tuple[dict, bool]] = []
        self.upgrades: list[bool] = []
        self.sessions: list[MediaSession] = []
        self.behavior_errors: list[BaseException] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/voice/twilio/incoming/", self.incoming)
        app.router.add_post("/voice/twilio/status/", self.status)
        app.router.add_get("/ws/twilio/media/", self.media)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def incoming(self, request: web.Request) -> web.Response:
        params = dict(await request.post())
        ok = self.validator.validate(PUBLIC + request.path, params, request.headers.get("X-Twilio-Signature", ""))
        self.webhooks.append((params, ok))
        if not ok:
            return web.Response(status=403, text="bad signature")
        twiml = self.twiml or (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            '<Stream url="wss://rx.example.test/ws/twilio/media/">'
            '<Parameter name="call_id" value="c-1"/><Parameter name="token" value="tok-abc"/>'
            "</Stream></Connect></Response>"
        )
        return web.Response(text=twiml, content_type="text/xml")

    async def status(self, request: web.Request) -> web.Response:
        params = dict(await request.post())
        ok = self.validator.validate(PUBLIC + request.path, params, request.headers.get("X-Twilio-Signature", ""))
        self.statuses.append((params, ok))
        return web.Response(status=204 if ok else 403)

    async def media(self, request: web.Request) -> web.WebSocketResponse:
        signature = request.headers.get("X-Twilio-Signature", "")
        self.upgrades.append(self.validator.validate("wss://rx.example.test" + request.path, {}, signature))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = MediaSession(ws)
        self.sessions.append(session)
        task = asyncio.create_task(self._behave(session)) if self.behavior else None
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                session.feed(msg.data)
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return ws

    async def _behave(self, session: MediaSession) -> None:
        try:
            await session.wait_for(lambda: session.stream_sid is not None)
            await self.behavior(session)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # surfaced by the test
            self.behavior_errors.append(exc)


@contextlib.asynccontextmanager
async def fake_server(behavior: Behavior | None = None, twiml: str | None = None):
    server = FakeReceptionist(behavior, twiml)
    base = await server.start()
    try:
        yield server, base
    finally:
        await server.stop()
    assert not server.behavior_errors, server.behavior_errors


def _config(base: str, **kw) -> SimulatedCallConfig:
    defaults = dict(
        base_url=base,
        public_url=PUBLIC,
        auth_token=TOKEN,
        account_sid=ACCOUNT,
        to_number="+14155550100",
        from_number="+14155550123",
        wait_for_agent_ms=300,
        hang_up_pause_ms=100,
        greeting_timeout_s=3,
        reply_timeout_s=3,
        max_duration_s=15,
    )
    defaults.update(kw)
    return SimulatedCallConfig(**defaults)


# ------------------------------------------------------------------------------------------------


async def test_signed_call_streams_paced_audio_and_echoes_marks_after_playback():
    times: dict[str, float] = {}

    async def agent(s: MediaSession) -> None:
        times["greeting"] = await s.send_audio(800)
        await s.send_mark("greeting")
        await s.wait_for(lambda: s.speech_ends)
        await asyncio.sleep(0.15)
        times["reply"] = await s.send_audio(400)
        await s.send_mark("reply")

    async with fake_server(agent) as (server, base):
        report = await run_simulated_call(_config(base, utterances=1, utterance_ms=700))

    assert report.ok, report.to_dict()
    # The webhook was signed over the *public* URL and carries Twilio's inbound-call form.
    [(params, signature_ok)] = server.webhooks
    assert signature_ok
    assert SID_RE.match(params["CallSid"]) and params["CallSid"] == report.call_sid
    assert params["AccountSid"] == ACCOUNT and params["ApiVersion"] == "2010-04-01"
    assert (params["CallStatus"], params["Direction"]) == ("ringing", "inbound")
    assert (params["From"], params["To"], params["Caller"], params["Called"]) == (
        "+14155550123", "+14155550100", "+14155550123", "+14155550100",
    )
    assert server.upgrades == [True]  # the upgrade is signed over the Stream URL (wss://public-host/path)
    assert report.ws_url.startswith("ws://127.0.0.1:") and report.ws_url.endswith("/ws/twilio/media/")

    [s] = server.sessions
    events = s.events()
    assert events[:2] == ["connected", "start"] and events[-1] == "stop"
    assert s.messages[0][1] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = s.start["start"]
    assert start["customParameters"] == {"call_id": "c-1", "token": "tok-abc"}
    assert start["callSid"] == report.call_sid and start["accountSid"] == ACCOUNT
    assert SID_RE.match(s.stream_sid) and start["streamSid"] == s.stream_sid == report.stream_sid
    assert start["tracks"] == ["inbound"]
    assert start["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    seqs = [int(m["sequenceNumber"]) for _, m in s.messages if "sequenceNumber" in m]
    assert seqs == list(range(1, len(seqs) + 1))
    stop = s.messages[-1][1]
    assert stop["stop"] == {"accountSid": ACCOUNT, "callSid": report.call_sid} and stop["streamSid"] == s.stream_sid

    # Media: 160-byte μ-law frames, chunk/timestamp as strings, paced in real time (~50 per second).
    media = [(t, m) for t, m in s.messages if m["event"] == "media"]
    assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for _, m in media)
    assert [m["media"]["chunk"] for _, m in media[:3]] == ["1", "2", "3"]
    assert [m["media"]["timestamp"] for _, m in media[:3]] == ["0", "20", "40"]
    assert all(m["media"]["track"] == "inbound" for _, m in media)
    t_start = s.messages[1][0]
    in_one_second = sum(1 for t, _ in media if t_start + 0.2 <= t < t_start + 1.2)
    assert 44 <= in_one_second <= 56, in_one_second
    assert report.media_frames_sent == len(media)

    # Marks come back only once the audio queued before them has played.
    assert 0.78 <= s.echoes["greeting"] - times["greeting"] <= 1.0
    assert 0.38 <= s.echoes["reply"] - times["reply"] <= 0.6
    assert (report.marks_sent_by_server, report.marks_echoed, report.marks_pending_at_end) == (2, 2, 0)
    assert [m["how"] for m in report.mark_log] == ["played", "played"]

    # Report: greeting and turn latencies.
    assert report.greeting_latency_ms is not None and 0 <= report.greeting_latency_ms < 150
    [turn] = report.turns
    assert turn.utterance_end_ms is not None and turn.utterance_end_ms > 800 + 300  # after the greeting
    # Server: 200 ms VAD silence + 150 ms think time.
    assert 300 <= turn.latency_received_ms <= 600, turn
    assert turn.latency_played_ms >= turn.latency_received_ms
    assert turn.agent_audio_received_ms == 400
    assert report.agent_audio_received_ms == report.agent_audio_played_ms == 1200
    assert (report.ended_by, report.closed_by, report.close_code) == ("script", "caller", 1000)
    assert report.protocol_errors == [] and report.clears_received == []
    data = report.to_dict()
    json.dumps(data)
    assert data["ok"] is True and data["turns"][0]["latency_received_ms"] == round(turn.latency_received_ms, 1)


async def test_clear_flushes_playback_and_returns_pending_marks_at_once():
    times: dict[str, float] = {}

    async def agent(s: MediaSession) -> None:
        await s.send_mark("before-audio")  # nothing queued: comes straight back
        await s.send_audio(2000)
        await s.send_mark("m1")
        await s.send_audio(100)
        await s.send_mark("m2")
        await asyncio.sleep(0.3)
        times["clear"] = await s.send_clear()

    async with fake_server(agent) as (server, base):
        report = await run_simulated_call(_config(base, utterances=0))

    assert report.ok, report.to_dict()
    [s] = server.sessions
    for name in ("m1", "m2"):
        assert times["clear"] <= s.echoes[name] <= times["clear"] + 0.1, (name, s.echoes[name] - times["clear"])
    assert s.echoes["before-audio"] < times["clear"] - 0.25
    assert [m["how"] for m in report.mark_log] == ["immediate", "clear", "clear"]
    [clear] = report.clears_received
    assert clear["marks_returned"] == 2
    assert 1700 <= clear["flushed_ms"] <= 1850, clear
    assert 250 <= report.agent_audio_played_ms <= 400
    assert report.agent_audio_played_ms + report.agent_audio_cleared_ms == report.agent_audio_received_ms == 2100
    assert report.marks_echoed == report.marks_sent_by_server == 3


async def test_barge_in_talks_over_the_reply_and_measures_the_clear():
    times: dict[str, float] = {}

    async def agent(s: MediaSession) -> None:
        await s.send_audio(200)  # greeting
        await s.wait_for(lambda: s.speech_ends)
        times["reply"] = await s.send_audio(3000)
        await s.send_mark("r1")
        await s.wait_for(lambda: len(s.speech_starts) >= 2)  # the caller talks over the reply
        times["clear"] = await s.send_clear()
        await s.wait_for(lambda: len(s.speech_ends) >= 2)
        await s.send_audio(300)

    async with fake_server(agent) as (server, base):
        report = await run_simulated_call(
            _config(base, utterances=2, utterance_ms=500, barge_in=True, barge_in_delay_ms=400)
        )

    assert report.ok, report.to_dict()
    [s] = server.sessions
    assert [t.barge_in for t in report.turns] == [False, True]
    [barge] = report.barge_ins
    assert barge.utterance == 1
    assert 380 <= barge.at_ms - barge.agent_playing_since_ms <= 550, barge
    assert 2300 <= barge.agent_buffered_ms <= 2650, barge
    assert barge.clear_after_ms is not None and 0 <= barge.clear_after_ms <= 200, barge
    assert abs(barge.talk_over_ms - barge.clear_after_ms) <= 60, barge
    assert times["clear"] <= s.echoes["r1"] <= times["clear"] + 0.1
    assert report.mark_log[0]["how"] == "clear"
    # The caller started speaking while the reply was still audible, ~400 ms into it.
    assert 0.35 <= s.speech_starts[1] - times["reply"] <= 0.6
    assert report.turns[1].latency_received_ms is not None and report.turns[1].agent_audio_received_ms == 300


async def test_refused_call_is_reported_and_status_callback_is_signed():
    refusal = "<Response><Say>Sorry, this number is not in service.</Say><Hangup/></Response>"
    async with fake_server(twiml=refusal) as (server, base):
        report = await run_simulated_call(_config(base, send_status_callback=True))

    assert not report.ok and not report.connected and server.sessions == []
    assert report.twiml["outcome"] == "say" and report.twiml["say"] == ["Sorry, this number is not in service."]
    assert report.failures == ["twiml outcome is 'say', not a stream"]
    [(params, ok)] = server.statuses
    assert ok and report.status_callback_status == 204
    assert params["CallSid"] == report.call_sid and params["CallStatus"] == "completed"
    assert params["CallDuration"].isdigit() and params["AccountSid"] == ACCOUNT


async def test_wrong_auth_token_gets_403():
    async with fake_server() as (server, base):
        report = await run_simulated_call(_config(base, auth_token="not-the-token"))
    assert [ok for _, ok in server.webhooks] == [False]
    assert report.webhook_status == 403 and report.twiml["outcome"] == "http_error" and not report.ok


async def test_server_protocol_errors_are_counted_and_abnormal_close_fails_the_call():
    async def agent(s: MediaSession) -> None:
        sid = s.stream_sid
        await s.ws.send_str("not json")
        await s.ws.send_str(json.dumps({"event": "media", "streamSid": "MZwrong", "media": {"payload": "//8="}}))
        await s.ws.send_str(json.dumps({"event": "play", "streamSid": sid}))
        await s.ws.send_str(json.dumps({"event": "media", "streamSid": sid, "media": {"payload": "%%%"}}))
        await s.ws.send_str(json.dumps({"event": "mark", "streamSid": sid, "mark": {}}))
        await s.ws.send_bytes(b"\xff" * 160)
        await asyncio.sleep(0.1)
        await s.ws.close(code=1011, message=b"boom")

    async with fake_server(agent) as (_server, base):
        report = await run_simulated_call(_config(base, utterances=1))

    assert report.protocol_error_count == 6, report.protocol_errors
    assert (report.ended_by, report.closed_by, report.close_code, report.close_reason) == ("server", "server", 1011, "boom")
    assert not report.ok and "6 protocol error(s)" in report.failures


async def test_server_hanging_up_normally_is_not_a_failure():
    async def agent(s: MediaSession) -> None:
        await s.send_audio(200)
        await asyncio.sleep(0.3)
        await s.ws.close(code=1000)

    async with fake_server(agent) as (server, base):
        report = await run_simulated_call(_config(base, utterances=2))
    assert report.ok, report.to_dict()
    assert (report.ended_by, report.closed_by, report.close_code) == ("server", "server", 1000)
    assert "stop" not in server.sessions[0].events()  # Twilio does not send stop on a closed socket


async def test_negative_knobs_media_before_start_and_forged_token():
    async with fake_server() as (server, base):
        no_start = await run_simulated_call(
            _config(base, send_start=False, media_before_start=3, utterances=0, wait_for_greeting=False, hang_up_after_s=0.2)
        )
        forged = await run_simulated_call(
            _config(base, custom_parameters_override={"token": "forged", "extra": "1"}, utterances=0,
                    wait_for_greeting=False, hang_up_after_s=0.1, dtmf=[(0, "5")])
        )
    first, second = server.sessions
    events = first.events()
    assert events[:4] == ["connected", "media", "media", "media"] and "start" not in events and events[-1] == "stop"
    assert not no_start.start_sent and no_start.greeting_latency_ms is None and no_start.ended_by == "hang_up_after"
    assert second.start["start"]["customParameters"] == {"call_id": "c-1", "token": "forged", "extra": "1"}
    [dtmf] = [m for _, m in second.messages if m["event"] == "dtmf"]
    assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "5"} and forged.dtmf_sent[0]["digit"] == "5"


# ------------------------------------------------------------------------------------------------


def _wav_bytes(rate: int, channels: int, width: int, seconds: float = 0.5) -> bytes:
    n = int(rate * seconds)
    peak = 2 ** (8 * width - 1) - 1
    samples = [int(peak * 0.5 * math.sin(2 * math.pi * 300 * i / rate)) for i in range(n)]
    if width == 1:
        frames = bytes((s + 128) & 0xFF for s in samples for _ in range(channels))
    else:
        frames = b"".join(s.to_bytes(width, "little", signed=True) * channels for s in samples)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


@pytest.mark.parametrize("rate,channels,width", [(44100, 2, 2), (16000, 1, 1), (8000, 1, 2), (48000, 1, 3)])
def test_wav_is_converted_to_8khz_mono(tmp_path, rate, channels, width):
    path = tmp_path / "a.wav"
    path.write_bytes(_wav_bytes(rate, channels, width))
    pcm = load_wav_pcm16(str(path))
    assert abs(len(pcm) / 2 - 4000) <= 2  # 0.5 s at 8 kHz, 16-bit
    assert audioop.rms(pcm, 2) > 5000


def test_parse_twiml_outcomes():
    assert parse_twiml("<Response><Dial><Number>+14155550199</Number></Dial></Response>").dial == "Number:+14155550199"
    assert parse_twiml("<Response><Say>Bye</Say><Dial>+1415</Dial></Response>").outcome == "dial"
    assert parse_twiml("<Response><Hangup/></Response>").outcome == "hangup"
    assert parse_twiml("<Response/>").outcome == "empty"
    assert parse_twiml("oops").outcome == "invalid"


@contextlib.contextmanager
def _server_in_thread(**kw):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = FakeReceptionist(**kw)
    base = asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
    try:
        yield server, base
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_management_command_prints_json_and_exits_1_on_failure(tmp_path):
    from django.core.management import call_command

    wav = tmp_path / "hello.wav"
    wav.write_bytes(_wav_bytes(16000, 2, 2, seconds=0.4))
    args = ["--public-url", PUBLIC, "--to", "+14155550100", "--auth-token", TOKEN, "--account-sid", ACCOUNT]

    with _server_in_thread() as (server, base):
        out = io.StringIO()
        call_command("simulate_call", "--base-url", base, *args, "--wav", str(wav), "--no-greeting",
                     "--reply-timeout", "0.3", "--max-seconds", "5", stdout=out)
        data = json.loads(out.getvalue())
        assert data["ok"] is True and data["twiml"]["outcome"] == "stream" and len(data["turns"]) == 1
        assert 350 <= data["turns"][0]["utterance_audio_ms"] <= 440  # the WAV, converted to 20 ms frames
        assert server.sessions[0].speech_starts  # its audio arrived as speech

    refusal = "<Response><Hangup/></Response>"
    with _server_in_thread(twiml=refusal) as (server, base):
        out = io.StringIO()
        with pytest.raises(SystemExit) as exit_info:
            call_command("simulate_call", "--base-url", base, *args, stdout=out, stderr=io.StringIO())
        assert exit_info.value.code == 1
        assert json.loads(out.getvalue())["twiml"]["outcome"] == "hangup"
