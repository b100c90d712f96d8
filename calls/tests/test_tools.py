"""The supervisor's tool contract: schemas, argument checking, and each tool through run_business_tool."""

import datetime as dt
import json

import pytest

from calls import selectors
from calls.models import Appointment, Customer, Message
from calls.tools import SUPERVISOR_TOOLS, run_business_tool
from tests.factories import (make_appointment, make_call, make_closed_date, make_customer, make_faq, make_hours,
                             make_message, make_service)

CALLER = "+14155550123"
MONDAY = dt.date(2030, 1, 7)  # far enough ahead to be bookable whatever today is


@pytest.fixture
def business(alices_business):
    for weekday in range(5):
        make_hours(alices_business, weekday=weekday, opens="09:00", closes="12:00")
        make_hours(alices_business, weekday=weekday, opens="13:00", closes="17:00")
    make_service(alices_business, "Cleaning", minutes=30, price="80.00")
    make_service(alices_business, "Check-up", minutes=60, price=None)
    return alices_business


def run(business, name, arguments=None, *, caller=CALLER, call_id=None):
    result = run_business_tool(business_id=business.id, call_id=call_id, caller_number=caller, name=name,
                               arguments={} if arguments is None else arguments)
    json.dumps(result)  # always JSON-serialisable
    return result


def at(business, wall: str, day: dt.date = MONDAY) -> dt.datetime:
    return selectors.local_to_utc(day, dt.time.fromisoformat(wall), business)


# --- the contract -----------------------------------------------------------------------------------------

def test_the_tools_are_chat_completions_function_tools_with_the_agreed_names():
    assert [t["function"]["name"] for t in SUPERVISOR_TOOLS] == [
        "get_business_info", "search_faq", "check_availability", "book_appointment", "find_appointments",
        "reschedule_appointment", "cancel_appointment", "lookup_caller", "take_message"]
    for tool in SUPERVISOR_TOOLS:
        assert tool["type"] == "function"
        assert tool["function"]["description"]
        parameters = tool["function"]["parameters"]
        assert parameters["type"] == "object"
        assert set(parameters["required"]) <= set(parameters["properties"])
    json.dumps(SUPERVISOR_TOOLS)


def test_an_unknown_tool_is_an_error(business):
    assert run(business, "delete_everything")["error"].startswith("There is no tool called “delete_everything”.")


def test_malformed_json_arguments_are_an_error(business):
    result = run(business, "check_availability", '{"date": "2030-01-07"')
    assert result["error"].startswith("The arguments were not valid JSON")


def test_arguments_must_be_a_json_object(business):
    assert "must be a JSON object" in run(business, "check_availability", '["2030-01-07"]')["error"]


def test_json_string_arguments_are_accepted(business):
    assert run(business, "check_availability", '{"date": "2030-01-07"}')["slots"][0] == "2030-01-07T09:00"


def test_a_missing_required_argument_is_an_error(business):
    assert run(business, "check_availability", {})["error"].startswith("check_availability needs date")


def test_an_unknown_argument_is_an_error(business):
    result = run(business, "check_availability", {"date": "2030-01-07", "servce": "Cleaning"})
    assert result["error"] == ("check_availability has no parameter servce. Its parameters are: date, service.")


@pytest.mark.parametrize(("name", "arguments", "message"), [
    ("check_availability", {"date": 20300107}, "date must be a string"),
    ("cancel_appointment", {"appointment_id": "abc"}, "appointment_id must be a whole number"),
    ("cancel_appointment", {"appointment_id": 1.5}, "appointment_id must be a whole number"),
    ("cancel_appointment", {"appointment_id": True}, "appointment_id must be a whole number"),
    ("search_faq", {"query": ["parking"]}, "query must be a string"),
])
def test_a_wrong_type_is_an_error(business, name, arguments, message):
    assert run(business, name, arguments)["error"].startswith(message)


@pytest.mark.parametrize("date", ["07/01/2030", "2030-13-01", "tomorrow", "2030-01-07T10:00"])
def test_a_malformed_date_is_an_error(business, date):
    assert run(business, "check_availability", {"date": date})["error"].startswith(
        "date must be a calendar date written YYYY-MM-DD")


def test_a_start_with_a_time_zone_offset_is_an_error(business):
    result = run(business, "book_appointment", {"name": "Dana", "service": "Cleaning", "start": "2030-01-07T10:00Z"})
    assert "without a time-zone offset" in result["error"]
    assert not Appointment.objects.exists()


def test_a_start_that_daylight_saving_skips_is_an_error(business):
    # 2030-03-10 is the spring-forward Sunday in Los Angeles: 02:30 never happens.
    result = run(business, "book_appointment", {"name": "Dana", "service": "Cleaning", "start": "2030-03-10T02:30"})
    assert "does not exist in America/Los_Angeles" in result["error"]


def test_a_missing_business_is_an_error(db):
    result = run_business_tool(business_id=999_999, call_id=None, caller_number=CALLER, name="get_business_info",
                               arguments={})
    assert result == {"error": "This business no longer exists."}


# --- business info and FAQ --------------------------------------------------------------------------------

def test_business_info_without_a_date_gives_the_week_services_and_closed_dates(business):
    make_closed_date(business, "2030-12-25", "Christmas")
    info = run(business, "get_business_info")
    assert info["name"] == "Alice Dental"
    assert info["phone"] == "+14155552671"
    assert info["week"][0] == {"weekday": "Monday", "intervals": [{"opens": "09:00", "closes": "12:00"},
                                                                  {"opens": "13:00", "closes": "17:00"}]}
    assert info["week"][6] == {"weekday": "Sunday", "intervals": []}
    assert {"date": "2030-12-25", "reason": "Christmas"} in info["upcoming_closed_dates"]
    assert info["services"][0] == {"name": "Check-up", "duration_minutes": 60, "price": None, "description": ""}
    assert info["services"][1]["price"] == "80.00"
    assert isinstance(info["open_now"], bool)
    assert info["next_opening"] is not None
    assert len(info["now"]) == len("2030-01-07T09:00")


def test_business_info_for_a_date_gives_that_days_hours(business):
    make_closed_date(business, "2030-01-08", "Inventory")
    info = run(business, "get_business_info", {"date": "2030-01-08"})
    assert info["hours"] == {"date": "2030-01-08", "weekday": "Tuesday", "open": False, "closed_reason": "Inventory",
                             "intervals": []}
    assert "week" not in info


def test_search_faq_finds_the_matching_entry(business):
    make_faq(business, "Do you have parking?", "Yes, behind the building.")
    make_faq(business, "Do you take insurance?", "We take most dental plans.")
    result = run(business, "search_faq", {"query": "Is there somewhere to park my car?"})
    assert result["results"][0] == {"question": "Do you have parking?", "answer": "Yes, behind the building."}


def test_search_faq_returns_at_most_three_entries(business):
    for n in range(5):
        make_faq(business, f"Parking question {n}?", "Parking is free.")
    assert len(run(business, "search_faq", {"query": "parking"})["results"]) == 3


def test_search_faq_without_a_match_returns_an_empty_list_and_a_hint(business):
    make_faq(business, "Do you have parking?", "Yes, behind the building.")
    result = run(business, "search_faq", {"query": "Do you sell gift cards?"})
    assert result["results"] == []
    assert "offer to take a message" in result["hint"]


def test_search_faq_only_searches_this_business(business, charlie):
    make_faq(charlie.memberships.get().business, "Do you have parking?", "Charlie's answer.")
    assert run(business, "search_faq", {"query": "parking"})["results"] == []


# --- booking through the tools ----------------------------------------------------------------------------

def book(business, start="2030-01-07T10:00", **arguments):
    return run(business, "book_appointment", {"name": "Dana Scully", "service": "cleaning", "start": start,
                                              **arguments})


def test_a_slot_from_check_availability_can_be_booked_for_the_caller(business):
    slot = run(business, "check_availability", {"date": "2030-01-07", "service": "Cleaning"})["slots"][0]
    result = book(business, slot)
    assert result == {"appointment_id": Appointment.objects.get().id, "status": "booked", "service": "Cleaning",
                      "start": "2030-01-07T09:00", "end": "2030-01-07T09:30", "customer_name": "Dana Scully",
                      "phone": CALLER}
    assert Appointment.objects.get().starts_at == dt.datetime(2030, 1, 7, 17, 0, tzinfo=dt.timezone.utc)  # PST


def test_booking_for_another_number_uses_that_number(business):
    assert book(business, phone="+1 (415) 555-0199")["phone"] == "+14155550199"


def test_booking_without_any_number_asks_for_one(business):
    result = run(business, "book_appointment", {"name": "Dana", "service": "Cleaning", "start": "2030-01-07T10:00"},
                 caller="Browser test")
    assert "ask for a phone" in result["error"]


def test_booking_in_the_past_is_an_error(business):
    assert "in the past" in book(business, "2020-01-06T10:00")["error"]


def test_booking_an_unknown_service_lists_the_real_ones(business):
    result = book(business, service="Massage")
    assert result == {"error": "There is no service called “Massage”. The services are: Check-up, Cleaning."}


def test_booking_with_a_blank_name_is_an_error(business):
    assert book(business, name="  ")["error"].startswith("book_appointment needs name")


def test_booking_a_taken_slot_says_so_and_offers_the_nearest_free_times(business):
    make_appointment(business, at(business, "10:00"), minutes=60)
    result = book(business, "2030-01-07T10:30")
    assert result["error"].startswith("That time was just taken.")
    assert result["alternatives"] == ["2030-01-07T09:30", "2030-01-07T11:00", "2030-01-07T11:15"]


def test_the_call_is_linked_only_when_it_belongs_to_the_business(business, charlie):
    own_call = make_call(business)
    foreign_call = make_call(charlie.memberships.get().business)
    first = book(business, "2030-01-07T09:00")
    run(business, "book_appointment", {"name": "Dana", "service": "Cleaning", "start": "2030-01-07T10:00"},
        call_id=own_call.id)
    run(business, "book_appointment", {"name": "Dana", "service": "Cleaning", "start": "2030-01-07T11:00"},
        call_id=foreign_call.id)
    assert Appointment.objects.get(id=first["appointment_id"]).created_by_call is None
    assert [a.created_by_call_id for a in Appointment.objects.order_by("starts_at")] == [None, own_call.id, None]


def test_find_appointments_lists_upcoming_booked_ones_and_recent_past_ones(business):
    customer = make_customer(business, phone=CALLER)
    upcoming = make_appointment(business, at(business, "09:00"), customer=customer)
    make_appointment(business, at(business, "10:00"), customer=customer, status="cancelled")
    past = make_appointment(business, at(business, "09:00", dt.date(2020, 1, 6)), customer=customer)
    result = run(business, "find_appointments")
    assert result["customer_name"] == "Dana Scully"
    assert result["upcoming"] == [{"appointment_id": upcoming.id, "service": "Consultation",
                                   "start": "2030-01-07T09:00", "end": "2030-01-07T09:30", "status": "booked"}]
    assert [a["appointment_id"] for a in result["recent_past"]] == [past.id]


def test_find_appointments_for_an_unknown_number_finds_none(business, charlie):
    make_appointment(charlie.memberships.get().business, at(business, "09:00"),
                     customer=make_customer(charlie.memberships.get().business, phone=CALLER))
    result = run(business, "find_appointments", {"phone": CALLER})
    assert (result["upcoming"], result["customer_name"]) == ([], None)


def test_reschedule_moves_the_appointment_and_keeps_its_id(business):
    appointment_id = book(business, "2030-01-07T09:00")["appointment_id"]
    result = run(business, "reschedule_appointment", {"appointment_id": appointment_id, "start": "2030-01-08T14:30"})
    assert (result["appointment_id"], result["start"], result["end"]) == (appointment_id, "2030-01-08T14:30",
                                                                          "2030-01-08T15:00")
    assert result["previous_start"] == "2030-01-07T09:00"


def test_reschedule_outside_the_hours_is_an_error(business):
    appointment_id = book(business, "2030-01-07T09:00")["appointment_id"]
    result = run(business, "reschedule_appointment", {"appointment_id": appointment_id, "start": "2030-01-07T12:15"})
    assert "outside the opening hours" in result["error"]


def test_cancel_marks_the_appointment_cancelled_and_a_second_time_changes_nothing(business):
    appointment_id = book(business)["appointment_id"]
    first = run(business, "cancel_appointment", {"appointment_id": appointment_id})
    second = run(business, "cancel_appointment", {"appointment_id": str(appointment_id)})
    assert (first["status"], first["already_cancelled"]) == ("cancelled", False)
    assert (second["status"], second["already_cancelled"]) == ("cancelled", True)


def test_cancelling_a_past_appointment_is_an_error(business):
    appointment = make_appointment(business, at(business, "09:00", dt.date(2020, 1, 6)))
    assert "can't be cancelled" in run(business, "cancel_appointment", {"appointment_id": appointment.id})["error"]


@pytest.mark.parametrize("name", ["cancel_appointment", "reschedule_appointment"])
def test_another_businesss_appointment_is_as_unknown_as_a_missing_one(business, charlie, name):
    foreign = make_appointment(charlie.memberships.get().business, at(business, "09:00"))
    arguments = {"start": "2030-01-07T10:00"} if name == "reschedule_appointment" else {}
    result = run(business, name, {"appointment_id": foreign.id, **arguments})
    missing = run(business, name, {"appointment_id": 999_999, **arguments})
    assert result["error"] == missing["error"].replace("999999", str(foreign.id))
    assert result["error"].startswith(f"There is no appointment {foreign.id}.")
    foreign.refresh_from_db()
    assert (foreign.status, foreign.starts_at) == ("booked", at(business, "09:00"))


# --- callers and messages ---------------------------------------------------------------------------------

def test_lookup_caller_for_a_new_number_is_unknown(business):
    assert run(business, "lookup_caller") == {"known": False, "phone": CALLER}


def test_lookup_caller_gives_the_customer_without_counting_the_current_call(business):
    customer = make_customer(business, phone=CALLER, name="Dana Scully", notes="Prefers mornings", call_count=4)
    call = make_call(business)
    Customer.objects.filter(id=customer.id).update(call_count=5, last_call=call)
    make_appointment(business, at(business, "09:00"), customer=customer)
    make_message(business, customer=customer, body="Call me about my bill")
    result = run(business, "lookup_caller", call_id=call.id)
    assert (result["known"], result["name"], result["notes"]) == (True, "Dana Scully", "Prefers mornings")
    assert result["previous_calls"] == 4
    assert [a["start"] for a in result["upcoming_appointments"]] == ["2030-01-07T09:00"]
    assert [m["message"] for m in result["recent_messages"]] == ["Call me about my bill"]


def test_take_message_saves_it_for_a_new_caller_with_their_name(business):
    call = make_call(business)
    result = run(business, "take_message", {"name": "Fox Mulder", "message": "Please call me back about X-rays",
                                            "urgency": "high"}, call_id=call.id)
    message = Message.objects.get()
    assert result == {"message_id": message.id, "status": "saved"}
    assert (message.callback_number, message.urgency, message.status, message.call) == (CALLER, "high", "open", call)
    assert (message.customer.phone, message.customer.name) == (CALLER, "Fox Mulder")


def test_take_message_links_a_known_customer_and_keeps_their_name(business):
    customer = make_customer(business, phone="+14155550199", name="Dana Scully")
    run(business, "take_message", {"name": "Dana", "callback_number": "+14155550199", "message": "Running late"})
    message = Message.objects.get()
    assert (message.customer, message.urgency) == (customer, "normal")
    customer.refresh_from_db()
    assert customer.name == "Dana Scully"


def test_take_message_with_an_invalid_urgency_is_an_error(business):
    result = run(business, "take_message", {"name": "Fox", "message": "Hi", "urgency": "urgent"})
    assert result["error"] == "urgency must be one of: low, normal, high; got “urgent”."
    assert not Message.objects.exists()


def test_take_message_with_an_invalid_callback_number_is_an_error(business):
    result = run(business, "take_message", {"name": "Fox", "message": "Hi", "callback_number": "12345"})
    assert result["error"].startswith("callback_number is not valid")
