"""After the call: summary and extraction, the notification email, the `call.completed` webhook, the reaper.

`call_finalize` enqueues `postcall_enqueue(call_id)` on commit; the Celery tasks in `calls/tasks.py` are thin
wrappers around the services here. Every side effect happens once per call, whoever retries:

* summary: claimed by compare-and-set (`Call.summary_claimed_until`, for one attempt or its backoff), at least
  once to the model, at most once stored (compare-and-set on `Call.summarized_at`); a retried or duplicated
  task finds it claimed or stored and goes on to the notifications.
* email: at most once (compare-and-set QUEUED -> SENDING on the call's `CallNotification`, unique per call).
* webhook: at least once under one stable `webhook-id` (a `WebhookDelivery` row, unique per call and event,
  claimed by compare-and-set and committed before DNS and HTTP, so no lock or transaction is held across the
  network); Standard Webhooks receivers dedupe on that id.

Retries are counted in the database, not in the broker: a short backoff is a broker countdown, a long one is
only the claim's expiry, after which `postcall_sweep` (beat) queues the work again; so is work whose worker
died, whose message was lost, or that could not be queued because the broker was down. Anything that fails
for good ends in a recorded state (`summary_error`, a FAILED notification or delivery with its error).
Without a broker (embedded mode) the tasks run on `calls.background`'s executor, never in the finaliser.
"""

from __future__ import annotations

import base64
import concurrent.futures
import ipaddress
import json
import logging
import secrets
import smtplib
import socket
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Max, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from openai import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    OpenAI,
    OpenAIError,
)
from standardwebhooks import Webhook

from accounts.models import Business
from calls.background import embedded_runner
from calls.caller_text import caller_data_block
from calls.models import (
    Call,
    CallEvent,
    CallNotification,
    Message,
    NotificationSettings,
    TranscriptEntry,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from calls.live import publish_call_changed
from calls.services import call_finalize, call_search_refresh

log = logging.getLogger(__name__)

OUTCOMES = ["booked", "rescheduled", "cancelled", "message_taken", "answered", "transferred", "abandoned", "spam",
            "other"]
SENTIMENTS = ["positive", "neutral", "negative", "mixed"]
EVENT_CALL_COMPLETED = "call.completed"


class TransientError(Exception):
    """Worth retrying later: the model, the mail server or the network failed for now."""


def retry_countdown(retries: int) -> float:
    """Exponential backoff with a little jitter: base * 2**retries, capped."""
    delay = min(settings.POSTCALL_RETRY_BASE_SECONDS * (2 ** retries), settings.POSTCALL_RETRY_MAX_SECONDS)
    return delay * (1 + secrets.randbelow(100) / 1000)


def enqueue(task: Any, *args: Any, countdown: float = 0.0) -> bool:
    """Queue a post-call task; never raises. False if the broker refused it (logged; the sweep queues it again).

    A countdown beyond POSTCALL_BROKER_MAX_COUNTDOWN_SECONDS is not given to the broker (Redis would hand the
    waiting task out again after its visibility timeout): the claim that expires then is what the sweep sees.
    Without a broker the task runs on the background executor, after `countdown`.
    """
    from celery import current_app

    if current_app.conf.task_always_eager:
        embedded_runner().submit(task, *args, delay=countdown)
        return True
    if countdown > settings.POSTCALL_BROKER_MAX_COUNTDOWN_SECONDS:
        return True
    try:
        task.apply_async(args=list(args), countdown=countdown or None)
    except Exception:
        log.exception("Could not queue %s%r; the post-call sweep will queue it again", task.name, args)
        return False
    return True


def postcall_enqueue(call_id: int) -> None:
    """Queue the post-call work once the current transaction commits (call from `call_finalize`).

    Robust: a broker that is down never fails the commit's caller (a Twilio webhook, a call session); the
    post-call sweep finds the call without a summary and queues it again."""
    from calls.tasks import summarize_call

    def queue_postcall_work() -> None:
        enqueue(summarize_call, call_id)

    transaction.on_commit(queue_postcall_work, robust=True)


def dashboard_call_url(call: Call) -> str:
    return settings.PUBLIC_BASE_URL + reverse("call_detail", kwargs={"call_id": call.id})


# --- summary and extraction --------------------------------------------------------------------------------

SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary", "caller_name", "reason", "outcome", "action_items", "sentiment", "follow_up_needed",
                 "follow_up_reason"],
    "properties": {
        "summary": {"type": "string", "description": "Two or three sentences: who called, what they wanted, "
                                                     "what happened."},
        "caller_name": {"type": "string", "description": "The caller's name if they said it, else empty."},
        "reason": {"type": "string", "description": "Why they called, in one short sentence."},
        "outcome": {"type": "string", "enum": OUTCOMES},
        "action_items": {"type": "array", "items": {"type": "string"},
                         "description": "What the team should do, one short imperative each; empty if nothing."},
        "sentiment": {"type": "string", "enum": SENTIMENTS},
        "follow_up_needed": {"type": "boolean"},
        "follow_up_reason": {"type": "string", "description": "Why a follow-up is needed; empty if not."},
    },
}

SUMMARY_INSTRUCTIONS = (
    "You write the after-call note for a small business whose AI phone receptionist just handled a call. Read "
    "the transcript and the list of what the receptionist actually did, and fill in the fields. The summary is "
    "two or three plain sentences for the owner. The outcome is one of: booked (a new appointment was made), "
    "rescheduled, cancelled, message_taken, answered (questions answered, nothing else), transferred, abandoned "
    "(the caller hung up before anything happened), spam, other. Action items are what the team must do next. "
    "A follow-up is needed when someone from the team has to contact the caller or act. Never invent facts."
)


@dataclass
class Extraction:
    summary: str = ""
    caller_name: str = ""
    reason: str = ""
    outcome: str = "other"
    action_items: list[str] | None = None
    sentiment: str = ""
    follow_up_needed: bool | None = None
    follow_up_reason: str = ""

    @classmethod
    def from_json(cls, content: str) -> Extraction:
        data = json.loads(content)
        if not isinstance(data, dict):
            raise ValueError("the summary is not a JSON object")
        outcome = str(data.get("outcome") or "other")
        sentiment = str(data.get("sentiment") or "")
        items = data.get("action_items") or []
        return cls(
            summary=str(data.get("summary") or "").strip()[:4000],
            caller_name=str(data.get("caller_name") or "").strip()[:120],
            reason=str(data.get("reason") or "").strip()[:2000],
            outcome=outcome if outcome in OUTCOMES else "other",
            action_items=[str(i).strip()[:500] for i in items if str(i).strip()][:20] if isinstance(items, list) else [],
            sentiment=sentiment[:16] if sentiment in SENTIMENTS else "",
            follow_up_needed=bool(data.get("follow_up_needed")),
            follow_up_reason=str(data.get("follow_up_reason") or "").strip()[:2000],
        )


def actions_of_call(call: Call) -> list[str]:
    """What the receptionist's tools actually did on this call, strongest first (these override the model)."""
    actions = []
    if call.appointments_created.exists():
        actions.append("booked")
    tool_steps = CallEvent.objects.filter(call=call, kind=CallEvent.Kind.SUPERVISOR, payload__step="tool",
                                          payload__name__in=["reschedule_appointment", "cancel_appointment"])
    done = {step.payload.get("name") for step in tool_steps
            if isinstance(step.payload.get("result"), dict) and "error" not in step.payload["result"]
            and not step.payload["result"].get("already_cancelled")}
    if "reschedule_appointment" in done:
        actions.append("rescheduled")
    if "cancel_appointment" in done:
        actions.append("cancelled")
    if Message.objects.filter(call=call).exists():
        actions.append("message_taken")
    if CallEvent.objects.filter(call=call, kind=CallEvent.Kind.TRANSFER, payload__ok=True).exists():
        actions.append("transferred")
    return actions


def summary_prompt(call: Call, actions: list[str]) -> str:
    # What was said (the caller's words, and the agent's words shaped by them) is data, never instructions.
    turns = [{"speaker": entry.speaker, "text": entry.text} for entry in call.transcript.order_by("order")][-400:]
    business = call.business
    local = timezone.localtime(call.started_at, business.tzinfo)
    return "\n".join([
        (f"Business: {business.name}. Call at {local:%Y-%m-%d %H:%M} ({business.time_zone}) from "
         f"{call.from_number or 'an unknown number'}; it lasted {call.duration_seconds or 0} s and ended: "
         f"{call.end_reason or call.status}."),
        "What the receptionist did: " + (", ".join(actions) if actions else "nothing recorded") + ".",
        caller_data_block({"transcript": turns}, source="the call's transcript") if turns
        else "Transcript: (nothing was said)",
    ])


def summary_cost_usd(model: str, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> Decimal:
    prices = settings.SUMMARY_PRICES.get(model) or settings.SUMMARY_PRICES["default"]
    total = ((prompt_tokens - cached_tokens) * prices["in"] + cached_tokens * prices["cached"]
             + completion_tokens * prices["out"])
    return (Decimal(str(total)) / Decimal(1_000_000)).quantize(Decimal("0.000001"))


_clients: dict[tuple[str, str, float], OpenAI] = {}


def summary_client() -> OpenAI:
    """One client per configuration and process (it keeps its connection pool; it is thread-safe)."""
    key = (settings.OPENAI_API_KEY or "missing", settings.OPENAI_BASE_URL, settings.SUMMARY_MODEL_TIMEOUT_SECONDS)
    if key not in _clients:
        _clients[key] = OpenAI(api_key=key[0], base_url=key[1], timeout=key[2], max_retries=0)
    return _clients[key]


def _store_summary(call: Call, extraction: Extraction, **usage: Any) -> bool:
    """Compare-and-set: the first stored summary wins; a duplicate or late one changes nothing."""
    cost = usage.pop("summary_cost_usd", Decimal(0))
    stored = Call.objects.filter(id=call.id, summarized_at__isnull=True).update(
        summary=extraction.summary, caller_name=extraction.caller_name, reason=extraction.reason,
        outcome=extraction.outcome, action_items=extraction.action_items or [], sentiment=extraction.sentiment,
        follow_up_needed=extraction.follow_up_needed, follow_up_reason=extraction.follow_up_reason,
        summary_cost_usd=F("summary_cost_usd") + cost, cost_usd=F("cost_usd") + cost,
        summarized_at=timezone.now(), summary_claimed_until=None, **usage)
    if stored:
        call_search_refresh(call_id=call.id)  # the summary, reason and caller's name become searchable
        publish_call_changed(call_id=call.id, business_id=call.business_id, status=call.status)
    return stored == 1


def call_summarize(*, call_id: int, client: OpenAI | None = None) -> bool:
    """Summarise the call and extract its fields; False if it was already done. Raises TransientError."""
    call = Call.objects.select_related("business").filter(id=call_id).first()
    if call is None or call.summarized_at is not None:
        return False
    actions = actions_of_call(call)
    caller_spoke = TranscriptEntry.objects.filter(call=call, speaker=TranscriptEntry.Speaker.CALLER).exclude(
        text="[not transcribed]").exists()
    if not caller_spoke:
        # Nothing to summarise: no model call, no cost.
        outcome = actions[0] if actions else "abandoned"
        return _store_summary(call, Extraction(summary="", outcome=outcome, action_items=[],
                                               follow_up_needed=False))
    model = settings.OPENAI_SUMMARY_MODEL
    client = client or summary_client()
    try:
        completion = client.chat.completions.create(
            model=model,
            messages=[{"role": "system", "content": SUMMARY_INSTRUCTIONS},
                      {"role": "user", "content": summary_prompt(call, actions)}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "call_summary", "strict": True, "schema": SUMMARY_SCHEMA}},
        )
    except (APIConnectionError, APITimeoutError) as exc:
        raise TransientError(f"Summary model unreachable: {exc.__class__.__name__}: {exc}") from exc
    except APIStatusError as exc:
        if exc.status_code == 429 or exc.status_code >= 500:
            raise TransientError(f"Summary model error {exc.status_code}: {exc.message}") from exc
        call_summary_failed(call_id=call.id, error=f"Summary model error {exc.status_code}: {exc.message}")
        return False
    except OpenAIError as exc:
        call_summary_failed(call_id=call.id, error=f"Summary model error: {exc.__class__.__name__}: {exc}")
        return False
    try:
        extraction = Extraction.from_json(completion.choices[0].message.content or "")
    except (ValueError, TypeError) as exc:
        call_summary_failed(call_id=call.id, error=f"The summary model's answer is not valid: {exc}")
        return False
    if actions:
        extraction.outcome = actions[0]  # what the tools did beats what the model thinks happened
    usage = completion.usage
    prompt_tokens = usage.prompt_tokens if usage else 0
    cached = (usage.prompt_tokens_details.cached_tokens or 0) if usage and usage.prompt_tokens_details else 0
    completion_tokens = usage.completion_tokens if usage else 0
    return _store_summary(call, extraction, summary_model=model, summary_input_tokens=prompt_tokens,
                          summary_output_tokens=completion_tokens,
                          summary_cost_usd=summary_cost_usd(model, prompt_tokens, cached, completion_tokens))


def call_summary_failed(*, call_id: int, error: str) -> bool:
    """Give up on the summary: record why, keep the outcome the tools prove (compare-and-set, like a summary)."""
    call = Call.objects.filter(id=call_id).first()
    if call is None:
        return False
    actions = actions_of_call(call)
    stored = Call.objects.filter(id=call_id, summarized_at__isnull=True).update(
        summary_error=error[:4000], outcome=actions[0] if actions else (call.outcome or ""),
        summarized_at=timezone.now(), summary_claimed_until=None) == 1
    if stored:
        publish_call_changed(call_id=call.id, business_id=call.business_id, status=call.status)
    return stored


def summary_claim(*, call_id: int) -> int | None:
    """Claim the call's summary for one attempt (compare-and-set); the attempt's number, or None if it is
    stored already or another attempt (or its backoff) holds the claim."""
    now = timezone.now()
    claimed = Call.objects.filter(Q(summary_claimed_until__isnull=True) | Q(summary_claimed_until__lte=now),
                                  id=call_id, summarized_at__isnull=True).update(
        summary_attempts=F("summary_attempts") + 1,
        summary_claimed_until=now + timedelta(seconds=settings.SUMMARY_CLAIM_SECONDS))
    if not claimed:
        return None
    return Call.objects.values_list("summary_attempts", flat=True).get(id=call_id)


def call_summary_attempt(*, call_id: int) -> None:
    """One attempt at the call's summary (claimed), then its notifications once the summary is settled.

    A passing model error is retried with backoff up to SUMMARY_MAX_RETRIES times, then recorded; any other
    error is recorded at once (`summary_error`); the notifications then go out without a summary."""
    from calls.tasks import summarize_call

    settled = Call.objects.filter(id=call_id).values_list("summarized_at", flat=True).first()
    if settled is None:
        if not Call.objects.filter(id=call_id).exists():
            return  # deleted meanwhile
        attempt = summary_claim(call_id=call_id)
        if attempt is None:
            return  # stored meanwhile (its attempt dispatched the notifications) or another attempt has it
        if attempt > settings.SUMMARY_MAX_RETRIES + 1:
            call_summary_failed(call_id=call_id, error=f"Gave up after {attempt - 1} attempts that did not finish "
                                                      "(the worker stopped during each).")
        else:
            try:
                call_summarize(call_id=call_id)
            except TransientError as exc:
                if attempt <= settings.SUMMARY_MAX_RETRIES:
                    countdown = retry_countdown(attempt - 1)
                    log.warning("Summary of call %s failed (%s); attempt %s in %.0f s", call_id, exc, attempt + 1,
                                countdown)
                    Call.objects.filter(id=call_id, summarized_at__isnull=True).update(
                        summary_claimed_until=timezone.now() + timedelta(seconds=countdown))
                    enqueue(summarize_call, call_id, countdown=countdown)
                    return
                call_summary_failed(call_id=call_id, error=str(exc))
            except Exception as exc:
                # Not a passing trouble of the model's (a bug, a bad row, the time limit): retrying would fail
                # the same way. Recorded, so the call shows why it has no summary and its notifications go out.
                log.exception("Summary of call %s failed", call_id)
                call_summary_failed(call_id=call_id, error=f"The summary failed: {exc.__class__.__name__}: {exc}")
    call_dispatch_notifications(call_id=call_id)


# --- notifications: what to send once the summary is settled ---------------------------------------------

def call_dispatch_notifications(*, call_id: int) -> None:
    """Create the call's email and webhook status rows (once) and queue whatever is still to do."""
    from calls.tasks import deliver_webhook, send_call_email

    call = Call.objects.select_related("business").filter(id=call_id).first()
    if call is None:
        return
    with transaction.atomic():
        notification, _ = CallNotification.objects.get_or_create(call=call)
        if notification.status == CallNotification.Status.QUEUED:
            transaction.on_commit(lambda: enqueue(send_call_email, call_id), robust=True)
        endpoint = WebhookEndpoint.objects.filter(business_id=call.business_id, is_active=True).first()
        if endpoint is not None:
            delivery, _ = WebhookDelivery.objects.get_or_create(
                call=call, event_type=EVENT_CALL_COMPLETED,
                defaults={"endpoint": endpoint, "url": endpoint.url, "message_id": f"msg_{uuid.uuid4().hex}",
                          "payload": call_completed_payload(call)})
            if delivery.status == WebhookDelivery.Status.PENDING:
                transaction.on_commit(lambda: enqueue(deliver_webhook, delivery.id), robust=True)


def email_mode(business: Business) -> str:
    settings_row = NotificationSettings.objects.filter(business=business).first()
    return settings_row.email_mode if settings_row else NotificationSettings.EmailMode.ALL


def _email_wanted(call: Call) -> tuple[bool, str]:
    mode = email_mode(call.business)
    if mode == NotificationSettings.EmailMode.OFF:
        return False, "notifications are off"
    if not call.business.notification_email:
        return False, "the business has no notification email"
    if mode == NotificationSettings.EmailMode.FOLLOW_UP and call.follow_up_needed is False:
        return False, "no follow-up needed"  # unknown (no summary) still notifies
    return True, ""


def header_text(value: str, limit: int) -> str:
    """Text fit for an email header: control and line-break characters become spaces, runs of spaces one, at
    most `limit` characters. Parts of our subjects come from the model (the caller's name) and from tenants."""
    cleaned = "".join(" " if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} else ch for ch in value or "")
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[:limit - 1].rstrip() + "…"


def call_email_subject(call: Call) -> str:
    caller = " ".join(filter(None, [header_text(call.caller_name, 60), header_text(call.from_number, 32)]))
    outcome = header_text(call.outcome.replace("_", " "), 32) if call.outcome else "unknown"
    subject = f"{header_text(call.business.name, 80)}: call from {caller or 'an unknown caller'} ({outcome})"
    if call.follow_up_needed:
        subject = "Follow-up needed — " + subject
    return subject[:200]


def call_notification_send(*, call_id: int) -> str:
    """Send the call's email at most once. Returns the notification's status.

    Once claimed, the notification always leaves SENDING: SENT, SKIPPED, back to QUEUED (with a backoff) for a
    retry of a transient mail-server error, or FAILED with the error for anything else or after
    EMAIL_MAX_RETRIES retries.
    """
    from calls.tasks import send_call_email

    now = timezone.now()
    claimed = CallNotification.objects.filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now), call_id=call_id,
                                              status=CallNotification.Status.QUEUED).update(
        status=CallNotification.Status.SENDING, attempts=F("attempts") + 1)
    if not claimed:
        return "not_queued"  # done, skipped, waiting for its backoff, or another worker has it
    try:
        call = Call.objects.select_related("business").get(id=call_id)
        wanted, why = _email_wanted(call)
        if not wanted:
            CallNotification.objects.filter(call_id=call_id).update(status=CallNotification.Status.SKIPPED,
                                                                    error=why)
            return CallNotification.Status.SKIPPED
        recipient = call.business.notification_email
        context = {"call": call, "business": call.business, "url": dashboard_call_url(call),
                   "outcome": call.outcome.replace("_", " ") if call.outcome else "unknown",
                   "caller": " ".join(filter(None, [call.caller_name, call.from_number])) or "an unknown caller",
                   "local_started": timezone.localtime(call.started_at, call.business.tzinfo)}
        body = render_to_string("calls/email/call_summary.txt", context)
        send_mail(call_email_subject(call), body, settings.DEFAULT_FROM_EMAIL, [recipient], fail_silently=False)
    except (smtplib.SMTPException, OSError) as exc:
        # Nothing was accepted: back in the queue for a retry after a backoff, or failed after the last one.
        error = f"{exc.__class__.__name__}: {exc}"[:2000]
        attempts = CallNotification.objects.values_list("attempts", flat=True).get(call_id=call_id)
        if attempts > settings.EMAIL_MAX_RETRIES:
            CallNotification.objects.filter(call_id=call_id).update(status=CallNotification.Status.FAILED,
                                                                    error=error)
            return CallNotification.Status.FAILED
        countdown = retry_countdown(attempts - 1)
        log.warning("Email about call %s failed (%s); retry in %.0f s", call_id, error, countdown)
        CallNotification.objects.filter(call_id=call_id).update(
            status=CallNotification.Status.QUEUED, error=error, retry_at=timezone.now() + timedelta(seconds=countdown))
        enqueue(send_call_email, call_id, countdown=countdown)
        return CallNotification.Status.QUEUED
    except Exception as exc:
        # Not the mail server's passing trouble (a bad header or address, a template error): retrying would fail
        # the same way, so the notification ends here with the reason recorded.
        log.exception("Email about call %s failed", call_id)
        CallNotification.objects.filter(call_id=call_id).update(status=CallNotification.Status.FAILED,
                                                                error=f"{exc.__class__.__name__}: {exc}"[:2000])
        return CallNotification.Status.FAILED
    CallNotification.objects.filter(call_id=call_id).update(status=CallNotification.Status.SENT, recipient=recipient,
                                                            sent_at=timezone.now(), error="")
    return CallNotification.Status.SENT


# --- the outbound webhook ---------------------------------------------------------------------------------

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
            "caller_name": call.caller_name, "reason": call.reason, "action_items": call.action_items,
            "sentiment": call.sentiment, "follow_up_needed": call.follow_up_needed,
            "follow_up_reason": call.follow_up_reason, "summary_error": call.summary_error,
            "url": dashboard_call_url(call),
        },
    }


class BlockedAddress(Exception):
    """The webhook URL resolves to an address we never send to (private, loopback, link-local ...)."""


# IPv6 prefixes whose last 32 bits are an IPv4 address the packets end up at (a translator or the host stack
# unwraps them): IPv4-mapped, IPv4-translated (SIIT), the well-known NAT64 prefix and IPv4-compatible.
_IPV4_IN_LOW_BITS = [ipaddress.ip_network(n) for n in ("::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "::/96")]
# RFC 8215's local-use NAT64 prefix: a private network's own translator, wherever it puts the IPv4 part.
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address wraps (6to4, Teredo's server and client, the prefixes above)."""
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    for network in _IPV4_IN_LOW_BITS:
        if ip in network:
            return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def _address_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL_USE:
            return False
        embedded = _embedded_ipv4(ip)
        if any(not (v4.is_global and not v4.is_multicast) for v4 in embedded):
            return False
        if embedded and ip.teredo is None:
            return True  # a pure wrapper: judged by the IPv4 address it reaches (Teredo must pass both tests)
    return ip.is_global and not ip.is_multicast


# getaddrinfo has no timeout of its own: it runs here, and the attempt waits for it only until its deadline.
_resolver = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")


def resolve_webhook_target(url: str, timeout: float | None = None) -> tuple[str, str, int, str]:
    """(scheme, host, port, pinned address) of a webhook URL whose every resolved address is allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BlockedAddress(f"Not an http(s) URL: {url!r}")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM).result(timeout=timeout)
    except socket.gaierror as exc:
        raise TransientError(f"Cannot resolve {host}: {exc}") from exc
    except concurrent.futures.TimeoutError as exc:
        raise TransientError(f"Resolving {host} took longer than the attempt's deadline.") from exc
    addresses = [info[4][0] for info in infos]
    for address in addresses:
        if not _address_allowed(ipaddress.ip_address(address.split("%")[0])):
            raise BlockedAddress(f"{host} resolves to {address}, a private or reserved address.")
    return parts.scheme, host, port, addresses[0]


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


# --- the post-call sweep ----------------------------------------------------------------------------------

SWEEP_BATCH = 200


def postcall_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Queue again the post-call work that should have happened by now and has no live claim: summaries of
    finalised calls (and the notifications of summarised calls that have none), queued emails, pending
    webhooks. Safe to run any number of times: each task claims its work by compare-and-set."""
    from calls.tasks import deliver_webhook, send_call_email, summarize_call

    now = now or timezone.now()
    settled_before = now - timedelta(seconds=settings.POSTCALL_SWEEP_GRACE_SECONDS)
    oldest = now - timedelta(hours=settings.POSTCALL_SWEEP_MAX_AGE_HOURS)
    unclaimed = Q(summary_claimed_until__isnull=True) | Q(summary_claimed_until__lte=now)
    unsummarised = list(Call.objects.filter(unclaimed, summarized_at__isnull=True, finalized_at__lt=settled_before,
                                            finalized_at__gte=oldest)
                        .order_by("finalized_at").values_list("id", flat=True)[:SWEEP_BATCH])
    unnotified = list(Call.objects.filter(summarized_at__lt=settled_before, finalized_at__gte=oldest,
                                          notification__isnull=True)
                      .order_by("finalized_at").values_list("id", flat=True)[:SWEEP_BATCH])
    emails = list(CallNotification.objects.filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now),
                                                  status=CallNotification.Status.QUEUED,
                                                  created_at__lt=settled_before, call__finalized_at__gte=oldest)
                  .order_by("created_at").values_list("call_id", flat=True)[:SWEEP_BATCH])
    webhooks = list(WebhookDelivery.objects.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now),
                                                   status=WebhookDelivery.Status.PENDING,
                                                   created_at__lt=settled_before, created_at__gte=oldest)
                    .order_by("created_at").values_list("id", flat=True)[:SWEEP_BATCH])
    for call_id in unsummarised + unnotified:
        enqueue(summarize_call, call_id)
    for call_id in emails:
        enqueue(send_call_email, call_id)
    for delivery_id in webhooks:
        enqueue(deliver_webhook, delivery_id)
    counts = {"summaries": len(unsummarised), "notifications": len(unnotified), "emails": len(emails),
              "webhooks": len(webhooks)}
    if any(counts.values()):
        log.warning("Post-call sweep queued again: %s", counts)
    return counts


# --- the reaper -------------------------------------------------------------------------------------------

def calls_reap_stuck(*, now: datetime | None = None) -> list[int]:
    """Finalise calls still ringing/in progress long after they could be; returns their ids.

    A ringing call whose media stream never started after REAPER_RINGING_MINUTES, or a call in progress with
    no recorded activity (events) for REAPER_IDLE_MINUTES or answered more than CALL_MAX_SECONDS (+ grace) ago.
    Live calls write events every turn, so they are never idle that long.
    """
    now = now or timezone.now()
    reaped = []
    live = Call.objects.filter(status__in=[Call.Status.RINGING, Call.Status.IN_PROGRESS], finalized_at__isnull=True)
    ringing = live.filter(stream_started_at__isnull=True,
                          started_at__lt=now - timedelta(minutes=settings.REAPER_RINGING_MINUTES))
    for call in ringing:
        if _reap(call, now=now, last_activity=call.started_at, reason="reaped_never_connected",
                 error="Reaped: the media stream never started."):
            reaped.append(call.id)
    idle_before = now - timedelta(minutes=settings.REAPER_IDLE_MINUTES)
    capped_before = now - timedelta(seconds=settings.CALL_MAX_SECONDS + settings.REAPER_GRACE_SECONDS)
    for call in live.filter(stream_started_at__isnull=False).annotate(last_event=Max("events__created_at")):
        last = max(filter(None, [call.last_event, call.answered_at, call.stream_started_at, call.started_at]))
        begin = call.answered_at or call.stream_started_at or call.started_at
        if begin < capped_before:
            reason, error = "reaped_over_cap", "Reaped: still open past the call length cap."
        elif last < idle_before:
            reason, error = "reaped_idle", f"Reaped: no activity since {last.isoformat()}."
        else:
            continue
        if _reap(call, now=now, last_activity=last, reason=reason, error=error):
            reaped.append(call.id)
    return reaped


def _reap(call: Call, *, now: datetime, last_activity: datetime, reason: str, error: str) -> bool:
    with transaction.atomic():
        Call.objects.filter(id=call.id, finalized_at__isnull=True, ended_at__isnull=True).update(
            ended_at=min(last_activity, now))
        done = call_finalize(call_id=call.id, status=Call.Status.INTERRUPTED, end_reason=reason, error=error)
    if done:
        log.warning("Call %s reaped (%s)", call.id, reason)
    return done
