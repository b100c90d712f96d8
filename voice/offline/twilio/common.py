"""What the Twilio stand-in's parts share: credentials, routes, Twilio's error shape, the request log.

Errors use Twilio's JSON shape ``{"code", "message", "more_info", "status"}``: bad or missing
credentials → 401/20003; unknown call or route → 404/20404 ("The requested resource {path} was not
found"); update of a call that is no longer live → 400/21220 ("Call is not in-progress. Cannot
redirect.", which is also what Twilio answers to a hang-up of an already-ended call). Tests can force
failures with :meth:`TwilioStandin.fail_next` (any route; optionally only one HTTP method) /
:meth:`TwilioStandin.fail_call`. Parameter-validation
errors (both Twiml and Url, bad Status, missing To/From) answer 400 with code 21201 chosen by the stand-in;
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any


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
