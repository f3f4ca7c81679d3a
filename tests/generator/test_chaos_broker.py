"""Redis stopped, frozen (SIGSTOP) and paused (CLIENT PAUSE) while users submit and
while workers work, on a Redis of the test's own: the studio answers within seconds,
keeps the generation queued, and the sweep finishes it once Redis is back."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.urls import reverse

from accounts.tokens import api_token_create
from generator.models import Generation
from tests.conftest import ChaosNode, RedisServer, chaos_env, studio_broker, wait_for
from tests.generator.test_chaos import assert_nothing_lost_or_duplicated, settle, submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

# Measured about 6 s with the settings' socket timeouts and one publish retry; without
# them a frozen Redis holds the request for minutes.
ANSWER_WITHIN = 9.0
FAULTS = ("stopped", "frozen", "paused")


def break_redis(redis: RedisServer, fault: str, seconds: float) -> None:
    if fault == "stopped":
        redis.stop()
    elif fault == "frozen":
        redis.freeze()
    else:
        redis.pause(int(seconds * 1000))


def mend_redis(redis: RedisServer, fault: str) -> None:
    if fault == "stopped":
        redis.start()
    elif fault == "frozen":
        redis.thaw()
    else:
        redis.wait_unpaused()


@pytest.fixture
def node(provider, private_redis, tmp_path, settings) -> Iterator[ChaosNode]:
    # One provider thread: a slot held by an ack that failed during the outage would
    # leave the worker with none, and the test would see it stall.
    env = chaos_env(provider, private_redis.url, WORKER_PROVIDER_CONCURRENCY="1")
    # This process plays the web: it dates its generations as the studio's would.
    settings.GENERATION_QUEUE_GRACE_SECONDS = int(env["GENERATION_QUEUE_GRACE_SECONDS"])
    group = ChaosNode(env, tmp_path)
    with studio_broker(env):
        yield group
        group.stop()


@pytest.mark.parametrize("fault", FAULTS)
def test_submitting_during_a_broker_outage_answers_quickly_and_completes_later(
    client, owner, provider, private_redis, node, fault
):
    node.start()
    client.force_login(owner)
    token = api_token_create(user=owner, name="script")[1]
    # Paused for as long as the two requests may take at most.
    break_redis(private_redis, fault, seconds=2 * ANSWER_WITHIN)
    try:
        started = time.monotonic()
        form = client.post(
            reverse("generator:studio"),
            {"model": "flux-realism", "prompt": f"outage {fault} form", "image_size": "square",
             "num_images": "1", "output_format": "jpeg"},
        )  # fmt: skip
        form_seconds = time.monotonic() - started
        started = time.monotonic()
        # The API view is async: call it from a thread with no event loop of its own
        # (a browser test earlier in the session may have left one in this thread).
        with ThreadPoolExecutor(1) as pool:
            api = pool.submit(
                client.post,
                "/v1/images/generations",
                {"model": "flux-realism", "prompt": f"outage {fault} api"},
                content_type="application/json",
                headers={"Authorization": f"Bearer {token}", "Prefer": "respond-async"},
            ).result()
        api_seconds = time.monotonic() - started
        generations = list(Generation.objects.order_by("id"))
        statuses = [g.status for g in generations]
        # While Redis is still down, so the sweep cannot have sent it yet.
        page = client.get(form["Location"]) if form.status_code == 303 else None
    finally:
        mend_redis(private_redis, fault)

    assert form.status_code == 303 and form_seconds < ANSWER_WITHIN, form_seconds
    assert api.status_code == 202 and api_seconds < ANSWER_WITHIN, api_seconds
    assert statuses == ["queued", "queued"]
    assert "badge-queued" in page.text

    # A consumer stuck on the frozen connection is replaced within about a minute.
    settle(generations, timeout=120)
    assert_nothing_lost_or_duplicated(generations, provider)
    assert [g.status for g in generations] == ["succeeded", "succeeded"]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_broker_outage_while_workers_work_loses_and_duplicates_nothing(
    owner, provider, private_redis, node, fault
):
    node.start()
    provider.latency = 2.0
    generations = [submit(owner, f"{fault} {i}") for i in range(3)]
    wait_for(lambda: provider.in_flight >= 1, timeout=30, interval=0.05)
    # Long enough for every call in flight to finish and try to send its next step.
    break_redis(private_redis, fault, seconds=6)
    time.sleep(4)
    mend_redis(private_redis, fault)
    provider.latency = 0.0

    # After CLIENT PAUSE a consumer's BRPOP may wait about 60 s before kombu drops it.
    settle(generations, timeout=120)
    assert_nothing_lost_or_duplicated(generations, provider)
    assert all(g.status == "succeeded" for g in generations)


def test_production_settings_bound_a_publish_to_a_frozen_redis(tmp_path):
    from tests.studio.test_settings import load_production_settings

    s = load_production_settings(
        {"DATA_DIR": str(tmp_path), "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"}
    )
    options = s["CELERY_BROKER_TRANSPORT_OPTIONS"]
    # BRPOP waits 1 s on the server; a sync command must be allowed longer than that.
    assert 1 < options["socket_timeout"] <= 2 and options["socket_connect_timeout"] <= 2
    # A replayed LPUSH after a timeout may send the message twice.
    assert options["retry_on_timeout"] is False
    # Each publish retry costs a reconnect check and a resend, each up to socket_timeout.
    retries = s["CELERY_TASK_PUBLISH_RETRY_POLICY"]["max_retries"]
    assert (1 + 2 * retries) * options["socket_timeout"] < ANSWER_WITHIN
    # A consumer stuck on a frozen connection is replaced within about a minute.
    assert options["health_check_interval"] <= 25


def test_an_ack_that_times_out_frees_the_workers_prefetch_slot(private_redis):
    from kombu import Connection

    import studio.celery  # noqa: F401  (the fix is installed where the app is made)

    with Connection(private_redis.url, transport_options={"socket_timeout": 1}) as conn:
        queue = conn.SimpleQueue("slot")
        queue.put({"generation": 1})
        channel = queue.consumer.channel
        channel.basic_qos(0, 1, False)  # a prefetch of one, as the workers run
        message = queue.get(timeout=5)
        assert not channel.qos.can_consume()
        private_redis.freeze()
        try:
            with pytest.raises(Exception, match="[Tt]imeout"):
                message.ack()
        finally:
            private_redis.thaw()
        # Without the fix the slot stays taken and the worker never consumes again.
        assert channel.qos.can_consume()
        queue.close()


@pytest.fixture
def busy_node(provider, private_redis, tmp_path, settings) -> Iterator[ChaosNode]:
    # The provider worker as docker-compose runs it: 32 threads.
    env = chaos_env(provider, private_redis.url, WORKER_PROVIDER_CONCURRENCY="32")
    settings.GENERATION_QUEUE_GRACE_SECONDS = int(env["GENERATION_QUEUE_GRACE_SECONDS"])
    group = ChaosNode(env, tmp_path)
    with studio_broker(env):
        yield group
        group.stop()


def test_a_redis_restart_with_many_calls_in_flight_keeps_the_provider_worker_running(
    owner, provider, private_redis, busy_node, settings
):
    settings.GENERATION_MAX_ACTIVE_PER_USER = 32
    busy_node.start()
    workers = {name: busy_node.procs[name] for name in ("worker-provider", "worker-images")}
    pids = {name: proc.pid for name, proc in workers.items()}
    # Under the provider timeouts of chaos_env, so every call in flight is answered.
    provider.latency = 4.0
    generations = [submit(owner, f"busy {i}", num_images=1) for i in range(24)]
    wait_for(lambda: provider.in_flight >= 20, timeout=60, interval=0.05)
    # While the calls are still running: the consumer loses its connection with about
    # twenty messages delivered and not acknowledged.
    private_redis.stop()
    time.sleep(3)
    sweeps = sweeps_run(busy_node)
    private_redis.start()
    provider.latency = 0.0

    def finished_or_a_worker_gone() -> bool:
        for generation in generations:
            generation.refresh_from_db()
        gone = any(proc.poll() is not None for proc in workers.values())
        return gone or all(generation.is_finished for generation in generations)

    # A worker that exits ends the wait: nobody restarts it here, so nothing would finish.
    wait_for(finished_or_a_worker_gone, timeout=240, interval=0.5)
    for name, proc in workers.items():
        # Not restarted by anyone: the same process consumed again after the outage.
        assert proc.poll() is None and proc.pid == pids[name], busy_node.log(name)
        assert "Unrecoverable error" not in busy_node.logs[name].read_text(errors="replace")
    assert_nothing_lost_or_duplicated(generations, provider)
    assert [g.status for g in generations] == ["succeeded"] * len(generations)
    # Beat's sweeps are consumed again after the outage.
    wait_for(lambda: sweeps_run(busy_node) > sweeps, timeout=60, interval=0.5)


SWEEP_RAN = re.compile(r"generation_sweep\[[^\]]+\] succeeded")


def sweeps_run(
    node: ChaosNode, names: tuple[str, ...] = ("worker-provider", "worker-images")
) -> int:
    return sum(
        len(SWEEP_RAN.findall(node.logs[name].read_text(errors="replace"))) for name in names
    )


def test_the_sweep_runs_while_the_image_worker_is_down(node):
    # The sweep has a queue of its own that every worker takes, so a missing (or
    # exited, or busy) image worker does not stop it.
    node.start(("worker-provider", "beat"))
    wait_for(lambda: sweeps_run(node, ("worker-provider",)) >= 2, timeout=60, interval=0.5)
