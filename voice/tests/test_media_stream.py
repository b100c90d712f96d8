"""The Twilio media socket before its stream token is redeemed: nothing is opened for it."""

from __future__ import annotations

import asyncio
import json

from channels.testing import WebsocketCommunicator

from voice.twilio_stream import TwilioMediaStream


def call_tasks() -> list[asyncio.Task]:
    """Tasks a call opens: the reply-channel listener, the session's upstream reader and housekeeping."""
    return [task for task in asyncio.all_tasks()
            if task.get_coro().__qualname__ in ("forward_call_messages", "_OpenAIEvents._read_upstream",
                                                 "_Lifecycle._housekeeping")]


async def test_a_socket_without_a_redeemed_token_gets_no_reply_channel_or_listener(settings):
    settings.MEDIA_STREAM_START_SECONDS = 30
    socket = WebsocketCommunicator(TwilioMediaStream(), "/ws/twilio/media/")
    connected, _ = await socket.connect()
    assert connected
    await socket.send_to(text_data=json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    assert await socket.receive_nothing(timeout=0.3)  # the consumer has read the frame and waits for `start`
    assert call_tasks() == []
    await socket.disconnect()
