"""The dashboard's reads: the home page, the appointment calendar and lists, messages, customers and their
history."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.db.models import Case, Count, IntegerField, OuterRef, Q, QuerySet, Subquery, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Business
from calls.models import Appointment, Call, Customer, Message
from calls.selectors.caller_names import annotate_customer_name, with_caller_names
from calls.selectors.local_time import local_day_bounds, local_now
from calls.selectors.search import CALL_LIST_FIELDS

DASHBOARD_PAGE_SIZE = 25
HISTORY_LIMIT = 50  # rows of each kind on a customer's page; the lists have the rest
# Open messages are read most urgent first; the database sorts by this rank so a page is one query.
URGENCY_RANK = Case(When(urgency=Message.Urgency.HIGH, then=0), When(urgency=Message.Urgency.NORMAL, then=1),
                    default=2, output_field=IntegerField())


def open_messages(*, business: Business) -> list[Message]:
    """Messages nobody has handled yet, newest first (dashboard)."""
    return list(Message.objects.filter(business=business, status=Message.Status.OPEN)
                .select_related("customer").order_by("-created_at"))


def appointments_between(*, business: Business, starts_at: dt.datetime, ends_at: dt.datetime) -> list[Appointment]:
    """Appointments starting in [starts_at, ends_at), with their customers (dashboard)."""
    return list(Appointment.objects.filter(business=business, starts_at__gte=starts_at, starts_at__lt=ends_at)
                .select_related("customer").order_by("starts_at"))


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
    # Every call of theirs, as their page counts them (`customer_calls`): the phone calls from the number, plus
    # the calls linked by an appointment or a message that are not among those. Three indexed counts per row; one
    # OR across them would make PostgreSQL scan the business's every call for every customer.
    phone_calls = (Call.objects.filter(business_id=OuterRef("business_id"), channel=Call.Channel.TWILIO,
                                       from_number=OuterRef("phone"))
                   .order_by().values("business_id").annotate(n=Count("id")).values("n"))
    booked_by = (Appointment.objects.filter(customer_id=OuterRef("pk"), created_by_call__isnull=False,
                                            created_by_call__business_id=OuterRef("business_id"))
                 .exclude(created_by_call__channel=Call.Channel.TWILIO,
                          created_by_call__from_number=OuterRef("phone"))
                 .order_by().values("customer_id").annotate(n=Count("created_by_call_id", distinct=True))
                 .values("n"))
    left_by = (Message.objects.filter(customer_id=OuterRef("pk"), call__isnull=False,
                                      call__business_id=OuterRef("business_id"))
               .exclude(call__channel=Call.Channel.TWILIO, call__from_number=OuterRef("phone"))
               .exclude(call_id__in=Appointment.objects.filter(customer_id=OuterRef(OuterRef("pk")))
                        .exclude(created_by_call__isnull=True).values("created_by_call_id"))
               .order_by().values("customer_id").annotate(n=Count("call_id", distinct=True)).values("n"))
    rows = Customer.objects.filter(business=business).annotate(
        calls=Coalesce(Subquery(phone_calls), 0) + Coalesce(Subquery(booked_by), 0) + Coalesce(Subquery(left_by), 0))
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
    """A customer's calls, appointments and messages, newest first, HISTORY_LIMIT of each; `call_count` is every
    call of theirs (see `customer_calls`)."""

    customer: Customer
    calls: list[Call]
    call_count: int
    appointments: list[Appointment]
    messages: list[Message]
    more_calls: bool
    more_appointments: bool
    more_messages: bool


def _linked_call_ids(customer: Customer) -> list[int]:
    """The calls that booked one of the customer's appointments or left one of their messages (a browser test
    call among them, when it did)."""
    booked = Appointment.objects.filter(customer=customer, created_by_call__isnull=False).order_by() \
        .values_list("created_by_call_id", flat=True)
    left = Message.objects.filter(customer=customer, call__isnull=False).order_by().values_list("call_id", flat=True)
    return list(booked.union(left))


def customer_calls(*, customer: Customer) -> QuerySet[Call]:
    """The customer's calls, in their own business: phone calls from their number, and any call that booked one of
    their appointments or left one of their messages. The linked ids are read first, so the calls query is an OR
    of two index lookups rather than a scan of every call the business has."""
    linked = Q(id__in=_linked_call_ids(customer))
    return Call.objects.filter(Q(channel=Call.Channel.TWILIO, from_number=customer.phone) | linked,
                               business_id=customer.business_id)


def customer_history(*, customer: Customer, limit: int = HISTORY_LIMIT) -> CustomerHistory:
    """Five queries whatever the customer's history; every row is of the customer's own business."""
    business_id = customer.business_id
    all_calls = customer_calls(customer=customer)
    calls = with_caller_names(annotate_customer_name(all_calls.only(*CALL_LIST_FIELDS))
                              .order_by("-started_at", "-id")[:limit + 1])
    call_count = len(calls) if len(calls) <= limit else all_calls.count()
    appointments = list(Appointment.objects.filter(business_id=business_id, customer=customer)
                        .order_by("-starts_at", "-id")[:limit + 1])
    messages = list(Message.objects.filter(business_id=business_id, customer=customer)
                    .select_related("handled_by").order_by("-created_at", "-id")[:limit + 1])
    return CustomerHistory(customer=customer, calls=calls[:limit], call_count=call_count,
                           appointments=appointments[:limit],
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
        latest_calls=with_caller_names(annotate_customer_name(Call.objects.filter(business=business)
                                                              .only(*CALL_LIST_FIELDS))
                                       .order_by("-started_at", "-id")[:rows]),
        top_open_messages=list(open_rows[:rows]),
        appointments_today=appointments_today,
    )
