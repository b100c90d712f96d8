"""Celery tasks of the voice app. A task is an interface: ids and JSON in, one service call."""

from __future__ import annotations

import logging
import time
from typing import Any

from asgiref.sync import async_to_sync
from celery import shared_task
from channels.layers import get_channel_layer

from receptionist import metrics as operator_metrics
from voice.supervisor import SUPERVISOR_FAILED_ANSWER, record_supervisor_run, run_supervisor

log = logging.getLogger(__name__)

# The message header with the Unix time the request was queued (voice/session/tools.py `enqueue_supervisor`).
ENQUEUED_AT_HEADER = "enqueued_at"


def queued_for(request: Any, now: float) -> float | None:
    """Seconds a task's message waited for a worker, from the header its sender set; None without one (a web
    process of the previous release). A worker has custom headers as request attributes; an eager run (no
    broker) has them under `headers`."""
    enqueued_at = request.get(ENQUEUED_AT_HEADER) or (getattr(request, "headers", None) or {}).get(ENQUEUED_AT_HEADER)
    if not isinstance(enqueued_at, (int, float)):
        return None
    return now - enqueued_at


@shared_task(name="voice.ask_supervisor", acks_late=False, ignore_result=True)
def ask_supervisor(*, call_id: int, tool_call_id: str, reply_channel: str, request: str,
                   conversation: list[dict[str, str]], caller_number: str | None = None,
                   deadline_at: float | None = None) -> None:
    """Answer the voice agent's `ask_supervisor` call and send the answer back to the call's socket.

    Not retried: the caller is waiting on the line, and the session gives up after its deadline anyway.
    Always replies, so a failure reaches the caller as an apology rather than as silence.
    `caller_number` is ignored (web processes of the previous release still send it during a deploy): who
    the caller is comes from the Call row. `deadline_at` (Unix time) is when the session stops waiting: no
    write tool runs after it.
    """
    waited = queued_for(ask_supervisor.request, time.time())
    if waited is not None:
        operator_metrics.supervisor_queue_wait(waited)
    message: dict[str, Any] = {"type": "supervisor.answer", "tool_call_id": tool_call_id}
    try:
        result = run_supervisor(call_id=call_id, request=request, conversation=conversation,
                                deadline_at=deadline_at)
        if waited is not None and result.events and result.events[0]["payload"].get("step") == "request":
            # Also on the call's timeline (the soak reads it there): how long this request waited for a worker.
            result.events[0]["payload"]["queue_wait_ms"] = max(0, round(waited * 1000))
        record_supervisor_run(call_id=call_id, result=result)
        message.update(answer=result.answer, ok=result.ok, error=result.error, acted=result.acted)
    except Exception as exc:  # the worker must answer even when something unexpected breaks
        log.exception("Supervisor failed for call %s", call_id)
        message.update(answer=SUPERVISOR_FAILED_ANSWER, ok=False, error=f"{exc.__class__.__name__}: {exc}")
    async_to_sync(get_channel_layer().send)(reply_channel, message)
