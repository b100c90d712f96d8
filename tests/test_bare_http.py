"""Twilio's webhooks are served without Django's middleware (receptionist/bare_http.py): a webhook's answer does
not wait for a dozen thread round trips behind live calls' audio, and nothing else loses its middleware."""

from __future__ import annotations

import asyncio
import collections

import httpx
import pytest
from asgiref import sync
from django.urls import URLPattern, URLResolver, get_resolver
from twilio.request_validator import RequestValidator

from calls.models import Call
from receptionist.bare_http import MIDDLEWARE_FREE_PREFIXES
from tests.factories import make_business

pytestmark = pytest.mark.django_db(transaction=True)

AUTH_TOKEN = "test-twilio-auth-token"
BASE = "https://rx.example.com"
NUMBER = "+14155552671"


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_ACCOUNT_SID = "AC" + "a" * 32
    settings.PUBLIC_BASE_URL = BASE
    settings.ALLOWED_HOSTS = ["rx.example.com"]


def post_through_asgi(path: str, params: dict[str, str], *, signed: bool = True) -> httpx.Response:
    """POST to the real ASGI application, as uvicorn hands it a request."""
    from receptionist.asgi import application

    headers = {"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(BASE + path, params)} if signed else {}

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=BASE) as client:
            return await client.post(path, data=params, headers=headers)

    return asyncio.run(post())


def incoming(call_sid: str = "CA" + "1" * 32) -> dict[str, str]:
    return {"CallSid": call_sid, "From": "+12025550143", "To": NUMBER, "CallStatus": "ringing"}


def middleware_free_routes() -> list[tuple[str, object]]:
    """(path, view) of every URL pattern the middleware-free handler serves."""
    found: list[tuple[str, object]] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            path = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, path)
            elif isinstance(pattern, URLPattern) and ("/" + path).startswith(MIDDLEWARE_FREE_PREFIXES):
                found.append(("/" + path, pattern.callback))

    walk(get_resolver().url_patterns, "")
    return found


def test_the_incoming_call_webhook_makes_no_thread_hop_but_its_database_work(monkeypatch):
    make_business(phone_number=NUMBER)
    hops: collections.Counter = collections.Counter()
    hop = sync.SyncToAsync.__call__

    def counted(self, *args, **kwargs):
        hops[getattr(self.func, "__qualname__", repr(self.func))] += 1
        return hop(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counted)
    response = post_through_asgi("/voice/twilio/incoming/", incoming())
    assert response.status_code == 200 and "<Stream" in response.text
    assert Call.objects.filter(twilio_call_sid="CA" + "1" * 32).exists()
    # Django's request_started signal, the call's database work, the response's close; through the middleware
    # stack it was 17 (each middleware's process_request and process_response on a thread).
    assert sum(hops.values()) <= 3, dict(hops)
    assert not [name for name in hops if "Middleware" in name], dict(hops)


def test_an_unsigned_post_to_every_middleware_free_route_is_refused():
    routes = middleware_free_routes()
    assert {path for path, _ in routes} >= {"/voice/twilio/incoming/", "/voice/twilio/status/"}
    for path, _ in routes:
        response = post_through_asgi(path, incoming(), signed=False)
        assert response.status_code == 403, path


def test_every_middleware_free_route_is_csrf_exempt():
    # Without CsrfViewMiddleware a form view there would lose its protection silently: only Twilio-signed views
    # belong under these prefixes.
    for path, view in middleware_free_routes():
        assert getattr(view, "csrf_exempt", False), path


def test_pages_elsewhere_keep_the_middleware():
    from receptionist.asgi import application

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=BASE) as client:
            return await client.get("/dashboard/")

    response = asyncio.run(get())
    assert response.status_code == 302 and "/accounts/login/" in response.headers["location"]
    assert response.headers["x-frame-options"] == "DENY"
