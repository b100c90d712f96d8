"""A call's channel listener (the supervisor's answers) outlives a Redis restart: on a redis-server of its own,
stopped and started again under a listening call."""

from __future__ import annotations

import asyncio
import subprocess
import time

from channels_redis.core import RedisChannelLayer

from voice.audio_socket import forward_call_messages
from voice.tests.conftest import free_port

class Listener:
    """What the listener hands messages to: a call session's `channel_message`, recorded."""

    call_id = 1

    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def channel_message(self, message: dict) -> None:
        self.messages.append(message)


def start_redis(port: int) -> subprocess.Popen:
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            import redis

            if redis.Redis(port=port).ping():
                return process
        except Exception:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("redis-server did not start")


async def received(listener: Listener, count: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(listener.messages) >= count:
            return True
        await asyncio.sleep(0.05)
    return False


def test_a_calls_listener_gets_answers_again_after_redis_restarts():
    port = free_port()
    server = start_redis(port)
    try:
        async def scenario() -> Listener:
            nonlocal server
            layer = RedisChannelLayer(hosts=[{"address": f"redis://127.0.0.1:{port}/0", "socket_timeout": 10}])
            channel = await layer.new_channel("call.")
            listener = Listener()
            task = asyncio.create_task(forward_call_messages(layer, channel, lambda: listener))
            await layer.send(channel, {"type": "supervisor.answer", "n": 1})
            assert await received(listener, 1)
            server.kill()
            server.wait()
            await asyncio.sleep(1.0)  # the listener's receive fails meanwhile
            server = start_redis(port)
            # Sent as a worker sends it: from another process, on a connection of its own.
            worker_layer = RedisChannelLayer(hosts=[{"address": f"redis://127.0.0.1:{port}/0"}])
            await worker_layer.send(channel, {"type": "supervisor.answer", "n": 2})
            assert await received(listener, 2), "the listener did not survive the restart"
            assert not task.done()
            task.cancel()
            await worker_layer.flush()
            return listener

        listener = asyncio.run(scenario())
        assert [m["n"] for m in listener.messages] == [1, 2]
    finally:
        server.kill()
        server.wait()
