"""The voice engine behind a call session: the one part that speaks a voice model's wire protocol.

A call session (transports, records, transcripts, tools and their caller-privacy rules, reconnects, allowance,
shutdown) is the same whichever model answers. What differs is how a session is opened and configured, how caller
audio is framed, how the agent is asked to say something, which events come back and how a session is closed:
that is a `VoiceEngine`, one module each — `voice.session.realtime` (OpenAI Realtime, turn by turn, our supervisor
behind `ask_supervisor`) and `voice.session.live` (GPT-Live, full duplex, our tools run for its delegation backend).
The business's `voice_engine` (else settings.VOICE_ENGINE) picks one per call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from voice.session.shared import close_quietly

if TYPE_CHECKING:
    from voice.session.call import CallSession

EventHandler = Callable[[Any, dict[str, Any]], Awaitable[None]]


class VoiceEngine:
    """The interface a call session uses; one instance per call, bound to its session."""

    name: str = ""
    label: str = ""  # for people: in errors and on the call page
    buffers_first_audio = False  # caller audio is held until the session has started (not dropped)

    def __init__(self, session: "CallSession") -> None:
        self.session = session

    @property
    def model(self) -> str:
        raise NotImplementedError

    def handler(self, event_type: str) -> Callable[[dict[str, Any]], Awaitable[None]] | None:
        """What handles a server event of this type (None: ignored)."""
        raise NotImplementedError

    async def connect(self, *, timeout: float, resume: bool) -> Any:
        """Open a session, ready for caller audio. `resume`: the call is under way (a reconnect or renewal), so
        the new session is told what was said so far where the protocol takes it at start."""
        raise NotImplementedError

    async def begin(self) -> None:
        """The session of a new call is open: configure what is left and have the agent greet the caller."""
        raise NotImplementedError

    def audio_frame(self, payload: str) -> str:
        """The text frame carrying one chunk of caller audio (base64, passed through untouched)."""
        raise NotImplementedError

    async def request_speech(self, instructions: str) -> None:
        """Have the agent say something (a goodbye, an apology, a correction) as soon as it may."""
        raise NotImplementedError

    async def speak_shutdown(self, language: str) -> None:
        """The server is restarting: have the agent say the restart sentence, then hang up after it."""
        raise NotImplementedError

    def forget_session(self) -> Any:
        """The session is lost: drop what lived only in it; returns what the next session must be given."""
        raise NotImplementedError

    async def seed(self, carried: Any) -> list[str]:
        """A new session replaces a lost or renewed one: give it what it needs beyond `connect`; returns the
        instructions of replies the session meant to ask for meanwhile."""
        raise NotImplementedError

    async def resume(self, instructions: str) -> None:
        """After a reconnect: ask the agent to apologise and pick up the conversation (`instructions`)."""
        raise NotImplementedError

    async def retire(self, old: Any) -> None:
        """A renewal switched to a new session: end the old one (its reader stops when its socket closes)."""
        await close_quietly(old)

    def session_ended(self, socket: Any) -> None:
        """The reader saw this session's socket close (a drop, an expiry, a renewal's old session)."""

    async def close_session(self) -> None:
        """The call ends: close the session (and collect its final usage where the protocol reports one)."""
        raise NotImplementedError

    def playback_drained(self) -> bool:
        """Nothing more is coming from the agent and the caller has heard everything sent."""
        raise NotImplementedError

    def quiet(self) -> bool:
        """A moment to switch sessions: nobody speaks, nothing plays, nothing is pending."""
        raise NotImplementedError

    def session_ends_at(self) -> float:
        """When (monotonic) the current session reaches its time cap."""
        raise NotImplementedError

    def seeds_at_connect(self) -> bool:
        """True when a new session is given the conversation in `connect` (so a renewal waits for quiet first)."""
        return False

    async def tick(self) -> None:
        """Called about once a second off the audio path (the session's housekeeping)."""

