"""`/ws/twilio/media/`: Twilio's Media Streams WebSocket, bridged to a call session.

The Twilio media consumer is a plain ASGI application with its own receive loop rather than a Channels
consumer class: Channels' dispatch makes a thread hop before every message, which caps a process at a few
dozen calls (see docs/benchmarks.md). Per frame this loop only parses JSON and forwards the payload.
The browser test call (`voice/browser_call.py`) has the same shape and runs the same call session.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from calls.models import Call, CallEvent
from receptionist import metrics as operator_metrics
from voice.audio_socket import (BASE64, CLOSE_POLICY, CLOSE_PROTOCOL, CLOSE_SERVER_RESTART, _AudioSocket,
                                ended_by_shutdown, forward_call_messages)
from voice.drain import draining
from voice.services import open_media_stream
from voice.session import CallSession, b64_len_to_bytes, in_db_pool
from voice.stream_tokens import StreamTokenError
from voice.transports import TwilioTransport, send_close

log = logging.getLogger(__name__)

STREAM_SID = re.compile(r"MZ[0-9a-fA-F]{32}")
CLOSE_START_TIMEOUT = 4408  # no `start` message within MEDIA_STREAM_START_SECONDS of the socket opening


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
            return await self.bad_frame(f"{event} frame of another stream", reason=operator_metrics.DROP_OTHER_STREAM)
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
            if session is None or not (session.ready or session.reconnecting or session.starting):
                # Twilio streams from the moment it connects; what the caller says before the agent is connected
                # is not kept for later, so the first frames sent on are live ones, never a backlog. (GPT-Live's
                # session is `starting` once its socket is being opened: its audio must be continuous, so the
                # session holds those frames until session.started.)
                self.early_audio_bytes += b64_len_to_bytes(payload)
                operator_metrics.frame_dropped(operator_metrics.DROP_NOT_READY)
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
