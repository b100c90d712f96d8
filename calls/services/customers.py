"""A caller's Customer record: counted once per call, created for a first call, named when known."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import F
from django.utils import timezone

from accounts.models import Business
from accounts.phone import normalize_e164
from calls.models import Customer


def customer_count_call(*, business_id: int, phone: str, call_id: int | None) -> str:
    """Count a call in its caller's Customer record, creating it for a first call; returns the E.164 number
    counted ("" for a withheld or invalid number: nothing is recorded). Idempotent per call: counting the same
    call again neither counts it twice nor fails. A returning caller (most calls) costs one write."""
    try:
        phone = normalize_e164(phone)
    except ValidationError:
        return ""
    if not phone:
        return ""
    now = timezone.now()
    uncounted = Customer.objects.filter(business_id=business_id, phone=phone)
    if call_id is not None:
        uncounted = uncounted.exclude(last_call_id=call_id)
    if uncounted.update(call_count=F("call_count") + 1, last_call_id=call_id, last_seen_at=now):
        return phone
    _, created = Customer.objects.get_or_create(
        business_id=business_id, phone=phone,
        defaults={"first_seen_at": now, "last_seen_at": now, "call_count": 1, "last_call_id": call_id})
    if not created:  # counted already, or another process created the customer in between (then count it)
        uncounted.update(call_count=F("call_count") + 1, last_call_id=call_id, last_seen_at=now)
    return phone


def customer_record_call(*, business_id: int, phone: str, call_id: int | None) -> Customer | None:
    """`customer_count_call`, returning the caller's Customer (None for a withheld or invalid number)."""
    phone = customer_count_call(business_id=business_id, phone=phone, call_id=call_id)
    return Customer.objects.get(business_id=business_id, phone=phone) if phone else None


def customer_get_or_create(*, business: Business, phone: str, name: str = "", rename: bool = False) -> Customer:
    """The customer with that E.164 number, created with `name` if new. An existing customer's name is set when
    it was blank, or replaced when `rename` is true."""
    customer, created = Customer.objects.get_or_create(business=business, phone=phone, defaults={"name": name})
    if not created and name and (rename or not customer.name) and customer.name != name:
        customer.name = name
        customer.save(update_fields=["name"])
    return customer
