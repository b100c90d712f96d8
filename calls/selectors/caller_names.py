"""One name for one caller: what every page, email and webhook calls the person on a call.

The name a customer record holds (staff may have corrected it) wins; then the name the caller gave, as the
summary took it down; then their number, written as people read it; a browser test call has no number, so it is
"Browser test call (by <the member who made it>)". The overview, the calls list, the call page, the customer page,
the notification email and the webhook all ask here, so the same caller is never two people.
"""

from __future__ import annotations

from collections.abc import Iterable

import phonenumbers
from django.db.models import OuterRef, QuerySet, Subquery

from calls.models import Call, Customer

UNKNOWN_CALLER = "Unknown caller"


def format_number(number: str) -> str:
    """An E.164 number as people read it (+1 415-555-0123); anything else as it came."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    if not phonenumbers.is_valid_number(parsed):
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def browser_call_label(call: Call) -> str:
    """"Browser test call (by owner@example.com)": `from_number` of a browser call holds who made it."""
    return f"Browser test call (by {call.from_number})" if call.from_number else "Browser test call"


def caller_display_name(call: Call, *, customer_name: str = "") -> str:
    """The caller's name as people read it; `customer_name` is the name of the call's customer record, if any."""
    for name in (customer_name, call.caller_name):
        if name and name.strip():
            return " ".join(name.split())
    if call.channel == Call.Channel.BROWSER:
        return browser_call_label(call)
    return format_number(call.from_number) if call.from_number else UNKNOWN_CALLER


def caller_note(call: Call, display_name: str) -> str:
    """What goes beside the name: the number a named phone caller called from, or who made a test call; empty
    when the name is already that."""
    if call.channel == Call.Channel.BROWSER:
        note = browser_call_label(call)
    else:
        note = format_number(call.from_number) if call.from_number else ""
    return "" if note == display_name else note


def annotate_customer_name(rows: QuerySet[Call]) -> QuerySet[Call]:
    """The calls with `customer_name`, the name of the customer record of a phone call's number, read in the
    same query (a list page stays one query)."""
    names = Customer.objects.filter(business_id=OuterRef("business_id"), phone=OuterRef("from_number"),
                                    ).exclude(name="").values("name")[:1]
    return rows.annotate(customer_name=Subquery(names))


def _customer_names(calls: list[Call]) -> dict[tuple[int, str], str]:
    phones_by_business: dict[int, set[str]] = {}
    for call in calls:
        if call.channel == Call.Channel.TWILIO and call.from_number:
            phones_by_business.setdefault(call.business_id, set()).add(call.from_number)
    names: dict[tuple[int, str], str] = {}
    for business_id, phones in phones_by_business.items():
        for phone, name in Customer.objects.filter(business_id=business_id, phone__in=phones).exclude(name="") \
                .values_list("phone", "name"):
            names[(business_id, phone)] = name
    return names


def with_caller_names(calls: Iterable[Call]) -> list[Call]:
    """The calls, each with `caller_display` (its caller's one name) and `caller_note` (the number or who made a
    test call, when the name is not already that) set: no query for calls read with `annotate_customer_name`,
    else one per business whatever the number of calls."""
    calls = list(calls)
    names = _customer_names([c for c in calls if not hasattr(c, "customer_name")])
    for call in calls:
        customer_name = (getattr(call, "customer_name", None) or names.get((call.business_id, call.from_number), "")
                         if call.channel == Call.Channel.TWILIO else "")
        call.caller_display = caller_display_name(call, customer_name=customer_name)
        call.caller_note = caller_note(call, call.caller_display)
    return calls


def caller_name_of(call: Call) -> str:
    """One call's caller name (one query at most)."""
    return with_caller_names([call])[0].caller_display
