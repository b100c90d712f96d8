"""Writes for calls: creation, the stream start, recording, finalisation and reconciliation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Business
from calls.models import Call, CallEvent, TranscriptEntry

log = logging.getLogger(__name__)


def call_create_inbound(*, business: Business, twilio_call_sid: str, from_number: str, to_number: str) -> Call:
    """Record a ringing inbound call. A webhook retried by Twilio returns the call it already made."""
    call, _ = Call.objects.get_or_create(
        twilio_call_sid=twilio_call_sid,
        defaults={"business": business, "from_number": from_number[:32], "to_number": to_number[:32],
                  "channel": Call.Channel.TWILIO, "direction": Call.Direction.INBOUND},
    )
    return call


def call_create_browser(*, business: Business, user_label: str) -> Call:
    return Call.objects.create(business=business, channel=Call.Channel.BROWSER, from_number=user_label[:32],
                               to_number=business.phone_number)


def call_claim_stream(*, call_id: int) -> bool:
    """Mark the call's media stream as started; False if a stream already used this call's token."""
    now = timezone.now()
    claimed = Call.objects.filter(id=call_id, stream_started_at__isnull=True, finalized_at__isnull=True).update(
        stream_started_at=now, answered_at=now, status=Call.Status.IN_PROGRESS)
    return claimed == 1


@dataclass
class Usage:
    """Token counts of one call, summed from the model's `response.done` usage objects."""

    input_audio: int = 0
    input_text: int = 0
    input_cached: int = 0
    cached_audio: int = 0
    cached_text: int = 0
    output_audio: int = 0
    output_text: int = 0

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

    def cost_usd(self, model: str) -> Decimal:
        """Price from the per-model table in settings (USD per million tokens); cached tokens are a subset."""
        prices = settings.REALTIME_PRICES.get(model) or settings.REALTIME_PRICES["default"]
        total = (
            (self.input_text - self.cached_text) * prices["text_in"]
            + self.cached_text * prices["text_cached"]
            + (self.input_audio - self.cached_audio) * prices["audio_in"]
            + self.cached_audio * prices["audio_cached"]
            + self.output_text * prices["text_out"]
            + self.output_audio * prices["audio_out"]
        )
        return (Decimal(str(total)) / Decimal(1_000_000)).quantize(Decimal("0.000001"))


@dataclass
class CallRecord:
    """What a call session collected, written in one go off the audio path."""

    transcripts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def call_record_entries(*, call_id: int, record: CallRecord) -> None:
    """Append transcript entries and events (already numbered by the session)."""
    if record.transcripts:
        TranscriptEntry.objects.bulk_create(
            [TranscriptEntry(call_id=call_id, **entry) for entry in record.transcripts], ignore_conflicts=True)
    if record.events:
        CallEvent.objects.bulk_create([CallEvent(call_id=call_id, **event) for event in record.events])


@transaction.atomic
def call_finalize(*, call_id: int, status: str, end_reason: str, usage: Usage | None = None,
                  model: str = "", error: str = "") -> bool:
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
        call.cost_usd += usage.cost_usd(call.model)
    call.save()
    return True


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
        Call.objects.filter(id=call.id, status=Call.Status.RINGING).update(status=Call.Status.IN_PROGRESS,
                                                                          answered_at=timezone.now())
    final = TWILIO_FINAL_STATUS.get(call_status)
    if final is None:
        return call
    seconds = int(duration) if duration and duration.isdigit() else None
    if seconds is not None:
        # Twilio's billed duration is the authority on how long the caller was connected.
        Call.objects.filter(id=call.id).update(duration_seconds=seconds)
    if call.stream_started_at is None:
        # The stream never connected (caller hung up while ringing, or the socket never opened): nobody
        # else will finalise this call. A call with a stream is finalised by its session, with its usage.
        call_finalize(call_id=call.id, status=Call.Status.FAILED, end_reason=f"twilio_{call_status.replace('-', '_')}",
                      error="The media stream never connected.")
    call.refresh_from_db()
    return call
