"""A call's lifecycle: created (inbound or a browser test), its media stream claimed, finalised exactly once with
its token usage and cost, and reconciled with Twilio's status callback."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Business
from calls.live import publish_call_changed
from calls.models import Call
from calls.services.search_document import call_search_refresh
from calls.signals import call_finalized
from receptionist import metrics as operator_metrics

log = logging.getLogger(__name__)


def call_create_inbound(*, business: Business, twilio_call_sid: str, from_number: str, to_number: str) -> Call:
    """Record a ringing inbound call. A webhook retried by Twilio returns the call it already made."""
    try:
        with transaction.atomic():  # a new call (nearly always): the insert alone, no lookup first
            call = Call.objects.create(twilio_call_sid=twilio_call_sid, business=business,
                                       from_number=from_number[:32], to_number=to_number[:32],
                                       channel=Call.Channel.TWILIO, direction=Call.Direction.INBOUND)
        created = True
    except IntegrityError:
        call = Call.objects.filter(twilio_call_sid=twilio_call_sid).first()
        if call is None:  # another constraint failed, not the call SID's
            raise
        created = False
    if created:
        call_search_refresh(call_id=call.id)  # findable by its number while it rings
        publish_call_changed(call_id=call.id, business_id=call.business_id, status=call.status)
    return call


class TooManyBrowserCalls(Exception):
    """The business already runs as many browser test calls as BROWSER_CALLS_AT_ONCE allows."""


def call_create_browser(*, business: Business, user_label: str) -> Call:
    """Record a browser test call, unless the business already runs BROWSER_CALLS_AT_ONCE of them."""
    with transaction.atomic():
        # Locking the business row serialises concurrent starts: two tabs cannot both slip under the cap.
        Business.objects.select_for_update().filter(pk=business.pk).exists()
        running = Call.objects.filter(business=business, channel=Call.Channel.BROWSER, finalized_at__isnull=True,
                                      status__in=[Call.Status.RINGING, Call.Status.IN_PROGRESS]).count()
        if running >= settings.BROWSER_CALLS_AT_ONCE:
            raise TooManyBrowserCalls(f"{running} browser test calls are already running for this business.")
        call = Call.objects.create(business=business, channel=Call.Channel.BROWSER, from_number=user_label[:32],
                                   to_number=business.phone_number)
        call_search_refresh(call_id=call.id)
    return call


@dataclass(frozen=True)
class ClaimedStream:
    business_id: int
    from_number: str


def call_claim_stream(*, call_id: int) -> ClaimedStream | None:
    """Mark the call's media stream as started; None if a stream already used this call's token."""
    now = timezone.now()
    claimed = Call.objects.filter(id=call_id, stream_started_at__isnull=True, finalized_at__isnull=True).update(
        stream_started_at=now, answered_at=now, status=Call.Status.IN_PROGRESS)
    if not claimed:
        return None
    business_id, from_number = Call.objects.filter(id=call_id).values_list("business_id", "from_number").get()
    publish_call_changed(call_id=call_id, business_id=business_id, status=Call.Status.IN_PROGRESS)
    return ClaimedStream(business_id=business_id, from_number=from_number)


@dataclass
class Usage:
    """What one call's voice model used: Realtime's tokens, summed from its `response.done` usage objects; or
    GPT-Live's active seconds (each session's final `usage.seconds`, summed) and its delegation backend's tokens
    (from the nested Responses `response.completed` usage)."""

    input_audio: int = 0
    input_text: int = 0
    input_cached: int = 0
    cached_audio: int = 0
    cached_text: int = 0
    output_audio: int = 0
    output_text: int = 0
    voice_seconds: float = 0.0
    backend_in: int = 0
    backend_cached: int = 0  # a subset of backend_in
    backend_out: int = 0

    def add_backend_usage(self, usage: dict[str, Any]) -> tuple[int, int, int]:
        """A Responses `usage` object of GPT-Live's backend; returns its (input, cached, output) tokens."""
        counts = (int(usage.get("input_tokens") or 0),
                  int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0),
                  int(usage.get("output_tokens") or 0))
        self.backend_in += counts[0]
        self.backend_cached += counts[1]
        self.backend_out += counts[2]
        return counts

    def backend_tokens_by_kind(self) -> dict[str, int]:
        """The backend's tokens keyed like SUPERVISOR_PRICES entries (cached taken out of input)."""
        return {"in": self.backend_in - self.backend_cached, "cached": self.backend_cached, "out": self.backend_out}

    def backend_cost_usd(self) -> Decimal:
        prices = settings.SUPERVISOR_PRICES.get(settings.OPENAI_DELEGATION_MODEL) or settings.SUPERVISOR_PRICES["default"]
        total = sum(count * prices[key] for key, count in self.backend_tokens_by_kind().items())
        return (Decimal(str(total)) / Decimal(1_000_000)).quantize(Decimal("0.000001"))

    def voice_cost_usd(self, model: str) -> Decimal:
        """GPT-Live's active time, per second at the model's per-minute price."""
        price = (settings.LIVE_PRICES.get(model) or settings.LIVE_PRICES["default"])["active_minute"]
        return (Decimal(str(self.voice_seconds)) * Decimal(str(price)) / 60).quantize(Decimal("0.000001"))

    def add_realtime_usage(self, usage: dict[str, Any]) -> None:
        details = usage.get("input_token_details") or {}
        cached = details.get("cached_tokens_details") or {}
        out = usage.get("output_token_details") or {}
        self.input_audio += int(details.get("audio_tokens") or 0)
        self.input_text += int(details.get("text_tokens") or 0)
        self.input_cached += int(details.get("cached_tokens") or 0)
        self.cached_audio += int(cached.get("audio_tokens") or 0)
        self.cached_text += int(cached.get("text_tokens") or 0)
        self.output_audio += int(out.get("audio_tokens") or 0)
        self.output_text += int(out.get("text_tokens") or 0)

    def tokens_by_kind(self) -> dict[str, int]:
        """Tokens by the price each is billed at: cached tokens are a subset of input tokens, so they are taken
        out of it here and the kinds add up to every token. Keyed by REALTIME_PRICE_KEYS' kinds."""
        return {"input_text": self.input_text - self.cached_text, "cached_text": self.cached_text,
                "input_audio": self.input_audio - self.cached_audio, "cached_audio": self.cached_audio,
                "output_text": self.output_text, "output_audio": self.output_audio}

    def cost_by_kind_usd(self, model: str) -> dict[str, float]:
        """What each kind of `tokens_by_kind` costs, in USD, unrounded (for the operator metrics)."""
        prices = settings.REALTIME_PRICES.get(model) or settings.REALTIME_PRICES["default"]
        return {kind: count * prices[REALTIME_PRICE_KEYS[kind]] / 1_000_000
                for kind, count in self.tokens_by_kind().items()}

    def cost_usd(self, model: str) -> Decimal:
        """Price from the per-model table in settings (USD per million tokens); cached tokens are a subset."""
        prices = settings.REALTIME_PRICES.get(model) or settings.REALTIME_PRICES["default"]
        total = sum(count * prices[REALTIME_PRICE_KEYS[kind]] for kind, count in self.tokens_by_kind().items())
        return (Decimal(str(total)) / Decimal(1_000_000)).quantize(Decimal("0.000001"))


# Each kind of token a Realtime call uses, and its key in a REALTIME_PRICES entry.
REALTIME_PRICE_KEYS = {"input_text": "text_in", "cached_text": "text_cached", "input_audio": "audio_in",
                       "cached_audio": "audio_cached", "output_text": "text_out", "output_audio": "audio_out"}


@transaction.atomic
def call_finalize(*, call_id: int, status: str, end_reason: str, usage: Usage | None = None,
                  model: str = "", error: str = "", engine: str = "") -> bool:
    """Finalise the call exactly once: ended time, duration, tokens, cost, status. False if already done."""
    call = Call.objects.select_for_update().filter(id=call_id).first()
    if call is None or call.finalized_at is not None:
        return False
    now = timezone.now()
    call.status = status
    call.end_reason = end_reason[:40]
    call.ended_at = call.ended_at or now
    call.finalized_at = now
    begin = call.answered_at or call.started_at
    if call.duration_seconds is None:
        call.duration_seconds = max(0, round((call.ended_at - begin).total_seconds()))
    if error:
        call.error = (call.error + "\n" + error).strip()[:4000]
    if usage is not None:
        call.model = model or call.model
        call.input_audio_tokens += usage.input_audio
        call.input_text_tokens += usage.input_text
        call.input_cached_tokens += usage.input_cached
        call.output_audio_tokens += usage.output_audio
        call.output_text_tokens += usage.output_text
        call.engine = engine or call.engine
        if call.engine == "live":
            voice_cost, backend_cost = usage.voice_cost_usd(call.model), usage.backend_cost_usd()
            call.voice_seconds += Decimal(str(usage.voice_seconds)).quantize(Decimal("0.01"))
            call.supervisor_input_tokens += usage.backend_in
            call.supervisor_output_tokens += usage.backend_out
            call.supervisor_cost_usd += backend_cost
            call.cost_usd += voice_cost + backend_cost
        else:
            call.cost_usd += usage.cost_usd(call.model)
    # Only what finalising sets: a whole-row save would also rewrite the search document with what it read.
    call.save(update_fields=["status", "end_reason", "ended_at", "finalized_at", "duration_seconds", "error",
                             "model", "input_audio_tokens", "input_text_tokens", "input_cached_tokens",
                             "output_audio_tokens", "output_text_tokens", "cost_usd", "engine", "voice_seconds",
                             *(["supervisor_input_tokens", "supervisor_output_tokens", "supervisor_cost_usd"]
                               if call.engine == "live" else [])])
    from calls.postcall.queueing import postcall_enqueue  # the post-call package imports this module

    postcall_enqueue(call.id)  # summary, email, webhook: queued when this transaction commits
    publish_call_changed(call_id=call.id, business_id=call.business_id, status=call.status)  # on commit too
    announce_call_finalized(call.id)  # on commit too: billing records the call's minutes
    count_finalized_call(status=call.status, end_reason=call.end_reason, usage=usage, model=call.model)
    return True


def count_finalized_call(*, status: str, end_reason: str, usage: Usage | None, model: str) -> None:
    """The operator metrics' calls by status and tokens by kind, once the finalising transaction commits (a call
    rolled back is not counted; one finalised twice is refused before this)."""
    tokens = usage.tokens_by_kind() if usage is not None else {}
    cost = usage.cost_by_kind_usd(model) if usage is not None else {}
    tokens = {f"realtime_{kind}": n for kind, n in tokens.items()}
    cost = {f"realtime_{kind}": usd for kind, usd in cost.items()}
    if usage is not None and usage.voice_seconds:  # GPT-Live: active seconds and the backend's tokens
        prices = settings.SUPERVISOR_PRICES.get(settings.OPENAI_DELEGATION_MODEL) or settings.SUPERVISOR_PRICES["default"]
        for key, n in usage.backend_tokens_by_kind().items():
            tokens[f"live_backend_{key}"] = n
            cost[f"live_backend_{key}"] = n * prices[key] / 1_000_000
        cost["live_voice"] = float(usage.voice_cost_usd(model))

    def count() -> None:
        operator_metrics.call_finalized(status=status, end_reason=end_reason)
        operator_metrics.tokens_used(tokens=tokens, cost_usd=cost)

    transaction.on_commit(count)


def announce_call_finalized(call_id: int) -> None:
    """Send `call_finalized` once the current transaction commits (call from `call_finalize`)."""
    def send() -> None:
        # send_robust: a failing receiver neither stops the others nor reaches the path that finalised the call
        # (the sweeps catch up on what it missed).
        for receiver, result in call_finalized.send_robust(sender=Call, call_id=call_id):
            if isinstance(result, Exception):
                log.error("After finalising call %s, %s failed: %s", call_id,
                          getattr(receiver, "__qualname__", receiver), result, exc_info=result)

    transaction.on_commit(send)


# Twilio's CallStatus values at the end of a call, mapped to ours.
TWILIO_FINAL_STATUS = {
    "completed": Call.Status.COMPLETED,
    "busy": Call.Status.FAILED,
    "no-answer": Call.Status.FAILED,
    "canceled": Call.Status.FAILED,
    "failed": Call.Status.FAILED,
}


def call_reconcile_twilio_status(*, twilio_call_sid: str, call_status: str, duration: str | None) -> Call | None:
    """Apply Twilio's status callback. Idempotent; a call the session already finalised keeps its status."""
    call = Call.objects.filter(twilio_call_sid=twilio_call_sid).first()
    if call is None:
        return None
    if call_status == "in-progress" and call.status == Call.Status.RINGING:
        if Call.objects.filter(id=call.id, status=Call.Status.RINGING).update(status=Call.Status.IN_PROGRESS,
                                                                             answered_at=timezone.now()):
            publish_call_changed(call_id=call.id, business_id=call.business_id, status=Call.Status.IN_PROGRESS)
    final = TWILIO_FINAL_STATUS.get(call_status)
    if final is None:
        return call
    seconds = int(duration) if duration and duration.isdigit() else None
    if seconds is not None:
        # Twilio's billed duration is the authority on how long the caller was connected; kept apart too, so
        # billing knows it has arrived (a call finalised before it is billed once it comes).
        Call.objects.filter(id=call.id).update(duration_seconds=seconds, twilio_duration_seconds=seconds)
        if call.duration_seconds != seconds:
            publish_call_changed(call_id=call.id, business_id=call.business_id, status=call.status)
    if call.stream_started_at is None:
        # The stream never connected (caller hung up while ringing, or the socket never opened): nobody
        # else will finalise this call. A call with a stream is finalised by its session, with its usage.
        call_finalize(call_id=call.id, status=Call.Status.FAILED, end_reason=f"twilio_{call_status.replace('-', '_')}",
                      error="The media stream never connected.")
    call.refresh_from_db()
    return call
