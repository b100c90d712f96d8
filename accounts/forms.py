from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict

from django import forms
from django.core.exceptions import ValidationError
from django.forms import BaseInlineFormSet, inlineformset_factory

from accounts.models import Business, ClosedDate, FAQEntry, Membership, OpeningHours, Service
from accounts.phone import normalize_e164
from accounts.transfers import transfer_number_problem
from accounts.services import WeeklyHours

COMMON_TIME_ZONES = sorted(zoneinfo.available_timezones() - {"localtime", "Factory"})
TIME_ZONE_CHOICES = [(name, name.replace("_", " ")) for name in COMMON_TIME_ZONES]


class TimeInput(forms.TimeInput):
    input_type = "time"

    def __init__(self, attrs=None):
        super().__init__(attrs, format="%H:%M")


class BusinessProfileForm(forms.ModelForm):
    time_zone = forms.ChoiceField(choices=TIME_ZONE_CHOICES, initial="UTC")
    website = forms.URLField(required=False, assume_scheme="https")

    class Meta:
        model = Business
        # No phone_number: numbers come from the operator's Twilio account (Settings → Phone number) or the admin.
        fields = ["name", "time_zone", "greeting", "extra_instructions", "voice", "language",
                  "transfer_number", "notification_email", "address", "website"]
        labels = {
            "name": "Business name",
            "transfer_number": "Transfer calls to",
            "extra_instructions": "Extra instructions for the receptionist",
        }
        help_texts = {
            "transfer_number": "Where the receptionist sends callers who ask for a person: a regular landline or mobile "
                               "number in your business number's country. Leave empty to take a message instead.",
            "greeting": "The first sentence callers hear, e.g. “Thanks for calling Harbor Dental, how can I help?”",
            "notification_email": "Call summaries and messages go here.",
        }
        widgets = {
            "greeting": forms.TextInput(attrs={"placeholder": "Thanks for calling! How can I help you today?"}),
            "extra_instructions": forms.Textarea(attrs={"rows": 4}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].required = True
        # People type numbers with spaces and brackets; accept them and store the E.164 form.
        generated = self.fields.get("transfer_number")
        if generated is None:
            return
        self.fields["transfer_number"] = forms.CharField(
            required=False, max_length=32, label=generated.label, help_text=generated.help_text,
            widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "tel"}))

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

    def clean(self):
        cleaned = super().clean()
        days, opens, closes = cleaned.get("open_days"), cleaned.get("opens"), cleaned.get("closes")
        if days:
            if opens is None or closes is None:
                raise ValidationError("Give the opening and closing time for the days you are open.")
            if opens >= closes:
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

    def clean(self):
        cleaned = super().clean()
        opens, closes = cleaned.get("opens"), cleaned.get("closes")
        if opens and closes and opens >= closes:
            self.add_error("closes", "Closing time must be after opening time.")
        return cleaned


class OpeningHoursFormSet(BaseInlineFormSet):
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
                                     extra=2, can_delete=True)

ClosedDateFormSet = inlineformset_factory(
    Business, ClosedDate, fields=["date", "reason"], extra=1, can_delete=True,
    widgets={"date": forms.DateInput(attrs={"type": "date"})})


class ServiceForm(forms.ModelForm):
    class Meta:
        model = Service
        fields = ["name", "duration_minutes", "price", "description"]
        labels = {"duration_minutes": "Minutes"}
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class ServiceFormSetBase(BaseInlineFormSet):
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
                                       extra=2, can_delete=True)

FAQFormSet = inlineformset_factory(
    Business, FAQEntry, fields=["question", "answer", "position"], extra=2, can_delete=True,
    widgets={"answer": forms.Textarea(attrs={"rows": 2})})


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
