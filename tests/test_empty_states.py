"""A page with nothing to show yet says what to do next: where the data comes from, and a link to make it come."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from calls.models import Message, WebhookEndpoint
from tests.factories import add_member, make_appointment, make_message, make_service, make_user


@pytest.fixture
def owner(client, alice, alices_business):
    client.force_login(alice)
    return client


def page_text(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def empty_state(page: str) -> str:
    """The page's empty-state box (the page's tabs and navigation link to the same places)."""
    start = page.index('class="empty-state"')
    return page[start:page.index("</div>", start)]


def test_no_messages_yet_offers_a_test_call(owner):
    box = empty_state(page_text(owner, reverse("message_list")))
    assert "No open messages" in box
    assert f'href="{reverse("test_call")}"' in box


def test_with_every_message_handled_the_open_list_points_to_the_handled_ones(owner, alices_business):
    make_message(alices_business, status=Message.Status.HANDLED, handled_at=timezone.now())
    box = empty_state(page_text(owner, reverse("message_list")))
    assert "Everything is handled" in box
    assert 'href="?status=handled"' in box


def test_no_handled_messages_points_to_the_open_ones(owner, alices_business):
    make_message(alices_business)
    box = empty_state(page_text(owner, reverse("message_list") + "?status=handled"))
    assert "No handled messages yet" in box
    assert 'href="?status=open"' in box


def test_an_empty_week_says_how_appointments_are_booked_and_to_list_services_first(owner):
    page = page_text(owner, reverse("appointment_list") + "?view=week")
    assert "Nothing booked this week" in page
    assert f'href="{reverse("settings_services")}">List your services</a>' in page


def test_an_empty_week_of_a_business_with_services_does_not_ask_for_services(owner, alices_business):
    make_service(alices_business)
    page = page_text(owner, reverse("appointment_list") + "?view=week")
    assert "Nothing booked this week" in page
    assert "List your services" not in page


def test_a_week_with_an_appointment_has_no_empty_note(owner, alices_business):
    make_appointment(alices_business, timezone.now() + dt.timedelta(hours=1))
    assert "Nothing booked this" not in page_text(owner, reverse("appointment_list") + "?view=week")


def test_no_upcoming_appointments_without_services_asks_to_list_them(owner):
    box = empty_state(page_text(owner, reverse("appointment_list")))
    assert "No upcoming appointments" in box
    assert f'href="{reverse("settings_services")}">List your services</a>' in box


def test_no_past_appointments_points_to_the_upcoming_ones(owner):
    box = empty_state(page_text(owner, reverse("appointment_list") + "?view=past"))
    assert "No past appointments" in box
    assert 'href="?view=upcoming"' in box


def test_an_owner_with_no_invitations_is_told_how_to_invite(owner):
    page = page_text(owner, reverse("team"))
    assert "No invitations waiting to be accepted. Invite the people who answer your calls below" in page


def test_an_owner_alone_on_the_team_is_asked_to_invite_the_team(owner):
    assert "You are the only member so far" in page_text(owner, reverse("team"))


def test_an_owner_with_a_teammate_is_not_told_they_are_alone(owner, alices_business):
    add_member(alices_business, make_user())
    assert "You are the only member so far" not in page_text(owner, reverse("team"))


def test_staff_with_no_invitations_are_not_asked_to_invite(client, bob):
    client.force_login(bob)
    page = page_text(client, reverse("team"))
    assert "No invitations waiting to be accepted." in page
    assert "Invite the people who answer your calls" not in page


def test_staff_see_that_an_owner_adds_the_services(client, bob):
    client.force_login(bob)
    page = page_text(client, reverse("settings_services"))
    assert "Nothing added yet. Ask an owner to add services" in page


def test_notifications_without_an_email_link_to_the_profile(owner, alices_business):
    alices_business.notification_email = ""
    alices_business.save(update_fields=["notification_email"])
    page = page_text(owner, reverse("settings_notifications"))
    assert f'<a href="{reverse("settings_profile")}">add one in Profile</a>' in page


def test_no_webhook_deliveries_yet_says_what_sends_one(owner, alices_business):
    WebhookEndpoint.objects.create(business=alices_business, url="https://hooks.example.com/calls", secret="whsec_x")
    page = page_text(owner, reverse("settings_notifications"))
    assert "No deliveries yet. The next call that ends sends one" in page
    assert f'href="{reverse("test_call")}"' in page
