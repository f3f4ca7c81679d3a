from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Prefetch, QuerySet

from generator.models import Generation, Image


def generation_list_for_owner(*, owner: AbstractBaseUser, limit: int = 30) -> QuerySet[Generation]:
    """The owner's newest generations with their images: two queries, whatever the count."""
    return (
        Generation.objects.filter(owner=owner)
        .order_by("-created_at", "-id")
        .prefetch_related(Prefetch("images", queryset=Image.objects.order_by("index")))[:limit]
    )
