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


def latest_images_by_model(
    *, viewer: AbstractBaseUser, per_model: int = 4
) -> dict[str, list[Image]]:
    """The newest succeeded images per model that `viewer` may see: one query.

    Until sharing exists (private by default) that is the viewer's own work.
    """
    images = (
        Image.objects.filter(generation__owner=viewer, generation__status="succeeded", nsfw=False)
        .select_related("generation")
        .order_by("-generation__created_at", "index")[: per_model * 50]
    )
    found: dict[str, list[Image]] = {}
    for image in images:
        bucket = found.setdefault(image.generation.model, [])
        if len(bucket) < per_model:
            bucket.append(image)
    return found
