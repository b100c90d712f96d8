"""Call simulator: plays Twilio against a running server of ours.

It does what Twilio does for an inbound call to a number whose voice URL is our webhook:

1. POSTs the signed "a call comes in" form to ``{base_url}/voice/twilio/incoming/``;
2. parses the TwiML; on ``<Connect><Stream>`` opens the media WebSocket (same path, our base host);
3. speaks the bidirectional Media Streams protocol (``connected``, ``start``, ``media`` every 20 ms in
   real time, ``dtmf``, ``stop``), plays the agent's audio back in real time the way Twilio's
   playback buffer does (marks echoed once the audio queued before them has played, ``clear``
   flushes the buffer and returns pending marks at once);
4. optionally POSTs the signed ``completed`` status callback.

The caller speaks a WAV file or synthetic speech bursts, waits for the agent to finish between
utterances (or barges in), and the run ends with a :class:`CallReport` (latencies, marks, clears,
protocol errors, close code).

No Django here: this package runs against any server. ``voice/management/commands/simulate_call.py``
is the CLI. Protocol reference: docs in ``/work/shared/reference/twilio.md`` §1-§3.

Where things are: ``config`` (:class:`SimulatedCallConfig`), ``report`` (:class:`CallReport` and its parts),
``twiml`` (:func:`parse_twiml`), ``webhooks`` (SIDs, signatures, the signed POSTs), ``media`` (the Media Streams
socket and playback buffer), ``call`` (:class:`SimulatedCall`, the caller's behaviour). Caller audio (WAV,
synthetic speech, μ-law frames) is in :mod:`voice.offline.audio`, shared with the Realtime stand-in.
"""

from voice.offline.audio import load_wav_pcm16, synthetic_speech_pcm16
from voice.offline.simulator.call import SimulatedCall, run_simulated_call, simulate_call
from voice.offline.simulator.config import SimulatedCallConfig
from voice.offline.simulator.report import BargeIn, CallReport, TurnReport
from voice.offline.simulator.twiml import TwimlResult, parse_twiml
from voice.offline.simulator.webhooks import new_sid, twilio_signature

__all__ = [
    "BargeIn",
    "CallReport",
    "SimulatedCall",
    "SimulatedCallConfig",
    "TurnReport",
    "TwimlResult",
    "load_wav_pcm16",
    "new_sid",
    "parse_twiml",
    "run_simulated_call",
    "simulate_call",
    "synthetic_speech_pcm16",
    "twilio_signature",
]
