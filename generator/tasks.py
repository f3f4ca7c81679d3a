"""Celery entry points: load by id, call one service, own the retry policy."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_process_init, worker_ready

logger = logging.getLogger(__name__)


# max_retries=None on the task: Celery reads None passed to retry() as "the task's
# default" (3), so only the task attribute makes its retries unlimited. The attempt cap
# lives on the generation row (it also counts redeliveries after a crash).
@shared_task(bind=True, ignore_result=True, max_retries=None)
def generation_call(self, generation_id: int) -> None:
    from generator.services import RetryLater, default_policy
    from generator.services import generation_call as service

    try:
        service(generation_id=generation_id, policy=default_policy())
    except RetryLater as exc:
        raise self.retry(countdown=exc.countdown) from None


@shared_task(bind=True, ignore_result=True, max_retries=None)
def generation_mirror(self, generation_id: int) -> None:
    from generator.services import RetryLater, default_policy
    from generator.services import generation_mirror as service

    try:
        service(generation_id=generation_id, policy=default_policy(mirror=True))
    except RetryLater as exc:
        raise self.retry(countdown=exc.countdown) from None


@shared_task(ignore_result=True)
def generation_sweep() -> int:
    from generator.services import generation_sweep as service

    return service()


@worker_ready.connect
def _sweep_on_start(sender: object = None, **kwargs: object) -> None:
    # A worker starting after a crash picks up what the dead one held without
    # waiting for the next beat tick.
    from generator.services import generation_sweep as service

    try:
        service()
    except Exception:
        logger.exception("sweep at worker start failed")


@worker_process_init.connect
def _keep_database_connections(sender: object = None, **kwargs: object) -> None:
    # Pool processes (the image worker) run one short task after another: reconnecting
    # to PostgreSQL for each was a tenth of their time. A connection is kept for a
    # minute and health-checked before reuse (CONN_HEALTH_CHECKS), so a dropped one is
    # replaced, not used. The provider worker's threads close theirs while they wait.
    from django.db import connections

    for connection in connections.all(initialized_only=False):
        connection.settings_dict["CONN_MAX_AGE"] = 60
