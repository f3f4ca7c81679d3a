from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor_name", "action", "target_label", "reason")
    list_filter = ("action",)
    search_fields = ("actor_name", "target_label", "reason", "target_id")
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    # Append-only: nobody edits or deletes the record, admins included.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
