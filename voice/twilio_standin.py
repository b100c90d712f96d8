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
failures with :meth:`TwilioStandin.fail_next` / :meth:`TwilioStandin.fail_call`. Parameter-validation
errors (both Twiml and Url, bad Status, missing To/From) answer 400 with code 21201 chosen by the stand-in;
the exact code Twilio uses there was not verified.

A plain ``http.server`` in a daemon thread, so it serves the sync client, the async client, and code
that blocks the event loop alike. No Django imports.
"""

from __future__ import annotations

import base64
import json
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
from urllib.parse import parse_qs, urlsplit

__all__ = ["DEFAULT_ACCOUNT_SID", "DEFAULT_AUTH_TOKEN", "RecordedRequest", "TwilioStandin"]

DEFAULT_ACCOUNT_SID = "AC" + "a" * 32
DEFAULT_AUTH_TOKEN = "standin-auth-token-" + "0" * 13
API_VERSION = "2010-04-01"
LIVE_STATUSES = ("queued", "ringing", "in-progress")
_CALL_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Calls(?:/(?P<call>[^/]+))?\.json$")


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

    def fail_next(self, status: int = 500, code: int = 20500, message: str = "An internal server error has occurred", *, times: int = 1) -> None:
        """The next `times` authenticated requests (any route) fail with this Twilio error."""
        with self._lock:
            self._fail_next.append(_FailRule(status, code, message, times))

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

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.calls.clear()
            self._updates.clear()
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
        match = _CALL_PATH.match(record.path)
        if not match or match["account"] != self.account_sid:  # assumed: another account's URL is just "not found"
            return not_found
        record.call_sid = match["call"]
        with self._lock:
            if self._fail_next:
                rule = self._fail_next[0]
                rule.remaining = (rule.remaining or 1) - 1
                if rule.remaining <= 0:
                    self._fail_next.pop(0)
                return _error(rule.status, rule.code, rule.message)
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
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
        self.end_headers()
        self.wfile.write(data)
