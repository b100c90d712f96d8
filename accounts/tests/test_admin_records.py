"""The operator's admin for accounts: when someone signed up and last signed in, and who invited whom and whether
the invitation was accepted, are what happened; an operator reads them and cannot rewrite them."""

from __future__ import annotations

from django.urls import reverse

from accounts import services
from tests.admin_forms import admin_form_data


def test_an_operator_cannot_rewrite_when_a_user_joined_or_last_signed_in(admin_client, alice):
    url = reverse("admin:accounts_user_change", args=[alice.id])
    data = admin_form_data(admin_client.get(url))
    data.update(last_login_0="2001-01-01", last_login_1="00:00:00", date_joined_0="2001-01-01",
                date_joined_1="00:00:00")

    assert admin_client.post(url, data).status_code == 302

    joined, last_login = alice.date_joined, alice.last_login
    alice.refresh_from_db()
    assert (alice.date_joined, alice.last_login) == (joined, last_login)


def test_an_operator_cannot_mark_an_invitation_accepted_or_revoked(admin_client, alice, alices_business):
    invite = services.invite_create(business=alices_business, email="dana@example.com", role="staff",
                                    invited_by=alice)
    url = reverse("admin:accounts_invite_change", args=[invite.id])
    data = admin_form_data(admin_client.get(url))
    data.update(accepted_at_0="2026-01-01", accepted_at_1="00:00:00", revoked_at_0="2026-01-01",
                revoked_at_1="00:00:00", accepted_by=str(alice.id))

    assert admin_client.post(url, data).status_code == 302

    invite.refresh_from_db()
    assert (invite.accepted_at, invite.revoked_at, invite.accepted_by_id) == (None, None, None)
