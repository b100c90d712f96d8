"""A browser test call in real headless Chromium: its fake microphone plays a WAV spoken by espeak-ng, through
the page's AudioWorklets and /ws/browser/call/ on daphne, to the OpenAI Realtime stand-in and back."""

from __future__ import annotations

import re

import pytest
from django.conf import settings as django_settings

from calls.models import Call, CallEvent, TranscriptEntry
from tests.browser import ARTIFACTS, chromium_page, spoken_wav
from voice.offline.realtime import Script
from voice.tests.conftest import start_asgi_server, stop_process

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CALLER_SAYS = "What are your opening hours?"
GREETING = "Harbor Dental, hello!"
ANSWER = "We're open eight to five."
LEAD_SILENCE_S = 3.0  # the greeting (a tone of about 1.4 s) ends well before the caller speaks
# A fake microphone (and, unless a test says otherwise, a granted permission prompt) for the test-call page.
FAKE_MIC_ARGS = ["--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream"]


@pytest.fixture
def server(harbor, standin, twilio_standin):
    # The page, its scripts and worklets come from daphne itself (static files through finders: no collectstatic).
    live = start_asgi_server("daphne", standin=standin, twilio_standin=twilio_standin,
                             extra_env={"WHITENOISE_USE_FINDERS": "true"})
    yield live
    stop_process(live.process)


@pytest.fixture
def browser_page(request, tmp_path, server, client, harbor):
    """Chromium signed in as Harbor's owner, its microphone saying CALLER_SAYS after a silence of
    LEAD_SILENCE_S (or the indirect parameter) from the moment the page opens it."""
    wav, speech_s = spoken_wav(tmp_path, CALLER_SAYS, getattr(request, "param", LEAD_SILENCE_S))
    with chromium_page(args=[*FAKE_MIC_ARGS, f"--use-file-for-fake-audio-capture={wav}%noloop"],
                       cookies=[session_cookie(client, harbor, server.base_url)]) as page:
        yield page, speech_s


def session_cookie(client, business, url: str) -> dict:
    """The session cookie of the business's owner, signed in, for the browser."""
    client.force_login(business.memberships.get().user)
    return {"name": django_settings.SESSION_COOKIE_NAME, "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
            "url": url}


def played_ms(page) -> int:
    return int(page.get_attribute("#test-call", "data-played-ms"))


def test_a_browser_test_call_plays_the_greeting_transcribes_the_caller_and_is_recorded(browser_page, server,
                                                                                      standin, harbor):
    page, speech_s = browser_page
    standin.script = Script.from_obj({"greeting": GREETING, "turns": [{"caller": CALLER_SAYS, "agent": ANSWER}],
                                      "default_agent": "Sorry, could you say that again?"})
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(server.base_url + "/dashboard/test-call/")
    assert page.get_attribute("#test-call", "data-status") == "idle"

    page.get_by_role("button", name="Start call").click()
    page.wait_for_selector("#test-call[data-status=live]", timeout=10_000)
    transcript = page.locator("#test-call-transcript")
    transcript.get_by_text(GREETING).wait_for(timeout=10_000)
    # The greeting really plays: the player worklet renders it (its counter is never set by this test).
    page.wait_for_function("() => +document.getElementById('test-call').dataset.playedMs >= 1000", timeout=10_000)

    transcript.get_by_text(CALLER_SAYS).wait_for(timeout=15_000)
    transcript.get_by_text(ANSWER).wait_for(timeout=10_000)
    record = standin.last_session
    generated_ms = sum(record["audio_ms_by_item"].values())
    page.wait_for_function(f"() => +document.getElementById('test-call').dataset.playedMs >= {generated_ms - 100}",
                           timeout=10_000)
    assert re.fullmatch(r"\d+ ms", page.inner_text("#test-call-latency-last"))
    page.screenshot(path=str(ARTIFACTS / "browser-test-call-live.png"), full_page=True)

    page.get_by_role("button", name="Hang up").click()
    page.wait_for_selector("#test-call[data-status=ended]", timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "browser-test-call-ended.png"), full_page=True)
    assert played_ms(page) <= generated_ms + 50  # never more than the agent said

    # What reached OpenAI is the spoken sentence at 24 kHz, with its real length (the VAD adds 300 ms of
    # padding before and 500 ms of silence after it).
    assert record["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    turn = record["caller_turns"][0]
    voiced_s = (turn["audio_end_ms"] - turn["audio_start_ms"] - 800) / 1000
    assert abs(voiced_s - speech_s) < 0.6, (voiced_s, speech_s)
    assert len(record["caller_turns"]) == 1

    call = Call.objects.get(id=int(page.get_attribute("#test-call", "data-call-id")))
    assert (call.business, call.channel, call.status, call.end_reason) == (harbor, "browser", "completed",
                                                                           "caller_hung_up")
    assert list(TranscriptEntry.objects.filter(call=call).values_list("speaker", "text")) == [
        ("agent", GREETING), ("caller", CALLER_SAYS), ("agent", ANSWER)]
    # The page echoed every mark once its audio had played, so the caller's turn was no barge-in.
    assert not CallEvent.objects.filter(call=call, kind="barge_in").exists()
    assert CallEvent.objects.filter(call=call, kind="latency").exists()

    # The call is in the calls list, and its page (linked from the test-call page) shows the transcript.
    page.get_by_role("link", name="open this call").click()
    page.wait_for_url(f"**/dashboard/calls/{call.id}/")
    assert CALLER_SAYS in page.content() and ANSWER in page.content()
    page.screenshot(path=str(ARTIFACTS / "browser-test-call-detail.png"), full_page=True)
    page.goto(server.base_url + "/dashboard/calls/")
    assert page.locator(f"a[href='/dashboard/calls/{call.id}/']").count() >= 1


def test_a_browser_test_call_on_gpt_live_is_answered_recorded_and_closed(browser_page, server, standin, harbor):
    """The same page and socket, the business on the GPT-Live engine: PCM16 24 kHz both ways, turns from its
    transcript fragments, usage from session.closed."""
    harbor.voice_engine = "live"
    harbor.save(update_fields=["voice_engine"])
    page, _ = browser_page
    standin.script = Script.from_obj({"greeting": GREETING, "turns": [{"caller": CALLER_SAYS, "agent": ANSWER}],
                                      "default_agent": "Sorry, could you say that again?"})
    page.goto(server.base_url + "/dashboard/test-call/")
    page.get_by_role("button", name="Start call").click()
    page.wait_for_selector("#test-call[data-status=live]", timeout=10_000)
    page.wait_for_function("() => +document.getElementById('test-call').dataset.playedMs >= 1000", timeout=10_000)
    transcript = page.locator("#test-call-transcript")
    transcript.get_by_text(CALLER_SAYS).wait_for(timeout=15_000)
    transcript.get_by_text(ANSWER).wait_for(timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "browser-test-call-gpt-live.png"), full_page=True)
    page.get_by_role("button", name="Hang up").click()
    page.wait_for_selector("#test-call[data-status=ended]", timeout=10_000)

    call = Call.objects.get(id=int(page.get_attribute("#test-call", "data-call-id")))
    assert (call.channel, call.status, call.engine) == ("browser", "completed", "live")
    assert list(TranscriptEntry.objects.filter(call=call).values_list("speaker", "text")) == [
        ("agent", GREETING), ("caller", CALLER_SAYS), ("agent", ANSWER)]
    record = standin.last_session
    assert record["protocol"] == "live"
    assert record["session"]["audio"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert record["closed_reason"] == "close_requested" and call.voice_seconds > 0
    # The page's marks came back as it played: the caller's turn was no barge-in.
    assert not CallEvent.objects.filter(call=call, kind="barge_in").exists()


LONG_GREETING = ("Thank you for calling Harbor Dental. We are a family practice in the heart of the city, and we "
                 "are always happy to help with cleanings, fillings and whitening.")


@pytest.mark.parametrize("browser_page", [1.5], indirect=True)
def test_talking_over_the_greeting_stops_its_playback_at_once(browser_page, server, standin):
    page, _ = browser_page
    standin.script = Script.from_obj({"greeting": LONG_GREETING, "turns": [{"caller": CALLER_SAYS, "agent": ANSWER}]})
    page.goto(server.base_url + "/dashboard/test-call/")
    page.get_by_role("button", name="Start call").click()
    transcript = page.locator("#test-call-transcript")
    transcript.get_by_text(ANSWER).wait_for(timeout=15_000)
    record = standin.last_session
    [truncation] = record["truncations"]
    answer_ms = sum(ms for item, ms in record["audio_ms_by_item"].items() if item != truncation["item_id"])
    heard_ms = truncation["audio_end_ms"]
    page.wait_for_function(
        f"() => +document.getElementById('test-call').dataset.playedMs >= {heard_ms + answer_ms - 100}",
        timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "browser-test-call-barge-in.png"), full_page=True)
    page.get_by_role("button", name="Hang up").click()
    page.wait_for_selector("#test-call[data-status=ended]", timeout=10_000)

    # OpenAI was told what the page had played when the caller spoke, well short of what it had generated
    # (the stand-in generates three times faster than real time)...
    assert truncation["accepted"] and 0 < heard_ms < truncation["generated_ms"] - 1000, truncation
    # ...and the page stopped the greeting right there: besides the answer it played at most the audio between
    # its last echoed mark and the clear (one 100 ms chunk, plus the round trip).
    assert played_ms(page) <= heard_ms + answer_ms + 250
    call = Call.objects.get(id=int(page.get_attribute("#test-call", "data-call-id")))
    greeting = TranscriptEntry.objects.get(call=call, order=1)
    assert greeting.interrupted and LONG_GREETING.startswith(greeting.text)  # cut where the response was cancelled
    assert CallEvent.objects.get(call=call, kind="barge_in").payload["heard_ms"] == heard_ms
    assert "interrupted" in page.inner_text("#test-call-transcript")


def test_a_denied_microphone_is_explained_on_the_page(server, client, harbor):
    # A fake device but no fake permission prompt: headless Chromium denies the microphone.
    with chromium_page(args=[a for a in FAKE_MIC_ARGS if a != "--use-fake-ui-for-media-stream"],
                       cookies=[session_cookie(client, harbor, server.base_url)]) as page:
        page.goto(server.base_url + "/dashboard/test-call/")
        page.get_by_role("button", name="Start call").click()
        page.wait_for_selector("#test-call[data-status=error]", timeout=10_000)
        assert "Microphone permission denied" in page.inner_text("#test-call-alert")
        assert page.is_enabled("#test-call-start") and not page.is_enabled("#test-call-hangup")
    assert not Call.objects.exists()


RESAMPLING_PROBE = """async () => {
  // The page's worklets in a 48 kHz context, the path of browsers that refuse a 24 kHz one.
  const capture = async (frequency) => {
    const ctx = new OfflineAudioContext(1, 48000, 48000);
    await ctx.audioWorklet.addModule("/static/voice/mic_worklet.js");
    const node = new AudioWorkletNode(ctx, "pcm16-capture", {processorOptions: {targetRate: 24000, frameSamples: 960}});
    const frames = [];
    node.port.onmessage = (e) => frames.push(new Int16Array(e.data.pcm));
    const tone = new OscillatorNode(ctx, {frequency});
    tone.connect(node).connect(ctx.destination);
    tone.start();
    await ctx.startRendering();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const pcm = frames.flatMap((f) => Array.from(f)).slice(2400);  // past the filter's settling
    let crossings = 0, squares = 0;
    for (let i = 1; i < pcm.length; i++) {
      if ((pcm[i - 1] < 0) !== (pcm[i] < 0)) crossings++;
      squares += (pcm[i] / 32768) ** 2;
    }
    return {samples: frames.length * 960, hz: crossings / 2 / (pcm.length / 24000),
            rms: Math.sqrt(squares / pcm.length)};
  };
  const play = async () => {
    const ctx = new OfflineAudioContext(1, 24000, 48000);  // 0.5 s
    await ctx.audioWorklet.addModule("/static/voice/player_worklet.js");
    const node = new AudioWorkletNode(ctx, "pcm16-player", {numberOfInputs: 0, outputChannelCount: [1],
                                                            processorOptions: {sourceRate: 24000}});
    const marks = [];
    node.port.onmessage = (e) => { if (e.data.type === "mark") marks.push([e.data.name, e.data.playedMs]); };
    const chunk = () => {
      const pcm = new Int16Array(2400);  // 100 ms of 440 Hz at 24 kHz
      for (let i = 0; i < pcm.length; i++) pcm[i] = Math.round(8000 * Math.sin(2 * Math.PI * 440 * i / 24000));
      return pcm.buffer;
    };
    node.port.postMessage({type: "audio", pcm: chunk()});
    node.port.postMessage({type: "mark", name: "a:100"});
    node.port.postMessage({type: "audio", pcm: chunk()});
    node.port.postMessage({type: "mark", name: "a:200"});
    node.connect(ctx.destination);
    await new Promise((resolve) => setTimeout(resolve, 100));  // the messages reach the worklet first
    const out = (await ctx.startRendering()).getChannelData(0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    let last = -1;
    for (let i = 0; i < out.length; i++) if (Math.abs(out[i]) > 1e-4) last = i;
    return {marks, sounding_ms: (last + 1) / 48};
  };
  return {speech: await capture(440), hiss: await capture(15000), playback: await play()};
}"""


def test_the_worklets_resample_when_the_audio_context_runs_at_48_khz(live_server):
    with chromium_page(args=FAKE_MIC_ARGS) as page:
        page.goto(live_server.url + "/healthz/")  # a page of our origin: worklets need a secure context
        result = page.evaluate(RESAMPLING_PROBE)
    speech, hiss, playback = result["speech"], result["hiss"], result["playback"]
    assert 23_000 <= speech["samples"] <= 24_000  # one second of 48 kHz input gives a second at 24 kHz
    assert abs(speech["hz"] - 440) < 5 and speech["rms"] > 0.5
    assert hiss["rms"] < speech["rms"] / 10  # above the new Nyquist frequency: filtered, not folded back
    assert [name for name, _ in playback["marks"]] == ["a:100", "a:200"]
    assert [ms for _, ms in playback["marks"]] == [100, 200]  # at 48 kHz: each mark once its audio was rendered
    assert abs(playback["sounding_ms"] - 200) < 5


def test_the_page_shows_the_minutes_left_and_explains_a_call_ended_when_they_run_out(tmp_path, client, harbor,
                                                                                    standin, twilio_standin):
    from django.utils import timezone

    from tests.factories import make_call

    now = timezone.now()
    make_call(harbor, channel="browser", status="completed", started_at=now, answered_at=now, stream_started_at=now,
              ended_at=now, finalized_at=now, duration_seconds=52)  # 8 s of today's minute left
    standin.script = Script.from_obj({"greeting": GREETING, "default_agent": "Sorry, I have to go. Goodbye!"})
    live = start_asgi_server("daphne", standin=standin, twilio_standin=twilio_standin,
                             extra_env={"WHITENOISE_USE_FINDERS": "true", "BROWSER_CALL_DAILY_MINUTES": "1"})
    wav, _ = spoken_wav(tmp_path, CALLER_SAYS, 30)  # the caller stays silent
    try:
        with chromium_page(args=[*FAKE_MIC_ARGS, f"--use-file-for-fake-audio-capture={wav}%noloop"],
                           cookies=[session_cookie(client, harbor, live.base_url)]) as page:
            page.goto(live.base_url + "/dashboard/test-call/")
            assert "Less than a minute of today's 1 test-call minutes left." in page.inner_text("#test-call-minutes")
            assert page.get_attribute("#test-call", "data-seconds-left") == "8"
            page.get_by_role("button", name="Start call").click()
            page.wait_for_selector("#test-call[data-status=ended]", timeout=20_000)
            assert "test-call minutes are used up" in page.inner_text("#test-call-alert")
            # The page asked the server again once the call ended: the call's seconds are gone from today's time.
            page.wait_for_function("() => +document.getElementById('test-call').dataset.secondsLeft < 8",
                                   timeout=5_000)
            page.screenshot(path=str(ARTIFACTS / "browser-test-call-quota.png"), full_page=True)
    finally:
        stop_process(live.process)
    call = Call.objects.exclude(duration_seconds=52).get()
    assert (call.status, call.end_reason) == ("completed", "test_call_quota_reached")
