"""`/metrics`: who may read the operator metrics, and the view that serves them (receptionist/metrics.py).

Served without Django's middleware (receptionist/bare_http.py): Prometheus scrapes a process by its address over
plain HTTP, which the HTTPS redirect and the ALLOWED_HOSTS check would refuse, and it has no session or CSRF
token. This module is its only gate.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from receptionist import metrics as operator_metrics

LOOPBACK = ("127.0.0.0/8", "::1/128")
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _address_in(address: str, networks: tuple[_Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:  # "unknown", a name, a port glued on: not an address we can vouch for
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket is 127.0.0.1
    return any(ip in network for network in networks)


def request_path(*, remote_addr: str, forwarded_for: str, trusted_proxies: int) -> list[str] | None:
    """The addresses a request came through, the client first and our own peer last; None when it came through
    a proxy we do not count, so where it began is unknown.

    X-Forwarded-For is believed as far as TRUSTED_PROXY_COUNT of our proxies (the rule of `accounts.http.client_ip`):
    the entry our outermost proxy added is the client, and anything further left was written by the client."""
    forwarded = [address.strip() for address in forwarded_for.split(",") if address.strip()]
    if not forwarded:
        return [remote_addr]
    if trusted_proxies <= 0 or len(forwarded) < trusted_proxies:
        # A proxy on this machine would make every outsider look like loopback: never take that for the client.
        return None
    return [*forwarded[-trusted_proxies:], remote_addr]


def network_allowed(path: list[str] | None, cidrs: tuple[str, ...]) -> bool:
    """The client is in the allowed networks, and so is every hop after it (or it is a proxy on this machine):
    a request sent straight to us with a made-up X-Forwarded-For still has its real peer checked."""
    if not path:
        return False
    allowed = _networks(cidrs)
    hops_allowed = allowed + _networks(LOOPBACK)
    client, *hops = path
    return _address_in(client, allowed) and all(_address_in(hop, hops_allowed) for hop in hops)


def token_matches(authorization: str, token: str) -> bool:
    scheme, _, presented = authorization.partition(" ")
    # Compared in constant time, so the answer's timing says nothing about how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


def scrape_allowed(*, remote_addr: str, forwarded_for: str, authorization: str) -> bool:
    """METRICS_TOKEN, when set, must be presented; METRICS_ALLOWED_NETWORKS, when set, must hold the scraper.
    With neither set only loopback may scrape; with only a token set, any address with the token may."""
    token, cidrs = settings.METRICS_TOKEN, tuple(settings.METRICS_ALLOWED_NETWORKS)
    if token and not token_matches(authorization, token):
        return False
    if token and not cidrs:
        return True
    path = request_path(remote_addr=remote_addr, forwarded_for=forwarded_for,
                        trusted_proxies=settings.ALLAUTH_TRUSTED_PROXY_COUNT)
    return network_allowed(path, cidrs or LOOPBACK)


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """The metrics of every process on this machine, for Prometheus. A refused scraper gets the same 403
    whatever was wrong (a missing or wrong token, or its address), and nothing is logged about the token."""
    if not scrape_allowed(remote_addr=request.META.get("REMOTE_ADDR", ""),
                          forwarded_for=request.headers.get("X-Forwarded-For", ""),
                          authorization=request.headers.get("Authorization", "")):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    body, content_type = operator_metrics.render()
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
