"""A business's billing account, and which subscription statuses allow calls."""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.models import Business
from billing.models import BillingAccount

S = BillingAccount.Status
ALLOWED_SUBSCRIPTION_STATUSES = {S.ACTIVE, S.TRIALING}
LIVE_SUBSCRIPTION_STATUSES = {S.ACTIVE, S.TRIALING, S.PAST_DUE}


def account_for_business(business: Business) -> BillingAccount:
    """The business's billing state; a business that has none starts its free trial now."""
    account = BillingAccount.objects.filter(business=business).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return BillingAccount.objects.create(business=business, trial_minutes=settings.BILLING_TRIAL_MINUTES)
    except IntegrityError:  # created concurrently
        return BillingAccount.objects.get(business=business)
