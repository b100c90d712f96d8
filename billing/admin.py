from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from billing.models import BillingAccount, PolarWebhookEvent, UsageRecord
from billing.services import usage_send_again


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin):
    list_display = ["business", "status", "plan_key", "current_period_end", "cancel_at_period_end", "blocked_reason"]
    list_filter = ["status", "plan_key", "cancel_at_period_end"]
    search_fields = ["business__name", "polar_customer_id", "polar_subscription_id"]
    readonly_fields = ["polar_state_at", "created_at", "updated_at"]


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = ["external_id", "business", "minutes", "status", "attempts", "occurred_at", "reported_at",
                    "last_error"]
    list_filter = ["status"]
    search_fields = ["external_id", "business__name"]
    raw_id_fields = ["call", "business"]
    readonly_fields = ["last_attempt_at"]
    actions = ["send_again"]

    @admin.action(description="Send again to Polar (given up or failed records)")
    def send_again(self, request: HttpRequest, queryset: QuerySet[UsageRecord]) -> None:
        count = usage_send_again(record_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{count} usage record(s) queued for Polar.")


@admin.register(PolarWebhookEvent)
class PolarWebhookEventAdmin(admin.ModelAdmin):
    list_display = ["webhook_id", "type", "business", "outcome", "received_at"]
    list_filter = ["type", "outcome"]
    search_fields = ["webhook_id"]
    readonly_fields = ["webhook_id", "type", "payload", "business", "outcome", "received_at"]
