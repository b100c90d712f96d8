"""Real headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright's sync API."""

from __future__ import annotations

import os
import shutil
import subprocess
import wave
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from django.db import connections

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"  # screenshots, kept by CI
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium_page(*, args: tuple[str, ...] | list[str] = (), viewport: dict[str, int] | None = None,
                  cookies: list[dict[str, Any]] | None = None, timezone_id: str | None = None) -> Iterator[Any]:
    """A fresh browser and page; fails the test if the page raised a JavaScript error. `timezone_id` is the time
    zone the browser reports (Intl), as a person's own computer would."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    # Playwright's sync API runs an event loop in this thread; the ORM calls made by the test itself are safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *args])
            context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900},
                                          **({"timezone_id": timezone_id} if timezone_id else {}))
            if cookies:
                context.add_cookies(cookies)
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            try:
                yield page
            finally:
                # The connection the test opened under Playwright's loop must go before the test database does.
                connections.close_all()
                browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    assert errors == [], f"JavaScript errors on the page: {errors}"


def spoken_wav(directory: Path, text: str, lead_silence_s: float) -> tuple[Path, float]:
    """`text` spoken by espeak-ng as 48 kHz mono PCM16, after `lead_silence_s` and before 2 s of silence.
    Returns the file and how long the speech itself lasts."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: `make test` installs it (apt-get install espeak-ng sox)")
    raw, padded = directory / "speech-raw.wav", directory / "caller.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    # espeak peaks at full scale: -3 dB keeps the resampler from clipping.
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(padded), "gain", "-n", "-3",
                    "pad", str(lead_silence_s), "2"], check=True)
    with wave.open(str(raw)) as speech:
        return padded, speech.getnframes() / speech.getframerate()
