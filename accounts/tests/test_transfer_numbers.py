"""Toll fraud: a transfer number must be an ordinary number in the business's country (or the operator's list)."""

from __future__ import annotations

from django.urls import reverse

from accounts.transfers import transfer_number_problem
from tests.factories import make_business, make_user

US_LANDLINE = "+12025550100"
US_PREMIUM = "+19005550123"        # 1-900: premium rate
GB_LANDLINE = "+442079460958"
GB_PREMIUM = "+449012345678"       # 09: premium rate
GB_PERSONAL = "+447012345678"      # 070: "personal numbers", a known fraud route
JAMAICA_MOBILE = "+18765550123"    # +1 like the US, but another country (a classic toll-fraud destination)
CANADA = "+14165550123"


def profile_data(business, **over):
    data = {"name": business.name, "time_zone": business.time_zone, "phone_number": business.phone_number,
            "greeting": "", "extra_instructions": "", "voice": "marin", "language": "en", "transfer_number": "",
            "notification_email": "", "address": "", "website": ""}
    data.update(over)
    return data


def save_transfer_number(client, business, number):
    return client.post(reverse("settings_profile"), profile_data(business, transfer_number=number))


def test_a_premium_rate_transfer_number_is_refused_with_a_clear_error(client, alice, alices_business):
    client.force_login(alice)
    response = save_transfer_number(client, alices_business, US_PREMIUM)
    assert response.status_code == 200
    errors = response.context["form"].errors["transfer_number"]
    assert errors == ["Calls can't be transferred to premium-rate numbers: they cost extra to call. "
                      "Use a regular landline or mobile number."]
    alices_business.refresh_from_db()
    assert alices_business.transfer_number == ""


def test_a_transfer_number_in_another_country_is_refused(client, alice, alices_business):
    client.force_login(alice)
    response = save_transfer_number(client, alices_business, GB_LANDLINE)
    [error] = response.context["form"].errors["transfer_number"]
    assert "same country as your business's phone number (US)" in error and "a number in GB" in error
    alices_business.refresh_from_db()
    assert alices_business.transfer_number == ""


def test_a_number_sharing_the_us_country_code_but_in_jamaica_is_refused(client, alice, alices_business):
    client.force_login(alice)
    response = save_transfer_number(client, alices_business, JAMAICA_MOBILE)
    assert "a number in JM" in response.context["form"].errors["transfer_number"][0]


def test_an_ordinary_number_in_the_business_country_is_saved(client, alice, alices_business):
    client.force_login(alice)
    assert save_transfer_number(client, alices_business, "+1 (202) 555-0100").status_code == 302
    alices_business.refresh_from_db()
    assert alices_business.transfer_number == US_LANDLINE


def test_the_settings_list_of_countries_allows_a_foreign_number(client, alice, alices_business, settings):
    settings.TRANSFER_ALLOWED_COUNTRIES = ["US", "GB"]
    client.force_login(alice)
    assert save_transfer_number(client, alices_business, GB_LANDLINE).status_code == 302
    alices_business.refresh_from_db()
    assert alices_business.transfer_number == GB_LANDLINE


def test_the_settings_list_replaces_the_business_country(client, alice, alices_business, settings):
    settings.TRANSFER_ALLOWED_COUNTRIES = ["CA"]
    client.force_login(alice)
    response = save_transfer_number(client, alices_business, US_LANDLINE)
    assert response.context["form"].errors["transfer_number"] == [
        "Calls can only be transferred to numbers in CA; this is a number in US."]
    assert save_transfer_number(client, alices_business, CANADA).status_code == 302


def test_premium_numbers_stay_refused_in_an_allowed_country(settings):
    settings.TRANSFER_ALLOWED_COUNTRIES = ["GB"]
    assert "premium-rate" in transfer_number_problem(GB_PREMIUM, home_number=GB_LANDLINE)
    assert "personal" in transfer_number_problem(GB_PERSONAL, home_number=GB_LANDLINE)


def test_without_its_own_number_a_business_is_asked_to_connect_one_first(db):
    assert transfer_number_problem(US_LANDLINE, home_number="").startswith(
        "Connect your business's phone number first")


def test_without_its_own_number_the_settings_list_still_applies(settings):
    settings.TRANSFER_ALLOWED_COUNTRIES = ["US"]
    assert transfer_number_problem(US_LANDLINE, home_number="") == ""
    assert transfer_number_problem(GB_LANDLINE, home_number="") != ""


def test_onboarding_asks_for_no_transfer_number_before_the_business_has_its_own(client, db):
    owner = make_user("owner@sunny.example")
    business = make_business(owner=owner, name="", onboarded=False)
    client.force_login(owner)
    assert "transfer_number" not in client.get(reverse("onboarding")).context["form"].fields
    response = client.post(reverse("onboarding"), {
        "name": "Sunny Vet", "time_zone": "Europe/Paris", "greeting": "", "transfer_number": "+33142685300",
        "notification_email": "", "open_days": ["0"], "opens": "08:30", "closes": "18:00"})
    assert response.status_code == 302
    business.refresh_from_db()
    assert business.name == "Sunny Vet" and business.transfer_number == ""


def test_the_profile_refuses_a_transfer_number_before_the_business_has_its_own(client, alice, alices_business):
    alices_business.phone_number = ""
    alices_business.phone_number_sid = ""
    alices_business.save()
    client.force_login(alice)
    response = save_transfer_number(client, alices_business, US_LANDLINE)
    assert response.context["form"].errors["transfer_number"] == [
        "Connect your business's phone number first: calls can only be transferred to numbers in the same "
        "country as it."]
