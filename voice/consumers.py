"""WebSocket endpoints that carry call audio.

The Twilio media consumer is a plain ASGI application with its own receive loop rather than a Channels
consumer class: Channels' dispatch makes a thread hop before every message, which caps a process at a few
dozen calls (see docs/benchmarks.md). Per frame this loop only parses JSON and forwards the payload.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from channels.layers import get_channel_layer

from calls.models import Call
from voice import twilio_api
from voice.agent import PHONE_AUDIO
from voice.session import CallSession
from voice.stream_tokens import StreamTokenError, aredeem_stream_token

log = logging.getLogger(__name__)

# A Twilio frame is ~400 bytes; anything near this is not a media stream talking.
MAX_FRAME_CHARS = 64 * 1024
MAX_BAD_FRAMES = 50
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
STREAM_SID = re.compile(r"MZ[0-9a-fA-F]{32}")

CLOSE_POLICY = 4403      # refused: bad or missing stream token
CLOSE_PROTOCOL = 4400    # not speaking the Media Streams protocol
CLOSE_TOO_BIG = 1009


class TwilioTransport:
    """Sends agent audio to Twilio as `media` + `mark` messages; hang-up and transfer go through REST."""

    audio_format = PHONE_AUDIO
    bytes_per_ms = 8

    def __init__(self, send: Any, stream_sid: str, call_sid: str) -> None:
        self._send = send
        self.call_sid = call_sid
        self._media_prefix = '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
        self._mark_prefix = '{"event":"mark","streamSid":"' + stream_sid + '","mark":{"name":"'
        self._clear = '{"event":"clear","streamSid":"' + stream_sid + '"}'
        self.closed = False

    async def _text(self, text: str) -> None:
        if not self.closed:
            await self._send({"type": "websocket.send", "text": text})

    async def send_audio(self, payload: str) -> None:
        await self._text(self._media_prefix + payload + '"}}')

    async def send_mark(self, name: str) -> None:
        await self._text(self._mark_prefix + name + '"}}')

    async def clear_audio(self) -> None:
        await self._text(self._clear)

    async def hang_up(self) -> None:
        await asyncio.to_thread(twilio_api.hang_up, self.call_sid)

    async def transfer(self, number: str) -> None:
        await asyncio.to_thread(twilio_api.redirect_call, self.call_sid, twilio_api.transfer_twiml(number))

    async def fallback(self, message: str, *, language: str, transfer_to: str) -> None:
        twiml = twilio_api.say_twiml(message, language=language, transfer_to=transfer_to)
        await asyncio.to_thread(twilio_api.redirect_call, self.call_sid, twiml)

    async def close(self, code: int = 1000) -> None:
        if not self.closed:
            self.closed = True
            try:
                await self._send({"type": "websocket.close", "code": code})
            except Exception:
                pass


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
        stream = _StreamState(send)
        # Answers for this call (the supervisor's, from a worker) arrive on its own channel, read by a
        # separate task so the media loop below never waits on the channel layer.
        layer = get_channel_layer()
        stream.reply_channel = await layer.new_channel("call.") if layer is not None else ""
        listener = asyncio.create_task(self.listen(layer, stream)) if layer is not None else None
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.receive":
                    if not await stream.handle(message.get("text"), message.get("bytes")):
                        break
                elif message["type"] == "websocket.disconnect":
                    stream.disconnected = True
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Twilio media stream crashed")
            stream.crashed = True
        finally:
            if listener is not None:
                listener.cancel()
            await stream.end()

    @staticmethod
    async def listen(layer: Any, stream: "_StreamState") -> None:
        while True:
            message = await layer.receive(stream.reply_channel)
            if stream.session is not None:
                try:
                    await stream.session.channel_message(message)
                except Exception:
                    log.exception("Could not handle a channel message for a call")


class _StreamState:
    def __init__(self, send: Any) -> None:
        self.send = send
        self.session: CallSession | None = None
        self.transport: TwilioTransport | None = None
        self.stream_sid: str | None = None
        self.bad_frames = 0
        self.stopped = False
        self.disconnected = False
        self.crashed = False
        self.close_reason = ""
        self.reply_channel = ""

    async def close(self, code: int, reason: str) -> bool:
        self.close_reason = reason
        log.warning("Closing a Twilio media stream (%s): %s", code, reason)
        try:
            await self.send({"type": "websocket.close", "code": code})
        except Exception:
            pass
        if self.transport is not None:
            self.transport.closed = True
        return False

    async def bad_frame(self, why: str) -> bool:
        self.bad_frames += 1
        if self.bad_frames == 1 or self.bad_frames % 10 == 0:
            log.warning("Ignoring a bad frame on a Twilio media stream (%d so far): %s", self.bad_frames, why)
        if self.bad_frames >= MAX_BAD_FRAMES:
            return await self.close(CLOSE_PROTOCOL, "too many bad frames")
        return True

    async def handle(self, text: str | None, data: bytes | None) -> bool:
        """Handle one frame; False ends the stream."""
        if text is None:
            if data is not None and len(data) > MAX_FRAME_CHARS:
                return await self.close(CLOSE_TOO_BIG, "oversized binary frame")
            return await self.bad_frame("binary frame")
        if len(text) > MAX_FRAME_CHARS:
            return await self.close(CLOSE_TOO_BIG, f"frame of {len(text)} characters")
        try:
            frame = json.loads(text)
            event = frame["event"]
        except (ValueError, KeyError, TypeError):
            return await self.bad_frame("not a Media Streams JSON message")
        if event == "media":
            if self.session is None:
                return await self.close(CLOSE_PROTOCOL, "media before start")
            try:
                payload = frame["media"]["payload"]
            except (KeyError, TypeError):
                return await self.bad_frame("media without payload")
            if not isinstance(payload, str) or len(payload) % 4 or not BASE64.fullmatch(payload):
                return await self.bad_frame("media payload is not base64")
            await self.session.caller_audio(payload)
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
            return False
        if event == "dtmf":
            if self.session is not None:
                self.session.caller_dtmf(str((frame.get("dtmf") or {}).get("digit", ""))[:4])
            return True
        if event == "connected":
            return True
        return await self.bad_frame(f"unknown event {str(event)[:40]!r}")

    async def start(self, frame: dict) -> bool:
        if self.session is not None:
            return await self.bad_frame("second start message")
        start = frame.get("start")
        if not isinstance(start, dict):
            return await self.close(CLOSE_PROTOCOL, "start without a start object")
        params = start.get("customParameters") or {}
        stream_sid = start.get("streamSid") or frame.get("streamSid") or ""
        if not isinstance(params, dict) or not isinstance(stream_sid, str) or not STREAM_SID.fullmatch(stream_sid):
            return await self.close(CLOSE_PROTOCOL, "start without a valid streamSid/customParameters")
        call_sid = start.get("callSid")
        try:
            grant = await aredeem_stream_token(str(params.get("token", "")), call_id=params.get("call_id"),
                                               call_sid=call_sid if isinstance(call_sid, str) else None)
        except StreamTokenError as exc:
            return await self.close(CLOSE_POLICY, str(exc))
        self.stream_sid = stream_sid
        self.transport = TwilioTransport(self.send, stream_sid, grant.twilio_call_sid)
        self.session = CallSession(call_id=grant.call_id, business_id=grant.business_id, transport=self.transport,
                                   caller_number=grant.caller_number, reply_channel=self.reply_channel)
        await self.session.start()
        return not self.session.finished.is_set()

    async def end(self) -> None:
        session = self.session
        if session is None:
            return
        if self.stopped:
            await session.finish(status=Call.Status.COMPLETED, reason="caller_hung_up")
        elif self.crashed:
            await session.finish(status=Call.Status.FAILED, reason="server_error", error="The media stream handler crashed.")
        elif self.close_reason:
            await session.finish(status=Call.Status.FAILED, reason="stream_protocol_error", error=self.close_reason)
        else:
            await session.finish(status=Call.Status.INTERRUPTED, reason="stream_closed",
                                 error="Twilio's media stream closed without a stop message.")

