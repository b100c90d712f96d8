"""Short-lived, single-use tokens that let one Twilio media stream attach to one call.

The incoming-call webhook (signature-checked) issues the token inside TwiML; the media socket presents it
in its `start` message. The signature binds it to the call and the Twilio call SID; `max_age` makes it
expire; `call_claim_stream` (a compare-and-set on the call row) makes it single-use.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing

from calls.services.customers import customer_count_call
from calls.services.lifecycle import call_claim_stream

SALT = "voice.stream-token"


class StreamTokenError(Exception):
    pass


@dataclass(frozen=True)
class StreamGrant:
    call_id: int
    business_id: int
    twilio_call_sid: str
    caller_number: str


def issue_stream_token(call: Call) -> str:
    return signing.dumps({"call": call.id, "sid": call.twilio_call_sid}, salt=SALT, compress=True)


def redeem_stream_token(token: str, *, call_id: str | None, call_sid: str | None) -> StreamGrant:
    """Check the token against the `start` message and claim the call's stream. Raises StreamTokenError."""
    try:
        data = signing.loads(token or "", salt=SALT, max_age=settings.STREAM_TOKEN_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        raise StreamTokenError("stream token expired")
    except signing.BadSignature:
        raise StreamTokenError("stream token is not valid")
    if str(data.get("call")) != str(call_id):
        raise StreamTokenError("stream token belongs to another call")
    if call_sid is not None and data.get("sid") != call_sid:
        raise StreamTokenError("stream token does not match the call SID")
    claimed = call_claim_stream(call_id=data["call"])
    if claimed is None:
        raise StreamTokenError("stream token already used")
    customer_count_call(business_id=claimed.business_id, phone=claimed.from_number, call_id=data["call"])
    return StreamGrant(call_id=data["call"], business_id=claimed.business_id, twilio_call_sid=data.get("sid") or "",
                       caller_number=claimed.from_number)
