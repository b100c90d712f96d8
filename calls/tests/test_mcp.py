"""A business's own tools over MCP: connected through the settings page to a real MCP server (the SDK's own
server, on loopback), listed, switched on and off, called as supervisor tools, behind the address guard."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from calls.mcp.secrets import encrypt_secret
from calls.models import McpServer, McpTool
from calls.services import mcp_servers
from calls.tasks import refresh_mcp_server
from calls.tests.mcp_server import start_server
from calls.tools import SUPERVISOR_TOOLS, run_business_tool, supervisor_tools
from tests.factories import make_business, make_call

TOKEN = "sk-live-4f9c2a7e1b8d"


@pytest.fixture(scope="module")
def orders():
    server = start_server(slow_seconds=30)
    yield server
    server.stop()


@pytest.fixture
def loopback_allowed(settings):
    # Tests reach the server on 127.0.0.1, which the guard refuses unless the operator allows it.
    settings.MCP_ALLOWED_HOSTS = frozenset({"127.0.0.1"})
    settings.MCP_CALL_TIMEOUT_SECONDS = 2.0


def connect(client, url: str, **fields):
    return client.post("/settings/tools/", {"name": "orders", "url": url, "auth_kind": "none", **fields})


def connected(business, url: str, **fields) -> McpServer:
    return mcp_servers.mcp_server_create(business=business, name="orders", url=url, **fields)


def test_it_connects_a_server_and_lists_its_tools(client, alice, alices_business, orders, loopback_allowed):
    client.force_login(alice)
    response = connect(client, orders.url)
    assert response.status_code == 302
    server = McpServer.objects.get(business=alices_business)
    assert server.status == McpServer.Status.OK
    assert sorted(server.tools.values_list("name", flat=True)) == ["broken", "long_list", "lookup_order",
                                                                   "slow_report"]
    page = client.get("/settings/tools/").content.decode()
    assert "orders__lookup_order" in page
    assert "Look up an order by its number" in page


def test_it_switches_a_tool_off_and_on(client, alice, alices_business, orders, loopback_allowed):
    tool = connected(alices_business, orders.url).tools.get(name="lookup_order")
    client.force_login(alice)
    client.post(f"/settings/tools/tool/{tool.id}/")
    assert not McpTool.objects.get(id=tool.id).enabled
    client.post(f"/settings/tools/tool/{tool.id}/", {"enabled": "on"})
    assert McpTool.objects.get(id=tool.id).enabled


def test_another_businesss_server_and_tools_are_a_404(client, charlie, alices_business, orders, loopback_allowed):
    server = connected(alices_business, orders.url)
    tool = server.tools.first()
    client.force_login(charlie)
    assert client.post(f"/settings/tools/{server.id}/refresh/").status_code == 404
    assert client.post(f"/settings/tools/{server.id}/delete/").status_code == 404
    assert client.post(f"/settings/tools/tool/{tool.id}/").status_code == 404
    assert McpTool.objects.get(id=tool.id).enabled
    assert orders.url not in client.get("/settings/tools/").content.decode()


def test_staff_cannot_manage_tools(client, bob):
    client.force_login(bob)
    assert client.get("/settings/tools/").status_code == 403


def test_the_guard_refuses_loopback_unless_the_operator_allows_it(client, alice, alices_business, orders, settings):
    settings.MCP_ALLOWED_HOSTS = frozenset()
    client.force_login(alice)
    response = connect(client, orders.url)
    assert response.status_code == 200
    assert "private or local" in response.content.decode()
    assert not McpServer.objects.exists()


def test_the_guard_refuses_a_private_address(client, alice, alices_business, loopback_allowed):
    client.force_login(alice)
    response = connect(client, "https://10.1.2.3/mcp")
    assert "private or local" in response.content.decode()
    assert not McpServer.objects.exists()


def test_the_guard_holds_when_connecting_not_only_when_saving(alices_business, orders, loopback_allowed, settings):
    server = connected(alices_business, orders.url)
    settings.MCP_ALLOWED_HOSTS = frozenset()  # as if the name now resolved somewhere the guard refuses
    server = mcp_servers.mcp_server_refresh(server=server)
    assert server.status == McpServer.Status.UNREACHABLE
    assert "private or reserved address" in server.last_error
    call = make_call(alices_business)
    output = run_business_tool(business_id=alices_business.id, call_id=call.id, name="orders__lookup_order",
                               arguments={"order_id": "A1"})
    assert "private or reserved address" in output["error"]


def test_the_token_is_encrypted_at_rest_sent_to_the_server_and_never_shown(client, alice, alices_business, orders,
                                                                          loopback_allowed):
    client.force_login(alice)
    connect(client, orders.url, auth_kind="bearer", secret=TOKEN)
    server = McpServer.objects.get(business=alices_business)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM calls_mcpserver WHERE id = %s", [server.id])
        assert TOKEN not in repr(cursor.fetchall())
    assert TOKEN not in client.get("/settings/tools/").content.decode()
    call = make_call(alices_business)
    output = run_business_tool(business_id=alices_business.id, call_id=call.id, name="orders__lookup_order",
                               arguments={"order_id": "A1"})
    assert json.loads(output["result"])["authorization"] == f"Bearer {TOKEN}"


def test_a_custom_header_carries_the_token(alices_business, orders, loopback_allowed):
    connected(alices_business, orders.url, auth_kind="header", header_name="X-Api-Key", secret=TOKEN)
    output = run_business_tool(business_id=alices_business.id, call_id=None, name="orders__lookup_order",
                               arguments={"order_id": "A1"})
    assert json.loads(output["result"])["x_api_key"] == TOKEN


def test_the_supervisor_is_offered_the_enabled_tools_with_the_servers_schema(alices_business, orders,
                                                                            loopback_allowed):
    server = connected(alices_business, orders.url)
    server.tools.filter(name="broken").update(enabled=False)
    offered = {t["function"]["name"]: t["function"] for t in supervisor_tools(business_id=alices_business.id)}
    assert set(offered) - {t["function"]["name"] for t in SUPERVISOR_TOOLS} == {
        "orders__lookup_order", "orders__slow_report", "orders__long_list"}
    assert offered["orders__lookup_order"]["parameters"]["properties"]["order_id"]["type"] == "string"


def test_a_tool_call_tells_the_server_who_is_calling_from_the_call_row(alices_business, orders, loopback_allowed):
    connected(alices_business, orders.url)
    call = make_call(alices_business, from_number="+14155550123")
    output = run_business_tool(business_id=alices_business.id, call_id=call.id, name="orders__lookup_order",
                               arguments=json.dumps({"order_id": "A1", "_meta": {"receptionist/caller_number": "x"}}))
    result = json.loads(output["result"])
    assert result["status"] == "shipped"
    assert result["told"] == {"receptionist/business_id": alices_business.id, "receptionist/call_id": call.id,
                              "receptionist/caller_number": "+14155550123"}


def test_another_businesss_call_gives_no_caller(alices_business, charlie, orders, loopback_allowed):
    connected(alices_business, orders.url)
    other_call = make_call(charlie.memberships.first().business, from_number="+14155550199")
    output = run_business_tool(business_id=alices_business.id, call_id=other_call.id, name="orders__lookup_order",
                               arguments={"order_id": "A1"})
    told = json.loads(output["result"])["told"]
    assert "receptionist/call_id" not in told and told["receptionist/caller_number"] == ""


def test_a_switched_off_tool_does_not_run(alices_business, orders, loopback_allowed):
    connected(alices_business, orders.url).tools.filter(name="lookup_order").update(enabled=False)
    output = run_business_tool(business_id=alices_business.id, call_id=None, name="orders__lookup_order",
                               arguments={"order_id": "A1"})
    assert "switched it off" in output["error"]


def test_another_businesss_tool_does_not_run(alices_business, orders, loopback_allowed):
    connected(alices_business, orders.url)
    other = make_business(name="Other")
    output = run_business_tool(business_id=other.id, call_id=None, name="orders__lookup_order",
                               arguments={"order_id": "A1"})
    assert "There is no tool" in output["error"]


def test_a_failing_tool_is_an_error_the_model_can_speak_around(alices_business, orders, loopback_allowed):
    connected(alices_business, orders.url)
    output = run_business_tool(business_id=alices_business.id, call_id=None, name="orders__broken", arguments={})
    assert output["error"].startswith("The orders__broken tool reported an error")
    assert "offer to take a message" in output["error"]


def test_a_slow_tool_times_out_as_an_error(alices_business, orders, loopback_allowed, settings):
    connected(alices_business, orders.url)
    settings.MCP_CALL_TIMEOUT_SECONDS = 0.5
    output = run_business_tool(business_id=alices_business.id, call_id=None, name="orders__slow_report",
                               arguments={"topic": "sales"})
    assert "did not answer within 0.5 seconds" in output["error"]


def test_a_long_result_is_capped(alices_business, orders, loopback_allowed, settings):
    connected(alices_business, orders.url)
    settings.MCP_RESULT_MAX_CHARS = 100
    output = run_business_tool(business_id=alices_business.id, call_id=None, name="orders__long_list",
                               arguments={"count": 500})
    assert len(output["result"]) == 100 and output["truncated"] is True


def test_a_server_that_went_away_is_an_error_and_the_schedule_marks_it(alices_business, loopback_allowed):
    gone = start_server()
    server = connected(alices_business, gone.url)
    gone.stop()
    output = run_business_tool(business_id=alices_business.id, call_id=None, name="orders__lookup_order",
                               arguments={"order_id": "A1"})
    assert "did not answer" in output["error"] and "offer to take a message" in output["error"]
    refresh_mcp_server(server.id)  # what celery beat queues for each server
    server.refresh_from_db()
    assert server.status == McpServer.Status.UNREACHABLE
    assert server.tools.count() == 4  # the last list is kept, for when it comes back


def test_a_server_name_with_a_double_underscore_is_refused_by_the_database(alices_business):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        McpServer.objects.create(business=alices_business, name="my__server", url="https://example.com/mcp")


def test_arguments_that_are_not_json_are_an_error_without_calling_the_server(alices_business):
    McpTool.objects.create(server=McpServer.objects.create(business=alices_business, name="orders",
                                                           url="https://tools.example.com/mcp"), name="lookup_order")
    output = run_business_tool(business_id=alices_business.id, call_id=None, name="orders__lookup_order",
                               arguments="{not json")
    assert "not valid JSON" in output["error"]


def test_the_timeline_says_which_system_was_asked_and_what_it_answered(alices_business):
    from calls.selectors.timeline_words import tool_in_words

    assert tool_in_words("orders__lookup_order", {"order_id": "A1"}, {"result": "shipped"},
                         alices_business) == "Used lookup_order of orders: shipped"
    assert tool_in_words("orders__lookup_order", {}, {"error": "It timed out."},
                         alices_business) == "Could not use lookup_order of orders: It timed out."


def test_a_public_server_must_use_https(client, alice, alices_business, loopback_allowed):
    client.force_login(alice)
    response = connect(client, "http://93.184.215.14/mcp", auth_kind="bearer", secret=TOKEN)
    assert "Use an https:// address." in response.content.decode()
    assert not McpServer.objects.exists()


def test_the_admin_shows_a_server_without_its_token(admin_client, alices_business):
    server = McpServer.objects.create(business=alices_business, name="orders", url="https://tools.example.com/mcp",
                                      auth_kind="bearer", secret_encrypted=encrypt_secret(TOKEN))
    page = admin_client.get(f"/admin/calls/mcpserver/{server.id}/change/").content.decode()
    assert "https://tools.example.com/mcp" in page
    assert TOKEN not in page and server.secret_encrypted not in page
