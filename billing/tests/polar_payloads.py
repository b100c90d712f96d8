"""Complete Polar API bodies for tests, shaped like the real API (2026-10).

Each builder starts from realistic hand-written values for the fields our code reads and fills every
other field the SDK's strict models require from the SDK's own type definitions (nested customer,
product, prices, meters...), so a fixture never drifts from what `polar.v2026_10` deserialises.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
import uuid

from polar.base import deserialize
from polar.v2026_10 import outputs

ORG_ID = "1dbfc517-0bbf-4301-9ba8-555ca42b9737"
NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _is_time_field(name: str) -> bool:
    return name.endswith("_at") or name.endswith("_start") or name.endswith("_end") or name in {"timestamp", "date"}


def _value_for(name: str, hint: typing.Any, depth: int) -> typing.Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args:
            return None
        return _value_for(name, args[0], depth)
    if origin is typing.Literal:
        return args[0]
    if origin in (list, list, tuple):
        return []
    if origin in (dict, dict) or hint is dict:
        return {}
    if origin is typing.Annotated:
        return _value_for(name, args[0], depth)
    if isinstance(hint, typing.TypeAliasType if hasattr(typing, "TypeAliasType") else ()):  # pragma: no cover
        return _value_for(name, hint.__value__, depth)
    if dataclasses.is_dataclass(hint):
        return build(hint, depth=depth + 1)
    if origin in (typing.Union, types.UnionType) or isinstance(hint, types.UnionType):
        return build(hint, depth=depth + 1)
    if hint is bool:
        return False
    if hint is int:
        return 0
    if hint is float:
        return 0.0
    if hint is str:
        if name == "id" or name.endswith("_id"):
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}-{depth}"))
        if _is_time_field(name):
            return iso(NOW)
        if name == "email":
            return "owner@example.com"
        if name == "currency" or name.endswith("_currency"):
            return "usd"
        if name == "url" or name.endswith("_url"):
            return "https://sandbox.polar.sh/example"
        return f"{name.replace('_', ' ')}"
    if typing.get_origin(hint) is None and hasattr(hint, "__value__"):
        return _value_for(name, hint.__value__, depth)
    return None


def build(cls: type, overrides: dict | None = None, *, depth: int = 0) -> dict:
    """Every field of `cls` (an SDK output dataclass, or a union of them), `overrides` first."""
    if not dataclasses.is_dataclass(cls):
        cls = _pick_variant(cls, overrides or {})
    hints = typing.get_type_hints(cls, include_extras=False)
    body: dict[str, typing.Any] = {}
    for f in dataclasses.fields(cls):
        body[f.name] = _value_for(f.name, hints[f.name], depth)
    body.update(overrides or {})
    return body


def _pick_variant(union: typing.Any, overrides: dict) -> type:
    """The union member whose Literal discriminators agree with `overrides` (else the first)."""
    variants = [a for a in typing.get_args(union) if dataclasses.is_dataclass(a)]
    for variant in variants:
        hints = typing.get_type_hints(variant)
        if all(typing.get_origin(hints.get(k)) is not typing.Literal or v in typing.get_args(hints[k])
               for k, v in overrides.items()):
            return variant
    return variants[0]


def check(data: dict, model: typing.Any) -> dict:
    deserialize(data, model)  # fail fast in the test itself if a fixture is incomplete
    return data


def customer(*, external_id: str, customer_id: str, email: str = "owner@example.com") -> dict:
    return build(outputs.Customer, {
        "id": customer_id, "external_id": external_id, "email": email, "email_verified": True,
        "name": "Alice Dental", "organization_id": ORG_ID, "created_at": iso(NOW - dt.timedelta(days=30)),
        "modified_at": iso(NOW - dt.timedelta(days=1)), "metadata": {}, "type": "team"})


def subscription(*, subscription_id: str, external_id: str, product_id: str, status: str = "active",
                 customer_id: str = "a3f4d1c2-1111-4c5e-9a8b-1234567890ab", modified_at: dt.datetime = NOW,
                 period_start: dt.datetime | None = None, period_end: dt.datetime | None = None,
                 cancel_at_period_end: bool = False, ended_at: dt.datetime | None = None) -> dict:
    start = period_start or NOW - dt.timedelta(days=1)
    end = period_end or start + dt.timedelta(days=30)
    return check(build(outputs.Subscription, {
        "id": subscription_id, "created_at": iso(NOW - dt.timedelta(days=1)), "modified_at": iso(modified_at),
        "amount": 4900, "currency": "usd", "recurring_interval": "month", "recurring_interval_count": 1,
        "status": status, "current_period_start": iso(start), "current_period_end": iso(end),
        "current_meter_period_start": iso(start), "current_meter_period_end": iso(end),
        "trial_start": None, "trial_end": None, "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": iso(modified_at) if cancel_at_period_end or status in ("canceled", "unpaid") else None,
        "started_at": iso(NOW - dt.timedelta(days=1)), "ends_at": iso(end) if cancel_at_period_end else None,
        "ended_at": iso(ended_at) if ended_at else None, "customer_id": customer_id, "product_id": product_id,
        "discount_id": None, "checkout_id": "c0a8b7e6-2222-4f00-8c1d-0987654321fe",
        "metadata": {"business_id": "1"}, "custom_field_data": {},
        "customer": customer(external_id=external_id, customer_id=customer_id),
    }), outputs.Subscription)


def order(*, order_id: str, external_id: str, product_id: str, subscription_id: str | None,
          customer_id: str = "a3f4d1c2-1111-4c5e-9a8b-1234567890ab") -> dict:
    return check(build(outputs.Order, {
        "id": order_id, "created_at": iso(NOW), "modified_at": iso(NOW), "status": "paid", "paid": True,
        "subtotal_amount": 4900, "discount_amount": 0, "net_amount": 4900, "tax_amount": 0, "total_amount": 4900,
        "currency": "usd", "billing_reason": "subscription_create", "customer_id": customer_id,
        "product_id": product_id, "subscription_id": subscription_id, "checkout_id": None, "metadata": {},
        "invoice_number": "ALICE-0001", "customer": customer(external_id=external_id, customer_id=customer_id),
    }), outputs.Order)


def customer_state(*, external_id: str, subscriptions: list[dict],
                   customer_id: str = "a3f4d1c2-1111-4c5e-9a8b-1234567890ab") -> dict:
    base = customer(external_id=external_id, customer_id=customer_id)
    state_cls = _pick_variant(outputs.CustomerState, {"type": "team"})
    sub_cls = typing.get_args(typing.get_type_hints(state_cls)["active_subscriptions"])[0]
    return check(build(state_cls, {
        **{k: v for k, v in base.items() if k in {f.name for f in dataclasses.fields(state_cls)}},
        "active_subscriptions": [build(sub_cls, s) for s in subscriptions],
        "granted_benefits": [], "active_meters": [],
    }), outputs.CustomerState)


def event(event_type: str, data: dict, *, timestamp: dt.datetime = NOW) -> dict:
    return {"type": event_type, "timestamp": iso(timestamp), "api_version": "2026-10", "data": data}


def checkout(*, checkout_id: str, product_id: str, external_customer_id: str | None) -> dict:
    return check(build(outputs.Checkout, {
        "id": checkout_id, "created_at": iso(NOW), "modified_at": iso(NOW), "status": "open",
        "url": f"https://sandbox.polar.sh/checkout/polar_c_{checkout_id[:8]}", "client_secret": f"polar_c_{checkout_id[:8]}",
        "expires_at": iso(NOW + dt.timedelta(hours=1)), "success_url": "https://rx.example.com/billing/success/",
        "product_id": product_id, "amount": 4900, "total_amount": 4900, "currency": "usd",
        "external_customer_id": external_customer_id, "organization_id": ORG_ID, "metadata": {},
    }), outputs.Checkout)


def customer_session(*, customer_id: str, external_id: str) -> dict:
    return check(build(outputs.CustomerSession, {
        "id": "7d6c5b4a-3928-4170-8f6e-5d4c3b2a1908", "created_at": iso(NOW), "modified_at": None,
        "token": "polar_cst_test", "expires_at": iso(NOW + dt.timedelta(hours=1)),
        "return_url": "https://rx.example.com/billing/",
        "customer_portal_url": "https://sandbox.polar.sh/acme/portal?customer_session_token=polar_cst_test",
        "customer_id": customer_id, "customer": customer(external_id=external_id, customer_id=customer_id),
    }), outputs.CustomerSession)


def product_list(products: list[tuple[str, str, int, str | None]]) -> dict:
    """(id, name, monthly cents, metered cents per minute or None) for each product."""
    items = []
    for product_id, name, cents, per_minute in products:
        prices = [build(outputs.ProductPrice, {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, product_id + "fixed")), "amount_type": "fixed",
            "price_amount": cents, "price_currency": "usd", "product_id": product_id, "is_archived": False,
            "source": "catalog", "created_at": iso(NOW), "modified_at": None})]
        if per_minute is not None:
            prices.append(build(outputs.ProductPrice, {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, product_id + "metered")), "amount_type": "metered_unit",
                "unit_amount": per_minute, "cap_amount": None, "price_currency": "usd", "product_id": product_id,
                "is_archived": False, "source": "catalog", "created_at": iso(NOW), "modified_at": None,
                "meter_id": "3e2d1c0b-a998-4877-8665-544332211000",
                "meter": {"id": "3e2d1c0b-a998-4877-8665-544332211000", "name": "Call minutes", "unit": "custom",
                          "custom_label": "minute", "custom_multiplier": None}}))
        items.append(build(outputs.Product, {
            "id": product_id, "name": name, "description": None, "created_at": iso(NOW), "modified_at": None,
            "recurring_interval": "month", "recurring_interval_count": 1, "is_recurring": True, "is_archived": False,
            "visibility": "public", "organization_id": ORG_ID, "metadata": {}, "prices": prices, "benefits": [],
            "medias": [], "attached_custom_fields": []}))
    return check({"items": items, "pagination": {"total_count": len(items), "max_page": 1}}, outputs.ListResourceProduct)
