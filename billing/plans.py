"""Plans as configured in settings.BILLING_PLANS, each mapped to one Polar product."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Plan:
    key: str
    name: str
    product_id: str
    included_minutes: int
    hard_cap: bool
    price: str  # shown when Polar's prices can't be read


def all_plans() -> list[Plan]:
    return [Plan(key=str(p["key"]), name=str(p.get("name") or p["key"]), product_id=str(p["product_id"]),
                 included_minutes=int(p.get("included_minutes", 0)), hard_cap=bool(p.get("hard_cap", False)),
                 price=str(p.get("price", ""))) for p in settings.BILLING_PLANS]


def plan_by_key(key: str) -> Plan | None:
    return next((p for p in all_plans() if p.key == key), None)


def plan_by_product(product_id: str) -> Plan | None:
    return next((p for p in all_plans() if p.product_id == product_id), None)
