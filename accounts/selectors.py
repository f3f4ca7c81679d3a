"""Reading the team: the members list and a person's notifications."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from accounts.models import Notification


def people_for_members_page() -> QuerySet[Any]:
    """Everyone with their standing and role groups: three queries, whatever the count."""
    return (
        get_user_model()
        .objects.select_related("member")
        .prefetch_related("groups")
        .order_by("username")
    )


def notifications_of(user: Any, *, limit: int = 100) -> QuerySet[Notification]:
    return Notification.objects.filter(user=user).order_by("-created_at", "-id")[:limit]


def unread_count(user: Any) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()
