"""The studio's own AI/ML API key refused upstream: the admins' problem, not the
member's. Logged as an error and put in every admin's notifications, once until read."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.urls import reverse

from accounts.models import Notification
from accounts.services import notification_send
from generator.models import Generation

logger = logging.getLogger(__name__)

# The statuses with which the provider refuses the key itself (invalid, out of credits).
KEY_REFUSED_STATUSES = (401, 403)
KEY_REFUSED_TEXT = "The studio's AI/ML API key was refused"


def provider_key_refused_record(*, generation: Generation, status: int, message: str) -> None:
    """Tell the admins that the provider refused the studio's key for `generation`.

    An admin who already has an unread notice of this is not told again, so a batch
    failing on a revoked key is one notice, not hundreds."""
    logger.error(
        "generation %s: the provider refused the studio's AIMLAPI_KEY (HTTP %s): %s",
        generation.uuid,
        status,
        message,
    )
    told = Notification.objects.filter(
        read_at__isnull=True, text__startswith=KEY_REFUSED_TEXT
    ).values("user_id")
    admins = get_user_model().objects.filter(is_superuser=True, is_active=True).exclude(pk__in=told)
    text = (
        f"{KEY_REFUSED_TEXT} (HTTP {status}: {message}). Generations fail until AIMLAPI_KEY "
        "is a valid key with credit."
    )
    link = reverse("generator:detail", args=[generation.uuid])
    for admin in admins:
        notification_send(user=admin, text=text, link=link)
