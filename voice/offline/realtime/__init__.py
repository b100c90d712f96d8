"""Local stand-in for the OpenAI Realtime API (GA protocol) and a few OpenAI HTTP endpoints.

It lets the product run offline, in demos, tests and benchmarks. Besides the Realtime WebSocket it
answers the Chat Completions API (``POST /v1/chat/completions``, non-streaming) from a script, for the
supervisor text model (see ``voice.offline.realtime.chat``). The WebSocket speaks only the GA
Realtime protocol (``/v1/realtime?model=...``, ``session.type`` required, ``audio.input`` /
``audio.output`` formats, ``response.output_audio.*`` events). A client that sends the beta header
``OpenAI-Beta: realtime=v1`` is treated the way the real server has treated it since May 2026:
it gets an ``error`` event with code ``beta_api_shape_disabled`` and the socket closes with code 4000.

On the same port it also speaks OpenAI's GPT-Live primary WebSocket (``/v1/live/sessions``, ``session.start``
first, model-decided turns, delegation to a Responses backend), driven by the same script: see
``voice.offline.realtime.live`` (``standin.live_url``).

The module is pure asyncio plus the ``websockets`` library and never imports Django, so it can run
without it::

    python -m voice.offline.realtime --port 8765 --script voice/fixtures/standin_harbor_dental.json
    python manage.py realtime_standin --port 8765 [--script FILE] [--echo] [--audio tone|espeak] [--speed 3]

Point the product at it with ``OPENAI_REALTIME_URL=ws://HOST:PORT/v1/realtime`` and
``OPENAI_BASE_URL=http://HOST:PORT/v1`` (any non-empty API key).

In-process use (tests)::

    async with RealtimeStandin(script={...}, port=0) as standin:
        standin.url        # ws://127.0.0.1:PORT/v1/realtime   (clients add ?model=...)
        standin.live_url   # ws://127.0.0.1:PORT/v1/live/sessions   (GPT-Live; no query parameters)
        standin.http_url   # http://127.0.0.1:PORT
        standin.base_url   # http://127.0.0.1:PORT/v1          (for the openai SDK)
        standin.sessions   # snapshot of the session log, {session_id: record}
        standin.chat_requests   # snapshot of the chat completions log, [record, ...]

    standin = RealtimeStandin(port=0).start_in_thread()   # synchronous tests
    ...
    standin.stop()

Where things are
================
``script`` (the JSON script format and its parser), ``protocol`` (constants, the default session, errors,
token estimates), ``socket_session`` (what every WebSocket session does, whatever its protocol), ``session`` (one
Realtime connection and its event dispatch) with its handlers by concern in ``session_config``, ``input_audio``
(appends, the energy detector, the script cursor), ``items`` and ``responses`` (response generation, paced speech),
``live`` (one GPT-Live connection) with ``live_config`` (its strict session config, checked against the openai
SDK's models) and ``live_backend`` (delegation to the Responses backend),
``chat_checks`` and ``chat`` (Chat Completions: request checks, the scripted supervisor, the summary), ``wire``
(the business as our server's prompts describe it, for ``{business.*}`` templates), ``call_summary`` (what a
summary request says happened on the call, for ``{call.*}`` templates),
``transport`` (plain HTTP on the WebSocket port), ``server`` (:class:`RealtimeStandin`) and ``cli``. Audio
(tone, espeak-ng, μ-law) is shared with the simulator in :mod:`voice.offline.audio`.
"""

from voice.offline.realtime.chat_checks import CHAT_HANG_CAP_S, DEFAULT_SUPERVISOR_SAY, TOOL_MESSAGE_WITHOUT_CALL
from voice.offline.realtime.cli import build_arg_parser, main, serve_until_signalled, standin_from_options
from voice.offline.realtime.protocol import BETA_DISABLED_MESSAGE, DEFAULT_SESSION
from voice.offline.realtime.script import ChatKnobs, Script, SupervisorEntry, SupervisorStep, load_script
from voice.offline.realtime.server import RealtimeStandin
from voice.offline.realtime.transport import HTTPRequest

__all__ = [
    "RealtimeStandin",
    "Script",
    "HTTPRequest",
    "load_script",
    "serve_until_signalled",
    "build_arg_parser",
    "standin_from_options",
    "main",
    "DEFAULT_SESSION",
    "BETA_DISABLED_MESSAGE",
    "ChatKnobs",
    "SupervisorEntry",
    "SupervisorStep",
    "CHAT_HANG_CAP_S",
    "DEFAULT_SUPERVISOR_SAY",
    "TOOL_MESSAGE_WITHOUT_CALL",
]
