"""Demo mode speaks for the business that is calling, not for Harbor Dental: the stand-in's demo script takes the
business's name, hours and services from what our server sends it, says what the tools really answered, and its
summary says what really happened. The business here is a physiotherapy practice."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from accounts.models import Business
from calls.models import Appointment, Call, Message
from calls.postcall.summary import call_summarize
from tests.factories import make_business, make_hours, make_service, make_transcript, make_user
from voice.agent import BROWSER_AUDIO, build_instructions, greeting_response, load_agent_profile, session_update
from voice.offline.realtime import RealtimeStandin
from voice.offline.realtime.wire import business_facts, spoken_hours
from voice.supervisor import SupervisorResult, run_supervisor, supervisor_system_prompt

ROOT = Path(__file__).resolve().parent.parent
DEMO_SCRIPT = ROOT / "voice" / "fixtures" / "standin_demo.json"
MAPLE_HOURS = "We're open Monday to Thursday, 9 am to 6 pm; and Saturday, 10 am to 1:30 pm."
MAPLE_GREETING = "Maple Street Physio, good morning! How can I help?"


def make_maple(**fields) -> Business:
    business = make_business(owner=make_user(), name="Maple Street Physio", time_zone="Europe/London",
                             greeting=MAPLE_GREETING, **fields)
    for weekday in range(4):
        make_hours(business, weekday, "09:00", "18:00")
    make_hours(business, 5, "10:00", "13:30")
    make_service(business, "Sports massage", minutes=60, price="65.00")
    return business


@pytest.fixture
def maple(db) -> Business:
    return make_maple()


@pytest.fixture
def demo_standin(settings):
    standin = RealtimeStandin(script=str(DEMO_SCRIPT), port=0, speed=0).start_in_thread()
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = standin.base_url, "demo-mode-local-standin"
    yield standin
    standin.stop()


def supervisor_request() -> str:
    return "Book the first free sports massage from tomorrow for Alex Morgan, phone +14155550123"


ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def first_free_spoken(availability: dict) -> str:
    """The first free time of a check_availability result as the caller hears it: the day asked about, or the
    next day with room when it was full."""
    day = availability if availability["slots"] else availability["next_available"]
    return f"{day['date_spoken']} at {day['slots_spoken'][0]}"


def tool_result(result: SupervisorResult, name: str) -> dict:
    [step] = [e["payload"] for e in result.events if e["payload"].get("step") == "tool" and e["payload"]["name"] == name]
    return step["result"]


# --- what the stand-in reads from the wire -----------------------------------------------------------------------

def test_the_stand_in_reads_the_business_from_the_instructions_our_agent_sends(maple):
    facts = business_facts(build_instructions(maple))
    assert (facts.name, facts.services) == ("Maple Street Physio", ["Sports massage"])
    assert spoken_hours(facts.hours) == MAPLE_HOURS


def test_the_stand_in_reads_the_same_business_from_the_supervisors_prompt(maple):
    assert business_facts(supervisor_system_prompt(maple, "")) == business_facts(build_instructions(maple))


def test_a_business_without_hours_is_said_to_have_none_listed(db):
    business = make_business(name="New Shop")
    assert spoken_hours(business_facts(build_instructions(business)).hours) == (
        "We have no opening hours listed at the moment.")


async def _realtime_demo_turns(url: str, profile, model: str) -> list[dict]:
    """Our server's session.update and greeting request, then two caller turns as text; what the stand-in does."""
    done: list[dict] = []
    async with connect(f"{url}?model={model}", additional_headers={"Authorization": "Bearer demo"}) as ws:
        await ws.send(json.dumps(session_update(profile, BROWSER_AUDIO)))
        await ws.send(json.dumps(greeting_response(profile)))
        for caller in (None, "Hi, what are your opening hours?", "I'd like to book, please."):
            if caller is not None:
                await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                    "type": "message", "role": "user", "content": [{"type": "input_text", "text": caller}]}}))
                await ws.send(json.dumps({"type": "response.create"}))
            async with asyncio.timeout(10):
                while (event := json.loads(await ws.recv()))["type"] != "response.done":
                    pass
            done.append(event["response"])
    return done


def test_the_demo_agent_greets_and_answers_as_the_calling_business(maple, demo_standin, settings):
    profile = load_agent_profile(maple.id)
    greeting, hours, booking = asyncio.run(_realtime_demo_turns(demo_standin.url, profile,
                                                                settings.OPENAI_REALTIME_MODEL))

    def said(response: dict) -> str:
        return " ".join(part["transcript"] for item in response["output"] if item["type"] == "message"
                        for part in item["content"])
    assert said(greeting) == MAPLE_GREETING
    assert said(hours) == MAPLE_HOURS
    [call] = [item for item in booking["output"] if item["type"] == "function_call"]
    assert json.loads(call["arguments"]) == {"request": supervisor_request()}
    assert "Harbor" not in json.dumps([greeting, hours, booking])


# --- the supervisor: what the tools really answered ---------------------------------------------------------------

def test_on_a_phone_call_the_demo_books_the_calling_business_service_and_says_the_booked_time(maple, demo_standin):
    call = Call.objects.create(business=maple, channel=Call.Channel.TWILIO, from_number="+14155550123",
                               status=Call.Status.IN_PROGRESS)

    result = run_supervisor(call_id=call.id, request=supervisor_request(), conversation=[])

    appointment = Appointment.objects.get(business=maple)
    assert appointment.service_name == "Sports massage" and appointment.created_by_call == call
    booked = tool_result(result, "book_appointment")
    assert result.ok and result.answer == f"You're booked, Alex: a sports massage on {booked['start_spoken']}."
    assert not ISO_TIME.search(result.answer)  # said as a person says it, never as the machine writes it
    assert not Message.objects.exists()


def test_on_a_test_call_the_demo_says_it_could_not_book_and_leaves_a_message(maple, demo_standin):
    call = Call.objects.create(business=maple, channel=Call.Channel.BROWSER, from_number="Demo Owner",
                               status=Call.Status.IN_PROGRESS)

    result = run_supervisor(call_id=call.id, request=supervisor_request(), conversation=[])

    assert "error" in tool_result(result, "book_appointment") and not Appointment.objects.exists()
    slot = first_free_spoken(tool_result(result, "check_availability"))
    assert Message.objects.get(business=maple).body == f"Would like a sports massage on {slot}. Left in demo mode."
    assert result.answer == (f"I couldn't book it on this call, Alex, but the first free sports massage is on {slot}: "
                             "I've left a message for the team to book it and call you back.")
    assert not ISO_TIME.search(result.answer)


def test_when_the_calling_business_has_no_free_time_the_demo_says_so(db, demo_standin):
    business = make_business(owner=make_user(), name="Closed Clinic", time_zone="Europe/London")
    make_service(business, "Check-up")  # and no opening hours at all
    call = Call.objects.create(business=business, channel=Call.Channel.TWILIO, from_number="+14155550123",
                               status=Call.Status.IN_PROGRESS)

    result = run_supervisor(call_id=call.id, request="Book the first free check-up from tomorrow", conversation=[])

    assert not Appointment.objects.exists() and not Message.objects.exists()
    assert result.answer.startswith("I'm sorry, Alex, I couldn't find a free time for a check-up")


# --- the summary: what happened -----------------------------------------------------------------------------------

def finished_call(business: Business, turns: list[tuple[str, str]]) -> Call:
    call = Call.objects.create(business=business, channel=Call.Channel.BROWSER, from_number="Demo Owner",
                               status=Call.Status.COMPLETED, duration_seconds=40,
                               finalized_at=dt.datetime.now(dt.timezone.utc))
    make_transcript(call, [(speaker, text, 1000 * n) for n, (speaker, text) in enumerate(turns)])
    return call


def test_the_demo_summary_of_a_call_without_a_booking_claims_none(maple, demo_standin):
    call = finished_call(maple, [("agent", MAPLE_GREETING), ("caller", "Hi, what are your opening hours?"),
                                 ("agent", MAPLE_HOURS)])

    assert call_summarize(call_id=call.id)

    call.refresh_from_db()
    assert call.outcome == "answered"
    assert call.summary == ("Demo call to Maple Street Physio (simulated by the local stand-in). No appointment was "
                            "booked and no message was left.")
    assert (call.caller_name, call.action_items, call.follow_up_needed) == ("", [], False)
    assert call.reason == "The caller said: “Hi, what are your opening hours?”"


def test_the_demo_summary_says_a_message_was_left_when_one_was(maple, demo_standin):
    call = finished_call(maple, [("caller", "I'd like to book a sports massage. My name is Alex Morgan."),
                                 ("agent", "I've left a message for the team.")])
    Message.objects.create(business=maple, call=call, name="Alex Morgan", callback_number="+14155550123",
                           body="Would like a sports massage.")

    assert call_summarize(call_id=call.id)

    call.refresh_from_db()
    assert call.outcome == "message_taken" and call.caller_name == "Alex Morgan"
    assert call.summary.endswith("A message was left for the team; no appointment was booked.")
    assert call.follow_up_needed and call.action_items == ["Call Alex Morgan back about their message."]


# --- a whole demo test call, as `make run` serves it (no Redis: tasks in the web process) -----------------------

@pytest.mark.e2e
def test_a_demo_test_call_speaks_for_its_business_and_a_clean_run_logs_no_warning(transactional_db, client, caplog):
    """The demo script end to end for a business that is not Harbor Dental: greeting, hours, a booking request
    (the supervisor runs in the web process, as without Redis), goodbye; nothing at WARNING or above is logged by
    the server or the stand-in, and the summary says what happened."""
    from django.conf import settings as django_settings

    from voice.offline.twilio import TwilioStandin
    from voice.tests.conftest import start_asgi_server, stop_process
    from voice.tests.test_browser_call import FRAME_MS, pcm_frames

    maple = make_maple()
    client.force_login(maple.memberships.get().user)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    standin = RealtimeStandin(script=str(DEMO_SCRIPT), port=0, speed=0).start_in_thread()
    twilio = TwilioStandin()
    twilio.start_in_thread()
    server = start_asgi_server("daphne", standin=standin, twilio_standin=twilio,
                               extra_env={"REDIS_URL": "", "DEMO_MODE": "true"})
    try:
        async def scenario() -> list[str]:
            import websockets

            url = server.base_url.replace("http", "ws") + "/ws/browser/call/"
            headers = {"Origin": server.base_url, "Cookie": f"{django_settings.SESSION_COOKIE_NAME}={cookie}"}
            said: list[str] = []
            async with websockets.connect(url, additional_headers=headers) as ws:
                async with asyncio.timeout(40):
                    async for raw in ws:
                        message = json.loads(raw)
                        if message["type"] == "mark":
                            await ws.send(json.dumps({"type": "mark", "name": message["name"]}))
                        elif message["type"] == "transcript" and message["speaker"] == "agent":
                            said.append(message["text"])
                            if said[-1] in (MAPLE_GREETING, MAPLE_HOURS) or said[-1].endswith("anything else?"):
                                for frame in pcm_frames(600, loud=True) + pcm_frames(800, loud=False):
                                    await ws.send(json.dumps({"type": "audio", "audio": frame}))
                                    await asyncio.sleep(FRAME_MS / 1000)  # a microphone: in real time
            return said

        with caplog.at_level(logging.WARNING, logger="voice.offline.realtime"):
            said = asyncio.run(scenario())
        call = Call.objects.get(business=maple)
        deadline = time.monotonic() + 20
        while call.summarized_at is None and time.monotonic() < deadline:
            time.sleep(0.2)
            call.refresh_from_db()
    finally:
        stop_process(server.process)
        standin.stop()
        twilio.stop()
    log = server.log()
    slot = Message.objects.get(call=call).body.removeprefix("Would like a sports massage on ").removesuffix(
        ". Left in demo mode.")
    assert said == [MAPLE_GREETING, MAPLE_HOURS, "Sure, one moment while I check the diary.",
                    f"I couldn't book it on this call, Alex, but the first free sports massage is on {slot}: I've left "
                    "a message for the team to book it and call you back. Is there anything else?",
                    "You're welcome, Alex. Thanks for calling Maple Street Physio, goodbye!"], log
    assert call.outcome == "message_taken" and "no appointment was booked" in call.summary, log
    noisy = [line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)]
    assert not noisy, log
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not any(record["warnings"] for record in standin.chat_requests)
    assert not any(session["warnings"] for session in standin.sessions.values())
