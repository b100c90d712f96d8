"""The HTTP side of a simulated call: Twilio-shaped SIDs, signatures, the incoming-call webhook and the
status callback (mixed into ``SimulatedCall``)."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timezone
from email.utils import format_datetime

import httpx
from twilio.request_validator import RequestValidator

from voice.offline.simulator.twiml import TwimlResult, parse_twiml


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two-letter prefix + 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None) -> str:
    """X-Twilio-Signature for a form POST to `url` (or a WebSocket upgrade with params=None)."""
    return RequestValidator(auth_token).compute_signature(url, dict(params or {}))



class _Webhooks:
    """The signed webhook POSTs of a :class:`~voice.offline.simulator.call.SimulatedCall`."""

    # ---------------------------------------------------------------- HTTP

    def _webhook_params(self) -> dict[str, str]:
        cfg = self.config
        params = {
            "AccountSid": cfg.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": cfg.from_number,
            "To": cfg.to_number,
            "Caller": cfg.from_number,
            "Called": cfg.to_number,
        }
        for role, number, geo in (
            ("From", cfg.from_number, ("SAN FRANCISCO", "CA", "94103", "US")),
            ("To", cfg.to_number, ("", "CA", "", "US")),
        ):
            if number.startswith("+1"):
                twin = "Caller" if role == "From" else "Called"
                for prefix in (role, twin):
                    params.update(
                        {f"{prefix}City": geo[0], f"{prefix}State": geo[1], f"{prefix}Zip": geo[2], f"{prefix}Country": geo[3]}
                    )
        for key, value in (cfg.webhook_params or {}).items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return params

    def _signed_headers(self, url: str, params: Mapping[str, str]) -> dict[str, str]:
        cfg = self.config
        signature = cfg.signature_override if cfg.signature_override is not None else twilio_signature(cfg.auth_token, url, params)
        return {
            "X-Twilio-Signature": signature,
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }

    async def _post_webhook(self, http: httpx.AsyncClient) -> TwimlResult:
        params = self._webhook_params()
        headers = self._signed_headers(self.report.signed_url, params)
        started = time.monotonic()
        try:
            response = await http.post(self.report.webhook_url, data=params, headers=headers)
        except httpx.HTTPError as exc:
            self.report.error = f"webhook request failed: {type(exc).__name__}: {exc}"
            twiml = TwimlResult(outcome="no_response")
            self.report.twiml = asdict(twiml)
            return twiml
        self.report.webhook_ms = (time.monotonic() - started) * 1000.0
        self.report.webhook_status = response.status_code
        if response.status_code != 200:
            twiml = TwimlResult(outcome="http_error", http_status=response.status_code, raw=response.text[:2000])
            self.report.error = f"webhook answered HTTP {response.status_code}"
        else:
            twiml = parse_twiml(response.text)
            twiml.http_status = response.status_code
            if twiml.outcome == "invalid":
                self.report.error = "webhook answered something that is not TwiML"
        self.report.twiml = asdict(twiml)
        return twiml

    async def _post_status(self, http: httpx.AsyncClient, elapsed_s: float) -> None:
        cfg = self.config
        params = {
            "AccountSid": cfg.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": "completed",
            "CallDuration": str(int(math.ceil(elapsed_s))),
            "Duration": str(max(1, int(math.ceil(elapsed_s / 60.0)))),
            "Direction": "inbound",
            "From": cfg.from_number,
            "To": cfg.to_number,
            "Caller": cfg.from_number,
            "Called": cfg.to_number,
            "CallbackSource": "call-progress-events",
            "SequenceNumber": "0",
            "Timestamp": format_datetime(datetime.now(timezone.utc)),
        }
        url = self._public + cfg.status_path
        try:
            response = await http.post(self._base + cfg.status_path, data=params, headers=self._signed_headers(url, params))
            self.report.status_callback_status = response.status_code
            if response.status_code >= 400:
                self.report.warnings.append(f"status callback answered HTTP {response.status_code}")
        except httpx.HTTPError as exc:
            self.report.warnings.append(f"status callback failed: {type(exc).__name__}: {exc}")
