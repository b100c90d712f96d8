"""Users, businesses (the tenants) and what a business tells its receptionist."""

from __future__ import annotations

import uuid
import zoneinfo

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Length, Lower
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone

from accounts.phone import validate_e164


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: object) -> "User":
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> "User":
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> "User":
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in. The email address is the login."""

    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False, help_text="Can sign in to the operators' admin.")
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email


# What a business tells its receptionist goes into the agent's instructions on every call (voice/agent.py), and
# answers are read aloud: these limits keep that prompt small enough to stay quick and cheap on every turn, and
# each text short enough to say on the phone. Forms, the admin and the database all hold them.
GREETING_MAX_CHARS = 300  # about 20 seconds spoken
EXTRA_INSTRUCTIONS_MAX_CHARS = 2000
SERVICES_MAX = 30
SERVICE_DESCRIPTION_MAX_CHARS = 300
SERVICE_MAX_MINUTES = 24 * 60
FAQ_ENTRIES_MAX = 30
FAQ_QUESTION_MAX_CHARS = 200
FAQ_ANSWER_MAX_CHARS = 600  # about 40 seconds spoken
OPENING_HOURS_MAX = 28  # four intervals a day
CLOSED_DATES_MAX = 100


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"“{value}” is not a known time zone.")


class Business(models.Model):
    """The tenant. Every call, appointment and message belongs to exactly one business."""

    class Voice(models.TextChoices):
        ALLOY = "alloy", "Alloy"
        ASH = "ash", "Ash"
        BALLAD = "ballad", "Ballad"
        CEDAR = "cedar", "Cedar"
        CORAL = "coral", "Coral"
        ECHO = "echo", "Echo"
        MARIN = "marin", "Marin"
        SAGE = "sage", "Sage"
        SHIMMER = "shimmer", "Shimmer"
        VERSE = "verse", "Verse"

    class WhenUnavailable(models.TextChoices):
        """What a caller gets when the voice model cannot be reached (at the start of a call, or mid-call once
        reconnecting has failed): the business decides."""

        VOICEMAIL = "voicemail", "Take a voicemail"
        TRANSFER = "transfer", "Transfer the caller to the transfer number"

    class VoiceEngine(models.TextChoices):
        """Which OpenAI voice model answers the business's calls; empty: the operator's default (VOICE_ENGINE)."""

        DEFAULT = "", "The server's default"
        REALTIME = "realtime", "OpenAI Realtime (turn by turn)"
        LIVE = "live", "OpenAI GPT-Live (full duplex)"

    class Language(models.TextChoices):
        ENGLISH = "en", "English"
        SPANISH = "es", "Spanish"
        FRENCH = "fr", "French"
        GERMAN = "de", "German"
        ITALIAN = "it", "Italian"
        PORTUGUESE = "pt", "Portuguese"
        DUTCH = "nl", "Dutch"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False,
                            help_text="Stable public id (billing customer id); never changes.")
    name = models.CharField(max_length=120)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    phone_number = models.CharField(
        max_length=16, blank=True, validators=[validate_e164],
        help_text="The Twilio number callers dial, in E.164 (+15551234567). Calls find their business by it.")
    # Set when the number came through the portal (bought or claimed from the operator's Twilio account);
    # empty for a number an operator typed in the admin.
    phone_number_sid = models.CharField(
        "Twilio number SID", max_length=34, blank=True,
        help_text="Twilio's IncomingPhoneNumber SID (PN…) of the number above, if it is in our Twilio account.")
    phone_number_bought = models.BooleanField(
        default=False, help_text="Bought through the portal: releasing it returns it to Twilio.")
    # What Twilio last said about the number (when it was bought, claimed, checked or reconnected), so pages can
    # say whether it reaches us without asking Twilio on every page load.
    phone_number_checked_at = models.DateTimeField(
        "number last checked", null=True, blank=True,
        help_text="When Twilio last told us where the number's calls go.")
    phone_number_webhooks_base = models.CharField(
        "number's webhooks point at", max_length=200, blank=True,
        help_text="This server's public URL (PUBLIC_BASE_URL) if, when last checked, Twilio sent every webhook of "
                  "the number (incoming, fallback, status) here; empty if not.")
    greeting = models.CharField(max_length=GREETING_MAX_CHARS, blank=True)
    extra_instructions = models.TextField(max_length=EXTRA_INSTRUCTIONS_MAX_CHARS, blank=True)
    voice = models.CharField(max_length=16, choices=Voice.choices, default=Voice.MARIN)
    language = models.CharField(max_length=8, choices=Language.choices, default=Language.ENGLISH)
    transfer_number = models.CharField(max_length=16, blank=True, validators=[validate_e164])
    when_unavailable = models.CharField(
        "when the receptionist is unavailable", max_length=10, choices=WhenUnavailable.choices,
        default=WhenUnavailable.VOICEMAIL,
        help_text="If the voice model is down: voicemail, or a transfer (voicemail when there is no transfer number).")
    voice_engine = models.CharField(
        "voice engine", max_length=10, choices=VoiceEngine.choices, blank=True, default=VoiceEngine.DEFAULT,
        help_text="The voice model that answers calls; empty: the server's default.")
    notification_email = models.EmailField(blank=True)
    address = models.CharField(max_length=300, blank=True)
    website = models.URLField(blank=True)
    onboarded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "businesses"
        constraints = [
            models.UniqueConstraint(fields=["phone_number"], condition=~Q(phone_number=""),
                                    name="business_phone_number_unique"),
            models.CheckConstraint(condition=Q(phone_number="") | Q(phone_number__regex=r"^\+[1-9][0-9]{6,14}$"),
                                   name="business_phone_number_e164"),
            models.CheckConstraint(condition=Q(transfer_number="") | Q(transfer_number__regex=r"^\+[1-9][0-9]{6,14}$"),
                                   name="business_transfer_number_e164"),
            models.CheckConstraint(condition=Q(when_unavailable__in=["voicemail", "transfer"]),
                                   name="business_when_unavailable_valid"),
            models.CheckConstraint(condition=Q(voice_engine__in=["", "realtime", "live"]),
                                   name="business_voice_engine_valid"),
            models.UniqueConstraint(fields=["phone_number_sid"], condition=~Q(phone_number_sid=""),
                                    name="business_phone_number_sid_unique"),
            models.CheckConstraint(condition=Q(phone_number_sid="") | (Q(phone_number_sid__regex=r"^PN[0-9a-fA-F]{32}$")
                                                                       & ~Q(phone_number="")),
                                   name="business_phone_number_sid_with_number",
                                   violation_error_message="A Twilio number SID is PN followed by 32 hex digits, "
                                                           "and needs the phone number it belongs to."),
            models.CheckConstraint(condition=LessThanOrEqual(Length("extra_instructions"),
                                                             EXTRA_INSTRUCTIONS_MAX_CHARS),
                                   name="business_extra_instructions_length",
                                   violation_error_message=f"Keep the extra instructions to "
                                                           f"{EXTRA_INSTRUCTIONS_MAX_CHARS:,} characters or fewer."),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    @property
    def number_reaches_us(self) -> bool:
        """The number came through the portal and, when Twilio was last asked, sent its calls to this server (a
        server that has moved to another address no longer counts)."""
        return bool(self.phone_number_sid) and self.phone_number_webhooks_base == settings.PUBLIC_BASE_URL


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        STAFF = "staff", "Staff"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.STAFF)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "business"], name="membership_user_business_unique"),
            models.CheckConstraint(condition=Q(role__in=["owner", "staff"]), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.business} ({self.role})"

    @property
    def is_owner(self) -> bool:
        return self.role == self.Role.OWNER


class OpeningHours(models.Model):
    """One open interval on a weekday, in the business's local time. A day may have several."""

    class Weekday(models.IntegerChoices):
        MONDAY = 0, "Monday"
        TUESDAY = 1, "Tuesday"
        WEDNESDAY = 2, "Wednesday"
        THURSDAY = 3, "Thursday"
        FRIDAY = 4, "Friday"
        SATURDAY = 5, "Saturday"
        SUNDAY = 6, "Sunday"

    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="opening_hours")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    opens = models.TimeField()
    closes = models.TimeField()

    class Meta:
        ordering = ["weekday", "opens"]
        verbose_name_plural = "opening hours"
        constraints = [
            models.CheckConstraint(condition=Q(opens__lt=models.F("closes")), name="opening_hours_opens_before_closes",
                                   violation_error_message="Closing time must be after opening time."),
            models.CheckConstraint(condition=Q(weekday__gte=0, weekday__lte=6), name="opening_hours_weekday_valid",
                                   violation_error_message="Choose a day of the week."),
            models.UniqueConstraint(fields=["business", "weekday", "opens"], name="opening_hours_unique_start",
                                    violation_error_message="This day already has opening hours that start at "
                                                            "this time."),
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.opens:%H:%M}–{self.closes:%H:%M}"


class ClosedDate(models.Model):
    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="closed_dates")
    date = models.DateField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["business", "date"], name="closed_date_unique",
                                               violation_error_message="This date is already on the list.")]

    def __str__(self) -> str:
        return f"{self.date:%Y-%m-%d} {self.reason}".strip()


class Service(models.Model):
    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="services")
    name = models.CharField(max_length=120)
    duration_minutes = models.PositiveIntegerField(default=30, validators=[
        MinValueValidator(1, "A service takes at least 1 minute."),
        MaxValueValidator(SERVICE_MAX_MINUTES, f"A service can take at most {SERVICE_MAX_MINUTES:,} minutes (a day).")])
    price = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True,
                                validators=[MinValueValidator(0, "A price can't be negative; leave it empty if "
                                                                 "there is none.")])
    description = models.TextField(max_length=SERVICE_DESCRIPTION_MAX_CHARS, blank=True)

    class Meta:
        ordering = ["name"]
        # The field validators above give the messages a person sees; these keep every other writer honest.
        constraints = [
            # Callers name services by name, matched case-insensitively.
            models.UniqueConstraint("business", Lower("name"), name="service_name_ci_unique",
                                    violation_error_message="There is already a service with this name."),
            models.CheckConstraint(condition=Q(duration_minutes__gt=0, duration_minutes__lte=SERVICE_MAX_MINUTES),
                                   name="service_duration_valid",
                                   violation_error_message=f"A service takes between 1 and "
                                                           f"{SERVICE_MAX_MINUTES:,} minutes."),
            models.CheckConstraint(condition=Q(price__isnull=True) | Q(price__gte=0), name="service_price_valid",
                                   violation_error_message="A price can't be negative."),
            models.CheckConstraint(condition=LessThanOrEqual(Length("description"), SERVICE_DESCRIPTION_MAX_CHARS),
                                   name="service_description_length",
                                   violation_error_message=f"Keep the description to {SERVICE_DESCRIPTION_MAX_CHARS} "
                                                           f"characters or fewer."),
        ]

    def __str__(self) -> str:
        return self.name


class FAQEntry(models.Model):
    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="faq_entries")
    question = models.CharField(max_length=FAQ_QUESTION_MAX_CHARS)
    answer = models.TextField(max_length=FAQ_ANSWER_MAX_CHARS)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        verbose_name = "FAQ entry"
        verbose_name_plural = "FAQ entries"
        constraints = [
            models.CheckConstraint(condition=LessThanOrEqual(Length("answer"), FAQ_ANSWER_MAX_CHARS),
                                   name="faq_answer_length",
                                   violation_error_message=f"Keep the answer to {FAQ_ANSWER_MAX_CHARS} characters "
                                                           f"or fewer."),
        ]

    def __str__(self) -> str:
        return self.question


class Invite(models.Model):
    """An owner's invitation for someone to join the business; accepted through a signed link."""

    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="invites")
    email = models.EmailField()
    role = models.CharField(max_length=8, choices=Membership.Role.choices, default=Membership.Role.STAFF)
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")), name="invite_expires_after_created"),
        ]

    def __str__(self) -> str:
        return f"{self.email} → {self.business}"

    @property
    def is_pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > timezone.now()
