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

    class Meta:
        constraints = [
            # Also the index the gallery's collection filter joins through.
            models.UniqueConstraint(fields=["collection", "image"], name="collection_item_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.collection_id} ∋ {self.image_id}"
