"""The stand-in server: Realtime WebSocket at ``/v1/realtime``, GPT-Live WebSocket at ``/v1/live/sessions``
(see ``voice.offline.realtime.live``) plus HTTP routes on the same port.

HTTP on the same port
=====================
* ``GET /v1/models``, ``GET /v1/models/{id}``: OpenAI list/model shapes (Bearer auth required).
* ``POST /v1/audio/transcriptions``: see voice/offline/realtime/transcriptions.py.
* ``POST /v1/chat/completions``: see voice/offline/realtime/chat.py. Every ``/v1/`` route requires
  ``Authorization: Bearer <any non-empty key>``; otherwise 401 ``{"error": {"message", "type":
  "invalid_request_error", "param": null, "code": "invalid_api_key"}}``.
* ``GET /standin/sessions``: ``{"object": "standin.sessions", "sessions": {session_id: record}}``,
  Realtime and GPT-Live sessions in connection order. A GPT-Live record (``"protocol": "live"``) is described
  in voice/offline/realtime/live.py; a Realtime record is::

    {"id", "protocol": "realtime", "model", "path", "mode": "scripted"|"echo",
     "headers": {"authorization": bool, "openai_beta": str|null, "user_agent": str|null},
     "rejected": null|"beta_api_shape_disabled",
     "session": {...effective session config...}, "session_updates": int (applied),
     "events_received": [types in order, at most 10000], "events_received_total": int,
     "event_counts": {type: n}, "events_sent": {type: n},
     "errors": [{"code", "message", "param", "event_id"}],
     "input_audio_ms": int,
     "caller_turns": [{"item_id", "transcript", "via": "vad"|"commit"|"text",
                       "audio_start_ms", "audio_end_ms"}],
     "responses": [{"id", "status", "reason", "text", "audio_ms", "tool", "usage", "instructions"}],
     "audio_ms_by_item": {item_id: ms generated},
     "truncations": [{"item_id", "content_index", "audio_end_ms", "generated_ms", "accepted", "error"}],
     "tool_calls": [{"call_id", "name", "arguments"}],
     "tool_outputs": [{"call_id", "output", "known"}],
     "warnings": [str],
     "closed_by": null|"client"|"server", "close_code": int|null, "close_reason": str|null,
     "started_at": unix time, "ended_at": unix time|null}

* ``GET /standin/chat``: ``{"object": "standin.chat", "requests": [record, ...]}`` (oldest first, at most
  10000), one record per chat completions request that passed the auth check::

    {"id": "chatcmpl-..."|null, "outcome": "pending"|"hanging"|"answered"|"invalid_request"|
                                           "scripted_error"|"client_disconnected"|"hang_cap"|"stopped",
     "status": int|null, "model", "entry": {"index", "match": [str], "default": bool}|null, "step": int,
     "last_user_message", "messages": int, "tools": [names], "tool_choice", "caller", "today",
     "tool_results": [{"tool_call_id", "name", "content"}]  (tool messages after the last user message),
     "tool_calls": [{"id", "name", "arguments"}], "content", "finish_reason", "usage",
     "error": null|{"message", "type", "param", "code"}, "warnings": [str], "delay_ms",
     "user_agent", "started_at", "ended_at", "duration_ms"}

* ``POST /standin/reset``: clears the session and chat logs. ``GET /standin/health``: ``{"status": "ok"}``.
* ``POST /standin/drop``: ``{"share": 0.1, "close_code": null}`` drops that share of the live sessions (Realtime
  and GPT-Live alike) now (every ``1/share``-th in connection order, at least one while any is live): the TCP
  connection is aborted without a close frame, or closed with ``close_code`` (e.g. 1011). Answers
  ``{"object": "standin.drop", "dropped": [ids], "live": n}``. A fault injected at a chosen moment (soak benchmarks), where ``fail.drop_after_ms`` counts from each
  session's own start.
* ``RealtimeStandin.add_http_route(method, path, handler)`` adds more endpoints (or replaces a built-in
  one such as ``POST /v1/chat/completions``); request bodies with a ``Content-Length`` are read (no chunked
  transfer encoding). Each HTTP request gets ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Awaitable, Callable
from urllib.parse import parse_qs

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from voice.offline.realtime.chat import _AbortRequest, _ChatCompletions
from voice.offline.realtime.live import LIVE_PATH, _LiveSession
from voice.offline.realtime.protocol import (
    DEFAULT_MODEL, MAX_MESSAGE_BYTES, _MODELS, OPEN_TIMEOUT_S, _TRACKED_HEADER_BETA, _Ids,
)
from voice.offline.realtime.script import Script
from voice.offline.realtime.session import _Session
from voice.offline.realtime.transcriptions import handle_transcription
from voice.offline.realtime.transport import HTTPRequest, _StandinConnection, _json_response, _openai_error

if TYPE_CHECKING:
    from voice.offline.realtime.transport import HTTPHandler

log = logging.getLogger("voice.offline.realtime")


class RealtimeStandin:
    """The stand-in server: Realtime WebSocket at ``/v1/realtime`` plus HTTP on the same port.

    Args:
        script: a :class:`Script`, a dict in the script format, or a path to a JSON script.
        echo: echo mode for latency benchmarks, on both protocols (see voice/offline/realtime/session.py and
            live.py).
        echo_scripted: echo every append *and* run the script on it (VAD, turns, responses, tools), so that a soak
            can time every frame and drive conversations at once; implies ``echo``.
        audio: ``"tone"`` or ``"espeak"`` (falls back to the tone if espeak-ng is missing).
        speed: how many times faster than real time responses are generated (0: unpaced).
        host, port: where to listen (``port=0`` picks a free port; read it back from ``.port``).
        chunk_ms: audio per ``response.output_audio.delta``.
        transcription_delay_ms: delay of ``...input_audio_transcription.completed`` after a commit.
    """

    def __init__(self, script: Script | dict | str | os.PathLike | None = None, *, echo: bool = False,
                 echo_scripted: bool = False, audio: str = "tone", speed: float = 3.0, host: str = "127.0.0.1", port: int = 8765,
                 chunk_ms: int = 100, transcription_delay_ms: int = 50) -> None:
        if audio not in ("tone", "espeak"):
            raise ValueError("audio must be 'tone' or 'espeak'")
        if chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")
        self._script = Script.from_obj(script)
        self.echo = echo or echo_scripted
        self.echo_scripted = echo_scripted
        self.audio = audio
        self.speed = float(speed)
        self.host = host
        self.port = port
        self.chunk_ms = int(chunk_ms)
        self.transcription_delay_ms = transcription_delay_ms
        self._ids = _Ids()
        self._sessions: dict[str, dict] = {}
        self._live: dict[str, _Session | _LiveSession] = {}
        self._closed: dict[str, asyncio.Event] = {}
        self._refused = 0  # connections refused, and sessions opened, under the current script (its `fail` counts)
        self._accepted = 0
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._routes: dict[tuple[str, str], HTTPHandler] = {}
        self._stopping: asyncio.Event | None = None
        self._chat = _ChatCompletions(self)
        self.add_http_route("GET", "/v1/models", self._http_models)
        self.add_http_route("POST", "/v1/chat/completions", self._chat.handle)
        self.transcription_text: str | None = None  # what /v1/audio/transcriptions answers (None: a stand-in line)
        self.transcription_requests: list[dict] = []
        self.add_http_route("POST", "/v1/audio/transcriptions", lambda req: handle_transcription(self, req))
        self.add_http_route("GET", "/standin/sessions", self._http_sessions)
        self.add_http_route("GET", "/standin/chat", self._http_chat_log)
        self.add_http_route("POST", "/standin/reset", self._http_reset)
        self.add_http_route("POST", "/standin/drop", self._http_drop)
        self.add_http_route("GET", "/standin/health", lambda req: (200, {"status": "ok"}))

    # ---- URLs -----------------------------------------------------------------------------

    @property
    def _url_host(self) -> str:
        if self.host in ("0.0.0.0", ""):
            return "127.0.0.1"
        if self.host == "::":
            return "[::1]"
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def url(self) -> str:
        """WebSocket URL of the Realtime endpoint (OPENAI_REALTIME_URL); clients add ``?model=``."""
        return f"ws://{self._url_host}:{self.port}/v1/realtime"

    @property
    def live_url(self) -> str:
        """WebSocket URL of the GPT-Live endpoint (no query parameters; the model goes in session.start)."""
        return f"ws://{self._url_host}:{self.port}{LIVE_PATH}"

    @property
    def http_url(self) -> str:
        return f"http://{self._url_host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OPENAI_BASE_URL for the openai SDK."""
        return self.http_url + "/v1"

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> RealtimeStandin:
        """Start listening (in the running event loop)."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._server = await serve(
            self._handler, self.host, self.port,
            process_request=self._process_request,
            create_connection=_StandinConnection,
            open_timeout=None,  # _StandinConnection.handshake applies OPEN_TIMEOUT_S itself
            compression=None,  # cheaper per message; the benchmark path matters more than bandwidth
            max_size=MAX_MESSAGE_BYTES,
            server_header="openai-realtime-standin",
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("Realtime stand-in listening on %s", self.url)
        return self

    async def aclose(self) -> None:
        """Stop listening and close open sessions (code 1001); waiting chat requests are dropped."""
        if self._stopping is not None:
            self._stopping.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> RealtimeStandin:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def start_in_thread(self, timeout: float = 10.0) -> RealtimeStandin:
        """Run the server in a daemon thread with its own loop; returns once it listens."""
        if self._thread is not None:
            raise RuntimeError("already running in a thread")
        started = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # noqa: BLE001 - reported to the caller
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name="realtime-standin", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise TimeoutError("the stand-in did not start in time")
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a server started with :meth:`start_in_thread`."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    # ---- log ------------------------------------------------------------------------------

    def _on_loop_thread(self) -> bool:
        if self._loop is None or self._thread is None:
            return True
        return self._thread is threading.current_thread()

    def _call_on_loop(self, fn: Callable[[], Any]) -> Any:
        if self._on_loop_thread() or not self._loop.is_running():
            return fn()

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(10)

    @property
    def sessions(self) -> dict[str, dict]:
        """A snapshot (deep copy) of the session log: ``{session_id: record}`` in connection order."""
        return self._call_on_loop(lambda: copy.deepcopy(self._sessions))

    @property
    def last_session(self) -> dict | None:
        sessions = self.sessions
        return next(reversed(sessions.values())) if sessions else None

    @property
    def script(self) -> Script:
        return self._script

    @script.setter
    def script(self, script: Script | dict | str | os.PathLike | None) -> None:
        """A new script starts its failure counts (`fail.refuse_connection.count`, `fail.sessions`) afresh."""
        self._script = script if isinstance(script, Script) else Script.from_obj(script)
        self._refused = 0
        self._accepted = 0

    def reset(self) -> None:
        """Forget the session log and the chat log (live sessions keep running but are no longer listed), and
        start the script's failure counts afresh."""
        def clear() -> None:
            self._sessions.clear()
            self._chat.log.clear()
            self.transcription_requests.clear()
            self._refused = 0
            self._accepted = 0
        self._call_on_loop(clear)

    @property
    def chat_requests(self) -> list[dict]:
        """A snapshot of the chat completions log, oldest first (see ``GET /standin/chat``)."""
        return self._call_on_loop(lambda: copy.deepcopy(self._chat.log))

    @property
    def last_chat_request(self) -> dict | None:
        requests = self.chat_requests
        return requests[-1] if requests else None

    async def wait_for_close(self, session_id: str | None = None, timeout: float = 5.0) -> dict:
        """Wait until a session (default: the most recent) has ended; returns its record."""
        deadline = asyncio.get_running_loop().time() + timeout
        while session_id is None:
            if self._closed:
                session_id = next(reversed(self._closed))
                break
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("no session started")
            await asyncio.sleep(0.01)
        event = self._closed[session_id]
        await asyncio.wait_for(event.wait(), max(0.0, deadline - asyncio.get_running_loop().time()))
        return copy.deepcopy(self._sessions.get(session_id) or {})

    # ---- HTTP -----------------------------------------------------------------------------

    def add_http_route(self, method: str, path: str, handler: HTTPHandler) -> None:
        """Serve ``method path`` with ``handler(HTTPRequest) -> (status, payload)`` (payload: JSON-able,
        str or bytes; the handler may be async). Later registrations replace earlier ones."""
        self._routes[(method.upper(), path.rstrip("/") or "/")] = handler

    async def _process_request(self, connection: _StandinConnection, request: Request) -> Response | None:
        path, _, query_string = request.path.partition("?")
        path = path.rstrip("/") or "/"
        query = parse_qs(query_string)
        headers = request.headers
        method = request.method.upper()
        if path in ("/v1/realtime", LIVE_PATH):
            if not _bearer(headers):
                return _openai_error(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header "
                    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                )
            refuse = self.script.fail.get("refuse_connection")
            after = self.script.fail.get("refuse_after_sessions")
            if after is not None and self._accepted >= int(after):
                refuse = True  # OpenAI gone for good after the first session(s): every reconnect is refused
            if refuse:
                spec = refuse if isinstance(refuse, dict) else {}
                count = spec.get("count")
                if count is None or self._refused < int(count):
                    self._refused += 1
                    return _openai_error(int(spec.get("status", 500)),
                                         "The server had an error while processing your request. Sorry about that!",
                                         None, "server_error")
            if self.script.connect_delay_ms:
                await asyncio.sleep(self.script.connect_delay_ms / 1000)
            if path == LIVE_PATH:
                connection.standin_info = {
                    "protocol": "live", "path": request.path, "query": query,
                    "headers": {"authorization": True, "openai_beta": headers.get(_TRACKED_HEADER_BETA),
                                "user_agent": headers.get("User-Agent")},
                }
                return None
            connection.standin_info = {
                "model": (query.get("model") or [DEFAULT_MODEL])[0],
                "path": request.path,
                "beta": headers.get(_TRACKED_HEADER_BETA),
                "headers": {"authorization": True, "openai_beta": headers.get(_TRACKED_HEADER_BETA),
                            "user_agent": headers.get("User-Agent")},
            }
            return None  # websockets performs (or refuses, e.g. 426 for a plain GET) the upgrade
        handler = self._routes.get((method, path))
        if handler is None and method == "GET" and path.startswith("/v1/models/"):
            handler = self._http_model
        if handler is None:
            if any(p == path for _, p in self._routes):
                return _openai_error(405, f"Method {method} not allowed for {path}.", "method_not_allowed")
            return _openai_error(404, f"Invalid URL ({method} {path})", None)
        if path.startswith("/v1/") and not _bearer(headers):
            if headers.get("Authorization") is None:
                message = ("You didn't provide an API key. You need to provide your API key in an Authorization "
                           "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
            else:
                message = "Incorrect API key provided. The stand-in accepts any non-empty Bearer token."
            return _openai_error(401, message, "invalid_api_key")
        req = HTTPRequest(method, path, query, headers, connection.http_body, connection=connection)
        try:
            result = handler(req)
            if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
                result = await result
            status, payload = result[0], result[1]
            extra = result[2] if len(result) > 2 else None
        except _AbortRequest:
            connection.transport.abort()
            await asyncio.wait([connection.connection_lost_waiter], timeout=1)
            return _openai_error(500, "The request was dropped.", None, "server_error")  # never sent
        except Exception:  # noqa: BLE001 - a broken route must not kill the server
            log.exception("stand-in HTTP handler failed for %s %s", method, path)
            return _openai_error(500, "The stand-in failed to handle this request.", None, "server_error")
        return _json_response(status, payload, extra)

    def _http_models(self, req: HTTPRequest) -> tuple[int, Any]:
        return 200, {"object": "list", "data": [_model_obj(m) for m in _MODELS]}

    def _http_model(self, req: HTTPRequest) -> tuple[int, Any]:
        model = req.path.split("/v1/models/", 1)[1]
        if model not in _MODELS:
            return 404, {"error": {"message": f"The model '{model}' does not exist or you do not have access to it.",
                                   "type": "invalid_request_error", "param": None, "code": "model_not_found"}}
        return 200, _model_obj(model)

    def _http_sessions(self, req: HTTPRequest) -> tuple[int, Any]:
        return 200, {"object": "standin.sessions", "sessions": self._sessions}

    def _http_chat_log(self, req: HTTPRequest) -> tuple[int, Any]:
        return 200, {"object": "standin.chat", "requests": self._chat.log}

    def _http_reset(self, req: HTTPRequest) -> tuple[int, Any]:
        n, n_chat = len(self._sessions), len(self._chat.log)
        self._sessions.clear()
        self._chat.log.clear()
        return 200, {"object": "standin.reset", "cleared": n, "chat_cleared": n_chat}

    def _http_drop(self, req: HTTPRequest) -> tuple[int, Any]:
        try:
            body = json.loads(req.body or b"{}")
            share = float(body.get("share", 0.1))
            code = body.get("close_code")
            if not 0 < share <= 1 or (code is not None and not isinstance(code, int)):
                raise ValueError
        except (ValueError, TypeError, AttributeError):
            return 400, {"error": {"message": "expected {\"share\": 0 < x <= 1, \"close_code\": int|null}",
                                   "type": "invalid_request_error", "param": None, "code": None}}
        dropped = self.drop_live_sessions(share, close_code=code)
        return 200, {"object": "standin.drop", "dropped": dropped, "live": len(self._live)}

    def drop_live_sessions(self, share: float, *, close_code: int | None = None) -> list[str]:
        """Drop `share` of the live sessions now (every 1/share-th in connection order, at least one while any is
        live): abort the TCP connection (no close frame), or close with `close_code`. Returns the dropped ids."""
        def drop() -> list[str]:
            live = [s for s in self._live.values() if not s.server_closing]
            if not live:
                return []
            step = max(1, round(1 / share))
            chosen = live[step - 1::step] or live[:1]
            for session in chosen:
                session.record["warnings"].append("dropped by /standin/drop")
                if close_code is None:
                    session.abort()
                else:
                    session.server_closing = True
                    session.spawn(session.ws.close(close_code, "stand-in drop"))
            return [session.id for session in chosen]
        return self._call_on_loop(drop)

    async def _pause(self, req: HTTPRequest, seconds: float) -> str | None:
        """Wait ``seconds`` without holding up other requests. Returns None, or ``"client_disconnected"`` /
        ``"stopped"`` if the client closed the connection or the stand-in is shutting down first."""
        if seconds <= 0:
            return None
        loop = asyncio.get_running_loop()
        waiters: list[asyncio.Future] = []
        conn = req.connection
        lost = getattr(conn, "connection_lost_waiter", None)
        if lost is not None:
            waiters.append(lost)
        if getattr(conn, "open_deadline", None) is not None:
            conn.open_deadline.reschedule(loop.time() + seconds + OPEN_TIMEOUT_S)
        stop = asyncio.ensure_future(self._stopping.wait()) if self._stopping is not None else None
        if stop is not None:
            waiters.append(stop)
        try:
            if not waiters:
                await asyncio.sleep(seconds)
                return None
            done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if stop is not None:
                stop.cancel()
        if stop is not None and stop in done:
            return "stopped"
        if lost is not None and lost in done:
            return "client_disconnected"
        return None

    # ---- WebSocket ------------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        info = getattr(ws, "standin_info", {}) or {}
        session = (_LiveSession if info.get("protocol") == "live" else _Session)(self, ws, info)
        self._sessions[session.id] = session.record
        self._live[session.id] = session
        self._closed[session.id] = asyncio.Event()
        try:
            await session.run(info)
        except ConnectionClosed:
            pass
        except Exception:  # noqa: BLE001
            log.exception("stand-in session %s failed", session.id)
            session.server_closing = True
            await ws.close(1011, "stand-in internal error")
        finally:
            await session.close_log()
            self._live.pop(session.id, None)
            self._closed[session.id].set()
            if len(self._closed) > 10_000:
                for key in list(self._closed)[:5000]:
                    self._closed.pop(key, None)


def _bearer(headers: Headers) -> bool:
    auth = headers.get("Authorization") or ""
    scheme, _, token = auth.partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _model_obj(model: str) -> dict:
    return {"id": model, "object": "model", "created": 1756339200, "owned_by": "system"}
