from __future__ import annotations

from django.contrib import admin

from generator.models import BlockedTerm, CostEntry, Generation, Image


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


@admin.register(CostEntry)
class CostEntryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "owner", "model", "images", "estimated_usd", "credits_used")
    list_filter = ("model",)
    readonly_fields = [f.name for f in CostEntry._meta.fields]
    list_select_related = ("owner",)


@admin.register(BlockedTerm)
class BlockedTermAdmin(admin.ModelAdmin):
    list_display = ("pattern", "is_regex", "created_by", "created_at")
