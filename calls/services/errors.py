"""What the receptionist's tools' writes (customers, bookings, messages) raise: a sentence the model can act on."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from accounts.phone import normalize_e164


class ActionError(Exception):
    """An action that can't be done as asked; str(error) is a sentence the model can act on."""


class NotFound(ActionError):
    pass


class SlotTaken(ActionError):
    """Another booked appointment overlaps the requested time (found by the re-check or the database)."""


def phone_or_error(phone: str, what: str = "phone number") -> str:
    try:
        normalized = normalize_e164(phone)
    except ValidationError as exc:
        raise ActionError(f"The {what} is not valid: {exc.messages[0]}") from exc
    if not normalized:
        raise ActionError(f"A {what} is needed, in international format like +14155552671.")
    return normalized
