"""Calls and what happened in them."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Business


class Call(models.Model):
    class Channel(models.TextChoices):
        TWILIO = "twilio", "Phone (Twilio)"
        BROWSER = "browser", "Browser test call"

    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    class Status(models.TextChoices):
        RINGING = "ringing", "Ringing"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted"

    FINAL_STATUSES = (Status.COMPLETED, Status.FAILED, Status.INTERRUPTED)

    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="calls")
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.TWILIO)
    direction = models.CharField(max_length=8, choices=Direction.choices, default=Direction.INBOUND)
    twilio_call_sid = models.CharField(max_length=64, null=True, blank=True, unique=True)
    from_number = models.CharField(max_length=32, blank=True)
    to_number = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RINGING)
    started_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    # Set when the media stream first authenticates; a stream token is good for exactly one stream.
    stream_started_at = models.DateTimeField(null=True, blank=True)
    # Set once, by whichever path finalises the call first (session end, status callback, reaper).
    finalized_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=40, blank=True,
                                  help_text="caller_hung_up, agent_ended, transferred, upstream_failed, …")
    outcome = models.CharField(max_length=20, blank=True)
    model = models.CharField(max_length=64, blank=True)
    input_audio_tokens = models.PositiveIntegerField(default=0)
    input_text_tokens = models.PositiveIntegerField(default=0)
    input_cached_tokens = models.PositiveIntegerField(default=0)
    output_audio_tokens = models.PositiveIntegerField(default=0)
    output_text_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=10, decimal_places=6, default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["business", "-started_at"], name="call_business_started")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=["ringing", "in_progress", "completed", "failed",
                                                           "interrupted"]), name="call_status_valid"),
            models.CheckConstraint(condition=Q(channel__in=["twilio", "browser"]), name="call_channel_valid"),
            models.CheckConstraint(condition=Q(finalized_at__isnull=True)
                                   | Q(status__in=["completed", "failed", "interrupted"]),
                                   name="call_finalized_has_final_status"),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} call {self.pk} from {self.from_number or 'unknown'}"

    @property
    def is_live(self) -> bool:
        return self.status in (self.Status.RINGING, self.Status.IN_PROGRESS)

    @property
    def total_tokens(self) -> int:
        return (self.input_audio_tokens + self.input_text_tokens + self.output_audio_tokens
                + self.output_text_tokens)


class TranscriptEntry(models.Model):
    class Speaker(models.TextChoices):
        CALLER = "caller", "Caller"
        AGENT = "agent", "Agent"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="transcript")
    order = models.PositiveIntegerField()
    speaker = models.CharField(max_length=8, choices=Speaker.choices)
    text = models.TextField()
    start_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Offset from the call's start.")
    end_ms = models.PositiveIntegerField(null=True, blank=True)
    interrupted = models.BooleanField(default=False, help_text="The caller talked over this agent turn.")

    class Meta:
        ordering = ["call", "order"]
        verbose_name_plural = "transcript entries"
        constraints = [models.UniqueConstraint(fields=["call", "order"], name="transcript_order_unique")]

    def __str__(self) -> str:
        return f"{self.speaker}: {self.text[:60]}"


class CallEvent(models.Model):
    class Kind(models.TextChoices):
        TOOL_CALL = "tool_call", "Tool call"
        BARGE_IN = "barge_in", "Barge-in"
        LATENCY = "latency", "Turn latency"
        ERROR = "error", "Error"
        TRANSFER = "transfer", "Transfer"
        HANGUP = "hangup", "Hang-up"
        DTMF = "dtmf", "Keypad digit"
        STATUS = "status", "Status change"
        SUPERVISOR = "supervisor", "Supervisor step"
        USAGE = "usage", "Model usage"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="events")
    order = models.PositiveIntegerField()
    offset_ms = models.PositiveIntegerField(default=0, help_text="Milliseconds since the call started.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # Events come from the call session and from workers (supervisor, post-call); each writer numbers its
        # own, so the timeline sorts by offset first.
        ordering = ["call", "offset_ms", "order", "id"]
        indexes = [models.Index(fields=["call", "kind"], name="callevent_call_kind")]

    def __str__(self) -> str:
        return f"{self.kind} @{self.offset_ms}ms"
