"""The Twilio stand-in server: a plain ``http.server`` in a daemon thread, so it serves the sync client, the
async client, and code that blocks the event loop alike. No Django imports.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from voice.offline.twilio.calls import _Calls
from voice.offline.twilio.common import (
    _AVAILABLE_PATH, _CALL_PATH, DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, _NUMBERS_PATH, _FailRule, RecordedRequest,
    _error,
)
from voice.offline.twilio.numbers import _Numbers
from voice.offline.twilio.recordings import _RECORDING_PATH, Media, _Recordings


class TwilioStandin(_Calls, _Numbers, _Recordings):
    """See voice/offline/twilio/__init__.py. Thread-safe; inspect `requests`, `calls` and `updates(sid)`."""

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
        self.recordings: dict[str, dict[str, Any]] = {}  # RE sid → recording (with its WAV bytes under "audio")
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

    # ------------------------------------------------------------------ failures and state

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
            self.recordings.clear()
            self.clear_failures()

    # ------------------------------------------------------------------ request handling

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
                  (_NUMBERS_PATH, self._handle_numbers), (_RECORDING_PATH, self._handle_recording))
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
        if isinstance(payload, Media):
            data, content_type = payload.data, payload.content_type
        else:
            data, content_type = b"" if status == 204 else json.dumps(payload).encode(), "application/json; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
        self.end_headers()
        self.wfile.write(data)
