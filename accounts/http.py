"""Facts about the HTTP request that several apps need the same way."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The client's address, trusting X-Forwarded-For only as far as TRUSTED_PROXY_COUNT of our own proxies.

    The same rule as allauth's rate limits (ALLAUTH_TRUSTED_PROXY_COUNT): the entry our outermost proxy added,
    counted from the right; anything further left was written by the client and proves nothing.
    """
    hops = settings.ALLAUTH_TRUSTED_PROXY_COUNT
    forwarded = [ip.strip() for ip in request.headers.get("X-Forwarded-For", "").split(",") if ip.strip()]
    if hops and len(forwarded) >= hops:
        return forwarded[-hops]
    return request.META.get("REMOTE_ADDR", "")
