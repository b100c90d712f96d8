"""Google sign-in through allauth's real views; Google's endpoints are answered at the HTTP boundary."""

import time
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
import responses
from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.urls import reverse

from accounts.models import Membership, User

TOKEN_URL = "https://oauth2.googleapis.com/token"


def id_token(**claims):
    now = int(time.time())
    payload = {"iss": "https://accounts.google.com", "aud": settings.GOOGLE_CLIENT_ID,
               "azp": settings.GOOGLE_CLIENT_ID, "sub": "108204268033311", "email": "owner@biz.example",
               "email_verified": True, "name": "Jane Owner", "given_name": "Jane", "family_name": "Owner",
               "iat": now, "exp": now + 3600, **claims}
    # Tokens fetched straight from Google's token endpoint over TLS are not signature-checked by allauth;
    # iss, aud and exp still are.
    return jwt.encode(payload, "k" * 32, algorithm="HS256")


def google_login(client, **claims):
    start = client.post(reverse("google_login"))
    assert start.status_code == 302
    authorize = urlparse(start["Location"])
    assert authorize.netloc == "accounts.google.com"
    query = parse_qs(authorize.query)
    assert query["code_challenge_method"] == ["S256"]
    with responses.RequestsMock() as upstream:
        upstream.post(TOKEN_URL, json={"access_token": "ya29.test", "expires_in": 3599, "token_type": "Bearer",
                                       "scope": "openid email profile", "id_token": id_token(**claims)})
        response = client.get(reverse("google_callback"), {"code": "4/0-test-code", "state": query["state"][0]})
        token_request = upstream.calls[0].request
    body = parse_qs(token_request.body)
    assert body["client_id"] == [settings.GOOGLE_CLIENT_ID]
    assert body["code"] == ["4/0-test-code"] and "code_verifier" in body
    return response


def test_google_signup_creates_user_and_owned_business(client, db):
    response = google_login(client)
    assert response.status_code == 302
    user = User.objects.get(email="owner@biz.example")
    assert user.full_name == "Jane Owner"
    assert SocialAccount.objects.get(user=user).uid == "108204268033311"
    assert Membership.objects.get(user=user).role == Membership.Role.OWNER
    assert client.get(reverse("dashboard"))["Location"] == reverse("onboarding")  # signed in, not onboarded


def test_google_login_with_an_existing_email_links_to_that_account(client, alice, alices_business):
    response = google_login(client, email="alice@example.com", sub="5550001")
    assert response.status_code == 302
    assert User.objects.filter(email="alice@example.com").count() == 1
    assert SocialAccount.objects.get(uid="5550001").user == alice
    assert Membership.objects.filter(user=alice).count() == 1  # no second business
    assert client.get(reverse("dashboard")).status_code == 200


@pytest.mark.parametrize("claims", [{"aud": "someone-else"}, {"exp": int(time.time()) - 60},
                                    {"iss": "https://evil.example"}])
def test_google_login_with_a_bad_id_token_is_refused(client, db, claims):
    response = google_login(client, **claims)
    assert response.status_code == 401
    assert not User.objects.exists()


def test_google_error_on_the_token_endpoint_is_refused(client, db):
    start = client.post(reverse("google_login"))
    state = parse_qs(urlparse(start["Location"]).query)["state"][0]
    with responses.RequestsMock() as upstream:
        upstream.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
        response = client.get(reverse("google_callback"), {"code": "expired", "state": state})
    assert response.status_code == 401
    assert not User.objects.exists()
