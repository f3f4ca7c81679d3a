from __future__ import annotations

from django.contrib import admin

from generator.models import Generation, Image


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
