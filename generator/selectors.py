from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from accounts.rules import is_active, may_moderate, may_see_image
from generator.models import CostEntry, Generation, Image, ModelSetting
from generator.registry import MODELS


def generations_visible_to(viewer: AbstractBaseUser) -> QuerySet[Generation]:
    """Every generation `viewer` may see: their own, the team's shared ones, and all of
    them for moderators. The one place this rule lives: pages, media, the API and the
    gallery all filter through it (with images_visible_to for single images)."""
    generations = Generation.objects.all()
    if not is_active(viewer):
        return generations.none()
    if may_moderate(viewer):
        return generations
    # A shared generation whose every image a moderator held or hid is withheld as a
    # whole: its page would still show the prompt the images were hidden for.
    images = Image.objects.filter(generation=OuterRef("pk"))
    withheld = Exists(images) & ~Exists(images.filter(review=Image.Review.VISIBLE))
    return generations.filter(
        Q(owner=viewer) | (Q(visibility=Generation.Visibility.SHARED) & ~withheld)
    )


def images_visible_to(viewer: AbstractBaseUser) -> QuerySet[Image]:
    """Every image `viewer` may see: as for generations, except that an image held for
    review or hidden by a moderator is seen only by its owner and moderators."""
    images = Image.objects.all()
    if not is_active(viewer):
        return images.none()
    if may_moderate(viewer):
        return images
    return images.filter(
        Q(generation__owner=viewer)
        | Q(
            generation__visibility=Generation.Visibility.SHARED,
            review=Image.Review.VISIBLE,
        )
    )


def generation_images_for(generation: Generation, viewer: AbstractBaseUser) -> list[Image]:
    """The generation's images `viewer` may see (all for the owner and moderators),
    from its prefetched images."""
    return [image for image in generation.images.all() if may_see_image(viewer, image, generation)]


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
    """The newest succeeded images per model that `viewer` may see: one query."""
    images = (
        images_visible_to(viewer)
        .filter(generation__status="succeeded", nsfw=False)
        .select_related("generation")
        .order_by("-generation__created_at", "index")[: per_model * 50]
    )
    found: dict[str, list[Image]] = {}
    for image in images:
        bucket = found.setdefault(image.generation.model, [])
        if len(bucket) < per_model:
            bucket.append(image)
    return found


def enabled_model_ids() -> frozenset[str]:
    """Models a user may pick: the registry's defaults (deprecated ones off) with the
    admins' choices applied. One query."""
    chosen = dict(ModelSetting.objects.values_list("model", "enabled"))
    return frozenset(
        spec.id for spec in MODELS.values() if chosen.get(spec.id, not spec.deprecated)
    )


def generation_cost(generation: Generation) -> tuple[Decimal, str]:
    """What the generation cost and where the figure comes from: "provider" when the
    provider said what it charged for every paid call, else "estimate" (the ledger's
    list-price estimate, or while nothing is paid yet the submission estimate; a
    failure nothing was paid for costs 0)."""
    entry = CostEntry.objects.filter(generation=generation).first()
    if entry is not None:
        return entry.usd, entry.source
    if generation.status == Generation.Status.FAILED:
        return Decimal(0), "estimate"
    return generation.estimated_usd, "estimate"
