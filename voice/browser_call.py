"""`/ws/browser/call/`: the dashboard's test call, a signed-in member talking to their own receptionist.

Same shape as the Twilio media stream (`voice/twilio_stream.py`) and the same call session; what differs is who
may open it (origin, sign-in, membership), the minutes it may spend, and the rate its audio may arrive at.
"""

from __future__ import annotations

import asyncio
import json
import logging
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
from calls.services.lifecycle import TooManyBrowserCalls, call_claim_stream, call_create_browser
from receptionist import metrics as operator_metrics
from voice.audio_socket import (BASE64, CLOSE_POLICY, CLOSE_SERVER_RESTART, _AudioSocket, ended_by_shutdown,
                                forward_call_messages)
from voice.drain import draining
from voice.session import CallSession, b64_len_to_bytes, in_db_pool
from voice.transports import BrowserTransport, send_close

log = logging.getLogger(__name__)


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
                operator_metrics.frame_dropped(operator_metrics.DROP_TOO_FAST)
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
