"""Create (or refresh) a demo business with an owner login, so a newcomer has something to click."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from allauth.account.models import EmailAddress
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts.models import Business, FAQEntry, Membership, OpeningHours, Service, User

DEMO_EMAIL = "owner@demo.example"
DEMO_PASSWORD = "demo-receptionist-2026"
DEMO_NUMBER = "+14155550100"


class Command(BaseCommand):
    help = "Create a demo business (Harbor Dental) with an owner login, and print the login."

    def add_arguments(self, parser):
        parser.add_argument("--email", default=DEMO_EMAIL)
        parser.add_argument("--password", default=DEMO_PASSWORD)

    @transaction.atomic
    def handle(self, *args, email: str, password: str, **options):
        user, created = User.objects.get_or_create(email=email, defaults={"full_name": "Demo Owner"})
        if created:
            user.set_password(password)
            user.save()
        EmailAddress.objects.update_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
        membership = Membership.objects.filter(user=user, role=Membership.Role.OWNER).select_related("business").first()
        if membership is None:
            business = Business.objects.create(name="Harbor Dental")
            Membership.objects.create(user=user, business=business, role=Membership.Role.OWNER)
        else:
            business = membership.business
        if not Business.objects.filter(phone_number=DEMO_NUMBER).exclude(pk=business.pk).exists():
            business.phone_number = DEMO_NUMBER
        business.time_zone = business.time_zone if business.time_zone != "UTC" else "America/Los_Angeles"
        business.greeting = business.greeting or "Thanks for calling Harbor Dental, this is the front desk. How can I help?"
        business.transfer_number = business.transfer_number or "+14155552671"
        business.notification_email = business.notification_email or email
        business.address = business.address or "1 Harbor Way, San Francisco, CA"
        business.onboarded_at = business.onboarded_at or timezone.now()
        business.save()
        if not business.opening_hours.exists():
            for day in range(5):
                OpeningHours.objects.create(business=business, weekday=day, opens=dt.time(8), closes=dt.time(12))
                OpeningHours.objects.create(business=business, weekday=day, opens=dt.time(13), closes=dt.time(17))
            OpeningHours.objects.create(business=business, weekday=5, opens=dt.time(9), closes=dt.time(13))
        if not business.services.exists():
            Service.objects.create(business=business, name="Cleaning", duration_minutes=45, price=Decimal("120"),
                                   description="Routine cleaning and check-up.")
            Service.objects.create(business=business, name="Filling", duration_minutes=60, price=Decimal("180"))
            Service.objects.create(business=business, name="Emergency visit", duration_minutes=30,
                                   price=Decimal("90"), description="Same-day pain or broken tooth.")
        if not business.faq_entries.exists():
            FAQEntry.objects.create(business=business, question="Do you take insurance?",
                                    answer="Yes, most PPO plans. Bring your card to the visit.", position=1)
            FAQEntry.objects.create(business=business, question="Is there parking?",
                                    answer="Free parking behind the building, entrance on Bay Street.", position=2)
        self.stdout.write(self.style.SUCCESS(
            f"Demo business “{business.name}” is ready.\n"
            f"  Sign in at /accounts/login/ as {email} with password {password}"
            + ("" if created else " (existing user: password unchanged)")))
