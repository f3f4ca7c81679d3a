from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts import rules
from gallery import selectors


def moderation(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    allowed = user is not None and rules.is_active(user) and rules.may_moderate(user)
    # Lazy: one COUNT only on pages that show the header, and only for moderators.
    return {
        "moderation_waiting": SimpleLazyObject(
            lambda: selectors.moderation_waiting_count() if allowed else 0
        )
    }
