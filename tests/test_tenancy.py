"""Tenancy: a member of one business never reaches another business's objects.

Every URL that names an object by id must appear in OBJECT_URLS, and every WebSocket route in SOCKET_CASES;
the walk tests fail when a new one is added without a tenancy check here.
"""

import asyncio
import datetime as dt
import gc
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from accounts import services
from accounts.access import SESSION_KEY
from accounts.models import Membership
from calls.models import Call, McpServer, McpTool
from calls.services.lifecycle import call_finalize
from receptionist.routing import websocket_urlpatterns
from tests.factories import make_call, make_service
from tests.factories import make_appointment, make_customer, make_message
from voice.offline.realtime import RealtimeStandin

def alices_mcp_server(ctx) -> McpServer:
    return McpServer.objects.create(business=ctx["business"], name="orders", url="https://tools.example.com/mcp")


# url name -> (HTTP method, function building one of Alice's objects and returning its URL kwargs)
OBJECT_URLS = {
    "invite_revoke": ("post", lambda ctx: {"invite_id": services.invite_create(
        business=ctx["business"], email="x@example.com", role="staff", invited_by=ctx["alice"]).pk}),
    "member_remove": ("post", lambda ctx: {"membership_id": Membership.objects.get(user=ctx["bob"]).pk}),
    "business_switch": ("post", lambda ctx: {"business_id": ctx["business"].pk}),
    "appointment_cancel": ("post", lambda ctx: {"appointment_id": make_appointment(
        ctx["business"], timezone.now() + dt.timedelta(days=1)).pk}),
    "message_handle": ("post", lambda ctx: {"message_id": make_message(ctx["business"]).pk}),
    "message_reopen": ("post", lambda ctx: {"message_id": make_message(ctx["business"]).pk}),
    "customer_detail": ("get", lambda ctx: {"customer_id": make_customer(ctx["business"]).pk}),
    "call_detail": ("get", lambda ctx: {"call_id": make_call(ctx["business"]).pk}),
    "voicemail_audio": ("get", lambda ctx: {"message_id": make_message(
        ctx["business"], recording_sid="RE" + "0" * 32, recording_seconds=5).pk}),
    "mcp_server_refresh": ("post", lambda ctx: {"server_id": alices_mcp_server(ctx).pk}),
    "mcp_server_delete": ("post", lambda ctx: {"server_id": alices_mcp_server(ctx).pk}),
    "mcp_tool_toggle": ("post", lambda ctx: {"tool_id": McpTool.objects.create(
        server=alices_mcp_server(ctx), name="lookup_order").pk}),
}
# Routes with an id-like parameter that is not a tenant object id.
NOT_TENANT_OBJECTS = {"invite_accept"}  # a signed token, tested in test_invites


def named_routes_with_parameters(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin" or str(entry.pattern).startswith("accounts/"):
                continue  # operators' admin and allauth's own views are not business-scoped
            yield from named_routes_with_parameters(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and entry.name and entry.pattern.converters:
            yield entry.name


def test_every_object_url_is_covered_by_the_tenancy_walk():
    routes = set(named_routes_with_parameters())
    assert routes - NOT_TENANT_OBJECTS == set(OBJECT_URLS)


@pytest.mark.parametrize("name", sorted(OBJECT_URLS))
def test_another_business_object_is_404(client, alice, bob, alices_business, charlie, name):
    method, build = OBJECT_URLS[name]
    url = reverse(name, kwargs=build({"alice": alice, "bob": bob, "business": alices_business}))
    client.force_login(charlie)
    assert getattr(client, method)(url).status_code == 404


@pytest.mark.parametrize("name", ["dashboard", "settings_profile", "settings_hours", "settings_services",
                                  "settings_faq", "team", "billing",
                                  "appointment_list", "message_list", "customer_list", "analytics",
                                  "test_call", "settings_tools"])
def test_business_pages_show_only_the_members_business(client, alices_business, charlie, name):
    make_service(alices_business, name="Alice-only whitening")
    client.force_login(charlie)
    page = client.get(reverse(name)).content.decode()
    assert "Alice Dental" not in page and "Alice-only whitening" not in page


def test_a_formset_cannot_edit_another_business_service(client, alices_business, charlie):
    service = make_service(alices_business, name="Whitening")
    client.force_login(charlie)
    client.post(reverse("settings_services"), {
        "services-TOTAL_FORMS": "1", "services-INITIAL_FORMS": "1", "services-0-id": str(service.pk),
        "services-0-name": "Stolen", "services-0-duration_minutes": "5"})
    service.refresh_from_db()
    assert service.name == "Whitening"


def test_anonymous_visitors_are_sent_to_login(client, db):
    response = client.get(reverse("settings_profile"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))


ALICE_CUSTOMER = "a11ce000-1111-4c5e-9a8b-1234567890ab"
CHARLIE_CUSTOMER = "c4a1e000-2222-4c5e-9a8b-1234567890ab"
STARTER_PRODUCT = "5c8d4f1e-7a2b-4c3d-9e8f-0a1b2c3d4e5f"


class PolarStandIn:
    """Polar's API at a local address for the official SDK (POLAR_API_BASE_URL): products, customer sessions and
    checkouts answered with complete bodies of the SDK's own types, sessions only for the customers it knows;
    every request recorded."""

    def __init__(self, customers: dict[str, str]):
        self.customers = customers  # Polar customer id -> external id (our business's uuid)
        self.requests: list[dict] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                from billing.tests import polar_payloads as p

                standin.requests.append({"method": "GET", "path": self.path, "body": None})
                if self.path.startswith("/v1/products/"):
                    self.reply(200, p.product_list([(STARTER_PRODUCT, "Starter", 4900, None)]))
                else:
                    self.reply(404, {"error": "ResourceNotFound", "detail": "Not found"})

            def do_POST(self):
                from billing.tests import polar_payloads as p

                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                standin.requests.append({"method": "POST", "path": self.path, "body": body})
                if self.path == "/v1/customer-sessions/" and body.get("customer_id") in standin.customers:
                    customer_id = body["customer_id"]
                    answer = p.customer_session(customer_id=customer_id, external_id=standin.customers[customer_id])
                    answer["customer_portal_url"] = f"https://sandbox.polar.sh/acme/portal?customer={customer_id}"
                    self.reply(201, answer)
                elif self.path == "/v1/checkouts/":
                    self.reply(201, p.checkout(checkout_id="4f3e2d1c-0b9a-4877-8665-5443322110ff",
                                               product_id=body["products"][0],
                                               external_customer_id=body.get("external_customer_id")))
                else:
                    self.reply(404, {"error": "ResourceNotFound", "detail": "Not found"})

            def reply(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def polar(settings, alices_business, charlie):
    from billing.models import BillingAccount
    from billing.services.account import account_for_business

    charlies_business = Membership.objects.get(user=charlie).business
    standin = PolarStandIn({ALICE_CUSTOMER: str(alices_business.uuid), CHARLIE_CUSTOMER: str(charlies_business.uuid)})
    settings.POLAR_ACCESS_TOKEN = "polar_oat_tenancy_test"
    settings.POLAR_API_BASE_URL = standin.url
    settings.BILLING_PLANS = [{"key": "starter", "name": "Starter", "product_id": STARTER_PRODUCT,
                               "included_minutes": 100, "hard_cap": True, "price": "$49/month"}]
    BillingAccount.objects.filter(pk=account_for_business(alices_business).pk).update(
        status="past_due", plan_key="alice-plan", polar_customer_id=ALICE_CUSTOMER)
    BillingAccount.objects.filter(pk=account_for_business(charlies_business).pk).update(
        status="active", plan_key="starter", polar_customer_id=CHARLIE_CUSTOMER)
    yield standin
    standin.stop()


def test_billing_acts_only_on_the_members_own_business(client, alices_business, charlie, polar):
    """Billing URLs name no object: checkout and portal use the signed-in owner's current business, whatever
    the request or a session forged to name Alice's business says; Polar never hears of Alice's customer."""
    from billing.models import BillingAccount

    client.force_login(charlie)
    session = client.session
    session[SESSION_KEY] = alices_business.pk
    session.save()
    page = client.get(reverse("billing")).content.decode()
    assert "Alice Dental" not in page and "alice-plan" not in page and "Past due" not in page

    forged = {"business": alices_business.pk, "business_id": alices_business.pk, "customer_id": ALICE_CUSTOMER}
    response = client.post(reverse("billing_portal"), forged)
    assert response.status_code == 302
    assert response["Location"] == f"https://sandbox.polar.sh/acme/portal?customer={CHARLIE_CUSTOMER}"
    response = client.post(reverse("billing_checkout"), {**forged, "plan": "starter"})
    assert response.status_code == 302

    posts = [r for r in polar.requests if r["method"] == "POST"]
    assert [r["path"] for r in posts] == ["/v1/customer-sessions/", "/v1/checkouts/"]
    assert posts[0]["body"]["customer_id"] == CHARLIE_CUSTOMER and posts[1]["body"]["customer_id"] == CHARLIE_CUSTOMER
    sent = json.dumps([r["path"] for r in polar.requests] + [r["body"] for r in posts])
    assert ALICE_CUSTOMER not in sent and str(alices_business.uuid) not in sent
    assert f'"business_id": "{alices_business.pk}"' not in sent
    assert BillingAccount.objects.get(business=alices_business).status == "past_due"


# --- WebSockets: the dashboard's live updates and the browser test call -----------------------------------------

def forged_session_cookie(user, business) -> bytes:
    """A session cookie of `user` whose current business is set to `business` (not necessarily theirs)."""
    client = Client()
    client.force_login(user)
    session = client.session
    session[SESSION_KEY] = business.pk
    session.save()
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def socket(path: str, cookie: bytes) -> WebsocketCommunicator:
    from receptionist.asgi import application

    headers = [(b"host", b"testserver"), (b"origin", b"http://testserver"), (b"cookie", cookie)]
    return WebsocketCommunicator(application, path, headers=headers)


async def first_text_or_close(ws: WebsocketCommunicator) -> dict:
    output = await ws.receive_output(timeout=5)
    return json.loads(output["text"]) if output["type"] == "websocket.send" else output


async def calls_list_case(alices_business, charlie) -> None:
    """Charlie's calls list hears his own business's calls, never Alice's."""
    charlies_business = await database_sync_to_async(lambda: Membership.objects.get(user=charlie).business)()
    alices_call = await database_sync_to_async(make_call)(alices_business, status=Call.Status.IN_PROGRESS)
    charlies_call = await database_sync_to_async(make_call)(charlies_business, status=Call.Status.IN_PROGRESS)
    cookie = await database_sync_to_async(forged_session_cookie)(charlie, alices_business)
    ws = socket("/ws/dashboard/calls/", cookie)
    assert (await ws.connect())[0]
    # Alice's call changes first: were Charlie listening to her business, that nudge would arrive first.
    for call in (alices_call, charlies_call):
        await database_sync_to_async(call_finalize)(call_id=call.id, status=Call.Status.COMPLETED, end_reason="test")
    assert await first_text_or_close(ws) == {"type": "call.changed", "call_id": charlies_call.id,
                                             "status": "completed"}
    await ws.disconnect()


async def call_page_case(alices_business, charlie) -> None:
    """Charlie cannot follow Alice's call: the socket is closed as for a call that does not exist."""
    alices_call = await database_sync_to_async(make_call)(alices_business, status=Call.Status.IN_PROGRESS)
    cookie = await database_sync_to_async(forged_session_cookie)(charlie, alices_business)
    ws = socket(f"/ws/dashboard/calls/{alices_call.id}/", cookie)
    assert (await ws.connect())[0]
    assert await first_text_or_close(ws) == {"type": "websocket.close", "code": 4404}
    await ws.disconnect()


async def browser_call_case(alices_business, charlie) -> None:
    """Charlie's test call runs in his own business: no call is ever recorded (or billed) in Alice's."""
    from django.conf import settings

    charlies_business = await database_sync_to_async(lambda: Membership.objects.get(user=charlie).business)()
    cookie = await database_sync_to_async(forged_session_cookie)(charlie, alices_business)
    async with RealtimeStandin(script={"greeting": "Hello."}, port=0, speed=0) as standin:
        settings.OPENAI_REALTIME_URL, settings.OPENAI_API_KEY = standin.url, "sk-test-standin"
        ws = socket("/ws/browser/call/", cookie)
        assert (await ws.connect())[0]
        first = await first_text_or_close(ws)
        assert first["type"] == "call", first
        await ws.send_to(text_data=json.dumps({"type": "hangup"}))
        async with asyncio.timeout(10):
            while (await ws.receive_output(timeout=10))["type"] != "websocket.close":
                pass
        await ws.send_input({"type": "websocket.disconnect", "code": 1000})
        await ws.wait(timeout=10)
        call = await database_sync_to_async(Call.objects.get)(id=first["call_id"])
        async with asyncio.timeout(10):  # the session records the call's end after the socket has closed
            while call.finalized_at is None:
                await asyncio.sleep(0.05)
                call = await database_sync_to_async(Call.objects.get)(id=first["call_id"])
    assert call.business_id == charlies_business.id and call.channel == "browser"
    assert not await database_sync_to_async(Call.objects.filter(business=alices_business).exists)()


# WebSocket route -> the case proving another business's owner (Charlie, with a session forged to name Alice's
# business) gets nothing of Alice's through it.
SOCKET_CASES = {
    "ws/dashboard/calls/": calls_list_case,
    "ws/dashboard/calls/<int:call_id>/": call_page_case,
    "ws/browser/call/": browser_call_case,
}
# Sockets not opened by a signed-in user.
NOT_SESSION_SOCKETS = {"ws/twilio/media/"}  # Twilio's, authenticated by a single-use stream token (voice/tests)


def test_every_websocket_route_is_covered_by_the_tenancy_walk():
    routes = {str(route.pattern) for route in websocket_urlpatterns}
    assert routes - NOT_SESSION_SOCKETS == set(SOCKET_CASES)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", sorted(SOCKET_CASES))
def test_another_business_owner_gets_nothing_of_alices_through_a_socket(alices_business, charlie, route):
    asyncio.run(SOCKET_CASES[route](alices_business, charlie))
    # A finished call leaves its pool thread's database connection in a reference cycle; collect it now so that
    # its PostgreSQL session is gone before the test database is dropped.
    gc.collect()
