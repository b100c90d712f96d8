"""HTTP plumbing of the stand-in: plain requests on the WebSocket port, their bodies and JSON answers."""

from __future__ import annotations

import asyncio
import http
import json
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Response

from voice.offline.realtime.protocol import MAX_HTTP_BODY, OPEN_TIMEOUT_S


@dataclass
class HTTPRequest:
    """A plain HTTP request that reached the stand-in (for ``add_http_route`` handlers)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Headers
    body: bytes = b""
    connection: Any = field(default=None, repr=False, compare=False)  # the _StandinConnection

    def json(self) -> Any:
        return json.loads(self.body or b"null")


HTTPHandler = Callable[[HTTPRequest], "tuple[int, Any] | Awaitable[tuple[int, Any]]"]


def _json_response(status: int, payload: Any, extra_headers: dict[str, str] | None = None) -> Response:
    if isinstance(payload, (bytes, bytearray)):
        body, ctype = bytes(payload), "application/octet-stream"
    elif isinstance(payload, str):
        body, ctype = payload.encode(), "text/plain; charset=utf-8"
    else:
        body, ctype = json.dumps(payload, indent=None).encode(), "application/json"
    headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))), ("Connection", "close")])
    for k, v in (extra_headers or {}).items():
        headers[k] = v
    st = http.HTTPStatus(status)
    return Response(st.value, st.phrase, headers, body)


def _openai_error(status: int, message: str, code: str | None = None, type_: str = "invalid_request_error") -> Response:
    return _json_response(status, {"error": {"message": message, "type": type_, "param": None, "code": code}})


_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(\d+)[ \t]*\r\n", re.IGNORECASE | re.MULTILINE)
_EXPECT_CONTINUE = re.compile(rb"^expect:[ \t]*100-continue", re.IGNORECASE | re.MULTILINE)


class _StandinConnection(ServerConnection):
    """A websockets server connection that also reads the body of plain HTTP requests.

    websockets parses only the request head and refuses requests with a body. Until the head is
    complete we buffer the bytes ourselves; a body announced by Content-Length is cut off and kept
    in ``http_body`` and the head without its Content-Length goes to websockets as usual. After the
    head, data flows straight to websockets (one attribute check per read).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http_body = b""
        self.standin_info: dict[str, Any] = {}
        self._head_buf = bytearray()
        self._head_done = False
        self._continue_sent = False
        self.open_deadline: asyncio.Timeout | None = None

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        # serve() runs with open_timeout=None and the same limit is applied here instead, where HTTP routes
        # that wait on purpose (chat completions delay_ms / hang) can push it back.
        async with asyncio.timeout(OPEN_TIMEOUT_S) as self.open_deadline:
            await super().handshake(*args, **kwargs)

    def data_received(self, data: bytes) -> None:
        if self._head_done:
            super().data_received(data)
            return
        self._head_buf += data
        end = self._head_buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head_buf) > 65536:
                self._release(bytes(self._head_buf))
            return
        head = bytes(self._head_buf[: end + 4])
        m = _CONTENT_LENGTH.search(head)
        length = int(m.group(1)) if m else 0
        if length <= 0 or length > MAX_HTTP_BODY:
            self._release(bytes(self._head_buf))  # websockets answers oversized bodies itself
            return
        rest = self._head_buf[end + 4:]
        if len(rest) < length:
            if not self._continue_sent and _EXPECT_CONTINUE.search(head):
                self._continue_sent = True
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        self.http_body = bytes(rest[:length])
        self._release(_CONTENT_LENGTH.sub(b"", head) + bytes(rest[length:]))

    def _release(self, data: bytes) -> None:
        self._head_done = True
        self._head_buf = bytearray()
        super().data_received(data)

    def eof_received(self) -> None:
        if not self._head_done and self._head_buf:
            self._release(bytes(self._head_buf))
        super().eof_received()
