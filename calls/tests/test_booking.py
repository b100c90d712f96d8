"""Booking, moving and cancelling appointments, and what keeps two of them from overlapping."""

import datetime as dt
import threading

import pytest
from django.db import IntegrityError, connection, transaction

from calls.models import Appointment, Customer
from calls.selectors import callers, local_time
from calls.services import bookings, customers
from calls.services.errors import ActionError, NotFound, SlotTaken
from calls.tools import run_business_tool
from tests.factories import (make_appointment, make_business, make_call, make_closed_date, make_customer, make_hours,
                             make_service)

UTC = dt.timezone.utc
MONDAY = dt.date(2026, 12, 7)
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql",
                                     reason="exclusion constraints and row locks exist on PostgreSQL only")


@pytest.fixture
def business(db):
    business = make_business(name="Harbor Clinic", time_zone="America/New_York")
    make_hours(business, weekday=0, opens="09:00", closes="12:00")
    make_service(business, "Cleaning", minutes=30)
    make_service(business, "Check-up", minutes=60)
    return business


def at(business, wall: str, day: dt.date = MONDAY) -> dt.datetime:
    return local_time.local_to_utc(day, dt.time.fromisoformat(wall), business)


def book(business, wall: str, *, service="Cleaning", phone="+14155550123", name="Dana Scully", now=NOW, **kwargs):
    return bookings.appointment_book(business_id=business.id, service_name=service, customer_name=name, phone=phone,
                                     start=at(business, wall), now=now, **kwargs)


def test_it_books_at_the_local_time_and_stores_it_in_utc(business):
    appointment = book(business, "10:30")
    appointment.refresh_from_db()
    assert appointment.starts_at == dt.datetime(2026, 12, 7, 15, 30, tzinfo=UTC)  # EST is UTC-5
    assert appointment.ends_at == dt.datetime(2026, 12, 7, 16, 0, tzinfo=UTC)
    assert appointment.service_name == "Cleaning"
    assert appointment.status == Appointment.Status.BOOKED


def test_it_creates_the_customer_by_phone_with_the_name(business):
    appointment = book(business, "10:30", phone="+1 415 555 0123", name="Dana Scully")
    assert (appointment.customer.phone, appointment.customer.name) == ("+14155550123", "Dana Scully")


def test_booking_again_from_the_same_number_reuses_the_customer_and_keeps_the_new_name(business):
    customer = make_customer(business, phone="+14155550123", name="Dana")
    appointment = book(business, "10:30", phone="+14155550123", name="Dana Scully")
    assert appointment.customer == customer
    customer.refresh_from_db()
    assert customer.name == "Dana Scully"
    assert Customer.objects.count() == 1


def test_it_links_the_appointment_to_the_call_that_made_it(business):
    call = make_call(business)
    assert book(business, "10:30", call_id=call.id).created_by_call == call


def test_an_overlapping_booking_is_refused(business):
    book(business, "10:00", service="Check-up")
    with pytest.raises(SlotTaken):
        book(business, "10:30", phone="+14155550199")
    assert Appointment.objects.count() == 1


def test_a_booking_right_after_another_is_allowed(business):
    book(business, "10:00", service="Check-up")
    assert book(business, "11:00", phone="+14155550199").starts_at == at(business, "11:00")


def test_a_booking_over_a_cancelled_appointment_is_allowed(business):
    make_appointment(business, at(business, "10:00"), minutes=60, status="cancelled")
    assert book(business, "10:00").status == Appointment.Status.BOOKED


def test_a_booking_outside_the_opening_hours_is_refused(business):
    with pytest.raises(ActionError, match="outside the opening hours"):
        book(business, "08:30")


def test_a_booking_that_would_run_past_closing_is_refused(business):
    with pytest.raises(ActionError, match="outside the opening hours"):
        book(business, "11:30", service="Check-up")


def test_a_booking_on_a_closed_date_is_refused(business):
    make_closed_date(business, "2026-12-07")
    with pytest.raises(ActionError, match="outside the opening hours"):
        book(business, "10:00")


def test_a_booking_in_the_past_is_refused(business):
    with pytest.raises(ActionError, match="in the past"):
        book(business, "10:00", now=at(business, "10:05"))


def test_a_booking_needs_a_valid_phone_number(business):
    with pytest.raises(ActionError, match="phone number is not valid"):
        book(business, "10:00", phone="0123")


def test_a_booking_needs_a_known_service(business):
    with pytest.raises(ActionError, match="The services are: Check-up, Cleaning"):
        book(business, "10:00", service="Massage")


def test_rescheduling_keeps_the_id_and_the_length(business):
    appointment = book(business, "09:00", service="Check-up")
    moved = bookings.appointment_reschedule(business_id=business.id, appointment_id=appointment.id,
                                            start=at(business, "10:45"), now=NOW)
    assert moved.id == appointment.id
    assert (moved.starts_at, moved.ends_at) == (at(business, "10:45"), at(business, "11:45"))


def test_rescheduling_may_overlap_the_appointments_own_old_time(business):
    appointment = book(business, "09:00", service="Check-up")
    moved = bookings.appointment_reschedule(business_id=business.id, appointment_id=appointment.id,
                                            start=at(business, "09:30"), now=NOW)
    assert moved.starts_at == at(business, "09:30")


def test_rescheduling_onto_another_booking_is_refused(business):
    appointment = book(business, "09:00")
    book(business, "10:00", phone="+14155550199")
    with pytest.raises(SlotTaken):
        bookings.appointment_reschedule(business_id=business.id, appointment_id=appointment.id,
                                        start=at(business, "10:15"), now=NOW)


def test_a_cancelled_appointment_cannot_be_rescheduled(business):
    appointment = make_appointment(business, at(business, "09:00"), status="cancelled")
    with pytest.raises(ActionError, match="cancelled"):
        bookings.appointment_reschedule(business_id=business.id, appointment_id=appointment.id,
                                        start=at(business, "10:00"), now=NOW)


def test_cancelling_twice_is_harmless(business):
    appointment = book(business, "09:00")
    bookings.appointment_cancel(business_id=business.id, appointment_id=appointment.id, now=NOW)
    again = bookings.appointment_cancel(business_id=business.id, appointment_id=appointment.id, now=NOW)
    assert again.status == Appointment.Status.CANCELLED
    assert again.cancelled_at == NOW


def test_a_past_appointment_cannot_be_cancelled(business):
    appointment = book(business, "09:00")
    with pytest.raises(ActionError, match="already started or is over"):
        bookings.appointment_cancel(business_id=business.id, appointment_id=appointment.id,
                                    now=at(business, "09:10"))


def test_another_businesss_appointment_cannot_be_cancelled(business):
    appointment = make_appointment(make_business(), at(business, "09:00"))
    with pytest.raises(NotFound):
        bookings.appointment_cancel(business_id=business.id, appointment_id=appointment.id, now=NOW)


def test_recording_a_call_creates_the_customer_and_counts_the_call_once(business):
    call = make_call(business)
    customers.customer_record_call(business_id=business.id, phone="+14155550123", call_id=call.id)
    customer = customers.customer_record_call(business_id=business.id, phone="+14155550123", call_id=call.id)
    assert (customer.phone, customer.call_count, customer.last_call_id) == ("+14155550123", 1, call.id)


def test_recording_the_next_call_counts_it_and_updates_last_seen(business):
    long_ago = dt.datetime(2025, 1, 1, tzinfo=UTC)
    customer = make_customer(business, call_count=3, first_seen_at=long_ago, last_seen_at=long_ago)
    customer = customers.customer_record_call(business_id=business.id, phone=customer.phone,
                                             call_id=make_call(business).id)
    assert customer.call_count == 4
    assert customer.last_seen_at > long_ago
    assert customer.first_seen_at == long_ago


def test_recording_a_call_from_a_withheld_or_invalid_number_creates_nobody(business):
    assert customers.customer_record_call(business_id=business.id, phone="", call_id=None) is None
    assert customers.customer_record_call(business_id=business.id, phone="Browser test", call_id=None) is None
    assert not Customer.objects.exists()


def test_caller_context_gives_a_returning_callers_name_and_bookings(business):
    customer = make_customer(business, name="Dana Scully")
    make_appointment(business, at(business, "09:00"), customer=customer)
    context = callers.caller_context(business_id=business.id, phone="+14155550123", now=NOW)
    assert context["name"] == "Dana Scully"
    assert [a["start"] for a in context["upcoming_appointments"]] == ["2026-12-07T09:00"]


def test_caller_context_is_none_for_an_unknown_or_invalid_number(business):
    make_customer(make_business(), phone="+14155550123")
    assert callers.caller_context(business_id=business.id, phone="+14155550123") is None
    assert callers.caller_context(business_id=business.id, phone="anonymous") is None


# --- the database's own guarantee (PostgreSQL) ------------------------------------------------------------

@postgresql_only
def test_the_database_refuses_an_overlapping_booked_appointment(business):
    make_appointment(business, at(business, "09:00"), minutes=60)
    with pytest.raises(IntegrityError, match="appointment_no_overlap"), transaction.atomic():
        make_appointment(business, at(business, "09:45"), minutes=30)


def test_the_database_allows_an_overlapping_cancelled_appointment_and_other_businesses(business):
    make_appointment(business, at(business, "09:00"), minutes=60)
    make_appointment(business, at(business, "09:30"), minutes=30, status="cancelled")
    make_appointment(make_business(), at(business, "09:30"), minutes=30)
    assert Appointment.objects.count() == 3


def test_the_database_refuses_an_appointment_that_ends_before_it_starts(business):
    with pytest.raises(IntegrityError), transaction.atomic():
        make_appointment(business, at(business, "09:00"), minutes=-30)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_two_calls_booking_the_same_slot_at_once_get_one_appointment():
    business = make_business(time_zone="America/New_York")
    make_hours(business, weekday=0, opens="09:00", closes="12:00")
    make_service(business, "Cleaning", minutes=30)
    calls = [make_call(business, from_number=phone) for phone in ("+14155550123", "+14155550199")]
    barrier = threading.Barrier(2)
    results: list[dict] = []

    def caller(call) -> None:
        try:
            barrier.wait(timeout=5)
            results.append(run_business_tool(
                business_id=business.id, call_id=call.id, name="book_appointment",
                arguments={"name": f"Caller {call.from_number[-4:]}", "service": "Cleaning",
                           "start": "2030-01-07T10:00"}))
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=caller, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert Appointment.objects.filter(status="booked").count() == 1
    assert sorted("error" in r for r in results) == [False, True]
    taken = next(r for r in results if "error" in r)
    assert taken["error"].startswith("That time was just taken.")
    assert "2030-01-07T10:00" not in taken["alternatives"]
    assert taken["alternatives"]


@pytest.mark.parametrize("change", ["cancel", "reschedule"])
def test_a_change_on_behalf_of_a_caller_refuses_another_customers_appointment(business, change):
    appointment = book(business, "09:00", phone="+14155550199")
    with pytest.raises(NotFound) as refused:
        if change == "cancel":
            bookings.appointment_cancel(business_id=business.id, appointment_id=appointment.id,
                                        customer_phone="+14155550123", now=NOW)
        else:
            bookings.appointment_reschedule(business_id=business.id, appointment_id=appointment.id,
                                            start=at(business, "10:00"), customer_phone="+14155550123", now=NOW)
    assert str(refused.value) == bookings.NOT_THE_CALLERS_APPOINTMENT
    appointment.refresh_from_db()
    assert (appointment.status, appointment.starts_at) == ("booked", at(business, "09:00"))
