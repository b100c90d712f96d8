"""What one simulated call does: the caller, its audio, turn-taking, ending and protocol knobs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


INCOMING_PATH = "/voice/twilio/incoming/"
STATUS_PATH = "/voice/twilio/status/"
STILL_STREAMING_GAP_S = 0.15  # agent audio arriving with shorter gaps than this is one reply still being spoken


@dataclass
class SimulatedCallConfig:
    """One simulated inbound call. Times are milliseconds unless the name says `_s`."""

    base_url: str  # where to connect, e.g. http://127.0.0.1:8000
    auth_token: str  # signs the webhook (and the WebSocket upgrade)
    to_number: str = "+14155550100"
    from_number: str = "+14155550123"
    public_url: str | None = None  # the server's PUBLIC_BASE_URL, used for signing; default base_url
    account_sid: str = "AC" + "0" * 32
    call_sid: str | None = None  # default: random CA…
    stream_sid: str | None = None  # default: random MZ…

    # Caller audio: WAV file(s) (each file is one utterance) or synthetic speech bursts.
    wav_path: str | Sequence[str] | None = None
    utterances: int = 2
    utterance_ms: int = 1500
    seed: int = 1

    # Turn-taking.
    wait_for_greeting: bool = True
    greeting_timeout_s: float = 8.0  # no greeting audio by then → start talking anyway
    wait_for_agent_ms: int = 700  # agent is "done" after its playback buffer was empty this long
    reply_timeout_s: float = 10.0  # no agent audio this long after an utterance → go on
    max_agent_turn_s: float = 30.0  # cap on one agent turn once it started
    barge_in: bool = False  # talk over the agent's reply instead of waiting for it to finish
    barge_in_delay_ms: int = 450  # … this long after the reply starts playing
    barge_in_from_utterance: int = 1  # 0 = also interrupt the greeting
    # > 0: barge in only once the reply's audio has paused this long while it is still streaming (a caller who
    # starts talking in a gap of a reply generated slower than real time, when every mark has come back)
    barge_in_pause_ms: int = 0
    dtmf: Sequence[tuple[int, str]] = ()  # (ms after start, digit)

    # Ending.
    max_duration_s: float = 60.0
    hang_up_after_s: float | None = None  # fixed call length; None = after the last reply
    hang_up_pause_ms: int = 300  # silence after the last reply before hanging up
    send_status_callback: bool = False

    # Protocol knobs, for negative tests of the server.
    send_start: bool = True
    media_before_start: int = 0  # silence frames sent between `connected` and `start`
    custom_parameters_override: Mapping[str, str | None] | None = None  # merged over TwiML's; None deletes
    start_hook: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None  # edit the `start` message
    webhook_params: Mapping[str, str | None] | None = None  # extra/overriding form fields; None deletes
    signature_override: str | None = None  # send this X-Twilio-Signature instead of the right one
    sign_websocket: bool = True  # X-Twilio-Signature on the upgrade (signed over the Stream URL)

    incoming_path: str = INCOMING_PATH
    status_path: str = STATUS_PATH
    webhook_timeout_s: float = 15.0  # Twilio gives up after 15 s
    connect_timeout_s: float = 10.0
    record_agent_audio_path: str | None = None  # write the audio that was played as 16-bit WAV
