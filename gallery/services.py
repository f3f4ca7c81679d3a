"""Writes behind the gallery: preferences, favourites, collections, deleting images,
and reports and moderation decisions (the only writes to an image's review state).

Callers pass images already filtered through the access rule (gallery.selectors);
the services only add the ownership checks that reading does not imply. Every
moderation decision goes through moderation_decide, which records who, what, when and
why in the audit log, resolves the image's open reports and tells the owner.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Max
from django.urls import reverse
from django.utils import timezone

from accounts import rules
from accounts.errors import InvalidRequest, Refused
from accounts.services import notification_send
from audit.services import audit_record
from gallery.models import Collection, CollectionItem, Favourite, Preferences, Report
from gallery.selectors import moderation_waiting_count
from generator import events
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


def collection_rename(*, collection: Collection, name: str) -> Collection:
    """Precondition: the name is validated and unused by the owner (CollectionForm)."""
    collection.name = name.strip()
    collection.save(update_fields=["name"])
    return collection


@transaction.atomic
def collection_add(*, collection: Collection, images: Iterable[Image]) -> int:
    """Add `images` after the collection's last one, in the order given; images already
    in it keep their place. Returns how many were added."""
    # The collection's row is locked so that two adds at once do not share positions.
    Collection.objects.select_for_update().filter(pk=collection.pk).first()
    present = set(collection.items.values_list("image_id", flat=True))
    last = collection.items.aggregate(last=Max("position"))["last"] or 0
    new = [image for image in dict.fromkeys(images) if image.pk not in present]
    items = [
        CollectionItem(collection=collection, image=image, position=last + offset)
        for offset, image in enumerate(new, start=1)
    ]
    CollectionItem.objects.bulk_create(items, ignore_conflicts=True)
    return len(items)


@transaction.atomic
def collection_move(*, collection: Collection, image: Image, by: int) -> bool:
    """Move `image` `by` places in the collection's order (-1: up, 1: down); False when
    it is not in the collection or already at that end. The whole order is written
    again as 1, 2, 3…, which also mends ties a concurrent add may have left."""
    Collection.objects.select_for_update().filter(pk=collection.pk).first()
    items = list(collection.items.order_by("position", "id"))
    index = next((i for i, item in enumerate(items) if item.image_id == image.pk), None)
    if index is None or not 0 <= index + by < len(items):
        return False
    items.insert(index + by, items.pop(index))
    changed = []
    for position, item in enumerate(items, start=1):
        if item.position != position:
            item.position = position
            changed.append(item)
    CollectionItem.objects.bulk_update(changed, ["position"])
    return True


def collection_cover_set(*, collection: Collection, image: Image | None) -> None:
    """Precondition: `image` is in the collection (or None: back to the first image)."""
    collection.cover = image
    collection.save(update_fields=["cover"])


def collection_remove(*, collection: Collection, images: Iterable[Image]) -> int:
    images = list(images)
    deleted, _ = CollectionItem.objects.filter(collection=collection, image__in=images).delete()
    # A cover taken out of the collection stops being its cover.
    Collection.objects.filter(pk=collection.pk, cover__in=images).update(cover=None)
    return deleted


@transaction.atomic
def image_delete_many(*, user: AbstractBaseUser, images: Iterable[Image]) -> int:
    """Delete the images among `images` that `user` generated, files included.

    Others' images are skipped, moderators included: removing someone's work is a
    moderation decision, not a bulk action. The generation stays (the studio keeps its
    history); the files go once the rows are gone for good."""
    own = [image for image in images if rules.may_delete_own_image(user, image.generation)]
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


# --- Reports and moderation ------------------------------------------------------------

Review = Image.Review
DECISIONS = ("approve", "hide", "delete")


@transaction.atomic
def image_report(
    *, image: Image, reporter: AbstractBaseUser, reason: str, text: str = ""
) -> Report:
    """Report `image` (which the reporter can see); it is held until a moderator decides.

    A second report by the same person while the first is open updates it instead.
    """
    if reason not in Report.Reason.values:
        raise InvalidRequest("Choose a reason.")
    if image.generation.owner_id == reporter.pk:
        # Said plainly, since the owner's way out is another action.
        raise Refused("You cannot report your own image; delete or hide it instead.")
    rules.require(rules.may_report(reporter, image, image.generation), "You cannot see this image.")
    report = (
        Report.objects.select_for_update()
        .filter(image=image, reporter=reporter, resolved_at__isnull=True)
        .first()
    )
    if report is None:
        report = Report.objects.create(image=image, reporter=reporter, reason=reason, text=text)
    else:
        report.reason, report.text = reason, text or report.text
        report.save(update_fields=["reason", "text", "updated_at"])
    # Once a moderator has decided, a new report goes to the queue but does not hide
    # the image again: otherwise one person could keep an approved image held forever.
    if image.review == Review.VISIBLE and image.reviewed_at is None:
        Image.objects.filter(pk=image.pk).update(review=Review.HELD, review_reason="reported")
    audit_record(
        actor=reporter,
        action="moderation.report",
        target=image,
        target_label=image.generation.prompt[:80],
        reason=Report.Reason(reason).label + (f": {text}" if text else ""),
    )
    _moderation_queue_changed()
    return report


def _moderation_queue_changed() -> None:
    # Counted after commit, so moderators' badges show the queue as it now stands.
    transaction.on_commit(
        lambda: events.moderation_changed(moderation_waiting_count()), robust=True
    )


@transaction.atomic
def moderation_decide(
    *, images: Iterable[Image], decision: str, by: AbstractBaseUser, reason: str = ""
) -> int:
    """Approve, hide (with a reason the owner sees) or delete each image; returns how many.

    Approving also restores a hidden image. Each decision is in the audit log, resolves
    the image's open reports, and notifies its owner.
    """
    rules.require(rules.may_moderate(by), "Only moderators can decide.")
    if decision not in DECISIONS:
        raise InvalidRequest(f"Unknown decision {decision!r}")
    reason = reason.strip()
    if decision in ("hide", "delete") and not reason:
        raise InvalidRequest("Give a reason: the owner is told.")
    now = timezone.now()
    count = 0
    files: list[str] = []
    for image in images:
        generation = image.generation
        label = generation.prompt[:80]
        Report.objects.filter(image=image, resolved_at__isnull=True).update(
            resolved_at=now, outcome=decision
        )
        audit_record(
            actor=by,
            action=f"moderation.{decision}",
            target=image,
            target_label=label,
            reason=reason,
            previous=image.review,
        )
        link = reverse("gallery:image", args=[image.uuid])
        if decision == "approve":
            image.review, image.review_reason, image.reviewed_at = Review.VISIBLE, "", now
            image.save(update_fields=["review", "review_reason", "reviewed_at"])
            text = f"A moderator approved your image “{label}”: the team can see it."
        elif decision == "hide":
            image.review, image.review_reason, image.reviewed_at = Review.HIDDEN, reason, now
            image.save(update_fields=["review", "review_reason", "reviewed_at"])
            text = f"A moderator hid your image “{label}” from the team. Reason: {reason}"
        else:
            files += [n for n in (image.file.name, image.thumbnail.name) if n]
            image.delete()
            link = reverse("generator:detail", args=[generation.uuid])
            text = f"A moderator deleted your image “{label}”. Reason: {reason}"
        if generation.owner_id != by.pk:
            notification_send(user=generation.owner, text=text, link=link)
            events.notifications_changed(generation.owner_id)
        count += 1
    if files:
        transaction.on_commit(lambda: _delete_files(files))
    _moderation_queue_changed()
    return count
