"""Free slots from opening hours, closed dates, durations and bookings, in the business's time zone."""

import datetime as dt

import pytest

from calls.selectors import availability, local_time
from calls.tools import run_business_tool
from tests.factories import make_appointment, make_business, make_closed_date, make_hours, make_service

UTC = dt.timezone.utc
MONDAY = dt.date(2026, 12, 7)
BEFORE_EVERYTHING = dt.datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def business(db):
    return make_business(name="Harbor Clinic", time_zone="America/New_York")


def local(business, day: dt.date, wall: str) -> dt.datetime:
    """An aware UTC datetime for a local wall time."""
    return local_time.local_to_utc(day, dt.time.fromisoformat(wall), business)


def slots(business, day=MONDAY, minutes=30, now=BEFORE_EVERYTHING) -> list[str]:
    found = availability.available_slots(business=business, day=day, duration_minutes=minutes, now=now)
    return [s.astimezone(business.tzinfo).strftime("%H:%M") for s in found]


def test_it_offers_a_start_every_15_minutes_while_the_service_fits(business):
    make_hours(business, weekday=0, opens="09:00", closes="10:00")
    assert slots(business) == ["09:00", "09:15", "09:30"]


def test_it_offers_slots_in_each_of_several_intervals_a_day(business):
    make_hours(business, weekday=0, opens="09:00", closes="10:00")
    make_hours(business, weekday=0, opens="14:00", closes="14:45")
    assert slots(business) == ["09:00", "09:15", "09:30", "14:00", "14:15"]


def test_it_never_offers_a_slot_outside_the_hours_of_that_weekday(business):
    make_hours(business, weekday=1, opens="09:00", closes="17:00")
    assert slots(business) == []


def test_it_offers_nothing_on_a_closed_date(business):
    make_hours(business, weekday=0, opens="09:00", closes="17:00")
    make_closed_date(business, "2026-12-07", "Staff training")
    assert slots(business) == []


def test_a_service_longer_than_the_remaining_open_time_is_not_offered_at_the_end(business):
    make_hours(business, weekday=0, opens="09:00", closes="10:30")
    assert slots(business, minutes=90) == ["09:00"]


def test_a_service_longer_than_every_interval_is_never_offered(business):
    make_hours(business, weekday=0, opens="09:00", closes="10:00")
    make_hours(business, weekday=0, opens="11:00", closes="12:00")
    assert slots(business, minutes=90) == []


def test_it_skips_times_that_overlap_a_booked_appointment(business):
    make_hours(business, weekday=0, opens="09:00", closes="11:00")
    make_appointment(business, local(business, MONDAY, "09:30"), minutes=30)
    assert slots(business) == ["09:00", "10:00", "10:15", "10:30"]


def test_a_cancelled_appointment_does_not_block_its_time(business):
    make_hours(business, weekday=0, opens="09:00", closes="10:00")
    make_appointment(business, local(business, MONDAY, "09:00"), minutes=60, status="cancelled")
    assert slots(business) == ["09:00", "09:15", "09:30"]


def test_another_businesss_appointment_does_not_block(business):
    make_hours(business, weekday=0, opens="09:00", closes="10:00")
    other = make_business(time_zone="America/New_York")
    make_appointment(other, local(business, MONDAY, "09:00"), minutes=60)
    assert slots(business) == ["09:00", "09:15", "09:30"]


def test_it_never_offers_a_slot_in_the_past(business):
    make_hours(business, weekday=0, opens="09:00", closes="11:00")
    now = local(business, MONDAY, "09:20")
    assert slots(business, now=now) == ["09:30", "09:45", "10:00", "10:15", "10:30"]


def test_it_offers_nothing_on_a_date_in_the_past(business):
    make_hours(business, weekday=0, opens="09:00", closes="17:00")
    assert slots(business, now=local(business, MONDAY + dt.timedelta(days=1), "08:00")) == []


@pytest.mark.parametrize(("zone", "day", "utc_of_nine"), [
    ("America/New_York", "2026-03-08", "13:00"),   # the day clocks go forward: EDT from 02:00
    ("America/New_York", "2026-11-01", "14:00"),   # the day clocks go back: EST from 02:00
    ("Europe/Berlin", "2026-03-29", "07:00"),
    ("Europe/Berlin", "2026-10-25", "08:00"),
])
def test_on_a_daylight_saving_change_day_the_slots_are_at_the_new_local_time(db, zone, day, utc_of_nine):
    business = make_business(time_zone=zone)
    make_hours(business, weekday=6, opens="09:00", closes="10:00")
    found = availability.available_slots(business=business, day=dt.date.fromisoformat(day), duration_minutes=30,
                                         now=BEFORE_EVERYTHING)
    assert [s.strftime("%H:%M") for s in found][0] == utc_of_nine
    assert [local_time.format_local(s, business)[-5:] for s in found] == ["09:00", "09:15", "09:30"]


def test_on_the_spring_forward_night_it_skips_the_local_times_that_do_not_exist(business):
    make_hours(business, weekday=6, opens="01:00", closes="04:00")
    # 02:00-02:59 do not exist on 2026-03-08; 01:45 + 60 minutes ends at 03:45 EDT.
    assert slots(business, day=dt.date(2026, 3, 8), minutes=60) == ["01:00", "01:15", "01:30", "01:45", "03:00"]


def test_on_the_fall_back_night_an_interval_lasts_its_real_extra_hour(business):
    make_hours(business, weekday=6, opens="00:00", closes="02:00")
    # 00:00-02:00 local is three hours on 2026-11-01, so a 150-minute service fits; on a normal Sunday it doesn't.
    assert slots(business, day=dt.date(2026, 11, 1), minutes=150) == ["00:00", "00:15", "00:30"]
    assert slots(business, day=dt.date(2026, 11, 8), minutes=150) == []


def test_open_status_knows_the_current_interval_and_the_next_opening(business):
    make_hours(business, weekday=0, opens="09:00", closes="12:00")
    make_hours(business, weekday=0, opens="13:00", closes="17:00")
    status = availability.open_status(business=business, now=local(business, MONDAY, "10:00"))
    assert status.open_now
    assert local_time.format_local(status.closes_at, business) == "2026-12-07T12:00"
    assert local_time.format_local(status.next_opening, business) == "2026-12-07T13:00"


def test_open_status_skips_a_closed_date_when_looking_for_the_next_opening(business):
    make_hours(business, weekday=0, opens="09:00", closes="17:00")
    make_closed_date(business, "2026-12-07")
    status = availability.open_status(business=business, now=local(business, MONDAY, "08:00"))
    assert not status.open_now
    assert local_time.format_local(status.next_opening, business) == "2026-12-14T09:00"


# --- through the tool -------------------------------------------------------------------------------------

def check(business, **arguments):
    return run_business_tool(business_id=business.id, call_id=None, name="check_availability", arguments=arguments)


def test_check_availability_uses_the_services_duration(business):
    make_hours(business, weekday=0, opens="09:00", closes="10:00")
    make_service(business, "Cleaning", minutes=60)
    result = check(business, date="2030-01-07", service="cleaning")
    assert result["service"] == "Cleaning"
    assert result["duration_minutes"] == 60
    assert result["slots"] == ["2030-01-07T09:00"]
    assert result["open_intervals"] == [{"opens": "09:00", "closes": "10:00", "spoken": "9 am to 10 am"}]


def test_check_availability_without_a_service_uses_30_minutes(business):
    make_hours(business, weekday=0, opens="09:00", closes="10:00")
    result = check(business, date="2030-01-07")
    assert result["duration_minutes"] == 30
    assert result["slots"] == ["2030-01-07T09:00", "2030-01-07T09:15", "2030-01-07T09:30"]


def test_check_availability_for_an_unknown_service_lists_the_real_ones(business):
    make_service(business, "Cleaning")
    make_service(business, "Whitening")
    result = check(business, date="2030-01-07", service="Massage")
    assert result == {"error": "There is no service called “Massage”. The services are: Cleaning, Whitening."}


def test_check_availability_says_a_past_date_is_in_the_past(business):
    make_hours(business, weekday=0, opens="09:00", closes="17:00")
    result = check(business, date="2020-01-06")
    assert result["slots"] == []
    assert result["message"].startswith("That date is in the past.")


def test_check_availability_on_a_closed_date_gives_the_reason_and_the_next_free_day(business):
    make_hours(business, weekday=0, opens="09:00", closes="10:00")
    make_closed_date(business, "2030-01-07", "New year inventory")
    result = check(business, date="2030-01-07")
    assert result["slots"] == []
    assert result["message"] == "Closed on Monday 7 January (New year inventory)."
    assert result["next_available"]["date"] == "2030-01-14"
    assert result["next_available"]["slots"][0] == "2030-01-14T09:00"


def test_check_availability_says_when_a_day_is_fully_booked(business):
    make_hours(business, weekday=0, opens="09:00", closes="10:00")
    make_appointment(business, local(business, dt.date(2030, 1, 7), "09:00"), minutes=60)
    result = check(business, date="2030-01-07")
    assert result["slots"] == []
    assert "fully booked" in result["message"]
