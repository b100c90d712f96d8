"""The outbound `call.completed` webhook: its payload, signed delivery to the checked address within a
deadline, and its retries (at least once, under one stable `webhook-id`)."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from standardwebhooks import Webhook

from calls.models import Call, WebhookAttempt, WebhookDelivery
from calls.postcall.address_guard import BlockedAddress, resolve_webhook_target
from calls.postcall.notifications import dashboard_call_url
from calls.postcall.queueing import TransientError, enqueue, retry_countdown
from calls.selectors.caller_names import caller_name_of

log = logging.getLogger(__name__)

EVENT_CALL_COMPLETED = "call.completed"


def webhook_secret_new() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def call_completed_payload(call: Call) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "type": EVENT_CALL_COMPLETED,
        "timestamp": timezone.now().isoformat(),
        "data": {
            "call_id": call.id, "business_id": call.business_id, "channel": call.channel,
            "direction": call.direction, "from_number": call.from_number, "to_number": call.to_number,
            "status": call.status, "end_reason": call.end_reason, "started_at": iso(call.started_at),
            "answered_at": iso(call.answered_at), "ended_at": iso(call.ended_at),
            "duration_seconds": call.duration_seconds, "outcome": call.outcome, "summary": call.summary,
            "caller_name": call.caller_name, "caller_display_name": caller_name_of(call), "reason": call.reason,
            "action_items": call.action_items,
            "sentiment": call.sentiment, "follow_up_needed": call.follow_up_needed,
            "follow_up_reason": call.follow_up_reason, "summary_error": call.summary_error,
            "url": dashboard_call_url(call),
        },
    }

@dataclass
class AttemptResult:
    ok: bool
    status_code: int | None = None
    error: str = ""
    retry: bool = True


class _Deadline:
    """Cuts an HTTP exchange at a moment: shuts down its sockets from a timer thread, which wakes any blocked
    read or write (a receiver that trickles bytes defeats per-read timeouts, not this)."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, at - time.monotonic()), self._cut)
        self._timer.daemon = True

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's `trace` extension: remember each socket the exchange opens (TCP, then TLS)."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with self._lock:
                    self._sockets.append(sock)
                if self.expired.is_set():
                    self._cut()

    def _cut(self) -> None:
        self.expired.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._timer.cancel()


def _post_pinned(url: str, body: str, headers: dict[str, str], *, deadline_at: float) -> AttemptResult:
    """POST to the address we checked (no second DNS lookup, no redirects followed), all of it (DNS, connect,
    request, answer) before `deadline_at` (monotonic), reading at most WEBHOOK_MAX_RESPONSE_BYTES back."""
    limit = settings.WEBHOOK_MAX_RESPONSE_BYTES
    with _Deadline(deadline_at) as deadline:
        scheme, host, port, address = resolve_webhook_target(url, timeout=deadline.remaining())
        parts = urlsplit(url)
        netloc_ip = f"[{address}]" if ":" in address else address
        pinned = urlunsplit((scheme, f"{netloc_ip}:{port}", parts.path or "/", parts.query, ""))
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        extensions: dict[str, Any] = {"trace": deadline.trace}
        if scheme == "https":
            extensions["sni_hostname"] = host
        step = max(0.1, min(settings.WEBHOOK_TIMEOUT_SECONDS, deadline.remaining()))
        try:
            # trust_env off: no proxy from the environment between us and the address we checked.
            with httpx.Client(timeout=step, follow_redirects=False, trust_env=False) as client:
                with client.stream("POST", pinned, content=body.encode(), extensions=extensions,
                                   headers={**headers, "Host": host_header, "Content-Type": "application/json",
                                            "User-Agent": "ai-receptionist-webhooks/1"}) as response:
                    received = 0
                    for chunk in response.iter_raw():  # the answer is not needed: read a little, then hang up
                        received += len(chunk)
                        if received >= limit:
                            break
                    status, location = response.status_code, response.headers.get("location", "?")
        except httpx.HTTPError as exc:
            if deadline.expired.is_set():
                return AttemptResult(ok=False, error=f"No complete answer within the {settings.WEBHOOK_DEADLINE_SECONDS:g} s "
                                                     f"deadline ({exc.__class__.__name__}).")
            raise
    if 200 <= status < 300:
        return AttemptResult(ok=True, status_code=status)
    if 300 <= status < 400:
        return AttemptResult(ok=False, status_code=status, error=f"Redirect to {location!r} not followed.")
    return AttemptResult(ok=False, status_code=status, error=f"HTTP {status}")


def webhook_claim(*, delivery_id: int) -> WebhookDelivery | None:
    """Claim a pending delivery for one attempt (compare-and-set, committed at once); None if it is done, or
    another attempt or its backoff holds it. The claim lasts the attempt's deadline and a margin."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now),
                                             id=delivery_id, status=WebhookDelivery.Status.PENDING).update(
        attempts=F("attempts") + 1,
        claimed_until=now + timedelta(seconds=settings.WEBHOOK_DEADLINE_SECONDS + 10))
    if not claimed:
        return None
    return WebhookDelivery.objects.select_related("endpoint").get(id=delivery_id)


def webhook_deliver(*, delivery_id: int) -> bool:
    """Attempt one delivery. True if another attempt is scheduled.

    The claim is committed before the network: no row lock or transaction is open during DNS and the POST."""
    from calls.tasks import deliver_webhook

    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("webhook_deliver must run outside a transaction: it does network I/O.")
    delivery = webhook_claim(delivery_id=delivery_id)
    if delivery is None:
        return False
    number = delivery.attempts
    if number > settings.WEBHOOK_MAX_ATTEMPTS:
        # The attempts were used up by ones that never finished (their workers stopped).
        WebhookDelivery.objects.filter(id=delivery_id, status=WebhookDelivery.Status.PENDING).update(
            status=WebhookDelivery.Status.FAILED, claimed_until=None,
            last_error=(f"Gave up after {number - 1} attempts; the last did not finish. " + delivery.last_error)[:2000])
        return False
    endpoint = delivery.endpoint
    started_at, t0 = timezone.now(), time.monotonic()
    body = json.dumps(delivery.payload, separators=(",", ":"))
    if endpoint is None:
        result = AttemptResult(ok=False, error="The endpoint was deleted.", retry=False)
    else:
        try:
            signature = Webhook(endpoint.secret).sign(delivery.message_id, started_at, body)
            headers = {"webhook-id": delivery.message_id,
                       "webhook-timestamp": str(int(started_at.timestamp())), "webhook-signature": signature}
            result = _post_pinned(delivery.url, body, headers,
                                  deadline_at=t0 + settings.WEBHOOK_DEADLINE_SECONDS)
        except BlockedAddress as exc:
            result = AttemptResult(ok=False, error=str(exc), retry=False)
        except TransientError as exc:
            result = AttemptResult(ok=False, error=str(exc))
        except httpx.HTTPError as exc:
            result = AttemptResult(ok=False, error=f"{exc.__class__.__name__}: {exc}")
        except Exception as exc:  # not the network's passing trouble: recorded, not retried
            log.exception("Webhook %s attempt %s failed", delivery.message_id, number)
            result = AttemptResult(ok=False, error=f"{exc.__class__.__name__}: {exc}", retry=False)
    WebhookAttempt.objects.create(delivery=delivery, number=number, started_at=started_at,
                                  status_code=result.status_code, ok=result.ok, error=result.error[:2000],
                                  duration_ms=round((time.monotonic() - t0) * 1000))
    countdown = 0.0
    if result.ok:
        update = {"status": WebhookDelivery.Status.DELIVERED, "delivered_at": timezone.now(), "last_error": ""}
    elif not result.retry or number >= settings.WEBHOOK_MAX_ATTEMPTS:
        update = {"status": WebhookDelivery.Status.FAILED, "last_error": result.error[:2000]}
    else:
        countdown = retry_countdown(number - 1)
        update = {"last_error": result.error[:2000]}
    WebhookDelivery.objects.filter(id=delivery_id, status=WebhookDelivery.Status.PENDING).update(
        claimed_until=(timezone.now() + timedelta(seconds=countdown)) if countdown else None, **update)
    log.info("Webhook %s attempt %s for call %s: %s", delivery.message_id, number, delivery.call_id,
             result.status_code or result.error)
    if countdown:
        enqueue(deliver_webhook, delivery_id, countdown=countdown)
        return True
    return False
