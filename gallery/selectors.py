"""Reads behind the gallery: one query per page of images, whatever its size.

Access always starts from generator.selectors.images_visible_to (the studio's one
access rule); everything here only narrows it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser
from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Count,
    Exists,
    F,
    Func,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from gallery.models import Collection, CollectionItem, Favourite, Preferences, Report
from generator.models import PROMPT_SEARCH_CONFIG, Generation, Image
from generator.selectors import images_visible_to

PAGE_SIZE = 48
# Orientation names the size filter accepts besides an exact "WxH".
ORIENTATIONS = ("square", "portrait", "landscape")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# What a grid card reads; the generation's big JSON columns (the provider's answer)
# stay in the database.
CARD_FIELDS = (
    "uuid",
    "index",
    "thumbnail",
    "width",
    "height",
    "nsfw",
    "created_at",
    "generation__uuid",
    "generation__model",
    "generation__prompt",
    "generation__owner__username",
)


@dataclass(frozen=True)
class Filters:
    """The gallery's filters, as validated by gallery.forms.FilterForm."""

    q: str = ""
    model: str = ""
    author: str = ""
    size: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    nsfw: str = ""  # "" follows the viewer's preference; "show" or "hide" overrides it
    favourites: bool = False
    collection: Collection | None = None


@dataclass(frozen=True)
class Cursor:
    """A position in the gallery's order (created_at, id), written into page links.

    Encoded as "<microseconds since the epoch>.<id>": exact on both databases, and
    short enough for a URL."""

    created_at: dt.datetime
    pk: int

    def encode(self) -> str:
        return f"{(self.created_at - EPOCH) // dt.timedelta(microseconds=1)}.{self.pk}"

    @classmethod
    def decode(cls, raw: str | None) -> Cursor | None:
        try:
            micros, pk = (raw or "").split(".")
            return cls(EPOCH + dt.timedelta(microseconds=int(micros)), int(pk))
        except (ValueError, OverflowError):
            return None

    @classmethod
    def of(cls, image: Image) -> Cursor:
        return cls(image.created_at, image.pk)


@dataclass
class Page:
    images: list[Image]
    older: Cursor | None = None
    newer: Cursor | None = None
    nsfw_mode: str = Preferences.Nsfw.BLUR


def preferences_get(*, user: AbstractBaseUser) -> Preferences:
    """The viewer's preferences, or unsaved defaults: one query."""
    return Preferences.objects.filter(user=user).first() or Preferences(user=user)


def image_list(
    *, viewer: AbstractBaseUser, filters: Filters, nsfw_preference: str = Preferences.Nsfw.BLUR
) -> QuerySet[Image]:
    """Images `viewer` may see that match `filters`, newest first (a total order), each
    annotated with `is_favourite` for the viewer. Lazy: callers slice it."""
    images = images_visible_to(viewer).annotate(
        is_favourite=Exists(Favourite.objects.filter(user=viewer, image=OuterRef("pk")))
    )
    hide_nsfw = filters.nsfw == "hide" or (
        nsfw_preference == Preferences.Nsfw.HIDE and filters.nsfw != "show"
    )
    if hide_nsfw:
        images = images.filter(nsfw=False)
    if filters.q:
        images = _text_match(images, filters.q)
    if filters.model:
        images = images.filter(generation__model=filters.model)
    if filters.author:
        images = images.filter(generation__owner__username=filters.author)
    if filters.size:
        images = images.filter(_size_match(filters.size))
    if filters.date_from:
        images = images.filter(created_at__gte=_start_of(filters.date_from))
    if filters.date_to:
        images = images.filter(created_at__lt=_start_of(filters.date_to + dt.timedelta(days=1)))
    if filters.favourites:
        images = images.filter(is_favourite=True)
    if filters.collection is not None:
        images = images.filter(collection_items__collection=filters.collection)
    return images.order_by("-created_at", "-id")


def _start_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=timezone.get_current_timezone())


# Up to this many matching generations, a search page fetches exactly their images;
# beyond it the words are common enough that walking the newest images finds a page
# within a few thousand rows.
SEARCH_ID_LIMIT = 1000


def _text_match(images: QuerySet[Image], q: str) -> QuerySet[Image]:
    """`images` whose prompt matches `q` (or whose seed is `q`, when it is a number).

    PostgreSQL: full-text search with web-search syntax ("quoted phrases", -exclusions)
    through the GIN index of generator migration 0005 (same expression, same config).
    The matching generations are listed first, in their own query: the planner cannot
    estimate how many rows a text query matches, and when it guesses "many" for a rare
    word it walks every image computing to_tsvector (seconds for no match at all).
    So a rare query becomes the exact list of its generations, and only a common one
    (more than SEARCH_ID_LIMIT) is left to the walk, which then stops early.

    Elsewhere: every word must occur in the prompt, case-insensitively."""
    seed = q if q.isdigit() else None
    if connection.vendor == "postgresql":
        query = SearchQuery(q, config=PROMPT_SEARCH_CONFIG, search_type="websearch")
        matching = (
            Generation.objects.alias(vector=SearchVector("prompt", config=PROMPT_SEARCH_CONFIG))
            .filter(Q(vector=query) | Q(seed=seed) if seed else Q(vector=query))
            .order_by()
            .values("id")[: SEARCH_ID_LIMIT + 1]
        )
        # COUNT over the LIMITed subquery: one number back, not thousands of ids.
        if matching.count() <= SEARCH_ID_LIMIT:
            # generation_id = ANY(ARRAY(subquery)): the planner cannot see the array's
            # length, assumes it short and fetches those generations' images by index,
            # which for a list this size is right. With the ids written out instead it
            # estimates again, and may walk every image once more.
            array = Func(Subquery(matching), function="ARRAY", output_field=BigIntegerField())
            in_array = Func(
                F("generation_id"),
                array,
                template="(%(expressions)s))",
                arg_joiner=" = ANY(",
                output_field=BooleanField(),
            )
            return images.filter(in_array)
        # A common query: the newest images are walked until a page matches. As a
        # semi-join on generation_id the match is computed once per generation (the
        # planner memoizes it), not once per image as a filter on the joined prompt
        # was: 6 ms instead of 17 for a word in 5 % of 100,000 prompts.
        every_match = (
            Generation.objects.alias(vector=SearchVector("prompt", config=PROMPT_SEARCH_CONFIG))
            .filter(vector=query)
            .order_by()
            .values("id")
        )
        match = Q(generation_id__in=every_match)
    else:
        match = Q()
        for word in q.split():
            match &= Q(generation__prompt__icontains=word.strip('"'))
    return images.filter(match | Q(generation__seed=seed) if seed else match)


def _size_match(size: str) -> Q:
    if size == "square":
        return Q(width=F("height"))
    if size == "portrait":
        return Q(height__gt=F("width"))
    if size == "landscape":
        return Q(width__gt=F("height"))
    width, _, height = size.partition("x")
    return Q(width=int(width), height=int(height))


def _older_than(cursor: Cursor) -> Q:
    # The redundant `created_at <= c` gives the planner a range on the image_recent
    # index to start from, so a deep page does not walk every newer row first.
    return Q(created_at__lte=cursor.created_at) & (
        Q(created_at__lt=cursor.created_at) | Q(created_at=cursor.created_at, pk__lt=cursor.pk)
    )


def _newer_than(cursor: Cursor) -> Q:
    return Q(created_at__gte=cursor.created_at) & (
        Q(created_at__gt=cursor.created_at) | Q(created_at=cursor.created_at, pk__gt=cursor.pk)
    )


def image_page(
    *,
    viewer: AbstractBaseUser,
    filters: Filters,
    nsfw_preference: str = Preferences.Nsfw.BLUR,
    before: Cursor | None = None,
    after: Cursor | None = None,
    size: int = PAGE_SIZE,
) -> Page:
    """One page of the gallery: `size` images older than `before`, newer than `after`, or
    the newest. Keyset pagination: one query, no OFFSET and no COUNT, so any page costs
    what the first costs and new images do not shift the page being read."""
    images = image_list(viewer=viewer, filters=filters, nsfw_preference=nsfw_preference)
    images = images.select_related("generation__owner").only(*CARD_FIELDS)
    if after is not None:
        rows = list(images.filter(_newer_than(after)).order_by("created_at", "id")[: size + 1])
        has_more = len(rows) > size
        rows = rows[:size][::-1]
        page = Page(rows, nsfw_mode=nsfw_preference)
        page.newer = Cursor.of(rows[0]) if rows and has_more else None
        page.older = Cursor.of(rows[-1]) if rows else after
        return page
    if before is not None:
        images = images.filter(_older_than(before))
    rows = list(images[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    page = Page(rows, nsfw_mode=nsfw_preference)
    page.older = Cursor.of(rows[-1]) if rows and has_more else None
    # Coming from a newer page, there is one to go back to (unless it was all deleted).
    page.newer = (Cursor.of(rows[0]) if rows else before) if before is not None else None
    return page


def image_neighbours(
    *,
    viewer: AbstractBaseUser,
    image: Image,
    filters: Filters,
    nsfw_preference: str = Preferences.Nsfw.BLUR,
) -> tuple[Image | None, Image | None]:
    """The images just newer and just older than `image` under `filters`: two queries."""
    images = image_list(viewer=viewer, filters=filters, nsfw_preference=nsfw_preference)
    images = images.only("uuid", "created_at")
    cursor = Cursor.of(image)
    newer = images.filter(_newer_than(cursor)).order_by("created_at", "id").first()
    older = images.filter(_older_than(cursor)).first()
    return newer, older


def image_for_viewer(*, viewer: AbstractBaseUser, uuid: UUID) -> Image | None:
    """One image with its generation and author, if `viewer` may see it."""
    return (
        images_visible_to(viewer)
        .annotate(is_favourite=Exists(Favourite.objects.filter(user=viewer, image=OuterRef("pk"))))
        .select_related("generation__owner", "generation__source_image__generation")
        .filter(uuid=uuid)
        .first()
    )


def images_by_uuid(*, viewer: AbstractBaseUser, uuids: list[UUID]) -> QuerySet[Image]:
    """The images among `uuids` that `viewer` may see (bulk actions), newest first."""
    return (
        images_visible_to(viewer)
        .filter(uuid__in=uuids)
        .select_related("generation__owner")
        .order_by("-created_at", "-id")
    )


def collections_of(*, owner: AbstractBaseUser) -> QuerySet[Collection]:
    return Collection.objects.filter(owner=owner).order_by("name", "id")


def collection_of(*, owner: AbstractBaseUser, uuid: UUID) -> Collection | None:
    """One of `owner`'s collections; nobody else's (collections are private)."""
    return Collection.objects.filter(owner=owner, uuid=uuid).first()


def collections_with_covers(*, owner: AbstractBaseUser) -> QuerySet[Collection]:
    """The collections list: each with its size and the thumbnail of its cover (the
    chosen one, or else the first image in its order), both counting only images the
    owner may still see: one query whatever the number of collections."""
    visible = images_visible_to(owner)
    items = CollectionItem.objects.filter(collection=OuterRef("pk"), image__in=visible)
    first = items.order_by("position", "id").values("image__thumbnail")[:1]
    chosen = items.filter(image=OuterRef("cover_id")).values("image__thumbnail")[:1]
    size = items.order_by().values("collection").annotate(n=Count("id")).values("n")[:1]
    return collections_of(owner=owner).annotate(
        cover_thumbnail=Coalesce(Subquery(chosen), Subquery(first)),
        size=Coalesce(Subquery(size), 0),
    )


def collection_images(*, viewer: AbstractBaseUser, collection: Collection) -> QuerySet[Image]:
    """The images of `collection` that `viewer` may see, in the collection's order."""
    item = CollectionItem.objects.filter(collection=collection, image=OuterRef("pk"))
    return (
        images_visible_to(viewer)
        .filter(Exists(item))
        .annotate(
            position=Subquery(item.values("position")[:1]),
            is_favourite=Exists(Favourite.objects.filter(user=viewer, image=OuterRef("pk"))),
        )
        .select_related("generation__owner")
        .order_by("position", "id")
    )


def moderation_queue(*, state: str = "held") -> QuerySet[Image]:
    """Images waiting for a decision (or hidden ones, to restore), oldest first, each
    with its open reports and their count: three queries whatever the length."""
    if state == "hidden":
        waiting = Q(review=Image.Review.HIDDEN)
    else:
        waiting = _waiting_for_review()
    return (
        Image.objects.filter(waiting)
        .select_related("generation__owner")
        .annotate(report_count=Count("reports", filter=Q(reports__resolved_at__isnull=True)))
        .prefetch_related(
            Prefetch(
                "reports",
                queryset=Report.objects.filter(resolved_at__isnull=True)
                .select_related("reporter")
                # How often this person's reports of this image were overruled before:
                # a repeat reporter is visible as one.
                .annotate(
                    overruled=Count(
                        "image__reports",
                        filter=Q(
                            image__reports__reporter=F("reporter"),
                            image__reports__outcome="approve",
                        ),
                    )
                )
                .order_by("created_at"),
                to_attr="open_reports",
            )
        )
        .order_by("created_at", "id")
    )


def _waiting_for_review() -> Q:
    """Held images, and visible ones reported again after a moderator's decision."""
    reported_again = Exists(Report.objects.filter(image=OuterRef("pk"), resolved_at__isnull=True))
    return Q(review=Image.Review.HELD) | (Q(review=Image.Review.VISIBLE) & reported_again)


def moderation_waiting_count() -> int:
    """How many images wait for a moderator's decision: the nav's badge."""
    return Image.objects.filter(_waiting_for_review()).count()
