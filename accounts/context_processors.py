from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts import rules, selectors


def studio(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    active = user is not None and rules.is_active(user)
    return {
        "offline_provider": settings.OFFLINE_PROVIDER,
        "studio_active": active,
        "studio_can_generate": active and rules.may_generate(user),
        "studio_can_moderate": active and rules.may_moderate(user),
        "studio_can_manage": active and rules.may_manage_members(user),
        "studio_can_audit": active and rules.may_view_audit(user),
        "studio_can_view_members": active and rules.may_view_members(user),
        "studio_can_edit_policy": active and rules.may_edit_policy(user),
        # Lazy: one COUNT only on pages that show the header.
        "unread_notifications": SimpleLazyObject(
            lambda: selectors.unread_count(user) if active else 0
        ),
    }
