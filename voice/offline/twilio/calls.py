"""Calls: the live calls a test registers and the Call routes our code updates (mixed into ``TwilioStandin``).

Implemented (``/2010-04-01`` API, form-encoded, HTTP Basic auth = account SID : auth token):

* ``POST /2010-04-01/Accounts/{AC}/Calls/{CA}.json`` with ``Twiml``, ``Url`` [+ ``Method``] or
  ``Status=completed|canceled`` → 200 + Call resource JSON;
* ``GET`` of the same URL → 200 + Call resource;
* ``POST /2010-04-01/Accounts/{AC}/Calls.json`` (outbound create) → 201 + a ``queued`` Call.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from voice.offline.twilio.common import API_VERSION, LIVE_STATUSES, _error, _now_rfc2822

if TYPE_CHECKING:
    from voice.offline.twilio.common import RecordedRequest


class _Calls:
    """Call resources and the ``/Calls`` routes of a :class:`~voice.offline.twilio.server.TwilioStandin`."""

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

    def updates(self, call_sid: str) -> list[dict[str, str]]:
        """Accepted updates of a call, oldest first (the form fields that were applied)."""
        with self._lock:
            return list(self._updates.get(call_sid, []))

    def requests_for(self, call_sid: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.call_sid == call_sid]

    # ------------------------------------------------------------------ call routes

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
