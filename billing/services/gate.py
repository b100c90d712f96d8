"""The call gate: whether a call is answered now (and the owners' email when calls start being refused), and
how long a live call may run on its allowance."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.models import Business, Membership
from accounts.transfers import allowed_transfer_number
from billing.models import BillingAccount
from billing.selectors import browser_call_quota, counted_channels, minute_pool
from billing.services.account import ALLOWED_SUBSCRIPTION_STATUSES, S, account_for_business
from calls.models import Call


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
