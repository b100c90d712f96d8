"""A call whose supervisor uses the business's own MCP server: daphne + a real Celery worker on Redis + the
OpenAI stand-in, and a real MCP server (the SDK's own) on loopback, connected the way the settings page does."""

from __future__ import annotations

import json

import pytest

from calls.models import CallEvent
from calls.services.mcp_servers import mcp_server_create
from calls.tests.mcp_server import start_server
from voice.offline.realtime import Script
from voice.tests.conftest import server_and_worker, start_asgi_server, stop_process
from voice.tests.test_call_e2e import finalized_call, simulate, upstream_record

pytestmark = pytest.mark.e2e

# The worker reaches the test's MCP server on 127.0.0.1 only because the operator setting allows it.
WORKER_ENV = {"MCP_ALLOWED_HOSTS": "127.0.0.1", "MCP_CALL_TIMEOUT_SECONDS": "1.5"}
ORDER_TURN = {"caller": "Where is my order A1?", "say": "One moment, let me check.",
              "tool": {"name": "ask_supervisor", "arguments": {"request": "Where is order A1?"}},
              "after_tool": "{output.answer}"}


@pytest.fixture
def orders(harbor, settings):
    settings.MCP_ALLOWED_HOSTS = frozenset({"127.0.0.1"})
    server = start_server(slow_seconds=30)
    mcp_server_create(business=harbor, name="orders", url=server.url)
    yield server
    server.stop()


@pytest.fixture
def stack(orders, standin, twilio_standin):
    with server_and_worker("daphne", standin=standin, twilio_standin=twilio_standin, extra_env=WORKER_ENV) as both:
        yield both


def call_using(stack, standin, tool: str, arguments: dict, answer: str) -> tuple:
    """One scripted call whose supervisor calls `tool`, then says `answer`: (the call, its one MCP step)."""
    server, worker = stack
    standin.script = Script.from_obj({"greeting": "Harbor Dental, how can I help?", "turns": [ORDER_TURN],
                                      "supervisor": [{"match": "order", "steps": [
                                          {"tool": tool, "arguments": arguments}, {"say": answer}]}]})
    report = simulate(server, utterances=1, reply_timeout_s=15)
    assert report.ok, (report.failures, server.log(), worker.log())
    call = finalized_call(report.call_sid)
    assert answer in [r["text"] for r in upstream_record(standin)["responses"]]  # the call went on
    assert call.status == "completed"
    [step] = [p for p in CallEvent.objects.filter(call=call, kind="supervisor").order_by("offset_ms", "order")
              .values_list("payload", flat=True) if p.get("step") == "tool" and p.get("server")]
    return call, step


def test_the_supervisor_calls_the_businesss_mcp_tool_and_the_server_knows_the_caller(stack, standin):
    call, step = call_using(stack, standin, "orders__lookup_order", {"order_id": "A1"},
                            "Your order shipped; it arrives Thursday.")
    assert (step["server"], step["tool"], step["arguments"]) == ("orders", "lookup_order", {"order_id": "A1"})
    assert step["duration_ms"] >= 0
    result = json.loads(step["result"]["result"])
    assert result["status"] == "shipped"
    assert result["told"] == {"receptionist/business_id": call.business_id, "receptionist/call_id": call.id,
                              "receptionist/caller_number": call.from_number}
    assert "orders__lookup_order" in standin.chat_requests[0]["tools"]


def test_a_tool_that_times_out_is_an_error_the_supervisor_speaks_around(stack, standin):
    _, step = call_using(stack, standin, "orders__slow_report", {"topic": "A1"},
                         "Sorry, I can't check orders right now.")
    assert "did not answer within 1.5 seconds" in step["result"]["error"]


def test_a_server_gone_during_the_call_is_an_error_and_the_call_goes_on(stack, orders, standin):
    orders.stop()  # listed and enabled, but no longer answering
    _, step = call_using(stack, standin, "orders__lookup_order", {"order_id": "A1"},
                         "Sorry, our order system is down.")
    assert "did not answer" in step["result"]["error"] and "offer to take a message" in step["result"]["error"]


@pytest.fixture
def live_engine_server(orders, harbor, standin, twilio_standin):
    harbor.voice_engine = "live"
    harbor.save(update_fields=["voice_engine"])
    server = start_asgi_server("uvicorn", standin=standin, twilio_standin=twilio_standin, extra_env=WORKER_ENV)
    yield server
    stop_process(server.process)


def test_gpt_lives_backend_calls_the_businesss_mcp_tool_through_our_tool_layer(live_engine_server, standin):
    answer = "Your order shipped; it arrives Thursday."
    standin.script = Script.from_obj({"greeting": "Harbor Dental, how can I help?", "turns": [ORDER_TURN],
                                      "supervisor": [{"match": "order", "steps": [
                                          {"tool": "orders__lookup_order", "arguments": {"order_id": "A1"}},
                                          {"say": answer}]}]})
    report = simulate(live_engine_server, utterances=1, reply_timeout_s=15)
    assert report.ok, (report.failures, live_engine_server.log())
    call = finalized_call(report.call_sid)
    [step] = [p for p in CallEvent.objects.filter(call=call, kind="supervisor").values_list("payload", flat=True)
              if p.get("step") == "tool"]
    assert step["name"] == "orders__lookup_order"
    told = json.loads(step["result"]["result"])["told"]
    assert told["receptionist/call_id"] == call.id and told["receptionist/caller_number"] == call.from_number
    [record] = [r for r in standin.sessions.values() if r.get("protocol") == "live"]
    [delegation] = [d for d in record["delegations"] if d["function_calls"]]
    # The stand-in calls only tools declared in session.start's backend tools: the MCP tool was among them.
    assert [c["name"] for c in delegation["function_calls"]] == ["orders__lookup_order"]
    assert not [w for w in record["warnings"] if "not among" in w]
