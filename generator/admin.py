from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from generator.models import (
    ApiToken,
    AuditEvent,
    BlockedTerm,
    CostEntry,
    Generation,
    Image,
    Invitation,
    Member,
)


class ImageInline(admin.TabularInline):
    model = Image
    extra = 0
    fields = ("index", "file", "width", "height", "format", "bytes", "nsfw")
    readonly_fields = fields
    can_delete = False


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = ("uuid", "owner", "model", "status", "attempts", "created_at", "finished_at")
    list_filter = ("status", "model")
    search_fields = ("prompt", "uuid", "owner__username")
    readonly_fields = [f.name for f in Generation._meta.fields]
    inlines = [ImageInline]
    list_select_related = ("owner",)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "user__username", "prefix")
    readonly_fields = ("uuid", "user", "prefix", "token_hash", "created_at", "last_used_at")
    list_select_related = ("user",)


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    """Read-only here: role, status and limit changes go through the members page, which
    keeps the role groups in step and writes the audit log."""

    list_display = ("user", "role", "status", "monthly_budget_usd", "max_active", "updated_at")
    list_filter = ("role", "status")
    search_fields = ("user__username", "user__email")
    readonly_fields = [f.name for f in Member._meta.fields]
    list_select_related = ("user",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


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


@admin.register(CostEntry)
class CostEntryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "owner", "model", "images", "estimated_usd", "credits_used")
    list_filter = ("model",)
    readonly_fields = [f.name for f in CostEntry._meta.fields]
    list_select_related = ("owner",)


@admin.register(BlockedTerm)
class BlockedTermAdmin(admin.ModelAdmin):
    list_display = ("pattern", "is_regex", "created_by", "created_at")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("role", "created_by", "created_at", "expires_at", "used_by", "used_at")
    readonly_fields = ("token",)
