"""`/metrics` answers Prometheus only: loopback by default, else the token and/or the networks the operator set;
an X-Forwarded-For header never makes an outsider look like an allowed address."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "metrics-token-0123456789abcdef"
OUTSIDER = "203.0.113.5"


def scrape(*, client: str = "127.0.0.1", headers: dict[str, str] | None = None,
           url: str = "http://127.0.0.1:8000/metrics") -> httpx.Response:
    """GET /metrics from the real ASGI application, from `client` as uvicorn would report the peer."""
    from receptionist.asgi import application

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=application, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport) as http:
            return await http.get(url, headers=headers or {})

    return asyncio.run(get())


@pytest.fixture(autouse=True)
def open_metrics(settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 0
    return settings


def test_loopback_may_scrape_by_default():
    response = scrape()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE receptionist_live_calls gauge" in response.text
    assert "# TYPE receptionist_calls_total counter" in response.text


def test_ipv6_loopback_may_scrape_by_default():
    assert scrape(client="::1").status_code == 200


def test_another_address_is_refused_by_default():
    response = scrape(client=OUTSIDER)
    assert response.status_code == 403
    assert "receptionist_" not in response.text


def test_a_request_forwarded_by_a_proxy_we_do_not_count_is_refused():
    # A proxy on this machine: the peer is loopback, the outsider only shows in X-Forwarded-For.
    assert scrape(headers={"X-Forwarded-For": OUTSIDER}).status_code == 403


def test_an_outsider_is_refused_through_a_trusted_proxy_even_when_it_claims_to_be_loopback(settings):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    # The client wrote "127.0.0.1"; our proxy appended the address it really came from.
    assert scrape(headers={"X-Forwarded-For": f"127.0.0.1, {OUTSIDER}"}).status_code == 403


def test_a_made_up_forwarded_for_sent_straight_to_us_is_refused(settings):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    assert scrape(client=OUTSIDER, headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 403


def test_an_allowed_network_may_scrape(settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert scrape(client="10.1.2.3").status_code == 200


def test_listing_networks_replaces_the_loopback_default(settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert scrape(client="127.0.0.1").status_code == 403


def test_an_allowed_network_may_scrape_through_a_trusted_proxy_on_this_machine(settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    assert scrape(client="127.0.0.1", headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 200


def test_with_a_token_a_scrape_without_it_is_refused(settings):
    settings.METRICS_TOKEN = TOKEN
    assert scrape().status_code == 403


def test_a_wrong_token_gets_the_same_answer_as_no_token(settings):
    settings.METRICS_TOKEN = TOKEN
    missing = scrape()
    wrong = scrape(headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
    assert (wrong.status_code, wrong.text) == (missing.status_code, missing.text) == (403, "Forbidden\n")


def test_the_token_must_come_as_a_bearer_token(settings):
    settings.METRICS_TOKEN = TOKEN
    assert scrape(headers={"Authorization": f"Basic {TOKEN}"}).status_code == 403


def test_with_a_token_the_right_one_may_scrape_from_any_address(settings):
    settings.METRICS_TOKEN = TOKEN
    response = scrape(client=OUTSIDER, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and "receptionist_live_calls" in response.text


def test_with_a_token_and_networks_both_must_hold(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert scrape(client=OUTSIDER, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403
    assert scrape(client="10.1.2.3", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_the_token_is_never_logged(settings, caplog):
    settings.METRICS_TOKEN = TOKEN
    with caplog.at_level(logging.DEBUG):
        scrape(headers={"Authorization": f"Bearer {TOKEN}"})
        scrape(client=OUTSIDER, headers={"Authorization": f"Bearer {TOKEN}"}, url="http://127.0.0.1/metrics?x=1")
        scrape(headers={"Authorization": "Bearer wrong"})
    assert caplog.records, "nothing was logged: the test would prove nothing"
    assert TOKEN not in caplog.text


def test_it_is_served_over_plain_http_whatever_the_host_while_the_site_redirects_to_https(settings):
    """Prometheus scrapes each process by its address: no HTTPS redirect, no ALLOWED_HOSTS check on /metrics."""
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["rx.example.com"]
    assert scrape(url="http://10.9.8.7:8000/metrics").status_code == 200
    assert scrape(url="http://10.9.8.7:8000/healthz/").status_code == 400  # the rest of the site is unchanged


def test_only_reading_is_allowed():
    from receptionist.asgi import application

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application)) as http:
            return await http.post("http://127.0.0.1/metrics")

    assert asyncio.run(post()).status_code == 405


def test_the_settings_refuse_a_network_that_is_not_a_cidr():
    env = {**os.environ, "DEBUG": "true", "METRICS_ALLOWED_NETWORKS": "10.0.0.0/8, the office"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "METRICS_ALLOWED_NETWORKS takes comma-separated CIDRs, not 'the office'" in result.stderr


def test_an_empty_multiprocess_folder_setting_means_one_process_and_writes_no_files(tmp_path):
    """PROMETHEUS_MULTIPROC_DIR= (as in .env.example): the library would take its mere presence for multi-process
    mode and write its files into the working directory."""
    script = ("import django; django.setup()\n"
              "from receptionist import metrics\n"
              "metrics.call_started()\n"
              "print(b'receptionist_live_calls 1.0' in metrics.render()[0])\n")
    env = {**os.environ, "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "receptionist.settings",
           "PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": ""}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "True", result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_process_that_exits_cleanly_leaves_the_live_sums(tmp_path):
    """Whatever process it is (daphne, a management command): its live-call gauge file goes, its totals stay."""
    script = ("import os, django; django.setup()\n"
              "from receptionist import metrics\n"
              "metrics.call_started(); metrics.frame_dropped('malformed')\n"
              "print(os.getpid())\n")
    env = {**os.environ, "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "receptionist.settings",
           "PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    pid = result.stdout.strip()
    assert pid.isdigit(), result.stderr
    assert not (tmp_path / f"gauge_livesum_{pid}.db").exists()
    assert (tmp_path / f"counter_{pid}.db").exists()
