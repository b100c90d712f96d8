"""Writes for billing: the billing state (from Polar's webhooks), the call gate, usage reporting, checkout/portal."""

from __future__ import annotations

import datetime as dt
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Business, Membership
from accounts.transfers import allowed_transfer_number
from billing import polar_client
from billing.models import BillingAccount, PolarWebhookEvent, UsageRecord
from billing.plans import plan_by_key, plan_by_product
from billing.selectors import browser_call_quota, counted_channels, minute_pool
from calls.models import Call

log = logging.getLogger(__name__)

S = BillingAccount.Status
ALLOWED_SUBSCRIPTION_STATUSES = {S.ACTIVE, S.TRIALING}
LIVE_SUBSCRIPTION_STATUSES = {S.ACTIVE, S.TRIALING, S.PAST_DUE}


# --- the billing state ------------------------------------------------------------------------------------------

def account_for_business(business: Business) -> BillingAccount:
    """The business's billing state; a business that has none starts its free trial now."""
    account = BillingAccount.objects.filter(business=business).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return BillingAccount.objects.create(business=business, trial_minutes=settings.BILLING_TRIAL_MINUTES)
    except IntegrityError:  # created concurrently
        return BillingAccount.objects.get(business=business)


# --- the call gate ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CallDecision:
    allowed: bool
    reason: str = ""  # trial_exhausted, minutes_exhausted, past_due, subscription_ended, subscription_inactive


def can_take_call(business: Business, *, now: dt.datetime | None = None,
                  account: BillingAccount | None = None) -> CallDecision:
    """May the receptionist answer a call for `business` right now? Reads only (besides the lazy free trial).

    The allowance (free trial, hard-capped plan) counts the minutes live calls have started too, so calls
    running at once cannot each take the last minute."""
    now = now or timezone.now()
    account = account or account_for_business(business)
    if account.is_free_trial:
        if minute_pool(account, now=now).free_minutes <= 0:
            return CallDecision(False, "trial_exhausted")
        return CallDecision(True)
    if account.status == S.PAST_DUE:
        return CallDecision(False, "past_due")
    if account.status not in ALLOWED_SUBSCRIPTION_STATUSES:
        return CallDecision(False, "subscription_inactive")
    if account.current_period_end is not None and account.current_period_end <= now and account.cancel_at_period_end:
        return CallDecision(False, "subscription_ended")  # cancelled, and the revocation webhook hasn't come yet
    pool = minute_pool(account, now=now)
    if pool is not None and pool.free_minutes <= 0:
        return CallDecision(False, "minutes_exhausted")
    return CallDecision(True)


# Fewer seconds than this left of today's test-call time: not worth starting a call (it would end at once).
MIN_BROWSER_CALL_SECONDS = 5


def browser_call_gate(business: Business, *, now: dt.datetime | None = None) -> CallDecision:
    """May a member start a browser test call now? On the free trial a test call spends trial minutes; with a
    subscription it is free (used-up plan minutes don't stop it); either way at most BROWSER_CALL_DAILY_MINUTES
    a (local) day. Without trial minutes or a live subscription there are no test calls."""
    decision = can_take_call(business, now=now)
    if not decision.allowed and decision.reason != "minutes_exhausted":
        return decision
    if browser_call_quota(business, now=now).seconds < MIN_BROWSER_CALL_SECONDS:
        return CallDecision(False, "test_call_quota_used")
    return CallDecision(True)


@dataclass(frozen=True)
class CallAllowance:
    """How much longer a live call may run, and the end reason to record when it has to stop."""

    seconds_left: float | None  # None: not capped (a plan without a hard cap)
    end_reason: str = ""


def call_allowance(*, call_id: int, now: dt.datetime | None = None) -> CallAllowance:
    """The time a live call has left: the business's allowance minutes (free trial or hard cap) shared with its
    other live calls (`MinutePool.seconds_left`), and for a browser test call today's test-call time too.
    Reads only; the call session asks at its start and every CALL_ALLOWANCE_RECHECK_SECONDS."""
    now = now or timezone.now()
    try:
        call = Call.objects.select_related("business").get(id=call_id)
    except Call.DoesNotExist:
        return CallAllowance(None)
    account = account_for_business(call.business)
    limits: list[tuple[float, str]] = []
    if call.channel in counted_channels(account):
        pool = minute_pool(account, now=now)
        if pool is not None:
            limits.append((pool.seconds_left(call.id), "billing_cap_reached"))
    if call.channel == Call.Channel.BROWSER:
        limits.append((browser_call_quota(call.business, now=now).seconds_left_per_call(), "test_call_quota_reached"))
    if not limits:
        return CallAllowance(None)
    seconds, reason = min(limits)
    return CallAllowance(max(0.0, seconds), reason)


def call_gate(*, business: Business, account: BillingAccount | None = None) -> CallDecision:
    """`can_take_call`, remembering the outcome: the first refusal emails the owners once, the next allowed call
    re-arms it. The email is sent at most once per refusal streak (a compare-and-set claims it). `account`: the
    business's billing account when the caller already has it (one query less on every incoming call)."""
    account = account or account_for_business(business)
    decision = can_take_call(business, account=account)
    if decision.allowed:
        if account.blocked_at is not None:  # most calls: nothing to re-arm, no write
            BillingAccount.objects.filter(pk=account.pk, blocked_at__isnull=False).update(
                blocked_at=None, blocked_reason="")
        return decision
    claimed = BillingAccount.objects.filter(business=business, blocked_at__isnull=True).update(
        blocked_at=timezone.now(), blocked_reason=decision.reason)
    if claimed:
        from billing.tasks import notify_calls_blocked

        transaction.on_commit(lambda: notify_calls_blocked.delay(business.id, decision.reason), robust=True)
    return decision


REASON_TEXT = {
    "trial_exhausted": "your free trial minutes are used up",
    "minutes_exhausted": "this period's included minutes are used up",
    "past_due": "the last payment failed",
    "subscription_ended": "the subscription has ended",
    "subscription_inactive": "there is no active subscription",
    "test_call_quota_used": "today's test-call minutes are used up",
}


def calls_blocked_notify(*, business_id: int, reason: str) -> int:
    """Email the business's owners that calls are being refused. Returns the number of emails sent."""
    business = Business.objects.filter(id=business_id).first()
    if business is None:
        return 0
    owners = list(Membership.objects.filter(business=business, role=Membership.Role.OWNER)
                  .values_list("user__email", flat=True))
    if not owners:
        return 0
    url = settings.PUBLIC_BASE_URL + "/billing/"
    why = REASON_TEXT.get(reason, "of the billing state")
    forward_to = allowed_transfer_number(business)
    body = (f"Your AI receptionist for {business.name} is not answering calls because {why}.\n\n"
            f"Callers hear a short message{' and are forwarded to ' + forward_to if forward_to else ''}."
            f"\n\nChoose a plan or update your payment details here: {url}\n")
    return send_mail(f"Your receptionist is not answering calls for {business.name}", body,
                     settings.DEFAULT_FROM_EMAIL, owners)


# --- Polar webhooks ---------------------------------------------------------------------------------------------

def _when(value: str | None) -> dt.datetime | None:
    return parse_datetime(value) if value else None


def _business_for(*, external_id: str | None, customer_id: str | None) -> Business | None:
    if external_id:
        try:
            return Business.objects.filter(uuid=uuid.UUID(external_id)).first()
        except ValueError:
            pass
    if customer_id:
        account = BillingAccount.objects.select_related("business").filter(polar_customer_id=customer_id).first()
        if account is not None:
            return account.business
    return None


def _locked_account(business: Business) -> BillingAccount:
    account_for_business(business)
    return BillingAccount.objects.select_for_update().get(business=business)


def _apply_plan(account: BillingAccount, product_id: str) -> None:
    plan = plan_by_product(product_id)
    account.polar_product_id = product_id
    account.plan_key = plan.key if plan else ""
    account.included_minutes = plan.included_minutes if plan else 0
    account.hard_cap = plan.hard_cap if plan else False


def _on_subscription(event: Any, business: Business) -> str:
    sub = event.data
    account = _locked_account(business)
    state_at = _when(sub.modified_at) or _when(event.timestamp)
    if (account.polar_subscription_id and sub.id != account.polar_subscription_id
            and account.status in LIVE_SUBSCRIPTION_STATUSES and sub.status not in ALLOWED_SUBSCRIPTION_STATUSES):
        return "other_subscription"  # an old subscription winding down doesn't touch the current one
    if account.polar_state_at and state_at and state_at < account.polar_state_at:
        return "stale"  # delivered out of order: never roll the state back
    account.status = S.REVOKED if event.type == "subscription.revoked" else sub.status
    account.polar_subscription_id = sub.id
    account.polar_customer_id = sub.customer_id or account.polar_customer_id
    account.current_period_start = _when(sub.current_period_start)
    account.current_period_end = _when(sub.current_period_end)
    account.cancel_at_period_end = bool(sub.cancel_at_period_end)
    account.polar_state_at = state_at
    _apply_plan(account, sub.product_id)
    account.save()
    return "applied"


def _on_customer_state(event: Any, business: Business) -> str:
    state = event.data
    account = _locked_account(business)
    state_at = _when(event.timestamp)
    if account.polar_state_at and state_at and state_at < account.polar_state_at:
        return "stale"
    account.polar_customer_id = state.id
    subs = list(state.active_subscriptions)
    if subs:
        sub = next((s for s in subs if s.id == account.polar_subscription_id), subs[0])
        trial_end = _when(sub.trial_end)
        if sub.status == "granted":
            account.status = S.TRIALING if trial_end and trial_end > timezone.now() else S.ACTIVE
        else:
            account.status = S.PAST_DUE
        account.polar_subscription_id = sub.id
        account.current_period_start = _when(sub.current_period_start)
        account.current_period_end = _when(sub.current_period_end)
        account.cancel_at_period_end = bool(sub.cancel_at_period_end)
        _apply_plan(account, sub.product_id)
    elif account.polar_subscription_id and account.status in LIVE_SUBSCRIPTION_STATUSES:
        account.status = S.REVOKED
    account.polar_state_at = state_at
    account.save()
    return "applied"


def _on_order_paid(event: Any, business: Business) -> str:
    order = event.data
    account = _locked_account(business)
    account.polar_customer_id = order.customer_id or account.polar_customer_id
    paid_at = _when(order.modified_at) or _when(order.created_at) or timezone.now()
    account.last_paid_at = max(filter(None, [account.last_paid_at, paid_at]))
    account.save(update_fields=["polar_customer_id", "last_paid_at", "updated_at"])
    return "applied"


def _subscription_owner(event: Any) -> Business | None:
    data = event.data
    return _business_for(external_id=data.customer.external_id, customer_id=data.customer_id)


def _state_owner(event: Any) -> Business | None:
    return _business_for(external_id=event.data.external_id, customer_id=event.data.id)


HANDLERS: dict[str, tuple[Callable[[Any], Business | None], Callable[[Any, Business], str]]] = {
    **{t: (_subscription_owner, _on_subscription) for t in (
        "subscription.created", "subscription.active", "subscription.updated", "subscription.canceled",
        "subscription.uncanceled", "subscription.revoked", "subscription.past_due")},
    "order.paid": (_subscription_owner, _on_order_paid),
    "customer.state_changed": (_state_owner, _on_customer_state),
}


@transaction.atomic
def webhook_receive(*, webhook_id: str, event: Any, payload: dict) -> str:
    """Store a verified delivery once by webhook-id and apply it; a redelivery returns "duplicate".

    Stored and applied in one transaction: if applying fails, nothing is stored and Polar's retry tries again.
    """
    row, created = PolarWebhookEvent.objects.get_or_create(
        webhook_id=webhook_id, defaults={"type": event.type, "payload": payload})
    if not created:
        return "duplicate"
    handler = HANDLERS.get(event.type)
    if handler is None:
        outcome, business = "ignored", None
    else:
        find_owner, apply = handler
        business = find_owner(event)
        outcome = apply(event, business) if business is not None else "unknown_business"
    row.business = business
    row.outcome = outcome
    row.save(update_fields=["business", "outcome"])
    log.info("Polar %s %s: %s", event.type, webhook_id, outcome)
    return outcome


# --- usage ------------------------------------------------------------------------------------------------------

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


# --- checkout and portal ----------------------------------------------------------------------------------------

class BillingUnavailable(Exception):
    """A sentence for the owner: why the checkout or portal can't open now."""


def checkout_url(*, business: Business, email: str, plan_key: str, customer_ip: str) -> str:
    """A Polar checkout for `plan_key`, tied to the business by its UUID (never an email: it can't change)."""
    plan = plan_by_key(plan_key)
    if plan is None:
        raise BillingUnavailable("That plan doesn't exist.")
    account = account_for_business(business)
    base = settings.PUBLIC_BASE_URL
    try:
        return polar_client.create_checkout(
            product_id=plan.product_id, external_customer_id=str(business.uuid),
            customer_id=account.polar_customer_id, customer_email=email, customer_name=business.name,
            success_url=base + "/billing/success/?checkout_id={CHECKOUT_ID}", return_url=base + "/billing/",
            customer_ip_address=customer_ip, metadata={"business_id": str(business.id), "plan": plan.key})
    except polar_client.PolarFailure as exc:
        log.warning("Checkout for business %s failed: %s", business.id, exc)
        raise BillingUnavailable("Polar, our payment provider, could not open the checkout. Please try again.") from exc


def portal_url(*, business: Business) -> str:
    account = account_for_business(business)
    if account.is_free_trial and not account.polar_customer_id:
        raise BillingUnavailable("Choose a plan first; the billing portal opens once you have subscribed.")
    try:
        return polar_client.create_portal_url(customer_id=account.polar_customer_id,
                                              external_customer_id=str(business.uuid),
                                              return_url=settings.PUBLIC_BASE_URL + "/billing/")
    except polar_client.PolarFailure as exc:
        log.warning("Customer portal for business %s failed: %s", business.id, exc)
        raise BillingUnavailable("Polar, our payment provider, could not open the billing portal. "
                                 "Please try again.") from exc
