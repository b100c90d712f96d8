from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict

from allauth.account import forms as allauth_forms
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.forms import BaseInlineFormSet, inlineformset_factory

from accounts import models as limits
from accounts.models import Business, ClosedDate, FAQEntry, Membership, OpeningHours, Service
from accounts.phone import normalize_e164
from accounts.transfers import transfer_number_problem
from accounts.services import WeeklyHours

COMMON_TIME_ZONES = sorted(zoneinfo.available_timezones() - {"localtime", "Factory"})
TIME_ZONE_NAMES = frozenset(COMMON_TIME_ZONES)
TIME_ZONE_CHOICES = [(name, name.replace("_", " ")) for name in COMMON_TIME_ZONES]


class TimeInput(forms.TimeInput):
    input_type = "time"

    def __init__(self, attrs=None):
        super().__init__(attrs, format="%H:%M")


class BusinessProfileForm(forms.ModelForm):
    time_zone = forms.ChoiceField(
        choices=TIME_ZONE_CHOICES, initial="UTC",
        help_text="Opening hours, appointments and call times are in this time zone.",
        error_messages={"invalid_choice": "Choose a time zone from the list."})
    website = forms.URLField(required=False, assume_scheme="https")

    class Meta:
        model = Business
        # No phone_number: numbers come from the operator's Twilio account (Settings → Phone number) or the admin.
        fields = ["name", "time_zone", "greeting", "extra_instructions", "voice", "language", "voice_engine",
                  "transfer_number", "when_unavailable", "notification_email", "address", "website"]
        labels = {
            "name": "Business name",
            "transfer_number": "Transfer calls to",
            "extra_instructions": "Extra instructions for the receptionist",
        }
        help_texts = {
            "transfer_number": "Where the receptionist sends callers who ask for a person: a regular landline or mobile "
                               "number in your business number's country. Leave empty to take a message instead.",
            "greeting": "The first sentence callers hear, e.g. “Thanks for calling Harbor Dental, how can I help?” "
                        f"Up to {limits.GREETING_MAX_CHARS} characters: it is read aloud before the caller can speak.",
            "extra_instructions": f"Up to {limits.EXTRA_INSTRUCTIONS_MAX_CHARS:,} characters. The receptionist reads "
                                  "them before every call, so keep to what matters.",
            "notification_email": "Call summaries, messages and voicemails go here.",
            "voice_engine": "Realtime answers turn by turn; GPT-Live listens while it speaks and is billed per "
                            "second of call ($0.05 a minute) plus its backend's tokens. Both book, take messages "
                            "and transfer the same way; each call's page shows which one answered.",
            "when_unavailable": "If the AI model cannot be reached (an outage at OpenAI, a lost connection that "
                                "does not come back), callers hear a short apology, then leave a voicemail or are "
                                "transferred to the number above. Voicemail is used when there is no transfer "
                                "number.",
        }
        error_messages = {
            "greeting": {"max_length": f"Keep the greeting to {limits.GREETING_MAX_CHARS} characters or fewer "
                                       "(it has %(show_value)d): callers wait for it to end before they speak."},
            "extra_instructions": {"max_length": f"Keep the extra instructions to "
                                                 f"{limits.EXTRA_INSTRUCTIONS_MAX_CHARS:,} characters or fewer "
                                                 "(they have %(show_value)d)."},
        }
        widgets = {
            "greeting": forms.TextInput(attrs={"placeholder": "Thanks for calling! How can I help you today?",
                                               "data-char-count": ""}),
            "extra_instructions": forms.Textarea(attrs={"rows": 4}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].required = True
        if "when_unavailable" in self.fields:
            self.fields["when_unavailable"].required = False
        if "voice_engine" in self.fields:
            # Say what the server's default is: the operator may change it (VOICE_ENGINE).
            names = dict(Business.VoiceEngine.choices)
            self.fields["voice_engine"].choices = [
                ("", f"The server's default ({names.get(settings.VOICE_ENGINE, settings.VOICE_ENGINE)})"),
                *[(value, label) for value, label in Business.VoiceEngine.choices if value]]
        # People type numbers with spaces and brackets; accept them and store the E.164 form.
        generated = self.fields.get("transfer_number")
        if generated is None:
            return
        self.fields["transfer_number"] = forms.CharField(
            required=False, max_length=32, label=generated.label, help_text=generated.help_text,
            widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "tel"}))

    def clean_when_unavailable(self) -> str:
        # A post without the field (an older page, a script) keeps the stored choice rather than failing.
        return self.cleaned_data.get("when_unavailable") or self.instance.when_unavailable

    def clean_transfer_number(self) -> str:
        number = normalize_e164(self.cleaned_data.get("transfer_number", ""))
        if number:
            # The business's own number as this form leaves it (it may be set in the same form), else as stored.
            home = self.cleaned_data.get("phone_number", self.instance.phone_number) or ""
            problem = transfer_number_problem(number, home_number=home)
            if problem:
                raise ValidationError(problem)
        return number


class OnboardingForm(BusinessProfileForm):
    """The profile plus a quick weekly schedule; everything else can wait for the settings page."""

    open_days = forms.TypedMultipleChoiceField(
        choices=OpeningHours.Weekday.choices, coerce=int, required=False, initial=[0, 1, 2, 3, 4],
        widget=forms.CheckboxSelectMultiple, label="Open on")
    opens = forms.TimeField(initial=dt.time(9, 0), widget=TimeInput, required=False)
    closes = forms.TimeField(initial=dt.time(17, 0), widget=TimeInput, required=False)

    class Meta(BusinessProfileForm.Meta):
        # No transfer number yet: it must be in the country of the business's own number, which comes later.
        fields = ["name", "time_zone", "greeting", "notification_email"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound and self.instance.onboarded_at is None and self.instance.time_zone == "UTC":
            # Still the default (a Google sign-up, or a browser that didn't say): the page offers the browser's.
            self.fields["time_zone"].widget.attrs["data-browser-time-zone"] = "suggest"

    def clean(self):
        cleaned = super().clean()
        days, opens, closes = cleaned.get("open_days"), cleaned.get("opens"), cleaned.get("closes")
        if days:
            # A field that failed its own check already says why; only a missing time needs saying here.
            if opens is None and "opens" not in self.errors:
                self.add_error("opens", "Give the opening time for the days you are open.")
            if closes is None and "closes" not in self.errors:
                self.add_error("closes", "Give the closing time for the days you are open.")
            if opens is not None and closes is not None and opens >= closes:
                self.add_error("closes", "Closing time must be after opening time.")
        return cleaned

    def weekly_hours(self) -> WeeklyHours | None:
        days = self.cleaned_data.get("open_days")
        if not days:
            return None
        return WeeklyHours(weekdays=days, opens=self.cleaned_data["opens"], closes=self.cleaned_data["closes"])


class OpeningHoursForm(forms.ModelForm):
    class Meta:
        model = OpeningHours
        fields = ["weekday", "opens", "closes"]
        widgets = {"opens": TimeInput, "closes": TimeInput}
        error_messages = {
            "weekday": {"required": "Choose the day.", "invalid_choice": "Choose a day of the week."},
            "opens": {"required": "Give the opening time.", "invalid": "Enter a time, like 09:00."},
            "closes": {"required": "Give the closing time.", "invalid": "Enter a time, like 17:00."},
        }

    def clean(self):
        cleaned = super().clean()
        opens, closes = cleaned.get("opens"), cleaned.get("closes")
        if opens and closes and opens >= closes:
            self.add_error("closes", "Closing time must be after opening time.")
        return cleaned


class LimitedFormSet(BaseInlineFormSet):
    """An inline formset with at most `max_num` rows kept, saying so in words. `noun` names a row (plural)."""

    noun = "rows"

    def clean(self) -> None:
        super().clean()
        # Django's validate_max counts the blank rows too; only the rows that will be kept count here.
        kept = sum(1 for i, form in enumerate(self.forms)
                   if (i < self.initial_form_count() or form.has_changed())
                   and not (self.can_delete and self._should_delete_form(form)))
        if kept > self.max_num:
            raise ValidationError(f"You can list up to {self.max_num} {self.noun}. Remove one before you add another.",
                                  code="too_many_forms")

    def get_unique_error_message(self, unique_check) -> str:
        return f"Two of your {self.noun} are the same. Remove one of them."


class OpeningHoursFormSet(LimitedFormSet):
    noun = "opening intervals"

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        by_day: dict[int, list[tuple[dt.time, dt.time]]] = defaultdict(list)
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE") or data.get("opens") is None or data.get("closes") is None:
                continue
            by_day[data["weekday"]].append((data["opens"], data["closes"]))
        problems = []
        for day, intervals in sorted(by_day.items()):
            intervals.sort()
            for (a_open, a_close), (b_open, b_close) in zip(intervals, intervals[1:]):
                if b_open < a_close:
                    problems.append(
                        f"{OpeningHours.Weekday(day).label}: {a_open:%H:%M}–{a_close:%H:%M} overlaps "
                        f"{b_open:%H:%M}–{b_close:%H:%M}. Merge them or make one end before the other starts.")
        if problems:
            raise ValidationError(problems)


HoursFormSet = inlineformset_factory(Business, OpeningHours, form=OpeningHoursForm, formset=OpeningHoursFormSet,
                                     extra=2, can_delete=True, max_num=limits.OPENING_HOURS_MAX)


class ClosedDateFormSetBase(LimitedFormSet):
    noun = "closed dates"


ClosedDateFormSet = inlineformset_factory(
    Business, ClosedDate, formset=ClosedDateFormSetBase, fields=["date", "reason"], extra=1, can_delete=True,
    max_num=limits.CLOSED_DATES_MAX,
    widgets={"date": forms.DateInput(attrs={"type": "date"})},
    error_messages={"date": {"invalid": "Enter a date, like 2026-12-24."}})


class ServiceForm(forms.ModelForm):
    # Declared here so that the page says the limits in words and the browser knows them (min, max, step).
    duration_minutes = forms.IntegerField(
        label="Minutes", initial=30, min_value=1, max_value=limits.SERVICE_MAX_MINUTES,
        help_text=f"1 to {limits.SERVICE_MAX_MINUTES:,}.",
        error_messages={"required": "Say how many minutes the service takes.",
                        "invalid": "Enter the length in whole minutes, like 30.",
                        "min_value": "A service takes at least 1 minute.",
                        "max_value": f"A service can take at most {limits.SERVICE_MAX_MINUTES:,} minutes (a day)."})
    price = forms.DecimalField(
        required=False, min_value=0, max_digits=10, decimal_places=2,
        error_messages={"invalid": "Enter a price as a number, like 45 or 45.50.",
                        "min_value": "A price can't be negative; leave it empty if there is none.",
                        "max_digits": "That price is too large: use at most 8 digits before the decimal point.",
                        "max_whole_digits": "That price is too large: use at most 8 digits before the decimal point.",
                        "max_decimal_places": "Use at most 2 digits after the decimal point."})

    class Meta:
        model = Service
        fields = ["name", "duration_minutes", "price", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
        help_texts = {"description": f"Up to {limits.SERVICE_DESCRIPTION_MAX_CHARS} characters."}
        error_messages = {
            "name": {"required": "Give the service the name callers use for it.",
                     "max_length": "Keep the name to 120 characters or fewer (it has %(show_value)d)."},
            "description": {"max_length": f"Keep the description to {limits.SERVICE_DESCRIPTION_MAX_CHARS} "
                                          "characters or fewer (it has %(show_value)d)."},
        }


class ServiceFormSetBase(LimitedFormSet):
    noun = "services"

    def clean(self) -> None:
        super().clean()
        seen: set[str] = set()
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE") or not data.get("name"):
                continue
            key = data["name"].strip().lower()
            if key in seen:
                raise ValidationError(f"There are two services called “{data['name']}”. "
                                      "Callers ask for services by name, so each name must be different.")
            seen.add(key)


ServiceFormSet = inlineformset_factory(Business, Service, form=ServiceForm, formset=ServiceFormSetBase,
                                       extra=2, can_delete=True, max_num=limits.SERVICES_MAX)


class FAQFormSetBase(LimitedFormSet):
    noun = "questions"


FAQFormSet = inlineformset_factory(
    Business, FAQEntry, formset=FAQFormSetBase, fields=["question", "answer", "position"], extra=2, can_delete=True,
    max_num=limits.FAQ_ENTRIES_MAX,
    widgets={"answer": forms.Textarea(attrs={"rows": 2})},
    help_texts={"question": f"Up to {limits.FAQ_QUESTION_MAX_CHARS} characters.",
                "answer": f"Up to {limits.FAQ_ANSWER_MAX_CHARS} characters, read aloud.",
                "position": "Lower numbers come first."},
    error_messages={
        "question": {"required": "Write the question callers ask.",
                     "max_length": f"Keep the question to {limits.FAQ_QUESTION_MAX_CHARS} characters or fewer "
                                   "(it has %(show_value)d)."},
        "answer": {"max_length": f"Keep the answer to {limits.FAQ_ANSWER_MAX_CHARS} characters or fewer "
                                 "(it has %(show_value)d): the receptionist reads it aloud.",
                   "required": "Write the answer the receptionist should give."},
        "position": {"invalid": "Enter a whole number; lower numbers come first.",
                     "min_value": "Enter 0 or a higher number; lower numbers come first."},
    })


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email address")
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.STAFF)

    def __init__(self, *args, business: Business, **kwargs):
        super().__init__(*args, **kwargs)
        self.business = business

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if Membership.objects.filter(business=self.business, user__email__iexact=email).exists():
            raise ValidationError("This person is already on your team.")
        return email


def disable_all(*forms_or_formsets) -> None:
    """Render forms read-only (staff can read the settings, not change them)."""
    for item in forms_or_formsets:
        for form in getattr(item, "forms", [item]):
            for field in form.fields.values():
                field.disabled = True


def known_time_zone(value: str) -> str:
    """`value` if zoneinfo knows it (as the time zone list offers it), else "" (keep the default)."""
    value = (value or "").strip()
    return value if value in TIME_ZONE_NAMES else ""


class AppLabels:
    """allauth's forms in the app's words: sentence-case labels above each field, and no placeholders repeating
    them. `labels` maps a field name to its label."""

    labels: dict[str, str] = {}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            field.widget.attrs.pop("placeholder", None)
            if name in self.labels:
                field.label = self.labels[name]


class LoginForm(AppLabels, allauth_forms.LoginForm):
    labels = {"login": "Email address", "remember": "Keep me signed in on this device"}


class ResetPasswordForm(AppLabels, allauth_forms.ResetPasswordForm):
    labels = {"email": "Email address"}


class ResetPasswordKeyForm(AppLabels, allauth_forms.ResetPasswordKeyForm):
    labels = {"password1": "New password", "password2": "New password again"}


class ChangePasswordForm(AppLabels, allauth_forms.ChangePasswordForm):
    labels = {"oldpassword": "Current password", "password1": "New password", "password2": "New password again"}


class SignupForm(AppLabels, allauth_forms.SignupForm):
    """allauth's sign-up, plus the browser's time zone (filled in by static/accounts/time_zone.js)."""

    time_zone = forms.CharField(required=False, max_length=64,
                                widget=forms.HiddenInput(attrs={"data-browser-time-zone": "fill"}))

    labels = {"email": "Email address", "password1": "Password", "password2": "Password again"}

    def clean_time_zone(self) -> str:
        # Hidden and filled in by the browser: an unknown name is dropped (the business starts on UTC and onboarding
        # asks), never shown as an error the person could not fix.
        return known_time_zone(self.cleaned_data.get("time_zone", ""))
