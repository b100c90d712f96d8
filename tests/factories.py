"""Plain-function factories shared by every app's tests."""

from __future__ import annotations

import datetime as dt
import itertools

from allauth.account.models import EmailAddress

from accounts.models import Business, ClosedDate, FAQEntry, Membership, OpeningHours, Service, User
from calls.models import Appointment, Call, Customer, Message

_seq = itertools.count(1)
PASSWORD = "correct-horse-battery-staple"


def make_user(email: str | None = None, *, password: str = PASSWORD, verified: bool = True) -> User:
    email = email or f"user{next(_seq)}@example.com"
    user = User.objects.create_user(email=email, password=password)
    EmailAddress.objects.create(user=user, email=email, verified=verified, primary=True)
    return user


def make_business(*, owner: User | None = None, name: str | None = None, phone_number: str = "",
                  onboarded: bool = True, **fields) -> Business:
    from django.utils import timezone

    business = Business.objects.create(
        name=name or f"Business {next(_seq)}", phone_number=phone_number,
        onboarded_at=timezone.now() if onboarded else None, **fields)
    if owner is not None:
        Membership.objects.create(user=owner, business=business, role=Membership.Role.OWNER)
    return business


def add_member(business: Business, user: User, role: str = Membership.Role.STAFF) -> Membership:
    return Membership.objects.create(business=business, user=user, role=role)


def make_hours(business: Business, weekday: int = 0, opens: str = "09:00", closes: str = "17:00") -> OpeningHours:
    return OpeningHours.objects.create(business=business, weekday=weekday, opens=dt.time.fromisoformat(opens),
                                       closes=dt.time.fromisoformat(closes))


def make_service(business: Business, name: str = "Consultation", minutes: int = 30, price: str | None = "50.00") -> Service:
    return Service.objects.create(business=business, name=name, duration_minutes=minutes, price=price)


def make_faq(business: Business, question: str = "Do you have parking?", answer: str = "Yes, behind the building.") -> FAQEntry:
    return FAQEntry.objects.create(business=business, question=question, answer=answer)


def make_closed_date(business: Business, date: str, reason: str = "") -> ClosedDate:
    return ClosedDate.objects.create(business=business, date=dt.date.fromisoformat(date), reason=reason)


def make_customer(business: Business, phone: str = "+14155550123", name: str = "Dana Scully", **fields) -> Customer:
    return Customer.objects.create(business=business, phone=phone, name=name, **fields)


def make_appointment(business: Business, starts_at: dt.datetime, *, minutes: int = 30,
                     customer: Customer | None = None, service: Service | None = None, status: str = "booked",
                     **fields) -> Appointment:
    """An appointment at an aware `starts_at`; the customer and service are made up when not given."""
    customer = customer or make_customer(business, phone=f"+1212555{next(_seq) % 10000:04d}")
    return Appointment.objects.create(
        business=business, customer=customer, service=service, service_name=service.name if service else "Consultation",
        starts_at=starts_at, ends_at=starts_at + dt.timedelta(minutes=minutes), status=status, **fields)


def make_message(business: Business, *, customer: Customer | None = None, name: str = "Dana Scully",
                 callback_number: str = "+14155550123", body: str = "Please call me back.", urgency: str = "normal",
                 **fields) -> Message:
    return Message.objects.create(business=business, customer=customer, name=name, callback_number=callback_number,
                                  body=body, urgency=urgency, **fields)


def make_call(business: Business, from_number: str = "+14155550123", **fields) -> Call:
    return Call.objects.create(business=business, from_number=from_number, to_number=business.phone_number, **fields)


def make_transcript(call: Call, turns: list[tuple[str, str, int | None]]) -> list:
    """Transcript entries for `call` from (speaker, text, start_ms) in order; numbered 1, 2, …"""
    from calls.models import TranscriptEntry

    return TranscriptEntry.objects.bulk_create([
        TranscriptEntry(call=call, order=n, speaker=speaker, text=text, start_ms=start_ms,
                        end_ms=None if start_ms is None else start_ms + 1500)
        for n, (speaker, text, start_ms) in enumerate(turns, 1)])


def make_event(call: Call, kind: str, offset_ms: int, order: int | None = None, **payload):
    """An event of `call`; without `order`, the next one of the call's event sequence, as the product numbers."""
    from calls.models import CallEvent

    if order is None:
        from calls.services.recording import call_events_add

        return call_events_add(call_id=call.id, events=[{"kind": kind, "offset_ms": offset_ms, "payload": payload}])[0]
    return CallEvent.objects.create(call=call, kind=kind, offset_ms=offset_ms, order=order, payload=payload)


def make_wav(seconds: float = 1.0) -> bytes:
    """A recording as Twilio serves it: WAV, 8 kHz, 16-bit, mono (silence: the stand-ins do not listen)."""
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * int(8000 * seconds))
    return buffer.getvalue()
