"""Twilio's webhooks. Each checks the signature first and does nothing slow: Twilio waits 15 s at most."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.models import Business
from calls.services import call_create_inbound, call_reconcile_twilio_status
from voice import twilio_api
from voice.stream_tokens import issue_stream_token

log = logging.getLogger(__name__)

UNKNOWN_NUMBER_MESSAGE = ("Sorry, this number is not connected to a receptionist yet. "
                          "Please check the number and try again. Goodbye.")


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
    call = call_create_inbound(business=business, twilio_call_sid=call_sid,
                               from_number=request.POST.get("From", ""), to_number=to_number)
    return twiml(twilio_api.connect_stream_twiml(call_id=call.id, token=issue_stream_token(call)))


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    if not twilio_api.signature_is_valid(request):
        log.warning("Refused a status callback with a missing or bad Twilio signature")
        return HttpResponseForbidden("Invalid Twilio signature")
    call_reconcile_twilio_status(twilio_call_sid=request.POST.get("CallSid", ""),
                                 call_status=request.POST.get("CallStatus", ""),
                                 duration=request.POST.get("CallDuration"))
    # Always 2xx for a valid request, known call or not, so Twilio does not retry.
    return HttpResponse(status=204)
