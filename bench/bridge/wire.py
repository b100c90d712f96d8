"""What travels: tagged 20 ms frames, and the bench's own lean WebSocket and HTTP/1.1 clients.

The load generator must cost far less per message than the servers it measures, so it speaks the protocols
itself (callbacks straight from `data_received`, plain transport writes) instead of using a full client library.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import secrets
import struct
import urllib.parse
from typing import Any

FRAME_BYTES = 160            # 20 ms of μ-law at 8 kHz
FRAME_S = 0.020
TAG = struct.Struct(">BHI")  # magic, call index, frame sequence: the first 7 of 160 bytes, rest 0xFF (μ-law silence)
MAGIC_FRAME, MAGIC_PROBE = 0xB5, 0xB6
FILL = b"\xff" * (FRAME_BYTES - TAG.size)
PAYLOAD_CHARS = 4 * math.ceil(FRAME_BYTES / 3)  # 216
TAG_CHARS = 12                                  # base64 of the first 9 bytes covers the 7-byte tag

try:  # websockets' C masking helper; a pure-Python fallback keeps the bench standalone
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    def apply_mask(data: bytes, mask: bytes) -> bytes:
        n = len(data)
        return (int.from_bytes(data, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")


# A quiet tag, for runs where the stand-in's voice activity detection hears the frames (bench/soak.py): the tag's
# bytes as nibbles in μ-law codes 0xF0-0xFF (amplitude at most 120, far under any speech threshold), so that a
# frame is silence unless its fill is loud. Its first byte, 0xF0 | magic >> 4, tells it from a plain tag.
QUIET_TAG_BYTES = 2 * TAG.size
QUIET_TAG_CHARS = 20                            # base64 of the first 15 bytes covers the 14-byte quiet tag
QUIET_FILL = b"\xff" * (FRAME_BYTES - QUIET_TAG_BYTES)
LOUD_FILL = b"\x10\x90" * ((FRAME_BYTES - QUIET_TAG_BYTES) // 2)  # a loud square wave: speech to a VAD


def frame_payload(magic: int, call: int, seq: int, *, quiet: bool = False, loud: bool = False) -> str:
    tag = TAG.pack(magic, call & 0xFFFF, seq)
    if not quiet:
        return base64.b64encode(tag + FILL).decode()
    nibbles = bytes(0xF0 | (b >> shift & 0x0F) for b in tag for shift in (4, 0))
    return base64.b64encode(nibbles + (LOUD_FILL if loud else QUIET_FILL)).decode()


def read_tag(payload: Any) -> tuple[int, int, int] | None:
    if not isinstance(payload, str) or len(payload) != PAYLOAD_CHARS:
        return None
    try:
        head = base64.b64decode(payload[:TAG_CHARS])
        if head[0] >> 4 != 0xF:
            return TAG.unpack_from(head)
        raw = base64.b64decode(payload[:QUIET_TAG_CHARS])
        return TAG.unpack(bytes((raw[i] & 0x0F) << 4 | raw[i + 1] & 0x0F for i in range(0, QUIET_TAG_BYTES, 2)))
    except (ValueError, struct.error):
        return None


async def http_request(url: str, *, body: bytes = b"", headers: dict[str, str] | None = None,
                       timeout: float = 15.0) -> tuple[int, str]:
    """One HTTP/1.1 request to loopback on the load generator's own event loop (POST when there is a body):
    a thread pool would queue the webhooks of a burst in the load generator itself and hide the server's delay."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "http" or parsed.hostname not in {"127.0.0.1", "localhost"}:
        raise RuntimeError(f"the load generator only speaks http:// to loopback, not {url}")
    port = parsed.port or 80
    path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    lines = [f"{'POST' if body else 'GET'} {path} HTTP/1.1", f"Host: {parsed.hostname}:{port}", "Connection: close"]
    lines += [f"Content-Length: {len(body)}"] if body else []
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            return await reader.read(-1)  # Connection: close, so the answer ends at EOF
        finally:
            writer.close()

    raw = await asyncio.wait_for(exchange(), timeout)
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ")
    if len(parts) < 2 or not parts[1].isdigit():
        raise RuntimeError(f"not an HTTP answer: {status_line[:80]!r}")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    if "chunked" in fields.get("transfer-encoding", ""):
        chunks, rest = [], payload
        for _ in range(10_000):
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            chunks.append(rest[:size])
            rest = rest[size + 2:]
        payload = b"".join(chunks)
    return int(parts[1]), payload.decode("utf-8", "replace")


class LeanWebSocket(asyncio.Protocol):
    """A small RFC 6455 client for the load generator, so that it costs far less per message than the servers
    it measures: text messages are handed to `on_text` synchronously from data_received, sends are plain
    transport writes. Frames are masked with a fresh random key each, as a browser or Twilio would."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    MAX_MESSAGE = 2**20

    def __init__(self, on_text: Any) -> None:
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future | None = None
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.error = ""
        self._key = ""
        self._buf = bytearray()
        self._handshaken = False
        self._fragments: list[bytes] = []
        self._close_sent = False
        self._batch: list[bytes] | None = None  # writes made while handling one read go out in one syscall

    @classmethod
    async def connect(cls, url: str, on_text: Any, headers: dict[str, str] | None = None,
                      timeout: float = 10.0) -> "LeanWebSocket":
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme != "ws" or parsed.hostname not in {"127.0.0.1", "localhost"}:
            raise RuntimeError(f"the load generator only speaks ws:// to loopback, not {url}")
        loop = asyncio.get_running_loop()
        ws = cls(on_text)
        ws.opened = loop.create_future()
        port = parsed.port or 80
        await asyncio.wait_for(loop.create_connection(lambda: ws, "127.0.0.1", port), timeout)
        ws._key = base64.b64encode(secrets.token_bytes(16)).decode()
        path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        lines = [f"GET {path} HTTP/1.1", f"Host: {parsed.hostname}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {ws._key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        ws.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            await asyncio.wait_for(asyncio.shield(ws.opened), timeout)
        except BaseException:
            ws.transport.abort()
            raise
        return ws

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.error:
            self.error = repr(exc)
        if self.opened is not None and not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake {self.error}".strip()))
        self.closed.set()

    def data_received(self, data: bytes) -> None:
        self._batch = []
        try:
            self._received(data)
        finally:
            batch, self._batch = self._batch, None
            if batch and self.transport is not None and not self.transport.is_closing():
                self.transport.write(b"".join(batch))

    def _received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self._fail("oversized handshake response")
                return
            head = bytes(buf[:end]).decode("latin-1")
            del buf[:end + 4]
            status, _, rest = head.partition("\r\n")
            fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in rest.split("\r\n"))}
            accept = base64.b64encode(hashlib.sha1((self._key + self.GUID).encode()).digest()).decode()
            if status.split(" ")[1:2] != ["101"] or fields.get("sec-websocket-accept") != accept:
                self._fail(f"handshake refused: {status}")
                return
            self._handshaken = True
            self.opened.set_result(True)
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            masked = b1 & 0x80
            if masked:
                head += 4
            if length > self.MAX_MESSAGE:
                self._fail("oversized frame")
                return
            if size - pos < head + length:
                break
            payload = bytes(buf[pos + head:pos + head + length])
            if masked:  # servers must not mask; tolerate it anyway
                payload = apply_mask(payload, bytes(buf[pos + head - 4:pos + head]))
            pos += head + length
            self._frame(b0 & 0x80, b0 & 0x0F, payload)
            if self.transport is None or self.transport.is_closing():
                break
        if pos:
            del buf[:pos]

    # -- frames --

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == 0x0 or (opcode in (0x1, 0x2) and not fin):  # fragmented message
            self._fragments.append(payload)
            if not fin:
                return
            payload, self._fragments = b"".join(self._fragments), []
            opcode = 0x1
        if opcode == 0x1:
            self.on_text(payload.decode("utf-8", "replace"))
        elif opcode == 0x2:
            self.on_text(None)
        elif opcode == 0x9:
            self._write(0xA, payload)
        elif opcode == 0x8:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_reason = payload[2:].decode("utf-8", "replace")
            if not self._close_sent:
                self._write(0x8, payload[:2])
                self._close_sent = True
            self.transport.close()

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError(f"socket closed (code {self.close_code})")
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
        mask = secrets.token_bytes(4)
        if self._batch is not None:
            self._batch.append(head + mask + apply_mask(payload, mask))
        else:
            self.transport.write(head + mask + apply_mask(payload, mask))

    def _fail(self, why: str) -> None:
        self.error = why
        if self.opened is not None and not self.opened.done():
            self.opened.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.abort()

    # -- API --

    def send(self, text: str) -> None:
        self._write(0x1, text.encode())

    async def close(self, timeout: float) -> None:
        if self.transport is None:
            return
        if not self._close_sent and not self.transport.is_closing():
            self._close_sent = True
            self._write(0x8, (1000).to_bytes(2, "big"))
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except asyncio.TimeoutError:
            self.transport.abort()
