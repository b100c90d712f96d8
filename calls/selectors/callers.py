"""Who is calling: the caller's trusted number, their customer record, appointments and messages, and what
the realtime agent is told about a returning caller."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import Business
from accounts.phone import normalize_e164
from calls.models import Appointment, Call, Customer, Message
from calls.selectors.local_time import format_local, say_local


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
            "start_spoken": say_local(appointment.starts_at, business), "status": str(appointment.status)}


def caller_context(*, business_id: int, phone: str, now: dt.datetime | None = None) -> dict | None:
    """What the realtime agent should know about a returning caller, or None for an unknown number.

    {"name", "previous_calls", "upcoming_appointments": [{"appointment_id", "service", "start", "end",
    "start_spoken", "status"}]}, times in the business's local "YYYY-MM-DDTHH:MM" (and as said aloud).
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
