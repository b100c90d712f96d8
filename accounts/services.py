"""Writes for accounts: businesses, memberships, invites."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import Business, Invite, Membership, OpeningHours, User, validate_time_zone

INVITE_SALT = "accounts.invite"


class InviteError(Exception):
    """Why an invite cannot be used, in words for the person holding the link."""


@transaction.atomic
def business_create_for_owner(*, user: User, name: str = "", time_zone: str = "") -> Business:
    """Give a newly signed-up user the business they own. Idempotent: a user who already owns one keeps it.
    `time_zone` (the browser's, at sign-up) is used when zoneinfo knows it; otherwise the business starts on UTC."""
    existing = Membership.objects.filter(user=user, role=Membership.Role.OWNER).select_related("business").first()
    if existing is not None:
        return existing.business
    try:
        validate_time_zone(time_zone)
    except ValidationError:
        time_zone = "UTC"
    business = Business.objects.create(name=name[:120], notification_email=user.email, time_zone=time_zone)
    Membership.objects.create(user=user, business=business, role=Membership.Role.OWNER)
    return business


@dataclass(frozen=True)
class WeeklyHours:
    weekdays: list[int]
    opens: dt.time
    closes: dt.time


@transaction.atomic
def business_complete_onboarding(*, business: Business, hours: WeeklyHours | None) -> Business:
    """Mark onboarding done; seed opening hours from the quick weekly template if none exist yet."""
    if hours is not None and not business.opening_hours.exists():
        OpeningHours.objects.bulk_create(
            OpeningHours(business=business, weekday=day, opens=hours.opens, closes=hours.closes)
            for day in sorted(set(hours.weekdays))
        )
    if business.onboarded_at is None:
        business.onboarded_at = timezone.now()
        business.save(update_fields=["onboarded_at", "updated_at"])
    return business


def invite_token(invite: Invite) -> str:
    return signing.dumps({"invite": invite.pk}, salt=INVITE_SALT, compress=True)


def invite_url(invite: Invite) -> str:
    return settings.PUBLIC_BASE_URL + reverse("invite_accept", args=[invite_token(invite)])


INVITE_SUBJECT = "You're invited to join a team on AI Receptionist"


class InviteLimitReached(Exception):
    """Too many invitations sent lately, in words for the owner."""


def _invite_limits_check(*, business: Business, invited_by: User, now: dt.datetime) -> None:
    hour, day = now - dt.timedelta(hours=1), now - dt.timedelta(days=1)
    counts = [
        (Invite.objects.filter(business=business), settings.INVITES_PER_BUSINESS_PER_HOUR,
         settings.INVITES_PER_BUSINESS_PER_DAY, "this business"),
        (Invite.objects.filter(invited_by=invited_by), settings.INVITES_PER_USER_PER_HOUR,
         settings.INVITES_PER_USER_PER_DAY, "you"),
    ]
    for invites, per_hour, per_day, who in counts:
        if invites.filter(created_at__gt=hour).count() >= per_hour:
            raise InviteLimitReached(f"Too many invitations: {who} can send {per_hour} an hour. "
                                     "Please try again later.")
        if invites.filter(created_at__gt=day).count() >= per_day:
            raise InviteLimitReached(f"Too many invitations: {who} can send {per_day} a day. "
                                     "Please try again tomorrow.")


@transaction.atomic
def invite_create(*, business: Business, email: str, role: str, invited_by: User) -> Invite:
    """Record an invitation and email its link (on commit). Raises InviteLimitReached past the hourly or daily
    limits of the business and of the inviting user; every invitation sent counts, revoked or not."""
    # One inviter, then one business, at a time: concurrent invites cannot both slip under a limit.
    User.objects.select_for_update().filter(pk=invited_by.pk).first()
    Business.objects.select_for_update().filter(pk=business.pk).first()
    now = timezone.now()
    _invite_limits_check(business=business, invited_by=invited_by, now=now)
    invite = Invite.objects.create(
        business=business, email=email.strip().lower(), role=role, invited_by=invited_by,
        created_at=now, expires_at=now + dt.timedelta(days=settings.INVITE_MAX_AGE_DAYS),
    )
    context = {"invite": invite, "url": invite_url(invite), "inviter": invited_by}
    # The subject names no business: its name is whatever a tenant typed, and a subject line from our domain
    # is where a phishing text would be read first. The body says who invites and to what.
    transaction.on_commit(lambda: send_mail(
        subject=INVITE_SUBJECT,
        message=render_to_string("accounts/email/invite.txt", context),
        from_email=None, recipient_list=[invite.email],
    ))
    return invite


def invite_from_token(token: str) -> Invite:
    """Resolve a link's token to a still-usable invite, or raise InviteError saying why not."""
    max_age = dt.timedelta(days=settings.INVITE_MAX_AGE_DAYS)
    try:
        data = signing.loads(token, salt=INVITE_SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise InviteError("This invitation has expired. Ask the owner to send a new one.")
    except signing.BadSignature:
        raise InviteError("This invitation link is not valid. Check that you copied all of it.")
    invite = Invite.objects.select_related("business").filter(pk=data.get("invite")).first()
    if invite is None or invite.revoked_at is not None:
        raise InviteError("This invitation was withdrawn.")
    if invite.accepted_at is not None:
        raise InviteError("This invitation has already been used.")
    if invite.expires_at <= timezone.now():
        raise InviteError("This invitation has expired. Ask the owner to send a new one.")
    return invite


@transaction.atomic
def invite_accept(*, token: str, user: User) -> Membership:
    invite = invite_from_token(token)
    # Lock the row so two clicks cannot both accept it.
    invite = Invite.objects.select_for_update().select_related("business").get(pk=invite.pk)
    if invite.accepted_at is not None:
        raise InviteError("This invitation has already been used.")
    if invite.email.lower() != user.email.lower():
        raise InviteError(f"This invitation was sent to {invite.email}. Sign in with that address to accept it.")
    membership, _ = Membership.objects.get_or_create(user=user, business=invite.business,
                                                     defaults={"role": invite.role})
    invite.accepted_at = timezone.now()
    invite.accepted_by = user
    invite.save(update_fields=["accepted_at", "accepted_by"])
    return membership


def invite_revoke(*, invite: Invite) -> None:
    if invite.accepted_at is None and invite.revoked_at is None:
        invite.revoked_at = timezone.now()
        invite.save(update_fields=["revoked_at"])


class MembershipError(Exception):
    pass


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    if membership.is_owner:
        owners = Membership.objects.select_for_update().filter(business=membership.business,
                                                               role=Membership.Role.OWNER)
        if owners.count() <= 1:
            raise MembershipError("A business needs at least one owner; make someone else an owner first.")
    membership.delete()


def new_user_join_business(*, user: User, pending_invite_token: str | None, name: str = "",
                           time_zone: str = "") -> Membership:
    """Where a fresh sign-up lands: the business it was invited to, else a new business it owns."""
    if pending_invite_token:
        try:
            return invite_accept(token=pending_invite_token, user=user)
        except InviteError:
            pass  # a stale or foreign invite must not stop the sign-up; they get their own business
    business = business_create_for_owner(user=user, name=name, time_zone=time_zone)
    return Membership.objects.get(user=user, business=business)
