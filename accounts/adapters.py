"""allauth hooks: every sign-up path (email or Google) ends with the user in a business."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.http import HttpRequest

from accounts.services import new_user_join_business

PENDING_INVITE_SESSION_KEY = "pending_invite_token"


def _pending_invite(request: HttpRequest | None) -> str | None:
    if request is None or not hasattr(request, "session"):
        return None
    return request.session.pop(PENDING_INVITE_SESSION_KEY, None)


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit)
        if commit:
            new_user_join_business(user=user, pending_invite_token=_pending_invite(request))
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
