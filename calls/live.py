"""Live updates for the dashboard: a `call.changed` nudge over the channel layer whenever a call changes.

Two groups listen (see calls/consumers.py): `call-<id>` (that call's page) and `business-<id>-calls` (the
business's calls list). The message carries only the call's id and status; the page re-fetches itself, so
nothing but what the page already shows its signed-in viewer ever reaches the browser.

Publishing is best effort: a dashboard that misses a nudge is only late, while a call or a write that
failed because Redis hiccupped would be lost. So a failed publish is logged (once per outage, not once per
message) and swallowed, and it never waits long.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

CALL_CHANGED = "call.changed"
# Longest a publish may take (Redis unreachable, a full channel): the session's housekeeping and the
# thread that finalised a call both wait on it.
PUBLISH_TIMEOUT_S = 2.0

_failing = False  # true while publishes fail, so an outage logs one warning instead of one per message


def call_group(call_id: int) -> str:
    return f"call-{call_id}"


def business_calls_group(business_id: int) -> str:
    return f"business-{business_id}-calls"


def call_changed_message(*, call_id: int, status: str) -> dict[str, Any]:
    return {"type": CALL_CHANGED, "call_id": call_id, "status": str(status)}


def _publish_failed(exc: BaseException) -> None:
    global _failing
    if not _failing:
        _failing = True
        log.warning("Live dashboard updates are not being delivered (channel layer: %s: %s); calls go on, "
                    "dashboards update on their next page load", exc.__class__.__name__, exc)


def _publish_worked() -> None:
    global _failing
    if _failing:
        _failing = False
        log.info("Live dashboard updates are delivered again")


async def apublish_call_changed(*, call_id: int, business_id: int, status: str) -> None:
    """Tell the call's page and its business's calls list that the call changed. Never raises."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = call_changed_message(call_id=call_id, status=status)
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            await layer.group_send(call_group(call_id), message)
            await layer.group_send(business_calls_group(business_id), message)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # Redis down or slow, a full channel: the dashboard is only late
        _publish_failed(exc)
    else:
        _publish_worked()


def publish_call_changed(*, call_id: int, business_id: int, status: str) -> None:
    """The same from sync code, once the current transaction commits (at once outside a transaction).

    Runs on the caller's thread; from a thread of an event loop's pool (the call session's writes) the send
    itself runs on that loop. Never raises.
    """
    def send() -> None:
        try:
            async_to_sync(apublish_call_changed)(call_id=call_id, business_id=business_id, status=status)
        except Exception as exc:  # e.g. no way to run the coroutine from here
            _publish_failed(exc)

    transaction.on_commit(send)
