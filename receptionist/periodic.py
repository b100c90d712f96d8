"""Celery beat's schedule without Celery beat, for one machine without Redis (`make run`).

There Celery runs every task in the process that sends it (CELERY_TASK_ALWAYS_EAGER) and there is no broker for
beat to send to, so nothing periodic would ever run: no usage sweep (minutes never billed), no reaper, no
post-call catch-up. `manage.py run_periodic_tasks` runs `run_schedule` in a process of its own: every entry of
CELERY_BEAT_SCHEDULE, in that process, at the times Celery's own schedule objects say (numbers are seconds,
timedeltas and crontabs work too), one at a time, each once at start-up to catch up on time the machine was off.
With Redis, Celery beat (the Procfile's `beat`, or the worker's `--beat` in `make run`) does this instead.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Celery
from celery.schedules import BaseSchedule, maybe_schedule
from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger(__name__)


@dataclass
class Entry:
    name: str
    task: str
    schedule: BaseSchedule
    args: tuple
    kwargs: dict[str, Any]
    last_run_at: datetime | None = None

    def seconds_to_next_run(self) -> float:
        if self.last_run_at is None:
            return 0.0
        due, next_in = self.schedule.is_due(self.last_run_at)
        return 0.0 if due else float(next_in)


def schedule_entries(app: Celery, beat_schedule: dict[str, dict[str, Any]]) -> list[Entry]:
    return [Entry(name=name, task=conf["task"], schedule=maybe_schedule(conf["schedule"], app=app),
                  args=tuple(conf.get("args", ())), kwargs=dict(conf.get("kwargs", {})))
            for name, conf in beat_schedule.items()]


def run_entry(app: Celery, entry: Entry) -> None:
    """Run one task here and now; a failure is logged and the task runs again at its next time."""
    entry.last_run_at = entry.schedule.now()
    close_old_connections()  # a long-lived process: never reuse a connection the database has dropped
    try:
        app.tasks[entry.task].apply(args=entry.args, kwargs=entry.kwargs, throw=True)
        log.debug("Periodic task %s ran", entry.name)
    except Exception:
        log.exception("Periodic task %s (%s) failed; it runs again at its next time", entry.name, entry.task)
    finally:
        close_old_connections()


def run_schedule(stop: threading.Event, *, app: Celery | None = None,
                 beat_schedule: dict[str, dict[str, Any]] | None = None, max_wait: float = 60.0) -> None:
    """Run the periodic tasks until `stop` is set."""
    if app is None:
        from receptionist.celery import app
    app.loader.import_default_modules()  # the tasks of every installed app are registered
    entries = schedule_entries(app, settings.CELERY_BEAT_SCHEDULE if beat_schedule is None else beat_schedule)
    log.info("Running periodic tasks in this process: %s",
             ", ".join(f"{e.name} ({e.schedule})" for e in entries) or "none")
    while not stop.is_set():
        for entry in entries:
            if stop.is_set():
                return
            if entry.seconds_to_next_run() <= 0:
                run_entry(app, entry)
        wait = min([e.seconds_to_next_run() for e in entries] + [max_wait])
        stop.wait(max(0.05, wait))
