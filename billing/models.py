"""A business's billing state (kept in step with Polar by webhooks), usage per call, and webhook deliveries."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Business
from calls.models import Call


class BillingAccount(models.Model):
    """One per business, created lazily: a business with none is on its free trial."""

    class Status(models.TextChoices):
        FREE_TRIAL = "free_trial", "Free trial"
        # Polar's subscription statuses (2026-10):
        INCOMPLETE = "incomplete", "Incomplete"
        INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete (expired)"
        TRIALING = "trialing", "Trialing"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        CANCELED = "canceled", "Canceled"
        UNPAID = "unpaid", "Unpaid"
        PAUSED = "paused", "Paused"
        REVOKED = "revoked", "Ended"

    business = models.OneToOneField(Business, on_delete=models.CASCADE, related_name="billing_account")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.FREE_TRIAL)
    trial_minutes = models.PositiveIntegerField(help_text="Free minutes before a subscription is needed.")
    plan_key = models.CharField(max_length=40, blank=True)
    included_minutes = models.PositiveIntegerField(default=0, help_text="Per billing period; 0 = none included.")
    hard_cap = models.BooleanField(default=False, help_text="Refuse calls once the included minutes are used.")
    polar_customer_id = models.CharField(max_length=64, blank=True)
    polar_subscription_id = models.CharField(max_length=64, blank=True)
    polar_product_id = models.CharField(max_length=64, blank=True)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    # Polar's modified_at (or event timestamp) of the last state applied; older deliveries are ignored.
    polar_state_at = models.DateTimeField(null=True, blank=True)
    last_paid_at = models.DateTimeField(null=True, blank=True)
    # Set when calls are first refused, cleared when they are taken again; the owners' email goes out on the set.
    blocked_at = models.DateTimeField(null=True, blank=True)
    blocked_reason = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(status__in=["free_trial", "incomplete", "incomplete_expired",
                                                           "trialing", "active", "past_due", "canceled", "unpaid",
                                                           "paused", "revoked"]),
                                   name="billing_account_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.business} ({self.get_status_display()})"

    @property
    def is_free_trial(self) -> bool:
        return self.status == self.Status.FREE_TRIAL

    @property
    def minutes_allowance(self) -> int | None:
        """Minutes this period before calls stop; None when usage is unlimited (metered)."""
        if self.is_free_trial:
            return self.trial_minutes
        return self.included_minutes if self.hard_cap else None

    @property
    def period_start(self):
        """Usage counts from here: all time on the free trial, else the current billing period."""
        return None if self.is_free_trial else self.current_period_start


class UsageRecord(models.Model):
    """The billable minutes of one finished call and whether Polar has them (at least once, deduped by external_id)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent to Polar"
        FAILED = "failed", "Failed for now"  # Polar unreachable through the task's retries: the sweep resends
        GAVE_UP = "gave_up", "Given up"  # Polar refused it (4xx), or BILLING_USAGE_MAX_ATTEMPTS ran out: never
        # resent by itself; `last_error` says why, and the admin's "Send again" action retries it.
        NOT_BILLABLE = "not_billable", "Not billable"

    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="usage_records")
    call = models.OneToOneField(Call, on_delete=models.CASCADE, related_name="usage_record")
    external_id = models.CharField(max_length=64, unique=True, help_text="Polar's dedupe key: call_<id>.")
    seconds = models.PositiveIntegerField(default=0)
    minutes = models.PositiveIntegerField(default=0, help_text="Billed minutes: seconds rounded up per call.")
    occurred_at = models.DateTimeField(help_text="When the call ended.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    reported_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [models.Index(fields=["business", "occurred_at"], name="usage_business_occurred"),
                   models.Index(fields=["status", "created_at"], name="usage_status_created")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=["pending", "sent", "failed", "gave_up", "not_billable"]),
                                   name="usage_record_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.external_id}: {self.minutes} min ({self.status})"


class PolarWebhookEvent(models.Model):
    """Every verified delivery, stored once by its webhook-id so a redelivery has no second effect."""

    webhook_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=60)
    payload = models.JSONField()
    business = models.ForeignKey(Business, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    outcome = models.CharField(max_length=40, blank=True, help_text="applied, stale, ignored, unknown_business")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.webhook_id}"
