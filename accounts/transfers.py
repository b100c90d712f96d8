"""Where a business may send its callers: the toll-fraud rules for transfer numbers.

A transfer is dialled on the operator's Twilio account, so a number in another country or a premium-rate line
spends the operator's money. The rules are checked when the number is saved (form errors) and again every time
a number is about to be dialled, so an admin edit or a row saved before the rules existed cannot get around them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import phonenumbers
from django.conf import settings
from phonenumbers import PhoneNumberType

if TYPE_CHECKING:
    from accounts.models import Business

log = logging.getLogger(__name__)

# Number types that cost the normal rate to call. Everything else (premium rate, shared cost, personal numbers,
# pagers, UAN, voicemail access, unknown) can carry a surcharge for the caller, i.e. for the operator.
ORDINARY_NUMBER_TYPES = {
    PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.TOLL_FREE, PhoneNumberType.VOIP,
}
SURCHARGED_TYPE_NAMES = {
    PhoneNumberType.PREMIUM_RATE: "premium-rate",
    PhoneNumberType.SHARED_COST: "shared-cost",
    PhoneNumberType.PERSONAL_NUMBER: "personal (follow-me)",
    PhoneNumberType.UAN: "company-wide (UAN)",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.VOICEMAIL: "voicemail access",
}


def country_of(number: str) -> str:
    """The ISO country code of an E.164 number ("US", "GB"), or "" when it is not a valid number."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(parsed):
        return ""
    return phonenumbers.region_code_for_number(parsed) or ""


def allowed_transfer_countries(home_number: str) -> list[str]:
    """TRANSFER_ALLOWED_COUNTRIES when the operator set it, else the country of the business's own number
    (nothing at all while the business has no number)."""
    if settings.TRANSFER_ALLOWED_COUNTRIES:
        return list(settings.TRANSFER_ALLOWED_COUNTRIES)
    home = country_of(home_number) if home_number else ""
    return [home] if home else []


def transfer_number_problem(number: str, *, home_number: str) -> str:
    """Why calls may not be transferred to `number` (an E.164 string), as a sentence for the business owner;
    "" when they may. `home_number` is the business's own (Twilio) number."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return "This is not a phone number."
    if not phonenumbers.is_valid_number(parsed):
        return "This is not a valid phone number for its country."
    number_type = phonenumbers.number_type(parsed)
    if number_type not in ORDINARY_NUMBER_TYPES:
        kind = SURCHARGED_TYPE_NAMES.get(number_type, "special-rate")
        return (f"Calls can't be transferred to {kind} numbers: they cost extra to call. "
                "Use a regular landline or mobile number.")
    countries = allowed_transfer_countries(home_number)
    if not countries:
        return ("Connect your business's phone number first: calls can only be transferred to numbers in the "
                "same country as it.")
    country = phonenumbers.region_code_for_number(parsed) or "?"
    if country not in countries:
        if settings.TRANSFER_ALLOWED_COUNTRIES:
            return (f"Calls can only be transferred to numbers in {', '.join(countries)}; "
                    f"this is a number in {country}.")
        return (f"Calls can only be transferred to numbers in the same country as your business's phone number "
                f"({countries[0]}); this is a number in {country}.")
    return ""


def allowed_transfer_number(business: Business) -> str:
    """The business's transfer number if the rules allow dialling it now, else "" (and a warning in the log)."""
    number = business.transfer_number
    if not number:
        return ""
    problem = transfer_number_problem(number, home_number=business.phone_number)
    if problem:
        log.warning("Not dialling business %s's transfer number %s: %s", business.id, number, problem)
        return ""
    return number


def unavailable_action(business: Business) -> tuple[str, str]:
    """What a caller gets when the voice model cannot be reached: ("transfer", number) when the business chose
    transfers and its number may be dialled, else ("voicemail", "") — voicemail never needs anything else."""
    if business.when_unavailable == "transfer":  # Business.WhenUnavailable.TRANSFER (models import this module)
        number = allowed_transfer_number(business)
        if number:
            return "transfer", number
    return "voicemail", ""
