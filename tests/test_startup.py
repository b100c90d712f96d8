"""Start-up pieces that need no server process (the process-level behaviour is in voice/tests/test_startup_e2e.py)."""

from __future__ import annotations

import asyncio
import threading

from receptionist.startup import start_db_threads


def test_every_database_thread_is_running_before_the_first_call(settings):
    settings.DB_THREADS = 5

    async def start_then_run_a_hop() -> tuple[list[str], str]:
        await start_db_threads()
        running = sorted(t.name for t in threading.enumerate() if t.name.startswith("db_"))
        # A hop as `in_db_pool` and `asyncio.to_thread` make one: the loop's default executor.
        hop_thread = await asyncio.get_running_loop().run_in_executor(None, lambda: threading.current_thread().name)
        return running, hop_thread

    running, hop_thread = asyncio.run(start_then_run_a_hop())
    assert running == [f"db_{i}" for i in range(5)]
    assert hop_thread in running
