"""Post-call work without a broker (embedded mode): a small background executor with real delays.

With no broker, Celery runs tasks eagerly, in the thread that sends them; the summary, the email and the
webhook (and their retries) would then run inside the web request or the call session that finalised the
call. Here they run on a few daemon threads instead, each job after its delay, so the finaliser returns at
once and a retry waits its backoff. Work still queued when the process exits is picked up by the post-call
sweep (the claims in the database say what is left to do).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from django.conf import settings
from django.db import connection

log = logging.getLogger(__name__)


class EmbeddedRunner:
    """Runs callables on background threads, each after an optional delay; counts what is still to run."""

    def __init__(self, threads: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="postcall")
        self._pending = 0
        self._idle = threading.Condition()

    def submit(self, job: Callable[..., Any], *args: Any, delay: float = 0.0) -> None:
        with self._idle:
            self._pending += 1
        if delay > 0:
            timer = threading.Timer(delay, self._start, args=(job, args))
            timer.daemon = True
            timer.start()
        else:
            self._start(job, args)

    def _start(self, job: Callable[..., Any], args: tuple) -> None:
        self._executor.submit(self._run, job, args)

    def _run(self, job: Callable[..., Any], args: tuple) -> None:
        try:
            job(*args)
        except Exception:
            log.exception("Background post-call job %s%r failed", getattr(job, "name", job), args)
        finally:
            connection.close()  # this thread's connection: not kept open between jobs
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is running or scheduled (tests, shutdown); False if still busy after `timeout`."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)


_runner: EmbeddedRunner | None = None
_runner_lock = threading.Lock()


def embedded_runner() -> EmbeddedRunner:
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = EmbeddedRunner(settings.POSTCALL_EMBEDDED_THREADS)
        return _runner
