"""allauth hooks: every sign-up path (email or Google) ends with the user in a business."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.http import HttpRequest

from accounts.models import Membership
from accounts.services import new_user_join_business

PENDING_INVITE_SESSION_KEY = "pending_invite_token"
PRODUCT_NAME = "AI Receptionist"


def _pending_invite(request: HttpRequest | None) -> str | None:
    if request is None or not hasattr(request, "session"):
        return None
    return request.session.pop(PENDING_INVITE_SESSION_KEY, None)


def _business_name(email: str) -> str:
    """The business the address's user works in (the first they own, else any), for the account emails."""
    membership = (Membership.objects.filter(user__email__iexact=email).select_related("business")
                  .order_by("role", "created_at").first())  # "owner" sorts before "staff"
    return membership.business.name if membership else ""


class AccountAdapter(DefaultAccountAdapter):
    def format_email_subject(self, subject: str) -> str:
        # allauth's default prefix is "[<host:port>] ", which says nothing to the person reading it.
        return f"{subject} · {PRODUCT_NAME}"

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        # Our account emails (templates/account/email/) speak as the product, about the reader's business.
        super().send_mail(template_prefix, email,
                          {"product_name": PRODUCT_NAME, "business_name": _business_name(email), **context})

    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit)
        if commit:
            time_zone = (getattr(form, "cleaned_data", None) or {}).get("time_zone", "")
            new_user_join_business(user=user, pending_invite_token=_pending_invite(request), time_zone=time_zone)
        return user


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def save_user(self, request, sociallogin, form=None):
        user = super().save_user(request, sociallogin, form)
        full_name = (sociallogin.account.extra_data or {}).get("name", "")
        if full_name and not user.full_name:
            user.full_name = full_name[:150]
            user.save(update_fields=["full_name"])
        new_user_join_business(user=user, pending_invite_token=_pending_invite(request))
        return user
