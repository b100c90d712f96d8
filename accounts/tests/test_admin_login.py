"""The `/admin/` login form is rate-limited per client address and per username (allauth's limits cover only
allauth's own form)."""

from __future__ import annotations

import pytest

from accounts.models import User

ADMIN_LOGIN = "/admin/login/"
GOOD_PASSWORD = "correct horse battery staple"


@pytest.fixture
def operator(db):
    return User.objects.create_superuser(email="ops@example.com", password=GOOD_PASSWORD)


@pytest.fixture
def limits(settings):
    settings.ADMIN_LOGIN_MAX_FAILURES_PER_USERNAME = 3
    settings.ADMIN_LOGIN_MAX_FAILURES_PER_IP = 5
    settings.ADMIN_LOGIN_FAILURE_WINDOW_SECONDS = 600
    return settings


def attempt(client, username: str, password: str, **extra):
    return client.post(ADMIN_LOGIN, {"username": username, "password": password, "next": "/admin/"}, **extra)


def test_wrong_passwords_are_answered_normally_until_the_limit(client, operator, limits):
    for _ in range(3):
        response = attempt(client, "ops@example.com", "wrong")
        assert response.status_code == 200 and "correct email" in response.content.decode().lower()


def test_the_username_is_locked_after_too_many_failures_without_checking_the_password(client, operator, limits):
    for _ in range(3):
        attempt(client, "ops@example.com", "wrong", REMOTE_ADDR="198.51.100.1")
    # Even the right password from another address is refused now, with a page that says why.
    response = attempt(client, "OPS@example.com ", GOOD_PASSWORD, REMOTE_ADDR="198.51.100.2")
    assert response.status_code == 429
    assert "Too many sign-in attempts" in response.content.decode() and response["Retry-After"] == "600"
    assert "_auth_user_id" not in client.session


def test_one_address_is_locked_after_too_many_failures_across_usernames(client, operator, limits):
    for n in range(5):
        attempt(client, f"guess{n}@example.com", "wrong", REMOTE_ADDR="198.51.100.7")
    assert attempt(client, "ops@example.com", GOOD_PASSWORD, REMOTE_ADDR="198.51.100.7").status_code == 429
    assert attempt(client, "ops@example.com", GOOD_PASSWORD, REMOTE_ADDR="198.51.100.8").status_code == 302


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(client, operator, limits):
    limits.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    for n in range(5):
        # The proxy's own address is the same for everyone; the client's is the last forwarded entry.
        attempt(client, f"guess{n}@example.com", "wrong", REMOTE_ADDR="10.0.0.2",
                HTTP_X_FORWARDED_FOR=f"203.0.113.{n}, 198.51.100.9")
    assert attempt(client, "ops@example.com", GOOD_PASSWORD, REMOTE_ADDR="10.0.0.2",
                   HTTP_X_FORWARDED_FOR="198.51.100.9").status_code == 429
    assert attempt(client, "ops@example.com", GOOD_PASSWORD, REMOTE_ADDR="10.0.0.2",
                   HTTP_X_FORWARDED_FOR="198.51.100.10").status_code == 302


def test_a_successful_login_is_unaffected_and_not_counted(client, operator, limits):
    for _ in range(2):
        attempt(client, "ops@example.com", "wrong")
    response = attempt(client, "ops@example.com", GOOD_PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    client.logout()
    for _ in range(2):  # the username's count started again after the success
        assert attempt(client, "ops@example.com", "wrong").status_code == 200
    assert attempt(client, "ops@example.com", GOOD_PASSWORD).status_code == 302
