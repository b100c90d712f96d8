"""The Twilio REST stand-in, driven by the real `twilio` client (sync and async)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client
from twilio.rest.api.v2010.account.call import CallInstance

from voice.offline.twilio import TwilioStandin

TRANSFER = "<Response><Dial>+14155550199</Dial></Response>"


@pytest.fixture
def standin():
    with TwilioStandin() as s:
        yield s


@pytest.fixture
def client(standin):
    # Exactly what application code does with settings.TWILIO_API_BASE_URL:
    c = Client(standin.account_sid, standin.auth_token)
    c.api.base_url = standin.base_url
    return c


def test_update_with_twiml_reaches_the_standin_and_parses_into_a_call_instance(standin, client):
    sid = standin.add_call(to="+14155550100", from_="+14155550123")

    call = client.calls(sid).update(twiml=TRANSFER)

    assert isinstance(call, CallInstance)
    assert (call.sid, call.status, call.account_sid) == (sid, "in-progress", standin.account_sid)
    assert (call.to, call._from, call.direction, call.api_version) == ("+14155550100", "+14155550123", "inbound", "2010-04-01")
    assert call.uri == f"/2010-04-01/Accounts/{standin.account_sid}/Calls/{sid}.json"
    assert isinstance(call.date_created, datetime)
    [request] = standin.requests
    assert (request.method, request.path, request.call_sid) == ("POST", f"/2010-04-01/Accounts/{standin.account_sid}/Calls/{sid}.json", sid)
    assert request.form == {"Twiml": TRANSFER} and request.auth_ok and request.status == 200
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert standin.updates(sid) == [{"Twiml": TRANSFER}]


def test_hang_up_completes_the_call_and_a_second_update_gets_21220(standin, client):
    sid = standin.add_call()

    call = client.calls(sid).update(status="completed")

    assert call.status == "completed" and isinstance(call.end_time, datetime) and call.duration == "0"
    assert standin.requests[-1].form == {"Status": "completed"}
    with pytest.raises(TwilioRestException) as info:
        client.calls(sid).update(status="completed")
    assert (info.value.status, info.value.code) == (400, 21220)
    assert "Call is not in-progress. Cannot redirect." in info.value.msg
    assert client.calls(sid).fetch().status == "completed"


def test_unknown_call_is_a_twilio_404(standin, client):
    missing = "CA" + "0" * 32
    with pytest.raises(TwilioRestException) as info:
        client.calls(missing).update(twiml=TRANSFER)
    error = info.value
    assert (error.status, error.code) == (404, 20404)
    assert f"The requested resource /2010-04-01/Accounts/{standin.account_sid}/Calls/{missing}.json was not found" in error.msg
    assert standin.requests[-1].response["more_info"] == "https://www.twilio.com/docs/errors/20404"


def test_bad_credentials_are_a_twilio_401(standin):
    wrong = Client(standin.account_sid, "wrong-token")
    wrong.api.base_url = standin.base_url
    sid = standin.add_call()
    with pytest.raises(TwilioRestException) as info:
        wrong.calls(sid).update(status="completed")
    assert (info.value.status, info.value.code) == (401, 20003)
    assert standin.requests[-1].auth_ok is False and standin.calls[sid]["status"] == "in-progress"


def test_failure_modes(standin, client):
    sid = standin.add_call()
    standin.fail_next(status=500)
    with pytest.raises(TwilioRestException) as info:
        client.calls(sid).update(twiml=TRANSFER)
    assert info.value.status == 500
    assert client.calls(sid).update(twiml=TRANSFER).status == "in-progress"  # only the next one failed

    standin.fail_call(sid, times=2)
    for _ in range(2):
        with pytest.raises(TwilioRestException) as info:
            client.calls(sid).update(twiml=TRANSFER)
        assert (info.value.status, info.value.code) == (400, 21220)
    assert client.calls(sid).update(url="https://rx.example.com/next", method="POST").status == "in-progress"
    assert standin.updates(sid)[-1] == {"Url": "https://rx.example.com/next", "Method": "POST"}
    assert [r.status for r in standin.requests_for(sid)] == [500, 200, 400, 400, 200]


def test_far_end_hang_up_and_on_update_hook(standin, client):
    seen = []
    standin.on_update = lambda call_sid, form: seen.append((call_sid, form.get("Twiml")))
    sid = standin.add_call()
    client.calls(sid).update(twiml=TRANSFER)
    assert seen == [(sid, TRANSFER)]
    standin.end_call(sid)
    with pytest.raises(TwilioRestException) as info:
        client.calls(sid).update(twiml=TRANSFER)
    assert info.value.code == 21220


def test_outbound_create(standin):
    client = standin.client()
    call = client.calls.create(to="+14155550123", from_="+14155550100", twiml="<Response><Say>Hi</Say></Response>")
    assert re.fullmatch(r"CA[0-9a-f]{32}", call.sid) and call.status == "queued" and call.direction == "outbound-api"
    assert standin.requests[-1].status == 201 and call.sid in standin.calls


# twilio 9.13's AsyncTwilioHttpClient uses aiohttp.BasicAuth / auth=, both deprecated in aiohttp 3.14.
@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning")
async def test_async_client_path(standin):
    sid = standin.add_call()
    client = Client(standin.account_sid, standin.auth_token, http_client=AsyncTwilioHttpClient())
    client.api.base_url = standin.base_url
    try:
        call = await client.calls(sid).update_async(twiml=TRANSFER)
        assert isinstance(call, CallInstance) and call.status == "in-progress"
        call = await client.calls(sid).update_async(status="completed")
        assert call.status == "completed"
        with pytest.raises(TwilioRestException) as info:
            await client.calls("CA" + "f" * 32).update_async(status="completed")
        assert info.value.code == 20404
    finally:
        await client.http_client.close()
    assert [r.form for r in standin.requests_for(sid)] == [{"Twiml": TRANSFER}, {"Status": "completed"}]


async def test_async_with_serves_sync_clients_called_from_async_code():
    async with TwilioStandin() as standin:
        sid = standin.add_call()
        client = standin.client()
        # A blocking call made straight from the event loop must not deadlock the stand-in.
        assert client.calls(sid).update(twiml=TRANSFER).sid == sid
        call = await asyncio.to_thread(client.calls(sid).update, status="completed")
        assert call.status == "completed"
    assert standin.base_url is not None and standin._server is None


# --- phone numbers ---------------------------------------------------------------------------------------------

def test_available_numbers_search_by_area_code_through_the_sdk(standin, client):
    standin.add_available_number("+12125550110", locality="New York", region="NY")
    standin.add_available_number("+14155550110", locality="San Francisco", region="CA")

    found = client.available_phone_numbers("US").local.list(area_code="212", voice_enabled=True)

    assert [(n.phone_number, n.friendly_name, n.locality, n.region, n.iso_country) for n in found] == [
        ("+12125550110", "(212) 555-0110", "New York", "NY", "US")]
    assert standin.requests[-1].response["available_phone_numbers"][0]["capabilities"]["voice"] is True
    assert client.available_phone_numbers("US").local.list(area_code="999") == []


def test_available_numbers_in_a_country_without_stock_is_a_twilio_404(standin, client):
    from twilio.base.exceptions import TwilioException

    standin.add_available_number("+12125550110")
    with pytest.raises(TwilioException):
        client.available_phone_numbers("ZZ").local.list()
    assert (standin.requests[-1].status, standin.requests[-1].response["code"]) == (404, 20404)


def test_buying_a_number_applies_its_voice_configuration_and_takes_it_off_the_market(standin, client):
    standin.add_available_number("+12125550110")

    number = client.incoming_phone_numbers.create(
        phone_number="+12125550110", voice_url="https://rx.example.com/in/", voice_method="POST",
        voice_fallback_url="https://rx.example.com/fb/", status_callback="https://rx.example.com/st/")

    assert re.fullmatch(r"PN[0-9a-f]{32}", number.sid) and number.phone_number == "+12125550110"
    assert (number.voice_url, number.voice_method, number.voice_fallback_url, number.status_callback) == (
        "https://rx.example.com/in/", "POST", "https://rx.example.com/fb/", "https://rx.example.com/st/")
    assert number.account_sid == standin.account_sid and isinstance(number.date_created, datetime)
    assert standin.requests[-1].status == 201 and "+12125550110" not in standin.available
    with pytest.raises(TwilioRestException) as again:
        client.incoming_phone_numbers.create(phone_number="+12125550110")
    assert (again.value.status, again.value.code) == (400, 21422)


@pytest.mark.parametrize("params, code", [({"phone_number": "555-0110"}, 21421), ({"area_code": "533"}, 21452),
                                          ({"friendly_name": "nothing to buy"}, 21201)])
def test_a_purchase_twilio_would_refuse_is_refused_with_its_code(standin, client, params, code):
    standin.add_available_number("+12125550110")
    with pytest.raises(TwilioRestException) as info:
        client.incoming_phone_numbers.create(**params)
    assert (info.value.status, info.value.code) == (400, code)
    assert list(standin.available) == ["+12125550110"]


def test_the_account_numbers_list_pages_and_filters_by_phone_number(standin, client):
    for i in range(120):
        standin.add_incoming_number(f"+1646555{i:04d}")

    assert len(client.incoming_phone_numbers.list(page_size=50)) == 120
    assert [r.query.get("Page", "0") for r in standin.requests] == ["0", "1", "2"]
    [only] = client.incoming_phone_numbers.list(phone_number="+16465550042")
    assert only.phone_number == "+16465550042"
    assert standin.requests[-1].query["PhoneNumber"] == "+16465550042"


def test_updating_then_releasing_a_number(standin, client):
    sid = standin.add_incoming_number("+14155550101", VoiceUrl="https://old.example/")

    updated = client.incoming_phone_numbers(sid).update(voice_url="", status_callback="https://rx.example.com/st/")
    assert (updated.voice_url, updated.status_callback) == ("", "https://rx.example.com/st/")
    assert client.incoming_phone_numbers(sid).fetch().status_callback == "https://rx.example.com/st/"

    assert client.incoming_phone_numbers(sid).delete() is True
    assert standin.requests[-1].status == 204 and standin.number("+14155550101") is None
    with pytest.raises(TwilioRestException) as gone:
        client.incoming_phone_numbers(sid).delete()
    assert (gone.value.status, gone.value.code) == (404, 20404)


def test_number_routes_need_the_account_credentials(standin):
    standin.add_incoming_number("+14155550101")
    wrong = Client(standin.account_sid, "wrong-token")
    wrong.api.base_url = standin.base_url
    with pytest.raises(Exception):
        wrong.incoming_phone_numbers.list()
    assert (standin.requests[-1].status, standin.requests[-1].response["code"]) == (401, 20003)


def test_numbers_survive_a_restart_with_a_state_file(tmp_path):
    state = str(tmp_path / "twilio.json")
    with TwilioStandin() as first:
        first.load_state(state)
        first.seed_fictional_inventory(per_area=2)
        first.client().incoming_phone_numbers.create(phone_number="+12125550110")
    with TwilioStandin() as second:
        second.load_state(state)
        assert second.number("+12125550110") is not None and "+12125550110" not in second.available
        assert "+12125550111" in second.available
