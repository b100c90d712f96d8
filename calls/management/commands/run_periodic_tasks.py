"""`python manage.py run_periodic_tasks`: the beat schedule run in this process, for one machine without Redis."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from receptionist.periodic import run_schedule


class Command(BaseCommand):
    help = ("Run the periodic tasks of CELERY_BEAT_SCHEDULE (usage sweep, reaper, …) in this process, on their "
            "intervals. For one machine without REDIS_URL (`make run` starts it); with Redis run Celery beat.")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())  # finish the task that is running, then exit
        run_schedule(stop)
