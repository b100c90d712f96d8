"""Reads for calls: opening hours and free slots, FAQ search, customers and their appointments.

Time rules, kept in one place: the database and every comparison use aware UTC datetimes; the business's time
zone is applied only to build a local wall time (opening hours, a caller's "10:30") and to format one for the
model. Adding a duration to a zoneinfo-aware datetime in Python adds wall time, and comparing two of them with
the same tzinfo ignores the DST fold, so neither is ever done with local datetimes here.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Case, Count, Exists, IntegerField, OuterRef, Q, QuerySet, When
from django.utils import timezone

from accounts.models import Business, ClosedDate, FAQEntry, OpeningHours, Service
from accounts.phone import normalize_e164
from calls.models import Appointment, Call, CallEvent, Customer, Message, TranscriptEntry

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

def caller_number_of_call(call: Call | None) -> str:
    """The number a call comes from, as E.164, or "" when there is none to trust as the caller's identity: a
    withheld or malformed number, or a browser test call (its `from_number` is the staff member's label).

    This is the only identity the receptionist's tools act on; nothing a model passes can choose another.
    """
    if call is None or call.channel != Call.Channel.TWILIO:
        return ""
    try:
        return normalize_e164(call.from_number)
    except ValidationError:
        return ""


def customer_by_phone(*, business_id: int, phone: str) -> Customer | None:
    """The customer with that (already E.164) number at this business."""
    return Customer.objects.filter(business_id=business_id, phone=phone).first()


def appointment_for_business(*, business_id: int, appointment_id: int,
                             customer_phone: str | None = None) -> Appointment | None:
    """An appointment of this business; another business's id is as unknown as a missing one, and so, with
    `customer_phone`, is another customer's."""
    rows = Appointment.objects.filter(business_id=business_id, id=appointment_id)
    if customer_phone is not None:
        rows = rows.filter(customer__phone=customer_phone)
    return rows.first()


def upcoming_appointments(*, customer: Customer, now: dt.datetime | None = None, limit: int = 10) -> list[Appointment]:
    """Booked appointments that have not ended yet, soonest first."""
    return list(customer.appointments.filter(status=Appointment.Status.BOOKED, ends_at__gt=now or timezone.now())
                .order_by("starts_at")[:limit])


def past_appointments(*, customer: Customer, now: dt.datetime | None = None, limit: int = 3) -> list[Appointment]:
    """The last few appointments (any status) that have started, most recent first."""
    return list(customer.appointments.filter(starts_at__lte=now or timezone.now()).order_by("-starts_at")[:limit])


def messages_left_from(*, business_id: int, phone: str, limit: int = 3) -> list[Message]:
    """The last messages left on calls from that number, newest first (not those that merely name it as the
    number to call back: anyone can give any callback number)."""
    if not phone:
        return []
    return list(Message.objects.filter(business_id=business_id, call__from_number=phone,
                                       call__channel=Call.Channel.TWILIO).order_by("-created_at")[:limit])


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



# --- dashboard: home, appointments, messages, customers ---------------------------------------------------

DASHBOARD_PAGE_SIZE = 25
HISTORY_LIMIT = 50  # rows of each kind on a customer's page; the lists have the rest
# Open messages are read most urgent first; the database sorts by this rank so a page is one query.
URGENCY_RANK = Case(When(urgency=Message.Urgency.HIGH, then=0), When(urgency=Message.Urgency.NORMAL, then=1),
                    default=2, output_field=IntegerField())


def local_day_bounds(*, business: Business, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants a local calendar day starts and ends: 23 or 25 hours apart on DST days."""
    return (_bound_to_utc(day, dt.time(0), business),
            _bound_to_utc(day + dt.timedelta(days=1), dt.time(0), business))


@dataclass(frozen=True)
class CalendarDay:
    date: dt.date
    is_today: bool
    appointments: list[Appointment]


@dataclass(frozen=True)
class AppointmentCalendar:
    """A day or a Monday-to-Sunday week of appointments, each on the local date it starts on."""

    view: str  # "day" or "week"
    days: list[CalendarDay]
    today: dt.date
    previous: dt.date
    next: dt.date

    @property
    def count(self) -> int:
        return sum(len(day.appointments) for day in self.days)


def appointment_calendar(*, business: Business, view: str, day: dt.date,
                         now: dt.datetime | None = None) -> AppointmentCalendar:
    """The appointments (every status) of the local `day`, or of the week containing it; one query."""
    step = 7 if view == "week" else 1
    first = day - dt.timedelta(days=day.weekday()) if view == "week" else day
    dates = [first + dt.timedelta(days=offset) for offset in range(step)]
    starts_at, _ = local_day_bounds(business=business, day=dates[0])
    _, ends_at = local_day_bounds(business=business, day=dates[-1])
    by_date: dict[dt.date, list[Appointment]] = {date: [] for date in dates}
    for appointment in appointments_between(business=business, starts_at=starts_at, ends_at=ends_at):
        by_date[appointment.starts_at.astimezone(business.tzinfo).date()].append(appointment)
    today = local_now(business=business, now=now).date()
    return AppointmentCalendar(view=view, days=[CalendarDay(date, date == today, by_date[date]) for date in dates],
                               today=today, previous=day - dt.timedelta(days=step), next=day + dt.timedelta(days=step))


def appointments_upcoming(*, business: Business, now: dt.datetime | None = None) -> QuerySet[Appointment]:
    """Appointments (every status) that have not ended yet, soonest first."""
    return (Appointment.objects.filter(business=business, ends_at__gt=now or timezone.now())
            .select_related("customer").order_by("starts_at", "id"))


def appointments_past(*, business: Business, now: dt.datetime | None = None) -> QuerySet[Appointment]:
    """Appointments that have ended, most recent first."""
    return (Appointment.objects.filter(business=business, ends_at__lte=now or timezone.now())
            .select_related("customer").order_by("-starts_at", "-id"))


def messages_for_dashboard(*, business: Business, status: str) -> QuerySet[Message]:
    """Open messages most urgent first then newest; handled ones most recently handled first."""
    rows = Message.objects.filter(business=business, status=status).select_related("handled_by")
    if status == Message.Status.OPEN:
        return rows.order_by(URGENCY_RANK, "-created_at", "-id")
    return rows.order_by("-handled_at", "-id")


def message_counts(*, business: Business) -> dict[str, int]:
    """{"open": n, "handled": n} in one query."""
    return Message.objects.filter(business=business).aggregate(
        open=Count("id", filter=Q(status=Message.Status.OPEN)),
        handled=Count("id", filter=Q(status=Message.Status.HANDLED)))


def customers_search(*, business: Business, query: str = "") -> QuerySet[Customer]:
    """Customers whose name contains `query`, or whose number contains its digits (3 or more, any punctuation),
    most recently seen first."""
    rows = Customer.objects.filter(business=business)
    query = query.strip()
    if query:
        match = Q(name__icontains=query)
        digits = re.sub(r"\D", "", query)
        if len(digits) >= 3:
            match |= Q(phone__contains=digits)
        rows = rows.filter(match)
    return rows.order_by("-last_seen_at", "-id")


@dataclass(frozen=True)
class CustomerHistory:
    """A customer's calls (from their number), appointments and messages, newest first, HISTORY_LIMIT of each."""

    customer: Customer
    calls: list[Call]
    appointments: list[Appointment]
    messages: list[Message]
    more_calls: bool
    more_appointments: bool
    more_messages: bool


def customer_history(*, customer: Customer, limit: int = HISTORY_LIMIT) -> CustomerHistory:
    """Three queries whatever the customer's history; every row is of the customer's own business."""
    business_id = customer.business_id
    calls = list(Call.objects.filter(business_id=business_id, from_number=customer.phone).only(*CALL_LIST_FIELDS)
                 .order_by("-started_at", "-id")[:limit + 1])
    appointments = list(Appointment.objects.filter(business_id=business_id, customer=customer)
                        .order_by("-starts_at", "-id")[:limit + 1])
    messages = list(Message.objects.filter(business_id=business_id, customer=customer)
                    .select_related("handled_by").order_by("-created_at", "-id")[:limit + 1])
    return CustomerHistory(customer=customer, calls=calls[:limit], appointments=appointments[:limit],
                           messages=messages[:limit], more_calls=len(calls) > limit,
                           more_appointments=len(appointments) > limit, more_messages=len(messages) > limit)


@dataclass(frozen=True)
class DashboardHome:
    calls_today: int
    calls_last_7_days: int
    open_messages: int
    appointments_left_today: int
    latest_calls: list[Call]
    top_open_messages: list[Message]
    appointments_today: list[Appointment]


def dashboard_home(*, business: Business, now: dt.datetime | None = None, rows: int = 5) -> DashboardHome:
    """The home page's figures and short lists, in five queries. "Today" and "the last 7 days" are local days
    (today and the six before it), so they turn over at the business's midnight."""
    now = now or timezone.now()
    today = local_now(business=business, now=now).date()
    today_starts, today_ends = local_day_bounds(business=business, day=today)
    week_starts, _ = local_day_bounds(business=business, day=today - dt.timedelta(days=6))
    call_figures = Call.objects.filter(business=business, started_at__gte=week_starts,
                                       started_at__lt=today_ends).aggregate(
        today=Count("id", filter=Q(started_at__gte=today_starts)), week=Count("id"))
    open_rows = messages_for_dashboard(business=business, status=Message.Status.OPEN)
    appointments_today = appointments_between(business=business, starts_at=today_starts, ends_at=today_ends)
    return DashboardHome(
        calls_today=call_figures["today"], calls_last_7_days=call_figures["week"],
        open_messages=open_rows.count(),
        appointments_left_today=sum(1 for a in appointments_today
                                    if a.status == Appointment.Status.BOOKED and a.ends_at > now),
        latest_calls=list(Call.objects.filter(business=business).only(*CALL_LIST_FIELDS)
                          .order_by("-started_at", "-id")[:rows]),
        top_open_messages=list(open_rows[:rows]),
        appointments_today=appointments_today,
    )


# --- dashboard: calls list and detail ---------------------------------------------------------------------

CALLS_PAGE_SIZE = 50
# What a list row (and the CSV) shows; the transcript-sized columns (search_vector, error, …) stay in the table.
CALL_LIST_FIELDS = ("id", "business_id", "started_at", "channel", "status", "outcome", "from_number", "caller_name",
                    "duration_seconds", "cost_usd", "summary", "end_reason")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class CallFilters:
    """The calls list's filters; dates are local calendar dates of the business, both ends included."""

    q: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    outcome: str = ""
    status: str = ""
    channel: str = ""

    @property
    def active(self) -> bool:
        return any((self.q, self.date_from, self.date_to, self.outcome, self.status, self.channel))


def _search_query(text: str) -> str | None:
    """A PostgreSQL tsquery (raw syntax) for what a person typed: every word must match, each as a prefix
    ("dav" finds "David"); something that looks like a phone number matches any run of its digits. Built from
    \\w runs only, so nothing the user types is tsquery syntax."""
    squeezed = re.sub(r"[\s().+-]", "", text)
    if squeezed.isdigit() and len(squeezed) >= 3:
        return f"{squeezed}:*"
    words = re.findall(r"\w+", text.lower())[:12]
    return " & ".join(f"{word}:*" for word in words) or None


def calls_filtered(*, business: Business, filters: CallFilters) -> QuerySet[Call]:
    """The business's calls matching the filters (not ordered). On PostgreSQL `q` is a full-text query on each
    call's search document (GIN index); on SQLite it is a substring of the number, name, summary or transcript."""
    rows = Call.objects.filter(business=business)
    if filters.date_from:
        rows = rows.filter(started_at__gte=local_day_bounds(business=business, day=filters.date_from)[0])
    if filters.date_to:
        rows = rows.filter(started_at__lt=local_day_bounds(business=business, day=filters.date_to)[1])
    if filters.outcome:
        rows = rows.filter(outcome=filters.outcome)
    if filters.status:
        rows = rows.filter(status=filters.status)
    if filters.channel:
        rows = rows.filter(channel=filters.channel)
    q = filters.q.strip()
    if q and connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery

        query = _search_query(q)
        if query is None:
            return rows.none()
        rows = rows.filter(search_vector=SearchQuery(query, search_type="raw",
                                                     config=SEARCH_CONFIGS.get(business.language, "simple")))
    elif q:
        said = TranscriptEntry.objects.filter(call=OuterRef("pk"), text__icontains=q)
        rows = rows.filter(Q(from_number__icontains=q) | Q(caller_name__icontains=q) | Q(summary__icontains=q)
                           | Exists(said))
    return rows


def call_cursor(call: Call) -> str:
    """A call's place in the newest-first order, for keyset paging: "<microseconds since 1970>_<id>"."""
    delta = call.started_at - _EPOCH
    return f"{(delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds}_{call.id}"


def parse_call_cursor(value: str | None) -> tuple[dt.datetime, int] | None:
    match = re.fullmatch(r"(-?\d{1,20})_(\d{1,18})", value or "")
    if match is None:
        return None
    try:
        return _EPOCH + dt.timedelta(microseconds=int(match[1])), int(match[2])
    except OverflowError:
        return None


@dataclass(frozen=True)
class CallPage:
    calls: list[Call]
    older: str | None  # cursor for the next (older) page
    newer: str | None  # cursor for the previous (newer) page; None on the first page


def call_list_page(*, business: Business, filters: CallFilters, after: str | None = None, before: str | None = None,
                   per_page: int = CALLS_PAGE_SIZE) -> CallPage:
    """One page of calls, newest first, in one query at any depth: keyset paging on (started_at, id) over the
    (business, started_at, id) index, and no COUNT. `after` pages to older calls, `before` to newer ones."""
    rows = calls_filtered(business=business, filters=filters).only(*CALL_LIST_FIELDS)
    before_key = parse_call_cursor(before)
    after_key = None if before_key else parse_call_cursor(after)
    if before_key:
        at, call_id = before_key
        # The bound on started_at alone is what the index can range-scan; the OR only settles ties.
        newer = list(rows.filter(Q(started_at__gt=at) | Q(started_at=at, id__gt=call_id), started_at__gte=at)
                     .order_by("started_at", "id")[:per_page + 1])
        if len(newer) > per_page:
            calls = newer[:per_page][::-1]
            return CallPage(calls=calls, older=call_cursor(calls[-1]), newer=call_cursor(calls[0]))
        after_key = None  # back at the top: show the first page as it is now
    elif after_key:
        at, call_id = after_key
        rows = rows.filter(Q(started_at__lt=at) | Q(started_at=at, id__lt=call_id), started_at__lte=at)
    found = list(rows.order_by("-started_at", "-id")[:per_page + 1])
    calls = found[:per_page]
    newer = (call_cursor(calls[0]) if calls else after) if after_key else None
    return CallPage(calls=calls, older=call_cursor(calls[-1]) if len(found) > per_page else None, newer=newer)


def calls_for_export(*, business: Business, filters: CallFilters) -> QuerySet[Call]:
    """Every call matching the filters, newest first, with only the exported columns (stream it with .iterator())."""
    return calls_filtered(business=business, filters=filters).only(*CALL_LIST_FIELDS).order_by("-started_at", "-id")


def format_offset(ms: int | None) -> str:
    """Milliseconds since the call started as m:ss.mmm."""
    if ms is None:
        return ""
    minutes, rest = divmod(int(ms), 60_000)
    return f"{minutes}:{rest // 1000:02d}.{rest % 1000:03d}"


def percentile(values: list[int], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class TimelineItem:
    """One line of a call's timeline: a turn (`entry`) or an event (`event`), at `offset_ms` from the start."""

    offset_ms: int
    kind: str  # "caller", "agent" or a CallEvent kind
    entry: TranscriptEntry | None = None
    event: CallEvent | None = None
    latency_ms: int | None = None  # agent turns: caller's end of speech to the agent's first audio

    @property
    def offset(self) -> str:
        return format_offset(self.offset_ms)

    @property
    def payload(self) -> dict:
        return getattr(self.event, "payload", None) or {}


@dataclass(frozen=True)
class LatencyStats:
    count: int
    p50: float | None
    p95: float | None
    max: int | None
    # The silence the voice detector waited for before ending each caller turn, as the call's session had it
    # configured: part of every figure. None when the turns don't say (calls recorded before it was stored).
    vad_silence_ms: int | None = None


def vad_silence_of(events: list[CallEvent]) -> int | None:
    """The VAD silence the call's latency events were measured with, if they all agree."""
    values = {e.payload.get("vad_silence_ms") for e in events
              if e.kind == "latency" and isinstance(e.payload, dict)}
    if len(values) == 1:
        value = values.pop()
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return None


@dataclass(frozen=True)
class CostBreakdown:
    """Call.cost_usd is everything: the realtime model (added at finalisation), the supervisor and the summary."""

    realtime_usd: Decimal
    supervisor_usd: Decimal
    summary_usd: Decimal
    total_usd: Decimal


@dataclass(frozen=True)
class CallDetail:
    call: Call
    timeline: list[TimelineItem]
    latency: LatencyStats
    cost: CostBreakdown
    appointments: list[Appointment]
    messages: list[Message]
    customer: Customer | None


# Events not drawn on the timeline: usage is in the cost breakdown, latency sits next to its agent turn.
HIDDEN_EVENT_KINDS = frozenset({"usage"})
# A latency event is written when the agent's first audio of a turn arrives, right after the turn's start_ms.
LATENCY_MATCH_MS = 500


def call_timeline(entries: list[TranscriptEntry], events: list[CallEvent]) -> tuple[list[TimelineItem], list[int]]:
    """Merge transcript entries and events by offset (turns first on a tie) and put each latency next to the
    agent turn it measured. A turn with no start time takes the previous turn's offset. Returns the timeline
    and every latency in ms."""
    items: list[TimelineItem] = []
    last_offset = 0
    agent_turns: list[TimelineItem] = []
    for entry in entries:
        offset = entry.start_ms if entry.start_ms is not None else (
            entry.end_ms if entry.end_ms is not None else last_offset)
        last_offset = offset
        item = TimelineItem(offset_ms=offset, kind=entry.speaker, entry=entry)
        items.append(item)
        if entry.speaker == "agent":
            agent_turns.append(item)
    latencies: list[int] = []
    turn_starts = [turn.offset_ms for turn in agent_turns]
    for event in events:
        if event.kind == "latency":
            ms = event.payload.get("ms") if isinstance(event.payload, dict) else None
            if isinstance(ms, (int, float)):
                latencies.append(int(ms))
                i = bisect.bisect_right(turn_starts, event.offset_ms) - 1
                if i >= 0 and event.offset_ms - turn_starts[i] <= LATENCY_MATCH_MS \
                        and agent_turns[i].latency_ms is None:
                    agent_turns[i].latency_ms = int(ms)
                    continue
        if event.kind in HIDDEN_EVENT_KINDS:
            continue
        items.append(TimelineItem(offset_ms=event.offset_ms, kind=event.kind, event=event))
    # Python's sort is stable: turns (added first) stay before events at the same offset, each in its own order.
    items.sort(key=lambda item: (item.offset_ms, 0 if item.entry is not None else 1))
    return items, latencies


def call_detail(*, call: Call) -> CallDetail:
    """Everything the call page shows, in five queries whatever the number of turns and events."""
    entries = list(TranscriptEntry.objects.filter(call=call).order_by("order"))
    events = list(CallEvent.objects.filter(call=call).order_by("offset_ms", "order", "id"))
    timeline, latencies = call_timeline(entries, events)
    appointments = list(Appointment.objects.filter(business_id=call.business_id, created_by_call=call)
                        .order_by("starts_at", "id"))
    messages = list(Message.objects.filter(business_id=call.business_id, call=call).order_by("created_at", "id"))
    customer = (Customer.objects.filter(business_id=call.business_id, phone=call.from_number).first()
                if call.channel == Call.Channel.TWILIO and call.from_number else None)
    realtime = call.cost_usd - call.supervisor_cost_usd - call.summary_cost_usd
    return CallDetail(
        call=call, timeline=timeline,
        latency=LatencyStats(count=len(latencies), p50=percentile(latencies, 0.5), p95=percentile(latencies, 0.95),
                             max=max(latencies) if latencies else None, vad_silence_ms=vad_silence_of(events)),
        cost=CostBreakdown(realtime_usd=realtime, supervisor_usd=call.supervisor_cost_usd,
                           summary_usd=call.summary_cost_usd, total_usd=call.cost_usd),
        appointments=appointments, messages=messages, customer=customer)


CSV_COLUMNS = ["id", "started_at", "channel", "status", "outcome", "caller_number", "caller_name",
               "duration_seconds", "cost_usd", "summary", "end_reason"]
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection); tab and CR count too.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """Text that a spreadsheet would read as a formula gets a leading apostrophe; other values pass through."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def calls_csv_chunk(*, business: Business, filters: CallFilters, after: tuple[dt.datetime, int] | None = None,
                    size: int = 500) -> tuple[list[list[object]], tuple[dt.datetime, int] | None]:
    """One chunk of the export: up to `size` rows of matching calls (newest first) after the keyset `after`
    (a call's (started_at, id)), and the key to go on from, None once there are no more. Keyset paging keeps no
    cursor open between chunks, so an async view can stream them with other work between."""
    rows = calls_for_export(business=business, filters=filters)
    if after is not None:
        at, call_id = after
        rows = rows.filter(Q(started_at__lt=at) | Q(started_at=at, id__lt=call_id), started_at__lte=at)
    calls = list(rows[:size])
    tz = business.tzinfo
    lines = [[csv_safe(value) for value in (
        call.id, call.started_at.astimezone(tz).isoformat(), call.channel, call.status, call.outcome,
        call.from_number, call.caller_name, "" if call.duration_seconds is None else call.duration_seconds,
        call.cost_usd, call.summary, call.end_reason)] for call in calls]
    return lines, ((calls[-1].started_at, calls[-1].id) if len(calls) == size else None)
