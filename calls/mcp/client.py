"""Talking to a business's MCP server with the official SDK, behind the outbound address guard.

The URL and its headers are the business's (never the model's). Every HTTP request the SDK makes goes through
`_GuardedTransport`: the host is resolved and checked right then (DNS can change after the form was saved) and
the request is sent to the address checked, with the host name kept for the Host header and TLS; a redirect is
never followed. The whole exchange (connect, handshake, request, answer) runs under one timeout.

These functions are synchronous (the supervisor runs in a Celery worker, the settings page in a request): each
runs its exchange on an event loop of its own in the calling thread. Never call them on the audio path's loop.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import httpx2
from django.conf import settings
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from calls.postcall.address_guard import BlockedAddress, resolve_guarded_target
from calls.postcall.queueing import TransientError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # the decrypted token: never in a repr or log


@dataclass(frozen=True)
class ListedTool:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolAnswer:
    text: str        # the result's text (or its structured content as JSON), capped
    is_error: bool   # the tool itself reported an error
    truncated: bool


class McpUnavailable(Exception):
    """The server could not be reached, refused us, or did not answer in time; the message is a sentence for the
    owner's page and the call's timeline (never carrying the token)."""


class _GuardedTransport(httpx2.AsyncBaseTransport):
    def __init__(self) -> None:
        # trust_env off: no proxy from the environment between us and the address we checked.
        self._inner = httpx2.AsyncHTTPTransport(trust_env=False)
        self.refused: str = ""  # why the guard stopped a request, for the error the caller of the exchange sees

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = str(request.url)
        try:
            scheme, host, _port, address = await anyio.to_thread.run_sync(partial(
                resolve_guarded_target, url, timeout=settings.MCP_CALL_TIMEOUT_SECONDS,
                allowed_hosts=settings.MCP_ALLOWED_HOSTS))
        except (BlockedAddress, TransientError) as exc:
            self.refused = str(exc)
            raise
        # To the address checked, not a second lookup; the Host header already names the host, and TLS checks
        # the certificate against it.
        request.url = request.url.copy_with(host=address)
        if scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        response = await self._inner.handle_async_request(request)
        if 300 <= response.status_code < 400:
            await response.aclose()
            self.refused = f"The server answered with a redirect ({response.status_code}); redirects are not followed."
            raise BlockedAddress(self.refused)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _describe(exc: BaseException, transport: _GuardedTransport, timeout: float) -> str:
    if transport.refused:
        return transport.refused
    if isinstance(exc, TimeoutError):
        return f"The server did not answer within {timeout:.3g} seconds."
    if isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
        while isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
    # The class and message of a network or protocol error; requests carry the token in headers, never in these.
    return f"The server could not be reached or did not speak MCP ({exc.__class__.__name__}: {str(exc)[:200]})."


async def _exchange(endpoint: Endpoint, work: Any, timeout: float) -> Any:
    transport = _GuardedTransport()
    http = httpx2.AsyncClient(transport=transport, headers=endpoint.headers, trust_env=False,
                              timeout=httpx2.Timeout(timeout))
    try:
        with anyio.fail_after(timeout):
            async with http, Client(streamable_http_client(endpoint.url, http_client=http),
                                    read_timeout_seconds=timeout) as client:
                return await work(client)
    except Exception as exc:
        raise McpUnavailable(_describe(exc, transport, timeout)) from None


def list_tools(endpoint: Endpoint, *, timeout: float | None = None) -> list[ListedTool]:
    """Every tool the server lists (all pages), at most MCP_MAX_TOOLS_PER_SERVER."""
    limit = settings.MCP_MAX_TOOLS_PER_SERVER

    async def work(client: Client) -> list[ListedTool]:
        tools: list[ListedTool] = []
        cursor: str | None = None
        while len(tools) < limit:
            page = await client.list_tools(cursor=cursor)
            tools += [ListedTool(name=t.name, description=t.description or "", input_schema=dict(t.input_schema))
                      for t in page.tools]
            cursor = page.next_cursor
            if not cursor:
                break
        return tools[:limit]

    return anyio.run(_exchange, endpoint, work, timeout or settings.MCP_CALL_TIMEOUT_SECONDS)


def _result_text(result: Any) -> str:
    if result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False, default=str)
    parts = []
    for block in result.content:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', 'content')} not shown]")
    return "\n".join(parts)


def call_tool(endpoint: Endpoint, *, name: str, arguments: dict[str, Any], meta: dict[str, Any],
              timeout: float | None = None) -> ToolAnswer:
    """Call one tool; `meta` goes in the request's `_meta` (who is calling, from the Call row)."""
    limit = settings.MCP_RESULT_MAX_CHARS

    async def work(client: Client) -> ToolAnswer:
        result = await client.call_tool(name, arguments, meta=meta)
        text = _result_text(result)
        return ToolAnswer(text=text[:limit], is_error=bool(result.is_error), truncated=len(text) > limit)

    return anyio.run(_exchange, endpoint, work, timeout or settings.MCP_CALL_TIMEOUT_SECONDS)
