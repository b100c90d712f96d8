"""What both audio sockets (Twilio's media stream, the browser test call) share: the checks every frame passes
before it is read, the close codes they both use, the task that hands a call its channel messages, and how a
shutdown's ending is told from the caller's."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, Callable

from calls.models import CallEvent
from receptionist import metrics as operator_metrics
from voice.session import CallSession

log = logging.getLogger(__name__)


# A Twilio frame is ~400 bytes; anything near this is not a media stream talking.
MAX_FRAME_CHARS = 64 * 1024
MAX_BAD_FRAMES = 50
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")

CLOSE_POLICY = 4403      # refused: bad or missing stream token
CLOSE_PROTOCOL = 4400    # not speaking the Media Streams protocol
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_RESTART = 1012  # the server is shutting down (a deploy): no new calls here


# After the channel layer fails (Redis restarting), the listener waits this long before listening again, growing.
LISTEN_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)


async def forward_call_messages(layer: Any, channel: str, session_of: Callable[[], CallSession | None]) -> None:
    """Hand messages for the call (the supervisor's answers, from a worker) to its session, once it has one.

    Outlives a channel layer that fails (Redis restarting or unreachable): it listens again, with a growing pause,
    for as long as the call lasts. A message sent while Redis was away is gone with it (the supervisor's deadline
    then answers the caller); every later one still reaches the call."""
    failures = 0
    while True:
        try:
            message = await layer.receive(channel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            delay = LISTEN_RETRY_DELAYS_S[min(failures, len(LISTEN_RETRY_DELAYS_S) - 1)]
            if failures == 0:
                session = session_of()
                log.warning("Call %s: the channel layer failed (%s: %s); listening again in %.1f s",
                            session.call_id if session else channel, exc.__class__.__name__, exc, delay)
            failures += 1
            await asyncio.sleep(delay)
            continue
        if failures:
            log.info("Channel %s: listening again after %s failed receive(s)", channel, failures)
            failures = 0
        session = session_of()
        if session is None:
            continue
        try:
            await session.channel_message(message)
        except Exception:
            log.exception("Could not handle a channel message for call %s", session.call_id)


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

    async def bad_frame(self, why: str, *, reason: str = operator_metrics.DROP_MALFORMED) -> bool:
        self.bad_frames += 1
        operator_metrics.frame_dropped(reason)
        if self.bad_frames == 1 or self.bad_frames % 10 == 0:
            log.warning("Ignoring a bad frame on %s (%d so far): %s", self.name(), self.bad_frames, why)
        if self.bad_frames >= MAX_BAD_FRAMES:
            return await self.close(CLOSE_PROTOCOL, f"too many bad frames ({self.bad_frames})")
        return True

    async def decode(self, text: str | None, data: bytes | None, type_key: str, what: str) -> tuple[Any, bool]:
        """(frame, its type) of a well-formed frame; else (None, whether the socket stays open)."""
        if text is None:
            if data is not None and len(data) > MAX_FRAME_CHARS:
                operator_metrics.frame_dropped(operator_metrics.DROP_OVERSIZED)
                return None, await self.close(CLOSE_TOO_BIG, "oversized binary frame")
            return None, await self.bad_frame("binary frame")
        if len(text) > MAX_FRAME_CHARS:
            operator_metrics.frame_dropped(operator_metrics.DROP_OVERSIZED)
            return None, await self.close(CLOSE_TOO_BIG, f"frame of {len(text)} characters")
        try:
            frame = json.loads(text)
            return frame, frame[type_key]
        except (ValueError, KeyError, TypeError):
            return None, await self.bad_frame(f"not {what}")


def ended_by_shutdown(session: CallSession, *, caller_left: bool, code: int | None) -> bool:
    """The server shutting down ended the call: the drain's hang-up (the caller's side then closes, which is
    not the caller hanging up), or the server closing the socket (uvicorn's 1012) — not Twilio's doing."""
    if code == CLOSE_SERVER_RESTART:
        return True
    return session.draining and (session.shutdown_said or not caller_left)
