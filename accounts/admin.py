from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

from accounts.models import ApiToken, Invitation, Member


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "user__username", "prefix")
    readonly_fields = ("uuid", "user", "prefix", "token_hash", "created_at", "last_used_at")
    list_select_related = ("user",)


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    """Read-only here: status and limit changes go through the members page, which writes
    the audit log. Roles are the user's groups (edit them on the user)."""

    list_display = ("user", "status", "monthly_budget_usd", "max_active", "updated_at")
    list_filter = ("status",)
    search_fields = ("user__username", "user__email")
    readonly_fields = [f.name for f in Member._meta.fields]
    list_select_related = ("user",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("role", "created_by", "created_at", "expires_at", "used_by", "used_at")
    readonly_fields = ("token",)


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class StudioUserAdmin(UserAdmin):
    """Django's user admin, with the superuser and staff flags read-only: they follow the
    Admins group (accounts.signals), so putting someone in it (or taking them out) is
    how an admin is made. Groups and single permissions stay editable."""

    readonly_fields = ("is_superuser", "is_staff", "last_login", "date_joined")
