"""Live dashboard pages in real headless Chromium, served by daphne on the Redis channel layer: a call's page
and the calls list update themselves when the call changes (static/calls/live.js), and a call's page stops
listening once the call has ended."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest
from django.db import connections
from django.utils import timezone

from calls.live import publish_call_changed
from calls.models import Call
from calls.postcall.summary import call_summary_failed
from calls.services.lifecycle import call_create_inbound, call_finalize
from tests.browser import ARTIFACTS
from tests.factories import PASSWORD, make_call
from voice.offline.realtime import RealtimeStandin
from voice.offline.twilio import TwilioStandin
from voice.tests.conftest import ACCOUNT_SID, AUTH_TOKEN, start_asgi_server, stop_process

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server(settings):
    """daphne in a subprocess, and this test process on the same Redis channel layer as the server."""
    standin = RealtimeStandin(port=0)
    standin.start_in_thread()
    twilio = TwilioStandin(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    twilio.start_in_thread()
    # No collectstatic in tests: the server finds static/calls/live.js where it lies.
    live = start_asgi_server("daphne", standin=standin, twilio_standin=twilio,
                             extra_env={"WHITENOISE_USE_FINDERS": "true"})
    redis_url = os.environ["REDIS_URL"]
    server_redis = (redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url) + "/" + \
        os.environ.get("TEST_E2E_REDIS_DB", "5")
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [{"address": server_redis, "socket_timeout": 10}]}}}
    yield live
    stop_process(live.process)
    twilio.stop()
    standin.stop()


def elsewhere(func: Callable[..., Any], **kwargs: Any) -> Any:
    """Run a write the way a worker or a request thread would: on a thread with no event loop (this one has
    Playwright's)."""
    def run() -> Any:
        try:
            return func(**kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result(timeout=30)


def sign_in(page, base_url: str, user, settings) -> None:
    # The server process checks passwords with the product's hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    page.goto(base_url + "/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(re.compile("/dashboard/"))


def listening(page, socket, call: Call) -> None:
    """Wait until the page's socket has joined its group: nudge until the browser receives a frame."""
    for _ in range(40):
        elsewhere(publish_call_changed, call_id=call.id, business_id=call.business_id, status=call.status)
        try:
            socket.wait_for_event("framereceived", timeout=250)
            return
        except Exception:
            continue
    pytest.fail("the page's live socket never received anything")


def test_a_live_call_page_and_the_calls_list_update_themselves(page, server, alice, alices_business, settings):
    call = make_call(alices_business, status=Call.Status.IN_PROGRESS, answered_at=timezone.now())
    sign_in(page, server.base_url, alice, settings)

    with page.expect_websocket(lambda ws: ws.url.endswith(f"/ws/dashboard/calls/{call.id}/")) as opened:
        page.goto(f"{server.base_url}/dashboard/calls/{call.id}/")
    socket = opened.value
    assert page.locator("#call-live .live-badge").count() == 1
    listening(page, socket, call)

    elsewhere(call_finalize, call_id=call.id, status=Call.Status.COMPLETED, end_reason="caller_hung_up")
    page.get_by_text("The summary is being written").wait_for(timeout=10_000)  # over: it waits for the summary
    assert page.locator("#call-live .live-badge").count() == 0
    assert not socket.is_closed()
    # The summary arrives (here: its model gave up, as a worker records it) and the page shows it by itself.
    elsewhere(call_summary_failed, call_id=call.id, error="the summary model was unreachable")
    page.wait_for_selector("#call-live:not([data-live-socket])", timeout=10_000)
    assert "No summary: the summary model was unreachable" in page.inner_text("#call-live")
    for _ in range(50):  # the call ended and is summarised: the page stops listening
        if socket.is_closed():
            break
        page.wait_for_timeout(100)
    assert socket.is_closed()
    page.screenshot(path=str(ARTIFACTS / "live-call-ended.png"), full_page=True)

    with page.expect_websocket(lambda ws: ws.url.endswith("/ws/dashboard/calls/")) as opened:
        page.goto(f"{server.base_url}/dashboard/calls/")
    listening(page, opened.value, call)
    rows = page.locator("#call-list-live tbody tr")
    assert rows.count() == 1
    elsewhere(call_create_inbound, business=alices_business, twilio_call_sid="CA" + "7" * 32,
              from_number="+12025550143", to_number=alices_business.phone_number)
    page.wait_for_function("document.querySelectorAll('#call-list-live tbody tr').length === 2", timeout=10_000)
    assert page.locator("#call-list-live tbody tr.is-live").count() == 1
    page.screenshot(path=str(ARTIFACTS / "live-calls-list.png"), full_page=True)
