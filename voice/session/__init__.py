"""The call session: one caller, one voice-model socket, whatever the transport (Twilio or browser) and whatever the
engine (OpenAI Realtime or GPT-Live: `engine.py`, `realtime.py`, `live.py`).

The audio path is kept lean: caller audio goes to OpenAI as the same base64 string it arrived as, agent
audio goes back the same way, and nothing on that path touches the database, logs, or leaves the event
loop. Transcripts, events and latencies are collected in memory and flushed by a background task.

`CallSession` (`call.py`) holds the state; what it does is mixed in, one concern per module: its life from
greeting to finalising and the flushes (`lifecycle.py`), OpenAI's events (`events.py`), playback, marks and
barge-in (`playback.py`), the agent's tools and the supervisor hand-off (`tools.py`), the minutes allowance
(`allowance.py`) and the server's shutdown (`shutdown.py`).
"""

from voice.session.allowance import ALLOWANCE_GOODBYE, ALLOWANCE_GOODBYE_LEAD_S
from voice.session.call import CallSession
from voice.session.lifecycle import FINAL_FLUSH_RETRY_DELAYS_S, FLUSH_INTERVAL_S
from voice.session.playback import CANCEL_EVENT_PREFIX, PLAYBACK_WAIT_S
from voice.session.shared import (CallTransport, ItemAudio, ResponseState, b64_len_to_bytes, in_db_pool,
                                  in_io_threads)
from voice.session.shutdown import SHUTDOWN_PURPOSE, shutdown_instructions
from voice.session.tools import LATE_ACTION_WORDS, enqueue_supervisor

__all__ = [
    "ALLOWANCE_GOODBYE", "ALLOWANCE_GOODBYE_LEAD_S", "CANCEL_EVENT_PREFIX", "FINAL_FLUSH_RETRY_DELAYS_S",
    "FLUSH_INTERVAL_S", "LATE_ACTION_WORDS", "PLAYBACK_WAIT_S", "SHUTDOWN_PURPOSE", "CallSession", "CallTransport",
    "ItemAudio", "ResponseState", "b64_len_to_bytes", "enqueue_supervisor", "in_db_pool", "in_io_threads",
    "shutdown_instructions",
]
