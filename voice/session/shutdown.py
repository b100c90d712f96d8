"""The server shutting down (a deploy, voice/drain.py): the agent tells the caller and hangs up, or the drain
hangs up for it when its time is up (mixed into `CallSession`)."""

from __future__ import annotations

import asyncio

from calls.models import Call, CallEvent
from voice.agent import LANGUAGE_NAMES
from voice.phrases import phrase


# The response that tells the caller the server is restarting carries this in its metadata.
SHUTDOWN_PURPOSE = "server_shutdown"


def shutdown_instructions(language: str) -> str:
    sentence = phrase("server_restart", language)
    return ("The phone system is restarting and this call has to end now. Do not call any tool and do not ask "
            f"anything. Say exactly this sentence to the caller, in {LANGUAGE_NAMES.get(language, 'English')}, "
            f"and nothing else: \"{sentence}\"")


class _Shutdown:
    """The restart goodbye and the forced end."""

    def start_shutdown(self) -> None:
        """The server is shutting down: let the agent finish, tell the caller, hang up (voice/drain.py bounds it)."""
        if self._finishing or self.draining:
            return
        self.draining = True
        self._tasks.append(asyncio.create_task(self._shutdown_goodbye(), name=f"call-{self.call_id}-shutdown"))

    async def _shutdown_goodbye(self) -> None:
        self.add_event(CallEvent.Kind.STATUS, step="server_shutdown",
                       message="The server is restarting: the agent tells the caller and ends the call.")
        # Whatever the agent is saying, a lookup it is waiting for, or a response already asked for comes first.
        while self.active_response is not None or self.pending_supervisor or self.response_create_pending is not None:
            await asyncio.sleep(0.1)
        if self.after_playback is not None or not self.ready:
            return  # a hang-up or transfer is already on its way (or OpenAI is gone): the drain waits for it
        language = self.profile.language if self.profile else "en"
        await self.engine.speak_shutdown(language)

    async def end_for_shutdown(self) -> None:
        """The drain time is up and the call is still live: hang up and record why."""
        try:
            await asyncio.wait_for(self.transport.hang_up(), timeout=3)
            self.add_event(CallEvent.Kind.HANGUP, by="agent", reason="server_shutdown")
        except Exception as exc:
            self.add_event(CallEvent.Kind.ERROR, source="server", message=f"Hang-up at shutdown failed: {exc!r}")
        await self.finish(status=Call.Status.COMPLETED if self.shutdown_said else Call.Status.INTERRUPTED,
                          reason="server_shutdown")
        await self.transport.close()
