"""A phone call that runs into the end of the free trial or of a hard-capped plan's minutes is ended politely at
the cap: the call session with the OpenAI Realtime stand-in, the real Twilio transport hanging up through the
Twilio REST stand-in, and the remaining minutes made seconds-sized by the data (minutes used, when the call
connected)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from billing.models import BillingAccount, UsageRecord
from billing.services.account import account_for_business
from billing.services.gate import call_allowance
from calls.models import Call, CallEvent
from tests.factories import make_call
from voice.session import CallSession
from voice.transports import TwilioTransport

pytestmark = pytest.mark.django_db(transaction=True)

STREAM_SID = "MZ" + "a" * 32
PRO_PRODUCT = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"


class SentFrames:
    """The media socket's sending side: what the session sends to Twilio."""

    def __init__(self) -> None:
        self.frames: list[dict] = []

    async def __call__(self, message: dict) -> None:
        self.frames.append(message)


def use_minutes(business, minutes: int) -> None:
    when = timezone.now() - dt.timedelta(hours=1)
    call = make_call(business, status="completed", finalized_at=when, ended_at=when, stream_started_at=when,
                     duration_seconds=minutes * 60)
    UsageRecord.objects.create(business=business, call=call, external_id=f"call_{call.id}", seconds=minutes * 60,
                               minutes=minutes, occurred_at=when, status="sent")


def subscribe(business, *, included: int, hard_cap: bool) -> None:
    account = account_for_business(business)
    now = timezone.now()
    BillingAccount.objects.filter(pk=account.pk).update(
        status="active", plan_key="starter", polar_product_id=PRO_PRODUCT, included_minutes=included,
        hard_cap=hard_cap, current_period_start=now - dt.timedelta(days=10),
        current_period_end=now + dt.timedelta(days=20), polar_subscription_id="sub_1")


def connected_call(business, twilio_standin, *, seconds_ago: int) -> Call:
    """A phone call whose media stream connected `seconds_ago` (as the consumer's claim records it)."""
    call_sid = twilio_standin.add_call(to=business.phone_number, from_="+12025550143")
    since = timezone.now() - dt.timedelta(seconds=seconds_ago)
    return make_call(business, from_number="+12025550143", twilio_call_sid=call_sid, status="in_progress",
                     answered_at=since, stream_started_at=since)


async def run_session(call: Call, *, timeout: float) -> tuple[CallSession, bool]:
    transport = TwilioTransport(SentFrames(), STREAM_SID, call.twilio_call_sid)
    session = CallSession(call_id=call.id, business_id=call.business_id, transport=transport,
                          caller_number=call.from_number)
    await session.start()
    try:
        await asyncio.wait_for(session.finished.wait(), timeout)
        ended = True
    except TimeoutError:
        ended = False
        await session.finish(status=Call.Status.COMPLETED, reason="test_over")
    return session, ended


def goodbye_requests(standin) -> list[str]:
    return [r["instructions"] for r in standin.last_session["responses"] if r.get("instructions")]


def test_a_call_that_crosses_the_end_of_the_free_trial_says_goodbye_and_is_hung_up_at_the_cap(
        voice_settings, harbor, standin, twilio_standin):
    # Two trial minutes, one used by an earlier call; this call connected 50 s ago: 5 s before its minute ends
    # by Twilio's count (which starts a moment before our stream).
    BillingAccount.objects.create(business=harbor, trial_minutes=2)
    use_minutes(harbor, 1)
    call = connected_call(harbor, twilio_standin, seconds_ago=50)

    session, ended = asyncio.run(run_session(call, timeout=15))

    assert ended, "the call was not ended at the cap"
    call.refresh_from_db()
    assert (call.status, call.end_reason) == ("completed", "billing_cap_reached")
    assert {"Status": "completed"}.items() <= twilio_standin.updates(call.twilio_call_sid)[-1].items()
    goodbye = goodbye_requests(standin)
    assert goodbye and "call minutes have run out" in goodbye[-1] and "say goodbye" in goodbye[-1]
    assert CallEvent.objects.filter(call=call, kind="hangup", payload__by="agent",
                                    payload__reason="billing_cap_reached").exists()
    # Ended within the minute that was already started: the trial is not overrun.
    assert (timezone.now() - call.stream_started_at).total_seconds() < 60


def test_a_call_that_crosses_a_hard_capped_plans_minutes_is_ended_at_the_cap(
        voice_settings, harbor, standin, twilio_standin):
    subscribe(harbor, included=100, hard_cap=True)
    use_minutes(harbor, 99)
    call = connected_call(harbor, twilio_standin, seconds_ago=50)

    _, ended = asyncio.run(run_session(call, timeout=15))

    assert ended
    call.refresh_from_db()
    assert (call.status, call.end_reason) == ("completed", "billing_cap_reached")


def test_a_plan_without_a_hard_cap_is_not_cut(voice_settings, harbor, standin, twilio_standin):
    subscribe(harbor, included=500, hard_cap=False)
    use_minutes(harbor, 900)
    call = connected_call(harbor, twilio_standin, seconds_ago=50)

    async def scenario():
        transport = TwilioTransport(SentFrames(), STREAM_SID, call.twilio_call_sid)
        session = CallSession(call_id=call.id, business_id=call.business_id, transport=transport)
        await session.start()
        async with asyncio.timeout(5):
            while not session._allowance_checked_at:  # the first check runs as the greeting starts
                await asyncio.sleep(0.01)
        deadline = session.allowance_deadline
        allowance = await database_sync_to_async(call_allowance)(call_id=call.id)
        await session.finish(status=Call.Status.COMPLETED, reason="caller_hung_up")
        return deadline, allowance

    deadline, allowance = asyncio.run(scenario())
    assert deadline is None and allowance.seconds_left is None
    call.refresh_from_db()
    assert call.end_reason == "caller_hung_up"
    assert twilio_standin.updates(call.twilio_call_sid) == []  # never hung up by us


def test_calls_running_at_once_share_the_last_minutes(harbor, twilio_standin):
    """Three trial minutes left and two calls connected: each holds the minute it is in, and the one free minute
    goes to the call that reaches the end of its minute first, so the trial is not overrun."""
    BillingAccount.objects.create(business=harbor, trial_minutes=3)
    first = connected_call(harbor, twilio_standin, seconds_ago=40)
    second = connected_call(harbor, twilio_standin, seconds_ago=10)
    now = timezone.now()
    first_left = call_allowance(call_id=first.id, now=now).seconds_left
    second_left = call_allowance(call_id=second.id, now=now).seconds_left
    assert first_left == pytest.approx(2 * 60 - 40 - 5, abs=1)  # its minute, then the free one
    assert second_left == pytest.approx(60 - 10 - 5, abs=1)  # only the minute it is in


def test_an_uncapped_call_reads_its_minutes_again_less_often_than_a_capped_one(settings):
    from billing.services.gate import CallAllowance

    settings.CALL_ALLOWANCE_RECHECK_SECONDS, settings.CALL_ALLOWANCE_UNCAPPED_RECHECK_SECONDS = 15, 60
    uncapped = CallSession(call_id=1, business_id=1, transport=TwilioTransport(SentFrames(), STREAM_SID, "CA1"),
                           allowance=CallAllowance(None))
    capped = CallSession(call_id=2, business_id=1, transport=TwilioTransport(SentFrames(), STREAM_SID, "CA2"),
                         allowance=CallAllowance(600.0, "billing_cap_reached"))
    start = uncapped.t0
    assert capped.allowance_recheck_due(capped.t0 + 16)
    assert not uncapped.allowance_recheck_due(start + 16)
    assert uncapped.allowance_recheck_due(start + 61)
