"""Messages for the team: taken on a call (the receptionist's tool), handled or reopened on the dashboard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Business
from calls.models import Customer, Message
from calls.services.customers import customer_get_or_create
from calls.services.errors import ActionError, NotFound, phone_or_error


def message_take(*, business_id: int, call_id: int | None, caller_number: str, name: str, callback_number: str,
                 body: str, urgency: str = Message.Urgency.NORMAL) -> Message:
    """Save a message for the team to call `callback_number` back.

    It is linked to the caller's own customer record (`caller_number`, created if new, named only if it had no
    name). A caller can give any callback number, so that number's customer record is never created or changed:
    when the caller's number is withheld the message is linked to it only if it already exists, as it is.
    """
    name, body = name.strip(), body.strip()
    if not name:
        raise ActionError("The caller's name is needed for the message. Ask for it.")
    if not body:
        raise ActionError("The message is empty. Ask what the caller wants to tell the team.")
    if urgency not in Message.Urgency.values:
        raise ActionError(f"urgency must be one of: {', '.join(Message.Urgency.values)}.")
    callback_number = phone_or_error(callback_number, "callback number")
    business = Business.objects.filter(id=business_id).first()
    if business is None:
        raise NotFound("This business no longer exists.")
    with transaction.atomic():
        if caller_number:
            customer = customer_get_or_create(business=business, phone=caller_number, name=name)
        else:
            customer = Customer.objects.filter(business=business, phone=callback_number).first()
        return Message.objects.create(business=business, customer=customer, call_id=call_id, name=name,
                                      callback_number=callback_number, body=body, urgency=urgency)


def message_mark_handled(*, business_id: int, message_id: int, user: Any, now: datetime | None = None) -> Message:
    """Mark an open message handled by `user`, now. Idempotent: a handled message keeps who handled it and when.

    One compare-and-set UPDATE writes status and handled_at together, as the table's check constraint requires,
    so two people pressing the button at once record only the first.
    """
    Message.objects.filter(business_id=business_id, id=message_id, status=Message.Status.OPEN).update(
        status=Message.Status.HANDLED, handled_at=now or timezone.now(), handled_by=user)
    return _message_of_business(business_id=business_id, message_id=message_id)


def message_reopen(*, business_id: int, message_id: int) -> Message:
    """Put a handled message back in the open list, forgetting who handled it. Idempotent."""
    Message.objects.filter(business_id=business_id, id=message_id, status=Message.Status.HANDLED).update(
        status=Message.Status.OPEN, handled_at=None, handled_by=None)
    return _message_of_business(business_id=business_id, message_id=message_id)


def _message_of_business(*, business_id: int, message_id: int) -> Message:
    message = Message.objects.filter(business_id=business_id, id=message_id).first()
    if message is None:
        raise NotFound(f"There is no message {message_id}.")
    return message
