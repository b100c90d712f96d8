import datetime as dt
import re

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import Invite, Membership, User
from tests.factories import PASSWORD, make_user


@pytest.fixture
def invite(alice, alices_business):
    return services.invite_create(business=alices_business, email="dana@example.com", role="staff", invited_by=alice)


def test_owner_invites_by_email_with_a_signed_link(client, alice, alices_business, django_capture_on_commit_callbacks):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("team"), {"email": "Dana@Example.com", "role": "staff"})
    assert response.status_code == 302
    invite = Invite.objects.get()
    assert invite.email == "dana@example.com"
    assert re.search(r"http://testserver/invites/[^/\s]+/", mail.outbox[0].body)


def test_staff_cannot_invite(client, bob):
    client.force_login(bob)
    assert client.post(reverse("team"), {"email": "x@example.com", "role": "owner"}).status_code == 403
    assert not Invite.objects.exists()


def test_accepting_an_invite_creates_the_membership(client, invite, alices_business):
    dana = make_user("dana@example.com")
    client.force_login(dana)
    response = client.post(reverse("invite_accept", args=[services.invite_token(invite)]))
    assert response.status_code == 302
    assert Membership.objects.get(user=dana, business=alices_business).role == "staff"
    invite.refresh_from_db()
    assert invite.accepted_by == dana


def test_an_expired_invite_is_refused(client, invite):
    Invite.objects.filter(pk=invite.pk).update(created_at=timezone.now() - dt.timedelta(days=8),
                                            expires_at=timezone.now() - dt.timedelta(seconds=1))
    client.force_login(make_user("dana@example.com"))
    response = client.post(reverse("invite_accept", args=[services.invite_token(invite)]))
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert not Membership.objects.filter(user__email="dana@example.com").exists()


def test_an_invite_for_someone_else_is_refused(client, invite, charlie):
    client.force_login(charlie)
    response = client.post(reverse("invite_accept", args=[services.invite_token(invite)]))
    assert response.status_code == 403
    assert "sent to dana@example.com" in response.content.decode()
    assert not Membership.objects.filter(user=charlie, business=invite.business).exists()


def test_an_invite_cannot_be_used_twice(client, invite):
    dana = make_user("dana@example.com")
    client.force_login(dana)
    url = reverse("invite_accept", args=[services.invite_token(invite)])
    client.post(url)
    response = client.post(url)
    assert response.status_code == 410
    assert "already been used" in response.content.decode()
    assert Membership.objects.filter(user=dana).count() == 1


def test_a_tampered_invite_link_is_refused(client, invite):
    token = services.invite_token(invite)
    response = client.get(reverse("invite_accept", args=[token[:-2] + "xx"]))
    assert response.status_code == 410
    assert "not valid" in response.content.decode()


def test_a_withdrawn_invite_is_refused(client, alice, invite):
    client.force_login(alice)
    client.post(reverse("invite_revoke", args=[invite.pk]))
    client.force_login(make_user("dana@example.com"))
    assert client.post(reverse("invite_accept", args=[services.invite_token(invite)])).status_code == 410


def test_signing_up_from_an_invite_joins_that_business_instead_of_creating_one(client, invite, alices_business):
    client.get(reverse("invite_accept", args=[services.invite_token(invite)]))
    client.post(reverse("account_signup"), {"email": "dana@example.com", "password1": PASSWORD, "password2": PASSWORD})
    dana = User.objects.get(email="dana@example.com")
    assert [m.business for m in Membership.objects.filter(user=dana)] == [alices_business]


def test_the_last_owner_cannot_be_removed(client, alice, alices_business):
    client.force_login(alice)
    own = Membership.objects.get(user=alice)
    client.post(reverse("member_remove", args=[own.pk]))
    assert Membership.objects.filter(pk=own.pk).exists()


def test_owner_removes_a_staff_member(client, alice, bob, alices_business):
    client.force_login(alice)
    client.post(reverse("member_remove", args=[Membership.objects.get(user=bob).pk]))
    assert not Membership.objects.filter(user=bob).exists()


@pytest.fixture
def invite_limits(settings):
    settings.INVITES_PER_BUSINESS_PER_HOUR = 3
    settings.INVITES_PER_BUSINESS_PER_DAY = 5
    settings.INVITES_PER_USER_PER_HOUR = 4
    settings.INVITES_PER_USER_PER_DAY = 6
    return settings


def send_invites(client, count: int, start: int = 0):
    return [client.post(reverse("team"), {"email": f"person{n}@example.com", "role": "staff"})
            for n in range(start, start + count)]


def test_the_invite_subject_does_not_carry_the_tenant_chosen_business_name(client, alice, alices_business,
                                                                         django_capture_on_commit_callbacks):
    alices_business.name = "URGENT: your bank account is locked, call +1 900 555 0100"
    alices_business.save(update_fields=["name"])
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("team"), {"email": "dana@example.com", "role": "staff"})
    assert mail.outbox[0].subject == "You're invited to join a team on AI Receptionist"
    assert "URGENT" not in mail.outbox[0].subject and "bank" not in mail.outbox[0].subject


def test_a_business_over_its_hourly_invite_limit_gets_a_form_error_and_nothing_is_sent(
        client, alice, alices_business, invite_limits, django_capture_on_commit_callbacks):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        assert [r.status_code for r in send_invites(client, 3)] == [302, 302, 302]
        response = send_invites(client, 1, start=3)[0]
    assert response.status_code == 200
    assert "Too many invitations: this business can send 3 an hour" in response.content.decode()
    assert Invite.objects.count() == 3 and len(mail.outbox) == 3


def test_revoked_invites_still_count_and_the_limit_lifts_after_the_hour(client, alice, alices_business,
                                                                       invite_limits):
    client.force_login(alice)
    send_invites(client, 3)
    for invite in Invite.objects.all():
        services.invite_revoke(invite=invite)
    assert send_invites(client, 1, start=3)[0].status_code == 200
    Invite.objects.update(created_at=timezone.now() - dt.timedelta(hours=1, minutes=1))
    assert send_invites(client, 1, start=4)[0].status_code == 302


def test_a_business_over_its_daily_invite_limit_gets_a_form_error(client, alice, alices_business, invite_limits):
    client.force_login(alice)
    send_invites(client, 3)
    Invite.objects.update(created_at=timezone.now() - dt.timedelta(hours=2))
    assert [r.status_code for r in send_invites(client, 2, start=3)] == [302, 302]
    response = send_invites(client, 1, start=5)[0]
    assert response.status_code == 200 and "can send 5 a day" in response.content.decode()


def test_an_inviting_user_is_limited_across_the_businesses_they_own(client, alice, alices_business, invite_limits):
    from accounts.access import SESSION_KEY
    from tests.factories import make_business

    second = make_business(owner=alice, name="Alice Orthodontics")
    client.force_login(alice)
    send_invites(client, 3)  # in Alice Dental
    session = client.session
    session[SESSION_KEY] = second.pk
    session.save()
    assert send_invites(client, 1, start=3)[0].status_code == 302  # the 4th of the hour, in her other business
    response = send_invites(client, 1, start=4)[0]
    assert response.status_code == 200 and "you can send 4 an hour" in response.content.decode()
    assert Invite.objects.filter(business=second).count() == 1
