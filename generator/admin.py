from __future__ import annotations

from django.contrib import admin

from generator.models import ApiToken, Generation, Image


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
