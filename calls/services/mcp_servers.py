"""A business's MCP servers: connect one, refresh its tool list, switch a tool on or off, remove one.

Refreshing talks to the server (through the address guard), so it never runs inside a transaction: the
listing is fetched first, then written in one short transaction.
"""

from __future__ import annotations

import json
import re

from django.db import transaction
from django.utils import timezone

from accounts.models import Business
from calls.mcp import client
from calls.mcp.secrets import UnreadableSecret, decrypt_secret, encrypt_secret
from calls.models import McpServer, McpTool


# What an OpenAI function name allows, with the server's name and "__" in front (64 characters in all).
_TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
FUNCTION_NAME_MAX = 64
# Every enabled tool's schema goes to the model on every supervisor step: a server cannot make that arbitrarily big.
SCHEMA_MAX_CHARS = 8000


def endpoint_of(server: McpServer) -> client.Endpoint:
    """The server's URL and its auth header, decrypted just for this exchange."""
    if server.auth_kind == McpServer.AuthKind.NONE or not server.secret_encrypted:
        return client.Endpoint(url=server.url)
    secret = decrypt_secret(server.secret_encrypted)
    if server.auth_kind == McpServer.AuthKind.BEARER:
        return client.Endpoint(url=server.url, headers={"Authorization": f"Bearer {secret}"})
    return client.Endpoint(url=server.url, headers={server.header_name: secret})


def mcp_server_create(*, business: Business, name: str, url: str, auth_kind: str = McpServer.AuthKind.NONE,
                      header_name: str = "", secret: str = "") -> McpServer:
    """Save a server (its secret encrypted) and list its tools at once; a server that does not answer is kept,
    marked unreachable, with the reason."""
    server = McpServer.objects.create(
        business=business, name=name, url=url, auth_kind=auth_kind,
        header_name=header_name if auth_kind == McpServer.AuthKind.HEADER else "",
        secret_encrypted=encrypt_secret(secret) if secret and auth_kind != McpServer.AuthKind.NONE else "")
    return mcp_server_refresh(server=server)


def mcp_server_refresh(*, server: McpServer) -> McpServer:
    """List the server's tools again: new tools come in switched on, tools it no longer lists go, the owner's
    on/off choice of the others stays. A server that does not answer keeps its last list, marked unreachable."""
    try:
        listed = client.list_tools(endpoint_of(server))
    except (client.McpUnavailable, UnreadableSecret) as exc:
        McpServer.objects.filter(id=server.id).update(status=McpServer.Status.UNREACHABLE, last_error=str(exc)[:500],
                                                      checked_at=timezone.now())
        server.refresh_from_db()
        return server
    usable = [t for t in listed if _TOOL_NAME_RE.match(t.name)
              and len(server.name) + 2 + len(t.name) <= FUNCTION_NAME_MAX
              and len(json.dumps(t.input_schema)) <= SCHEMA_MAX_CHARS]
    skipped = len(listed) - len(usable)
    note = (f"{skipped} tool(s) not offered: a name that is not usable as a function name (letters, digits, _ "
            f"and - only, at most {FUNCTION_NAME_MAX - len(server.name) - 2} characters) or a schema over "
            f"{SCHEMA_MAX_CHARS} characters." if skipped else "")
    with transaction.atomic():
        locked = McpServer.objects.select_for_update().filter(id=server.id).first()
        if locked is None:  # removed while we were listing
            return server
        McpTool.objects.filter(server=locked).exclude(name__in=[t.name for t in usable]).delete()
        for tool in usable:
            McpTool.objects.update_or_create(server=locked, name=tool.name, defaults={
                "description": tool.description[:2000], "input_schema": tool.input_schema})
        McpServer.objects.filter(id=locked.id).update(status=McpServer.Status.OK, last_error=note,
                                                      checked_at=timezone.now())
    server.refresh_from_db()
    return server


def mcp_tool_set_enabled(*, tool: McpTool, enabled: bool) -> McpTool:
    McpTool.objects.filter(id=tool.id).update(enabled=enabled)
    tool.enabled = enabled
    return tool


def mcp_server_delete(*, server: McpServer) -> None:
    server.delete()
