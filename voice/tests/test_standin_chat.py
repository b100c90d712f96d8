"""Tests of the stand-in's Chat Completions endpoint (voice/offline/realtime/), driven through the official openai SDK
the way the supervisor drives it: call, run the tool calls, append the results, call again until plain text."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from voice.offline.realtime import (
    DEFAULT_SUPERVISOR_SAY,
    TOOL_MESSAGE_WITHOUT_CALL,
    RealtimeStandin,
    Script,
)

MODEL = "gpt-4.1-mini"
SYSTEM = ("You are the supervisor behind the phone receptionist of Harbor Dental. Today is 2026-03-09 (Monday), "
          "the local time is 16:05 (America/New_York). The caller's number is +15551234567.\n\n"
          "Offices re-open 2026-04-01.")
TOOLS = [
    {"type": "function", "function": {"name": name, "description": name.replace("_", " "),
                                      "parameters": {"type": "object", "properties": {}}}}
    for name in ("check_availability", "book_appointment", "take_message")
]
SUPERVISOR = [
    {"match": "book", "steps": [
        {"tool": "check_availability", "arguments": {"date": "{today+1}", "service": "Cleaning"}},
        {"tool": "book_appointment", "arguments": {
            "name": "Ann Lee", "phone": "{caller}", "service": "Cleaning",
            "start": "{result.check_availability.slots.0}", "alternatives": "{result.check_availability.slots}",
            "note": "first of {result.check_availability.count} slots"}},
        {"say": "You're booked for a cleaning on {result.book_appointment.start}."}]},
    {"match": ["MESSAGE", "call me back"], "steps": [
        {"tool": "take_message", "arguments": {"phone": "{caller}", "text": "Please call back {today-1}"}},
        {"say": "I've passed your message on."}]},
    {"match": "slow", "delay_ms": 700, "steps": [{"say": "Sorry for the wait."}]},
    {"match": "broken", "status": 500, "count": 1, "steps": [{"say": "Works on the second try."}]},
    {"match": "busy", "steps": [{"say": "Never said.", "status": 429, "retry_after": 2}]},
    {"match": "stuck", "hang": True, "steps": [{"say": "Never said."}]},
    {"match": "typo", "steps": [
        {"tool": "cancel_appointment", "arguments": {"id": "{result.check_availability.slots.9}"}},
        {"say": "Done."}]},
    {"default": True, "steps": [{"say": "I can help with bookings and questions."}]},
]
SCRIPT = {"supervisor": SUPERVISOR}


def fake_tool(name: str, arguments: str) -> dict:
    """The business tools, as the supervisor would run them."""
    args = json.loads(arguments)
    if name == "check_availability":
        return {"date": args["date"], "slots": [f"{args['date']}T09:00", f"{args['date']}T10:30"], "count": 2}
    if name == "book_appointment":
        return {"ok": True, "start": args["start"], "booking": "B-17"}
    return {"ok": True}


def conversation(request: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Conversation so far:\ncaller: hello\n\nThe agent asks: {request}"}]


def supervisor_loop(client: OpenAI, request: str, max_steps: int = 5) -> tuple[str | None, list]:
    """The supervisor's loop (voice/supervisor.py): returns the final text and every completion."""
    messages = conversation(request)
    completions = []
    for _ in range(max_steps):
        completion = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, tool_choice="auto",
                                                    parallel_tool_calls=False)
        completions.append(completion)
        message = completion.choices[0].message
        if not message.tool_calls:
            return message.content, completions
        messages.append({"role": "assistant", "content": message.content,
                         "tool_calls": [tc.model_dump(include={"id", "type", "function"}) for tc in message.tool_calls]})
        for call in message.tool_calls:
            messages.append({"role": "tool", "tool_call_id": call.id,
                             "content": json.dumps(fake_tool(call.function.name, call.function.arguments))})
    raise AssertionError("the loop did not finish")


def post(url: str, body: object, headers: dict | None = None) -> tuple[int, dict, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Authorization": "Bearer sk-test", "Content-Type": "application/json",
                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture
def standin():
    standin = RealtimeStandin(script=SCRIPT, port=0).start_in_thread()
    yield standin
    standin.stop()


@pytest.fixture
def client(standin):
    with OpenAI(api_key="sk-test", base_url=standin.base_url, max_retries=0, timeout=5) as client:
        yield client


# ---- the scripted tool loop --------------------------------------------------------------------

def test_sdk_runs_a_two_tool_loop_with_arguments_templated_from_earlier_results(standin, client):
    answer, completions = supervisor_loop(client, "The caller wants to BOOK a cleaning tomorrow.")

    assert answer == "You're booked for a cleaning on 2026-03-10T09:00."
    first, second, last = completions
    (check,) = first.choices[0].message.tool_calls
    (book,) = second.choices[0].message.tool_calls
    assert (check.function.name, json.loads(check.function.arguments)) == (
        "check_availability", {"date": "2026-03-10", "service": "Cleaning"})
    assert book.function.name == "book_appointment"
    assert json.loads(book.function.arguments) == {
        "name": "Ann Lee", "phone": "+15551234567", "service": "Cleaning", "start": "2026-03-10T09:00",
        "alternatives": ["2026-03-10T09:00", "2026-03-10T10:30"],  # a whole-value template keeps the JSON type
        "note": "first of 2 slots"}
    for completion, finish in zip(completions, ("tool_calls", "tool_calls", "stop")):
        assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
        assert completion.model == MODEL and completion.system_fingerprint.startswith("fp_")
        assert completion.choices[0].finish_reason == finish and completion.choices[0].index == 0
        usage = completion.usage
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0
        assert usage.completion_tokens_details.reasoning_tokens == 0
    assert check.id.startswith("call_") and check.id != book.id
    assert first.choices[0].message.content is None and last.choices[0].message.tool_calls is None
    assert first.usage.prompt_tokens < second.usage.prompt_tokens < last.usage.prompt_tokens

    log = standin.chat_requests
    assert [(r["step"], r["outcome"], r["status"]) for r in log] == [(0, "answered", 200), (1, "answered", 200),
                                                                      (2, "answered", 200)]
    assert all(r["entry"] == {"index": 0, "match": ["book"], "default": False} for r in log)
    assert all(r["warnings"] == [] for r in log)
    assert [[c["name"] for c in r["tool_calls"]] for r in log] == [["check_availability"], ["book_appointment"], []]
    assert log[1]["tool_results"][0]["name"] == "check_availability"
    assert log[2]["content"] == answer and log[2]["finish_reason"] == "stop"
    assert (log[0]["caller"], log[0]["today"], log[0]["model"]) == ("+15551234567", "2026-03-09", MODEL)
    assert log[0]["last_user_message"].endswith("The caller wants to BOOK a cleaning tomorrow.")
    assert log[0]["tools"] == ["check_availability", "book_appointment", "take_message"]
    assert get(standin.http_url + "/standin/chat") == {"object": "standin.chat", "requests": log}


def test_the_response_body_has_the_real_chat_completion_shape(standin):
    status, body, headers = post(standin.base_url + "/chat/completions",
                                 {"model": MODEL, "messages": conversation("leave a message please"), "tools": TOOLS})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert set(body) == {"id", "object", "created", "model", "choices", "usage", "service_tier", "system_fingerprint"}
    assert abs(body["created"] - time.time()) < 5
    (choice,) = body["choices"]
    assert set(choice) == {"index", "message", "logprobs", "finish_reason"} and choice["logprobs"] is None
    message = choice["message"]
    assert (message["role"], message["content"], message["refusal"]) == ("assistant", None, None)
    (call,) = message["tool_calls"]
    assert set(call) == {"id", "type", "function"} and call["type"] == "function"
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == {"phone": "+15551234567", "text": "Please call back 2026-03-08"}
    usage = body["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0

    status, body, _ = post(standin.base_url + "/chat/completions",
                           {"model": MODEL, "messages": conversation("what are your hours?")})
    message = body["choices"][0]["message"]
    assert "tool_calls" not in message and message["content"] == "I can help with bookings and questions."
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_async_sdk_gets_the_default_entry_and_match_lists():
    async with RealtimeStandin(script=SCRIPT, port=0) as standin:
        client = AsyncOpenAI(api_key="sk-test", base_url=standin.base_url, max_retries=0, timeout=5)
        default = await client.chat.completions.create(model="gpt-5", messages=conversation("do you take insurance?"),
                                                       tools=TOOLS, tool_choice="auto", parallel_tool_calls=False)
        callback = await client.chat.completions.create(model="gpt-5", messages=conversation("can you Call Me Back"),
                                                        tools=TOOLS)
        await client.close()
        log = standin.chat_requests
    assert default.choices[0].message.content == "I can help with bookings and questions."
    assert default.choices[0].finish_reason == "stop" and default.model == "gpt-5"
    assert callback.choices[0].message.tool_calls[0].function.name == "take_message"
    assert [r["entry"]["index"] for r in log] == [len(SUPERVISOR) - 1, 1]
    assert log[0]["entry"]["default"] is True


def test_without_a_matching_entry_it_answers_generically_and_warns():
    standin = RealtimeStandin(port=0).start_in_thread()
    try:
        with OpenAI(api_key="sk-test", base_url=standin.base_url, max_retries=0) as client:
            completion = client.chat.completions.create(model=MODEL, messages=conversation("hi"))
        record = standin.last_chat_request
    finally:
        standin.stop()
    assert completion.choices[0].message.content == DEFAULT_SUPERVISOR_SAY
    assert record["entry"] is None and "no supervisor entry" in record["warnings"][0]


def test_an_unknown_tool_or_a_missing_result_still_answers_but_warns(standin, client):
    answer, completions = supervisor_loop(client, "fix my typo")
    assert answer == "Done."
    call = completions[0].choices[0].message.tool_calls[0]
    assert call.function.name == "cancel_appointment" and json.loads(call.function.arguments) == {"id": ""}
    warnings = standin.chat_requests[0]["warnings"]
    assert any("check_availability" in w for w in warnings)
    assert any("'cancel_appointment' is not among the request's tools" in w for w in warnings)


FOLLOWS_RESULTS = [{"match": "book", "steps": [
    {"tool": "check_availability", "arguments": {"date": "{today+1}"}},
    {"when": "result.check_availability.slots.0|result.check_availability.next_available.slots.0",
     "tool": "book_appointment",
     "arguments": {"start": "{result.check_availability.slots.0|result.check_availability.next_available.slots.0}"}},
    {"when": "result.book_appointment.booking", "say": "Booked for {result.book_appointment.start}."},
    {"when": "!result.check_availability.slots.0|result.check_availability.next_available.slots.0",
     "say": "Nothing is free."}]}]


def test_alternatives_take_the_first_value_there_is_without_a_warning(standin, client):
    standin.script = Script.from_obj({"supervisor": FOLLOWS_RESULTS})
    answer, completions = supervisor_loop(client, "book me in")
    assert answer == "Booked for 2026-03-10T09:00."
    assert all(not record["warnings"] for record in standin.chat_requests)


def test_steps_whose_condition_does_not_hold_are_skipped(standin):
    standin.script = Script.from_obj({"supervisor": FOLLOWS_RESULTS})
    messages = conversation("book me in") + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "check_availability", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"slots": [], "message": "Closed."})}]
    status, body, _ = post(standin.base_url + "/chat/completions", {"model": MODEL, "messages": messages,
                                                                     "tools": TOOLS})
    assert status == 200 and body["choices"][0]["message"]["content"] == "Nothing is free."
    assert not standin.last_chat_request["warnings"]


def test_supervisor_templates_read_the_business_from_the_system_prompt(standin, client):
    standin.script = Script.from_obj({"supervisor": [{"default": True, "steps": [
        {"say": "This is {business.name}. {business.hours} We offer {business.a_service}."}]}]})
    system = ("You are the supervisor behind the phone receptionist of Maple Street Physio. A junior voice agent "
              "is on the phone.\n\nOpening hours (Europe/London):\n- Monday: 09:00–17:30\n- Tuesday: closed\n\n"
              "Services:\n- MRI scan: 30 minutes, 90.00 \n")
    completion = client.chat.completions.create(model=MODEL, messages=[{"role": "system", "content": system},
                                                                       {"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == (
        "This is Maple Street Physio. We're open Monday, 9 am to 5:30 pm. We offer an MRI scan.")


def test_today_falls_back_to_the_script_time_zone():
    standin = RealtimeStandin(script={**SCRIPT, "supervisor_time_zone": "Pacific/Kiritimati"}, port=0)
    standin.start_in_thread()
    try:
        before = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
        with OpenAI(api_key="sk-test", base_url=standin.base_url, max_retries=0) as client:
            completion = client.chat.completions.create(
                model=MODEL, tools=TOOLS,
                messages=[{"role": "system", "content": "No date here."}, {"role": "user", "content": "book please"}])
        after = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
        record = standin.last_chat_request
    finally:
        standin.stop()
    when = json.loads(completion.choices[0].message.tool_calls[0].function.arguments)["date"]
    assert date.fromisoformat(when) - timedelta(days=1) in (before, after)
    assert record["caller"] is None


# ---- errors --------------------------------------------------------------------------------------

def test_a_bad_authorization_header_is_an_authentication_error(standin):
    with (OpenAI(api_key="sk-test", base_url=standin.base_url, max_retries=0,
                 default_headers={"Authorization": "Basic c2stdGVzdA=="}) as client,
          pytest.raises(openai.AuthenticationError) as info):
        client.chat.completions.create(model=MODEL, messages=conversation("book"))
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    assert info.value.body["type"] == "invalid_request_error"
    status, body, _ = post(standin.base_url + "/chat/completions", {"model": MODEL}, {"Authorization": ""})
    assert status == 401 and body["error"]["code"] == "invalid_api_key" and body["error"]["param"] is None


def test_a_scripted_500_is_an_internal_server_error_and_count_limits_it(standin, client):
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=MODEL, messages=conversation("it's broken"), tools=TOOLS)
    assert info.value.status_code == 500 and info.value.body["type"] == "server_error"
    retry = client.chat.completions.create(model=MODEL, messages=conversation("it's broken"), tools=TOOLS)
    assert retry.choices[0].message.content == "Works on the second try."
    assert [(r["outcome"], r["status"]) for r in standin.chat_requests] == [("scripted_error", 500), ("answered", 200)]


def test_a_scripted_429_is_a_rate_limit_error_with_retry_after(standin, client):
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=MODEL, messages=conversation("are you busy"), tools=TOOLS)
    assert info.value.status_code == 429 and info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["retry-after"] == "2"
    assert MODEL in info.value.body["message"]


def test_a_tool_message_answering_no_preceding_call_is_a_bad_request(standin, client):
    messages = conversation("book")
    messages += [{"role": "assistant", "content": None, "tool_calls": [
                     {"id": "call_A", "type": "function", "function": {"name": "check_availability", "arguments": "{}"}}]},
                 {"role": "tool", "tool_call_id": "call_B", "content": "{}"}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    assert info.value.status_code == 400
    assert info.value.body["message"] == TOOL_MESSAGE_WITHOUT_CALL
    assert info.value.body["param"] == "messages.[3].role"
    record = standin.last_chat_request
    assert (record["outcome"], record["status"], record["error"]["message"]) == (
        "invalid_request", 400, TOOL_MESSAGE_WITHOUT_CALL)

    unanswered = conversation("book") + [messages[2]]
    with pytest.raises(openai.BadRequestError, match="did not have response messages: call_A"):
        client.chat.completions.create(model=MODEL, messages=unanswered, tools=TOOLS)


@pytest.mark.parametrize("body, param, code, fragment", [
    ({"messages": [{"role": "user", "content": "hi"}]}, None, None, "you must provide a model parameter"),
    ({"model": MODEL}, "messages", "missing_required_parameter", "Missing required parameter: 'messages'."),
    ({"model": MODEL, "messages": []}, "messages", "empty_array", "empty array"),
    ({"model": MODEL, "messages": [{"role": "bot", "content": "hi"}]}, "messages[0].role", "invalid_value",
     "Supported values are"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"},
                                   {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
                                       "name": "x", "arguments": {"a": 1}}}]}]},
     "messages[1].tool_calls[0].function.arguments", "invalid_type", "expected a string, but got an object"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "tool_choice": "auto"}, "tool_choice",
     "invalid_value", "only allowed when 'tools' are specified"),
])
def test_malformed_requests_get_openai_shaped_400s(standin, body, param, code, fragment):
    status, answer, _ = post(standin.base_url + "/chat/completions", body)
    assert status == 400
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code) and fragment in error["message"]
    status, answer, _ = post(standin.base_url + "/chat/completions", b"{not json")
    assert status == 400 and "could not parse the JSON body" in answer["error"]["message"]


# ---- timing ----------------------------------------------------------------------------------------

async def test_a_delayed_answer_does_not_hold_up_a_concurrent_request():
    async with RealtimeStandin(script=SCRIPT, port=0) as standin:
        client = AsyncOpenAI(api_key="sk-test", base_url=standin.base_url, max_retries=0, timeout=5)
        t0 = time.monotonic()
        finished: dict[str, float] = {}

        async def ask(request: str) -> str:
            completion = await client.chat.completions.create(model=MODEL, messages=conversation(request), tools=TOOLS)
            finished[request] = time.monotonic() - t0
            return completion.choices[0].message.content

        slow = asyncio.ensure_future(ask("slow please"))
        await asyncio.sleep(0.05)
        fast = await ask("opening hours?")
        assert not slow.done()
        assert await slow == "Sorry for the wait."
        await client.close()
        log = standin.chat_requests
    assert fast == "I can help with bookings and questions."
    assert finished["opening hours?"] < 0.5
    assert 0.7 <= finished["slow please"] < 3
    assert log[0]["delay_ms"] == 700 and log[0]["duration_ms"] >= 700


def test_a_hanging_request_ends_when_the_client_gives_up(standin):
    with OpenAI(api_key="sk-test", base_url=standin.base_url, max_retries=0, timeout=0.4) as client:
        t0 = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model=MODEL, messages=conversation("I'm stuck"), tools=TOOLS)
        assert time.monotonic() - t0 < 2
    deadline = time.monotonic() + 3
    while standin.last_chat_request["outcome"] == "hanging" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert standin.last_chat_request["outcome"] == "client_disconnected"


def test_stopping_the_stand_in_drops_a_hanging_request_at_once():
    standin = RealtimeStandin(script=SCRIPT, port=0).start_in_thread()
    errors: list[Exception] = []

    def ask() -> None:
        with OpenAI(api_key="sk-test", base_url=standin.base_url, max_retries=0, timeout=20) as client:
            try:
                client.chat.completions.create(model=MODEL, messages=conversation("stuck"), tools=TOOLS)
            except openai.APIConnectionError as exc:
                errors.append(exc)

    thread = threading.Thread(target=ask)
    thread.start()
    deadline = time.monotonic() + 3
    while not standin.chat_requests and time.monotonic() < deadline:
        time.sleep(0.02)
    record = standin.last_chat_request
    t0 = time.monotonic()
    standin.stop()
    thread.join(5)
    assert record["outcome"] == "hanging" and time.monotonic() - t0 < 3
    assert not thread.is_alive() and len(errors) == 1


# ---- the script ------------------------------------------------------------------------------------

@pytest.mark.parametrize("supervisor, fragment", [
    ([{"steps": [{"say": "x"}]}], "either 'match'"),
    ([{"match": "a", "default": True, "steps": [{"say": "x"}]}], "either 'match'"),
    ([{"match": "a", "steps": [{"say": "x", "arguments": {}}]}], "'arguments' needs a 'tool'"),
    ([{"match": "a", "steps": [{}]}], "needs 'say' and/or 'tool'"),
    ([{"match": "a", "steps": [{"tool": "bad name"}]}], "function name"),
    ([{"match": "a", "steps": [{"say": "x", "status": 200}]}], "status"),
    ([{"match": "a", "steps": [{"say": "x", "count": 2}]}], "need 'status' or 'hang'"),
    ([{"match": [], "steps": [{"say": "x"}]}], "non-empty"),
    ([{"match": "a", "steps": [{"say": "x", "tol": "typo"}]}], "unknown key"),
    ([{"match": "a", "steps": [{"say": "x", "when": "{result.a}"}]}], "template expression without braces"),
])
def test_the_script_rejects_malformed_supervisor_entries(supervisor, fragment):
    with pytest.raises(ValueError, match=fragment):
        Script.from_obj({"supervisor": supervisor})
    with pytest.raises(ValueError, match="time zone"):
        Script.from_obj({"supervisor_time_zone": "Mars/Olympus"})


def test_reset_clears_the_chat_log(standin, client):
    client.chat.completions.create(model=MODEL, messages=conversation("hello"))
    status, body, _ = post(standin.http_url + "/standin/reset", {})
    assert (status, body["chat_cleared"]) == (200, 1)
    assert standin.chat_requests == []
