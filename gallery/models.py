from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from generator.models import Image


class Preferences(models.Model):
    """A viewer's gallery settings; a user without a row gets the defaults."""

    class Nsfw(models.TextChoices):
        BLUR = "blur", "Blur until I click"
        SHOW = "show", "Show unblurred"
        HIDE = "hide", "Hide them"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="gallery_preferences"
    )
    nsfw = models.CharField(max_length=8, choices=Nsfw.choices, default=Nsfw.BLUR)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user_id}: nsfw {self.nsfw}"


class Favourite(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="favourites"
    )
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="favourites")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Also the index behind the star on every card (an EXISTS per row) and the
            # "favourites only" filter, both looked up by (user, image).
            models.UniqueConstraint(fields=["user", "image"], name="favourite_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} ★ {self.image_id}"


class Collection(models.Model):
    """A named board of images; private to its owner, who may add any image they can see."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="collections"
    )
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    images = models.ManyToManyField(Image, through="CollectionItem", related_name="collections")
    # The owner's pick for the collections list; without one (or once the image is gone)
    # the list shows the first image in the collection's order.
    cover = models.ForeignKey(
        Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ("name", "id")
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="collection_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class CollectionItem(models.Model):
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="items")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="collection_items")
    added_at = models.DateTimeField(auto_now_add=True)
    # The owner's order (move up/down); new images go last. Ties (none are written, but
    # a concurrent add could make one) fall back to the id.
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("position", "id")
        constraints = [
            # Also the index the gallery's collection filter joins through.
            models.UniqueConstraint(fields=["collection", "image"], name="collection_item_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.collection_id} ∋ {self.image_id}"


class Report(models.Model):
    """A viewer's report of an image; one open report per person and image (a second
    report by the same person updates the first). Resolved by a moderation decision."""

    class Reason(models.TextChoices):
        SEXUAL = "sexual", "Sexual or graphic content"
        HATEFUL = "hateful", "Hateful or harassing"
        PERSON = "person", "Depicts a real person without consent"
        COPYRIGHT = "copyright", "Copyright or trademark"
        SPAM = "spam", "Spam or off-topic"
        OTHER = "other", "Something else"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="reports")
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reports_made"
    )
    reason = models.CharField(max_length=16, choices=Reason.choices)
    text = models.TextField(blank=True, max_length=1000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, blank=True)

    class Meta:
        constraints = [
            # The merge of duplicate reports: at most one open report per person and image.
            models.UniqueConstraint(
                fields=["image", "reporter"],
                condition=models.Q(resolved_at=None),
                name="report_one_open_per_reporter",
            ),
        ]
        indexes = [
            # The moderation queue's report counts: open reports per image.
            models.Index(
                fields=["image"], name="report_open", condition=models.Q(resolved_at=None)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reporter_id} reported {self.image_id}: {self.reason}"
