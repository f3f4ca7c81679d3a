"""Reports and moderation decisions: the only writes to an image's review state.

Every decision goes through moderation_decide, which records who, what, when and why
in the audit log, resolves the image's open reports and tells the owner.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Prefetch, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from gallery.models import Report
from gallery.services import _delete_files
from generator.audit import audit_record
from generator.members import notification_send
from generator.models import Image
from generator.roles import can_moderate

logger = logging.getLogger(__name__)

Review = Image.Review
DECISIONS = ("approve", "hide", "delete")


class ModerationError(Exception):
    pass


@transaction.atomic
def image_report(
    *, image: Image, reporter: AbstractBaseUser, reason: str, text: str = ""
) -> Report:
    """Report `image` (which the reporter can see); it is held until a moderator decides.

    A second report by the same person while the first is open updates it instead.
    """
    if reason not in Report.Reason.values:
        raise ModerationError("Choose a reason.")
    if image.generation.owner_id == reporter.pk:
        raise ModerationError("You cannot report your own image; delete or hide it instead.")
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
    if image.review == Review.VISIBLE:
        Image.objects.filter(pk=image.pk).update(review=Review.HELD, review_reason="reported")
    audit_record(
        actor=reporter,
        action="moderation.report",
        target=image,
        target_label=image.generation.prompt[:80],
        reason=Report.Reason(reason).label + (f": {text}" if text else ""),
    )
    return report


@transaction.atomic
def moderation_decide(
    *, images: Iterable[Image], decision: str, by: AbstractBaseUser, reason: str = ""
) -> int:
    """Approve, hide (with a reason the owner sees) or delete each image; returns how many.

    Approving also restores a hidden image. Each decision is in the audit log, resolves
    the image's open reports, and notifies its owner.
    """
    if not can_moderate(by):
        raise ModerationError("Only moderators can decide.")
    if decision not in DECISIONS:
        raise ModerationError(f"Unknown decision {decision!r}")
    reason = reason.strip()
    if decision in ("hide", "delete") and not reason:
        raise ModerationError("Give a reason: the owner is told.")
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
        count += 1
    if files:
        transaction.on_commit(lambda: _delete_files(files))
    return count


def moderation_queue(*, state: str = "held") -> QuerySet[Image]:
    """Images waiting for a decision (or hidden ones, to restore), oldest first, each
    with its open reports and their count: three queries whatever the length."""
    review = Review.HIDDEN if state == "hidden" else Review.HELD
    return (
        Image.objects.filter(review=review)
        .select_related("generation__owner")
        .annotate(report_count=Count("reports", filter=Q(reports__resolved_at__isnull=True)))
        .prefetch_related(
            Prefetch(
                "reports",
                queryset=Report.objects.filter(resolved_at__isnull=True)
                .select_related("reporter")
                .order_by("created_at"),
                to_attr="open_reports",
            )
        )
        .order_by("created_at", "id")
    )
