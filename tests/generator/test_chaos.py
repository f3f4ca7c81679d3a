"""Faults with real processes and signals: workers killed or stopped mid-step, a
message delivered twice, a generation that kills its worker every time.

Each test runs the whole node (both workers and beat, as docker-compose does) against
a Redis of its own, and ends with the same proof: every generation finished, succeeded
with exactly its images or failed with a reason, no stray files, and the provider was
called no more often than each of its calls (one per image) counted attempts.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from generator.models import Generation
from generator.registry import FLUX_REALISM
from generator.services import generation_create
from tests.conftest import (
    ChaosNode,
    chaos_env,
    pool_children,
    studio_broker,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture
def node_env(provider, slow_cdn, private_redis) -> dict[str, str]:
    # Workers call the provider through the slow CDN, so its image URLs lead there too.
    return chaos_env(provider, private_redis.url, AIMLAPI_BASE_URL=slow_cdn.base_url)


@pytest.fixture
def node(node_env, tmp_path, settings) -> Iterator[ChaosNode]:
    # This process plays the web: it dates its generations as the studio's would.
    settings.GENERATION_QUEUE_GRACE_SECONDS = int(node_env["GENERATION_QUEUE_GRACE_SECONDS"])
    group = ChaosNode(node_env, tmp_path)
    with studio_broker(node_env):
        yield group
        group.stop()


def submit(owner: Any, label: str, num_images: int = 2) -> Generation:
    body = {
        "model": "flux-realism",
        "prompt": f"chaos {label}: a lighthouse in a storm",
        "image_size": "square",
        "num_images": num_images,
    }
    return generation_create(owner=owner, spec=FLUX_REALISM, body=body)


def provider_calls(provider: Any, generation: Generation) -> int:
    return sum(
        1 for call in provider.calls if (call["body"] or {}).get("prompt") == generation.prompt
    )


def settle(generations: list[Generation], timeout: float = 60) -> None:
    def all_finished() -> bool:
        for generation in generations:
            generation.refresh_from_db()
        return all(generation.is_finished for generation in generations)

    wait_for(all_finished, timeout=timeout, interval=0.3)


def assert_nothing_lost_or_duplicated(
    generations: list[Generation], provider: Any, *, rate_limited: int = 0
) -> None:
    """The issue's proof, for every generation of a fault test. Calls the provider
    refused with a 429 (`rate_limited` of them at most) count no attempt."""
    for generation in generations:
        generation.refresh_from_db()
        assert generation.status in ("succeeded", "failed"), generation.status
        assert generation.lease_until is None and generation.claim_token is None
        images = list(generation.images.order_by("index"))
        if generation.status == "succeeded":
            assert [image.index for image in images] == list(range(generation.num_images))
        else:
            assert generation.error.strip(), "a failed generation says why"
        expected = {Path(image.file.name).name for image in images}
        expected |= {Path(image.thumbnail.name).name for image in images}
        folder = Path(settings.MEDIA_ROOT) / "generations" / str(generation.uuid)
        found = {entry.name for entry in folder.iterdir()} if folder.exists() else set()
        assert found == expected, "no stray or missing files"
        # Nothing paid twice: each call (one per image) was sent at most once per
        # attempt it counted, and only a kill mid-call costs an attempt without an answer.
        calls = list(generation.calls.all())
        assert provider_calls(provider, generation) <= (
            sum(call.attempts for call in calls) + rate_limited
        )
        for call in calls:
            sent = sum(
                1 for c in provider.calls
                if c["headers"].get("X-Client-Request-Id") == call.request_id
            )  # fmt: skip
            assert sent <= call.attempts + rate_limited


def kill_pool_child(node: ChaosNode) -> int:
    children = wait_for(lambda: pool_children(node.procs["worker-images"].pid), timeout=10)
    os.kill(children[0], signal.SIGKILL)
    return children[0]


# --- Workers killed or stopped mid-step ---------------------------------------------------


def test_a_pool_child_killed_mid_copy_loses_and_duplicates_nothing(owner, provider, slow_cdn, node):
    node.start()
    slow_cdn.delay = 3.0
    generations = [submit(owner, f"child {i}") for i in range(2)]
    wait_for(lambda: slow_cdn.downloads >= 1, timeout=30)
    kill_pool_child(node)
    slow_cdn.delay = 0.0

    settle(generations)
    assert_nothing_lost_or_duplicated(generations, provider)
    assert all(g.status == "succeeded" for g in generations)
    assert max(g.mirror_attempts for g in generations) >= 2  # the kill did hit a copy


def test_the_image_worker_main_process_killed_mid_copy_loses_nothing(
    owner, provider, slow_cdn, node
):
    node.start()
    slow_cdn.delay = 3.0
    generations = [submit(owner, f"main {i}") for i in range(2)]
    wait_for(lambda: slow_cdn.downloads >= 1, timeout=30)
    # The main process only: its pool child is orphaned mid-copy, as after an OOM kill.
    os.kill(node.procs["worker-images"].pid, signal.SIGKILL)
    node.procs["worker-images"].wait(timeout=10)
    slow_cdn.delay = 0.0
    node.start(("worker-images",))

    settle(generations)
    assert_nothing_lost_or_duplicated(generations, provider)
    assert all(g.status == "succeeded" for g in generations)


def test_the_provider_worker_killed_with_calls_in_flight_loses_nothing(owner, provider, node):
    node.start()
    provider.latency = 3.0
    generations = [submit(owner, f"calls {i}", num_images=1) for i in range(3)]
    wait_for(lambda: provider.in_flight >= 3, timeout=30, interval=0.05)
    node.kill("worker-provider")
    provider.latency = 0.0
    node.start(("worker-provider",))

    settle(generations)
    assert_nothing_lost_or_duplicated(generations, provider)
    assert all(g.status == "succeeded" for g in generations)
    assert all(g.attempts == 2 for g in generations)


def test_sigterm_during_a_call_lets_the_call_finish(owner, provider, node):
    node.start()
    provider.latency = 3.0
    generation = submit(owner, "deploy")
    wait_for(lambda: provider.in_flight >= 1, timeout=30, interval=0.05)
    worker = node.procs["worker-provider"]
    os.killpg(worker.pid, signal.SIGTERM)
    # Warm shutdown: the running call is answered and saved before the process exits.
    assert worker.wait(timeout=30) == 0, node.log("worker-provider")
    generation.refresh_from_db()
    assert generation.step == "mirror" and generation.attempts == 1

    settle([generation])
    assert_nothing_lost_or_duplicated([generation], provider)
    # Once per image: a batch of two is two calls of one image each.
    assert generation.status == "succeeded" and provider_calls(provider, generation) == 2


def test_a_message_delivered_twice_calls_the_provider_once(owner, provider, node):
    from generator.tasks import generation_call, generation_mirror

    node.start()
    provider.latency = 2.0
    generation = submit(owner, "twice")
    wait_for(lambda: provider.in_flight >= 1, timeout=30, interval=0.05)
    # Two more deliveries while the first is running, as a restored unacked message
    # or a sweep racing a slow worker would make.
    generation_call.apply_async((generation.pk,))
    generation_call.apply_async((generation.pk,))
    provider.latency = 0.0
    settle([generation])
    generation_mirror.apply_async((generation.pk,))
    generation_call.apply_async((generation.pk,))

    wait_for(lambda: node_idle(node), timeout=20)
    assert_nothing_lost_or_duplicated([generation], provider)
    assert generation.status == "succeeded"
    # Once per image: a batch of two is two calls of one image each.
    assert provider_calls(provider, generation) == 2 and generation.attempts == 1
    assert [call.attempts for call in generation.calls.all()] == [1, 1]


def node_idle(node: ChaosNode) -> bool:
    """Both workers logged as many finished tasks as received ones."""
    for name in ("worker-provider", "worker-images"):
        log = node.logs[name].read_text(errors="replace")
        if log.count("] received") != log.count("] succeeded in") + log.count("] retry:"):
            return False
    return True


def test_a_generation_that_kills_its_worker_every_time_fails_at_the_cap(
    owner, provider, slow_cdn, private_redis, tmp_path
):
    env = chaos_env(
        provider,
        private_redis.url,
        AIMLAPI_BASE_URL=slow_cdn.base_url,
        GENERATION_MAX_MIRROR_ATTEMPTS="2",
    )
    node = ChaosNode(env, tmp_path)
    with studio_broker(env):
        try:
            node.start()
            slow_cdn.delay = 60.0  # every copy hangs until its worker dies
            generation = submit(owner, "poison", num_images=1)
            for kills in range(1, 3):
                wait_for(lambda kills=kills: slow_cdn.downloads >= kills, timeout=45)
                kill_pool_child(node)
            settle([generation], timeout=40)
        finally:
            node.stop()

    assert_nothing_lost_or_duplicated([generation], provider)
    assert generation.status == "failed"
    assert "Could not copy the images: stopped after 2 attempts" in generation.error
    assert generation.mirror_attempts == 3 and slow_cdn.downloads == 2
    assert provider_calls(provider, generation) == 1


def test_a_call_outliving_the_visibility_timeout_is_redelivered_but_not_repeated(
    owner, provider, private_redis, tmp_path, settings
):
    # Misconfigured on purpose: Redis hands the running call's message out again after
    # 3 s. Only the claim on the row keeps the provider from being called twice.
    env = chaos_env(
        provider,
        private_redis.url,
        CELERY_VISIBILITY_TIMEOUT="3",
        AIMLAPI_READ_TIMEOUT="12",
        AIMLAPI_TOTAL_TIMEOUT="14",
        GENERATION_LEASE_SECONDS="16",
    )
    settings.GENERATION_QUEUE_GRACE_SECONDS = int(env["GENERATION_QUEUE_GRACE_SECONDS"])
    first, second = ChaosNode(env, tmp_path), ChaosNode(env, tmp_path)
    with studio_broker(env):
        try:
            first.start(("worker-provider", "worker-images"))
            provider.latency = 9.0
            generation = submit(owner, "visibility", num_images=1)
            wait_for(lambda: provider.in_flight >= 1, timeout=30, interval=0.05)
            # A worker starting restores every unacked message older than the timeout.
            wait_for(lambda: private_redis.unacked() >= 1, timeout=10)
            time.sleep(3.5)  # only to age the message past the timeout; asserted below
            second.start(("worker-provider",))
            received = lambda: sum(  # noqa: E731
                group.log("worker-provider").count("generation_call[") for group in (first, second)
            )
            wait_for(lambda: received() >= 2, timeout=20)
            settle([generation], timeout=40)
        finally:
            provider.latency = 0.0
            second.stop()
            first.stop()

    assert_nothing_lost_or_duplicated([generation], provider)
    assert generation.status == "succeeded"
    assert provider_calls(provider, generation) == 1 and generation.attempts == 1
