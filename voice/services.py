"""Setting up a phone call: answering Twilio's incoming-call webhook and opening the call's media stream.

Each is one function that does all of its database work, so that the async webhook and the media socket make
a single hop to the shared thread pool (`voice.session.in_db_pool`) instead of several, and never wait in line
on Django's one thread-sensitive thread behind other requests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from accounts.models import Business
from accounts.transfers import allowed_transfer_number
from billing.models import BillingAccount
from billing.services.gate import CallAllowance, call_allowance, call_gate
from calls.models import Call
from calls.services.forwards import call_forward_start
from calls.services.lifecycle import call_create_inbound, call_finalize
from voice import twilio_api
from voice.agent import AgentProfile, load_agent_profile
from voice.phrases import phrase
from voice.stream_tokens import StreamGrant, issue_stream_token, redeem_stream_token

log = logging.getLogger(__name__)


def answer_incoming_call(*, call_sid: str, to_number: str, from_number: str) -> str:
    """The TwiML for a call Twilio reports ringing on one of our numbers (the signature is already checked).

    Records the call (a retried webhook gets the same call), then connects its media stream; when billing
    refuses the call it is still recorded, and the caller is forwarded to the business or told politely."""
    # The billing account comes with the business (one query); a business without one is on its free trial.
    business = (Business.objects.select_related("billing_account").filter(phone_number=to_number)
                .order_by().first() if to_number else None)  # numbers are unique: no ordering to compute
    if business is None or not call_sid:
        log.info("Incoming call to an unknown number %s", to_number)
        # No business, so no business language: the operator's default.
        language = settings.LANGUAGE_CODE[:2]
        return twilio_api.say_twiml(phrase("unknown_number", language), language=language)
    try:
        account = business.billing_account
    except BillingAccount.DoesNotExist:
        account = None
    # One transaction: one commit for the call's writes (each commit waits for PostgreSQL to flush its log).
    with transaction.atomic():
        return _answer_known_number(business, account, call_sid=call_sid, to_number=to_number,
                                    from_number=from_number)


def _answer_known_number(business: Business, account: BillingAccount | None, *, call_sid: str, to_number: str,
                         from_number: str) -> str:
    decision = call_gate(business=business, account=account)
    call = call_create_inbound(business=business, twilio_call_sid=call_sid, from_number=from_number,
                               to_number=to_number)
    if not decision.allowed:
        transfer_to = allowed_transfer_number(business)
        if transfer_to:
            # Noted before the call is finalised: its usage, recorded at finalisation, then waits for the
            # forward's outcome instead of being recorded at once without the forwarded minutes.
            call_forward_start(twilio_call_sid=call_sid, number=transfer_to)
        call_finalize(call_id=call.id, status=Call.Status.FAILED, end_reason=f"billing_{decision.reason}",
                      error=f"Not answered by the receptionist: billing ({decision.reason}).")
        message = phrase("billing_forward" if transfer_to else "billing_hangup", business.language)
        return twilio_api.say_twiml(message, language=business.language, transfer_to=transfer_to)
    return twilio_api.connect_stream_twiml(call_id=call.id, token=issue_stream_token(call),
                                           language=business.language)


@dataclass(frozen=True)
class OpenedStream:
    grant: StreamGrant
    profile: AgentProfile
    allowance: CallAllowance  # the minutes the call has (free trial, hard cap), as of its start


def open_media_stream(*, token: str, call_id: str | None, call_sid: str | None) -> OpenedStream:
    """Redeem the stream token of a media stream's `start` message and load what the agent needs to answer.
    Raises StreamTokenError (nothing is loaded then)."""
    with transaction.atomic():  # the claim and the caller's record: one commit
        grant = redeem_stream_token(token, call_id=call_id, call_sid=call_sid)
    return OpenedStream(grant=grant, profile=load_agent_profile(grant.business_id, grant.caller_number),
                        allowance=call_allowance(call_id=grant.call_id))
