"""WebSocket endpoints that carry call audio.

The Twilio media consumer is a plain ASGI application with its own receive loop rather than a Channels
consumer class: Channels' dispatch makes a thread hop before every message, which caps a process at a few
dozen calls (see docs/benchmarks.md). Per frame this loop only parses JSON and forwards the payload.
The browser test call (`BrowserCall`) has the same shape and runs the same call session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlparse

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.http.request import validate_host

from accounts.access import session_membership
from billing.services.gate import REASON_TEXT, browser_call_gate
from calls.models import Call, CallEvent
from calls.services.forwards import call_forward_cancel, call_forward_start
from calls.services.lifecycle import TooManyBrowserCalls, call_claim_stream, call_create_browser
from voice import twilio_api
from voice.agent import BROWSER_AUDIO, PHONE_AUDIO
from voice.drain import draining
from voice.services import open_media_stream
from voice.session import CallSession, b64_len_to_bytes, in_db_pool
from voice.stream_tokens import StreamTokenError

log = logging.getLogger(__name__)

# A Twilio frame is ~400 bytes; anything near this is not a media stream talking.
MAX_FRAME_CHARS = 64 * 1024
MAX_BAD_FRAMES = 50
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
STREAM_SID = re.compile(r"MZ[0-9a-fA-F]{32}")

CLOSE_POLICY = 4403      # refused: bad or missing stream token
CLOSE_PROTOCOL = 4400    # not speaking the Media Streams protocol
CLOSE_TOO_BIG = 1009
CLOSE_START_TIMEOUT = 4408  # no `start` message within MEDIA_STREAM_START_SECONDS of the socket opening
CLOSE_SERVER_RESTART = 1012  # the server is shutting down (a deploy): no new calls here


class _SocketTransport:
    """The caller's side of a call on one of our WebSockets: text frames out, closed once."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self.closed = False

    async def _text(self, text: str) -> None:
        if self.closed:
            return
        try:
            await self._send({"type": "websocket.send", "text": text})
        except OSError:
            # The caller's side is gone (uvicorn raises ClientDisconnected) while agent audio was still on its way.
            # Not an OpenAI failure: the frame loop gets the disconnect and ends the call as the caller left it.
            self.closed = True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            await send_close(self._send, code, reason)


async def send_close(send: Any, code: int, reason: str = "") -> None:
    """Close a WebSocket with a code and a short reason; a socket already gone is fine."""
    message: dict[str, Any] = {"type": "websocket.close", "code": code}
    if reason:
        message["reason"] = reason.encode()[:120].decode(errors="ignore")  # a close reason fits in 123 bytes
    try:
        await send(message)
    except Exception:
        pass


class TwilioTransport(_SocketTransport):
    """Sends agent audio to Twilio as `media` + `mark` messages; hang-up and transfer go through REST."""

    audio_format = PHONE_AUDIO
    bytes_per_ms = 8

    def __init__(self, send: Any, stream_sid: str, call_sid: str) -> None:
        super().__init__(send)
        self.call_sid = call_sid
        self._media_prefix = '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
        self._mark_prefix = '{"event":"mark","streamSid":"' + stream_sid + '","mark":{"name":"'
        self._clear = '{"event":"clear","streamSid":"' + stream_sid + '"}'

    async def send_audio(self, payload: str) -> None:
        await self._text(self._media_prefix + payload + '"}}')

    async def send_mark(self, name: str) -> None:
        await self._text(self._mark_prefix + name + '"}}')

    async def clear_audio(self) -> None:
        await self._text(self._clear)

    async def hang_up(self) -> None:
        await asyncio.to_thread(twilio_api.hang_up, self.call_sid)

    async def transfer(self, number: str) -> None:
        await self._redirect(twilio_api.transfer_twiml(number), forward_to=number)

    async def fallback(self, message: str, *, language: str, transfer_to: str) -> None:
        await self._redirect(twilio_api.say_twiml(message, language=language, transfer_to=transfer_to),
                             forward_to=transfer_to)

    async def _redirect(self, twiml: str, *, forward_to: str) -> None:
        """Replace the call's TwiML. A <Dial> is noted on the call first, so its usage waits for the outcome."""
        if forward_to:
            await in_db_pool(call_forward_start)(twilio_call_sid=self.call_sid, number=forward_to)
        try:
            await asyncio.to_thread(twilio_api.redirect_call, self.call_sid, twiml)
        except Exception:
            if forward_to:
                await in_db_pool(call_forward_cancel)(twilio_call_sid=self.call_sid)
            raise

    def notify(self, event: dict[str, Any]) -> None:
        pass  # a phone shows nothing; the dashboard follows the call through the database


async def forward_call_messages(layer: Any, channel: str, session_of: Callable[[], CallSession | None]) -> None:
    """Hand messages for the call (the supervisor's answers, from a worker) to its session, once it has one."""
    while True:
        message = await layer.receive(channel)
        session = session_of()
        if session is None:
            continue
        try:
            await session.channel_message(message)
        except Exception:
            log.exception("Could not handle a channel message for call %s", session.call_id)


class TwilioMediaStream:
    """`/ws/twilio/media/`: Twilio's bidirectional Media Streams protocol, bridged to a call session.

    No Origin check here (Twilio sends none); the call is authenticated by the single-use token that the
    signature-checked incoming-call webhook put in the TwiML, presented in the `start` message.
    """

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        if draining():
            # A deploy is draining this process: Twilio goes on with the TwiML after <Connect>.
            log.info("Refused a Twilio media stream: the server is shutting down")
            await send_close(send, CLOSE_SERVER_RESTART, "server restarting")
            return
        # Nothing is opened for the socket (reply channel, listener, OpenAI) before its token is redeemed.
        stream = _StreamState(send)
        try:
            await stream.read_frames(receive)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Twilio media stream crashed")
            stream.crashed = True
        finally:
            if stream.listener is not None:
                stream.listener.cancel()
            await stream.end()


class _AudioSocket:
    """What both audio sockets (Twilio's media stream, the browser call) do with a frame before reading it:
    size limits, JSON with a type field, and a budget of malformed frames after which the socket closes."""

    kind = "audio socket"  # for the logs

    def __init__(self) -> None:
        self.bad_frames = 0
        self.other_stream_frames = 0  # of the bad frames: a Twilio frame naming another call's stream
        self.disconnected = False
        self.disconnect_code: int | None = None
        self.crashed = False
        self.close_reason = ""  # why we closed the socket (a protocol error), if we did

    def name(self) -> str:
        return self.kind

    async def handle(self, text: str | None, data: bytes | None) -> bool:
        raise NotImplementedError

    async def read_frames(self, receive: Any) -> None:
        """Hand every frame to `handle` until it ends the call or the other side goes away."""
        while await self.on_message(await receive()):
            pass

    async def on_message(self, message: dict[str, Any]) -> bool:
        """One ASGI message; False once the socket is done."""
        if message["type"] == "websocket.receive":
            return await self.handle(message.get("text"), message.get("bytes"))
        if message["type"] == "websocket.disconnect":
            self.disconnected = True
            self.disconnect_code = message.get("code")
            return False
        return True

    def record_ignored_frames(self, session: CallSession, *, source: str, sender: str) -> None:
        """Put the count of frames this socket ignored on the call's timeline (nothing if there were none)."""
        if not self.bad_frames:
            return
        extra: dict[str, Any] = {}
        message = f"Ignored {self.bad_frames} malformed frames from {sender}."
        if self.other_stream_frames:
            extra["other_stream_frames"] = self.other_stream_frames
            message += (f" {self.other_stream_frames} of them named another call's media stream and were dropped, "
                        "not played to the agent.")
        session.add_event(CallEvent.Kind.ERROR, source=source, bad_frames=self.bad_frames, message=message, **extra)

    async def close(self, code: int, reason: str) -> bool:
        raise NotImplementedError

    async def bad_frame(self, why: str) -> bool:
        self.bad_frames += 1
        if self.bad_frames == 1 or self.bad_frames % 10 == 0:
            log.warning("Ignoring a bad frame on %s (%d so far): %s", self.name(), self.bad_frames, why)
        if self.bad_frames >= MAX_BAD_FRAMES:
            return await self.close(CLOSE_PROTOCOL, f"too many bad frames ({self.bad_frames})")
        return True

    async def decode(self, text: str | None, data: bytes | None, type_key: str, what: str) -> tuple[Any, bool]:
        """(frame, its type) of a well-formed frame; else (None, whether the socket stays open)."""
        if text is None:
            if data is not None and len(data) > MAX_FRAME_CHARS:
                return None, await self.close(CLOSE_TOO_BIG, "oversized binary frame")
            return None, await self.bad_frame("binary frame")
        if len(text) > MAX_FRAME_CHARS:
            return None, await self.close(CLOSE_TOO_BIG, f"frame of {len(text)} characters")
        try:
            frame = json.loads(text)
            return frame, frame[type_key]
        except (ValueError, KeyError, TypeError):
            return None, await self.bad_frame(f"not {what}")


class _StreamState(_AudioSocket):
    kind = "a Twilio media stream"

    def __init__(self, send: Any) -> None:
        super().__init__()
        self.send = send
        self.session: CallSession | None = None
        self.transport: TwilioTransport | None = None
        self.stream_sid: str | None = None
        self.stopped = False
        self.socket_closed = False
        self.reply_channel = ""
        self.listener: asyncio.Task | None = None
        self.opened_at = time.monotonic()
        self.started = False  # a valid `start` arrived; the session is set up beside the frames that follow it
        self.opening: asyncio.Task | None = None
        self.connecting = False  # the opening task is past the database, connecting to OpenAI
        self.ending = False
        self.started_at = 0.0
        self.early_audio_bytes = 0  # caller audio that came while the agent was being connected (not sent)

    async def close(self, code: int, reason: str) -> bool:
        self.close_reason = reason
        log.warning("Closing a Twilio media stream (%s): %s", code, reason)
        await self.close_socket(code, reason)
        return False

    async def close_socket(self, code: int, reason: str = "") -> None:
        if self.transport is not None:
            if not self.transport.closed:
                await self.transport.close(code, reason)
        elif not self.socket_closed:
            await send_close(self.send, code, reason)
        self.socket_closed = True

    async def read_frames(self, receive: Any) -> None:
        """Until `start` every wait is bounded by the start deadline (`connected` frames do not extend it);
        after it, frames are read as they come."""
        deadline = self.opened_at + settings.MEDIA_STREAM_START_SECONDS
        while not self.started:
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                await self.close(CLOSE_START_TIMEOUT,
                                 f"no start message within {settings.MEDIA_STREAM_START_SECONDS} s")
                return
            if not await self.on_message(message):
                return
        while await self.on_message(await receive()):
            if self.socket_closed:  # the session could not be set up, or ended itself: its socket is closed
                return

    async def handle(self, text: str | None, data: bytes | None) -> bool:
        """Handle one frame; False ends the stream."""
        frame, event = await self.decode(text, data, "event", "a Media Streams JSON message")
        if frame is None:
            return event
        if self.started and event in ("media", "mark", "dtmf", "stop") and frame.get("streamSid") != self.stream_sid:
            # Not this call's stream: never played to the agent as this caller's audio, nor ending this call.
            self.other_stream_frames += 1
            return await self.bad_frame(f"{event} frame of another stream")
        if event == "media":
            if not self.started:
                return await self.close(CLOSE_PROTOCOL, "media before start")
            try:
                payload = frame["media"]["payload"]
            except (KeyError, TypeError):
                return await self.bad_frame("media without payload")
            if not isinstance(payload, str) or len(payload) % 4 or not BASE64.fullmatch(payload):
                return await self.bad_frame("media payload is not base64")
            session = self.session
            if session is None or not session.ready:
                # Twilio streams from the moment it connects; what the caller says before the agent is connected
                # is not kept for later, so the first frames sent on are live ones, never a backlog.
                self.early_audio_bytes += b64_len_to_bytes(payload)
                return True
            await session.caller_audio(payload)
            return True
        if event == "mark":
            if self.session is not None:
                name = (frame.get("mark") or {}).get("name")
                if isinstance(name, str):
                    self.session.playback_marked(name)
                    if self.session.after_playback is not None:
                        await self.session.check_playback()
            return True
        if event == "start":
            return await self.start(frame)
        if event == "stop":
            self.stopped = True
            await self.stop_opening()
            await self.close_socket(1000)  # a close frame, not a dropped connection
            return False
        if event == "dtmf":
            if self.session is not None:
                self.session.caller_dtmf(str((frame.get("dtmf") or {}).get("digit", ""))[:4])
            return True
        if event == "connected":
            return True
        return await self.bad_frame(f"unknown event {str(event)[:40]!r}")

    async def start(self, frame: dict) -> bool:
        if self.started:
            return await self.bad_frame("second start message")
        start = frame.get("start")
        if not isinstance(start, dict):
            return await self.close(CLOSE_PROTOCOL, "start without a start object")
        params = start.get("customParameters") or {}
        stream_sid = start.get("streamSid") or frame.get("streamSid") or ""
        if not isinstance(params, dict) or not isinstance(stream_sid, str) or not STREAM_SID.fullmatch(stream_sid):
            return await self.close(CLOSE_PROTOCOL, "start without a valid streamSid/customParameters")
        call_sid = start.get("callSid")
        if draining():
            return await self.refuse_for_restart()
        self.started = True
        self.started_at = time.monotonic()
        self.stream_sid = stream_sid
        # Set up beside the frame loop: Twilio's media keeps coming meanwhile, and is read (and dropped) as it
        # comes instead of piling up in the socket to be delivered seconds late.
        self.opening = asyncio.create_task(
            self.open_session(token=str(params.get("token", "")), call_id=params.get("call_id"),
                              call_sid=call_sid if isinstance(call_sid, str) else None),
            name="twilio-stream-open")
        return True

    async def open_session(self, *, token: str, call_id: Any, call_sid: str | None) -> None:
        try:
            await self.connect_agent(token=token, call_id=call_id, call_sid=call_sid)
        except asyncio.CancelledError:
            raise
        except Exception:
            # e.g. the database is away: Twilio goes on with the TwiML after <Connect> (an apology), and the
            # call row, if it was claimed, is finalised by end().
            log.exception("Setting up a Twilio media stream failed")
            self.crashed = True
            await self.close_socket(1000)

    async def connect_agent(self, *, token: str, call_id: Any, call_sid: str | None) -> None:
        """Redeem the stream token and load the business (one database hop), then connect the agent."""
        try:
            opened = await in_db_pool(open_media_stream)(token=token, call_id=call_id, call_sid=call_sid)
        except StreamTokenError as exc:
            await self.close(CLOSE_POLICY, str(exc))
            return
        grant = opened.grant
        self.transport = TwilioTransport(self.send, self.stream_sid or "", grant.twilio_call_sid)
        # Answers for this call (the supervisor's, from a worker) arrive on its own channel, read by a
        # separate task so the media loop never waits on the channel layer.
        layer = get_channel_layer()
        self.reply_channel = await layer.new_channel("call.") if layer is not None else ""
        self.session = CallSession(call_id=grant.call_id, business_id=grant.business_id, transport=self.transport,
                                   caller_number=grant.caller_number, reply_channel=self.reply_channel,
                                   profile=opened.profile, allowance=opened.allowance)
        if layer is not None:
            self.listener = asyncio.create_task(forward_call_messages(layer, self.reply_channel, lambda: self.session))
        if self.ending:  # Twilio stopped, or the socket went, while the call was being looked up
            return
        if draining():  # the drain began while the token was being redeemed
            await self.session.finish(status=Call.Status.INTERRUPTED, reason="server_shutdown")
            await self.refuse_for_restart()
            return
        self.connecting = True
        await self.session.start()
        if self.session.finished.is_set():  # the agent could not be connected: the caller has been told
            self.socket_closed = True
            return
        # On the call's timeline: how long the caller waited for the agent after Twilio's stream started.
        self.session.add_event(CallEvent.Kind.STATUS, step="agent_connected",
                               setup_ms=round((time.monotonic() - self.started_at) * 1000),
                               early_audio_ms=self.early_audio_bytes // TwilioTransport.bytes_per_ms)

    async def stop_opening(self) -> None:
        """The stream is ending: let a database hop in flight finish (its call must be recorded), but stop
        waiting for OpenAI."""
        self.ending = True
        opening = self.opening
        if opening is None or opening.done():
            return
        if self.connecting:
            opening.cancel()
        try:
            await opening
        except asyncio.CancelledError:
            if not opening.cancelled():
                raise

    async def refuse_for_restart(self) -> bool:
        log.info("Closing a Twilio media stream at its start: the server is shutting down")
        await self.close_socket(CLOSE_SERVER_RESTART, "server restarting")
        return False

    async def end(self) -> None:
        await self.stop_opening()
        session = self.session
        if session is None:
            if not self.disconnected:
                await self.close_socket(1000)
            return
        self.record_ignored_frames(session, source="twilio", sender="Twilio's media stream")
        if self.crashed:
            await session.finish(status=Call.Status.FAILED, reason="server_error", error="The media stream handler crashed.")
        elif self.close_reason:
            await session.finish(status=Call.Status.FAILED, reason="stream_protocol_error", error=self.close_reason)
        elif ended_by_shutdown(session, caller_left=self.stopped, code=self.disconnect_code):
            await session.finish(status=Call.Status.COMPLETED if session.shutdown_said else Call.Status.INTERRUPTED,
                                 reason="server_shutdown")
        elif self.stopped:
            await session.finish(status=Call.Status.COMPLETED, reason="caller_hung_up")
        else:
            await session.finish(status=Call.Status.INTERRUPTED, reason="stream_closed",
                                 error="Twilio's media stream closed without a stop message.")
        if not self.disconnected:
            await self.close_socket(1000)


def ended_by_shutdown(session: CallSession, *, caller_left: bool, code: int | None) -> bool:
    """The server shutting down ended the call: the drain's hang-up (the caller's side then closes, which is
    not the caller hanging up), or the server closing the socket (uvicorn's 1012) — not Twilio's doing."""
    if code == CLOSE_SERVER_RESTART:
        return True
    return session.draining and (session.shutdown_said or not caller_left)



# --- the browser test call ----------------------------------------------------------------------------------

CLOSE_NOT_SIGNED_IN = 4401
CLOSE_NO_MINUTES = 4402  # no test-call minutes left today, or no trial minutes / subscription
CLOSE_AUDIO_TOO_FAST = 4413  # audio kept arriving faster than real time
CLOSE_TOO_MANY_CALLS = 4429  # the business already runs BROWSER_CALLS_AT_ONCE test calls
# The page sends 40 ms chunks (2,560 base64 characters); a second of audio in one frame is not the page talking.
MAX_BROWSER_AUDIO_CHARS = 64_000
MAX_MARK_CHARS = 200


class AudioRateGuard:
    """Caller audio at most at real-time rate plus a burst: a token bucket of bytes on the monotonic clock.

    The bucket holds `burst_ms` of audio and refills at the audio's byte rate; a frame that doesn't fit is
    dropped. Drops less than a second apart make one run of excess; a run lasting `bound_s` means the sender
    is not a microphone, and the call should end. Pure arithmetic: it runs for every frame on the audio path.
    """

    QUIET_S = 1.0  # a second without drops ends a run of excess

    def __init__(self, *, bytes_per_ms: int, burst_ms: int, bound_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = bytes_per_ms * 1000.0  # bytes per second
        self.capacity = float(bytes_per_ms * burst_ms)
        self.bytes_per_ms = bytes_per_ms
        self.bound_s = bound_s
        self.clock = clock
        self.tokens = self.capacity
        self.refilled_at = clock()
        self.dropped_bytes = 0
        self.excess_since: float | None = None
        self.last_drop: float | None = None

    def admit(self, size: int) -> bool:
        """Whether a frame of `size` bytes may go on; a frame that may not is counted as dropped."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.refilled_at) * self.rate)
        self.refilled_at = now
        if size <= self.tokens:
            self.tokens -= size
            return True
        self.dropped_bytes += size
        if self.last_drop is None or now - self.last_drop >= self.QUIET_S:
            self.excess_since = now
        self.last_drop = now
        return False

    @property
    def sustained(self) -> bool:
        """Audio has been arriving too fast for `bound_s` seconds."""
        return self.excess_since is not None and self.last_drop - self.excess_since >= self.bound_s

    @property
    def dropped_ms(self) -> int:
        return self.dropped_bytes // self.bytes_per_ms


class BrowserTransport(_SocketTransport):
    """Sends agent audio to the test-call page as JSON text frames: base64 PCM16 24 kHz, forwarded untouched.

    A browser cannot be hung up or transferred by a phone company, so those become messages the page shows.
    """

    audio_format = BROWSER_AUDIO
    bytes_per_ms = 48  # 24,000 samples/s x 2 bytes

    def __init__(self, send: Any) -> None:
        super().__init__(send)
        self._notices: set[asyncio.Task] = set()

    async def send_json(self, message: dict[str, Any]) -> None:
        await self._text(json.dumps(message))

    async def send_audio(self, payload: str) -> None:
        await self._text('{"type":"audio","audio":"' + payload + '"}')

    async def send_mark(self, name: str) -> None:
        await self._text('{"type":"mark","name":' + json.dumps(name) + "}")

    async def clear_audio(self) -> None:
        await self._text('{"type":"clear"}')

    async def hang_up(self) -> None:
        await self.send_json({"type": "hangup", "by": "agent"})

    async def transfer(self, number: str) -> None:
        await self.send_json({"type": "transfer", "number": number, "message": (
            f"On a phone call the receptionist would now transfer you to {number}. "
            "A browser call can't be transferred, so the test call ends here.")})

    async def fallback(self, message: str, *, language: str, transfer_to: str) -> None:
        await self.send_json({"type": "fallback", "message": message, "language": language})

    def notify(self, event: dict[str, Any]) -> None:
        message = page_message(event)
        if message is None or self.closed:
            return
        # Sent from a task of its own so the session's handler (maybe on the audio path) never waits for it.
        task = asyncio.get_running_loop().create_task(self.send_json(message))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)


def page_message(event: dict[str, Any]) -> dict[str, Any] | None:
    """What the test-call page shows of a recorded transcript entry or event (None: nothing)."""
    if event.get("type") == "transcript":
        return {"type": "transcript", "speaker": event["speaker"], "text": event["text"], "order": event["order"],
                "interrupted": event["interrupted"]}
    payload = event.get("payload") or {}
    kind = event.get("kind")
    if kind == CallEvent.Kind.LATENCY:
        return {"type": "latency", "ms": payload.get("ms"), "item_id": payload.get("item_id")}
    if kind == CallEvent.Kind.BARGE_IN:
        return {"type": "barge_in", "heard_ms": payload.get("heard_ms")}
    if kind == CallEvent.Kind.TOOL_CALL:
        return {"type": "tool", "name": payload.get("name")}
    if kind == CallEvent.Kind.HANGUP and payload.get("by") == "agent" and payload.get("reason") in LIMIT_MESSAGES:
        return {"type": "limit", "reason": payload["reason"], "message": LIMIT_MESSAGES[payload["reason"]]}
    return None


# Why the agent ended a test call early, for the page.
LIMIT_MESSAGES = {
    "test_call_quota_reached": "Today's test-call minutes are used up, so the receptionist ended the call.",
    "billing_cap_reached": "Your free trial minutes are used up, so the receptionist ended the call.",
}


def origin_allowed(scope: dict) -> bool:
    """A page of ours opened the socket: its Origin is the public URL or one of ALLOWED_HOSTS.

    Browsers always send Origin on WebSocket handshakes; without the check, any site could open a call with
    the visitor's session cookie.
    """
    origin = next((value for name, value in scope.get("headers", []) if name == b"origin"), b"").decode("latin-1")
    parsed = urlparse(origin)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    public = urlparse(settings.PUBLIC_BASE_URL)
    if (parsed.scheme, parsed.netloc) == (public.scheme, public.netloc):
        return True
    return validate_host(parsed.hostname, settings.ALLOWED_HOSTS)


@dataclass(frozen=True)
class BrowserCallGrant:
    call_id: int
    business_id: int


class BrowserCallRefused(Exception):
    """No minutes for a test call: `reason` is billing's (test_call_quota_used, trial_exhausted, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def refusal_message(reason: str, business: Any) -> str:
    if reason == "test_call_quota_used":
        return (f"Today's test-call minutes are used up ({settings.BROWSER_CALL_DAILY_MINUTES} a day for "
                f"{business.name}). They renew at midnight, {business.time_zone} time.")
    if reason == "trial_exhausted":
        return "Your free trial minutes are used up, and test calls spend trial minutes. Choose a plan to keep testing."
    return f"Test calls need trial minutes or an active subscription: {REASON_TEXT.get(reason, 'see Billing')}."


def browser_call_open(*, user: Any, session: Any) -> BrowserCallGrant | None:
    """Record a browser test call in the user's current business (as the dashboard resolves it); None if
    they are a member of none. Raises TooManyBrowserCalls when the business runs all it may, and
    BrowserCallRefused when it has no test-call minutes left (nothing is recorded then)."""
    membership = session_membership(user, session if session is not None else {})
    if membership is None:
        return None
    with transaction.atomic():
        # call_create_browser locks the business row until this transaction ends: two tabs starting at once
        # are checked one after the other.
        call = call_create_browser(business=membership.business, user_label=user.email)
        decision = browser_call_gate(membership.business)
        if not decision.allowed:
            raise BrowserCallRefused(decision.reason, refusal_message(decision.reason, membership.business))
        call_claim_stream(call_id=call.id)  # answered at once: there is no ringing on a browser call
    return BrowserCallGrant(call_id=call.id, business_id=membership.business_id)


class BrowserCall:
    """`/ws/browser/call/`: a signed-in member talks to their own receptionist from the dashboard.

    Wrapped in `AuthMiddlewareStack` (routing.py) for the session's user. The socket is accepted before the
    checks so that a refusal carries a close code the page can explain: 4403 for another site's page (Origin)
    or a user with no business, 4401 for a visitor who is not signed in, 4429 when the business already runs
    BROWSER_CALLS_AT_ONCE test calls, 4402 (after a `refused` message saying why) when there are no test-call
    minutes left (BROWSER_CALL_DAILY_MINUTES a day; trial minutes on the free trial). The call is recorded like
    a phone call (channel "browser"), runs the same call session and lasts at most BROWSER_CALL_MAX_SECONDS or
    until the minutes run out, when the agent says goodbye. Audio faster than real time is dropped (4413 if it
    goes on). Frames from the page:
    `{"type":"audio","audio":<base64 PCM16 24 kHz>}`, `{"type":"mark","name":...}` once the audio before that
    mark has played (or was cleared), and `{"type":"hangup"}`.
    """

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        if draining():  # a deploy is draining this process: the page says so and can call again in a moment
            await send_close(send, CLOSE_SERVER_RESTART, "server restarting")
            return
        if not origin_allowed(scope):
            log.warning("Refused a browser call from another origin")
            await send({"type": "websocket.close", "code": CLOSE_POLICY})
            return
        user = scope.get("user")
        if user is None or not user.is_authenticated:
            await send({"type": "websocket.close", "code": CLOSE_NOT_SIGNED_IN})
            return
        # The only database work of the connection: everything after it runs on the event loop.
        try:
            grant = await in_db_pool(browser_call_open)(user=user, session=scope.get("session"))
        except TooManyBrowserCalls as exc:
            log.info("Refused a browser test call: %s", exc)
            await send({"type": "websocket.close", "code": CLOSE_TOO_MANY_CALLS})
            return
        except BrowserCallRefused as exc:
            log.info("Refused a browser test call: %s", exc.reason)
            await send({"type": "websocket.send", "text": json.dumps(
                {"type": "refused", "reason": exc.reason, "message": exc.message})})
            await send({"type": "websocket.close", "code": CLOSE_NO_MINUTES, "reason": exc.reason})
            return
        if grant is None:
            await send({"type": "websocket.close", "code": CLOSE_POLICY})
            return
        # Answers for this call (the supervisor's, from a worker) arrive on its own channel, read by a separate
        # task so the audio loop below never waits on the channel layer.
        layer = get_channel_layer()
        reply_channel = await layer.new_channel("call.") if layer is not None else ""
        transport = BrowserTransport(send)
        session = CallSession(call_id=grant.call_id, business_id=grant.business_id, transport=transport,
                              reply_channel=reply_channel, max_seconds=settings.BROWSER_CALL_MAX_SECONDS)
        call = _BrowserCallState(session, transport)
        listener = (asyncio.create_task(forward_call_messages(layer, reply_channel, lambda: call.session))
                    if layer is not None else None)
        try:
            await call.transport.send_json({"type": "call", "call_id": grant.call_id, "status": "connecting"})
            await call.session.start()
            if not call.session.finished.is_set():
                await call.transport.send_json({"type": "live"})
                await call.read_frames(receive)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Browser call %s crashed", grant.call_id)
            call.crashed = True
        finally:
            if listener is not None:
                listener.cancel()
            await call.end()


class _BrowserCallState(_AudioSocket):
    def __init__(self, session: CallSession, transport: BrowserTransport) -> None:
        super().__init__()
        self.session = session
        self.transport = transport
        self.hung_up = False
        self.rate = AudioRateGuard(bytes_per_ms=transport.bytes_per_ms, burst_ms=settings.BROWSER_AUDIO_BURST_MS,
                                   bound_s=settings.BROWSER_AUDIO_EXCESS_SECONDS)
        self.close_end_reason = "stream_protocol_error"

    async def close(self, code: int, reason: str) -> bool:
        self.close_reason = reason
        log.warning("Closing browser call %s (%s): %s", self.session.call_id, code, reason)
        await self.transport.close(code, reason)
        return False

    def name(self) -> str:
        return f"browser call {self.session.call_id}"

    async def handle(self, text: str | None, data: bytes | None) -> bool:
        """Handle one frame from the page; False ends the call."""
        frame, kind = await self.decode(text, data, "type", "a JSON object with a type")
        if frame is None:
            return kind
        if kind == "audio":
            payload = frame.get("audio")
            if not isinstance(payload, str) or not payload or len(payload) > MAX_BROWSER_AUDIO_CHARS \
                    or len(payload) % 4 or not BASE64.fullmatch(payload) or b64_len_to_bytes(payload) % 2:
                return await self.bad_frame("audio is not base64 PCM16")
            if not self.rate.admit(b64_len_to_bytes(payload)):  # faster than real time: not sent to OpenAI
                if self.rate.sustained:
                    self.close_end_reason = "audio_too_fast"
                    return await self.close(CLOSE_AUDIO_TOO_FAST, (
                        f"audio faster than real time for {settings.BROWSER_AUDIO_EXCESS_SECONDS} s "
                        f"({self.rate.dropped_ms} ms dropped)"))
                return True
            await self.session.caller_audio(payload)
            return True
        if kind == "mark":
            name = frame.get("name")
            if not isinstance(name, str) or len(name) > MAX_MARK_CHARS:
                return await self.bad_frame("mark without a name")
            self.session.playback_marked(name)
            if self.session.after_playback is not None:
                await self.session.check_playback()
            return True
        if kind == "hangup":
            self.hung_up = True
            return False
        return await self.bad_frame(f"unknown type {str(kind)[:40]!r}")

    async def end(self) -> None:
        if self.crashed:
            status, reason, error = Call.Status.FAILED, "server_error", "The browser call handler crashed."
        elif self.close_reason:
            status, reason, error = Call.Status.FAILED, self.close_end_reason, self.close_reason
        elif ended_by_shutdown(self.session, caller_left=self.hung_up, code=self.disconnect_code):
            status, reason, error = (Call.Status.COMPLETED if self.session.shutdown_said else Call.Status.INTERRUPTED,
                                     "server_shutdown", "")
        elif self.hung_up:
            status, reason, error = Call.Status.COMPLETED, "caller_hung_up", ""
        else:
            status, reason, error = (Call.Status.INTERRUPTED, "browser_disconnected",
                                     "The browser closed the connection without hanging up.")
        self.record_ignored_frames(self.session, source="browser", sender="the browser")
        if self.rate.dropped_bytes:
            self.session.add_event(CallEvent.Kind.ERROR, source="browser", dropped_audio_ms=self.rate.dropped_ms,
                                   message=f"Dropped {self.rate.dropped_ms} ms of audio sent faster than real time.")
        # Finalising records its minutes (billing's hook): on the free trial they count at once; never billed.
        await self.session.finish(status=status, reason=reason, error=error)
        if not self.disconnected and not self.transport.closed:
            await self.transport.send_json({"type": "ended", "status": status, "reason": reason})
            await self.transport.close()
