from __future__ import annotations

import csv
import datetime
from collections.abc import AsyncIterator
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.timezone import localtime
from django.views.decorators.http import require_POST

from accounts.access import business_view, get_for_business
from accounts.models import Business
from calls import analytics, charts, forms
from calls.models import Appointment, Call, Customer, Message, NotificationSettings, WebhookEndpoint
from calls.selectors import dashboard as dashboard_reads, export, local_time, search, timeline
from calls.selectors.setup import setup_checklist
from calls.services import bookings, messages as message_writes, notification_settings
from calls.services.errors import ActionError


@business_view()
def dashboard(request: HttpRequest) -> HttpResponse:
    """The home page: setup checklist, today's figures, the latest calls, open messages, today's appointments."""
    checklist = setup_checklist(request.business)
    return render(request, "accounts/dashboard.html", {
        "checklist": checklist, "setup_done": all(item.done for item in checklist),
        "home": dashboard_reads.dashboard_home(business=request.business), "now": timezone.now()})


@business_view(owner_only=True)
def settings_notifications(request: HttpRequest) -> HttpResponse:
    """Email switch and outbound webhook. A new signing secret is shown once, in the answer to the POST."""
    business = request.business
    current = NotificationSettings.objects.filter(business=business).first()
    endpoint = WebhookEndpoint.objects.filter(business=business).first()
    initial = {"email_mode": current.email_mode if current else NotificationSettings.EmailMode.ALL,
               "webhook_url": endpoint.url if endpoint and endpoint.is_active else ""}
    form = forms.NotificationSettingsForm(request.POST or None, initial=initial)
    new_secret = ""
    if request.method == "POST" and form.is_valid():
        endpoint, new_secret = notification_settings.notification_settings_save(
            business=business, email_mode=form.cleaned_data["email_mode"],
            webhook_url=form.cleaned_data["webhook_url"], rotate_secret=form.cleaned_data["rotate_secret"])
        if not new_secret:
            messages.success(request, "Notification settings saved.")
            return redirect("settings_notifications")
        form = forms.NotificationSettingsForm(initial={"email_mode": form.cleaned_data["email_mode"],
                                                       "webhook_url": endpoint.url if endpoint else ""})
    return render(request, "calls/settings_notifications.html",
                  {"form": form, "endpoint": endpoint, "new_secret": new_secret,
                   "deliveries": endpoint.deliveries.order_by("-created_at")[:10] if endpoint else []})


# --- dashboard: appointments, messages, customers ----------------------------------------------------------

APPOINTMENT_VIEWS = ("upcoming", "past", "day", "week")


def _page(request: HttpRequest, rows: QuerySet) -> Page:
    return Paginator(rows, dashboard_reads.DASHBOARD_PAGE_SIZE).get_page(request.GET.get("page"))


def _back(request: HttpRequest, fallback: str) -> str:
    """Where a dashboard form came from (its `next` field, same site only), else the `fallback` page."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse(fallback)


def _day_from_query(value: str) -> datetime.date | None:
    """A `date=YYYY-MM-DD` parameter; None when missing, malformed or too far out to step a week from."""
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        return None
    return day if 1900 <= day.year <= 2999 else None


@business_view()
def appointment_list(request: HttpRequest) -> HttpResponse:
    """Upcoming and past appointments as lists; a day or a week as a calendar, in the business's time zone."""
    business = request.business
    view = request.GET.get("view", "upcoming")
    if view not in APPOINTMENT_VIEWS:
        view = "upcoming"
    # With no services listed nobody can book: the empty views say so.
    context: dict = {"view": view, "now": timezone.now(), "has_services": business.services.exists()}
    if view in ("day", "week"):
        day = _day_from_query(request.GET.get("date", "")) or local_time.local_now(business=business).date()
        context["calendar"] = dashboard_reads.appointment_calendar(business=business, view=view, day=day)
    else:
        rows = (dashboard_reads.appointments_upcoming if view == "upcoming" else dashboard_reads.appointments_past)(
                        business=business, now=context["now"])
        context["page"] = _page(request, rows)
    return render(request, "calls/appointment_list.html", context)


@require_POST
@business_view()
def appointment_cancel(request: HttpRequest, appointment_id: int) -> HttpResponse:
    appointment = get_for_business(Appointment, request.business, pk=appointment_id)
    was_cancelled = appointment.status == Appointment.Status.CANCELLED
    try:
        bookings.appointment_cancel(business_id=request.business.id, appointment_id=appointment.id)
    except ActionError as exc:
        messages.error(request, str(exc))
    else:
        when = date_format(localtime(appointment.starts_at, request.business.tzinfo), "D j M Y, H:i")
        messages.success(request, f"{appointment.service_name} on {when} was already cancelled." if was_cancelled
                         else f"Cancelled {appointment.service_name} on {when}.")
    return redirect(_back(request, "appointment_list"))


@business_view()
def message_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", Message.Status.OPEN)
    if status not in Message.Status.values:
        status = Message.Status.OPEN
    rows = dashboard_reads.messages_for_dashboard(business=request.business, status=status)
    return render(request, "calls/message_list.html", {
        "status": status, "page": _page(request, rows),
        "counts": dashboard_reads.message_counts(business=request.business)})


@require_POST
@business_view()
def message_handle(request: HttpRequest, message_id: int) -> HttpResponse:
    message = get_for_business(Message, request.business, pk=message_id)
    message_writes.message_mark_handled(business_id=request.business.id, message_id=message.id, user=request.user)
    messages.success(request, f"{message.name}'s message is marked handled.")
    return redirect(_back(request, "message_list"))


@require_POST
@business_view()
def message_reopen(request: HttpRequest, message_id: int) -> HttpResponse:
    message = get_for_business(Message, request.business, pk=message_id)
    message_writes.message_reopen(business_id=request.business.id, message_id=message.id)
    messages.success(request, f"{message.name}'s message is open again.")
    return redirect(_back(request, "message_list"))


@business_view()
def customer_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    rows = dashboard_reads.customers_search(business=request.business, query=query)
    return render(request, "calls/customer_list.html", {"query": query, "page": _page(request, rows)})


@business_view()
def customer_detail(request: HttpRequest, customer_id: int) -> HttpResponse:
    customer = get_for_business(Customer, request.business, pk=customer_id)
    return render(request, "calls/customer_detail.html", {
        "history": dashboard_reads.customer_history(customer=customer), "now": timezone.now()})


@business_view()
def analytics_page(request: HttpRequest) -> HttpResponse:
    """Charts of the business's calls over a chosen period of local days (default: the last 30)."""
    business = request.business
    form = forms.AnalyticsPeriodForm(request.GET, today=timezone.localdate(timezone=business.tzinfo))
    report = analytics.analytics_report(business, form.chosen_period()) if form.is_valid() else None
    channel = request.GET.get("channel", "") if request.GET.get("channel") in dict(form.CHANNEL_CHOICES) else ""
    channel_links = []
    for value, label in form.CHANNEL_CHOICES:  # the same period, another set of calls
        query = request.GET.copy()
        query.pop("channel", None)
        if value:
            query["channel"] = value
        channel_links.append({"label": label, "href": "?" + query.urlencode(), "current": value == channel})
    return render(request, "calls/analytics.html", {
        "form": form, "report": report, "charts": charts.analytics_charts(report) if report else None,
        "figures": charts.headline_figures(report) if report else [], "channel": channel,
        "channel_links": channel_links,
        "export_query": urlencode({name: request.GET[name] for name in form.fields if request.GET.get(name)})})


@business_view()
def analytics_export(request: HttpRequest) -> HttpResponse:
    """The analytics page's figures for the same period and calls, as CSV: a row per local day, then the totals."""
    business = request.business
    form = forms.AnalyticsPeriodForm(request.GET, today=timezone.localdate(timezone=business.tzinfo))
    if not form.is_valid():  # the page says what is wrong with the period
        return redirect(f"{reverse('analytics')}?{request.GET.urlencode()}")
    period = form.chosen_period()
    rows = analytics.analytics_csv_rows(analytics.analytics_report(business, period))
    response = StreamingHttpResponse(_csv_lines(header=analytics.ANALYTICS_CSV_COLUMNS, rows=rows),
                                     content_type="text/csv; charset=utf-8")
    name = f"analytics-{period.start:%Y-%m-%d}-to-{period.end:%Y-%m-%d}{'-' + period.channel if period.channel else ''}"
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    return response


# --- dashboard: calls list, detail and CSV export ---------------------------------------------------------

def _call_filter_form(request: HttpRequest) -> forms.CallFilterForm:
    form = forms.CallFilterForm(request.GET)
    form.is_valid()  # invalid fields are reported on the page and left out of the filters
    return form


@business_view()
def call_list(request: HttpRequest) -> HttpResponse:
    """Newest calls first, filtered and searched, 50 a page (keyset paging: as fast on page 2,000 as on page 1)."""
    form = _call_filter_form(request)
    filters = form.filters()
    page = search.call_list_page(business=request.business, filters=filters,
                                 after=request.GET.get("after"), before=request.GET.get("before"))
    filter_params = {name: request.GET[name] for name in form.fields
                     if request.GET.get(name) and name not in form.errors}
    return render(request, "calls/call_list.html", {
        "form": form, "filters": filters, "page": page, "filter_query": urlencode(filter_params),
        "first_page": page.newer is None})


@business_view()
def call_detail(request: HttpRequest, call_id: int) -> HttpResponse:
    call = get_for_business(Call.objects.defer("search_vector"), request.business, pk=call_id)
    return render(request, "calls/call_detail.html",
                  {"detail": timeline.call_detail(call=call, business=request.business)})


class _Echo:
    """csv.writer writes into this and gets the line back, so rows can be streamed one at a time."""

    def write(self, value: str) -> str:
        return value


EXPORT_CHUNK_ROWS = 500


async def _csv_chunks(*, business: Business, filters: search.CallFilters) -> AsyncIterator[str]:
    """The header, then the rows a chunk at a time, each read from the database off the event loop. An async
    iterator: under ASGI, Django collects a sync one into memory before sending any of it."""
    writer = csv.writer(_Echo())
    yield writer.writerow(export.CSV_COLUMNS)
    after = None
    while True:
        rows, after = await sync_to_async(export.calls_csv_chunk)(business=business, filters=filters,
                                                                after=after, size=EXPORT_CHUNK_ROWS)
        if rows:
            yield "".join(writer.writerow(row) for row in rows)
        if after is None:
            return


async def _csv_lines(*, header: list[str], rows: list[list[object]]) -> AsyncIterator[str]:
    """Rows already read, written out as CSV lines; an async iterator, so ASGI sends them as they are written."""
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)


@business_view()
def call_export(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered calls list as CSV, every page, streamed in chunks as they are read."""
    filters = _call_filter_form(request).filters()
    filename = f"calls-{timezone.localdate(timezone=request.business.tzinfo):%Y-%m-%d}.csv"
    response = StreamingHttpResponse(_csv_chunks(business=request.business, filters=filters),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
