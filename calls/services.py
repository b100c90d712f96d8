"""Writes for calls: creation, the stream start, recording, finalisation and reconciliation; customers,
appointments and messages."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Business
from accounts.phone import normalize_e164
from calls.live import publish_call_changed
from calls.models import Appointment, Call, CallEvent, Customer, Message, TranscriptEntry
from calls.selectors import availability, local_time, search
from calls.signals import call_finalized

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


# --- the dashboard's search document --------------------------------------------------------------------------

def _search_config_sql() -> str:
    """The business's text search configuration (stemming, stop words), as SQL over `b.language`."""
    cases = " ".join(f"WHEN '{code}' THEN '{config}'" for code, config in sorted(search.SEARCH_CONFIGS.items()))
    return f"(CASE b.language {cases} ELSE 'simple' END)::regconfig"


# The call's own columns its search document is built from (with its transcript): whatever changes one of them
# refreshes the document (the operator's admin checks its edits against this).
CALL_SEARCH_FIELDS = ("from_number", "caller_name", "summary", "reason")

# One statement rebuilds a call's document from what is stored, so every writer (the session's flushes, the
# post-call summary, call creation) can run it any number of times with the same result. The caller's digits
# also go in as every suffix of 4+ digits ('simple' config, no stemming), so a prefix query on any run of the
# number ("5552671", "415555") finds it. The transcript is capped: a tsvector must stay under 1 MB.
SEARCH_REFRESH_SQL = f"""
UPDATE {Call._meta.db_table} AS c SET search_vector =
    to_tsvector({_search_config_sql()}, concat_ws(' ', {', '.join(f'c.{name}' for name in CALL_SEARCH_FIELDS)},
        left((SELECT string_agg(t.text, ' ' ORDER BY t."order") FROM {TranscriptEntry._meta.db_table} AS t
              WHERE t.call_id = c.id), 200000)))
    || to_tsvector('simple', coalesce((
        SELECT string_agg(substr(d.digits, i), ' ')
        FROM (SELECT regexp_replace(c.from_number, '[^0-9]', '', 'g') AS digits) AS d,
             generate_series(1, length(d.digits) - 3) AS i), ''))
FROM {Business._meta.db_table} AS b
WHERE b.id = c.business_id AND c.id = %s
"""


def call_search_refresh(*, call_id: int) -> None:
    """Rebuild the call's full-text search document (PostgreSQL; SQLite searches the columns directly): after
    whatever may change or remove words (the summary, an operator's edit)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(SEARCH_REFRESH_SQL, [call_id])


# Appends words said on a live call to its document, reading nothing but the call and its business. It stops
# growing near the size where a rebuild would cap the transcript anyway (a tsvector must stay under 1 MB); the
# rebuild after the summary applies the same cap as always.
SEARCH_APPEND_SQL = f"""
UPDATE {Call._meta.db_table} AS c SET search_vector =
    coalesce(c.search_vector, ''::tsvector) || to_tsvector({_search_config_sql()}, left(%s, 200000))
FROM {Business._meta.db_table} AS b
WHERE b.id = c.business_id AND c.id = %s AND coalesce(pg_column_size(c.search_vector), 0) < 600000
"""


def call_search_append(*, call_id: int, texts: list[str]) -> None:
    """Add newly said words to the call's search document, so a live call is findable by them at once."""
    text = " ".join(t for t in texts if t)
    if connection.vendor != "postgresql" or not text:
        return
    with connection.cursor() as cursor:
        cursor.execute(SEARCH_APPEND_SQL, [text, call_id])


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


def call_events_add(*, call_id: int, events: list[dict[str, Any]]) -> list[CallEvent]:
    """Store events of a call (dicts of offset_ms, kind, payload, optionally created_at), numbered in the given
    order from the call's one event sequence.

    Each writer takes a block of orders by bumping `Call.last_event_order` in the transaction that inserts its
    events: the row lock makes concurrent writers (the session's flush, the supervisor, a Twilio callback) take
    disjoint blocks, and a rolled-back write gives its block up with it."""
    if not events:
        return []
    with transaction.atomic():
        Call.objects.filter(id=call_id).update(last_event_order=F("last_event_order") + len(events))
        last = Call.objects.filter(id=call_id).values_list("last_event_order", flat=True).get()
        first = last - len(events) + 1
        fields = {"offset_ms", "kind", "payload", "created_at"}
        return CallEvent.objects.bulk_create(
            [CallEvent(call_id=call_id, order=first + i, **{k: v for k, v in event.items() if k in fields})
             for i, event in enumerate(events)])


def call_record_entries(*, call_id: int, record: CallRecord) -> None:
    """Append transcript entries (numbered by the session) and events (numbered here, from the call's sequence),
    all or nothing: a failed write leaves nothing behind, so the session can send the same batch again.

    The search document gets the new entries' words appended, not rebuilt from the whole transcript (a flush a
    second over a long call would otherwise re-read and re-index everything said so far, each time)."""
    with transaction.atomic():
        if record.events:
            call_events_add(call_id=call_id, events=record.events)  # the call row first: one lock order
        if record.transcripts:
            TranscriptEntry.objects.bulk_create(
                [TranscriptEntry(call_id=call_id, **entry) for entry in record.transcripts], ignore_conflicts=True)
            call_search_append(call_id=call_id, texts=[entry["text"] for entry in record.transcripts])


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
    from calls.postcall.queueing import postcall_enqueue  # the post-call package imports this module

    postcall_enqueue(call.id)  # summary, email, webhook: queued when this transaction commits
    publish_call_changed(call_id=call.id, business_id=call.business_id, status=call.status)  # on commit too
    announce_call_finalized(call.id)  # on commit too: billing records the call's minutes
    return True


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


# --- forwards to the business's transfer number (<Dial>) ----------------------------------------------------

def call_forward_start(*, twilio_call_sid: str, number: str) -> bool:
    """Note that a <Dial> to `number` is about to be emitted for the call: its usage waits for the outcome."""
    return Call.objects.filter(twilio_call_sid=twilio_call_sid, forward_status=Call.ForwardStatus.NONE).update(
        forwarded_to=number[:16], forward_status=Call.ForwardStatus.DIALING) == 1


def call_forward_cancel(*, twilio_call_sid: str) -> None:
    """The <Dial> never reached Twilio (the redirect failed): nothing is pending any more."""
    Call.objects.filter(twilio_call_sid=twilio_call_sid, forward_status=Call.ForwardStatus.DIALING).update(
        forward_status=Call.ForwardStatus.NONE)


FORWARD_FAILURE_TEXT = {
    Call.ForwardStatus.BUSY: "the line was busy",
    Call.ForwardStatus.NO_ANSWER: "nobody answered",
    Call.ForwardStatus.FAILED: "the call could not be connected",
    Call.ForwardStatus.CANCELED: "the call was cancelled before anyone answered",
}


@dataclass(frozen=True)
class ForwardOutcome:
    call: Call
    answered: bool
    message_taken: bool  # a Message for the team exists for this failed forward


def _callback_number(call: Call) -> str:
    try:
        return normalize_e164(call.from_number)
    except ValidationError:
        return ""  # withheld ("anonymous"), a client identifier, or garbage


def call_forward_result(*, twilio_call_sid: str, dial_status: str, dial_duration: str | None) -> ForwardOutcome | None:
    """Apply Twilio's report on how the call's <Dial> ended (its `action` callback), once.

    An answered forward adds its connected seconds to the call (billed with it); one nobody answered leaves a
    Message for the team with the caller's number. A repeated report changes nothing and says the same.
    """
    if dial_status in ("completed", "answered"):  # "answered" is what a conference reports
        status = Call.ForwardStatus.COMPLETED
    elif dial_status in FORWARD_FAILURE_TEXT:
        status = Call.ForwardStatus(dial_status)
    else:  # a value Twilio did not document: nobody was reached
        status = Call.ForwardStatus.FAILED
    answered = status == Call.ForwardStatus.COMPLETED
    seconds = int(dial_duration) if dial_duration and dial_duration.isdigit() else 0
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(twilio_call_sid=twilio_call_sid).first()
        if call is None:
            return None
        callback = _callback_number(call)
        if call.forward_status not in (Call.ForwardStatus.NONE, Call.ForwardStatus.DIALING):
            answered = call.forward_status == Call.ForwardStatus.COMPLETED
            return ForwardOutcome(call=call, answered=answered, message_taken=not answered and bool(callback))
        call.forward_status = status
        call.forwarded_seconds = seconds
        call.save(update_fields=["forward_status", "forwarded_seconds"])
        now = timezone.now()
        call_events_add(call_id=call.id, events=[dict(
            kind=CallEvent.Kind.TRANSFER,
            offset_ms=max(0, int((now - (call.answered_at or call.started_at)).total_seconds() * 1000)),
            payload={"ok": answered, "to": call.forwarded_to, "step": "outcome", "status": status,
                     "connected_seconds": seconds,
                     **({"reason": f"answered, {seconds} s connected"} if answered else
                        {"error": FORWARD_FAILURE_TEXT[status] + ("; a message was left for the team" if callback
                                                                   else "; the caller's number is withheld")})})])
        if not answered and callback:
            customer = customer_get_or_create(business=call.business, phone=callback)
            Message.objects.create(
                business_id=call.business_id, customer=customer, call=call,
                name=(call.caller_name or customer.name or "Caller")[:120], callback_number=callback,
                body=(f"The caller was being put through to a person at {call.forwarded_to or 'the transfer number'}, "
                      f"but {FORWARD_FAILURE_TEXT[status]}. Nobody from the team has spoken to them: please call "
                      "them back."))
    publish_call_changed(call_id=call.id, business_id=call.business_id, status=call.status)
    return ForwardOutcome(call=call, answered=answered, message_taken=not answered and bool(callback))


# --- customers, appointments and messages (the receptionist's tools write through these) -------------------

class ActionError(Exception):
    """An action that can't be done as asked; str(error) is a sentence the model can act on."""


class NotFound(ActionError):
    pass


class SlotTaken(ActionError):
    """Another booked appointment overlaps the requested time (found by the re-check or the database)."""


OVERLAP_CONSTRAINT = "appointment_no_overlap"
SLOT_TAKEN_MESSAGE = "That time was just taken."
# One answer for an id that is missing, another business's, or another caller's: ids can't be probed.
NOT_THE_CALLERS_APPOINTMENT = (
    "No booking with that appointment_id is held under the number the caller is calling from, so it can't be "
    "changed on this call. Use find_appointments to see the caller's own bookings. If they mean a booking made "
    "under another number or for someone else, don't look for it: offer to take a message so the team can help.")


def _phone_or_error(phone: str, what: str = "phone number") -> str:
    try:
        normalized = normalize_e164(phone)
    except ValidationError as exc:
        raise ActionError(f"The {what} is not valid: {exc.messages[0]}") from exc
    if not normalized:
        raise ActionError(f"A {what} is needed, in international format like +14155552671.")
    return normalized


def _locked_business(business_id: int) -> Business:
    """Lock the business row (call inside a transaction): bookings of one business queue behind each other.

    SQLite has no row locks and takes its single write lock at a transaction's first write, so there a no-op
    write comes first; a concurrent booking then waits for this one instead of failing with "database is locked".
    """
    if connection.vendor == "sqlite":
        Business.objects.filter(id=business_id).update(updated_at=F("updated_at"))
    business = Business.objects.select_for_update().filter(id=business_id).first()
    if business is None:
        raise NotFound("This business no longer exists.")
    return business


def _check_bookable(*, business: Business, starts_at: datetime, ends_at: datetime, now: datetime,
                    exclude_appointment_id: int | None = None) -> None:
    if starts_at <= now:
        raise ActionError("That time is in the past. Choose a time later than now "
                          f"({local_time.format_local(now, business)} local time).")
    if not availability.fits_opening_hours(business=business, starts_at=starts_at, ends_at=ends_at):
        raise ActionError("That time is outside the opening hours (the whole appointment must fit in them). "
                          "Use check_availability to find a free time.")
    if availability.booked_between(business=business, starts_at=starts_at, ends_at=ends_at,
                                   exclude_appointment_id=exclude_appointment_id):
        raise SlotTaken(SLOT_TAKEN_MESSAGE)


def customer_count_call(*, business_id: int, phone: str, call_id: int | None) -> str:
    """Count a call in its caller's Customer record, creating it for a first call; returns the E.164 number
    counted ("" for a withheld or invalid number: nothing is recorded). Idempotent per call: counting the same
    call again neither counts it twice nor fails. A returning caller (most calls) costs one write."""
    try:
        phone = normalize_e164(phone)
    except ValidationError:
        return ""
    if not phone:
        return ""
    now = timezone.now()
    uncounted = Customer.objects.filter(business_id=business_id, phone=phone)
    if call_id is not None:
        uncounted = uncounted.exclude(last_call_id=call_id)
    if uncounted.update(call_count=F("call_count") + 1, last_call_id=call_id, last_seen_at=now):
        return phone
    _, created = Customer.objects.get_or_create(
        business_id=business_id, phone=phone,
        defaults={"first_seen_at": now, "last_seen_at": now, "call_count": 1, "last_call_id": call_id})
    if not created:  # counted already, or another process created the customer in between (then count it)
        uncounted.update(call_count=F("call_count") + 1, last_call_id=call_id, last_seen_at=now)
    return phone


def customer_record_call(*, business_id: int, phone: str, call_id: int | None) -> Customer | None:
    """`customer_count_call`, returning the caller's Customer (None for a withheld or invalid number)."""
    phone = customer_count_call(business_id=business_id, phone=phone, call_id=call_id)
    return Customer.objects.get(business_id=business_id, phone=phone) if phone else None


def customer_get_or_create(*, business: Business, phone: str, name: str = "", rename: bool = False) -> Customer:
    """The customer with that E.164 number, created with `name` if new. An existing customer's name is set when
    it was blank, or replaced when `rename` is true."""
    customer, created = Customer.objects.get_or_create(business=business, phone=phone, defaults={"name": name})
    if not created and name and (rename or not customer.name) and customer.name != name:
        customer.name = name
        customer.save(update_fields=["name"])
    return customer


def appointment_book(*, business_id: int, service_name: str, customer_name: str, phone: str, start: datetime,
                     notes: str = "", call_id: int | None = None, now: datetime | None = None) -> Appointment:
    """Book `service_name` at `start` (aware) for the customer with that phone number (created or renamed).

    Bookings of one business are serialised by a lock on its row and re-checked inside it; on PostgreSQL the
    exclusion constraint backs that up. A time that overlaps a booked appointment raises SlotTaken.
    """
    customer_name = customer_name.strip()
    if not customer_name:
        raise ActionError("The caller's name is needed to book. Ask for it.")
    phone = _phone_or_error(phone)
    now = now or timezone.now()
    try:
        with transaction.atomic():
            business = _locked_business(business_id)
            service = availability.service_by_name(business=business, name=service_name)
            if service is None:
                raise ActionError(availability.unknown_service_message(business=business, name=service_name))
            starts_at = start.astimezone(dt_timezone.utc)
            ends_at = starts_at + timedelta(minutes=service.duration_minutes)
            _check_bookable(business=business, starts_at=starts_at, ends_at=ends_at, now=now)
            customer = customer_get_or_create(business=business, phone=phone, name=customer_name, rename=True)
            return Appointment.objects.create(
                business=business, customer=customer, service=service, service_name=service.name,
                starts_at=starts_at, ends_at=ends_at, notes=notes.strip(), created_by_call_id=call_id)
    except IntegrityError as exc:
        if OVERLAP_CONSTRAINT in str(exc):  # a write that skipped the lock (admin, another code path)
            raise SlotTaken(SLOT_TAKEN_MESSAGE) from exc
        raise


def _appointment_for_update(*, business_id: int, appointment_id: int, customer_phone: str | None) -> Appointment:
    """The appointment, locked; with `customer_phone`, only if it is that customer's (else the same NotFound
    whether the id exists or not)."""
    rows = Appointment.objects.select_for_update(of=("self",)).filter(business_id=business_id, id=appointment_id)
    if customer_phone is not None:
        rows = rows.filter(customer__phone=customer_phone) if customer_phone else rows.none()
    appointment = rows.first()
    if appointment is None:
        if customer_phone is not None:
            raise NotFound(NOT_THE_CALLERS_APPOINTMENT)
        raise NotFound(f"There is no appointment {appointment_id}. Use find_appointments to look it up.")
    return appointment


def appointment_reschedule(*, business_id: int, appointment_id: int, start: datetime,
                           customer_phone: str | None = None, now: datetime | None = None) -> Appointment:
    """Move a booked, future appointment to `start`, keeping its id and length. Raises SlotTaken on overlap.

    With `customer_phone` (a caller's own number) only that customer's appointment can be moved."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            business = _locked_business(business_id)
            appointment = _appointment_for_update(business_id=business.id, appointment_id=appointment_id,
                                                  customer_phone=customer_phone)
            if appointment.status != Appointment.Status.BOOKED:
                raise ActionError(f"That appointment is {appointment.get_status_display().lower()}, so it can't "
                                  "be moved. Book a new one instead.")
            if appointment.starts_at <= now:
                raise ActionError("That appointment has already started or is over, so it can't be moved.")
            starts_at = start.astimezone(dt_timezone.utc)
            ends_at = starts_at + (appointment.ends_at - appointment.starts_at)
            _check_bookable(business=business, starts_at=starts_at, ends_at=ends_at, now=now,
                            exclude_appointment_id=appointment.id)
            appointment.starts_at, appointment.ends_at = starts_at, ends_at
            appointment.save(update_fields=["starts_at", "ends_at", "updated_at"])
            return appointment
    except IntegrityError as exc:
        if OVERLAP_CONSTRAINT in str(exc):
            raise SlotTaken(SLOT_TAKEN_MESSAGE) from exc
        raise


@transaction.atomic
def appointment_cancel(*, business_id: int, appointment_id: int, customer_phone: str | None = None,
                       now: datetime | None = None) -> Appointment:
    """Cancel a booked, future appointment. Cancelling a cancelled one returns it unchanged (idempotent).

    With `customer_phone` (a caller's own number) only that customer's appointment can be cancelled."""
    now = now or timezone.now()
    appointment = _appointment_for_update(business_id=business_id, appointment_id=appointment_id,
                                          customer_phone=customer_phone)
    if appointment.status == Appointment.Status.CANCELLED:
        return appointment
    if appointment.status != Appointment.Status.BOOKED:
        raise ActionError(f"That appointment is {appointment.get_status_display().lower()}; it can't be cancelled.")
    if appointment.starts_at <= now:
        raise ActionError("That appointment has already started or is over, so it can't be cancelled.")
    appointment.status = Appointment.Status.CANCELLED
    appointment.cancelled_at = now
    appointment.save(update_fields=["status", "cancelled_at", "updated_at"])
    return appointment


def message_take(*, business_id: int, call_id: int | None, caller_number: str, name: str, callback_number: str,
                 body: str, urgency: str = Message.Urgency.NORMAL) -> Message:
    """Save a message for the team to call `callback_number` back.

    It is linked to the caller's own customer record (`caller_number`, created if new, named only if it had no
    name). A caller can give any callback number, so that number's customer record is never created or changed:
    when the caller's number is withheld the message is linked to it only if it already exists, as it is.
    """
    name, body = name.strip(), body.strip()
    if not name:
        raise ActionError("The caller's name is needed for the message. Ask for it.")
    if not body:
        raise ActionError("The message is empty. Ask what the caller wants to tell the team.")
    if urgency not in Message.Urgency.values:
        raise ActionError(f"urgency must be one of: {', '.join(Message.Urgency.values)}.")
    callback_number = _phone_or_error(callback_number, "callback number")
    business = Business.objects.filter(id=business_id).first()
    if business is None:
        raise NotFound("This business no longer exists.")
    with transaction.atomic():
        if caller_number:
            customer = customer_get_or_create(business=business, phone=caller_number, name=name)
        else:
            customer = Customer.objects.filter(business=business, phone=callback_number).first()
        return Message.objects.create(business=business, customer=customer, call_id=call_id, name=name,
                                      callback_number=callback_number, body=body, urgency=urgency)


# --- per-business post-call settings ------------------------------------------------------------------------

@transaction.atomic
def notification_settings_save(*, business: Business, email_mode: str, webhook_url: str,
                               rotate_secret: bool = False) -> tuple[Any, str]:
    """Save the email switch and the webhook URL. Returns (endpoint or None, the new secret if one was made)."""
    from calls.models import NotificationSettings, WebhookEndpoint
    from calls.postcall.webhooks import webhook_secret_new

    NotificationSettings.objects.update_or_create(business=business, defaults={"email_mode": email_mode})
    endpoint = WebhookEndpoint.objects.select_for_update().filter(business=business).first()
    if not webhook_url:
        if endpoint is not None and endpoint.is_active:
            endpoint.is_active = False
            endpoint.save(update_fields=["is_active", "updated_at"])
        return endpoint, ""
    if endpoint is None:
        secret = webhook_secret_new()
        endpoint = WebhookEndpoint.objects.create(business=business, url=webhook_url, secret=secret)
        return endpoint, secret
    secret = webhook_secret_new() if rotate_secret or not endpoint.secret else ""
    endpoint.url, endpoint.is_active = webhook_url, True
    if secret:
        endpoint.secret = secret
    endpoint.save()
    return endpoint, secret


# --- dashboard: messages ------------------------------------------------------------------------------------

def message_mark_handled(*, business_id: int, message_id: int, user: Any, now: datetime | None = None) -> Message:
    """Mark an open message handled by `user`, now. Idempotent: a handled message keeps who handled it and when.

    One compare-and-set UPDATE writes status and handled_at together, as the table's check constraint requires,
    so two people pressing the button at once record only the first.
    """
    Message.objects.filter(business_id=business_id, id=message_id, status=Message.Status.OPEN).update(
        status=Message.Status.HANDLED, handled_at=now or timezone.now(), handled_by=user)
    return _message_of_business(business_id=business_id, message_id=message_id)


def message_reopen(*, business_id: int, message_id: int) -> Message:
    """Put a handled message back in the open list, forgetting who handled it. Idempotent."""
    Message.objects.filter(business_id=business_id, id=message_id, status=Message.Status.HANDLED).update(
        status=Message.Status.OPEN, handled_at=None, handled_by=None)
    return _message_of_business(business_id=business_id, message_id=message_id)


def _message_of_business(*, business_id: int, message_id: int) -> Message:
    message = Message.objects.filter(business_id=business_id, id=message_id).first()
    if message is None:
        raise NotFound(f"There is no message {message_id}.")
    return message
