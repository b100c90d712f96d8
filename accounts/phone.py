"""Phone numbers are stored in E.164 (+15551234567): that is how Twilio sends them to us."""

from __future__ import annotations

import phonenumbers
from django.core.exceptions import ValidationError


def normalize_e164(raw: str) -> str:
    """Return `raw` as E.164, or raise ValidationError with a sentence a person can act on."""
    text = (raw or "").strip()
    if not text:
        return ""
    if not text.startswith("+"):
        raise ValidationError("Enter the number in international format, starting with + and the country code "
                              "(for example +14155552671).")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise ValidationError(f"“{raw}” is not a phone number.")
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(f"“{raw}” is not a valid phone number for its country.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def validate_e164(value: str) -> None:
    if value and normalize_e164(value) != value:
        raise ValidationError(f"“{value}” must be written in E.164, like +14155552671.")
