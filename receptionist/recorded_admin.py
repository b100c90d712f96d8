"""Admin pages for what the system records (transcripts, events, usage, deliveries): operators read them, and
never write them by hand, because billing, analytics and the tenants' dashboards trust them as recorded."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest


class RecordedAdmin(admin.ModelAdmin):
    """Viewable, not addable or changeable. Deleting stays allowed: the admin refuses to delete a call or a business
    whose cascade reaches a model the operator may not delete, and operators do remove businesses and calls."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class RecordedInline(admin.TabularInline):
    """Rows shown under their parent, read-only: none added, changed or deleted from the parent's page."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
