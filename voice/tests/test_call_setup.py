"""A media stream's set-up never waits in line on Django's one shared thread-sensitive thread (where sync code
outside an HTTP request runs, one job at a time): calls arriving together are set up side by side. And a caller
whose socket is gone while agent audio is on its way does not turn into a failed call."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from calls.models import Call
from calls.services.customers import customer_record_call
from tests.factories import make_call
from voice.offline.realtime import Script
from voice.offline.simulator import new_sid
from voice.services import answer_incoming_call, open_media_stream
from voice.stream_tokens import issue_stream_token
from voice.tests.conftest import ACCOUNT_SID, HARBOR_SCRIPT
from voice.transports import TwilioTransport
from voice.twilio_stream import TwilioMediaStream

pytestmark = pytest.mark.django_db(transaction=True)


class BusySyncThread:
    """Keeps Django's shared thread-sensitive thread busy until released (as a slow sync job would)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.task: asyncio.Future | None = None

    async def __aenter__(self) -> BusySyncThread:
        entered = threading.Event()

        def hold() -> None:
            entered.set()
            self.release.wait(30)

        self.task = asyncio.ensure_future(sync_to_async(hold, thread_sensitive=True)())
        while not entered.is_set():
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.task


def start_frame(call: Call, stream_sid: str) -> str:
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
                       "start": {"accountSid": ACCOUNT_SID, "streamSid": stream_sid, "callSid": call.twilio_call_sid,
                                 "tracks": ["inbound"],
                                 "customParameters": {"call_id": str(call.id), "token": issue_stream_token(call)},
                                 "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


async def test_a_media_stream_greets_the_caller_while_djangos_sync_thread_is_busy(voice_settings, harbor, standin):
    standin.script = Script.from_obj(HARBOR_SCRIPT)
    call = await sync_to_async(make_call, thread_sensitive=False)(
        harbor, twilio_call_sid=new_sid("CA"), channel=Call.Channel.TWILIO)
    stream_sid = new_sid("MZ")
    socket = WebsocketCommunicator(TwilioMediaStream(), "/ws/twilio/media/")
    async with BusySyncThread():
        assert (await socket.connect())[0]
        await socket.send_to(text_data=start_frame(call, stream_sid))
        # The token, the business and the agent's greeting: all while that thread is held.
        first = json.loads(await socket.receive_from(timeout=10))
        assert (first["event"], first["streamSid"]) == ("media", stream_sid)
        await socket.send_to(text_data=json.dumps({"event": "stop", "sequenceNumber": "3", "streamSid": stream_sid}))
        await socket.wait(timeout=10)
    await socket.disconnect()



async def test_agent_audio_for_a_caller_who_is_gone_is_dropped_without_failing_the_call():
    sent: list[dict] = []

    async def send(message: dict) -> None:
        if message["type"] == "websocket.send" and sent:
            raise OSError("client disconnected")  # what uvicorn raises once the caller's socket is gone
        sent.append(message)

    transport = TwilioTransport(send, new_sid("MZ"), new_sid("CA"))
    await transport.send_audio("/w==")
    await transport.send_audio("/w==")  # the socket went meanwhile: no exception reaches the session
    await transport.send_mark("item:40")
    assert len(sent) == 1 and transport.closed


def returning_caller_on_a_plan(harbor):
    """A business on a metered plan and a caller who has called before: the common case."""
    from billing.models import BillingAccount
    from django.utils import timezone

    BillingAccount.objects.create(business=harbor, status="active", trial_minutes=0, plan_key="pro",
                                  current_period_start=timezone.now())
    earlier = make_call(harbor, from_number="+12025550143", twilio_call_sid=new_sid("CA"))
    customer_record_call(business_id=harbor.id, phone="+12025550143", call_id=earlier.id)


def test_answering_the_incoming_call_webhook_takes_seven_round_trips(harbor, django_assert_num_queries):
    returning_caller_on_a_plan(harbor)
    # The business with its billing account; in one transaction (BEGIN … COMMIT), the call's insert in a savepoint
    # (a webhook Twilio retries finds its call instead) and its search text.
    with django_assert_num_queries(7):
        twiml = answer_incoming_call(call_sid=new_sid("CA"), to_number=harbor.phone_number,
                                     from_number="+12025550143")
    assert "<Connect><Stream" in twiml


def test_opening_the_media_stream_takes_fourteen_round_trips(harbor, django_assert_num_queries):
    returning_caller_on_a_plan(harbor)
    call = make_call(harbor, from_number="+12025550143", twilio_call_sid=new_sid("CA"))
    # In one transaction (BEGIN … COMMIT): the claim, the caller's number, the caller's count. Then the business
    # with its hours, closed dates, services and FAQ; the caller's record and upcoming bookings; the call and its
    # billing account for the minutes left.
    with django_assert_num_queries(14):
        opened = open_media_stream(token=issue_stream_token(call), call_id=str(call.id),
                                   call_sid=call.twilio_call_sid)
    assert opened.grant.call_id == call.id and opened.allowance.seconds_left is None
