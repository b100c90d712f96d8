"""Voicemail: what a caller gets when the voice model is gone and the business takes voicemail.

Twilio records the caller (<Record>, see `voice.twilio_api.voicemail_twiml`) and posts the recording to our
status callback; it becomes a Message for the team with the recording, played through our server. The call's
summary waits for the recording (up to VOICEMAIL_WAIT_SECONDS), then transcribes it (`calls.postcall.summary`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Business
from accounts.phone import normalize_e164
from calls.live import publish_call_changed
from calls.models import Call, CallEvent, Message
from calls.services.customers import customer_get_or_create
from calls.services.forwards import call_forward_start
from calls.services.lifecycle import call_create_inbound, call_finalize
from calls.services.recording import call_events_add

log = logging.getLogger(__name__)

VOICEMAIL_PENDING_BODY = "Voicemail ({seconds} s), not transcribed yet: listen to the recording."


def _offset_ms(call: Call) -> int:
    return max(0, int((timezone.now() - (call.answered_at or call.started_at)).total_seconds() * 1000))


def call_voicemail_start(*, twilio_call_sid: str) -> bool:
    """Note that <Record> is about to be emitted for the call: its summary waits for the recording."""
    return Call.objects.filter(twilio_call_sid=twilio_call_sid, voicemail_status=Call.VoicemailStatus.NONE).update(
        voicemail_status=Call.VoicemailStatus.RECORDING, voicemail_started_at=timezone.now()) == 1


def call_voicemail_cancel(*, twilio_call_sid: str) -> None:
    """The <Record> never reached Twilio (the redirect failed): there is no recording to wait for."""
    Call.objects.filter(twilio_call_sid=twilio_call_sid, voicemail_status=Call.VoicemailStatus.RECORDING).update(
        voicemail_status=Call.VoicemailStatus.NONE, voicemail_started_at=None)


def _inbound_call(*, twilio_call_sid: str, to_number: str, from_number: str) -> Call | None:
    """The call with this SID; recorded now if our incoming webhook never did (it failed: that is why Twilio
    fell back). None for a number no business holds."""
    call = Call.objects.filter(twilio_call_sid=twilio_call_sid).first()
    if call is not None:
        return call
    business = Business.objects.filter(phone_number=to_number).first() if to_number else None
    if business is None:
        return None
    return call_create_inbound(business=business, twilio_call_sid=twilio_call_sid, from_number=from_number,
                               to_number=to_number)


def call_fallback_taken(*, twilio_call_sid: str, to_number: str, from_number: str, action: str,
                        transfer_to: str = "", error_code: str = "", error_url: str = "") -> Call | None:
    """Twilio fell back (our incoming webhook failed or timed out) and the caller gets `action` (voicemail or
    transfer): record the call if it is new, and the step on its timeline. The call is finalised here when its
    media stream never started: no session will."""
    with transaction.atomic():
        call = _inbound_call(twilio_call_sid=twilio_call_sid, to_number=to_number, from_number=from_number)
        if call is None:
            return None
        call = Call.objects.select_for_update().get(id=call.id)
        if action == "voicemail":
            call_voicemail_start(twilio_call_sid=twilio_call_sid)
        elif transfer_to:
            call_forward_start(twilio_call_sid=twilio_call_sid, number=transfer_to)  # usage waits for the outcome
        call_events_add(call_id=call.id, events=[dict(
            kind=CallEvent.Kind.FALLBACK, offset_ms=_offset_ms(call),
            payload={"action": action, "by": "twilio_fallback_url", "ok": True,
                     **({"to": transfer_to} if transfer_to else {}),
                     "cause": f"Twilio fell back: error {error_code or '?'} at {error_url or 'our incoming webhook'}"})])
        if call.finalized_at is None and call.stream_started_at is None:
            call_finalize(call_id=call.id, status=Call.Status.FAILED, end_reason="twilio_fallback",
                          error=f"Twilio used the fallback URL (error {error_code or '?'}); the caller got {action}.")
    publish_call_changed(call_id=call.id, business_id=call.business_id, status=call.status)
    return call


def _callback_number(number: str) -> str:
    try:
        return normalize_e164(number)
    except ValidationError:
        return ""  # withheld ("anonymous"), a client identifier, or garbage


def voicemail_recorded(*, twilio_call_sid: str, recording_sid: str, recording_status: str,
                       duration: str | None, to_number: str, from_number: str) -> Message | None:
    """Apply Twilio's recording status callback for a voicemail, once: a completed recording becomes a Message
    for the team (with the recording); an absent or failed one is recorded as such. The call's summary, which
    waited for it, is queued. A repeated callback changes nothing and returns the same message."""
    from calls.postcall.queueing import enqueue  # the post-call package imports the services
    from calls.tasks import summarize_call

    seconds = int(duration) if duration and duration.isdigit() else 0
    recorded = recording_status == "completed" and seconds > 0
    with transaction.atomic():
        call = _inbound_call(twilio_call_sid=twilio_call_sid, to_number=to_number, from_number=from_number)
        if call is None:
            log.warning("A voicemail recording %s arrived for an unknown call %s to %s", recording_sid,
                        twilio_call_sid, to_number)
            return None
        call = Call.objects.select_for_update().get(id=call.id)
        existing = Message.objects.filter(recording_sid=recording_sid).first() if recording_sid else None
        if existing is not None or call.voicemail_status in (Call.VoicemailStatus.RECEIVED,
                                                             Call.VoicemailStatus.ABSENT):
            return existing
        message = None
        if recorded:
            callback = _callback_number(call.from_number or from_number)
            customer = customer_get_or_create(business=call.business, phone=callback) if callback else None
            message = Message.objects.create(
                business_id=call.business_id, customer=customer, call=call,
                name=(call.caller_name or (customer.name if customer else "") or "Unknown caller")[:120],
                callback_number=callback, body=VOICEMAIL_PENDING_BODY.format(seconds=seconds),
                recording_sid=recording_sid, recording_seconds=seconds)
        call.voicemail_status = Call.VoicemailStatus.RECEIVED if recorded else Call.VoicemailStatus.ABSENT
        call.save(update_fields=["voicemail_status"])
        payload = ({"recorded": True, "seconds": seconds, "recording_sid": recording_sid} if recorded else
                   {"recorded": False, "status": recording_status or "?",
                    "reason": "the caller left no message" if recording_status in ("completed", "absent")
                    else "Twilio could not record it"})
        call_events_add(call_id=call.id, events=[dict(kind=CallEvent.Kind.VOICEMAIL, offset_ms=_offset_ms(call),
                                                      payload=payload)])
        if call.finalized_at is None and call.stream_started_at is None:
            call_finalize(call_id=call.id, status=Call.Status.FAILED, end_reason="twilio_fallback",
                          error="The receptionist was unavailable; the caller reached voicemail.")
        elif call.finalized_at is not None:
            call_id = call.id
            transaction.on_commit(lambda: enqueue(summarize_call, call_id), robust=True)  # it waited for this
    publish_call_changed(call_id=call.id, business_id=call.business_id, status=call.status)
    return message


def voicemail_awaited(call: Call, *, now=None) -> bool:
    """Whether the call's summary should still wait for its voicemail recording."""
    if call.voicemail_status != Call.VoicemailStatus.RECORDING or call.voicemail_started_at is None:
        return False
    now = now or timezone.now()
    return now - call.voicemail_started_at < timedelta(seconds=settings.VOICEMAIL_WAIT_SECONDS)
