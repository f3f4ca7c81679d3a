"""Fair scheduling with real workers and Redis: one user's batch of 100 does not hold
up another user's single image by more than one round of provider calls."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.db import transaction

from generator import services
from generator.models import Generation
from generator.registry import FLUX_REALISM
from tests.conftest import wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.worker,
    pytest.mark.skipif(
        not django_settings.CELERY_BROKER_URL.startswith("redis"),
        reason="broker priorities need Redis (CI runs with it); the file broker is FIFO",
    ),
]


def submit(owner, prompt: str) -> Generation:
    body = {"model": "flux-realism", "prompt": prompt, "image_size": "square"}
    return services.generation_create(owner=owner, spec=FLUX_REALISM, body=body)


def test_a_batch_of_100_does_not_hold_up_someone_elses_image(
    owner, teammate, provider, workers, settings
):
    settings.GENERATION_MAX_ACTIVE_PER_USER = 200
    settings.GENERATION_FAIR_SHARE = 1
    provider.latency = 0.3
    with transaction.atomic():  # all 100 reach the broker at once, at commit
        batch = [submit(owner, f"batch image {n}") for n in range(100)]
    wait_for(lambda: provider.generation_calls() >= 4, timeout=30)

    calls_before = provider.generation_calls()
    single = submit(teammate, "just one lighthouse")
    wait_for(
        lambda: Generation.objects.filter(pk=single.pk, status="succeeded").exists(), timeout=60
    )
    prompts = [call["body"]["prompt"] for call in list(provider.calls)]
    position = prompts.index("just one lighthouse")
    concurrency = int(workers.env["WORKER_PROVIDER_CONCURRENCY"])
    # At most the calls already running when it arrived, plus one more round.
    assert position <= calls_before + concurrency, (position, calls_before)

    ids = [g.pk for g in batch]
    wait_for(
        lambda: (
            not Generation.objects.filter(pk__in=ids, status__in=("queued", "running")).exists()
        ),
        timeout=120,
    )
    assert Generation.objects.filter(pk__in=ids, status="succeeded").count() == 100
    # First in first out would have put it after all 100; it overtook the rest.
    later = [p for p in (c["body"]["prompt"] for c in provider.calls)][position + 1 :]
    assert sum(p.startswith("batch image") for p in later) >= 50
