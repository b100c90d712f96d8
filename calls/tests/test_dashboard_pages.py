"""The dashboard's home, appointments, messages and customers pages."""

import datetime as dt
import zoneinfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from calls.models import Appointment, Message
from calls.selectors import dashboard, local_time
from calls.services import messages
from calls.services.errors import NotFound
from tests.factories import (add_member, make_appointment, make_business, make_call, make_customer, make_message,
                             make_user)

LA = zoneinfo.ZoneInfo("America/Los_Angeles")
UTC = dt.timezone.utc


def la(*args: int) -> dt.datetime:
    """An aware Los Angeles wall time (Alice's business is in Los Angeles)."""
    return dt.datetime(*args, tzinfo=LA)


@pytest.fixture
def owner(client, alice, alices_business):
    client.force_login(alice)
    return client


def page_text(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


# --- appointments: day and week views in the business's time zone -------------------------------------------

def test_day_view_puts_a_late_evening_appointment_on_its_local_day(owner, alices_business):
    # 23:30 in Los Angeles is 06:30 UTC the next day.
    make_appointment(alices_business, la(2026, 3, 10, 23, 30), notes="Late-evening cleaning")
    url = reverse("appointment_list")

    on_the_day = owner.get(url, {"view": "day", "date": "2026-03-10"})
    next_day = owner.get(url, {"view": "day", "date": "2026-03-11"})

    assert "Late-evening cleaning" in page_text(on_the_day) and "23:30–00:00" in page_text(on_the_day)
    assert "Late-evening cleaning" not in page_text(next_day)


def test_week_view_groups_appointments_by_local_date_across_a_dst_change(owner, alices_business):
    # Clocks go forward in Los Angeles on Sunday 2026-03-08: that day is 23 hours long.
    sunday_night = make_appointment(alices_business, la(2026, 3, 8, 23, 30))
    monday_after = make_appointment(alices_business, la(2026, 3, 9, 0, 15))
    saturday = make_appointment(alices_business, la(2026, 3, 7, 9, 0))

    response = owner.get(reverse("appointment_list"), {"view": "week", "date": "2026-03-04"})

    days = {day.date: [a.id for a in day.appointments] for day in response.context["calendar"].days}
    assert sorted(days) == [dt.date(2026, 3, d) for d in range(2, 9)]  # Monday to Sunday
    assert days[dt.date(2026, 3, 8)] == [sunday_night.id]
    assert days[dt.date(2026, 3, 7)] == [saturday.id]
    assert monday_after.id not in sum(days.values(), [])


def test_local_days_are_23_or_25_hours_long_on_dst_days(alices_business):
    spring_start, spring_end = local_time.local_day_bounds(business=alices_business, day=dt.date(2026, 3, 8))
    autumn_start, autumn_end = local_time.local_day_bounds(business=alices_business, day=dt.date(2026, 11, 1))

    assert spring_start == dt.datetime(2026, 3, 8, 8, 0, tzinfo=UTC)  # midnight PST
    assert spring_end - spring_start == dt.timedelta(hours=23)
    assert autumn_end - autumn_start == dt.timedelta(hours=25)


def test_calendar_navigation_steps_a_week_from_the_monday(owner, alices_business):
    response = owner.get(reverse("appointment_list"), {"view": "week", "date": "2026-03-11"})

    page = page_text(response)
    assert response.context["calendar"].days[0].date == dt.date(2026, 3, 9)
    assert "view=week&amp;date=2026-03-04" in page and "view=week&amp;date=2026-03-18" in page


def test_calendar_navigation_steps_a_day(owner, alices_business):
    page = page_text(owner.get(reverse("appointment_list"), {"view": "day", "date": "2026-03-01"}))

    assert "view=day&amp;date=2026-02-28" in page and "view=day&amp;date=2026-03-02" in page


def test_an_invalid_date_shows_the_local_today(owner, alices_business):
    response = owner.get(reverse("appointment_list"), {"view": "day", "date": "2026-02-30"})

    assert response.status_code == 200
    assert response.context["calendar"].days[0].date == timezone.now().astimezone(LA).date()


def test_upcoming_shows_appointments_not_yet_over_and_past_shows_the_rest(owner, alices_business):
    now = timezone.now()
    make_appointment(alices_business, now + dt.timedelta(days=1), notes="Tomorrow visit")
    make_appointment(alices_business, now - dt.timedelta(days=1), notes="Yesterday visit")

    upcoming = page_text(owner.get(reverse("appointment_list")))
    past = page_text(owner.get(reverse("appointment_list"), {"view": "past"}))

    assert "Tomorrow visit" in upcoming and "Yesterday visit" not in upcoming
    assert "Yesterday visit" in past and "Tomorrow visit" not in past


def test_an_appointment_links_its_customer_and_the_call_that_booked_it(owner, alices_business):
    customer = make_customer(alices_business, name="Fox Mulder", phone="+14155550177")
    call = make_call(alices_business, from_number=customer.phone)
    make_appointment(alices_business, timezone.now() + dt.timedelta(days=1), customer=customer, created_by_call=call)

    page = page_text(owner.get(reverse("appointment_list")))

    assert reverse("customer_detail", kwargs={"customer_id": customer.id}) in page
    assert f"/dashboard/calls/{call.id}/" in page


# --- appointments: cancelling ----------------------------------------------------------------------------------

def cancel_url(appointment: Appointment) -> str:
    return reverse("appointment_cancel", kwargs={"appointment_id": appointment.id})


def test_cancelling_a_booked_future_appointment_cancels_it_and_says_so(owner, alices_business):
    appointment = make_appointment(alices_business, timezone.now() + dt.timedelta(days=2))

    response = owner.post(cancel_url(appointment), follow=True)

    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.CANCELLED and appointment.cancelled_at is not None
    assert "Cancelled Consultation on" in page_text(response)


def test_staff_can_cancel_an_appointment(client, bob, alices_business):
    appointment = make_appointment(alices_business, timezone.now() + dt.timedelta(days=2))
    client.force_login(bob)

    client.post(cancel_url(appointment))

    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.CANCELLED


def test_a_past_appointment_cannot_be_cancelled(owner, alices_business):
    appointment = make_appointment(alices_business, timezone.now() - dt.timedelta(hours=2))

    response = owner.post(cancel_url(appointment), follow=True)

    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.BOOKED
    assert "can&#x27;t be cancelled" in page_text(response)


def test_cancelling_a_cancelled_appointment_changes_nothing(owner, alices_business):
    cancelled_at = timezone.now() - dt.timedelta(days=1)
    appointment = make_appointment(alices_business, timezone.now() + dt.timedelta(days=2), status="cancelled",
                                   cancelled_at=cancelled_at)

    response = owner.post(cancel_url(appointment), follow=True)

    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.CANCELLED and appointment.cancelled_at == cancelled_at
    assert "was already cancelled" in page_text(response)


def test_cancelling_needs_a_post(owner, alices_business):
    appointment = make_appointment(alices_business, timezone.now() + dt.timedelta(days=2))

    assert owner.get(cancel_url(appointment)).status_code == 405
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.BOOKED


def test_only_booked_future_appointments_offer_a_cancel_button(owner, alices_business):
    soon = timezone.now() + dt.timedelta(days=1)
    booked = make_appointment(alices_business, soon)
    cancelled = make_appointment(alices_business, soon + dt.timedelta(hours=2), status="cancelled")

    page = page_text(owner.get(reverse("appointment_list")))

    assert f'action="{cancel_url(booked)}"' in page
    assert f'action="{cancel_url(cancelled)}"' not in page
    assert 'name="csrfmiddlewaretoken"' in page


def test_cancelling_returns_to_the_page_it_was_made_from(owner, alices_business):
    appointment = make_appointment(alices_business, timezone.now() + dt.timedelta(days=2))
    week = reverse("appointment_list") + "?view=week&date=2026-03-04"

    response = owner.post(cancel_url(appointment), {"next": week})

    assert response["Location"] == week


def test_cancelling_never_redirects_off_site(owner, alices_business):
    appointment = make_appointment(alices_business, timezone.now() + dt.timedelta(days=2))

    response = owner.post(cancel_url(appointment), {"next": "https://evil.example/"})

    assert response["Location"] == reverse("appointment_list")


# --- messages -------------------------------------------------------------------------------------------------

def test_open_messages_come_most_urgent_first_then_newest(owner, alices_business):
    now = timezone.now()
    make_message(alices_business, body="old normal", created_at=now - dt.timedelta(hours=3))
    make_message(alices_business, body="new normal", created_at=now - dt.timedelta(hours=1))
    make_message(alices_business, body="old high", urgency="high", created_at=now - dt.timedelta(hours=5))
    make_message(alices_business, body="new low", urgency="low", created_at=now)

    response = owner.get(reverse("message_list"))

    assert [m.body for m in response.context["page"].object_list] == ["old high", "new normal", "old normal", "new low"]


def test_the_handled_filter_shows_only_handled_messages(owner, alices_business, alice):
    make_message(alices_business, body="Still open")
    handled = make_message(alices_business, body="Already called back")
    messages.message_mark_handled(business_id=alices_business.id, message_id=handled.id, user=alice)

    open_page = page_text(owner.get(reverse("message_list")))
    handled_page = page_text(owner.get(reverse("message_list"), {"status": "handled"}))

    assert "Still open" in open_page and "Already called back" not in open_page
    assert "Already called back" in handled_page and "Still open" not in handled_page


def test_a_message_shows_its_callback_link_call_and_customer(owner, alices_business):
    customer = make_customer(alices_business, phone="+14155550188", name="Walter Bishop")
    call = make_call(alices_business, from_number=customer.phone)
    make_message(alices_business, customer=customer, call=call, name="Walter Bishop", callback_number=customer.phone,
                 created_at=dt.datetime(2026, 3, 10, 6, 30, tzinfo=UTC))

    page = page_text(owner.get(reverse("message_list")))

    assert 'href="tel:+14155550188"' in page
    assert f"/dashboard/calls/{call.id}/" in page
    assert reverse("customer_detail", kwargs={"customer_id": customer.id}) in page
    assert "Mon 9 Mar 2026, 23:30" in page  # 06:30 UTC, shown in Los Angeles time


def test_marking_a_message_handled_records_who_and_when(client, bob, alices_business):
    message = make_message(alices_business)
    client.force_login(bob)

    response = client.post(reverse("message_handle", kwargs={"message_id": message.id}), follow=True)

    message.refresh_from_db()
    assert message.status == Message.Status.HANDLED and message.handled_by == bob and message.handled_at is not None
    assert "marked handled" in page_text(response)


def test_marking_a_handled_message_again_keeps_who_handled_it_first(alices_business, alice, bob):
    message = make_message(alices_business)
    first = messages.message_mark_handled(business_id=alices_business.id, message_id=message.id, user=bob)

    again = messages.message_mark_handled(business_id=alices_business.id, message_id=message.id, user=alice)

    assert (again.status, again.handled_by, again.handled_at) == ("handled", bob, first.handled_at)


def test_marking_handled_needs_a_post(owner, alices_business):
    message = make_message(alices_business)

    assert owner.get(reverse("message_handle", kwargs={"message_id": message.id})).status_code == 405
    message.refresh_from_db()
    assert message.status == Message.Status.OPEN


def test_reopening_puts_a_message_back_in_the_open_list(owner, alices_business, alice):
    message = make_message(alices_business, body="Call about the invoice")
    messages.message_mark_handled(business_id=alices_business.id, message_id=message.id, user=alice)

    owner.post(reverse("message_reopen", kwargs={"message_id": message.id}))

    message.refresh_from_db()
    assert (message.status, message.handled_at, message.handled_by) == ("open", None, None)
    assert "Call about the invoice" in page_text(owner.get(reverse("message_list")))


# --- customers ------------------------------------------------------------------------------------------------

def test_customer_detail_shows_their_calls_appointments_and_messages_only(owner, alices_business, charlie):
    dana = make_customer(alices_business, phone="+14155550123", name="Dana Scully")
    fox = make_customer(alices_business, phone="+14155550177", name="Fox Mulder")
    make_call(alices_business, from_number=dana.phone, summary="Dana asked about whitening.")
    make_call(alices_business, from_number=fox.phone, summary="Fox asked about parking.")
    # The same number calling another business is that business's caller, not Dana.
    make_call(charlie.memberships.get().business, from_number=dana.phone, summary="Dana called the plumber.")
    soon = timezone.now() + dt.timedelta(days=3)
    make_appointment(alices_business, soon, customer=dana, notes="Dana whitening")
    make_appointment(alices_business, soon + dt.timedelta(hours=1), customer=fox, notes="Fox checkup")
    make_message(alices_business, customer=dana, body="Dana wants a callback")
    make_message(alices_business, customer=fox, name="Fox Mulder", body="Fox wants a callback")

    page = page_text(owner.get(reverse("customer_detail", kwargs={"customer_id": dana.id})))

    for text in ["Dana asked about whitening.", "Dana whitening", "Dana wants a callback"]:
        assert text in page
    for text in ["Fox asked about parking.", "Fox checkup", "Fox wants a callback", "Dana called the plumber."]:
        assert text not in page


def test_customer_detail_shows_the_latest_calls_and_links_to_the_rest(owner, alices_business):
    dana = make_customer(alices_business, phone="+14155550123", name="Dana Scully")
    start = timezone.now() - dt.timedelta(days=30)
    for minutes in range(dashboard.HISTORY_LIMIT + 1):
        make_call(alices_business, from_number=dana.phone, started_at=start + dt.timedelta(minutes=minutes))

    response = owner.get(reverse("customer_detail", kwargs={"customer_id": dana.id}))

    history = response.context["history"]
    assert len(history.calls) == dashboard.HISTORY_LIMIT and history.more_calls
    assert history.calls[-1].started_at == start + dt.timedelta(minutes=1)  # the oldest one is left off
    assert "All calls from this number" in page_text(response)


def test_customer_search_finds_a_name(owner, alices_business):
    make_customer(alices_business, phone="+14155550123", name="Dana Scully")
    make_customer(alices_business, phone="+14155550177", name="Fox Mulder")

    response = owner.get(reverse("customer_list"), {"q": "scul"})

    assert [c.name for c in response.context["page"].object_list] == ["Dana Scully"]


def test_customer_search_finds_a_number_written_with_punctuation(owner, alices_business):
    make_customer(alices_business, phone="+14155550123", name="Dana Scully")
    make_customer(alices_business, phone="+14155550177", name="Fox Mulder")

    response = owner.get(reverse("customer_list"), {"q": "(415) 555-0177"})

    assert [c.name for c in response.context["page"].object_list] == ["Fox Mulder"]


def test_customers_are_listed_most_recently_seen_first_with_their_call_count(owner, alices_business):
    now = timezone.now()
    make_customer(alices_business, phone="+14155550101", name="Seen long ago", last_seen_at=now - dt.timedelta(days=9))
    make_customer(alices_business, phone="+14155550102", name="Seen today", last_seen_at=now, call_count=2)
    for _ in range(2):
        make_call(alices_business, from_number="+14155550102")

    response = owner.get(reverse("customer_list"))

    assert [c.name for c in response.context["page"].object_list] == ["Seen today", "Seen long ago"]
    assert "<td>2</td>" in page_text(response) and "<td>0</td>" in page_text(response)


def test_the_customer_list_is_paginated(owner, alices_business):
    for n in range(dashboard.DASHBOARD_PAGE_SIZE + 1):
        make_customer(alices_business, phone=f"+1415555{n:04d}", name=f"Customer {n}")

    first = owner.get(reverse("customer_list"))
    second = owner.get(reverse("customer_list"), {"page": 2})

    assert len(first.context["page"].object_list) == dashboard.DASHBOARD_PAGE_SIZE
    assert len(second.context["page"].object_list) == 1


# --- the dashboard home ---------------------------------------------------------------------------------------

def test_home_figures_count_local_days(alices_business):
    now = dt.datetime(2026, 3, 10, 7, 30, tzinfo=UTC)  # 00:30 in Los Angeles on the 10th
    make_call(alices_business, started_at=dt.datetime(2026, 3, 10, 7, 15, tzinfo=UTC))  # 00:15 on the 10th
    make_call(alices_business, started_at=dt.datetime(2026, 3, 10, 6, 45, tzinfo=UTC))  # 23:45 on the 9th
    make_call(alices_business, started_at=la(2026, 3, 4, 0, 5))  # the first of the last 7 local days
    make_call(alices_business, started_at=la(2026, 3, 3, 23, 55))  # eight days ago, local

    home = dashboard.dashboard_home(business=alices_business, now=now)

    assert (home.calls_today, home.calls_last_7_days) == (1, 3)


def test_home_shows_figures_latest_calls_open_messages_and_todays_appointments(owner, alices_business, alice):
    now = timezone.now()
    make_call(alices_business, caller_name="Walter Bishop", started_at=now)
    make_call(alices_business, caller_name="Older caller", started_at=now - dt.timedelta(days=3))
    make_message(alices_business, body="Please call about the crown")
    handled = make_message(alices_business, body="Handled already")
    messages.message_mark_handled(business_id=alices_business.id, message_id=handled.id, user=alice)
    make_appointment(alices_business, now, customer=make_customer(alices_business, phone="+14155550177",
                                                                  name="Today's patient"))

    response = owner.get(reverse("dashboard"))

    page = page_text(response)
    home = response.context["home"]
    assert (home.calls_today, home.calls_last_7_days, home.open_messages) == (1, 2, 1)
    assert "Walter Bishop" in page and "Please call about the crown" in page and "Today&#x27;s patient" in page
    assert "Handled already" not in page


def test_home_tells_a_new_business_to_connect_its_number_and_make_a_test_call(client, db):
    owner = make_user()
    make_business(owner=owner, phone_number="")
    client.force_login(owner)

    page = page_text(client.get(reverse("dashboard")))

    assert "No calls yet" in page and "Connect your number" in page
    assert f'href="{reverse("settings_number")}"' in page and "/dashboard/test-call/" in page
    assert "Get started" in page  # the setup checklist


def test_home_with_a_connected_number_offers_a_test_call_not_connecting(owner, alices_business, settings):
    alices_business.phone_number_sid, alices_business.phone_number_webhooks_base = "PN" + "b" * 32, "https://rx.example"
    alices_business.save()
    settings.PUBLIC_BASE_URL = "https://rx.example"
    page = page_text(owner.get(reverse("dashboard")))

    assert "No calls yet" in page and "/dashboard/test-call/" in page
    assert "Connect your number" not in page


# --- tenancy: another business's rows never show ------------------------------------------------------------

@pytest.mark.parametrize("url", [reverse("dashboard"), reverse("appointment_list"),
                                 reverse("appointment_list") + "?view=past",
                                 reverse("appointment_list") + "?view=week&date=2026-03-04",
                                 reverse("message_list"), reverse("message_list") + "?status=handled",
                                 reverse("customer_list"), reverse("customer_list") + "?q=Secret"])
def test_lists_show_none_of_another_business_rows(client, alices_business, alice, charlie, url):
    secret = make_customer(alices_business, name="Secret Patient", phone="+14155550999")
    make_call(alices_business, from_number=secret.phone, caller_name="Secret Patient")
    make_appointment(alices_business, timezone.now() + dt.timedelta(days=1), customer=secret)
    make_appointment(alices_business, la(2026, 3, 5, 10, 0), customer=secret)
    make_message(alices_business, customer=secret, name="Secret Patient", body="secret")
    handled = make_message(alices_business, customer=secret, name="Secret Patient", body="secret")
    messages.message_mark_handled(business_id=alices_business.id, message_id=handled.id, user=alice)
    client.force_login(charlie)

    assert "Secret Patient" not in page_text(client.get(url))


def test_another_business_cannot_handle_a_message(client, alices_business, charlie):
    message = make_message(alices_business)
    client.force_login(charlie)

    assert client.post(reverse("message_handle", kwargs={"message_id": message.id})).status_code == 404
    message.refresh_from_db()
    assert message.status == Message.Status.OPEN


def test_another_business_cannot_cancel_an_appointment(client, alices_business, charlie):
    appointment = make_appointment(alices_business, timezone.now() + dt.timedelta(days=2))
    client.force_login(charlie)

    assert client.post(cancel_url(appointment)).status_code == 404
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.BOOKED


def test_the_message_service_ignores_another_business_id(alices_business, charlie):
    message = make_message(alices_business)
    charlies_business = charlie.memberships.get().business

    with pytest.raises(NotFound):
        messages.message_mark_handled(business_id=charlies_business.id, message_id=message.id, user=charlie)
    message.refresh_from_db()
    assert message.status == Message.Status.OPEN


# --- query counts stay flat in the number of rows -----------------------------------------------------------

def seed_customer_history(business, customer, n: int, *, days_ahead: int = 1) -> None:
    start = timezone.now() + dt.timedelta(days=days_ahead)
    for i in range(n):
        call = make_call(business, from_number=customer.phone)
        make_appointment(business, start + dt.timedelta(hours=i), customer=customer, created_by_call=call)
        make_message(business, customer=customer, call=call, callback_number=customer.phone,
                     urgency=["low", "normal", "high"][i % 3])


def seed_business_rows(business, alice, n: int, *, first: int = 0) -> None:
    now = timezone.now()
    for i in range(first, first + n):
        customer = make_customer(business, phone=f"+1415556{i:04d}", name=f"Customer {i}")
        call = make_call(business, from_number=customer.phone, started_at=now - dt.timedelta(minutes=i))
        make_appointment(business, now + dt.timedelta(hours=i + 1), customer=customer, created_by_call=call)
        make_appointment(business, now - dt.timedelta(days=1, hours=i), customer=customer)
        make_message(business, customer=customer, call=call, callback_number=customer.phone)
        handled = make_message(business, customer=customer, callback_number=customer.phone)
        messages.message_mark_handled(business_id=business.id, message_id=handled.id, user=alice)


def test_customer_detail_runs_the_same_queries_for_one_row_or_many(owner, alices_business, django_assert_num_queries):
    few = make_customer(alices_business, phone="+14155550001")
    many = make_customer(alices_business, phone="+14155550002")
    seed_customer_history(alices_business, few, 1)
    seed_customer_history(alices_business, many, 12, days_ahead=2)
    owner.get(reverse("dashboard"))  # the session's first request may differ
    expected = count_queries(owner, reverse("customer_detail", kwargs={"customer_id": few.id}))

    with django_assert_num_queries(expected):
        owner.get(reverse("customer_detail", kwargs={"customer_id": many.id}))


@pytest.mark.parametrize("url", [reverse("dashboard"), reverse("appointment_list"),
                                 reverse("appointment_list") + "?view=past", reverse("appointment_list") + "?view=week",
                                 reverse("message_list"), reverse("message_list") + "?status=handled",
                                 reverse("customer_list"), reverse("customer_list") + "?q=Customer"])
def test_lists_run_the_same_queries_for_one_row_or_many(owner, alices_business, alice, url,
                                                        django_assert_num_queries):
    seed_business_rows(alices_business, alice, 1)
    owner.get(reverse("dashboard"))  # the session's first request may differ
    expected = count_queries(owner, url)
    seed_business_rows(alices_business, alice, 12, first=1)

    with django_assert_num_queries(expected):
        owner.get(url)


def test_staff_see_the_same_pages(client, alices_business):
    staff = make_user()
    add_member(alices_business, staff)
    client.force_login(staff)

    for name in ["dashboard", "appointment_list", "message_list", "customer_list"]:
        assert client.get(reverse(name)).status_code == 200
