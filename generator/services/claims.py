"""What every step shares: sending a generation's message after commit, claiming it
with one conditional UPDATE (so a message delivered twice does the work once),
releasing it for a retry, failing it with a reason, and the sweep that re-sends what
a lost message or a dead worker left behind."""

from __future__ import annotations

import logging
import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from generator import events
from generator.models import Generation
from studio.http import gateway_status

logger = logging.getLogger(__name__)

Status = Generation.Status
Step = Generation.Step


class RetryLater(Exception):
    """The step hit a transient error and released its claim; try again later."""

    def __init__(self, countdown: float, reason: str) -> None:
        super().__init__(reason)
        self.countdown = countdown


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    delay: Callable[[int, float | None], float]


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter; a provider's Retry-After wins, within bounds."""
    cap = settings.GENERATION_RETRY_MAX
    if retry_after is not None:
        return min(max(retry_after, 1.0), cap)
    base = settings.GENERATION_RETRY_BASE * 2 ** max(attempt - 1, 0)
    return min(cap, base) * random.uniform(0.5, 1.0)


def default_policy(*, mirror: bool = False) -> RetryPolicy:
    limit = settings.GENERATION_MAX_MIRROR_ATTEMPTS if mirror else settings.GENERATION_MAX_ATTEMPTS
    return RetryPolicy(max_attempts=limit, delay=retry_delay)


def send_on_commit(generation: Generation, *, announce: bool = False) -> None:
    """Send the generation's message after commit; `announce` also tells its owner's
    pages (generator.events) in the same callback."""
    # robust=True: with the broker down the user still gets their queued generation
    # (the row is committed) and the sweep sends the message later.
    event = events.generation_event(generation) if announce else None
    transaction.on_commit(
        partial(_send_and_announce, generation.pk, generation.step, generation.priority, event),
        robust=True,
    )


def _send_and_announce(
    generation_id: int, step: str, priority: int, event: tuple[str, str, dict] | None
) -> None:
    try:
        send(generation_id, step, priority)
    finally:
        # Told even when the broker is down: the page shows the queued state.
        if event is not None:
            events.publish(*event)


def send(generation_id: int, step: str, priority: int = 0) -> None:
    from generator.tasks import generation_call as generation_call_task
    from generator.tasks import generation_mirror as generation_mirror_task

    task = generation_call_task if step == Step.CALL else generation_mirror_task
    task.apply_async((generation_id,), priority=priority)


def claim(generation_id: int, step: str) -> Generation | None:
    now = timezone.now()
    token = uuid.uuid4()
    counter = "attempts" if step == Step.CALL else "mirror_attempts"
    lease = timedelta(seconds=settings.GENERATION_LEASE_SECONDS)
    claimed = (
        Generation.objects.filter(
            pk=generation_id, step=step, status__in=(Status.QUEUED, Status.RUNNING)
        )
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(
            status=Status.RUNNING,
            lease_until=now + lease,
            claim_token=token,
            started_at=Coalesce("started_at", Value(now)),
            **{counter: F(counter) + 1},
        )
    )
    if not claimed:
        return None
    generation = Generation.objects.get(pk=generation_id)
    events.generation_changed(generation)
    return generation


def update_held(generation: Generation, **fields: Any) -> bool:
    """Write `fields` only if this worker still holds the generation; its owner's
    pages are told (generator.events)."""
    held = bool(
        Generation.objects.filter(pk=generation.pk, claim_token=generation.claim_token).update(
            **fields
        )
    )
    if held:
        events.generation_changed(generation, **fields)
    return held


def release_for_retry(generation: Generation, countdown: float, reason: str, **fields: Any) -> None:
    grace = settings.GENERATION_QUEUE_GRACE_SECONDS
    update_held(
        generation,
        lease_until=None,
        claim_token=None,
        error=reason,
        sweep_after=timezone.now() + timedelta(seconds=countdown + grace),
        **fields,
    )


def fail(generation: Generation, message: str, *, status: int | None = None) -> None:
    now = timezone.now()
    update_held(
        generation,
        status=Status.FAILED,
        error=message[:2000],
        error_status=gateway_status(status) if status is not None else None,
        lease_until=None,
        claim_token=None,
        finished_at=now,
    )
    delete_incoming(generation)
    logger.info("generation %s failed: %s", generation.uuid, message)


# A queue with messages still waiting delays re-sends: a message behind a backlog is
# not lost. Past this many grace periods it is re-sent anyway, in case it was.
BACKLOG_GRACE_PERIODS = 10


def queue_backlog(step: str) -> int | None:
    """How many messages wait in `step`'s queue, or None if the broker cannot say."""
    from celery import current_app
    from kombu.exceptions import ChannelError

    task = (
        "generator.tasks.generation_call"
        if step == Step.CALL
        else "generator.tasks.generation_mirror"
    )
    queue = settings.CELERY_TASK_ROUTES[task]["queue"]
    try:
        with current_app.connection_for_read() as conn:
            # Not passive: kombu's Redis transport checks a queue's existence with an
            # EXISTS that ignores global_keyprefix, so a passive declare calls every
            # prefixed queue missing. Declaring is a no-op on the brokers the studio uses.
            return conn.default_channel.queue_declare(queue=queue).message_count
    except ChannelError:
        return 0
    except Exception:
        logger.warning("could not read the %s queue's length", queue, exc_info=True)
        return None


def generation_sweep(*, limit: int = 500) -> int:
    """Re-send the message of every unfinished generation nobody is working on.

    Covers a message lost between commit and broker, a broker that was down at
    submit, and a worker that died holding a lease. A queued generation is re-sent
    only when its step's queue is empty (so its message cannot be waiting behind the
    others) or after BACKLOG_GRACE_PERIODS: re-sending every waiting generation each
    grace period multiplied the messages under a backlog. Returns how many were re-sent.
    """
    now = timezone.now()
    grace = timedelta(seconds=settings.GENERATION_QUEUE_GRACE_SECONDS)
    lost = Q(lease_until__lt=now)  # an expired lease: its worker is presumed dead
    for step in (Step.CALL, Step.MIRROR):
        waiting = queue_backlog(step)
        overdue = now - grace * BACKLOG_GRACE_PERIODS if waiting else now
        lost |= Q(step=step, lease_until__isnull=True, sweep_after__lt=overdue)
    with transaction.atomic():
        due = list(
            Generation.objects.select_for_update(skip_locked=True)
            .filter(status__in=(Status.QUEUED, Status.RUNNING))
            .filter(lost)
            .order_by("sweep_after")
            .only("pk", "step", "uuid", "priority")[:limit]
        )
        for generation in due:
            # An expired lease is void: its holder is presumed dead and may no longer
            # write, and the row waits for the re-sent message like a queued one.
            Generation.objects.filter(pk=generation.pk).update(
                sweep_after=now + grace, lease_until=None, claim_token=None
            )
            send_on_commit(generation)
    if due:
        logger.info("sweep re-sent %d generation(s)", len(due))
    return len(due)


def delete_incoming(generation: Generation) -> None:
    stored = [e["stored"] for e in generation.provider_images or [] if e.get("stored")]
    delete_incoming_names(stored)


def delete_incoming_names(stored: list[str]) -> None:
    """Delete inline images kept for the mirror step, and their folder once empty."""
    for name in stored:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete %s", name)
    if stored:
        try:
            os.rmdir(default_storage.path(os.path.dirname(stored[0])))
        except (NotImplementedError, OSError):
            pass  # object stores have no folders; a non-empty one is left for inspection
