"""Appointments booked, moved and cancelled (on a call by the receptionist's tools, or from the dashboard);
bookings of one business are serialised on its row and backed by the database's no-overlap constraint."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Business
from calls.models import Appointment
from calls.selectors import availability, local_time
from calls.services.customers import customer_get_or_create
from calls.services.errors import ActionError, NotFound, SlotTaken, phone_or_error


OVERLAP_CONSTRAINT = "appointment_no_overlap"
SLOT_TAKEN_MESSAGE = "That time was just taken."
# One answer for an id that is missing, another business's, or another caller's: ids can't be probed.
NOT_THE_CALLERS_APPOINTMENT = (
    "No booking with that appointment_id is held under the number the caller is calling from, so it can't be "
    "changed on this call. Use find_appointments to see the caller's own bookings. If they mean a booking made "
    "under another number or for someone else, don't look for it: offer to take a message so the team can help.")



def _locked_business(business_id: int) -> Business:
    """Lock the business row (call inside a transaction): bookings of one business queue behind each other.

    SQLite has no row locks and takes its single write lock at a transaction's first write, so there a no-op
    write comes first; a concurrent booking then waits for this one instead of failing with "database is locked".
    """
    if connection.vendor == "sqlite":
        Business.objects.filter(id=business_id).update(updated_at=F("updated_at"))
    business = Business.objects.select_for_update().filter(id=business_id).first()
    if business is None:
        raise NotFound("This business no longer exists.")
    return business


def _check_bookable(*, business: Business, starts_at: datetime, ends_at: datetime, now: datetime,
                    exclude_appointment_id: int | None = None) -> None:
    if starts_at <= now:
        raise ActionError("That time is in the past. Choose a time later than now "
                          f"({local_time.format_local(now, business)} local time).")
    if not availability.fits_opening_hours(business=business, starts_at=starts_at, ends_at=ends_at):
        raise ActionError("That time is outside the opening hours (the whole appointment must fit in them). "
                          "Use check_availability to find a free time.")
    if availability.booked_between(business=business, starts_at=starts_at, ends_at=ends_at,
                                   exclude_appointment_id=exclude_appointment_id):
        raise SlotTaken(SLOT_TAKEN_MESSAGE)



def appointment_book(*, business_id: int, service_name: str, customer_name: str, phone: str, start: datetime,
                     notes: str = "", call_id: int | None = None, now: datetime | None = None) -> Appointment:
    """Book `service_name` at `start` (aware) for the customer with that phone number (created or renamed).

    Bookings of one business are serialised by a lock on its row and re-checked inside it; on PostgreSQL the
    exclusion constraint backs that up. A time that overlaps a booked appointment raises SlotTaken.
    """
    customer_name = customer_name.strip()
    if not customer_name:
        raise ActionError("The caller's name is needed to book. Ask for it.")
    phone = phone_or_error(phone)
    now = now or timezone.now()
    try:
        with transaction.atomic():
            business = _locked_business(business_id)
            service = availability.service_by_name(business=business, name=service_name)
            if service is None:
                raise ActionError(availability.unknown_service_message(business=business, name=service_name))
            starts_at = start.astimezone(dt_timezone.utc)
            ends_at = starts_at + timedelta(minutes=service.duration_minutes)
            _check_bookable(business=business, starts_at=starts_at, ends_at=ends_at, now=now)
            customer = customer_get_or_create(business=business, phone=phone, name=customer_name, rename=True)
            return Appointment.objects.create(
                business=business, customer=customer, service=service, service_name=service.name,
                starts_at=starts_at, ends_at=ends_at, notes=notes.strip(), created_by_call_id=call_id)
    except IntegrityError as exc:
        if OVERLAP_CONSTRAINT in str(exc):  # a write that skipped the lock (admin, another code path)
            raise SlotTaken(SLOT_TAKEN_MESSAGE) from exc
        raise


def _appointment_for_update(*, business_id: int, appointment_id: int, customer_phone: str | None) -> Appointment:
    """The appointment, locked; with `customer_phone`, only if it is that customer's (else the same NotFound
    whether the id exists or not)."""
    rows = Appointment.objects.select_for_update(of=("self",)).filter(business_id=business_id, id=appointment_id)
    if customer_phone is not None:
        rows = rows.filter(customer__phone=customer_phone) if customer_phone else rows.none()
    appointment = rows.first()
    if appointment is None:
        if customer_phone is not None:
            raise NotFound(NOT_THE_CALLERS_APPOINTMENT)
        raise NotFound(f"There is no appointment {appointment_id}. Use find_appointments to look it up.")
    return appointment


def appointment_reschedule(*, business_id: int, appointment_id: int, start: datetime,
                           customer_phone: str | None = None, now: datetime | None = None) -> Appointment:
    """Move a booked, future appointment to `start`, keeping its id and length. Raises SlotTaken on overlap.

    With `customer_phone` (a caller's own number) only that customer's appointment can be moved."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            business = _locked_business(business_id)
            appointment = _appointment_for_update(business_id=business.id, appointment_id=appointment_id,
                                                  customer_phone=customer_phone)
            if appointment.status != Appointment.Status.BOOKED:
                raise ActionError(f"That appointment is {appointment.get_status_display().lower()}, so it can't "
                                  "be moved. Book a new one instead.")
            if appointment.starts_at <= now:
                raise ActionError("That appointment has already started or is over, so it can't be moved.")
            starts_at = start.astimezone(dt_timezone.utc)
            ends_at = starts_at + (appointment.ends_at - appointment.starts_at)
            _check_bookable(business=business, starts_at=starts_at, ends_at=ends_at, now=now,
                            exclude_appointment_id=appointment.id)
            appointment.starts_at, appointment.ends_at = starts_at, ends_at
            appointment.save(update_fields=["starts_at", "ends_at", "updated_at"])
            return appointment
    except IntegrityError as exc:
        if OVERLAP_CONSTRAINT in str(exc):
            raise SlotTaken(SLOT_TAKEN_MESSAGE) from exc
        raise


@transaction.atomic
def appointment_cancel(*, business_id: int, appointment_id: int, customer_phone: str | None = None,
                       now: datetime | None = None) -> Appointment:
    """Cancel a booked, future appointment. Cancelling a cancelled one returns it unchanged (idempotent).

    With `customer_phone` (a caller's own number) only that customer's appointment can be cancelled."""
    now = now or timezone.now()
    appointment = _appointment_for_update(business_id=business_id, appointment_id=appointment_id,
                                          customer_phone=customer_phone)
    if appointment.status == Appointment.Status.CANCELLED:
        return appointment
    if appointment.status != Appointment.Status.BOOKED:
        raise ActionError(f"That appointment is {appointment.get_status_display().lower()}; it can't be cancelled.")
    if appointment.starts_at <= now:
        raise ActionError("That appointment has already started or is over, so it can't be cancelled.")
    appointment.status = Appointment.Status.CANCELLED
    appointment.cancelled_at = now
    appointment.save(update_fields=["status", "cancelled_at", "updated_at"])
    return appointment
