import datetime as dt
from decimal import Decimal

from accounts.models import ClosedDate
from calls.services import Usage
from tests.factories import make_faq, make_hours, make_service
from voice.agent import PHONE_AUDIO, build_instructions, load_agent_profile, session_update


def test_instructions_carry_hours_services_faq_and_local_time(alices_business):
    make_hours(alices_business, weekday=0, opens="09:00", closes="12:00")
    make_hours(alices_business, weekday=0, opens="13:00", closes="17:30")
    make_service(alices_business, name="Cleaning", minutes=45, price="120.00")
    make_faq(alices_business, question="Is there parking?", answer="Yes, behind the building.")
    ClosedDate.objects.create(business=alices_business, date=dt.date(2030, 12, 25), reason="Christmas")
    now = dt.datetime(2030, 1, 7, 17, 0, tzinfo=dt.timezone.utc)  # 09:00 in Los Angeles
    text = build_instructions(alices_business, now=now)
    assert "Monday 07 January 2030, 09:00" in text and "America/Los_Angeles" in text
    assert "- Monday: 09:00–12:00, 13:00–17:30" in text and "- Sunday: closed" in text
    assert "Cleaning: 45 minutes, 120.00" in text
    assert "Q: Is there parking?\nA: Yes, behind the building." in text
    assert "Christmas" in text


def test_instructions_offer_a_message_when_there_is_no_transfer_number(alices_business):
    assert "offer to take a message" in build_instructions(alices_business)


def test_session_update_is_ga_shaped_with_mulaw_both_ways(alices_business):
    alices_business.greeting = "Hi from Alice Dental"
    alices_business.voice = "cedar"
    alices_business.save()
    event = session_update(load_agent_profile(alices_business.id), PHONE_AUDIO)
    session = event["session"]
    assert session["type"] == "realtime" and session["output_modalities"] == ["audio"]
    assert session["audio"]["input"]["format"] == session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["voice"] == "cedar"
    assert session["audio"]["input"]["turn_detection"]["interrupt_response"] is True
    assert {tool["name"] for tool in session["tools"]} == {"ask_supervisor", "end_call", "transfer_to_human"}
    assert "temperature" not in session and "modalities" not in session


def test_cost_counts_cached_tokens_at_the_cached_price():
    usage = Usage()
    usage.add_realtime_usage({
        "input_token_details": {"text_tokens": 1000, "audio_tokens": 500, "cached_tokens": 600,
                                "cached_tokens_details": {"text_tokens": 500, "audio_tokens": 100}},
        "output_token_details": {"text_tokens": 50, "audio_tokens": 400}})
    # gpt-realtime: (500*4 + 500*0.4 + 400*32 + 100*0.4 + 50*16 + 400*64) / 1e6
    assert usage.cost_usd("gpt-realtime") == Decimal("0.041440")
    assert usage.cost_usd("unknown-model") == usage.cost_usd("gpt-realtime")


def test_greeting_falls_back_to_the_business_name(alices_business):
    alices_business.greeting = ""
    alices_business.save()
    assert "Alice Dental" in load_agent_profile(alices_business.id).greeting
