"""Billing test fixtures: Polar's API answered at the network boundary (respx), webhooks signed the way Polar signs."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import pytest
import respx
import standardwebhooks

from receptionist.celery import app as celery_app

POLAR_SANDBOX = "https://sandbox-api.polar.sh"
WEBHOOK_SECRET = "whsec_polar-test-secret-1f7e2c"  # Polar's format; the HMAC key is these UTF-8 bytes, prefix included
STARTER_PRODUCT = "5c8d4f1e-7a2b-4c3d-9e8f-0a1b2c3d4e5f"
PRO_PRODUCT = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
PLANS = [
    {"key": "starter", "name": "Starter", "product_id": STARTER_PRODUCT, "included_minutes": 100, "hard_cap": True,
     "price": "$49/month"},
    {"key": "pro", "name": "Pro", "product_id": PRO_PRODUCT, "included_minutes": 500, "hard_cap": False,
     "price": "$149/month"},
]


@pytest.fixture(autouse=True)
def billing_settings(settings):
    settings.POLAR_ACCESS_TOKEN = "polar_oat_test_token"
    settings.POLAR_SERVER = "sandbox"
    settings.POLAR_API_BASE_URL = ""
    settings.POLAR_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.BILLING_PLANS = PLANS
    settings.BILLING_TRIAL_MINUTES = 30
    settings.PUBLIC_BASE_URL = "https://rx.example.com"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture(autouse=True)
def eager_celery():
    """Tasks run in-process (Redis may be configured, but no worker runs in tests); an eager retry re-runs at once."""
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = True, False
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = saved


@pytest.fixture
def polar_api():
    """Polar's sandbox API; any request without a matching route fails the test."""
    with respx.mock(base_url=POLAR_SANDBOX, assert_all_called=False) as mock:
        yield mock


def sign(body: str, *, secret: str = WEBHOOK_SECRET, msg_id: str | None = None,
         at: dt.datetime | None = None) -> dict[str, str]:
    """Headers of a delivery signed like Polar does: standardwebhooks keyed with base64(secret's UTF-8 bytes)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or dt.datetime.now(dt.UTC)
    signature = standardwebhooks.Webhook(base64.b64encode(secret.encode()).decode()).sign(msg_id, at, body)
    return {"HTTP_WEBHOOK_ID": msg_id, "HTTP_WEBHOOK_TIMESTAMP": str(int(at.timestamp())),
            "HTTP_WEBHOOK_SIGNATURE": signature}


@pytest.fixture
def deliver(client):
    def post(event: dict, **sign_kwargs):
        body = json.dumps(event)
        return client.post("/billing/webhooks/polar/", data=body, content_type="application/json",
                           **sign(body, **sign_kwargs))
    return post
