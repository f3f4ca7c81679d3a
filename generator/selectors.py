from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone

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


def prompt_history_for(*, owner: AbstractBaseUser, limit: int = 20) -> list[tuple[str, str]]:
    """The owner's last `limit` distinct prompts, most recently used first, each with
    the uuid of its latest generation (the studio form's History list links by it).
    Reads at most the last 500 generations: older prompts are not "recent"."""
    seen: dict[str, str] = {}
    recent = Generation.objects.filter(owner=owner).order_by("-created_at", "-id")
    for prompt, uuid in recent.values_list("prompt", "uuid")[:500]:
        if prompt not in seen:
            seen[prompt] = str(uuid)
            if len(seen) == limit:
                break
    return list(seen.items())


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


# How many of a model's latest finished generations its ETA is the median of.
ETA_SAMPLE = 20


@dataclass(frozen=True)
class Progress:
    """Where an unfinished generation stands, for its card: `since` is when the
    clock shown counts from (queued: submitted; running: started), `eta` when it
    should be done, `position` its place in the provider queue while queued."""

    since: datetime
    eta: datetime | None
    typical_seconds: float | None
    position: int | None

    @property
    def elapsed_seconds(self) -> float:
        return max(0.0, (timezone.now() - self.since).total_seconds())

    @property
    def remaining_seconds(self) -> float | None:
        if self.eta is None:
            return None
        return max(0.0, (self.eta - timezone.now()).total_seconds())

    @property
    def elapsed_text(self) -> str:
        return clock_text(self.elapsed_seconds)

    @property
    def remaining_text(self) -> str:
        remaining = self.remaining_seconds
        # static/js/jobs.js words the clocks the same way as they tick.
        return f"about {clock_text(remaining)}" if remaining else "any moment now"

    @property
    def typical_text(self) -> str:
        return f"about {clock_text(self.typical_seconds or 0)}"


def clock_text(seconds: float) -> str:
    """ "7 s", "1 min 05 s": the card's clocks (static/js/jobs.js writes the same)."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60:02d} s"


def typical_seconds(model: str) -> float | None:
    """The median time from start to finish of `model`'s recent successes (one query)."""
    recent = list(
        Generation.objects.filter(
            model=model,
            status=Generation.Status.SUCCEEDED,
            started_at__isnull=False,
            finished_at__isnull=False,
        )
        .order_by("-finished_at")
        .values_list("started_at", "finished_at")[:ETA_SAMPLE]
    )
    if not recent:
        return None
    return statistics.median((end - start).total_seconds() for start, end in recent)


def generation_progress(generation: Generation) -> Progress | None:
    """The progress of a queued or running generation; None once it has finished."""
    if not generation.is_cancellable:
        return None
    typical = typical_seconds(generation.model)
    if generation.status == Generation.Status.QUEUED or generation.started_at is None:
        # The broker hands out messages by priority, then in the order they were sent.
        ahead = Generation.objects.filter(
            status=Generation.Status.QUEUED, step=Generation.Step.CALL
        ).filter(
            Q(priority__lt=generation.priority)
            | Q(priority=generation.priority, created_at__lt=generation.created_at)
        )
        return Progress(
            since=generation.created_at,
            eta=None,
            typical_seconds=typical,
            position=ahead.count() + 1,
        )
    eta = generation.started_at + timedelta(seconds=typical) if typical is not None else None
    return Progress(since=generation.started_at, eta=eta, typical_seconds=typical, position=None)


def generation_cost(generation: Generation) -> tuple[Decimal, str]:
    """What the generation cost and where the figure comes from: "provider" when the
    provider said what it charged for every paid call, else "estimate" (the ledger's
    list-price estimate, or while nothing is paid yet the submission estimate; a
    failure or a cancelled job nothing was paid for costs 0)."""
    entry = CostEntry.objects.filter(generation=generation).first()
    if entry is not None:
        return entry.usd, entry.source
    if generation.status in (Generation.Status.FAILED, Generation.Status.CANCELLED):
        return Decimal(0), "estimate"
    return generation.estimated_usd, "estimate"
