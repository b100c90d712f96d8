"""The only module that talks to Polar (polar-sdk 1.x, API version 2026-10). One function per remote operation.

Errors come out as `PolarUnavailable` (network, 5xx, 429: worth retrying; `retry_after` in seconds when Polar
said so) or `PolarRejected` (any other 4xx or a response we can't read: retrying won't help). The SDK has no
retries of its own; the usage task retries, interactive calls (checkout, portal) don't.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from polar import PolarClientError, PolarError, PolarNetworkError, PolarServerError
from polar.base import PolarRateLimitError
from polar.v2026_10 import Polar
from polar.v2026_10 import webhooks as polar_webhooks

log = logging.getLogger(__name__)


class PolarFailure(Exception):
    permanent = False


class PolarUnavailable(PolarFailure):
    """Network error, 5xx or 429: try again later."""

    def __init__(self, message: str, *, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PolarRejected(PolarFailure):
    """Polar refused the request (4xx) or answered something unreadable: retrying won't help."""

    permanent = True


class WebhookSignatureInvalid(Exception):
    pass


class WebhookUnknownType(Exception):
    pass


class WebhookMalformed(Exception):
    pass


def is_configured() -> bool:
    return bool(settings.POLAR_ACCESS_TOKEN)


@functools.cache
def _client(token: str, environment: str, base_url: str, timeout: float) -> Polar:
    # One per process and configuration: it holds a pooled httpx client.
    return Polar(token, environment=environment, base_url=base_url or None, timeout=timeout)


def client() -> Polar:
    return _client(settings.POLAR_ACCESS_TOKEN, settings.POLAR_SERVER, settings.POLAR_API_BASE_URL,
                   settings.POLAR_TIMEOUT_SECONDS)


def _translate(exc: PolarError, what: str) -> PolarFailure:
    if isinstance(exc, PolarRateLimitError):
        return PolarUnavailable(f"Polar rate-limited {what}", retry_after=exc.retry_after)
    if isinstance(exc, PolarServerError):
        return PolarUnavailable(f"Polar failed {what}: HTTP {exc.status_code}")
    if isinstance(exc, PolarNetworkError):
        return PolarUnavailable(f"Polar could not be reached for {what}: {exc}")
    if isinstance(exc, PolarClientError):
        return PolarRejected(f"Polar refused {what}: HTTP {exc.status_code} {exc.error}")
    return PolarRejected(f"Polar answered {what} with something unreadable: {exc}")


def create_checkout(*, product_id: str, external_customer_id: str, customer_id: str, customer_email: str,
                    customer_name: str, success_url: str, return_url: str, customer_ip_address: str,
                    metadata: dict[str, str]) -> str:
    """A checkout session for one product; returns the URL to send the buyer to."""
    kwargs: dict[str, Any] = {"products": [product_id], "success_url": success_url, "return_url": return_url,
                              "metadata": metadata, "customer_metadata": metadata}
    if customer_id:  # known Polar customer: its email may differ from the user's now
        kwargs["customer_id"] = customer_id
    else:
        kwargs.update(external_customer_id=external_customer_id, customer_email=customer_email,
                      customer_name=customer_name)
    if customer_ip_address:
        kwargs["customer_ip_address"] = customer_ip_address
    try:
        return client().checkouts.create(**kwargs).url
    except PolarError as exc:
        raise _translate(exc, "the checkout") from exc


def create_portal_url(*, customer_id: str, external_customer_id: str, return_url: str) -> str:
    """A fresh, short-lived customer-portal URL (never stored)."""
    ident = {"customer_id": customer_id} if customer_id else {"external_customer_id": external_customer_id}
    try:
        return client().customer_sessions.create(**ident, return_url=return_url).customer_portal_url
    except PolarError as exc:
        raise _translate(exc, "the customer session") from exc


def ingest_call_minutes(*, external_customer_id: str, external_id: str, minutes: int, seconds: int,
                        call_id: int, timestamp: str) -> tuple[int, int]:
    """Report one call's minutes; `external_id` makes a retry a duplicate, never a second charge.

    Returns (inserted, duplicates) as Polar counted them.
    """
    try:
        result = client().events.ingest(events=[{
            "name": settings.BILLING_USAGE_EVENT_NAME,
            "external_customer_id": external_customer_id,
            "external_id": external_id,
            "timestamp": timestamp,
            "metadata": {"minutes": minutes, "seconds": seconds, "call_id": str(call_id)},
        }])
    except PolarError as exc:
        raise _translate(exc, "the usage event") from exc
    return result.inserted, result.duplicates


@dataclass(frozen=True)
class ProductPrice:
    product_id: str
    name: str
    amount_cents: int | None  # the fixed recurring amount
    currency: str
    interval: str
    metered_unit_cents: str | None  # per unit of the meter, as Polar gives it (a decimal string)


def list_product_prices(product_ids: list[str]) -> dict[str, ProductPrice]:
    """Name and prices of the given products, keyed by product id."""
    try:
        page = client().products.list(id=product_ids, limit=100)
    except PolarError as exc:
        raise _translate(exc, "the product list") from exc
    found: dict[str, ProductPrice] = {}
    for product in page.items:
        fixed = next((p for p in product.prices if getattr(p, "amount_type", "") == "fixed"), None)
        metered = next((p for p in product.prices if getattr(p, "amount_type", "") == "metered_unit"), None)
        found[product.id] = ProductPrice(
            product_id=product.id, name=product.name,
            amount_cents=fixed.price_amount if fixed else None,
            currency=(fixed or metered).price_currency if (fixed or metered) else "usd",
            interval=product.recurring_interval or "",
            metered_unit_cents=str(metered.unit_amount) if metered else None)
    return found


def validate_webhook(body: bytes, headers: dict[str, str]) -> Any:
    """The typed event of a signed delivery (secret used as Polar gives it, `whsec_…` included)."""
    try:
        return polar_webhooks.validate_event(body, headers, settings.POLAR_WEBHOOK_SECRET)
    except polar_webhooks.PolarWebhookVerificationError as exc:
        raise WebhookSignatureInvalid(str(exc)) from exc
    except polar_webhooks.PolarWebhookUnknownTypeError as exc:
        raise WebhookUnknownType(str(exc.event_type)) from exc
    except polar_webhooks.PolarWebhookError as exc:
        raise WebhookMalformed(str(exc)) from exc


def warm_up() -> None:
    """Build the SDK's webhook-payload loader now: the first build takes ~9 s of CPU (adaptix compiles a loader
    for the 40-odd event types), which would otherwise land on the first webhook, close to Polar's 10 s timeout."""
    from polar.base import deserialize

    try:
        deserialize({}, polar_webhooks.WebhookPayload)
    except Exception:  # an empty payload never loads; the compiled loader is cached all the same
        pass
