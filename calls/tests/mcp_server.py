"""A real MCP server for the tests, built with the same SDK the product uses, served on loopback.

Its tools: `lookup_order` answers (and echoes the `_meta` the product sent, so tests can check who the server
was told is calling), `slow_report` takes longer than any test's timeout, `broken` raises, `long_list` returns as much text as asked.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver import Context


def build_server(*, slow_seconds: float = 30.0) -> MCPServer:
    server = MCPServer("Test orders")

    @server.tool()
    def lookup_order(order_id: str, ctx: Context) -> dict[str, Any]:
        """Look up an order by its number: status and delivery date."""
        meta = ctx.request_context.meta
        told = {k: v for k, v in dict(meta or {}).items() if k.startswith("receptionist/")}
        headers = ctx.headers or {}
        return {"order_id": order_id, "status": "shipped", "delivery": "Thursday", "told": told,
                "authorization": headers.get("authorization", ""), "x_api_key": headers.get("x-api-key", "")}

    @server.tool()
    def long_list(count: int) -> str:
        """Many lines of text."""
        return "\n".join(f"line {n}" for n in range(count))

    @server.tool()
    async def slow_report(topic: str) -> str:
        """A report that takes a long time."""
        await asyncio.sleep(slow_seconds)
        return f"report on {topic}"

    @server.tool()
    def broken() -> str:
        """Always fails."""
        raise RuntimeError("the order database is down")

    return server


@dataclass
class RunningServer:
    url: str
    port: int
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def start_server(*, slow_seconds: float = 30.0, port: int = 0) -> RunningServer:
    """The server on 127.0.0.1 in a thread of this process, answering once this returns."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    app = build_server(slow_seconds=slow_seconds).streamable_http_app(host="127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="mcp-test-server")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("The test MCP server did not start.")
        time.sleep(0.02)
    return RunningServer(url=f"http://127.0.0.1:{port}/mcp", port=port, _server=server, _thread=thread)
