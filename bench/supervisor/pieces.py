"""In-process measurements of the hand-off's parts, without Celery: the task body, the answer send, the OpenAI
client, a full garbage collection; and the stand-in's own time per chat request."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

from bench.supervisor.config import CONVERSATION, REQUEST


def measure_task_body(call_id: int, runs: int, warmup: int, *, fresh_connection: bool) -> dict[str, list[float]]:
    """run_supervisor + record_supervisor_run, as the task runs them; with fresh_connection the DB connection is
    closed before each run, as Celery's Django fixup does around every task (no CELERY_DB_REUSE_MAX)."""
    from django.db import connections

    from calls.models import Call
    from voice.supervisor import record_supervisor_run, run_supervisor

    call = Call.objects.get(id=call_id)
    base = (call.answered_at or call.started_at).timestamp()
    out: dict[str, list[float]] = {"body": [], "model": [], "rest": [], "first_step": [], "record": []}
    for index in range(warmup + runs):
        if fresh_connection:
            connections.close_all()
        wall0 = time.time()
        t0 = time.perf_counter()
        result = run_supervisor(call_id=call_id, request=REQUEST.format(label="body", index=index),
                                conversation=CONVERSATION)
        t1 = time.perf_counter()
        record_supervisor_run(call_id=call_id, result=result)
        t2 = time.perf_counter()
        if not result.ok:
            raise RuntimeError(f"the supervisor failed in-process: {result.error}")
        if index >= warmup:
            model = float(sum(e["payload"].get("duration_ms") or 0 for e in result.events
                              if e["payload"].get("step") == "model"))
            out["body"].append((t2 - t0) * 1000)
            out["model"].append(model)
            out["rest"].append((t2 - t0) * 1000 - model)
            # to the "request" step, measured the way the worker's events are read (±0.5 ms)
            out["first_step"].append((base + (result.events[0]["offset_ms"] + 0.5) / 1000 - wall0) * 1000)
            out["record"].append((t2 - t1) * 1000)
    return out


def measure_answer_send(runs: int, warmup: int) -> list[float]:
    """`async_to_sync(get_channel_layer().send)(...)` from a plain thread, as the task sends its answer."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    times: list[float] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for index in range(warmup + runs):
                message = {"type": "supervisor.answer", "tool_call_id": f"call_send{index}", "answer": "Done.",
                           "ok": True, "error": ""}
                t0 = time.perf_counter()
                async_to_sync(get_channel_layer().send)("bench.sink", message)
                if index >= warmup:
                    times.append((time.perf_counter() - t0) * 1000)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)

    thread = threading.Thread(target=worker, name="bench-answer-send", daemon=True)
    thread.start()
    thread.join(120)
    if errors:
        raise errors[0]
    return times


def measure_full_gc(runs: int = 3) -> tuple[int, list[float]]:
    """A full garbage collection of this process's heap (Django, Celery, channels, openai loaded, like a worker's)."""
    import gc

    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - t0) * 1000)
    return len(gc.get_objects()), times


def measure_openai_client(runs: int) -> list[float]:
    from voice.supervisor import openai_client

    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        openai_client()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def standin_chat_log(port: int) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/standin/chat", timeout=10) as response:
        return json.loads(response.read()).get("requests", [])
