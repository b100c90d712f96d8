from django.contrib import admin

from calls.models import Call, CallEvent, TranscriptEntry


class TranscriptInline(admin.TabularInline):
    model = TranscriptEntry
    extra = 0
    fields = ["order", "speaker", "text", "start_ms", "end_ms", "interrupted"]
    readonly_fields = fields


class EventInline(admin.TabularInline):
    model = CallEvent
    extra = 0
    fields = ["order", "offset_ms", "kind", "payload"]
    readonly_fields = fields


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = ["id", "business", "channel", "status", "from_number", "to_number", "started_at",
                    "duration_seconds", "end_reason", "outcome", "cost_usd"]
    list_filter = ["status", "channel", "direction", "end_reason", "outcome", "started_at"]
    search_fields = ["twilio_call_sid", "from_number", "to_number", "business__name"]
    date_hierarchy = "started_at"
    raw_id_fields = ["business"]
    readonly_fields = ["stream_started_at", "finalized_at"]
    inlines = [TranscriptInline, EventInline]


@admin.register(TranscriptEntry)
class TranscriptEntryAdmin(admin.ModelAdmin):
    list_display = ["call", "order", "speaker", "text", "start_ms"]
    list_filter = ["speaker", "interrupted"]
    search_fields = ["text", "call__twilio_call_sid"]
    raw_id_fields = ["call"]


@admin.register(CallEvent)
class CallEventAdmin(admin.ModelAdmin):
    list_display = ["call", "order", "offset_ms", "kind", "created_at"]
    list_filter = ["kind"]
    search_fields = ["call__twilio_call_sid"]
    raw_id_fields = ["call"]
