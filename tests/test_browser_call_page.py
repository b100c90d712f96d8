"""A call as its business owner reads it, in real headless Chromium: the call page's timeline in words and in the
order things happened, raw payloads behind a "details" disclosure, one name for the caller; and the test-call
page's live transcript, whose lines go where they were said whatever order their messages arrive in."""

import json
import re

import pytest

from calls.tests.test_people_read import SLOTS, availability_call
from tests.browser import ARTIFACTS, chromium_page
from tests.test_browser_dashboard import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FAKE_MIC_ARGS = ["--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream"]


def test_the_call_page_reads_as_the_call_happened_with_the_raw_payloads_behind_details(page, live_server, alice,
                                                                                     alices_business):
    call = availability_call(alices_business)
    sign_in(page, live_server.url, alice.email)

    page.goto(f"{live_server.url}/dashboard/calls/")
    listed = page.locator("table tbody tr").first.inner_text()
    page.goto(f"{live_server.url}/dashboard/calls/{call.id}/")
    assert page.locator("h1").inner_text().strip() == "Alex Morgan"
    assert "Alex Morgan" in listed and "Browser test call (by owner@demo.example)" in listed

    lines = [line.inner_text() for line in page.locator(".call-timeline > li").all()]
    text = "\n".join(lines)
    expected = ["I'd like a cleaning, please.",
                "Checked availability for Cleaning on Tuesday 8 December: 28 free times, 9 am to 3:45 pm",
                "Booked Cleaning for Alex Morgan on Monday 7 December at 8 am", "Anything else?",
                "No, that's all. Bye!", "Decided to end the call after saying goodbye (caller said goodbye)",
                "The receptionist hung up (caller said goodbye)"]
    positions = [text.index(words) for words in expected]
    assert positions == sorted(positions)
    assert sum("hung up" in line for line in lines) == 1  # the agent's and the session's records: one line
    # The machine's 28-slot array is not on the page until someone asks for it.
    assert SLOTS[0] not in text and "[" not in text
    availability = page.locator(".call-timeline > li", has_text="Checked availability")
    disclosure = availability.locator("details")
    assert not disclosure.locator("pre").first.is_visible()
    disclosure.locator("summary", has_text="details").click()
    raw = disclosure.inner_text()
    assert SLOTS[0] in raw and SLOTS[-1] in raw
    page.screenshot(path=str(ARTIFACTS / "call-page-timeline.png"), full_page=True)


def test_the_test_call_page_puts_the_callers_late_transcript_before_the_goodbye_it_led_to(live_server, alice,
                                                                                         alices_business):
    # The server's side of the socket is played here: the caller's goodbye is transcribed only after the agent
    # has already called end_call, so its message arrives last but happened first.
    messages = [{"type": "call", "call_id": 1}, {"type": "live"},
                {"type": "transcript", "speaker": "agent", "text": "Anything else?", "order": 3,
                 "interrupted": False, "at_ms": 15000},
                {"type": "tool", "name": "end_call", "at_ms": 21000},
                {"type": "transcript", "speaker": "caller", "text": "No, that's all. Bye!", "order": 4,
                 "interrupted": False, "at_ms": 20000}]

    def fake_server(ws):
        for message in messages:
            ws.send(json.dumps(message))

    with chromium_page(args=FAKE_MIC_ARGS) as page:
        sign_in(page, live_server.url, alice.email)
        page.route_web_socket(re.compile(r"/ws/browser/call/"), fake_server)
        page.goto(f"{live_server.url}/dashboard/test-call/")
        page.get_by_role("button", name="Start call").click()
        lines = page.locator("#test-call-transcript > li")
        lines.nth(2).wait_for(timeout=10_000)
        said = lines.all_inner_texts()
        page.screenshot(path=str(ARTIFACTS / "test-call-live-order.png"), full_page=True)
    assert [next(w for w in ("Anything else?", "No, that's all. Bye!", "ending the call") if w in line)
            for line in said] == ["Anything else?", "No, that's all. Bye!", "ending the call"]
