"""Usage: what a finished call counts against the allowance and bills, its usage record, the report to Polar
(at least once, never a second charge) and the sweep that catches up on what was missed."""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from billing import polar_client
from billing.models import UsageRecord
from calls.models import Call

log = logging.getLogger(__name__)


def billable_seconds(call: Call) -> int:
    """Phone calls: the time the receptionist answered (its media stream connected) plus the connected time of a
    forward to the business's transfer number, which the operator pays Twilio for too (also when billing refused
    the call and forwarded it). Browser test calls are free."""
    if call.channel != Call.Channel.TWILIO:
        return 0
    answered = 0
    if call.stream_started_at is not None:
        answered = call.duration_seconds or 0
        if call.forward_status and call.answered_at and call.ended_at:
            # Twilio's duration of a forwarded call also covers the forward, which is counted from the <Dial>'s
            # own report; the receptionist's part ended when the session handed the call over.
            answered = max(0, round((call.ended_at - call.answered_at).total_seconds()))
    return answered + call.forwarded_seconds


def counted_seconds(call: Call) -> int:
    """What the call spends of an allowance: a phone call what Polar bills (forwards included), a browser test
    call its answered time (test calls spend free trial minutes, see `selectors.counted_usage`)."""
    if call.channel == Call.Channel.TWILIO:
        return billable_seconds(call)
    return (call.duration_seconds or 0) if call.stream_started_at is not None else 0


def billed_minutes(seconds: int) -> int:
    """Per call, rounded up to the next whole minute: 61 s bills 2 minutes, 0 s bills nothing."""
    return math.ceil(seconds / 60)


def awaits_twilio_duration(call: Call) -> bool:
    """A phone call the receptionist answered is billed by Twilio's duration, which Twilio's status callback
    brings, usually before the session has finalised the call, sometimes after. Until it comes (or SWEEP_GRACE
    passes without it) the call's record holds the session's own measure and is not reported yet. A forwarded
    call is billed by our clock plus the <Dial>'s own report (see `billable_seconds`), so it never waits for it."""
    return (call.channel == Call.Channel.TWILIO and call.stream_started_at is not None
            and call.forward_status == Call.ForwardStatus.NONE and call.twilio_duration_seconds is None)


def usage_record_for_call(*, call_id: int, forward_overdue: bool = False) -> UsageRecord | None:
    """The usage record of a finalised call: one per call, written when the call is finalised (the
    `call_finalized` hook; the sweep catches any it missed) and brought up to date when Twilio's duration or the
    forward's report comes later. Idempotent.

    The record counts against the allowance at once, and is reported to Polar after commit once its length is
    final: Twilio's duration has arrived, or SWEEP_GRACE passed without it (then the sweep sends the session's
    measure). A record Polar already has is never changed or sent again: a Polar event can't be amended, and a
    second event would be a second charge; a different duration arriving after that is logged, and the call
    row keeps it.

    A call still forwarded to its transfer number waits for the <Dial>'s report (its minutes are billed with the
    call), unless `forward_overdue`: the report never came, so the call is billed without them.
    """
    with transaction.atomic():
        # The call row's lock serialises the finalisation hook, Twilio's callbacks and the sweep on this call.
        call = Call.objects.select_for_update().filter(id=call_id, finalized_at__isnull=False).first()
        if call is None:
            return None
        if call.forward_status == Call.ForwardStatus.DIALING and not forward_overdue:
            return UsageRecord.objects.filter(call=call).first()
        seconds = counted_seconds(call)
        minutes = billed_minutes(seconds)
        billable = billable_seconds(call) > 0
        record = UsageRecord.objects.filter(call=call).first()
        if record is None:
            record = UsageRecord.objects.create(
                call=call, business_id=call.business_id, external_id=f"call_{call.id}", seconds=seconds,
                minutes=minutes, occurred_at=call.ended_at or call.finalized_at,
                status=UsageRecord.Status.PENDING if billable else UsageRecord.Status.NOT_BILLABLE)
        else:
            _usage_reconcile(record, seconds=seconds, minutes=minutes, billable=billable)
        waited_enough = call.finalized_at <= timezone.now() - SWEEP_GRACE  # Twilio's callback is not coming
        send_now = (record.status == UsageRecord.Status.PENDING and record.attempts == 0
                    and (waited_enough or not awaits_twilio_duration(call)))
    if send_now:
        enqueue_usage_report(record.id)
    return record


def _usage_reconcile(record: UsageRecord, *, seconds: int, minutes: int, billable: bool) -> None:
    """Bring a record not yet in Polar up to date with what is known of its call now."""
    if record.status == UsageRecord.Status.SENT:
        if record.seconds != seconds:
            log.warning("Call %s now counts %s s, but Polar already has %s s (%s min) for it and keeps them: an "
                        "event can't be amended, and a second one would be a second charge.",
                        record.call_id, seconds, record.seconds, record.minutes)
        return
    status = record.status
    if not billable:
        status = UsageRecord.Status.NOT_BILLABLE
    elif status == UsageRecord.Status.NOT_BILLABLE:
        status = UsageRecord.Status.PENDING  # e.g. a forward's report came after the call was billed without it
    if (record.seconds, record.minutes, record.status) != (seconds, minutes, status):
        UsageRecord.objects.filter(id=record.id).update(seconds=seconds, minutes=minutes, status=status)
        record.seconds, record.minutes, record.status = seconds, minutes, status


def usage_on_call_finalized(sender: Any, *, call_id: int, **kwargs: Any) -> None:
    """Receiver of `calls.signals.call_finalized` (connected in `BillingConfig.ready`): record the minutes."""
    usage_record_for_call(call_id=call_id)


def enqueue_usage_report(record_id: int) -> None:
    """Report after commit. Without Polar credentials the record stays pending until they are set (the sweep)."""
    from billing.tasks import report_usage

    if not polar_client.is_configured():
        return
    transaction.on_commit(lambda: report_usage.delay(record_id), robust=True)  # a broker hiccup: the sweep resends


UNSENT = (UsageRecord.Status.PENDING, UsageRecord.Status.FAILED)


def usage_report(*, record_id: int) -> str:
    """Send one record to Polar. At least once: a retry resends the same external_id, which Polar counts as a
    duplicate, never a second charge. Raises `PolarUnavailable` for the task to retry. Gives the record up
    (`gave_up`, with the reason, never resent by itself) when Polar refuses it (a 4xx other than 429: sending it
    again won't help) or after BILLING_USAGE_MAX_ATTEMPTS attempts."""
    record = UsageRecord.objects.select_related("business").filter(id=record_id).first()
    if record is None or record.status not in UNSENT:
        return "nothing_to_do"
    if record.attempts >= settings.BILLING_USAGE_MAX_ATTEMPTS:
        _usage_give_up(record, f"Gave up after {record.attempts} attempts; the last error: {record.last_error}")
        return "gave_up"
    UsageRecord.objects.filter(id=record.id).update(attempts=F("attempts") + 1, last_attempt_at=timezone.now())
    try:
        inserted, duplicates = polar_client.ingest_call_minutes(
            external_customer_id=str(record.business.uuid), external_id=record.external_id, minutes=record.minutes,
            seconds=record.seconds, call_id=record.call_id, timestamp=record.occurred_at.isoformat())
    except polar_client.PolarFailure as exc:
        if exc.permanent:
            _usage_give_up(record, str(exc))
            return "rejected"
        if record.attempts + 1 >= settings.BILLING_USAGE_MAX_ATTEMPTS:
            _usage_give_up(record, f"Gave up after {record.attempts + 1} attempts; the last error: {exc}")
            return "gave_up"
        UsageRecord.objects.filter(id=record.id, status__in=UNSENT).update(
            status=UsageRecord.Status.PENDING, last_error=str(exc)[:2000])
        raise
    # What Polar now has: these values, even if a late duration changed the row while the request was out.
    UsageRecord.objects.filter(id=record.id).update(
        status=UsageRecord.Status.SENT, seconds=record.seconds, minutes=record.minutes, reported_at=timezone.now(),
        last_error="")
    return "duplicate" if duplicates and not inserted else "sent"


def _usage_give_up(record: UsageRecord, reason: str) -> None:
    UsageRecord.objects.filter(id=record.id, status__in=UNSENT).update(
        status=UsageRecord.Status.GAVE_UP, last_error=reason[:2000])
    log.error("Usage of call %s (%s min, record %s) will not be sent to Polar again by itself: %s. Fix the cause, "
              "then use the admin's \"Send again to Polar\".", record.call_id, record.minutes, record.id, reason)


def usage_mark_failed(*, record_id: int, error: str) -> None:
    """The task's retries are spent on transient errors: the sweep sends it again later (bounded)."""
    UsageRecord.objects.filter(id=record_id, status__in=UNSENT).update(
        status=UsageRecord.Status.FAILED, last_error=error[:2000])


def usage_send_again(*, record_ids: list[int]) -> int:
    """The operator's retry of records that were given up or failed: a fresh count of attempts, sent now."""
    retry = list(UsageRecord.objects.filter(
        id__in=record_ids, status__in=[UsageRecord.Status.GAVE_UP, UsageRecord.Status.FAILED])
        .values_list("id", flat=True))
    UsageRecord.objects.filter(id__in=retry).update(status=UsageRecord.Status.PENDING, attempts=0)
    for record_id in retry:
        enqueue_usage_report(record_id)
    return len(retry)


SWEEP_GRACE = dt.timedelta(minutes=2)  # let the status callback (Twilio's final duration) arrive first
# A record attempted more recently than this may still be in a task's retries (backoff of up to 10 minutes).
SWEEP_RESEND_AFTER = dt.timedelta(minutes=15)
SWEEP_BATCH = 500


def usage_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Catch up on usage a missed hook, callback or an outage left behind: record finished calls that have no
    record, and re-send records not yet in Polar (same external_id, so never double-billed). Records given up
    (Polar refused them, or their attempts ran out) are left alone."""
    now = now or timezone.now()
    cutoff = now - SWEEP_GRACE
    missing = list(Call.objects.filter(finalized_at__lte=cutoff, usage_record__isnull=True)
                   .exclude(forward_status=Call.ForwardStatus.DIALING)
                   .order_by("finalized_at").values_list("id", flat=True)[:SWEEP_BATCH])
    for call_id in missing:
        usage_record_for_call(call_id=call_id)
    # A forward whose report never came (it cannot outlast the <Dial>'s time limit): bill what is known.
    forward_cutoff = cutoff - dt.timedelta(minutes=settings.TRANSFER_TIME_LIMIT_MINUTES, seconds=60)
    overdue = list(Call.objects.filter(finalized_at__lte=forward_cutoff, usage_record__isnull=True,
                                       forward_status=Call.ForwardStatus.DIALING)
                   .order_by("finalized_at").values_list("id", flat=True)[:SWEEP_BATCH])
    for call_id in overdue:
        usage_record_for_call(call_id=call_id, forward_overdue=True)
    stuck = list(UsageRecord.objects.filter(status__in=UNSENT, created_at__lte=cutoff)
                 .filter(Q(last_attempt_at__isnull=True) | Q(last_attempt_at__lte=now - SWEEP_RESEND_AFTER))
                 .order_by("created_at").values_list("id", flat=True)[:SWEEP_BATCH])
    for record_id in stuck:
        enqueue_usage_report(record_id)
    return {"recorded": len(missing) + len(overdue), "resent": len(stuck)}
