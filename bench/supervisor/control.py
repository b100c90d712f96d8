"""The control task of the supervisor hand-off benchmark, registered only in the bench's own processes."""

from __future__ import annotations

import os
from typing import Any

from bench.supervisor.config import EMPTY_TASK, EMPTY_TASK_ENV


# The control: a task with voice.ask_supervisor's signature, options and answer send, but no supervisor. Timing it
# gives the transport floor of the hand-off directly: thread hop, publish, pickup, Celery, answer send, receive. The
# bench's worker registers it by importing this module (`-I bench.supervisor.control`, with EMPTY_TASK_ENV set); the
# bench process and the embedded child register it when they first use it.
_empty_task: Any = None


def empty_task() -> Any:
    global _empty_task
    if _empty_task is None:
        from asgiref.sync import async_to_sync
        from celery import shared_task
        from channels.layers import get_channel_layer

        @shared_task(name=EMPTY_TASK, acks_late=False, ignore_result=True)
        def empty_supervisor(*, call_id: int, tool_call_id: str, reply_channel: str, request: str,
                             conversation: list[dict[str, str]]) -> None:
            message = {"type": "supervisor.answer", "tool_call_id": tool_call_id, "answer": "Done.", "ok": True,
                       "error": ""}
            async_to_sync(get_channel_layer().send)(reply_channel, message)

        _empty_task = empty_supervisor
    return _empty_task


if os.environ.get(EMPTY_TASK_ENV) == "1":
    empty_task()


def enqueue_empty(kwargs: dict[str, Any]) -> None:
    """Like voice.session.enqueue_supervisor, for the control task."""
    empty_task().apply_async(kwargs=kwargs)
