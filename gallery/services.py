"""Writes behind the gallery: preferences, favourites, collections, deleting images.

Callers pass images already filtered through the access rule (gallery.selectors);
the services only add the ownership checks that reading does not imply.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import transaction

from gallery.models import Collection, CollectionItem, Favourite, Preferences
from generator.models import Image

logger = logging.getLogger(__name__)


def preferences_update(*, user: AbstractBaseUser, nsfw: str) -> Preferences:
    preferences, _ = Preferences.objects.update_or_create(user=user, defaults={"nsfw": nsfw})
    return preferences


def favourite_set(*, user: AbstractBaseUser, images: Iterable[Image], starred: bool) -> int:
    """Star or unstar `images` for `user`; returns how many changed."""
    images = list(images)
    if not starred:
        deleted, _ = Favourite.objects.filter(user=user, image__in=images).delete()
        return deleted
    existing = set(
        Favourite.objects.filter(user=user, image__in=images).values_list("image_id", flat=True)
    )
    new = [Favourite(user=user, image=image) for image in images if image.pk not in existing]
    # ignore_conflicts: a double click may race its twin; the constraint keeps one row.
    Favourite.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


def collection_create(*, owner: AbstractBaseUser, name: str) -> Collection:
    """Precondition: the name is validated and unused by `owner` (CollectionForm)."""
    return Collection.objects.create(owner=owner, name=name.strip())


def collection_delete(*, collection: Collection) -> None:
    """Deletes the board and its memberships; the images themselves stay."""
    collection.delete()


def collection_add(*, collection: Collection, images: Iterable[Image]) -> int:
    items = [CollectionItem(collection=collection, image=image) for image in images]
    created = CollectionItem.objects.bulk_create(items, ignore_conflicts=True)
    return len(created)


def collection_remove(*, collection: Collection, images: Iterable[Image]) -> int:
    deleted, _ = CollectionItem.objects.filter(collection=collection, image__in=images).delete()
    return deleted


@transaction.atomic
def image_delete_many(*, user: AbstractBaseUser, images: Iterable[Image]) -> int:
    """Delete the images among `images` that `user` generated, files included.

    Others' images are skipped, moderators included: removing someone's work is a
    moderation decision, not a bulk action. The generation stays (the studio keeps its
    history); the files go once the rows are gone for good."""
    own = [image for image in images if image.generation.owner_id == user.pk]
    if not own:
        return 0
    names = [name for image in own for name in (image.file.name, image.thumbnail.name) if name]
    Image.objects.filter(pk__in=[image.pk for image in own]).delete()
    transaction.on_commit(lambda: _delete_files(names))
    return len(own)


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete %s", name)
