"""A local stand-in for the slice of Twilio's REST API we call, for tests and demos.

Our code talks to Twilio through the official ``twilio`` client; point that client here and the same
code paths run, HTTP and all, with no network:

    standin = TwilioStandin()                       # or: with TwilioStandin() as standin / async with
    base_url = standin.start_in_thread()            # http://127.0.0.1:PORT
    call_sid = standin.add_call()                   # a live (in-progress) call
    client = Client(standin.account_sid, standin.auth_token)
    client.api.base_url = base_url                  # what standin.client() does
    client.calls(call_sid).update(twiml="<Response><Hangup/></Response>")
    assert standin.requests[-1].form["Twiml"] == "<Response><Hangup/></Response>"
    standin.stop()

Implemented (``/2010-04-01`` API, form-encoded, HTTP Basic auth = account SID : auth token):

* ``POST /2010-04-01/Accounts/{AC}/Calls/{CA}.json`` with ``Twiml``, ``Url`` [+ ``Method``] or
  ``Status=completed|canceled`` → 200 + Call resource JSON;
* ``GET`` of the same URL → 200 + Call resource;
* ``POST /2010-04-01/Accounts/{AC}/Calls.json`` (outbound create) → 201 + a ``queued`` Call.

Errors use Twilio's JSON shape ``{"code", "message", "more_info", "status"}``: bad or missing
credentials → 401/20003; unknown call or route → 404/20404 ("The requested resource {path} was not
found"); update of a call that is no longer live → 400/21220 ("Call is not in-progress. Cannot
redirect.", which is also what Twilio answers to a hang-up of an already-ended call). Tests can force
failures with :meth:`TwilioStandin.fail_next` (any route; optionally only one HTTP method) /
:meth:`TwilioStandin.fail_call`. Parameter-validation
errors (both Twiml and Url, bad Status, missing To/From) answer 400 with code 21201 chosen by the stand-in;
the exact code Twilio uses there was not verified.

Phone numbers (what the portal's *Get a number* / *Use a number you already have* / *Release* need):

* ``GET /2010-04-01/Accounts/{AC}/AvailablePhoneNumbers/{CC}/Local.json`` with ``AreaCode``,
  ``Contains`` (digits, ``*`` = any one digit), ``VoiceEnabled``, ``PageSize`` → 200 +
  ``{"available_phone_numbers": [...], "uri", "page", "page_size", "start", "end", "first_page_uri",
  "next_page_uri": null, "previous_page_uri": null}``; the inventory comes from
  :meth:`TwilioStandin.add_available_number` (or :meth:`TwilioStandin.seed_fictional_inventory`). A
  country with no inventory at all → 404/20404, as Twilio answers for a country it has no numbers in;
  a search with no match → 200 and an empty list. Results are one page (``next_page_uri`` null).
* ``GET /2010-04-01/Accounts/{AC}/IncomingPhoneNumbers.json`` with ``PhoneNumber`` (a partial number;
  ``*`` matches any digit), ``FriendlyName``, ``PageSize`` (default 50) and ``Page`` → 200 +
  ``{"incoming_phone_numbers": [...], "page", "page_size", "start", "end", "uri", "first_page_uri",
  "next_page_uri", "previous_page_uri"}``; ``next_page_uri`` is set while more pages follow, so the
  SDK's ``stream()``/``list()`` pages through.
* ``POST /2010-04-01/Accounts/{AC}/IncomingPhoneNumbers.json`` (buy) with ``PhoneNumber`` or
  ``AreaCode`` and any of ``FriendlyName``, ``VoiceUrl``, ``VoiceMethod``, ``VoiceFallbackUrl``,
  ``VoiceFallbackMethod``, ``StatusCallback``, ``StatusCallbackMethod``, ``VoiceApplicationSid``,
  ``TrunkSid`` → 201 + an IncomingPhoneNumber resource (``sid`` ``PN…``, ``status`` ``in-use``,
  ``origin`` ``twilio``); the number leaves the available inventory. Errors, with the codes Twilio's
  test credentials document for the same cases: a number that is not for sale (never listed, already
  bought) → 400/21422 "PhoneNumber is not available"; a malformed number → 400/21421 "PhoneNumber is
  invalid"; an area code with nothing left → 400/21452 "No phone numbers found in area code".
  Neither PhoneNumber nor AreaCode → 400/21201 (code chosen by the stand-in, not verified).
* ``GET`` / ``POST`` ``/2010-04-01/Accounts/{AC}/IncomingPhoneNumbers/{PN}.json`` → 200 + the resource
  (fetch / update of the same fields; an empty value clears a URL);
* ``DELETE`` of the same URL (release) → 204, no body; the number is gone from the account (and does not
  return to the inventory: Twilio ages released numbers). Unknown ``PN`` → 404/20404.
* A ``*Method`` other than GET/POST → 400/21201 (code chosen by the stand-in, not verified).

:meth:`TwilioStandin.add_incoming_number` puts a number the account "already has" in place;
``incoming_numbers`` (sid → resource as served) and ``requests`` show what our code asked for. With
``state_path`` the numbers (inventory and account) are kept in a JSON file across restarts, so the demo
started by ``scripts/run.sh`` remembers what was bought.

A plain ``http.server`` in a daemon thread, so it serves the sync client, the async client, and code
that blocks the event loop alike. No Django imports.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

__all__ = ["DEFAULT_ACCOUNT_SID", "DEFAULT_AUTH_TOKEN", "RecordedRequest", "TwilioStandin"]

DEFAULT_ACCOUNT_SID = "AC" + "a" * 32
DEFAULT_AUTH_TOKEN = "standin-auth-token-" + "0" * 13
API_VERSION = "2010-04-01"
LIVE_STATUSES = ("queued", "ringing", "in-progress")
_CALL_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Calls(?:/(?P<call>[^/]+))?\.json$")
_AVAILABLE_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/AvailablePhoneNumbers/(?P<country>[^/]+)/Local\.json$")
_NUMBERS_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/IncomingPhoneNumbers(?:/(?P<number>[^/]+))?\.json$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_NUMBER_FIELDS = {  # form field → resource field, for buying and updating a number
    "FriendlyName": "friendly_name", "VoiceUrl": "voice_url", "VoiceMethod": "voice_method",
    "VoiceFallbackUrl": "voice_fallback_url", "VoiceFallbackMethod": "voice_fallback_method",
    "StatusCallback": "status_callback", "StatusCallbackMethod": "status_callback_method",
    "VoiceApplicationSid": "voice_application_sid", "TrunkSid": "trunk_sid",
}
# Fictional numbers for demos: 555-0100…0199 is reserved for fiction in every North American area code.
FICTIONAL_AREAS = {"415": ("San Francisco", "CA", "US"), "212": ("New York", "NY", "US"),
                   "312": ("Chicago", "IL", "US"), "206": ("Seattle", "WA", "US"), "604": ("Vancouver", "BC", "CA")}


def _now_rfc2822() -> str:
    return format_datetime(datetime.now(timezone.utc))


def _error(status: int, code: int, message: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
    body.update(extra)
    return status, body


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]  # first value of each field
    form_lists: dict[str, list[str]]
    auth_ok: bool
    auth_user: str | None
    headers: dict[str, str]
    call_sid: str | None = None
    status: int | None = None  # what the stand-in answered
    response: dict[str, Any] | None = None
    at: float = field(default_factory=time.time)


@dataclass
class _FailRule:
    status: int
    code: int
    message: str
    remaining: int | None  # None = forever
    method: str | None = None  # only requests with this HTTP method (None = any)


class TwilioStandin:
    """See the module docstring. Thread-safe; inspect `requests`, `calls` and `updates(sid)`."""

    def __init__(
        self,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.host = host
        self.port = port
        self.base_url: str | None = None
        self.requests: list[RecordedRequest] = []
        self.calls: dict[str, dict[str, Any]] = {}  # sid → Call resource as served
        self.available: dict[str, dict[str, Any]] = {}  # E.164 → AvailablePhoneNumber resource (for sale)
        self.incoming_numbers: dict[str, dict[str, Any]] = {}  # PN sid → IncomingPhoneNumber resource (owned)
        self.state_path: str | None = None  # keep the numbers in this JSON file across restarts
        self._updates: dict[str, list[dict[str, str]]] = {}
        self._fail_next: list[_FailRule] = []
        self._fail_call: dict[str, _FailRule] = {}
        self.latency_s = 0.0  # sleep before answering (to exercise our timeouts)
        self.on_update: Callable[[str, dict[str, str]], None] | None = None  # (call_sid, form), server thread
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start_in_thread(self) -> str:
        """Bind, serve from a daemon thread, return the base URL (``http://127.0.0.1:PORT``)."""
        if self._server is not None:
            assert self.base_url is not None
            return self.base_url
        standin = self

        class Handler(_Handler):
            pass

        Handler.standin = standin
        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        host, port = server.server_address[:2]
        self.port = port
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> TwilioStandin:
        self.start_in_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> TwilioStandin:
        # Still a thread (binding takes ~1 ms): sync Twilio calls made from async code must not deadlock.
        self.start_in_thread()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ clients

    def client(self, **kwargs: Any):
        """A sync ``twilio.rest.Client`` pointed at the stand-in."""
        from twilio.rest import Client

        client = Client(self.account_sid, self.auth_token, **kwargs)
        return self.point(client)

    def async_client(self):
        """A ``twilio.rest.Client`` with ``AsyncTwilioHttpClient`` (create inside a running loop; close
        with ``await client.http_client.close()``)."""
        from twilio.http.async_http_client import AsyncTwilioHttpClient

        return self.client(http_client=AsyncTwilioHttpClient())

    def point(self, client):
        """Aim an existing twilio Client's ``api`` domain (api.twilio.com) at the stand-in."""
        if self.base_url is None:
            raise RuntimeError("start the stand-in first")
        client.edge = client.region = None  # an edge/region would rewrite the host (TWILIO_EDGE/REGION env)
        client.api.base_url = self.base_url
        return client

    # ------------------------------------------------------------------ state for tests

    def add_call(
        self,
        call_sid: str | None = None,
        *,
        to: str = "+14155550100",
        from_: str = "+14155550123",
        status: str = "in-progress",
        direction: str = "inbound",
    ) -> str:
        """Register a call (live unless `status` says otherwise); returns its SID."""
        sid = call_sid or "CA" + secrets.token_hex(16)
        now = _now_rfc2822()
        with self._lock:
            self.calls[sid] = self._call_resource(sid, to=to, from_=from_, status=status, direction=direction, now=now)
            self._updates.setdefault(sid, [])
        return sid

    def end_call(self, call_sid: str, status: str = "completed") -> None:
        """The far end hung up: later updates get 21220."""
        with self._lock:
            self._finish(self.calls[call_sid], status)

    def fail_next(self, status: int = 500, code: int = 20500, message: str = "An internal server error has occurred", *,
                  times: int = 1, method: str | None = None) -> None:
        """The next `times` authenticated requests (any route; only `method` ones if given) fail with this
        Twilio error."""
        with self._lock:
            self._fail_next.append(_FailRule(status, code, message, times, method))

    def fail_call(
        self,
        call_sid: str,
        status: int = 400,
        code: int = 21220,
        message: str = "Call is not in-progress. Cannot redirect.",
        *,
        times: int | None = None,
    ) -> None:
        """Requests for this call fail with this Twilio error (`times` of them; None = until cleared)."""
        with self._lock:
            self._fail_call[call_sid] = _FailRule(status, code, message, times)

    def clear_failures(self) -> None:
        with self._lock:
            self._fail_next.clear()
            self._fail_call.clear()

    def updates(self, call_sid: str) -> list[dict[str, str]]:
        """Accepted updates of a call, oldest first (the form fields that were applied)."""
        with self._lock:
            return list(self._updates.get(call_sid, []))

    def requests_for(self, call_sid: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.call_sid == call_sid]

    # ------------------------------------------------------------------ phone numbers

    def add_available_number(
        self,
        phone_number: str,
        *,
        iso_country: str = "US",
        locality: str = "",
        region: str = "",
        postal_code: str | None = None,
        friendly_name: str | None = None,
    ) -> dict[str, Any]:
        """Put a number up for sale (what AvailablePhoneNumbers searches and IncomingPhoneNumbers buys)."""
        resource = {
            "friendly_name": friendly_name or _friendly(phone_number),
            "phone_number": phone_number,
            "lata": None,
            "locality": locality or None,
            "rate_center": locality.upper() or None,
            "latitude": None,
            "longitude": None,
            "region": region or None,
            "postal_code": postal_code,
            "iso_country": iso_country,
            "address_requirements": "none",
            "beta": False,
            "capabilities": {"voice": True, "SMS": True, "MMS": False, "fax": False},
        }
        with self._lock:
            self.available[phone_number] = resource
            self._save_state()
        return resource

    def add_incoming_number(self, phone_number: str, *, sid: str | None = None, **fields: str) -> str:
        """A number this account already owns (e.g. bought in the console); `fields` as in an update
        (``VoiceUrl="https://…"``). Returns its ``PN…`` SID."""
        with self._lock:
            resource = self._number_resource(sid or "PN" + secrets.token_hex(16), phone_number)
            self._apply_number_fields(resource, fields)
            self.incoming_numbers[resource["sid"]] = resource
            self._save_state()
            return resource["sid"]

    def number(self, phone_number: str) -> dict[str, Any] | None:
        """The account's IncomingPhoneNumber resource for `phone_number`, if it owns it."""
        with self._lock:
            return next((dict(n) for n in self.incoming_numbers.values() if n["phone_number"] == phone_number), None)

    def number_requests(self, method: str | None = None) -> list[RecordedRequest]:
        """Requests to the IncomingPhoneNumbers routes (optionally of one HTTP method), oldest first."""
        with self._lock:
            return [r for r in self.requests if _NUMBERS_PATH.match(r.path) and (method is None or r.method == method)]

    def seed_fictional_inventory(self, per_area: int = 20) -> None:
        """Numbers for demos, all fictional (+1 NPA 555-01xx): `per_area` for sale in each of
        FICTIONAL_AREAS (from 555-0110 up), and three that the account already owns, unconfigured
        (+1 415 555-0100, the demo business's, and -0101, -0102), for "use a number you already have"."""
        state_path, self.state_path = self.state_path, None  # one write at the end, not one per number
        try:
            for area, (city, region, country) in FICTIONAL_AREAS.items():
                for n in range(10, 10 + min(per_area, 90)):
                    number = f"+1{area}55501{n:02d}"
                    if number not in self.available:
                        self.add_available_number(number, iso_country=country, locality=city, region=region)
            for number in ("+14155550100", "+14155550101", "+14155550102"):
                if self.number(number) is None:
                    self.add_incoming_number(number)
        finally:
            self.state_path = state_path
        with self._lock:
            self._save_state()

    def load_state(self, path: str) -> None:
        """Use `path` to keep the numbers across restarts, loading what is there already."""
        with self._lock:
            self.state_path = path
            if os.path.exists(path):
                with open(path, encoding="utf-8") as fh:
                    state = json.load(fh)
                self.available = state.get("available", {})
                self.incoming_numbers = state.get("incoming_numbers", {})

    def _save_state(self) -> None:
        if not self.state_path:
            return
        tmp = self.state_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"available": self.available, "incoming_numbers": self.incoming_numbers}, fh, indent=1)
        os.replace(tmp, self.state_path)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.calls.clear()
            self._updates.clear()
            self.available.clear()
            self.incoming_numbers.clear()
            self.clear_failures()

    # ------------------------------------------------------------------ request handling

    def _call_resource(self, sid: str, *, to: str, from_: str, status: str, direction: str, now: str) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}"
        sub = ("notifications", "recordings", "payments", "events", "siprec", "streams", "transcriptions",
               "user_defined_message_subscriptions", "user_defined_messages")
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": now,
            "date_updated": now,
            "direction": direction,
            "duration": None,
            "end_time": None,
            "forwarded_from": None,
            "from": from_,
            "from_formatted": from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": "PN" + secrets.token_hex(16),
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": sid,
            "start_time": now if status == "in-progress" else None,
            "status": status,
            "subresource_uris": {name: f"{uri}/{name.title().replace('_', '')}.json" for name in sub},
            "to": to,
            "to_formatted": to,
            "trunk_sid": None,
            "uri": uri + ".json",
            "_started": time.time(),
        }

    @staticmethod
    def _finish(call: dict[str, Any], status: str) -> None:
        now = _now_rfc2822()
        call["status"] = status
        call["date_updated"] = call["end_time"] = now
        call["duration"] = str(int(time.time() - call["_started"])) if call["start_time"] else "0"

    @staticmethod
    def _public(call: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in call.items() if not k.startswith("_")}

    def _check_auth(self, header: str | None) -> tuple[bool, str | None]:
        if not header or not header.startswith("Basic "):
            return False, None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False, None
        ok = secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(password, self.auth_token)
        return ok, user

    def _handle(self, record: RecordedRequest, auth_header: str | None) -> tuple[int, dict[str, Any]]:
        if not record.auth_ok:
            message = "Authentication Error - No credentials provided" if not auth_header else "Authenticate"
            return _error(401, 20003, message, detail="Your AccountSid or AuthToken was incorrect.")
        not_found = _error(404, 20404, f"The requested resource {record.path} was not found")
        routes = ((_CALL_PATH, self._handle_call), (_AVAILABLE_PATH, self._handle_available),
                  (_NUMBERS_PATH, self._handle_numbers))
        for pattern, handler in routes:
            match = pattern.match(record.path)
            if match:
                break
        else:
            return not_found
        if match["account"] != self.account_sid:  # assumed: another account's URL is just "not found"
            return not_found
        if pattern is _CALL_PATH:
            record.call_sid = match["call"]
        with self._lock:
            rule = next((r for r in self._fail_next if r.method in (None, record.method)), None)
            if rule is not None:
                rule.remaining = (rule.remaining or 1) - 1
                if rule.remaining <= 0:
                    self._fail_next.remove(rule)
                return _error(rule.status, rule.code, rule.message)
            return handler(record, match, not_found)

    def _handle_call(self, record: RecordedRequest, match: re.Match, not_found: tuple[int, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        if record.call_sid is None:
            if record.method != "POST":
                return not_found
            return self._create(record.form)
        call = self.calls.get(record.call_sid)
        if call is None:
            return not_found
        rule = self._fail_call.get(record.call_sid)
        if rule is not None:
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    del self._fail_call[record.call_sid]
            return _error(rule.status, rule.code, rule.message)
        if record.method == "GET":
            return 200, self._public(call)
        if record.method != "POST":
            return _error(405, 20004, "Method not allowed")
        return self._update(call, record.form)

    def _update(self, call: dict[str, Any], form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        twiml, url, status = form.get("Twiml"), form.get("Url"), form.get("Status")
        if twiml is not None and url is not None:
            return _error(400, 21201, "Twiml and Url are mutually exclusive")
        if status is not None and status not in ("completed", "canceled"):
            return _error(400, 21201, f"Status must be completed or canceled, not {status!r}")
        if twiml is None and url is None and status is None:
            return _error(400, 21201, "Nothing to update: pass Twiml, Url or Status")
        if call["status"] not in LIVE_STATUSES:
            return _error(400, 21220, "Call is not in-progress. Cannot redirect.")
        if status == "completed":
            self._finish(call, "completed" if call["status"] == "in-progress" else "canceled")
        elif status == "canceled":
            if call["status"] != "in-progress":  # canceling only affects queued/ringing calls
                self._finish(call, "canceled")
        else:
            call["date_updated"] = _now_rfc2822()
        applied = {k: v for k, v in form.items() if k in ("Twiml", "Url", "Method", "Status", "FallbackUrl", "StatusCallback", "TimeLimit")}
        self._updates[call["sid"]].append(applied)
        callback = self.on_update
        if callback is not None:
            callback(call["sid"], dict(form))
        return 200, self._public(call)

    def _create(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if not form.get("To") or not form.get("From"):
            return _error(400, 21201, "To and From are required")
        if not (form.get("Url") or form.get("Twiml") or form.get("ApplicationSid")):
            return _error(400, 21201, "Url, Twiml or ApplicationSid is required")
        sid = "CA" + secrets.token_hex(16)
        call = self._call_resource(sid, to=form["To"], from_=form["From"], status="queued", direction="outbound-api", now=_now_rfc2822())
        self.calls[sid] = call
        self._updates[sid] = []
        return 201, self._public(call)


    # ------------------------------------------------------------------ phone number routes

    def _handle_available(self, record: RecordedRequest, match: re.Match, not_found: tuple[int, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        if record.method != "GET":
            return _error(405, 20004, "Method not allowed")
        country = match["country"]
        stock = [n for n in self.available.values() if n["iso_country"] == country]
        if not stock:
            return not_found
        area_code = record.query.get("AreaCode", "")
        contains = record.query.get("Contains", "")
        found = [n for n in stock
                 if (not area_code or n["phone_number"][2:5] == area_code)
                 and (not contains or _digits_match(contains, n["phone_number"]))]
        page_size = _int(record.query.get("PageSize"), 50, 1, 1000)
        found = found[:page_size]
        uri = record.path + ("?" + urlencode(record.query) if record.query else "")
        return 200, {"available_phone_numbers": found, "uri": uri, "page": 0, "page_size": page_size, "start": 0,
                     "end": max(len(found) - 1, 0), "first_page_uri": uri, "next_page_uri": None,
                     "previous_page_uri": None}

    def _handle_numbers(self, record: RecordedRequest, match: re.Match, not_found: tuple[int, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        sid = match["number"]
        if sid is None:
            if record.method == "GET":
                return self._list_numbers(record)
            if record.method == "POST":
                return self._buy_number(record.form)
            return _error(405, 20004, "Method not allowed")
        number = self.incoming_numbers.get(sid)
        if number is None:
            return not_found
        if record.method == "GET":
            return 200, dict(number)
        if record.method == "DELETE":
            del self.incoming_numbers[sid]
            self._save_state()
            return 204, {}
        if record.method != "POST":
            return _error(405, 20004, "Method not allowed")
        problem = self._apply_number_fields(number, record.form)
        if problem:
            return problem
        number["date_updated"] = _now_rfc2822()
        self._save_state()
        return 200, dict(number)

    def _list_numbers(self, record: RecordedRequest) -> tuple[int, dict[str, Any]]:
        query = record.query
        numbers = list(self.incoming_numbers.values())
        if query.get("PhoneNumber"):
            numbers = [n for n in numbers if _digits_match(query["PhoneNumber"], n["phone_number"])]
        if query.get("FriendlyName"):
            numbers = [n for n in numbers if n["friendly_name"] == query["FriendlyName"]]
        page_size = _int(query.get("PageSize"), 50, 1, 1000)
        page = _int(query.get("Page"), 0, 0, 10**6)
        start = page * page_size
        rows = numbers[start:start + page_size]
        filters = {k: query[k] for k in ("PhoneNumber", "FriendlyName") if query.get(k)}

        def page_uri(n: int, token: bool = False) -> str:
            params = {**filters, "PageSize": page_size, "Page": n}
            if token:
                params["PageToken"] = f"PA{n}"
            return f"{record.path}?{urlencode(params)}"

        more = start + page_size < len(numbers)
        return 200, {"incoming_phone_numbers": [dict(n) for n in rows], "page": page, "page_size": page_size,
                     "start": start, "end": start + max(len(rows) - 1, 0), "uri": page_uri(page),
                     "first_page_uri": page_uri(0), "next_page_uri": page_uri(page + 1, True) if more else None,
                     "previous_page_uri": page_uri(page - 1, True) if page > 0 else None}

    def _buy_number(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        phone_number, area_code = form.get("PhoneNumber", ""), form.get("AreaCode", "")
        if not phone_number and not area_code:
            return _error(400, 21201, "Required parameter PhoneNumber or AreaCode is missing.")
        if phone_number:
            if not _E164.match(phone_number):
                return _error(400, 21421, "PhoneNumber is invalid")
            offer = self.available.get(phone_number)
            if offer is None:
                return _error(400, 21422, "PhoneNumber is not available")
        else:
            offer = next((n for n in self.available.values()
                          if n["iso_country"] in ("US", "CA") and n["phone_number"][2:5] == area_code), None)
            if offer is None:
                return _error(400, 21452, "No phone numbers found in area code")
        resource = self._number_resource("PN" + secrets.token_hex(16), offer["phone_number"],
                                         friendly_name=offer["friendly_name"])
        problem = self._apply_number_fields(resource, form)
        if problem:
            return problem
        del self.available[offer["phone_number"]]
        self.incoming_numbers[resource["sid"]] = resource
        self._save_state()
        return 201, dict(resource)

    @staticmethod
    def _apply_number_fields(resource: dict[str, Any], form: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        for name in ("VoiceMethod", "VoiceFallbackMethod", "StatusCallbackMethod"):
            if name in form and form[name].upper() not in ("GET", "POST"):
                return _error(400, 21201, f"{name} must be GET or POST")
        for name, key in _NUMBER_FIELDS.items():
            if name in form:
                value = form[name]
                resource[key] = value.upper() if name.endswith("Method") else value
        return None

    def _number_resource(self, sid: str, phone_number: str, *, friendly_name: str | None = None) -> dict[str, Any]:
        now = _now_rfc2822()
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/IncomingPhoneNumbers/{sid}"
        return {
            "account_sid": self.account_sid,
            "address_requirements": "none",
            "address_sid": None,
            "api_version": API_VERSION,
            "beta": False,
            "bundle_sid": None,
            "capabilities": {"voice": True, "sms": True, "mms": False, "fax": False},
            "date_created": now,
            "date_updated": now,
            "emergency_address_sid": None,
            "emergency_address_status": "unregistered",
            "emergency_status": "Inactive",
            "friendly_name": friendly_name or _friendly(phone_number),
            "identity_sid": None,
            "origin": "twilio",
            "phone_number": phone_number,
            "sid": sid,
            "sms_application_sid": "",
            "sms_fallback_method": "POST",
            "sms_fallback_url": "",
            "sms_method": "POST",
            "sms_url": "",
            "status": "in-use",
            "status_callback": "",
            "status_callback_method": "POST",
            "subresource_uris": {"assigned_add_ons": f"{uri}/AssignedAddOns.json"},
            "trunk_sid": None,
            "type": "local",
            "uri": uri + ".json",
            "voice_application_sid": "",
            "voice_caller_id_lookup": False,
            "voice_fallback_method": "POST",
            "voice_fallback_url": "",
            "voice_method": "POST",
            "voice_receive_mode": "voice",
            "voice_url": "",
        }


def _friendly(phone_number: str) -> str:
    """Twilio's friendly form: (415) 555-0110 for North American numbers, else the E.164 number."""
    if phone_number.startswith("+1") and len(phone_number) == 12:
        d = phone_number[2:]
        return f"({d[:3]}) {d[3:6]}-{d[6:]}"
    return phone_number


def _digits_match(pattern: str, phone_number: str) -> bool:
    """A partial number, `*` standing for any one digit, found anywhere in `phone_number`."""
    regex = "".join("[0-9]" if ch == "*" else re.escape(ch) for ch in pattern.strip())
    return re.search(regex, phone_number) is not None


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(value), low), high) if value is not None else default
    except ValueError:
        return default


class _Handler(BaseHTTPRequestHandler):
    standin: TwilioStandin
    protocol_version = "HTTP/1.1"
    server_version = "TwilioStandin/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        standin = self.standin
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        parts = urlsplit(self.path)
        form_lists = parse_qs(body, keep_blank_values=True) if self.command == "POST" else {}
        auth_header = self.headers.get("Authorization")
        auth_ok, user = standin._check_auth(auth_header)
        record = RecordedRequest(
            method=self.command,
            path=parts.path,
            query={k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            form={k: v[0] for k, v in form_lists.items()},
            form_lists=form_lists,
            auth_ok=auth_ok,
            auth_user=user,
            headers=dict(self.headers.items()),
        )
        with standin._lock:
            standin.requests.append(record)
        if standin.latency_s:
            time.sleep(standin.latency_s)
        try:
            status, payload = standin._handle(record, auth_header)
        except Exception as exc:  # a stand-in bug must show up as a 500, not a hung client
            status, payload = _error(500, 20500, f"stand-in error: {type(exc).__name__}: {exc}")
        record.status, record.response = status, payload
        data = b"" if status == 204 else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
        self.end_headers()
        self.wfile.write(data)
