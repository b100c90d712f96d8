"""Phone numbers: the inventory for sale, the account's numbers and their routes (mixed into ``TwilioStandin``).


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
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from voice.offline.twilio.common import (
    API_VERSION, _E164, FICTIONAL_AREAS, _NUMBER_FIELDS, _NUMBERS_PATH, _error, _now_rfc2822,
)

if TYPE_CHECKING:
    from voice.offline.twilio.common import RecordedRequest


class _Numbers:
    """AvailablePhoneNumbers and IncomingPhoneNumbers of a :class:`~voice.offline.twilio.server.TwilioStandin`."""

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
