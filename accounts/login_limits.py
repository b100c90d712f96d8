"""Failed `/admin/` logins counted in the cache, per client address and per username.

allauth rate-limits its own login form only; Django's admin has a second one. A fixed window per key: the
first failure starts it (ADMIN_LOGIN_FAILURE_WINDOW_SECONDS), every failure in it counts, and once either
count reaches its limit the form refuses further attempts until the window ends, without checking passwords.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache

_PREFIX = "admin-login-failures"


def _keys(ip: str, username: str) -> tuple[str, str]:
    # Hashed: a username is attacker-chosen text, and cache keys must stay short and plain.
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()
    address = hashlib.sha256(ip.encode()).hexdigest()
    return f"{_PREFIX}:ip:{address}", f"{_PREFIX}:user:{name}"


def admin_login_locked(*, ip: str, username: str) -> bool:
    """True when this address or this username has used up its failed attempts for the window."""
    ip_key, user_key = _keys(ip, username)
    counts = cache.get_many([ip_key, user_key])
    return (counts.get(ip_key, 0) >= settings.ADMIN_LOGIN_MAX_FAILURES_PER_IP
            or (bool(username.strip())
                and counts.get(user_key, 0) >= settings.ADMIN_LOGIN_MAX_FAILURES_PER_USERNAME))


def admin_login_failed(*, ip: str, username: str) -> None:
    """Count one failed attempt for the address and the username."""
    window = settings.ADMIN_LOGIN_FAILURE_WINDOW_SECONDS
    for key in _keys(ip, username):
        cache.add(key, 0, timeout=window)  # starts the window; a running one keeps its expiry
        try:
            cache.incr(key)
        except ValueError:  # the window ended between add and incr
            cache.set(key, 1, timeout=window)


def admin_login_succeeded(*, username: str) -> None:
    """The username's own count starts again; the address's count stays (one address may try many names)."""
    cache.delete(_keys("", username)[1])
