"""Real headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright's sync API."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from django.db import connections

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"  # screenshots, kept by CI
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium_page(*, args: tuple[str, ...] | list[str] = (), viewport: dict[str, int] | None = None,
                  cookies: list[dict[str, Any]] | None = None) -> Iterator[Any]:
    """A fresh browser and page; fails the test if the page raised a JavaScript error."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    # Playwright's sync API runs an event loop in this thread; the ORM calls made by the test itself are safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *args])
            context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
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
