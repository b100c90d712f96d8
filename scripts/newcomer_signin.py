"""Sign in through the login form as a person would and load the dashboard (standard library only).

Usage: python3 scripts/newcomer_signin.py BASE_URL EMAIL PASSWORD
Exits 0 when the dashboard of the signed-in business is shown; otherwise prints what went wrong and exits 1.
Used by scripts/newcomer_check.sh against a fresh clone's `make run`, whose venv this must not depend on.
"""

from __future__ import annotations

import http.cookiejar
import sys
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser

TIMEOUT_S = 30


class FormFields(HTMLParser):
    """The input names and values of the page's forms (the login page has one POST form)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.in_post_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.in_post_form = (attributes.get("method") or "").lower() == "post"
        elif tag == "input" and self.in_post_form and attributes.get("name"):
            self.fields[attributes["name"] or ""] = attributes.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.in_post_form = False


def fetch(opener: urllib.request.OpenerDirector, url: str, data: dict[str, str] | None = None,
          referer: str | None = None) -> tuple[str, int, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Referer": referer} if referer else {})
    try:
        with opener.open(request, timeout=TIMEOUT_S) as response:
            return response.geturl(), response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.geturl(), error.code, error.read().decode("utf-8", "replace")


def sign_in_and_load_dashboard(base_url: str, email: str, password: str) -> str | None:
    """None when the dashboard loaded for the signed-in user, else what went wrong."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    login_url = urllib.parse.urljoin(base_url, "/accounts/login/")
    _, status, page = fetch(opener, login_url)
    if status != 200:
        return f"GET /accounts/login/ answered {status}"
    form = FormFields()
    form.feed(page)
    missing = {"csrfmiddlewaretoken", "login", "password"} - form.fields.keys()
    if missing:
        return f"the login form has no {', '.join(sorted(missing))} field"
    form.fields.update(login=email, password=password)
    form.fields.pop("remember", None)
    final_url, status, page = fetch(opener, login_url, data=form.fields, referer=login_url)
    if status != 200 or urllib.parse.urlsplit(final_url).path.startswith("/accounts/login"):
        return f"signing in did not go through (HTTP {status} at {final_url})"

    final_url, status, page = fetch(opener, urllib.parse.urljoin(base_url, "/dashboard/"))
    path = urllib.parse.urlsplit(final_url).path
    if status != 200 or path != "/dashboard/":
        return f"GET /dashboard/ ended at {path} with HTTP {status}"
    if "<title>Dashboard" not in page or '<p class="eyebrow">Dashboard</p>' not in page:
        return "/dashboard/ answered 200 but is not the dashboard page"
    return None


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    problem = sign_in_and_load_dashboard(*sys.argv[1:])
    if problem:
        print(f"newcomer sign-in: {problem}", file=sys.stderr)
        return 1
    print(f"newcomer sign-in: signed in as {sys.argv[2]} and loaded the dashboard")
    return 0


if __name__ == "__main__":
    sys.exit(main())
