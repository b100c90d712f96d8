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


def test_a_hung_outside_service_call_does_not_hold_up_the_database_hops(settings):
    from voice.session import in_db_pool, in_io_threads

    settings.DB_THREADS = 1  # the fewest there can be: a call to Twilio on it would leave none for the database
    released = threading.Event()

    def twilio_taking_its_timeout() -> str:
        released.wait(10)
        return threading.current_thread().name

    async def hop_while_twilio_hangs() -> tuple[str, str]:
        await start_db_threads()
        hung = asyncio.ensure_future(in_io_threads(twilio_taking_its_timeout)())
        await asyncio.sleep(0.05)  # it holds its thread now
        hop = await asyncio.wait_for(in_db_pool(lambda: threading.current_thread().name)(), timeout=2)
        released.set()
        return hop, await hung

    hop_thread, io_thread = asyncio.run(hop_while_twilio_hangs())
    assert hop_thread.startswith("db_") and io_thread.startswith("io_")
