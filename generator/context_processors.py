from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from generator import roles
from generator.models import Notification


def studio(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    active = user is not None and roles.is_active_member(user)
    return {
        "offline_provider": settings.OFFLINE_PROVIDER,
        "studio_active": active,
        "studio_can_generate": active and roles.can_generate(user),
        "studio_can_moderate": active and roles.can_moderate(user),
        "studio_can_manage": active and roles.can_manage_members(user),
        # Lazy: one COUNT only on pages that show the header.
        "unread_notifications": SimpleLazyObject(
            lambda: (
                Notification.objects.filter(user=user, read_at__isnull=True).count()
                if active
                else 0
            )
        ),
    }
