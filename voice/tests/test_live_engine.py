"""The GPT-Live engine's parts that need no socket: what it sends at session.start (checked against the official
SDK's Live types), the history a resumed session gets, the backend's tools, the engine each business gets, and what
a Live call costs. The engine on the wire is tested end to end in voice/tests/test_live_e2e.py."""

from decimal import Decimal

import pytest
from django.urls import reverse
from openai.types.live.session_start_event import SessionStartEvent
from pydantic import BaseModel

from calls.models import Call, McpServer, McpTool
from calls.services.lifecycle import Usage, call_finalize
from calls.tools import SUPERVISOR_TOOLS
from tests.factories import make_call
from voice.agent import BROWSER_AUDIO, PHONE_AUDIO, load_agent_profile
from voice.session.live import SEED_MESSAGES, backend_tools, history_input, live_session_config
from voice.supervisor import LIVE_BACKEND_RULES


@pytest.fixture
def owner_client(client, alice, alices_business):
    client.force_login(alice)
    return client


def unknown_fields(model: BaseModel, path: str = "") -> list[str]:
    """Fields the SDK's model does not declare, at any depth (GPT-Live refuses them with unknown_parameter)."""
    found = [f"{path}{name}" for name in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, BaseModel):
                found += unknown_fields(child, f"{path}{name}.")
    return found


def live_profile(business, caller="+14155550123"):
    business.voice_engine = "live"
    business.save(update_fields=["voice_engine"])
    return load_agent_profile(business.id, caller)


@pytest.mark.parametrize("audio, expected", [(PHONE_AUDIO, {"type": "audio/pcmu", "rate": 8000}),
                                             (BROWSER_AUDIO, {"type": "audio/pcm", "rate": 24000})])
def test_session_start_is_a_valid_live_event_with_the_transport_format(alices_business, audio, expected):
    profile = live_profile(alices_business)
    event = {"type": "session.start", "event_id": "start_1", "session": live_session_config(profile, audio)}
    parsed = SessionStartEvent.model_validate(event)
    assert unknown_fields(parsed) == []
    assert event["session"]["audio"]["format"] == expected
    assert event["session"]["audio"]["output"] == {"voice": alices_business.voice}


def test_the_delegation_backend_gets_the_supervisors_instructions_model_and_our_tools(alices_business, settings):
    settings.OPENAI_DELEGATION_MODEL = "gpt-5.6-terra"
    profile = live_profile(alices_business)
    responses = live_session_config(profile, PHONE_AUDIO)["delegation"]["responses"]
    assert responses["model"] == "gpt-5.6-terra"
    assert LIVE_BACKEND_RULES in responses["instructions"] and "+14155550123" in responses["instructions"]
    assert responses["parallel_tool_calls"] is False
    names = [tool["name"] for tool in responses["tools"]]
    assert names == [t["function"]["name"] for t in SUPERVISOR_TOOLS] + ["end_call", "transfer_to_human"]


def test_the_delegation_backend_gets_the_enabled_mcp_tools_of_the_business(alices_business):
    # The list is the database's (refreshed by the schedule or the owner), read with the call's profile.
    server = McpServer.objects.create(business=alices_business, name="orders", url="https://tools.example.com/mcp",
                                      status=McpServer.Status.OK)
    schema = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
    McpTool.objects.create(server=server, name="lookup_order", description="Find an order.", input_schema=schema)
    McpTool.objects.create(server=server, name="refund", description="Refund an order.", enabled=False)
    tools = live_session_config(live_profile(alices_business), PHONE_AUDIO)["delegation"]["responses"]["tools"]
    offered = {tool["name"]: tool for tool in tools}
    assert "orders__refund" not in offered
    assert offered["orders__lookup_order"] == {"type": "function", "name": "orders__lookup_order",
                                               "description": "Find an order.", "parameters": schema}


def test_the_voice_model_is_told_to_delegate_and_has_no_tools_of_its_own(alices_business):
    session = live_session_config(live_profile(alices_business), PHONE_AUDIO)
    assert "Delegation policy" in session["instructions"] and "ask_supervisor" not in session["instructions"]
    assert "tools" not in session and "turn_detection" not in str(session)


def test_backend_tools_are_responses_functions():
    for tool in backend_tools():
        assert set(tool) == {"type", "name", "description", "parameters"} and tool["type"] == "function"
        assert tool["parameters"]["type"] == "object"


def test_a_business_without_a_choice_gets_the_operators_engine(alices_business, settings):
    settings.VOICE_ENGINE = "live"
    assert load_agent_profile(alices_business.id).engine == "live"
    settings.VOICE_ENGINE = "realtime"
    assert load_agent_profile(alices_business.id).engine == "realtime"


def test_the_owners_choice_wins_over_the_operators_default(alices_business, settings):
    settings.VOICE_ENGINE = "live"
    alices_business.voice_engine = "realtime"
    alices_business.save(update_fields=["voice_engine"])
    profile = load_agent_profile(alices_business.id)
    assert profile.engine == "realtime" and profile.backend_instructions == ""


def test_a_resumed_session_gets_the_latest_turns_as_history_within_the_limits():
    conversation = [{"speaker": "caller" if i % 2 else "agent", "text": f"turn {i}"} for i in range(300)]
    items = history_input(conversation)
    assert len(items) == SEED_MESSAGES + 1
    assert items[0]["role"] == "developer" and "do not greet" in items[0]["content"][0]["text"]
    assert items[-1]["content"][0]["text"] == "turn 299" and items[-1]["role"] == "user"
    assert items[-2] == {"type": "message", "role": "assistant",
                         "content": [{"type": "output_text", "text": "turn 298"}]}


def test_history_stops_at_the_size_budget_rather_than_cutting_the_latest_turns():
    conversation = [{"speaker": "caller", "text": "x" * 2000} for _ in range(40)]
    items = history_input(conversation)
    assert 1 < len(items) < 20
    assert sum(len(item["content"][0]["text"]) for item in items[1:]) <= 24_000


def test_a_live_call_costs_its_active_seconds_plus_the_backends_tokens(alices_business, settings):
    settings.OPENAI_DELEGATION_MODEL = "gpt-4.1-mini"
    call = make_call(alices_business, status="in_progress")
    usage = Usage(voice_seconds=180.0)
    usage.add_backend_usage({"input_tokens": 10_000, "input_tokens_details": {"cached_tokens": 4_000},
                             "output_tokens": 500})
    call_finalize(call_id=call.id, status="completed", end_reason="agent_ended", usage=usage,
                  model="gpt-live-1.1", engine="live")
    call.refresh_from_db()
    backend = Decimal("0.003600")  # 6,000 x 0.40 + 4,000 x 0.10 + 500 x 1.60, per million
    assert call.engine == "live" and call.voice_seconds == Decimal("180.00")
    assert call.supervisor_input_tokens == 10_000 and call.supervisor_output_tokens == 500
    assert call.supervisor_cost_usd == backend
    assert call.cost_usd == Decimal("0.150000") + backend  # 3 minutes at $0.05


def test_the_call_page_labels_the_engine_and_splits_voice_and_backend(owner_client, alices_business):
    call = make_call(alices_business, status="completed", engine="live", model="gpt-live-1.1",
                     voice_seconds=Decimal("93.5"), supervisor_input_tokens=1200, supervisor_output_tokens=80,
                     supervisor_cost_usd=Decimal("0.004"), cost_usd=Decimal("0.081917"))
    html = owner_client.get(reverse("call_detail", kwargs={"call_id": call.id})).content.decode()
    assert "GPT-Live" in html and "93.5 s active" in html
    assert "Backend" in html and "1200 in / 80 out" in html
    assert "$0.0779" in html and "$0.0040" in html


def test_a_realtime_call_page_keeps_its_token_split(owner_client, alices_business):
    call = make_call(alices_business, status="completed", engine="realtime", model="gpt-realtime-2.1")
    html = owner_client.get(reverse("call_detail", kwargs={"call_id": call.id})).content.decode()
    assert "Realtime voice" in html and "Supervisor" in html and "s active" not in html


def test_the_profile_form_offers_the_engine_with_the_servers_default(owner_client, settings):
    settings.VOICE_ENGINE = "live"
    html = owner_client.get(reverse("settings_profile")).content.decode()
    assert "The server&#x27;s default (OpenAI GPT-Live (full duplex))" in html or \
        "The server's default (OpenAI GPT-Live (full duplex))" in html


def test_the_database_refuses_an_unknown_engine(alices_business):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Call.objects.filter(id=make_call(alices_business).id).update(engine="bogus")



# --- the engine's event handling, on a session with a recorded socket ------------------------------------------


def live_session(harbor):
    from voice.session.call import CallSession
    from voice.tests.test_metrics_sites import STREAM_SID, Sent, Upstream
    from voice.transports import TwilioTransport

    session = CallSession(call_id=1, business_id=harbor.id, transport=TwilioTransport(Sent(), STREAM_SID, "CA" + "e" * 32),
                          profile=live_profile(harbor))
    session.use_engine("live")
    session.upstream = session.reading_upstream = Upstream()
    return session


def test_an_error_that_does_not_close_the_session_does_not_end_the_call(alices_business):
    import asyncio

    session = live_session(alices_business)
    asyncio.run(session.engine.handler("error")({"type": "error", "event_id": "e1", "error": {
        "type": "invalid_request_error", "code": "function_call_outputs_required", "message": "Answer first."}}))
    assert not session._finishing and not session.finished.is_set()
    [error] = [e for e in session.record.events if e["kind"] == "error"]
    assert error["payload"]["code"] == "function_call_outputs_required"


def test_caller_fragments_are_one_turn_until_a_pause_and_the_agents_answer_is_its_own_utterance(alices_business):
    import asyncio

    session = live_session(alices_business)
    engine = session.engine

    async def talk() -> None:
        on_input, on_output = engine.handler("session.input_transcript.delta"), engine.handler("session.output_transcript.delta")
        await on_input({"delta": "Can I ", "start_ms": 1000, "end_ms": 1300})
        await on_input({"delta": "book a cleaning?", "start_ms": 1300, "end_ms": 2600})
        await on_output({"delta": "One moment, ", "start_ms": 3000, "end_ms": 3500})
        await on_output({"delta": "let me check.", "start_ms": 3500, "end_ms": 4200})
        await engine.handler("response.event")({"event": {"type": "response.output_item.done", "item": {
            "type": "message", "content": [{"type": "output_text", "text": "Tomorrow at eight is free."}]}}})
        await on_output({"delta": "Tomorrow at eight is free.", "start_ms": 4200, "end_ms": 5600})
        await on_input({"delta": "Great.", "start_ms": 9000, "end_ms": 9500})
        engine._close_turns()

    asyncio.run(talk())
    assert [(t["speaker"], t["text"]) for t in session.record.transcripts] == [
        ("caller", "Can I book a cleaning?"), ("agent", "One moment, let me check."),
        ("agent", "Tomorrow at eight is free."), ("caller", "Great.")]
    assert [t["order"] for t in session.record.transcripts] == [1, 2, 3, 4]
