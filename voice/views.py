"""Twilio's webhooks, and the dashboard's browser test-call page.

Each webhook checks the signature first and does nothing slow: Twilio waits 15 s at most.
"""

from __future__ import annotations

import asyncio
import logging
from functools import wraps
from typing import Any, Callable

from django.conf import settings
from django.db import DatabaseError
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.access import business_view, current_membership
from accounts.models import Business
from accounts.transfers import unavailable_action
from billing.selectors import browser_call_quota, minute_pool
from billing.services.account import account_for_business
from billing.services.gate import MIN_BROWSER_CALL_SECONDS
from billing.services.usage import usage_record_for_call
from calls.models import Message
from calls.services.forwards import call_forward_result
from calls.services.lifecycle import call_reconcile_twilio_status
from calls.services.voicemail import call_fallback_taken, voicemail_recorded
from receptionist import metrics as operator_metrics
from voice import twilio_api
from voice.phrases import phrase
from voice.services import answer_incoming_call
from voice.session import in_db_pool, in_io_threads

log = logging.getLogger(__name__)


def twiml(body: str) -> HttpResponse:
    return HttpResponse(body, content_type="text/xml")


def twilio_webhook(what: str) -> Callable[[Callable], Callable]:
    """A view Twilio calls: POST only, no CSRF token (Twilio has none), and refused with 403 unless Twilio's
    signature is valid, checked before anything else. `what` names the webhook in the log."""

    def refusal(request: HttpRequest) -> HttpResponse | None:
        if twilio_api.signature_is_valid(request):
            return None
        log.warning("Refused %s with a missing or bad Twilio signature", what)
        return HttpResponseForbidden("Invalid Twilio signature")

    def decorator(view: Callable) -> Callable:
        if asyncio.iscoroutinefunction(view):
            @wraps(view)
            async def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                return refusal(request) or await view(request, *args, **kwargs)
        else:
            @wraps(view)
            def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                return refusal(request) or view(request, *args, **kwargs)
        return csrf_exempt(require_POST(checked))

    return decorator


@twilio_webhook("an incoming-call webhook")
async def twilio_incoming(request: HttpRequest) -> HttpResponse:
    """Async, with all of its database work in one hop to the shared pool: calls arriving together are answered
    side by side, never queued on Django's one sync thread (and never behind a dashboard page)."""
    to_number = request.POST.get("To", "")
    answer = await in_db_pool(answer_incoming_call)(call_sid=request.POST.get("CallSid", ""), to_number=to_number,
                                                     from_number=request.POST.get("From", ""))
    return twiml(answer)


@twilio_webhook("a fallback webhook")
def twilio_fallback(request: HttpRequest) -> HttpResponse:
    """Twilio's fallback URL, on every number the portal connects: our incoming webhook failed (an error, a
    timeout, bad TwiML). The caller gets what the business chose for an unavailable receptionist, voicemail or a
    transfer; the call and this step are recorded when the database answers, and the TwiML never needs it (a
    database that is down gets voicemail in the operator's language, recorded once Twilio posts the recording)."""
    call_sid, to_number, from_number = (request.POST.get(key, "") for key in ("CallSid", "To", "From"))
    log.error("Twilio fell back for call %s to %s: error %s at %s", call_sid, to_number,
              request.POST.get("ErrorCode", "?"), request.POST.get("ErrorUrl", "?"))
    business, database_ok = None, True
    try:
        business = Business.objects.filter(phone_number=to_number).first() if to_number else None
    except DatabaseError:
        database_ok = False
        log.exception("The fallback could not look up the business for %s", to_number)
    if business is None and database_ok:
        language = settings.LANGUAGE_CODE[:2]
        return twiml(twilio_api.say_twiml(phrase("unknown_number", language), language=language))
    language = business.language if business is not None else settings.LANGUAGE_CODE[:2]
    action, transfer_to = unavailable_action(business) if business is not None else ("voicemail", "")
    operator_metrics.fallback_taken(action, by="twilio_fallback_url")
    if business is not None and call_sid:
        try:
            call_fallback_taken(twilio_call_sid=call_sid, to_number=to_number, from_number=from_number,
                                action=action, transfer_to=transfer_to, error_code=request.POST.get("ErrorCode", ""),
                                error_url=request.POST.get("ErrorUrl", ""))
        except DatabaseError:
            log.exception("The fallback could not record call %s", call_sid)
    if action == "transfer":
        return twiml(twilio_api.say_twiml(phrase("unavailable_transfer", language), language=language,
                                          transfer_to=transfer_to))
    return twiml(twilio_api.voicemail_twiml(language=language, to_number=to_number, from_number=from_number))


@twilio_webhook("a voicemail action")
def twilio_voicemail_done(request: HttpRequest) -> HttpResponse:
    """<Record>'s `action`: the caller has finished their message. Thank them and hang up (the recording itself
    comes to `twilio_voicemail_recording`)."""
    language = request.GET.get("lang", "")
    return twiml(twilio_api.say_twiml(phrase("voicemail_thanks", language), language=language))


@twilio_webhook("a recording callback")
def twilio_voicemail_recording(request: HttpRequest) -> HttpResponse:
    """<Record>'s recording status callback: the voicemail is stored as a message for the team (once)."""
    recording_sid = request.POST.get("RecordingSid", "")
    if recording_sid and not twilio_api.RECORDING_SID.match(recording_sid):
        return HttpResponse("RecordingSid is not a recording SID", status=400)
    try:
        voicemail_recorded(twilio_call_sid=request.POST.get("CallSid", ""), recording_sid=recording_sid,
                           recording_status=request.POST.get("RecordingStatus", ""),
                           duration=request.POST.get("RecordingDuration"),
                           to_number=request.GET.get("to", ""), from_number=request.GET.get("from", ""))
    except DatabaseError:
        log.exception("Could not store voicemail %s of call %s", recording_sid, request.POST.get("CallSid", ""))
        return HttpResponse("Could not store the voicemail now", status=503)
    return HttpResponse(status=204)


@twilio_webhook("a status callback")
def twilio_status(request: HttpRequest) -> HttpResponse:
    call = call_reconcile_twilio_status(twilio_call_sid=request.POST.get("CallSid", ""),
                                        call_status=request.POST.get("CallStatus", ""),
                                        duration=request.POST.get("CallDuration"))
    if call is not None and call.finalized_at is not None:
        # Finalised before Twilio's duration came: its usage record (written at finalisation) takes Twilio's
        # duration and is reported now. Finalised later: the finalisation records it with this duration.
        usage_record_for_call(call_id=call.id)
    # Always 2xx for a valid request, known call or not, so Twilio does not retry.
    return HttpResponse(status=204)


@twilio_webhook("a dial-result callback")
def twilio_dial_result(request: HttpRequest) -> HttpResponse:
    """Twilio's report on how a <Dial> to the transfer number ended (its `action`); we answer what the caller
    hears next. Never silence: an answered forward hangs up, any other outcome is explained, then hangs up."""
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


def _voicemail_of_member(request: HttpRequest, message_id: int) -> Message:
    """The voicemail message, if it belongs to the signed-in member's current business; else 404."""
    membership = current_membership(request)
    message = (Message.objects.filter(business_id=membership.business_id, pk=message_id).exclude(recording_sid="")
               .only("id", "recording_sid").first() if membership is not None else None)
    if message is None:
        raise Http404("No such voicemail")
    return message


@login_required
async def voicemail_audio(request: HttpRequest, message_id: int) -> HttpResponse:
    """A voicemail's recording, for members of its business only: fetched from Twilio with the operator's
    credentials and passed on, so no Twilio URL or credential ever reaches a browser. Async, with the lookup on
    the database threads and the download on the I/O threads: a slow Twilio never holds Django's sync thread."""
    message = await in_db_pool(_voicemail_of_member)(request, message_id)
    try:
        audio = await in_io_threads(twilio_api.fetch_recording)(message.recording_sid)
    except twilio_api.TwilioError as exc:
        log.warning("Voicemail %s could not be fetched: %s", message.recording_sid, exc)
        if exc.status == 404:
            raise Http404("Twilio no longer has this recording") from exc
        return HttpResponse("The recording could not be fetched from Twilio right now. Try again in a moment.",
                            status=502, content_type="text/plain")
    return HttpResponse(audio, content_type="audio/wav", headers={
        "Cache-Control": "private, no-store", "Content-Disposition": f'inline; filename="voicemail-{message.id}.wav"'})


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
