"""Cancelling a generation: a queued one is never sent and costs nothing; a provider
call already in flight cannot be recalled, so it is paid for as the provider bills it
(call.py records the cost when the answer arrives) while nothing of its answer is
kept."""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from accounts import rules
from accounts.errors import Conflict
from audit.services import audit_record
from generator import events
from generator.models import Generation, Image
from generator.services.claims import delete_incoming

logger = logging.getLogger(__name__)

Status = Generation.Status


@transaction.atomic
def generation_cancel(*, generation: Generation, by: AbstractBaseUser) -> Generation:
    """Stop `generation` for good: no worker claims it again, the sweep never re-sends
    it, and any images already copied are removed. Audited.

    Only its owner or an admin may. Raises Conflict when it has already finished.
    The row is locked while it changes, so a worker saving its answer at the same
    moment sees the cancellation and keeps only the cost (call._save_provider_result).
    """
    rules.require(
        rules.may_cancel(by, generation), "Only the owner or an admin can cancel this generation."
    )
    current = Generation.objects.select_for_update().get(pk=generation.pk)
    if not current.is_cancellable:
        raise Conflict(
            f"This generation is already {current.get_status_display().lower()}; only a "
            "queued or running one can be cancelled."
        )
    was, step = current.status, current.step
    current.status = Status.CANCELLED
    current.finished_at = timezone.now()
    # Clearing the claim voids the holder's lease: its later writes (update_held) miss.
    current.lease_until = None
    current.claim_token = None
    current.error = ""
    current.save(update_fields=["status", "finished_at", "lease_until", "claim_token", "error"])
    # Every open page of the owner shows the card as Cancelled (after commit).
    events.generation_changed(current)
    generation_images_discard(current)
    audit_record(
        actor=by,
        action="generation.cancel",
        target=current,
        target_label=current.prompt[:80],
        was=was,
        step=step,
        # Claimed by a worker: the call may have reached the provider, which bills it.
        sent=current.started_at is not None,
    )
    logger.info("generation %s cancelled while %s (%s)", current.uuid, was, step)
    return current


def generation_images_discard(generation: Generation) -> None:
    """Remove what a cancelled generation's answer left: copied images (rows now,
    files after commit) and the inline images kept for the mirror step."""
    images = list(Image.objects.filter(generation=generation))
    names = [name for image in images for name in (image.file.name, image.thumbnail.name) if name]
    Image.objects.filter(pk__in=[image.pk for image in images]).delete()

    def delete_files() -> None:
        for name in names:
            try:
                default_storage.delete(name)
            except OSError:
                logger.warning("could not delete %s", name)
        delete_incoming(generation)

    transaction.on_commit(delete_files)


def generation_discard_if_cancelled(generation: Generation) -> bool:
    """Used by the mirror step when it could not finish: if the generation was
    cancelled while its images were being copied, the copies go too."""
    if not Generation.objects.filter(pk=generation.pk, status=Status.CANCELLED).exists():
        return False
    with transaction.atomic():
        generation_images_discard(generation)
    return True
