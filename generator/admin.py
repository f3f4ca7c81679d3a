from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from generator.models import BlockedTerm, CostEntry, Generation, Image, ProviderCall


class ImageInline(admin.TabularInline):
    model = Image
    extra = 0
    fields = ("index", "seed", "file", "width", "height", "format", "bytes", "nsfw")
    readonly_fields = fields
    can_delete = False


class ProviderCallInline(admin.TabularInline):
    # The attempt records are the pipeline's own bookkeeping: shown, never edited.
    model = ProviderCall
    extra = 0
    fields = ("index", "request_id", "seed", "status", "attempts", "error", "usd_spent")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = ("uuid", "owner", "model", "status", "attempts", "created_at", "finished_at")
    list_filter = ("status", "model")
    search_fields = ("prompt", "uuid", "owner__username")
    readonly_fields = [f.name for f in Generation._meta.fields]
    inlines = [ProviderCallInline, ImageInline]
    list_select_related = ("owner",)


@admin.register(CostEntry)
class CostEntryAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "owner",
        "model",
        "images",
        "estimated_usd",
        "provider_usd",
        "credits_used",
    )
    list_filter = ("model",)
    readonly_fields = [f.name for f in CostEntry._meta.fields]
    list_select_related = ("owner",)


@admin.register(BlockedTerm)
class BlockedTermAdmin(admin.ModelAdmin):
    """Read-only here: terms are added and removed on the policy page, whose service
    checks a pattern compiles and writes the audit log (one validated write path)."""

    list_display = ("pattern", "is_regex", "created_by", "created_at")
    readonly_fields = ("pattern", "is_regex", "created_by", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
