"""Running one of a business's MCP tools for the supervisor (or GPT-Live's backend), as a tool output.

Which server is called, with which URL and headers, is the business's (looked up by the `server__tool` name
among its own enabled tools); the model chooses only the arguments, and those are untrusted. Who is calling
goes to the server in the request's `_meta`, from the Call row: the business can rely on it, the model cannot
change it. Every failure (unknown or switched-off tool, a server that is down or slow, an error the tool
reports) comes back as {"error": ...} the model can speak around.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from calls.mcp import client
from calls.mcp.secrets import UnreadableSecret
from calls.models import Call
from calls.selectors.callers import caller_number_of_call
from calls.selectors.mcp_tools import enabled_tool
from calls.services.mcp_servers import endpoint_of

log = logging.getLogger(__name__)

META_PREFIX = "receptionist/"
UNAVAILABLE_HINT = ("Apologise, tell the caller it could not be checked just now, and offer to take a message so "
                    "someone can call back.")


def call_meta(*, business_id: int, call: Call | None) -> dict[str, Any]:
    """What the server is told about who is calling (never chosen by the model): the business, and the call and
    its caller's own number when there is a call of this business ("" when the number is withheld)."""
    meta: dict[str, Any] = {f"{META_PREFIX}business_id": business_id,
                            f"{META_PREFIX}caller_number": caller_number_of_call(call) if call else ""}
    if call is not None:
        meta[f"{META_PREFIX}call_id"] = call.id
    return meta


def run_mcp_tool(*, business_id: int, call_id: int | None, function: str, arguments: dict[str, Any],
                 wait_at_most: float | None = None) -> dict[str, Any]:
    """Call `server__tool` of this business with the model's arguments (parsed: `calls.tools.arguments_object`);
    never raises."""
    tool = enabled_tool(business_id=business_id, function=function)
    if tool is None:
        return {"error": f"There is no tool called “{function}” (or the business switched it off). Do not call it "
                         "again; " + UNAVAILABLE_HINT}
    call = Call.objects.filter(id=call_id, business_id=business_id).first() if call_id is not None else None
    server = tool.server
    try:
        answer = client.call_tool(endpoint_of(server), name=tool.name, arguments=arguments,
                                  meta=call_meta(business_id=business_id, call=call),
                                  timeout=min(settings.MCP_CALL_TIMEOUT_SECONDS, wait_at_most or float("inf")))
    except (client.McpUnavailable, UnreadableSecret) as exc:
        log.warning("MCP tool %s of business %s: %s", function, business_id, exc)
        return {"error": f"The business's “{server.name}” system did not answer: {exc} {UNAVAILABLE_HINT}"}
    if answer.is_error:
        return {"error": f"The {function} tool reported an error: {answer.text[:500]} {UNAVAILABLE_HINT}"}
    result: dict[str, Any] = {"result": answer.text}
    if answer.truncated:
        result["truncated"] = True
    return result
