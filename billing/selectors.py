"""Reads for billing: minutes used, the usage chart, the pricing list."""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import FloatField, Q, QuerySet, Sum, Value
from django.db.models.functions import Cast, Ceil, Coalesce, TruncDate
from django.utils import timezone

from accounts.models import Business
from billing import polar_client
from billing.models import BillingAccount, UsageRecord
from billing.plans import Plan, all_plans
from calls.models import Call
from calls.selectors.local_time import local_day_bounds

log = logging.getLogger(__name__)
PRICE_CACHE_KEY = "billing:polar-prices:v1"


def counted_usage(account: BillingAccount) -> QuerySet[UsageRecord]:
    """The usage records counted against the allowance: all time on the free trial, else this period.

    On the free trial every answered call counts, browser test calls included (they run on the operator's
    OpenAI key); those records are `not_billable`, so they never reach Polar. On a plan only what Polar bills
    counts: test calls are free for subscribers (within BROWSER_CALL_DAILY_MINUTES).
    """
    records = UsageRecord.objects.filter(business_id=account.business_id)
    if not account.is_free_trial:
        records = records.exclude(status=UsageRecord.Status.NOT_BILLABLE)
    if account.period_start is not None:
        records = records.filter(occurred_at__gte=account.period_start)
    return records


def minutes_used(account: BillingAccount) -> int:
    """Minutes counted against the allowance (see `counted_usage`)."""
    return counted_usage(account).aggregate(total=Sum("minutes"))["total"] or 0


# --- minutes committed to live calls --------------------------------------------------------------------------

# Twilio bills from its answer, a second or two before our media stream starts, and the hang-up takes a moment:
# a live call is counted this much longer than it has run, so one ended "at the minute" is billed that minute.
BILLED_SECONDS_MARGIN = 5


def counted_channels(account: BillingAccount) -> list[str]:
    """Which calls spend the allowance: phone calls, and on the free trial browser test calls too."""
    if account.is_free_trial:
        return [Call.Channel.TWILIO, Call.Channel.BROWSER]
    return [Call.Channel.TWILIO]


def held_minutes(elapsed_s: float) -> int:
    """The minutes a live call will be billed if it ends now (rounded up per call, at least one)."""
    return max(1, math.ceil((elapsed_s + BILLED_SECONDS_MARGIN) / 60))


@dataclass(frozen=True)
class MinutePool:
    """A business's minutes left before its allowance (free trial or hard cap): whole minutes not yet spent by
    finished calls, and the live calls sharing them (call id -> seconds it has run)."""

    minutes: int
    live: dict[int, float]

    @property
    def free_minutes(self) -> int:
        """Minutes no call has started yet: a new call may start only when one is free."""
        return self.minutes - sum(held_minutes(e) for e in self.live.values())

    def seconds_left(self, call_id: int) -> float:
        """How much longer the live call `call_id` may run before the pool is spent.

        Calls are billed per call in whole minutes, so each live call holds the minutes it has started; the
        free minutes are dealt out one at a time, first to the call that reaches the end of its current minute
        soonest (the order stays the same until one crosses a minute, which then holds that minute), so every
        process computing this from the same rows gives the same answer and no minute is promised twice.
        """
        elapsed = self.live.get(call_id, 0.0)
        live = {**self.live, call_id: elapsed}
        free = self.minutes - sum(held_minutes(e) for e in live.values())
        extra = 0
        if free > 0:
            def to_minute_end(cid: int) -> float:
                return held_minutes(live[cid]) * 60 - live[cid] - BILLED_SECONDS_MARGIN

            order = sorted(live, key=lambda cid: (to_minute_end(cid), cid))
            rank = order.index(call_id)
            extra = free // len(order) + (1 if rank < free % len(order) else 0)
        return (held_minutes(elapsed) + extra) * 60 - elapsed - BILLED_SECONDS_MARGIN


def _elapsed(started: dt.datetime | None, now: dt.datetime) -> float:
    """How long a live call has run; never more than a call may (a row left behind by a crashed process counts
    no further until the reaper finalises it)."""
    seconds = max(0.0, (now - started).total_seconds()) if started else 0.0
    return min(seconds, float(settings.CALL_MAX_SECONDS))


def minute_pool(account: BillingAccount, *, now: dt.datetime | None = None) -> MinutePool | None:
    """The business's pool of allowance minutes, or None when its calls are not capped (a plan without a hard
    cap). Counts finished calls (their usage records, or their duration while the record is not written yet)
    and the live calls of the channels that spend the allowance."""
    allowance = account.minutes_allowance
    if allowance is None:
        return None
    now = now or timezone.now()
    channels = counted_channels(account)
    answered = Call.objects.filter(business_id=account.business_id, channel__in=channels,
                                   stream_started_at__isnull=False)
    # Over, with no usage record yet: finalised (the record follows Twilio's status callback), or not yet
    # finalised but Twilio has already reported how long it lasted.
    over = Q(finalized_at__isnull=False) | Q(duration_seconds__isnull=False)
    unrecorded = answered.filter(over, usage_record__isnull=True)
    if account.period_start is not None:
        unrecorded = unrecorded.filter(Q(ended_at__isnull=True) | Q(ended_at__gte=account.period_start))
    billed = Ceil(Cast(Coalesce("duration_seconds", 0), FloatField()) / Value(60.0))
    finishing = unrecorded.aggregate(total=Sum(billed))["total"] or 0
    live = {call_id: _elapsed(started, now) for call_id, started in
            answered.exclude(over).values_list("id", "stream_started_at")}
    return MinutePool(minutes=allowance - minutes_used(account) - int(finishing), live=live)


# --- browser test calls: the daily quota --------------------------------------------------------------------

@dataclass(frozen=True)
class BrowserCallQuota:
    """Today's (the business's local day) browser test-call time: seconds left, shared by the live test calls."""

    seconds: float  # left today, live calls' time so far already taken off
    live: int  # test calls running now

    @property
    def minutes_left(self) -> int:
        return int(self.seconds // 60)

    def seconds_left_per_call(self) -> float:
        """Running test calls spend the day's time together: each may run until it is used up."""
        return self.seconds / max(1, self.live)


def browser_call_quota(business: Business, *, now: dt.datetime | None = None) -> BrowserCallQuota:
    """BROWSER_CALL_DAILY_MINUTES minus the time of today's test calls (started since the business's local
    midnight), counted to the second: it is a cost guard, not a bill."""
    now = now or timezone.now()
    start, end = local_day_bounds(business=business, day=timezone.localtime(now, business.tzinfo).date())
    today = Call.objects.filter(business=business, channel=Call.Channel.BROWSER, started_at__gte=start,
                                started_at__lt=end, stream_started_at__isnull=False)
    finished = today.filter(finalized_at__isnull=False).aggregate(total=Sum("duration_seconds"))["total"] or 0
    live = [_elapsed(started, now) for started in
            today.filter(finalized_at__isnull=True).values_list("stream_started_at", flat=True)]
    left = settings.BROWSER_CALL_DAILY_MINUTES * 60 - finished - sum(live)
    return BrowserCallQuota(seconds=max(0.0, left), live=len(live))


@dataclass(frozen=True)
class DayUsage:
    day: dt.date
    minutes: int
    percent: int  # of the busiest day, for the bar height


def usage_by_day(account: BillingAccount, *, now: dt.datetime | None = None) -> list[DayUsage]:
    """Minutes per day over the current period (the last 30 days on the free trial)."""
    now = now or timezone.now()
    start = account.period_start or now - dt.timedelta(days=29)
    end = min(account.current_period_end or now, now) if account.period_start else now
    rows = (counted_usage(account).filter(occurred_at__gte=start)
            .annotate(day=TruncDate("occurred_at")).values("day").annotate(total=Sum("minutes")))
    by_day = {row["day"]: row["total"] or 0 for row in rows}
    days = []
    day = start.date()
    while day <= end.date() and len(days) < 62:
        days.append(day)
        day += dt.timedelta(days=1)
    peak = max([by_day.get(d, 0) for d in days] + [1])
    return [DayUsage(day=d, minutes=by_day.get(d, 0), percent=round(100 * by_day.get(d, 0) / peak)) for d in days]


@dataclass(frozen=True)
class PricedPlan:
    plan: Plan
    price: str  # e.g. "$49.00 / month"
    overage: str  # e.g. "+ $0.25 per extra minute"
    from_polar: bool


def _money(cents: float, currency: str) -> str:
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency.lower(), currency.upper() + " ")
    return f"{symbol}{cents / 100:,.2f}"


def priced_plans() -> list[PricedPlan]:
    """The configured plans with prices read from Polar (cached), or settings' text when Polar can't be read."""
    plans = all_plans()
    prices = cache.get(PRICE_CACHE_KEY)
    if prices is None and plans and polar_client.is_configured():
        try:
            prices = polar_client.list_product_prices([p.product_id for p in plans])
            cache.set(PRICE_CACHE_KEY, prices, settings.BILLING_PRICE_CACHE_SECONDS)
        except polar_client.PolarFailure as exc:
            log.warning("Showing configured prices: %s", exc)
            prices = None
    result = []
    for plan in plans:
        polar_price = (prices or {}).get(plan.product_id)
        if polar_price and polar_price.amount_cents is not None:
            price = _money(polar_price.amount_cents, polar_price.currency)
            if polar_price.interval:
                price += f" / {polar_price.interval}"
            overage = ""
            if polar_price.metered_unit_cents is not None:
                overage = f"+ {_money(float(polar_price.metered_unit_cents), polar_price.currency)} per extra minute"
            result.append(PricedPlan(plan=plan, price=price, overage=overage, from_polar=True))
        else:
            result.append(PricedPlan(plan=plan, price=plan.price, overage="", from_polar=False))
    return result
