"""The subscription: its state from Polar's webhooks (stored once, applied in order), and the checkout and
billing portal that change it."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Business
from billing import polar_client
from billing.models import BillingAccount, PolarWebhookEvent
from billing.plans import plan_by_key, plan_by_product
from billing.services.account import (ALLOWED_SUBSCRIPTION_STATUSES, LIVE_SUBSCRIPTION_STATUSES, S,
                                      account_for_business)

log = logging.getLogger(__name__)


def _when(value: str | None) -> dt.datetime | None:
    return parse_datetime(value) if value else None


def _business_for(*, external_id: str | None, customer_id: str | None) -> Business | None:
    if external_id:
        try:
            return Business.objects.filter(uuid=uuid.UUID(external_id)).first()
        except ValueError:
            pass
    if customer_id:
        account = BillingAccount.objects.select_related("business").filter(polar_customer_id=customer_id).first()
        if account is not None:
            return account.business
    return None


def _locked_account(business: Business) -> BillingAccount:
    account_for_business(business)
    return BillingAccount.objects.select_for_update().get(business=business)


def _apply_plan(account: BillingAccount, product_id: str) -> None:
    plan = plan_by_product(product_id)
    account.polar_product_id = product_id
    account.plan_key = plan.key if plan else ""
    account.included_minutes = plan.included_minutes if plan else 0
    account.hard_cap = plan.hard_cap if plan else False


def _on_subscription(event: Any, business: Business) -> str:
    sub = event.data
    account = _locked_account(business)
    state_at = _when(sub.modified_at) or _when(event.timestamp)
    if (account.polar_subscription_id and sub.id != account.polar_subscription_id
            and account.status in LIVE_SUBSCRIPTION_STATUSES and sub.status not in ALLOWED_SUBSCRIPTION_STATUSES):
        return "other_subscription"  # an old subscription winding down doesn't touch the current one
    if account.polar_state_at and state_at and state_at < account.polar_state_at:
        return "stale"  # delivered out of order: never roll the state back
    account.status = S.REVOKED if event.type == "subscription.revoked" else sub.status
    account.polar_subscription_id = sub.id
    account.polar_customer_id = sub.customer_id or account.polar_customer_id
    account.current_period_start = _when(sub.current_period_start)
    account.current_period_end = _when(sub.current_period_end)
    account.cancel_at_period_end = bool(sub.cancel_at_period_end)
    account.polar_state_at = state_at
    _apply_plan(account, sub.product_id)
    account.save()
    return "applied"


def _on_customer_state(event: Any, business: Business) -> str:
    state = event.data
    account = _locked_account(business)
    state_at = _when(event.timestamp)
    if account.polar_state_at and state_at and state_at < account.polar_state_at:
        return "stale"
    account.polar_customer_id = state.id
    subs = list(state.active_subscriptions)
    if subs:
        sub = next((s for s in subs if s.id == account.polar_subscription_id), subs[0])
        trial_end = _when(sub.trial_end)
        if sub.status == "granted":
            account.status = S.TRIALING if trial_end and trial_end > timezone.now() else S.ACTIVE
        else:
            account.status = S.PAST_DUE
        account.polar_subscription_id = sub.id
        account.current_period_start = _when(sub.current_period_start)
        account.current_period_end = _when(sub.current_period_end)
        account.cancel_at_period_end = bool(sub.cancel_at_period_end)
        _apply_plan(account, sub.product_id)
    elif account.polar_subscription_id and account.status in LIVE_SUBSCRIPTION_STATUSES:
        account.status = S.REVOKED
    account.polar_state_at = state_at
    account.save()
    return "applied"


def _on_order_paid(event: Any, business: Business) -> str:
    order = event.data
    account = _locked_account(business)
    account.polar_customer_id = order.customer_id or account.polar_customer_id
    paid_at = _when(order.modified_at) or _when(order.created_at) or timezone.now()
    account.last_paid_at = max(filter(None, [account.last_paid_at, paid_at]))
    account.save(update_fields=["polar_customer_id", "last_paid_at", "updated_at"])
    return "applied"


def _subscription_owner(event: Any) -> Business | None:
    data = event.data
    return _business_for(external_id=data.customer.external_id, customer_id=data.customer_id)


def _state_owner(event: Any) -> Business | None:
    return _business_for(external_id=event.data.external_id, customer_id=event.data.id)


HANDLERS: dict[str, tuple[Callable[[Any], Business | None], Callable[[Any, Business], str]]] = {
    **{t: (_subscription_owner, _on_subscription) for t in (
        "subscription.created", "subscription.active", "subscription.updated", "subscription.canceled",
        "subscription.uncanceled", "subscription.revoked", "subscription.past_due")},
    "order.paid": (_subscription_owner, _on_order_paid),
    "customer.state_changed": (_state_owner, _on_customer_state),
}


@transaction.atomic
def webhook_receive(*, webhook_id: str, event: Any, payload: dict) -> str:
    """Store a verified delivery once by webhook-id and apply it; a redelivery returns "duplicate".

    Stored and applied in one transaction: if applying fails, nothing is stored and Polar's retry tries again.
    """
    row, created = PolarWebhookEvent.objects.get_or_create(
        webhook_id=webhook_id, defaults={"type": event.type, "payload": payload})
    if not created:
        return "duplicate"
    handler = HANDLERS.get(event.type)
    if handler is None:
        outcome, business = "ignored", None
    else:
        find_owner, apply = handler
        business = find_owner(event)
        outcome = apply(event, business) if business is not None else "unknown_business"
    row.business = business
    row.outcome = outcome
    row.save(update_fields=["business", "outcome"])
    log.info("Polar %s %s: %s", event.type, webhook_id, outcome)
    return outcome


# --- checkout and portal ----------------------------------------------------------------------------------------

class BillingUnavailable(Exception):
    """A sentence for the owner: why the checkout or portal can't open now."""


def checkout_url(*, business: Business, email: str, plan_key: str, customer_ip: str) -> str:
    """A Polar checkout for `plan_key`, tied to the business by its UUID (never an email: it can't change)."""
    plan = plan_by_key(plan_key)
    if plan is None:
        raise BillingUnavailable("That plan doesn't exist.")
    account = account_for_business(business)
    base = settings.PUBLIC_BASE_URL
    try:
        return polar_client.create_checkout(
            product_id=plan.product_id, external_customer_id=str(business.uuid),
            customer_id=account.polar_customer_id, customer_email=email, customer_name=business.name,
            success_url=base + "/billing/success/?checkout_id={CHECKOUT_ID}", return_url=base + "/billing/",
            customer_ip_address=customer_ip, metadata={"business_id": str(business.id), "plan": plan.key})
    except polar_client.PolarFailure as exc:
        log.warning("Checkout for business %s failed: %s", business.id, exc)
        raise BillingUnavailable("Polar, our payment provider, could not open the checkout. Please try again.") from exc


def portal_url(*, business: Business) -> str:
    account = account_for_business(business)
    if account.is_free_trial and not account.polar_customer_id:
        raise BillingUnavailable("Choose a plan first; the billing portal opens once you have subscribed.")
    try:
        return polar_client.create_portal_url(customer_id=account.polar_customer_id,
                                              external_customer_id=str(business.uuid),
                                              return_url=settings.PUBLIC_BASE_URL + "/billing/")
    except polar_client.PolarFailure as exc:
        log.warning("Customer portal for business %s failed: %s", business.id, exc)
        raise BillingUnavailable("Polar, our payment provider, could not open the billing portal. "
                                 "Please try again.") from exc
