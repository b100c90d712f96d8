"""Reads for calls: opening hours and free slots, FAQ search, customers and their appointments.

Time rules, kept in one place: the database and every comparison use aware UTC datetimes; the business's time
zone is applied only to build a local wall time (opening hours, a caller's "10:30") and to format one for the
model. Adding a duration to a zoneinfo-aware datetime in Python adds wall time, and comparing two of them with
the same tzinfo ignores the DST fold, so neither is ever done with local datetimes here.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from accounts.models import Business, ClosedDate, FAQEntry, OpeningHours, Service
from accounts.phone import normalize_e164
from calls.models import Appointment, Customer, Message

UTC = dt.timezone.utc
SLOT_STEP_MINUTES = 15
DEFAULT_DURATION_MINUTES = 30
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"  # how times are written to and read from the model: local, no offset


# --- local time -------------------------------------------------------------------------------------------

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


def _bound_to_utc(day: dt.date, wall: dt.time, business: Business) -> dt.datetime:
    """An opening or closing time as UTC; one that falls in a DST gap moves forward with the clocks."""
    return dt.datetime.combine(day, wall).replace(tzinfo=business.tzinfo).astimezone(UTC)


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
        self.closed = dict(ClosedDate.objects.filter(business=business, date__gte=first, date__lte=last)
                           .values_list("date", "reason"))

    def closed_reason(self, day: dt.date) -> str | None:
        """Why the business is closed on a closed date ("" when no reason was given); None on other days."""
        return self.closed.get(day)

    def intervals(self, day: dt.date) -> list[OpenInterval]:
        if day in self.closed:
            return []
        return [OpenInterval(opens, closes, _bound_to_utc(day, opens, self.business),
                             _bound_to_utc(day, closes, self.business))
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
    for row in OpeningHours.objects.filter(business=business).order_by("weekday", "opens"):
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


# --- FAQ --------------------------------------------------------------------------------------------------

# PostgreSQL text search configurations for the languages a business can pick.
SEARCH_CONFIGS = {"en": "english", "es": "spanish", "fr": "french", "de": "german", "it": "italian",
                  "pt": "portuguese", "nl": "dutch"}
_STOPWORDS = frozenset(
    "a an and are as at be but by can could do does for from have how i if in is it its me my of on or our so "
    "that the there they this to us was we what when where which who will with would you your".split())


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"\w+", text.lower()) if w not in _STOPWORDS and len(w) > 1]


def _overlap_score(query_words: set[str], entry: FAQEntry) -> int:
    """Shared words (or shared beginnings of 4+ letters, so "park" finds "parking"); the question counts double."""
    def hits(text: str) -> int:
        words = set(_words(text))
        return sum(1 for q in query_words
                   if q in words or (len(q) >= 4 and any(w.startswith(q) or q.startswith(w) for w in words
                                                         if len(w) >= 4)))
    return 2 * hits(entry.question) + hits(entry.answer)


def faq_search(*, business: Business, query: str, limit: int = 3) -> list[FAQEntry]:
    """The FAQ entries best matching `query`: full-text search on PostgreSQL (any word may match, ranked), and
    word overlap where that finds nothing or the database is SQLite."""
    words = _words(query)[:20]
    if not words:
        return []
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

        config = SEARCH_CONFIGS.get(business.language, "simple")
        vector = SearchVector("question", weight="A", config=config) + SearchVector("answer", weight="B", config=config)
        search = SearchQuery(words[0], config=config)
        for word in words[1:]:
            search |= SearchQuery(word, config=config)
        ranked = (FAQEntry.objects.filter(business=business)
                  .annotate(document=vector, rank=SearchRank(vector, search)).filter(document=search))
        found = list(ranked.order_by("-rank", "position", "id")[:limit])
        if found:
            return found
    query_words = set(words)
    scored = [(_overlap_score(query_words, entry), entry) for entry in FAQEntry.objects.filter(business=business)]
    scored = [pair for pair in scored if pair[0] > 0]
    scored.sort(key=lambda pair: (-pair[0], pair[1].position, pair[1].id))
    return [entry for _, entry in scored[:limit]]


# --- customers, appointments, messages --------------------------------------------------------------------

def customer_by_phone(*, business_id: int, phone: str) -> Customer | None:
    """The customer with that (already E.164) number at this business."""
    return Customer.objects.filter(business_id=business_id, phone=phone).first()


def appointment_for_business(*, business_id: int, appointment_id: int) -> Appointment | None:
    """An appointment of this business; another business's id is as unknown as a missing one."""
    return Appointment.objects.filter(business_id=business_id, id=appointment_id).first()


def upcoming_appointments(*, customer: Customer, now: dt.datetime | None = None, limit: int = 10) -> list[Appointment]:
    """Booked appointments that have not ended yet, soonest first."""
    return list(customer.appointments.filter(status=Appointment.Status.BOOKED, ends_at__gt=now or timezone.now())
                .order_by("starts_at")[:limit])


def past_appointments(*, customer: Customer, now: dt.datetime | None = None, limit: int = 3) -> list[Appointment]:
    """The last few appointments (any status) that have started, most recent first."""
    return list(customer.appointments.filter(starts_at__lte=now or timezone.now()).order_by("-starts_at")[:limit])


def recent_messages(*, customer: Customer, limit: int = 3) -> list[Message]:
    return list(customer.messages.order_by("-created_at")[:limit])


def appointment_as_dict(appointment: Appointment, business: Business) -> dict[str, object]:
    return {"appointment_id": appointment.id, "service": appointment.service_name,
            "start": format_local(appointment.starts_at, business), "end": format_local(appointment.ends_at, business),
            "status": str(appointment.status)}


def caller_context(*, business_id: int, phone: str, now: dt.datetime | None = None) -> dict | None:
    """What the realtime agent should know about a returning caller, or None for an unknown number.

    {"name", "previous_calls", "upcoming_appointments": [{"appointment_id", "service", "start", "end",
    "status"}]}, times in the business's local "YYYY-MM-DDTHH:MM".
    """
    try:
        phone = normalize_e164(phone)
    except ValidationError:
        return None
    customer = (Customer.objects.select_related("business").filter(business_id=business_id, phone=phone).first()
                if phone else None)
    if customer is None:
        return None
    return {"name": customer.name, "previous_calls": customer.call_count,
            "upcoming_appointments": [appointment_as_dict(a, customer.business)
                                      for a in upcoming_appointments(customer=customer, now=now, limit=5)]}


def open_messages(*, business: Business) -> list[Message]:
    """Messages nobody has handled yet, newest first (dashboard)."""
    return list(Message.objects.filter(business=business, status=Message.Status.OPEN)
                .select_related("customer").order_by("-created_at"))


def appointments_between(*, business: Business, starts_at: dt.datetime, ends_at: dt.datetime) -> list[Appointment]:
    """Appointments starting in [starts_at, ends_at), with their customers (dashboard)."""
    return list(Appointment.objects.filter(business=business, starts_at__gte=starts_at, starts_at__lt=ends_at)
                .select_related("customer").order_by("starts_at"))

