from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from billing import polar_client
from billing.models import BillingAccount, PolarWebhookEvent, UsageRecord
from billing.services.usage import usage_send_again
from receptionist.recorded_admin import RecordedAdmin


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin):
    list_display = ["business", "status", "plan_key", "current_period_end", "cancel_at_period_end", "blocked_reason"]
    list_filter = ["status", "plan_key", "cancel_at_period_end"]
    search_fields = ["business__name", "polar_customer_id", "polar_subscription_id"]
    # Polar's state as its webhooks delivered it, and what the call gate recorded: a hand edit would disagree
    # with Polar until the next delivery. The trial's minutes are ours to grant.
    readonly_fields = ["business", "status", "plan_key", "included_minutes", "hard_cap", "polar_customer_id",
                       "polar_subscription_id", "polar_product_id", "current_period_start", "current_period_end",
                       "cancel_at_period_end", "polar_state_at", "last_paid_at", "blocked_at", "blocked_reason",
                       "created_at", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made for a business the first time its billing is looked at

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        # Owners only see "no paid plans are offered yet"; what to do about it is the operator's to read, here.
        if not settings.BILLING_PLANS:
            self.message_user(request, "No plans are configured: owners see no paid plans and stay on the free trial. "
                                       "Set BILLING_PLANS (and POLAR_ACCESS_TOKEN) as the README's “Polar” section "
                                       "describes.", messages.WARNING)
        elif not polar_client.is_configured():
            self.message_user(request, "POLAR_ACCESS_TOKEN is not set: owners see the plans but cannot subscribe.",
                              messages.WARNING)
        return super().changelist_view(request, extra_context)


@admin.register(UsageRecord)
class UsageRecordAdmin(RecordedAdmin):
    list_display = ["external_id", "business", "minutes", "status", "attempts", "occurred_at", "reported_at",
                    "last_error"]
    list_filter = ["status"]
    search_fields = ["external_id", "business__name"]
    actions = ["send_again"]

    @admin.action(description="Send again to Polar (given up or failed records)")
    def send_again(self, request: HttpRequest, queryset: QuerySet[UsageRecord]) -> None:
        count = usage_send_again(record_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{count} usage record(s) queued for Polar.")


@admin.register(PolarWebhookEvent)
class PolarWebhookEventAdmin(RecordedAdmin):
    """What Polar sent, kept so a redelivery has no second effect: removing one would let it apply twice."""

    list_display = ["webhook_id", "type", "business", "outcome", "received_at"]
    list_filter = ["type", "outcome"]
    search_fields = ["webhook_id"]

    def has_delete_permission(self, request: HttpRequest, obj: PolarWebhookEvent | None = None) -> bool:
        return False
