"""Forms of the phone-number pages."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from voice.numbers import NUMBER_SID

# Names for the countries an operator is likely to list in TWILIO_NUMBER_COUNTRIES; others show their code.
COUNTRY_NAMES = {
    "US": "United States", "CA": "Canada", "GB": "United Kingdom", "IE": "Ireland", "AU": "Australia",
    "NZ": "New Zealand", "DE": "Germany", "AT": "Austria", "CH": "Switzerland", "FR": "France", "BE": "Belgium",
    "NL": "Netherlands", "ES": "Spain", "PT": "Portugal", "IT": "Italy", "SE": "Sweden", "NO": "Norway",
    "DK": "Denmark", "FI": "Finland", "PL": "Poland", "MX": "Mexico", "BR": "Brazil",
}
AREA_CODE_COUNTRIES = {"US", "CA"}  # Twilio's AreaCode search applies to these only


class NumberSearchForm(forms.Form):
    country = forms.ChoiceField(error_messages={"invalid_choice": "Choose one of the countries in the list."})
    area_code = forms.CharField(
        required=False, max_length=3, label="Area code",
        help_text="Three digits, for US and Canadian numbers only (e.g. 415). Leave empty to see any area.",
        widget=forms.TextInput(attrs={"inputmode": "numeric", "pattern": "[0-9]{3}", "size": 4}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        countries = settings.TWILIO_NUMBER_COUNTRIES
        self.fields["country"].choices = [(code, f"{COUNTRY_NAMES.get(code, code)} ({code})") for code in countries]
        self.fields["country"].initial = countries[0]

    def clean_area_code(self) -> str:
        area_code = self.cleaned_data["area_code"].strip()
        if area_code and not (len(area_code) == 3 and area_code.isdigit()):
            raise ValidationError("An area code is three digits, like 415.")
        return area_code

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("area_code") and cleaned.get("country") not in AREA_CODE_COUNTRIES:
            self.add_error("area_code", "Area codes only narrow the search for US and Canadian numbers; leave it empty.")
        return cleaned


class NumberBuyForm(forms.Form):
    phone_number = forms.RegexField(regex=r"^\+[1-9][0-9]{6,14}$", widget=forms.HiddenInput,
                                    error_messages={"invalid": "Pick a number from the search results.",
                                                    "required": "Pick a number from the search results."})


class NumberClaimForm(forms.Form):
    sid = forms.RegexField(regex=NUMBER_SID, widget=forms.HiddenInput,
                           error_messages={"invalid": "Pick a number from the list.",
                                           "required": "Pick a number from the list."})
