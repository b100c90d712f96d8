"""Twilio's webhooks, and the dashboard's browser test-call page.

Each webhook checks the signature first and does nothing slow: Twilio waits 15 s at most.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.access import business_view
from accounts.models import Business
from billing.services import call_gate, usage_record_for_call
from calls.models import Call
from calls.services import call_create_inbound, call_finalize, call_reconcile_twilio_status
from voice import twilio_api
from voice.stream_tokens import issue_stream_token

log = logging.getLogger(__name__)

UNKNOWN_NUMBER_MESSAGE = ("Sorry, this number is not connected to a receptionist yet. "
                          "Please check the number and try again. Goodbye.")
BILLING_TRANSFER_MESSAGE = "Thank you for calling. Please hold while we connect you."
BILLING_HANGUP_MESSAGE = ("Thank you for calling. We can't take your call right now. "
                          "Please try again later. Goodbye.")
FALLBACK_TRANSFER_MESSAGE = "Sorry, we're having trouble answering right now. Let me put you through."
FALLBACK_HANGUP_MESSAGE = ("Sorry, we're having trouble answering right now. "
                           "Please call again in a few minutes. Goodbye.")


def twiml(body: str) -> HttpResponse:
    return HttpResponse(body, content_type="text/xml")


@csrf_exempt
@require_POST
def twilio_incoming(request: HttpRequest) -> HttpResponse:
    if not twilio_api.signature_is_valid(request):
        log.warning("Refused an incoming-call webhook with a missing or bad Twilio signature")
        return HttpResponseForbidden("Invalid Twilio signature")
    call_sid = request.POST.get("CallSid", "")
    to_number = request.POST.get("To", "")
    business = Business.objects.filter(phone_number=to_number).first() if to_number else None
    if business is None or not call_sid:
        log.info("Incoming call to an unknown number %s", to_number)
        return twiml(twilio_api.say_twiml(UNKNOWN_NUMBER_MESSAGE))
    decision = call_gate(business=business)
    call = call_create_inbound(business=business, twilio_call_sid=call_sid,
                               from_number=request.POST.get("From", ""), to_number=to_number)
    if not decision.allowed:
        # Billing refuses the call: still logged, with the reason; the caller is forwarded or told politely.
        call_finalize(call_id=call.id, status=Call.Status.FAILED, end_reason=f"billing_{decision.reason}",
                      error=f"Not answered by the receptionist: billing ({decision.reason}).")
        message = BILLING_TRANSFER_MESSAGE if business.transfer_number else BILLING_HANGUP_MESSAGE
        return twiml(twilio_api.say_twiml(message, language=business.language, transfer_to=business.transfer_number))
    return twiml(twilio_api.connect_stream_twiml(call_id=call.id, token=issue_stream_token(call)))


@csrf_exempt
@require_POST
def twilio_fallback(request: HttpRequest) -> HttpResponse:
    """Twilio's fallback URL: the incoming webhook failed (error, timeout, bad TwiML). Apologise, then forward
    to the business's transfer number if it has one, else hang up. Creates nothing: the database may be
    the very thing that failed."""
    if not twilio_api.signature_is_valid(request):
        log.warning("Refused a fallback webhook with a missing or bad Twilio signature")
        return HttpResponseForbidden("Invalid Twilio signature")
    to_number = request.POST.get("To", "")
    log.error("Twilio fell back for call %s to %s: error %s at %s", request.POST.get("CallSid", ""), to_number,
              request.POST.get("ErrorCode", "?"), request.POST.get("ErrorUrl", "?"))
    business = None
    if to_number:
        try:
            business = Business.objects.filter(phone_number=to_number).only("language", "transfer_number").first()
        except DatabaseError:
            log.exception("The fallback could not look up the business for %s", to_number)
    if business is not None and business.transfer_number:
        return twiml(twilio_api.say_twiml(FALLBACK_TRANSFER_MESSAGE, language=business.language,
                                          transfer_to=business.transfer_number))
    return twiml(twilio_api.say_twiml(FALLBACK_HANGUP_MESSAGE, language=business.language if business else "en"))


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    if not twilio_api.signature_is_valid(request):
        log.warning("Refused a status callback with a missing or bad Twilio signature")
        return HttpResponseForbidden("Invalid Twilio signature")
    call = call_reconcile_twilio_status(twilio_call_sid=request.POST.get("CallSid", ""),
                                        call_status=request.POST.get("CallStatus", ""),
                                        duration=request.POST.get("CallDuration"))
    if call is not None and call.finalized_at is not None:
        usage_record_for_call(call_id=call.id)  # billing: the call's minutes, reported to Polar after commit
    # Always 2xx for a valid request, known call or not, so Twilio does not retry.
    return HttpResponse(status=204)


@business_view()
def test_call(request: HttpRequest) -> HttpResponse:
    """The owner talks to their own receptionist from the browser; the page drives /ws/browser/call/."""
    return render(request, "voice/test_call.html", {
        "business": request.business,  # type: ignore[attr-defined]
        "max_minutes": max(1, settings.BROWSER_CALL_MAX_SECONDS // 60)})
