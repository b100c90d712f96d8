"""Reads of a business's MCP servers and tools: the settings page's list, and the enabled tools as the
function schemas the supervisor and GPT-Live's backend offer (from the database, one query, no network)."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from calls.models import McpServer, McpTool

SEPARATOR = "__"  # between the server's name and the tool's: server names never contain it


def mcp_servers_for_business(*, business_id: int) -> QuerySet[McpServer]:
    return McpServer.objects.filter(business_id=business_id).prefetch_related(
        Prefetch("tools", queryset=McpTool.objects.order_by("name")))


def mcp_server_ids() -> list[int]:
    """Every business's servers (the scheduled refresh)."""
    return list(McpServer.objects.order_by("id").values_list("id", flat=True))


def function_name(server_name: str, tool_name: str) -> str:
    return f"{server_name}{SEPARATOR}{tool_name}"


def is_mcp_function(name: str) -> bool:
    return SEPARATOR in name


def _parameters(schema: dict[str, Any]) -> dict[str, Any]:
    # The server's JSON schema as given; a tool without one (or not an object) takes an empty object.
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return {"type": "object", "properties": {}}
    return schema


def enabled_tool_schemas(*, business_id: int) -> list[dict[str, Any]]:
    """The business's enabled MCP tools in Chat Completions' function format, named `server__tool`."""
    rows = (McpTool.objects.filter(server__business_id=business_id, enabled=True)
            .order_by("server__name", "name").values_list("server__name", "name", "description", "input_schema"))
    return [{"type": "function", "function": {
        "name": function_name(server, tool), "description": description or f"{tool} (from {server})",
        "parameters": _parameters(schema)}} for server, tool, description, schema in rows]


def enabled_tool(*, business_id: int, function: str) -> McpTool | None:
    """The enabled tool a `server__tool` name stands for, of this business only; None otherwise."""
    server_name, _, tool_name = function.partition(SEPARATOR)
    return (McpTool.objects.select_related("server")
            .filter(server__business_id=business_id, server__name=server_name, name=tool_name, enabled=True).first())
