"""Where a webhook (or a business's MCP server) may be reached: an http(s) URL whose every resolved address is
public (no private, loopback, link-local or reserved address, nor one wrapped in IPv6), resolved once and pinned
for the request."""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from calls.postcall.queueing import TransientError


class BlockedAddress(Exception):
    """The webhook URL resolves to an address we never send to (private, loopback, link-local ...)."""


# IPv6 prefixes whose last 32 bits are an IPv4 address the packets end up at (a translator or the host stack
# unwraps them): IPv4-mapped, IPv4-translated (SIIT), the well-known NAT64 prefix and IPv4-compatible.
_IPV4_IN_LOW_BITS = [ipaddress.ip_network(n) for n in ("::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "::/96")]
# RFC 8215's local-use NAT64 prefix: a private network's own translator, wherever it puts the IPv4 part.
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address wraps (6to4, Teredo's server and client, the prefixes above)."""
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    for network in _IPV4_IN_LOW_BITS:
        if ip in network:
            return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def _address_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL_USE:
            return False
        embedded = _embedded_ipv4(ip)
        if any(not (v4.is_global and not v4.is_multicast) for v4 in embedded):
            return False
        if embedded and ip.teredo is None:
            return True  # a pure wrapper: judged by the IPv4 address it reaches (Teredo must pass both tests)
    return ip.is_global and not ip.is_multicast


# getaddrinfo has no timeout of its own: it runs here, and the attempt waits for it only until its deadline.
_resolver = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")


def resolve_webhook_target(url: str, timeout: float | None = None) -> tuple[str, str, int, str]:
    """(scheme, host, port, pinned address) of a webhook URL whose every resolved address is allowed."""
    return resolve_guarded_target(url, timeout=timeout, allow_private=settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES)


def resolve_guarded_target(url: str, *, timeout: float | None = None, allow_private: bool = False,
                           allowed_hosts: frozenset[str] = frozenset()) -> tuple[str, str, int, str]:
    """(scheme, host, port, pinned address) of a URL whose every resolved address is public, or (for an operator's
    own servers) whose host name or every resolved address is one of `allowed_hosts`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BlockedAddress(f"Not an http(s) URL: {url!r}")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM).result(timeout=timeout)
    except socket.gaierror as exc:
        raise TransientError(f"Cannot resolve {host}: {exc}") from exc
    except concurrent.futures.TimeoutError as exc:
        raise TransientError(f"Resolving {host} took longer than the attempt's deadline.") from exc
    addresses = [info[4][0] for info in infos]
    if allow_private or host.lower() in allowed_hosts:
        return parts.scheme, host, port, addresses[0]
    for address in addresses:
        bare = address.split("%")[0]
        if bare.lower() not in allowed_hosts and not _address_allowed(ipaddress.ip_address(bare)):
            raise BlockedAddress(f"{host} resolves to {address}, a private or reserved address.")
    return parts.scheme, host, port, addresses[0]
