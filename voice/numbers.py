"""A business's phone number, taken from the operator's Twilio account through the portal, and released.

Every number we manage points at the same webhooks (incoming, fallback, status) and a call finds its
business by the number it was made to, so a number routes to a business exactly while
`Business.phone_number` says so. The rules:

* One business holds at most one number, and a number answers for at most one business: the unique
  constraint on `Business.phone_number` decides a race between two businesses claiming the same number,
  and the loser is told the number is not available, never who holds it.
* A number of the account is offered for claiming only while no business holds it and its voice
  configuration is empty or already ours; a number whose voice URL, application or trunk points
  elsewhere is serving something else in the operator's account and is never offered.
* Releasing clears the business's number first (routing stops with that commit), then tidies up at
  Twilio: a number bought through the portal is released (it leaves the account); a number that was
  already in the account is kept there with its voice, fallback and status URLs cleared, so it stops
  calling us and can be claimed again.

Reads and writes both live here: the reads need the same Twilio calls and rules as the writes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Business
from voice import twilio_api
from voice.twilio_api import AccountNumber, AvailableNumber, TwilioError

log = logging.getLogger(__name__)

NUMBER_SID = re.compile(r"^PN[0-9a-fA-F]{32}$")

NOT_AVAILABLE = "That number is not available any more. Choose another one."
ALREADY_HAS_NUMBER = "Your business already has a phone number. Release it before getting another one."
TWILIO_UNREACHABLE = "Twilio could not be reached just now. Nothing was changed; please try again in a minute."


class NumberError(Exception):
    """Why a number could not be got or released, in words for the business owner."""


def twilio_configured() -> bool:
    return bool(settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN)


def points_here(number: AccountNumber) -> bool:
    """Twilio sends every call of `number` to this server: incoming, fallback and status webhooks, and nothing
    (an application, a SIP trunk) takes the calls before them."""
    return (not number.voice_application_sid and not number.trunk_sid
            and number.webhooks() == twilio_api.number_webhooks())


def _record_configuration(business: Business, number: AccountNumber) -> None:
    """Remember what Twilio just said about the number, so pages need not ask it again."""
    business.phone_number_checked_at = timezone.now()
    business.phone_number_webhooks_base = settings.PUBLIC_BASE_URL if points_here(number) else ""
    business.save(update_fields=["phone_number_checked_at", "phone_number_webhooks_base", "updated_at"])


def _serves_something_else(number: AccountNumber) -> bool:
    ours = twilio_api.number_webhooks()["voice_url"]
    return bool(number.voice_application_sid or number.trunk_sid or number.voice_url not in ("", ours))


# --- reads ----------------------------------------------------------------------------------------------------

def search_numbers(*, country: str, area_code: str = "") -> list[AvailableNumber]:
    try:
        return twilio_api.search_local_numbers(country=country, area_code=area_code)
    except TwilioError as exc:
        log.warning("Number search failed: %s", exc)
        if exc.status == 404:
            return []  # Twilio has no local numbers in that country
        raise NumberError("Twilio could not be searched just now. Please try again in a minute.") from exc


def claimable_numbers() -> list[AccountNumber]:
    """The account's numbers that no business holds and nothing else in the account uses."""
    try:
        numbers = twilio_api.list_account_numbers()
    except TwilioError as exc:
        log.warning("Listing the account's numbers failed: %s", exc)
        raise NumberError("Twilio could not be reached just now. Please try again in a minute.") from exc
    held = Business.objects.filter(Q(phone_number__in=[n.phone_number for n in numbers])
                                   | Q(phone_number_sid__in=[n.sid for n in numbers]))
    held_numbers, held_sids = set(), set()
    for phone_number, sid in held.values_list("phone_number", "phone_number_sid"):
        held_numbers.add(phone_number)
        held_sids.add(sid)
    return [n for n in numbers
            if n.phone_number not in held_numbers and n.sid not in held_sids and not _serves_something_else(n)]


# --- writes ---------------------------------------------------------------------------------------------------

def _lock(business: Business) -> Business:
    return Business.objects.select_for_update().get(pk=business.pk)


def _number_is_held(phone_number: str, sid: str = "") -> bool:
    held = Q(phone_number=phone_number)
    if sid:
        held |= Q(phone_number_sid=sid)
    return Business.objects.filter(held).exists()


def _hold(business: Business, number: AccountNumber, *, bought: bool) -> None:
    """Store the number on the business; IntegrityError if another business got it first."""
    business.phone_number = number.phone_number
    business.phone_number_sid = number.sid
    business.phone_number_bought = bought
    with transaction.atomic():  # a savepoint: a lost race leaves the outer transaction usable
        business.save(update_fields=["phone_number", "phone_number_sid", "phone_number_bought", "updated_at"])


def _buy_refusal(exc: TwilioError) -> str:
    if exc.code == 21422:
        return "Twilio has just sold that number to someone else. Search again and pick another one."
    if exc.code == 21421:
        return "That is not a number Twilio can sell. Search again and pick one from the list."
    if exc.code is None or (exc.status or 500) >= 500:
        return "Twilio could not be reached just now. Nothing was bought; please try again in a minute."
    return (f"Twilio would not sell that number (error {exc.code}). Choose another one, or ask the people who run "
            "this service: some countries need an address or documents on the Twilio account first.")


@transaction.atomic
def number_buy(*, business: Business, phone_number: str) -> Business:
    """Buy `phone_number` from Twilio for `business`, already pointed at our webhooks."""
    business = _lock(business)  # one purchase at a time per business: no second number from a double click
    if business.phone_number:
        raise NumberError(ALREADY_HAS_NUMBER)
    if _number_is_held(phone_number):
        raise NumberError(NOT_AVAILABLE)
    try:
        bought = twilio_api.buy_number(phone_number)
    except TwilioError as exc:
        log.warning("Buying %s for business %s failed: %s", phone_number, business.pk, exc)
        raise NumberError(_buy_refusal(exc)) from exc
    try:
        _hold(business, bought, bought=True)
    except IntegrityError:
        # An operator assigned the same number meanwhile: give the purchase back rather than keep paying for it.
        log.warning("Bought %s but another business holds it; releasing it again", bought.phone_number)
        try:
            twilio_api.release_number(bought.sid)
        except TwilioError:
            log.exception("Could not release %s (%s) after a lost race; release it in the Twilio console",
                          bought.phone_number, bought.sid)
        raise NumberError(NOT_AVAILABLE) from None
    _record_configuration(business, bought)  # Twilio's answer to the purchase carries the webhooks it set
    log.info("Business %s bought %s (%s)", business.pk, bought.phone_number, bought.sid)
    return business


@transaction.atomic
def number_claim(*, business: Business, sid: str) -> Business:
    """Give `business` a number the Twilio account already has, and point the number at our webhooks."""
    business = _lock(business)
    if business.phone_number:
        raise NumberError(ALREADY_HAS_NUMBER)
    if not NUMBER_SID.match(sid or ""):
        raise NumberError(NOT_AVAILABLE)
    try:
        number = twilio_api.fetch_account_number(sid)
    except TwilioError as exc:
        log.warning("Looking up %s failed: %s", sid, exc)
        raise NumberError(TWILIO_UNREACHABLE) from exc
    # One answer for "held by another business", "used by something else" and "not in the account".
    if number is None or _serves_something_else(number) or _number_is_held(number.phone_number, number.sid):
        raise NumberError(NOT_AVAILABLE)
    try:
        # Before touching Twilio: a concurrent claim of the same number waits here on the unique index
        # until this transaction ends, then loses.
        _hold(business, number, bought=False)
    except IntegrityError:
        raise NumberError(NOT_AVAILABLE) from None
    try:
        configured = twilio_api.configure_number(number.sid)
    except TwilioError as exc:
        log.warning("Configuring %s for business %s failed: %s", number.phone_number, business.pk, exc)
        raise NumberError(TWILIO_UNREACHABLE) from exc  # rolls the claim back
    _record_configuration(business, configured)
    log.info("Business %s claimed %s (%s)", business.pk, number.phone_number, number.sid)
    return business


HAND_ENTERED = ("This number was entered by the people who run this service, so it can't be checked here. Ask "
                "them to check that Twilio sends its calls to this server.")


def _own_number_sid(business: Business, *, to: str) -> str:
    """The SID of the number the business holds through the portal; NumberError says why there is none."""
    if not business.phone_number_sid:
        raise NumberError(HAND_ENTERED if business.phone_number else f"Your business has no phone number to {to}.")
    return business.phone_number_sid


def number_check(*, business: Business) -> bool:
    """Ask Twilio where the business's number sends its calls now, remember it, and say whether that is here."""
    sid = _own_number_sid(business, to="check")
    try:
        number = twilio_api.fetch_account_number(sid)
    except TwilioError as exc:
        log.warning("Checking %s for business %s failed: %s", business.phone_number, business.pk, exc)
        raise NumberError(TWILIO_UNREACHABLE) from exc
    if number is None:
        business.phone_number_checked_at, business.phone_number_webhooks_base = timezone.now(), ""
        business.save(update_fields=["phone_number_checked_at", "phone_number_webhooks_base", "updated_at"])
        raise NumberError("Twilio says this number is no longer in this service's account, so calls to it can't "
                          "reach your receptionist. Release it and get another one.")
    _record_configuration(business, number)
    return business.number_reaches_us


def number_reconnect(*, business: Business) -> bool:
    """Point the business's own number (one it holds through the portal) at this server's webhooks again; whether
    Twilio's answer says it now does."""
    sid = _own_number_sid(business, to="connect")
    try:
        configured = twilio_api.configure_number(sid)
    except TwilioError as exc:
        log.warning("Reconnecting %s for business %s failed: %s", business.phone_number, business.pk, exc)
        raise NumberError(TWILIO_UNREACHABLE) from exc
    _record_configuration(business, configured)
    log.info("Business %s pointed %s (%s) at this server again", business.pk, business.phone_number, sid)
    return business.number_reaches_us


@dataclass(frozen=True)
class Released:
    phone_number: str
    twilio_done: bool  # False: the number no longer reaches the business, but Twilio could not be told


def number_release(*, business: Business) -> Released:
    """Stop `business` answering for its number at once, then release or disconnect it at Twilio."""
    with transaction.atomic():
        business = _lock(business)
        if not business.phone_number:
            raise NumberError("Your business has no phone number to release.")
        phone_number, sid, bought = business.phone_number, business.phone_number_sid, business.phone_number_bought
        business.phone_number, business.phone_number_sid, business.phone_number_bought = "", "", False
        business.phone_number_checked_at, business.phone_number_webhooks_base = None, ""
        business.save(update_fields=["phone_number", "phone_number_sid", "phone_number_bought",
                                     "phone_number_checked_at", "phone_number_webhooks_base", "updated_at"])
    if not sid:  # typed in by an operator: nothing of ours to undo at Twilio
        return Released(phone_number, twilio_done=True)
    try:
        if bought:
            twilio_api.release_number(sid)
        else:
            twilio_api.unconfigure_number(sid)
    except TwilioError as exc:
        log.error("Business %s released %s (%s) but Twilio could not be told (%s); %s it in the Twilio console",
                  business.pk, phone_number, sid, exc, "release" if bought else "clear the voice URL of")
        return Released(phone_number, twilio_done=False)
    log.info("Business %s released %s (%s, %s)", business.pk, phone_number, sid, "returned" if bought else "kept")
    return Released(phone_number, twilio_done=True)
