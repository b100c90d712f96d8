"""When the session waits for playback to end before acting (a hang-up after a goodbye), a goodbye it has asked
OpenAI for but whose response.created has not arrived yet still counts as coming: nothing is ended in that gap."""

from __future__ import annotations

import asyncio
import json

from voice.session import CallSession


class RecordingSocket:
    """The OpenAI side of the session: what it was sent."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))


class SilentTransport:
    def notify(self, event: dict) -> None:
        pass

    async def close(self) -> None:
        pass


def test_a_goodbye_asked_for_but_not_yet_created_holds_the_hang_up_until_it_has_played():
    async def scenario() -> tuple[list[str], list[dict]]:
        session = CallSession(call_id=1, business_id=1, transport=SilentTransport())
        session.upstream = RecordingSocket()
        done: list[str] = []

        async def hang_up() -> None:
            done.append("hung up")

        await session._on_response_created({"response": {"id": "resp_greeting"}})
        session._wait_for_playback(hang_up)
        await session._create_response("Say goodbye.")  # queued behind the greeting
        await session._on_response_done({"response": {"id": "resp_greeting"}})  # the goodbye is asked for now
        await session.check_playback()  # every mark echoed, but the goodbye has not started
        assert done == []
        await session._on_response_created({"response": {"id": "resp_goodbye"}})
        await session.check_playback()
        assert done == []
        await session._on_response_done({"response": {"id": "resp_goodbye"}})
        return done, session.upstream.sent

    done, sent = asyncio.run(scenario())
    assert done == ["hung up"]
    assert [e["type"] for e in sent] == ["response.create"]


def test_a_refused_response_create_does_not_hold_the_hang_up_forever():
    async def scenario() -> list[str]:
        session = CallSession(call_id=1, business_id=1, transport=SilentTransport())
        session.upstream = RecordingSocket()
        done: list[str] = []

        async def hang_up() -> None:
            done.append("hung up")

        session._wait_for_playback(hang_up)
        await session._create_response("Say goodbye.")
        await session.check_playback()
        assert done == []
        await session._on_error({"error": {"code": "conversation_already_has_active_response"}})
        await session.check_playback()
        return done

    assert asyncio.run(scenario()) == ["hung up"]
