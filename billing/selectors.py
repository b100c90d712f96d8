"""Reads for billing: minutes used, the usage chart, the pricing list."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing import polar_client
from billing.models import BillingAccount, UsageRecord
from billing.plans import Plan, all_plans

log = logging.getLogger(__name__)
PRICE_CACHE_KEY = "billing:polar-prices:v1"


def minutes_used(account: BillingAccount) -> int:
    """Billed minutes counted against the allowance: all time on the free trial, else this period."""
    records = UsageRecord.objects.filter(business_id=account.business_id)
    if account.period_start is not None:
        records = records.filter(occurred_at__gte=account.period_start)
    return records.aggregate(total=Sum("minutes"))["total"] or 0


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
    rows = (UsageRecord.objects.filter(business_id=account.business_id, occurred_at__gte=start)
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
