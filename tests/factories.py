"""Plain-function factories shared by every app's tests."""

from __future__ import annotations

import datetime as dt
import itertools

from allauth.account.models import EmailAddress

from accounts.models import Business, FAQEntry, Membership, OpeningHours, Service, User

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
