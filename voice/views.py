"""Twilio's webhooks, and the dashboard's browser test-call page.

Each webhook checks the signature first and does nothing slow: Twilio waits 15 s at most.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.access import business_view
from accounts.models import Business
from accounts.transfers import allowed_transfer_number
from billing.selectors import browser_call_quota, minute_pool
from billing.services.account import account_for_business
from billing.services.gate import MIN_BROWSER_CALL_SECONDS
from billing.services.usage import usage_record_for_call
from calls.services.forwards import call_forward_result
from calls.services.lifecycle import call_reconcile_twilio_status
from voice import twilio_api
from voice.phrases import phrase
from voice.services import answer_incoming_call
from voice.session import in_db_pool

log = logging.getLogger(__name__)


def twiml(body: str) -> HttpResponse:
    return HttpResponse(body, content_type="text/xml")


@csrf_exempt
@require_POST
async def twilio_incoming(request: HttpRequest) -> HttpResponse:
    """Async, with all of its database work in one hop to the shared pool: calls arriving together are answered
    side by side, never queued on Django's one sync thread (and never behind a dashboard page)."""
    if not twilio_api.signature_is_valid(request):
        log.warning("Refused an incoming-call webhook with a missing or bad Twilio signature")
        return HttpResponseForbidden("Invalid Twilio signature")
    to_number = request.POST.get("To", "")
    answer = await in_db_pool(answer_incoming_call)(call_sid=request.POST.get("CallSid", ""), to_number=to_number,
                                                     from_number=request.POST.get("From", ""))
    return twiml(answer)


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
    language = business.language if business is not None else settings.LANGUAGE_CODE[:2]
    transfer_to = allowed_transfer_number(business) if business is not None else ""
    if transfer_to:
        return twiml(twilio_api.say_twiml(phrase("unavailable_transfer", language), language=language,
                                          transfer_to=transfer_to))
    return twiml(twilio_api.say_twiml(phrase("unavailable", language), language=language))


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
        # Finalised before Twilio's duration came: its usage record (written at finalisation) takes Twilio's
        # duration and is reported now. Finalised later: the finalisation records it with this duration.
        usage_record_for_call(call_id=call.id)
    # Always 2xx for a valid request, known call or not, so Twilio does not retry.
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def twilio_dial_result(request: HttpRequest) -> HttpResponse:
    """Twilio's report on how a <Dial> to the transfer number ended (its `action`); we answer what the caller
    hears next. Never silence: an answered forward hangs up, any other outcome is explained, then hangs up."""
    if not twilio_api.signature_is_valid(request):
        log.warning("Refused a dial-result callback with a missing or bad Twilio signature")
        return HttpResponseForbidden("Invalid Twilio signature")
    outcome = call_forward_result(twilio_call_sid=request.POST.get("CallSid", ""),
                                  dial_status=request.POST.get("DialCallStatus", ""),
                                  dial_duration=request.POST.get("DialCallDuration"))
    if outcome is None:
        return twiml(twilio_api.hangup_twiml())
    if outcome.call.finalized_at is not None:
        usage_record_for_call(call_id=outcome.call.id)  # the forwarded minutes, billed with the call, once
    if outcome.answered:
        return twiml(twilio_api.hangup_twiml())
    language = Business.objects.filter(id=outcome.call.business_id).values_list("language", flat=True).first()
    key = "transfer_failed_message_taken" if outcome.message_taken else "transfer_failed"
    return twiml(twilio_api.say_twiml(phrase(key, language), language=language or "en"))


def minutes_left_for_test_calls(business: Business) -> dict:
    """What the test-call page says about the minutes left: today's test-call time, and trial minutes."""
    quota = browser_call_quota(business)
    daily = settings.BROWSER_CALL_DAILY_MINUTES
    if quota.seconds >= 60:
        text = f"{quota.minutes_left} of today's {daily} test-call minutes left."
    elif quota.seconds >= MIN_BROWSER_CALL_SECONDS:
        text = f"Less than a minute of today's {daily} test-call minutes left."
    else:
        text = f"No test-call minutes left today ({daily} a day); they renew at midnight, {business.time_zone} time."
    account = account_for_business(business)
    trial_left = None
    if account.is_free_trial:
        trial_left = max(0, minute_pool(account).free_minutes)
        text += f" Test calls spend your free trial minutes: {trial_left} left."
    return {"minutes_left_today": quota.minutes_left, "seconds_left_today": int(quota.seconds),
            "daily_minutes": daily, "trial_minutes_left": trial_left, "text": text}


@business_view()
def test_call(request: HttpRequest) -> HttpResponse:
    """The owner talks to their own receptionist from the browser; the page drives /ws/browser/call/."""
    return render(request, "voice/test_call.html", {
        "business": request.business,  # type: ignore[attr-defined]
        "minutes": minutes_left_for_test_calls(request.business),  # type: ignore[attr-defined]
        "max_minutes": max(1, settings.BROWSER_CALL_MAX_SECONDS // 60)})


@business_view()
def test_call_minutes_left(request: HttpRequest) -> JsonResponse:
    """The minutes left, for the test-call page to update after a call."""
    return JsonResponse(minutes_left_for_test_calls(request.business))  # type: ignore[attr-defined]
