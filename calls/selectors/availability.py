"""Opening hours and availability: when a business is open, its services, and the free slots to book."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from accounts.models import Business, ClosedDate, OpeningHours, Service
from calls.models import Appointment
from calls.selectors.local_time import bound_to_utc, local_now, local_to_utc

SLOT_STEP_MINUTES = 15
DEFAULT_DURATION_MINUTES = 30


# --- opening hours ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpenInterval:
    """One open interval on a date: local wall times as configured and the UTC instants they are that day."""

    opens: dt.time
    closes: dt.time
    opens_at: dt.datetime
    closes_at: dt.datetime


class Schedule:
    """A business's opening hours and closed dates, loaded once for a range of dates."""

    def __init__(self, business: Business, first: dt.date, last: dt.date) -> None:
        self.business = business
        self.hours = week_hours(business=business)
        prefetched = getattr(business, "_prefetched_objects_cache", {})
        if "closed_dates" in prefetched:  # loaded with the business (the agent's profile): no second query
            self.closed = {c.date: c.reason for c in prefetched["closed_dates"] if first <= c.date <= last}
        else:
            self.closed = dict(ClosedDate.objects.filter(business=business, date__gte=first, date__lte=last)
                               .values_list("date", "reason"))

    def closed_reason(self, day: dt.date) -> str | None:
        """Why the business is closed on a closed date ("" when no reason was given); None on other days."""
        return self.closed.get(day)

    def intervals(self, day: dt.date) -> list[OpenInterval]:
        if day in self.closed:
            return []
        return [OpenInterval(opens, closes, bound_to_utc(day, opens, self.business),
                             bound_to_utc(day, closes, self.business))
                for opens, closes in self.hours.get(day.weekday(), [])]


def open_intervals(*, business: Business, day: dt.date) -> list[OpenInterval]:
    return Schedule(business, day, day).intervals(day)


@dataclass(frozen=True)
class OpenStatus:
    open_now: bool
    closes_at: dt.datetime | None  # end of the current interval when open
    next_opening: dt.datetime | None


def open_status(*, business: Business, now: dt.datetime | None = None, days_ahead: int = 14) -> OpenStatus:
    now = now or timezone.now()
    today = local_now(business=business, now=now).date()
    schedule = Schedule(business, today, today + dt.timedelta(days=days_ahead))
    closes_at = next((i.closes_at for i in schedule.intervals(today) if i.opens_at <= now < i.closes_at), None)
    next_opening = None
    for offset in range(days_ahead + 1):
        later = [i.opens_at for i in schedule.intervals(today + dt.timedelta(days=offset)) if i.opens_at > now]
        if later:
            next_opening = min(later)
            break
    return OpenStatus(open_now=closes_at is not None, closes_at=closes_at, next_opening=next_opening)


def week_hours(*, business: Business) -> dict[int, list[tuple[dt.time, dt.time]]]:
    """Weekday (0 = Monday) → its open intervals, in local time."""
    hours: dict[int, list[tuple[dt.time, dt.time]]] = {}
    prefetched = getattr(business, "_prefetched_objects_cache", {})
    if "opening_hours" in prefetched:  # loaded with the business (the agent's profile): no second query
        rows = sorted(prefetched["opening_hours"], key=lambda row: (row.weekday, row.opens))
    else:
        rows = OpeningHours.objects.filter(business=business).order_by("weekday", "opens")
    for row in rows:
        hours.setdefault(row.weekday, []).append((row.opens, row.closes))
    return hours


def upcoming_closed_dates(*, business: Business, now: dt.datetime | None = None, limit: int = 10) -> list[ClosedDate]:
    today = local_now(business=business, now=now).date()
    return list(ClosedDate.objects.filter(business=business, date__gte=today).order_by("date")[:limit])


# --- services and availability ----------------------------------------------------------------------------

def service_by_name(*, business: Business, name: str) -> Service | None:
    return Service.objects.filter(business=business, name__iexact=name.strip()).first()


def service_names(*, business: Business) -> list[str]:
    return list(Service.objects.filter(business=business).order_by("name").values_list("name", flat=True))


def unknown_service_message(*, business: Business, name: str) -> str:
    """What to tell the model when it names a service the business doesn't have."""
    names = service_names(business=business)
    if not names:
        return "This business has no services set up for booking. Offer to take a message instead."
    return f"There is no service called “{name}”. The services are: {', '.join(names)}."


def booked_between(*, business: Business, starts_at: dt.datetime, ends_at: dt.datetime,
                   exclude_appointment_id: int | None = None) -> list[tuple[dt.datetime, dt.datetime]]:
    """(start, end) of the booked appointments overlapping [starts_at, ends_at)."""
    rows = Appointment.objects.filter(business=business, status=Appointment.Status.BOOKED,
                                      starts_at__lt=ends_at, ends_at__gt=starts_at)
    if exclude_appointment_id is not None:
        rows = rows.exclude(id=exclude_appointment_id)
    return list(rows.values_list("starts_at", "ends_at"))


def fits_opening_hours(*, business: Business, starts_at: dt.datetime, ends_at: dt.datetime) -> bool:
    """Whether [starts_at, ends_at) lies inside one open interval of the local day it starts on."""
    day = starts_at.astimezone(business.tzinfo).date()
    return any(i.opens_at <= starts_at and ends_at <= i.closes_at for i in open_intervals(business=business, day=day))


def available_slots(*, business: Business, day: dt.date, duration_minutes: int, now: dt.datetime | None = None,
                    exclude_appointment_id: int | None = None,
                    schedule: Schedule | None = None) -> list[dt.datetime]:
    """Free start times (UTC) on a local date for a service of `duration_minutes`.

    Candidates step by SLOT_STEP_MINUTES of wall time from each interval's opening; wall times the clocks skip
    are left out. A slot is offered when it starts after `now`, the whole service fits in its interval (in
    elapsed time, so a service across a DST change still ends when it should) and no booked appointment
    overlaps it.
    """
    now = now or timezone.now()
    intervals = (schedule or Schedule(business, day, day)).intervals(day)
    if not intervals:
        return []
    duration = dt.timedelta(minutes=duration_minutes)
    busy = booked_between(business=business, starts_at=min(i.opens_at for i in intervals),
                          ends_at=max(i.closes_at for i in intervals), exclude_appointment_id=exclude_appointment_id)
    step = dt.timedelta(minutes=SLOT_STEP_MINUTES)
    slots: list[dt.datetime] = []
    for interval in intervals:
        wall, closes = dt.datetime.combine(day, interval.opens), dt.datetime.combine(day, interval.closes)
        while wall < closes:
            start = local_to_utc(day, wall.time(), business)
            wall += step
            if start is None or start <= now or start < interval.opens_at:
                continue
            end = start + duration
            if end > interval.closes_at:
                continue
            if any(b_start < end and start < b_end for b_start, b_end in busy):
                continue
            slots.append(start)
    return sorted(set(slots))


def next_available_slots(*, business: Business, after: dt.date, duration_minutes: int,
                         now: dt.datetime | None = None, days: int = 14,
                         exclude_appointment_id: int | None = None) -> tuple[dt.date | None, list[dt.datetime]]:
    """The first date after `after` (within `days`) with a free slot, and that date's slots."""
    schedule = Schedule(business, after, after + dt.timedelta(days=days))
    for offset in range(1, days + 1):
        day = after + dt.timedelta(days=offset)
        slots = available_slots(business=business, day=day, duration_minutes=duration_minutes, now=now,
                                exclude_appointment_id=exclude_appointment_id, schedule=schedule)
        if slots:
            return day, slots
    return None, []
