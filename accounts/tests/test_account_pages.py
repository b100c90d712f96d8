"""Sign-in, sign-up and their emails as a business owner meets them: the app's own pages and words, the browser's
time zone for the new business, and emails that name the product and the business, not the server's host."""

import re

from django.core import mail
from django.urls import reverse

from accounts.models import Business
from tests.factories import PASSWORD, make_business, make_user


def signup(client, email="new@example.com", **extra):
    return client.post(reverse("account_signup"),
                       {"email": email, "password1": PASSWORD, "password2": PASSWORD, **extra})


def test_sign_up_keeps_the_browsers_time_zone_for_the_new_business(client, db):
    signup(client, time_zone="Europe/Madrid")
    assert Business.objects.get().time_zone == "Europe/Madrid"


def test_sign_up_with_an_unknown_time_zone_starts_the_business_on_utc(client, db):
    response = signup(client, time_zone="Mars/Olympus_Mons")
    assert response.status_code == 302  # a hidden field the person can't fix is never an error
    assert Business.objects.get().time_zone == "UTC"


def test_the_sign_up_page_asks_the_browser_for_its_time_zone(client, db):
    page = client.get(reverse("account_signup")).content.decode()
    assert re.search(r'<input type="hidden" name="time_zone" data-browser-time-zone="fill"', page)
    assert "accounts/time_zone.js" in page


def test_onboarding_offers_the_browsers_time_zone_while_the_business_is_on_the_default(client, alice):
    make_business(owner=alice, name="New business", time_zone="UTC", onboarded=False)
    client.force_login(alice)
    page = client.get(reverse("onboarding")).content.decode()
    assert re.search(r'<select name="time_zone"[^>]*data-browser-time-zone="suggest"', page)


def test_onboarding_leaves_a_chosen_time_zone_alone(client, alice, alices_business):
    client.force_login(alice)
    page = client.get(reverse("onboarding")).content.decode()
    assert "data-browser-time-zone" not in page


def test_the_sign_in_page_speaks_like_the_app(client, db):
    page = client.get(reverse("account_login")).content.decode()
    assert 'class="site-header"' in page and "<h1>Sign in</h1>" in page
    assert "Remember Me" not in page and "Email:" not in page
    assert '<label for="id_login">Email address</label>' in page


def test_the_sign_up_page_speaks_like_the_app(client, db):
    page = client.get(reverse("account_signup")).content.decode()
    assert 'class="site-header"' in page and "<h1>Create your account</h1>" in page
    assert "Sign Up" not in page


def test_the_sign_out_page_has_no_account_settings_tabs(client, alice, alices_business):
    client.force_login(alice)
    page = client.get(reverse("account_logout")).content.decode()
    assert "<h1>Sign out</h1>" in page and "Connected accounts" not in page


def test_a_wrong_password_is_said_above_the_form(client, alice):
    response = client.post(reverse("account_login"), {"login": alice.email, "password": "not-it"})
    page = response.content.decode()
    assert 'class="alert alert-error"' in page and "not correct" in page


def test_the_confirmation_email_names_the_product_not_the_host(client, db):
    signup(client)
    message = mail.outbox[-1]
    assert message.subject == "Confirm your email address · AI Receptionist"
    assert "AI Receptionist" in message.body
    assert "testserver" not in message.body.replace("http://testserver/", "")
    assert "Hello from" not in message.body


def test_the_password_reset_email_names_the_owners_business(client, alice, alices_business):
    client.post(reverse("account_reset_password"), {"email": alice.email})
    message = mail.outbox[-1]
    assert message.subject == "Reset your password · AI Receptionist"
    assert "Alice Dental" in message.body
    assert re.search(r"http://testserver/accounts/password/reset/key/\S+", message.body)


def test_messages_on_account_pages_line_up_with_the_card(client, db):
    make_user("owner@example.com")
    response = client.post(reverse("account_login"), {"login": "owner@example.com", "password": PASSWORD},
                           follow=False)
    assert response.status_code == 302
    page = client.get(reverse("account_logout")).content.decode()
    assert 'class="container messages messages-auth"' in page


def test_a_forgotten_password_is_reset_through_the_apps_pages(client, alice):
    response = client.post(reverse("account_reset_password"), {"email": alice.email}, follow=True)
    assert "<h1>Check your email</h1>" in response.content.decode()
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+)", mail.outbox[-1].body).group(1)
    form_page = client.get(link, follow=True)
    assert "<h1>Choose a new password</h1>" in form_page.content.decode()
    assert '<label for="id_password1">New password</label>' in form_page.content.decode()
    done = client.post(form_page.redirect_chain[-1][0] if form_page.redirect_chain else link,
                       {"password1": "a-brand-new-passphrase", "password2": "a-brand-new-passphrase"}, follow=True)
    assert "<h1>Password changed</h1>" in done.content.decode()
    alice.refresh_from_db()
    assert alice.check_password("a-brand-new-passphrase")


def test_a_used_reset_link_says_so_in_words(client, alice):
    page = client.get("/accounts/password/reset/key/1-not-a-real-key/", follow=True).content.decode()
    assert "<h1>This link no longer works</h1>" in page
