"""Settings → Tools: the business's MCP servers (owners only). Every lookup is scoped to the current business,
so another business's server or tool is a 404."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.access import business_view, get_for_business
from calls.forms import McpServerForm
from calls.models import McpServer, McpTool
from calls.selectors.mcp_tools import mcp_servers_for_business
from calls.services import mcp_servers


def _said(request: HttpRequest, server: McpServer) -> None:
    if server.status == McpServer.Status.OK:
        messages.success(request, f"Connected to {server.name}: {server.tools.count()} tool(s) listed.")
    else:
        messages.error(request, f"{server.name} is not answering: {server.last_error}")


@business_view(owner_only=True)
def settings_tools(request: HttpRequest) -> HttpResponse:
    form = McpServerForm(request.POST or None, business=request.business)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        server = mcp_servers.mcp_server_create(business=request.business, name=data["name"], url=data["url"],
                                               auth_kind=data["auth_kind"], header_name=data["header_name"],
                                               secret=data["secret"])
        _said(request, server)
        return redirect("settings_tools")
    return render(request, "calls/settings_tools.html",
                  {"form": form, "servers": mcp_servers_for_business(business_id=request.business.id)})


@require_POST
@business_view(owner_only=True)
def mcp_server_refresh(request: HttpRequest, server_id: int) -> HttpResponse:
    server = mcp_servers.mcp_server_refresh(server=get_for_business(McpServer, request.business, pk=server_id))
    _said(request, server)
    return redirect("settings_tools")


@require_POST
@business_view(owner_only=True)
def mcp_server_delete(request: HttpRequest, server_id: int) -> HttpResponse:
    server = get_for_business(McpServer, request.business, pk=server_id)
    mcp_servers.mcp_server_delete(server=server)
    messages.success(request, f"Removed {server.name}.")
    return redirect("settings_tools")


@require_POST
@business_view(owner_only=True)
def mcp_tool_toggle(request: HttpRequest, tool_id: int) -> HttpResponse:
    tool = get_object_or_404(McpTool.objects.select_related("server"), pk=tool_id,
                             server__business=request.business)
    mcp_servers.mcp_tool_set_enabled(tool=tool, enabled=request.POST.get("enabled") == "on")
    return redirect("settings_tools")
