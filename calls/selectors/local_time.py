"""Local time of a business: its wall clock, the model's "YYYY-MM-DDTHH:MM", and a local day's UTC bounds.

Time rules, kept in one place: the database and every comparison use aware UTC datetimes; the business's time
zone is applied only to build a local wall time (opening hours, a caller's "10:30") and to format one for the
model. Adding a duration to a zoneinfo-aware datetime in Python adds wall time, and comparing two of them with
the same tzinfo ignores the DST fold, so neither is ever done with local datetimes here.
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from accounts.models import Business

UTC = dt.timezone.utc
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"  # how times are written to and read from the model: local, no offset


def local_now(*, business: Business, now: dt.datetime | None = None) -> dt.datetime:
    """The current time as an aware datetime in the business's time zone."""
    return (now or timezone.now()).astimezone(business.tzinfo)


def format_local(value: dt.datetime, business: Business) -> str:
    """An aware datetime as the business's local wall time, "YYYY-MM-DDTHH:MM"."""
    return value.astimezone(business.tzinfo).strftime(LOCAL_FORMAT)


def local_to_utc(day: dt.date, wall: dt.time, business: Business) -> dt.datetime | None:
    """The UTC instant of a local wall time on `day`; None when the clocks skip it (spring-forward gap).

    A wall time that happens twice (autumn fall-back) means its first occurrence.
    """
    naive = dt.datetime.combine(day, wall.replace(tzinfo=None, fold=0))
    instant = naive.replace(tzinfo=business.tzinfo).astimezone(UTC)
    if instant.astimezone(business.tzinfo).replace(tzinfo=None) != naive:
        return None
    return instant


def bound_to_utc(day: dt.date, wall: dt.time, business: Business) -> dt.datetime:
    """An opening or closing time as UTC; one that falls in a DST gap moves forward with the clocks."""
    return dt.datetime.combine(day, wall).replace(tzinfo=business.tzinfo).astimezone(UTC)


def local_day_bounds(*, business: Business, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants a local calendar day starts and ends: 23 or 25 hours apart on DST days."""
    return (bound_to_utc(day, dt.time(0), business),
            bound_to_utc(day + dt.timedelta(days=1), dt.time(0), business))
