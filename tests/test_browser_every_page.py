"""Every page a member can reach, walked in real headless Chromium on the real ASGI server.

The walker signs in as an owner and as staff, of a business with data (calls with transcripts and events,
appointments, messages, customers, a team with an invitation) and of a fresh one, at 1280 px and at 390 px wide.
It starts from the dashboard and follows every same-site link it finds, in the navigation and on the pages. On
every page it fails on: sideways scrolling, a console error, a failed request (or any answer >= 400, the page's
or a sub-resource's), and a serious or critical accessibility violation found by axe-core (tests/package.json,
installed by `make test`). Screenshots land in test-artifacts/pages/. A page that shows exactly what a page
already checked at that width showed (a staff member's calls list, the default tab under its own name) is loaded
and watched, but not checked or photographed again.

Pages come from the links, never from a hand list: the walk fails when a named GET URL of our apps was not reached
and is not excluded below with a reason; `test_the_pages_left_out_of_the_walk_...` keeps those reasons honest.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connections
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.urls.exceptions import Resolver404
from django.utils import timezone

from accounts.models import Invite, User
from accounts.services import invite_token
from billing.models import UsageRecord
from calls.models import (Call, CallEvent, McpServer, McpTool, Message, NotificationSettings, WebhookDelivery,
                          WebhookEndpoint)
from calls.services.search_document import call_search_refresh
from tests.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.factories import (PASSWORD, add_member, make_appointment, make_business, make_call, make_closed_date,
                             make_customer, make_faq, make_hours, make_message, make_service, make_transcript,
                             make_user)
from voice.offline.realtime import RealtimeStandin
from voice.offline.twilio import TwilioStandin
from voice.tests.conftest import ACCOUNT_SID, AUTH_TOKEN, start_asgi_server, stop_process

AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ARTIFACTS / "pages"
WIDTHS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
OUR_APPS = ("accounts", "billing", "calls", "voice")

# Named URLs of our apps that the walker does not open, each with the reason. Anything else must be reached.
NOT_WALKED = {
    "healthz": "the load balancer's plain-text probe, not a page",
    "admin_login": "the operators' admin login, not a member's page",
    "call_export": "a CSV download, not a page: the walker checks that the link answers 200",
    "analytics_export": "a CSV download, not a page: the walker checks that the link answers 200",
    "test_call_minutes": "JSON the test-call page's script reads after a call (voice/tests/test_browser_call.py)",
    "polar_webhook": "Polar's webhook: POST only",
    "twilio_incoming": "Twilio's webhook: POST only",
    "twilio_status": "Twilio's webhook: POST only",
    "twilio_fallback": "Twilio's webhook: POST only",
    "twilio_dial_result": "Twilio's webhook: POST only",
    "twilio_voicemail_done": "Twilio's webhook: POST only",
    "twilio_voicemail_recording": "Twilio's webhook: POST only",
    "voicemail_audio": "a recording fetched from Twilio, not a page (calls/tests/test_voicemail.py plays it)",
    "billing_checkout": "a form's action: POST only",
    "billing_portal": "a form's action: POST only",
    "appointment_cancel": "a form's action: POST only",
    "message_handle": "a form's action: POST only",
    "message_reopen": "a form's action: POST only",
    "invite_revoke": "a form's action: POST only",
    "member_remove": "a form's action: POST only",
    "business_switch": "a form's action: POST only",
    "number_release": "a form's action: POST only",
    "number_check": "a form's action: POST only",
    "number_reconnect": "a form's action: POST only",
    "mcp_server_refresh": "a form's action: POST only",
    "mcp_server_delete": "a form's action: POST only",
    "mcp_tool_toggle": "a form's action: POST only",
    "billing_billingaccount_changelist": "the operators' admin (billing accounts), not a member's page",
}
POST_ONLY = {name for name, reason in NOT_WALKED.items() if "POST only" in reason}
DOWNLOADS = {"call_export", "analytics_export"}
# What staff cannot open (403): owners' pages, which staff must find no link to.
OWNERS_ONLY = {"settings_notifications": "owners choose where call summaries go",
               "settings_tools": "owners connect the business's own systems, with their tokens",
               "number_search": "owners buy the number", "number_existing": "owners claim the number",
               "onboarding": "staff joined a business that is already set up (they are sent to the dashboard)"}
# Pages only ever reached from outside the app's own links: the walker starts from them as well as from the
# dashboard (each seed function's Member.entry_paths).
ENTRY_PAGES = {"onboarding": "right after sign-up, by redirect",
               "billing_success": "Polar sends the owner back here after checkout",
               "invite_accept": "the link in an invitation email"}
# Query parameters that switch a page to another view of its own: one walk per value. Others (dates, search, a
# page number, analytics' period and channel) show the same template with other figures.
VARIANT_PARAMS = {"view", "status"}
# Pages that show nothing of the business, like allauth's account pages: walked for the first member only.
BUSINESS_FREE = {"landing"}
# Paths the walker never follows: the admin is for operators, and leaving it signed out ends the walk.
SKIP_PREFIXES = ("/admin/", "/static/", "/accounts/logout/")


# The outermost elements that stick out to the right, outside any box that scrolls them itself: what to fix.
WIDEST_ELEMENTS = """() => {
  const limit = document.documentElement.clientWidth + 1;
  const clipped = e => {
    let p = e.parentElement;  // an absolute box is clipped from its containing block (a positioned ancestor) up
    if (getComputedStyle(e).position === 'absolute') while (p && getComputedStyle(p).position === 'static') p = p.parentElement;
    for (; p; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== 'visible') return p !== document.body && p !== document.documentElement;
    }
    return false;
  };
  const out = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > limit && !clipped(e));
  const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
    + (typeof e.className === 'string' && e.className.trim() ? '.' + e.className.trim().split(/ +/).join('.') : '');
  return out.filter(e => !out.includes(e.parentElement)).slice(0, 4).map(
    e => name(e.parentElement) + ' > ' + name(e) + ' ' + Math.round(e.getBoundingClientRect().right) + 'px');
}"""


# What a page shows, without the CSRF tokens that differ on every render.
SHOWN = """() => { const body = document.body.cloneNode(true);
  body.querySelectorAll('input[name=csrfmiddlewaretoken]').forEach(e => e.remove()); return body.innerHTML; }"""


# --- what there is to walk ------------------------------------------------------------------------------------

def named_urls() -> dict[str, str]:
    """Every named URL of our apps: name → the view's module."""
    found: dict[str, str] = {}

    def walk(patterns: list) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns)
            elif isinstance(entry, URLPattern) and entry.name:
                module = getattr(entry.callback, "__module__", "")
                if module.split(".")[0] in OUR_APPS:
                    found[entry.name] = module

    walk(get_resolver().url_patterns)
    return found


def test_the_pages_left_out_of_the_walk_exist_and_the_post_only_ones_refuse_get(client, alice, alices_business):
    """The exclusions stay honest: each names a URL that exists, and a 'POST only' one refuses GET."""
    names = named_urls()
    assert set(NOT_WALKED) <= set(names), f"excluded but gone: {set(NOT_WALKED) - set(names)}"
    assert set(ENTRY_PAGES) | set(OWNERS_ONLY) <= set(names)
    assert not set(NOT_WALKED) & set(ENTRY_PAGES)
    client.force_login(alice)
    for name in POST_ONLY:
        pattern = get_resolver().reverse_dict.getlist(name)[0]
        args = ["1"] * len(pattern[0][0][1])
        assert client.get(reverse(name, args=args)).status_code == 405, f"{name} answers GET"


# --- the data -------------------------------------------------------------------------------------------------

@dataclass
class Member:
    label: str  # names the screenshots
    email: str
    entry_paths: list[str]  # the ENTRY_PAGES this member can open, besides the dashboard


def seed_business_with_data(owner_email: str, staff_email: str) -> tuple[Member, Member]:
    """A business a few weeks in: its profile filled in, calls of every kind, what the calls produced, a team."""
    owner, staff = make_user(owner_email), make_user(staff_email)
    business = make_business(owner=owner, name="Harbor Dental", phone_number="+14155550100",
                             transfer_number="+14155552671", time_zone="America/Los_Angeles",
                             notification_email=owner_email)
    add_member(business, staff)
    for weekday in range(5):
        make_hours(business, weekday, "08:00", "17:00")
    cleaning = make_service(business, "Cleaning", 45, "120.00")
    make_service(business, "Check-up", 30, None)
    make_faq(business)
    make_closed_date(business, (timezone.localdate() + dt.timedelta(days=20)).isoformat(), "Staff training")

    now = timezone.now()
    walter = make_customer(business, phone="+14155550199", name="Walter Bishop", notes="Prefers mornings.")
    booked = make_call(business, from_number=walter.phone, status="completed", outcome="booked",
                       started_at=now - dt.timedelta(minutes=40), answered_at=now - dt.timedelta(minutes=40),
                       ended_at=now - dt.timedelta(minutes=38), duration_seconds=118, cost_usd=Decimal("0.1834"),
                       supervisor_cost_usd=Decimal("0.0031"), summary_cost_usd=Decimal("0.0004"),
                       caller_name="Walter Bishop", summary="Walter booked a cleaning for Tuesday at 10:00.",
                       reason="Wants a cleaning.", action_items=["Send Walter the new-patient form"],
                       finalized_at=now, end_reason="agent_ended")
    walter.call_count, walter.last_call = 1, booked
    walter.save(update_fields=["call_count", "last_call"])
    make_transcript(booked, [("agent", "Thanks for calling Harbor Dental, how can I help?", 0),
                             ("caller", "I would like to book a cleaning on Tuesday morning.", 4000),
                             ("agent", "You're booked for Tuesday at ten. Anything else?", 12000),
                             ("caller", "No, that's all, thanks.", 16000)])
    for order, (offset, kind, payload) in enumerate([
        (5200, "latency", {"ms": 640}),
        (6000, "tool_call", {"name": "ask_supervisor", "arguments": {"request": "Book a cleaning Tuesday 10:00"},
                             "result": "sent to the supervisor"}),
        (9000, "supervisor", {"step": "tool", "tool": "book_appointment", "arguments": {"service": "Cleaning"},
                              "result": {"ok": True}}),
        (11000, "barge_in", {"played_ms": 900}),
        (12900, "latency", {"ms": 910}),
        (17000, "hangup", {"by": "agent"}),
    ], start=1):
        CallEvent.objects.create(call=booked, order=order, offset_ms=offset, kind=kind, payload=payload)
    transferred = make_call(business, from_number="+14155550111", status="completed", outcome="transferred",
                            started_at=now - dt.timedelta(days=2), duration_seconds=130, cost_usd=Decimal("0.0420"),
                            summary="Asked for Dr. Lee; transferred.", finalized_at=now, forward_status="completed")
    CallEvent.objects.create(call=transferred, order=1, offset_ms=3000, kind="transfer",
                             payload={"to": "+14155552671", "reason": "caller asked for a person"})
    failed = make_call(business, from_number="+14155550122", status="failed", outcome="",
                       started_at=now - dt.timedelta(days=3), duration_seconds=4, finalized_at=now)
    CallEvent.objects.create(call=failed, order=1, offset_ms=1000, kind="error",
                             payload={"message": "The realtime model did not answer."})
    make_call(business, from_number="", channel="browser", status="completed", outcome="answered",
              started_at=now - dt.timedelta(days=5), duration_seconds=61, caller_name="", finalized_at=now,
              summary="A test call from the dashboard.")
    for call in Call.objects.filter(business=business):
        call_search_refresh(call_id=call.id)  # as the product's own writers do after storing words
        if call.status == "completed" and call.channel == "twilio":
            UsageRecord.objects.create(business=business, call=call, external_id=f"call_{call.id}",
                                       seconds=call.duration_seconds or 0,
                                       minutes=-(-(call.duration_seconds or 0) // 60), occurred_at=call.started_at,
                                       status="sent")

    make_appointment(business, now + dt.timedelta(days=2), customer=walter, service=cleaning, created_by_call=booked)
    make_appointment(business, now - dt.timedelta(days=3), status="completed")
    make_appointment(business, now + dt.timedelta(days=1), status="cancelled")
    make_message(business, customer=walter, name="Walter Bishop", callback_number=walter.phone,
                 body="Please send the new-patient form.", call=booked, urgency="high")
    make_message(business, name="Dana Scully", body="Is the parking free?", status=Message.Status.HANDLED,
                 handled_at=now)

    Invite.objects.create(business=business, email="newhire@harbor.example", invited_by=owner,
                          expires_at=now + dt.timedelta(days=7))
    NotificationSettings.objects.create(business=business, email_mode="all")
    endpoint = WebhookEndpoint.objects.create(business=business, url="https://hooks.harbor.example/calls",
                                              secret="whsec_walker")
    WebhookDelivery.objects.create(endpoint=endpoint, call=booked, event_type="call.completed", message_id="msg_walker",
                                   url=endpoint.url, payload={}, status="delivered", attempts=1, delivered_at=now)
    # Its own tools: one server answering, one not (rows only: the page never asks a server while it renders).
    orders = McpServer.objects.create(business=business, name="orders", url="https://tools.harbor.example/mcp",
                                      status="ok", checked_at=now)
    McpTool.objects.create(server=orders, name="lookup_order", description="Find an order by its number.")
    McpTool.objects.create(server=orders, name="refund_order", description="Refund an order.", enabled=False)
    McpServer.objects.create(business=business, name="stock", url="https://stock.harbor.example/mcp",
                             status="unreachable", checked_at=now,
                             last_error="The server did not answer within 8 seconds.")

    # An invitation for someone else: a member may still open its link (and is told it isn't theirs).
    other = Invite.objects.create(business=business, email="someone@elsewhere.example", invited_by=owner,
                                  expires_at=now + dt.timedelta(days=7))
    entries = [reverse("onboarding"), reverse("billing_success"), reverse("invite_accept", args=[invite_token(other)])]
    return Member("owner-data", owner_email, entries), Member("staff-data", staff_email, entries)


def seed_fresh_business(owner_email: str, staff_email: str) -> tuple[Member, Member]:
    """A business just past onboarding: the default hours, nothing else yet; one teammate."""
    owner, staff = make_user(owner_email), make_user(staff_email)
    business = make_business(owner=owner, name="Fresh Start Physio", time_zone="Europe/London")
    for weekday in range(5):
        make_hours(business, weekday)
    add_member(business, staff)
    return Member("owner-empty", owner_email, [reverse("onboarding")]), Member("staff-empty", staff_email, [])


# --- the walker -----------------------------------------------------------------------------------------------

@dataclass
class Visit:
    url: str
    url_names: set[str]
    problems: list[str] = field(default_factory=list)
    business_free: bool = False  # shows nothing of the business: the same page for every member


def page_key(path: str, query: str) -> tuple[str, set[tuple[str, str]]] | None:
    """The url name of a same-site path and the variants its query asks for; None when it is not a page here."""
    try:
        match = resolve(path)
    except Resolver404:
        return None
    return match.url_name or path, {(k, v) for k, v in parse_qsl(query) if k in VARIANT_PARAMS}


class Walker:
    """One signed-in browser context: opens each page once and records what is wrong with it."""

    def __init__(self, context: Any, base_url: str, label: str, width: str, checked: dict[int, str]) -> None:
        self.context, self.base_url, self.label, self.width = context, base_url, label, width
        self.page = context.new_page()
        self.current: Visit | None = None
        self.started_by: dict[Any, Visit] = {}  # request → the page that made it
        self.visits: list[Visit] = []
        self.downloads: set[str] = set()
        # What a page showed → the first url that showed it, shared by the walkers of one width: a page that shows
        # the same as one checked already (staff see the owner's dashboard pages) is not checked again.
        self.checked = checked
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda exc: self._problem(self.current, f"JavaScript error: {exc}"))
        self.page.on("request", self._on_request)
        self.page.on("requestfailed", self._on_request_failed)
        self.page.on("response", self._on_response)

    @staticmethod
    def _problem(visit: Visit | None, text: str) -> None:
        if visit is not None:
            visit.problems.append(text)

    def _on_console(self, message: Any) -> None:
        if message.type == "error":
            where = message.location.get("url", "")
            self._problem(self.current, f"console error: {message.text}{f' ({where})' if where else ''}")

    def _on_request(self, request: Any) -> None:
        if self.current is not None:
            self.started_by[request] = self.current

    def _on_request_failed(self, request: Any) -> None:
        visit = self.started_by.get(request, self.current)
        if "ERR_ABORTED" in (request.failure or "") and \
                (visit is not self.current or request.resource_type in ("fetch", "xhr", "document")
                 or request.url.endswith("/favicon.svg")):
            # The browser dropped it, nothing failed: the walker moved on while the page was still fetching, or a
            # page's background fetch (live.js re-reading the page) was cut by the next page. Playwright hands the
            # events over late, so "the page that made it" is not always the one showing by then. The icon is
            # fetched by the browser itself, in the background, and dropped when the walker moves on.
            return
        self._problem(visit, f"request failed: {request.method} {request.url} ({request.failure}, "
                             f"{request.resource_type})")

    def _on_response(self, response: Any) -> None:
        if response.status >= 400:
            self._problem(self.started_by.get(response.request, self.current),
                          f"HTTP {response.status}: {response.request.method} {response.url}")

    def sign_in(self, email: str) -> None:
        page = self.page
        page.goto(self.base_url + "/accounts/login/")
        page.fill("input[name=login]", email)
        page.fill("input[name=password]", PASSWORD)
        page.locator("form button[type=submit]").last.click()
        page.wait_for_url(re.compile("/dashboard/"))

    def walk(self, starts: list[str], skip: set[str] = frozenset()) -> list[Visit]:
        """Breadth first from `starts`: each url name once, and once more for each variant value not yet seen;
        never the url names in `skip`."""
        queue = list(starts)
        seen: dict[str, set[tuple[str, str]]] = {name: set() for name in skip}
        while queue:
            url = queue.pop(0)
            parts = urlsplit(url)
            key = page_key(parts.path, parts.query)
            if key is None:
                continue
            name, variants = key
            if name in seen and variants <= seen[name]:
                continue
            seen.setdefault(name, set()).update(variants)
            if name in DOWNLOADS:
                self.downloads.add(name)
                self._check_download(url)
            elif name not in NOT_WALKED:
                shot = "-".join([name, *(f"{k}-{v}" for k, v in sorted(variants))])
                queue.extend(self.visit(url, name, shot))
        self.current = None
        return self.visits

    def _check_download(self, url: str) -> None:
        answer = self.context.request.get(self.base_url + url)
        if answer.status != 200 or "text/csv" not in answer.headers.get("content-type", ""):
            self.visits.append(Visit(url, set(), [f"download answered {answer.status} "
                                                  f"{answer.headers.get('content-type')}"]))

    def visit(self, url: str, name: str, shot: str) -> list[str]:
        """Open `url`, check it, and return the same-site links (and GET forms' actions) on it."""
        view_module = resolve(urlsplit(url).path).func.__module__
        visit = Visit(url, {name}, business_free=name in BUSINESS_FREE or view_module.startswith("allauth"))
        self.visits.append(visit)
        self.current = visit
        page = self.page
        page.goto(self.base_url + url, wait_until="load")
        landed = page_key(urlsplit(page.url).path, "")
        if landed:
            visit.url_names.add(landed[0])  # a redirect: the page it led to was walked too
        shown = hash(page.evaluate(SHOWN))
        if shown in self.checked:  # e.g. ?view=upcoming is the default view: checked once is enough
            return self._links()  # its requests and console are still watched: they may differ
        self.checked[shown] = url
        width = page.evaluate("() => [document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]")
        if width[0] > width[1]:
            wide = page.evaluate(WIDEST_ELEMENTS)
            visit.problems.append(f"scrolls sideways: {width[0]} px of content in {width[1]} px ({wide})")
        for violation in self._axe():
            nodes = "; ".join(" ".join(node["target"]) for node in violation["nodes"][:4])
            visit.problems.append(f"axe {violation['impact']} {violation['id']}: {violation['help']} "
                                  f"({len(violation['nodes'])}×: {nodes})")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{self.label}-{self.width}-{shot}.png"), full_page=True)
        return self._links()

    def _links(self) -> list[str]:
        hrefs = self.page.evaluate("""() => [...document.querySelectorAll('a[href]')].map(a => a.href).concat(
            [...document.querySelectorAll('form')].filter(f => (f.getAttribute('method') || 'get').toLowerCase() === 'get')
                .map(f => f.action))""")
        links = []
        for href in hrefs:
            parts = urlsplit(href)
            if f"{parts.scheme}://{parts.netloc}" != self.base_url or parts.path.startswith(SKIP_PREFIXES):
                continue
            links.append(parts.path + (f"?{parts.query}" if parts.query else ""))
        return links

    def _axe(self) -> list[dict]:
        self.page.add_script_tag(path=str(AXE))
        result = self.page.evaluate("async () => JSON.stringify((await axe.run(document, "
                                    "{resultTypes: ['violations']})).violations)")
        return [v for v in json.loads(result) if v["impact"] in ("serious", "critical")]


# --- the walk -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, django_db_blocker):
    """uvicorn in a subprocess as in production, with the Twilio stand-in (the number pages) and demo mode on."""
    standin = RealtimeStandin(port=0)
    standin.start_in_thread()
    twilio = TwilioStandin(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    twilio.start_in_thread()
    live = start_asgi_server("uvicorn", standin=standin, twilio_standin=twilio,
                             extra_env={"WHITENOISE_USE_FINDERS": "true", "DEMO_MODE": "true"})
    yield live
    stop_process(live.process)
    twilio.stop()
    standin.stop()


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", list(WIDTHS))
def test_every_page_a_member_reaches_is_clean_in_a_real_browser(width, asgi_server):
    """Signed out, then as the owner and as staff of a business with data and of a fresh one."""
    from playwright.sync_api import sync_playwright

    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: `make test` installs it (npm ci --prefix tests)")
    harbor_owner, harbor_staff = seed_business_with_data("owner@harbor.example", "staff@harbor.example")
    fresh_owner, fresh_staff = seed_fresh_business("owner@fresh.example", "staff@fresh.example")
    # The server process checks passwords with the product's hasher, not the tests' fast one.
    hasher = PBKDF2PasswordHasher()
    User.objects.update(password=hasher.encode(PASSWORD, hasher.salt()))
    connections.close_all()

    # Signed out: the home page and the sign-in page everyone passes through.
    walks = [(None, None, "anonymous", ["/", "/accounts/login/"])]
    walks += [(role, member.email, member.label, ["/dashboard/", *member.entry_paths])
              for role, member in [("owner", harbor_owner), ("owner", fresh_owner), ("staff", harbor_staff),
                                   ("staff", fresh_staff)]]
    report: list[str] = []
    walked: dict[str | None, set[str]] = {None: set(), "owner": set(), "staff": set()}
    downloads: set[str] = set()
    checked: dict[int, str] = {}
    shared: set[str] = set()  # walked for one member, the same for the next: no business data on them
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for role, email, label, starts in walks:
                context = browser.new_context(viewport=WIDTHS[width])
                walker = Walker(context, asgi_server.base_url, label, width, checked)
                if email:
                    walker.sign_in(email)
                for visit in walker.walk(starts, skip=shared if email else set()):
                    walked[role] |= visit.url_names
                    if email and visit.business_free:
                        shared |= visit.url_names
                    report.extend(f"[{label} {width}] {visit.url}: {problem}" for problem in visit.problems)
                downloads |= walker.downloads
                context.close()
        finally:
            browser.close()

    expected = set(named_urls()) - set(NOT_WALKED)
    for role, unreachable in [("owner", set()), ("staff", set(OWNERS_ONLY) | shared)]:
        missing = expected - unreachable - walked[role]
        assert not missing, f"named pages no link led {role} to (link them, or exclude them with a reason): " \
                            f"{sorted(missing)}"
    assert downloads == DOWNLOADS, f"download links not found: {DOWNLOADS - downloads}"
    assert not report, "problems on the pages:\n" + "\n".join(report)
