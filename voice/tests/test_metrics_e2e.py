"""`/metrics` over a whole call: uvicorn (as in the Procfile) and a real Celery worker sharing one
PROMETHEUS_MULTIPROC_DIR, the OpenAI stand-in, and the call simulator playing Twilio. One web process's scrape
shows what both processes counted, and each process leaves the live sums when it stops."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from voice.offline.realtime import Script
from voice.tests.conftest import start_asgi_server, start_celery_worker, stop_process, subprocess_env
from voice.tests.test_call_e2e import finalized_call, simulate
from voice.tests.test_supervisor_e2e import BOOKING_SUPERVISOR, BOOKING_TURN, open_harbor  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels."""
    response = httpx.get(base_url + "/metrics", timeout=5)
    assert response.status_code == 200, response.text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    return sum(v for (n, l), v in samples.items() if n == name and set(labels.items()) <= set(l))


def test_a_call_through_twilio_shows_in_the_metrics_of_every_process(open_harbor, standin, twilio_standin,  # noqa: F811
                                                                       tmp_path):
    metrics_dir = tmp_path / "metrics"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    server = start_asgi_server("uvicorn", standin=standin, twilio_standin=twilio_standin, extra_env=env)
    worker = start_celery_worker(subprocess_env(standin=standin, twilio_standin=twilio_standin,
                                                base_url=server.base_url, extra_env=env))
    try:
        standin.script = Script.from_obj({"greeting": "Harbor Dental, how can I help?", "turns": [BOOKING_TURN],
                                          "supervisor": [BOOKING_SUPERVISOR]})
        report = simulate(server, utterances=1, reply_timeout_s=15)
        assert report.ok, (report.failures, server.log(), worker.log())
        call = finalized_call(report.call_sid)
        assert call.status == "completed"

        deadline = time.monotonic() + 10  # the worker records the supervisor's run as it ends; finalising commits
        while True:
            samples = scrape(server.base_url)
            if (total(samples, "receptionist_calls_total") >= 1
                    and total(samples, "receptionist_tokens_total", kind="supervisor_input") > 0) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.2)

        assert total(samples, "receptionist_live_calls") == 0
        assert total(samples, "receptionist_calls_total", status="completed") == 1
        assert total(samples, "receptionist_calls_total") == 1
        assert total(samples, "receptionist_turn_latency_seconds_count") >= 1
        assert total(samples, "receptionist_tokens_total", kind="realtime_output_audio") > 0
        assert total(samples, "receptionist_cost_usd_total") > 0
        assert total(samples, "receptionist_supervisor_round_trip_seconds_count", result="ok") == 1
        # Counted in the worker, shown by the web process.
        assert total(samples, "receptionist_supervisor_queue_wait_seconds_count") == 1, worker.log()
        assert total(samples, "receptionist_tokens_total", kind="supervisor_input") > 0
        assert total(samples, "receptionist_openai_reconnects_total") == 0
        for process in (server.process, worker.process):  # each process's live-call gauge, while it runs
            assert (metrics_dir / f"gauge_livesum_{process.pid}.db").exists(), sorted(metrics_dir.iterdir())
    finally:
        stop_process(worker.process)
        stop_process(server.process)

    # Each process marked itself dead on the way out: no live-call gauge of a stopped process is summed.
    for process in (server.process, worker.process):
        assert not list(metrics_dir.glob(f"gauge_livesum_{process.pid}.db")), (server.log(), worker.log())
    assert list(metrics_dir.glob(f"counter_{server.process.pid}.db"))  # its totals stay
