"""Django without its middleware, for Twilio's webhooks.

Under ASGI each of Django's own middleware (built on `MiddlewareMixin`) runs its `process_request` and
`process_response` on a thread: about fifteen thread round trips per request, each waiting for a turn of the event
loop that also carries every live call's audio. Under a burst of calls that put a webhook's answer hundreds of
milliseconds late (issue 13). Twilio's webhooks use none of it (no session, user, CSRF token, messages or frame
options): Twilio's signature, checked inside each view, is their authentication. So `/voice/twilio/` is served by
a Django handler with no middleware: URL resolution, the view, Django's error handling, and the view's one
database hop. (Nor is the Host header checked against ALLOWED_HOSTS there: those views never use it; the signature
covers PUBLIC_BASE_URL.)

`/metrics` is served the same way, for another reason: Prometheus scrapes each process by its own address over
plain HTTP, which the HTTPS redirect and ALLOWED_HOSTS would refuse, and it has no session or CSRF token. Its view
checks the scraper itself (receptionist/metrics_endpoint.py).
"""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

# Every view under these is csrf-exempt and checks Twilio's signature (tests/test_bare_http.py keeps it so).
MIDDLEWARE_FREE_PREFIXES = ("/voice/twilio/",)
# Exact paths served without middleware, each gated by its own view.
MIDDLEWARE_FREE_PATHS = frozenset({"/metrics"})


class MiddlewareFreeHandler(ASGIHandler):
    """Django's ASGI handler with an empty middleware chain."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        get_response = self._get_response_async if is_async else self._get_response
        self._middleware_chain = convert_exception_to_response(get_response)


class HttpRouter:
    """HTTP requests under MIDDLEWARE_FREE_PREFIXES, or at MIDDLEWARE_FREE_PATHS, go to the middleware-free
    handler, the rest to Django's own."""

    def __init__(self, default: Any, middleware_free: Any) -> None:
        self.default = default
        self.middleware_free = middleware_free

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope["path"]
        bare = path.startswith(MIDDLEWARE_FREE_PREFIXES) or path in MIDDLEWARE_FREE_PATHS
        app = self.middleware_free if bare else self.default
        await app(scope, receive, send)
