"""Forwards to the business's transfer number (<Dial>): pending while dialled, then Twilio's report of the
outcome, billed with the call when answered and left as a message for the team when not."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.phone import normalize_e164
from calls.live import publish_call_changed
from calls.models import Call, CallEvent, Message
from calls.services.customers import customer_get_or_create
from calls.services.recording import call_events_add


def call_forward_start(*, twilio_call_sid: str, number: str) -> bool:
    """Note that a <Dial> to `number` is about to be emitted for the call: its usage waits for the outcome."""
    return Call.objects.filter(twilio_call_sid=twilio_call_sid, forward_status=Call.ForwardStatus.NONE).update(
        forwarded_to=number[:16], forward_status=Call.ForwardStatus.DIALING) == 1


def call_forward_cancel(*, twilio_call_sid: str) -> None:
    """The <Dial> never reached Twilio (the redirect failed): nothing is pending any more."""
    Call.objects.filter(twilio_call_sid=twilio_call_sid, forward_status=Call.ForwardStatus.DIALING).update(
        forward_status=Call.ForwardStatus.NONE)


FORWARD_FAILURE_TEXT = {
    Call.ForwardStatus.BUSY: "the line was busy",
    Call.ForwardStatus.NO_ANSWER: "nobody answered",
    Call.ForwardStatus.FAILED: "the call could not be connected",
    Call.ForwardStatus.CANCELED: "the call was cancelled before anyone answered",
}


@dataclass(frozen=True)
class ForwardOutcome:
    call: Call
    answered: bool
    message_taken: bool  # a Message for the team exists for this failed forward


def _callback_number(call: Call) -> str:
    try:
        return normalize_e164(call.from_number)
    except ValidationError:
        return ""  # withheld ("anonymous"), a client identifier, or garbage


def call_forward_result(*, twilio_call_sid: str, dial_status: str, dial_duration: str | None) -> ForwardOutcome | None:
    """Apply Twilio's report on how the call's <Dial> ended (its `action` callback), once.

    An answered forward adds its connected seconds to the call (billed with it); one nobody answered leaves a
    Message for the team with the caller's number. A repeated report changes nothing and says the same.
    """
    if dial_status in ("completed", "answered"):  # "answered" is what a conference reports
        status = Call.ForwardStatus.COMPLETED
    elif dial_status in FORWARD_FAILURE_TEXT:
        status = Call.ForwardStatus(dial_status)
    else:  # a value Twilio did not document: nobody was reached
        status = Call.ForwardStatus.FAILED
    answered = status == Call.ForwardStatus.COMPLETED
    seconds = int(dial_duration) if dial_duration and dial_duration.isdigit() else 0
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(twilio_call_sid=twilio_call_sid).first()
        if call is None:
            return None
        callback = _callback_number(call)
        if call.forward_status not in (Call.ForwardStatus.NONE, Call.ForwardStatus.DIALING):
            answered = call.forward_status == Call.ForwardStatus.COMPLETED
            return ForwardOutcome(call=call, answered=answered, message_taken=not answered and bool(callback))
        call.forward_status = status
        call.forwarded_seconds = seconds
        call.save(update_fields=["forward_status", "forwarded_seconds"])
        now = timezone.now()
        call_events_add(call_id=call.id, events=[dict(
            kind=CallEvent.Kind.TRANSFER,
            offset_ms=max(0, int((now - (call.answered_at or call.started_at)).total_seconds() * 1000)),
            payload={"ok": answered, "to": call.forwarded_to, "step": "outcome", "status": status,
                     "connected_seconds": seconds,
                     **({"reason": f"answered, {seconds} s connected"} if answered else
                        {"error": FORWARD_FAILURE_TEXT[status] + ("; a message was left for the team" if callback
                                                                   else "; the caller's number is withheld")})})])
        if not answered and callback:
            customer = customer_get_or_create(business=call.business, phone=callback)
            Message.objects.create(
                business_id=call.business_id, customer=customer, call=call,
                name=(call.caller_name or customer.name or "Caller")[:120], callback_number=callback,
                body=(f"The caller was being put through to a person at {call.forwarded_to or 'the transfer number'}, "
                      f"but {FORWARD_FAILURE_TEXT[status]}. Nobody from the team has spoken to them: please call "
                      "them back."))
    publish_call_changed(call_id=call.id, business_id=call.business_id, status=call.status)
    return ForwardOutcome(call=call, answered=answered, message_taken=not answered and bool(callback))
