"""Demo mode: without OPENAI_API_KEY the run command starts the local stand-in, points the product at it and
says so on every page; the demo script fits the seeded demo business."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Business, OpeningHours
from calls.models import Appointment, Call, Message
from tests.browser import ARTIFACTS, chromium_page, spoken_wav
from tests.factories import make_closed_date
from twilio.rest import Client
from voice.offline.realtime import RealtimeStandin, Script, load_script
from voice.offline.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from voice.supervisor import run_supervisor
from voice.tests.conftest import free_port, kill_group

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "voice" / "fixtures").glob("*.json"))
DEMO_SCRIPT = ROOT / "voice" / "fixtures" / "standin_demo.json"
BANNER = "replies are simulated by a local stand-in; no calls reach OpenAI"


# --- the banner ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["/", "/accounts/login/"])
def test_demo_mode_shows_the_banner_on_every_page(db, client, settings, url):
    settings.DEMO_MODE = True
    page = client.get(url).content.decode()
    assert BANNER in page
    assert 'class="demo-banner" role="note"' in page


def test_demo_mode_shows_the_banner_to_a_signed_in_owner(client, settings, alice, alices_business):
    settings.DEMO_MODE = True
    client.force_login(alice)
    assert BANNER in client.get("/dashboard/").content.decode()


@pytest.mark.parametrize("url", ["/", "/accounts/login/"])
def test_without_demo_mode_there_is_no_banner(db, client, settings, url):
    settings.DEMO_MODE = False
    page = client.get(url).content.decode()
    assert BANNER not in page and "demo-banner" not in page


# --- the demo script -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", FIXTURES, ids=[p.name for p in FIXTURES])
def test_every_stand_in_fixture_script_loads(path):
    script = load_script(path)
    assert isinstance(script, Script) and script.turns


def test_the_demo_script_asks_the_supervisor_to_book_and_ends_the_call():
    script = load_script(DEMO_SCRIPT)
    assert [t.tool["name"] if t.tool else None for t in script.turns] == [None, "ask_supervisor", "end_call"]
    # What the summary says comes from the call it summarises, never from the script.
    assert script.summary is not None and script.summary.document["outcome"] == "{call.outcome}"
    assert script.summary.document["caller_name"] == "{call.caller_name}"


@pytest.fixture
def demo_business(db) -> Business:
    call_command("seed_demo", stdout=open(os.devnull, "w"))
    return Business.objects.get(name="Harbor Dental")


@pytest.fixture
def demo_standin(settings):
    standin = RealtimeStandin(script=str(DEMO_SCRIPT), port=0).start_in_thread()
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = standin.base_url, "demo-mode-local-standin"
    yield standin
    standin.stop()


def demo_booking_request() -> str:
    return json.loads(DEMO_SCRIPT.read_text())["turns"][1]["tool"]["arguments"]["request"]


@pytest.mark.parametrize("tomorrow_open", [True, False], ids=["tomorrow-open", "tomorrow-closed"])
def test_the_demo_script_finds_a_cleaning_and_leaves_a_message_as_a_test_call_cannot_book(
        demo_business, demo_standin, tomorrow_open):
    tomorrow = timezone.localdate(timezone=demo_business.tzinfo) + dt.timedelta(days=1)
    if tomorrow_open and tomorrow.weekday() == 6:  # the demo practice is closed on Sundays
        OpeningHours.objects.create(business=demo_business, weekday=6, opens=dt.time(9), closes=dt.time(13))
    if not tomorrow_open:
        make_closed_date(demo_business, tomorrow.isoformat(), reason="Staff training")
    call = Call.objects.create(business=demo_business, channel=Call.Channel.BROWSER, from_number="Demo Owner",
                               status=Call.Status.IN_PROGRESS, answered_at=timezone.now())

    result = run_supervisor(call_id=call.id, request=demo_booking_request(), conversation=[])

    # A browser test call has no caller number: like a withheld caller, it books nothing and gets a message.
    assert not Appointment.objects.filter(business=demo_business).exists()
    message = Message.objects.get(business=demo_business)
    assert (message.name, message.callback_number, message.call) == ("Alex Morgan", "+14155550123", call)
    [availability] = [e["payload"]["result"] for e in result.events
                      if e["payload"].get("step") == "tool" and e["payload"]["name"] == "check_availability"]
    day = availability if availability["slots"] else availability["next_available"]
    first_free = dt.datetime.fromisoformat(day["slots"][0])
    assert (first_free.date() == tomorrow) is tomorrow_open
    assert first_free.date() > tomorrow or tomorrow_open
    # Said and written as a person would: the day and the time in the business's words, never "2026-12-08T08:00".
    slot = f"{day['date_spoken']} at {day['slots_spoken'][0]}"
    assert message.body == f"Would like a cleaning on {slot}. Left in demo mode."
    assert result.ok and result.answer == (
        f"I couldn't book it on this call, Alex, but the first free cleaning is on {slot}: I've left a message for "
        "the team to book it and call you back.")


# --- the run command -------------------------------------------------------------------------------------------

def wait_for(url: str, deadline: float, process: subprocess.Popen, log: Path) -> httpx.Response:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"scripts/run.sh exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.25)
    pytest.fail(f"{url} did not answer in time:\n{log.read_text(errors='replace')}")


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def newcomer_env(tmp_path: Path, port: int, standin_port: int, twilio_port: int | None = None) -> dict[str, str]:
    """What a newcomer has: no OpenAI key, no Twilio account, no database or Redis settings, no DEBUG, no secret key."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path)), "LANG": "C.UTF-8",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}", "PORT": str(port),
            "DEMO_STANDIN_PORT": str(standin_port), "DEMO_TWILIO_STANDIN_PORT": str(twilio_port or free_port()),
            "DEMO_TWILIO_STATE": str(tmp_path / "twilio-standin.json")}


@contextmanager
def run_command(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`make run` as a newcomer starts it (scripts/run.sh, nothing configured): its base URL and its log, once
    `/healthz/` answers; the whole process group is stopped after."""
    port, standin_port = free_port(), free_port()
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, env=newcomer_env(tmp_path, port, standin_port),
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/healthz/", time.monotonic() + 50, process, log)
        yield base, log
    finally:
        kill_group(process)


@contextmanager
def demo_owner_with_a_microphone(base: str, wav: Path) -> Iterator[Any]:
    """Chromium whose microphone plays `wav`, signed in as the seeded demo owner, on the dashboard."""
    mic = ["--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
           "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}%noloop"]
    with chromium_page(args=mic) as page:
        page.goto(f"{base}/accounts/login/")
        page.fill("input[name=login]", "owner@demo.example")
        page.fill("input[name=password]", "demo-receptionist-2026")
        page.locator("form button[type=submit]").last.click()
        page.wait_for_url("**/dashboard/")
        yield page


def warnings_in(log: Path) -> list[str]:
    """Lines of a run's log at WARNING or above."""
    return [line for line in log.read_text(errors="replace").splitlines()
            if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)]


@pytest.mark.e2e
def test_the_run_command_without_an_openai_key_starts_the_stand_in_and_serves_in_demo_mode(tmp_path):
    port, standin_port, twilio_port = free_port(), free_port(), free_port()
    log = tmp_path / "run.log"
    env = newcomer_env(tmp_path, port, standin_port, twilio_port)
    with open(log, "wb") as out:
        process = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 50
        assert wait_for(f"http://127.0.0.1:{port}/healthz/", deadline, process, log).text == "ok"
        standin = httpx.get(f"http://127.0.0.1:{standin_port}/standin/health", timeout=2)
        assert standin.json() == {"status": "ok"}
        models = httpx.get(f"http://127.0.0.1:{standin_port}/v1/models", timeout=2,
                           headers={"Authorization": "Bearer demo-mode-local-standin"})
        assert models.status_code == 200
        assert BANNER in httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
        assert "Demo mode" in log.read_text()
        # No TWILIO_ACCOUNT_SID either: the Twilio stand-in sells fictional numbers to the portal.
        assert "phone numbers come from the local Twilio stand-in" in log.read_text()
        twilio = Client(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)
        twilio.api.base_url = f"http://127.0.0.1:{twilio_port}"
        for_sale = twilio.available_phone_numbers("US").local.list(area_code="212", limit=5)
        assert for_sale and all(n.phone_number.startswith("+121255501") for n in for_sale)

        # Stopping the run command (only its own process) stops the stand-in and the server with it.
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        time.sleep(0.2)
        assert refuses_connections(standin_port), log.read_text(errors="replace")
        assert refuses_connections(twilio_port), log.read_text(errors="replace")
        assert refuses_connections(port), log.read_text(errors="replace")
    finally:
        kill_group(process)


DEMO_CALLER_SAYS = "Hi, what are your opening hours?"


@pytest.mark.e2e
@pytest.mark.browser
def test_a_newcomers_first_browser_test_call_works_in_demo_mode(tmp_path):
    """`make run` with nothing configured, then the demo owner signs in and talks to the receptionist."""
    script = json.loads(DEMO_SCRIPT.read_text())
    first_turn = script["turns"][0]
    # The script speaks for the seeded business, from what our server tells the stand-in about it.
    greeting = "Thanks for calling Harbor Dental, this is the front desk. How can I help?"
    hours = "We're open Monday to Friday, 8 am to noon and 1 pm to 5 pm; and Saturday, 9 am to 1 pm."
    # The caller speaks once the (espeak-spoken) greeting has played.
    wav, _ = spoken_wav(tmp_path, DEMO_CALLER_SAYS, lead_silence_s=7.0)
    with run_command(tmp_path) as (base, log):
        with demo_owner_with_a_microphone(base, wav) as page:
            assert BANNER in page.inner_text("body")

            page.goto(f"{base}/dashboard/test-call/")
            page.get_by_role("button", name="Start call").click()
            transcript = page.locator("#test-call-transcript")
            transcript.get_by_text(greeting).wait_for(timeout=15_000)
            transcript.get_by_text(first_turn["caller"]).wait_for(timeout=30_000)
            transcript.get_by_text(hours).wait_for(timeout=15_000)
            assert int(page.get_attribute("#test-call", "data-played-ms")) > 1000  # the greeting was heard
            page.screenshot(path=str(ARTIFACTS / "demo-test-call.png"), full_page=True)
            page.get_by_role("button", name="Hang up").click()
            page.wait_for_selector("#test-call[data-status=ended]", timeout=10_000)

            # The call is recorded, and its summary (the stand-in's, run in-process) arrives on its page.
            page.get_by_role("link", name="open this call").click()
            page.wait_for_url("**/dashboard/calls/*/")
            main = page.locator("main")
            for text in [first_turn["caller"], hours]:
                assert text in main.inner_text()
            # Only the opening hours were asked: the summary claims no booking and no message.
            main.get_by_text("Demo call to Harbor Dental (simulated by the local stand-in). No appointment was "
                             "booked and no message was left.").wait_for(timeout=20_000)
            page.screenshot(path=str(ARTIFACTS / "demo-call-detail.png"), full_page=True)
        # A clean run: nothing warns or fails (the call's end used to hit "database is locked" on SQLite).
        noisy = [line for line in warnings_in(log) if "/favicon.ico" not in line]
        assert not noisy, log.read_text(errors="replace")


def spoken_turns_wav(directory: Path, turns: list[tuple[float, str]]) -> Path:
    """One microphone recording: each (silence before it, text) spoken by espeak-ng in turn, 48 kHz mono PCM16."""
    parts = []
    for n, (silence_s, text) in enumerate(turns):
        raw, padded = directory / f"turn-{n}-raw.wav", directory / f"turn-{n}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(padded), "gain", "-n", "-3",
                        "pad", str(silence_s), "0"], check=True)
        parts.append(str(padded))
    caller = directory / "caller-turns.wav"
    subprocess.run(["sox", *parts, str(caller), "pad", "0", "3"], check=True)
    return caller


@pytest.mark.e2e
@pytest.mark.browser
def test_a_demo_booking_under_the_run_command_logs_no_warning(tmp_path):
    """`make run`, then a whole demo call: hours, a booking (the supervisor, queued without Redis), goodbye. The
    task broker used to warn about a missing host on every hand-off, and the stand-in about a missing template
    value on every booking."""
    turns = json.loads(DEMO_SCRIPT.read_text())["turns"]
    # Each turn waits until the agent's (espeak-spoken, real-time) answer to the one before has played.
    wav = spoken_turns_wav(tmp_path, [(7.0, turns[0]["caller"]), (12.0, "I'd like to book a cleaning, please."),
                                      (24.0, turns[2]["caller"])])
    with run_command(tmp_path) as (base, log):
        with demo_owner_with_a_microphone(base, wav) as page:
            page.goto(f"{base}/dashboard/test-call/")
            page.get_by_role("button", name="Start call").click()
            transcript = page.locator("#test-call-transcript")
            transcript.get_by_text("I couldn't book it on this call, Alex, but the first free cleaning is on",
                                   exact=False).wait_for(timeout=60_000)
            transcript.get_by_text("Thanks for calling Harbor Dental, goodbye!", exact=False).wait_for(timeout=45_000)
            page.wait_for_selector("#test-call[data-status=ended]", timeout=15_000)
            page.screenshot(path=str(ARTIFACTS / "demo-booking-call.png"), full_page=True)
        # The browser's favicon request is a page-layout matter (issue 15 has its own item for it).
        noisy = [line for line in warnings_in(log) if "/favicon.ico" not in line]
        assert not noisy, log.read_text(errors="replace")
