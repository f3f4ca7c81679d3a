"""The pipeline faults found when the studio was tried hard, each with real worker
processes on a Redis of the test's own: rate limits that are waited out rather than
counted as failures, hostile but well-formed answers that end cleanly after one call,
a backlog that the sweep leaves alone, and a paused worker whose paid answers are kept.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from generator.models import Generation
from tests.conftest import ChaosNode, chaos_env, studio_broker, wait_for
from tests.generator.http_fakes import FakeServer, Reply, Seen
from tests.generator.test_chaos import (
    assert_nothing_lost_or_duplicated,
    node,
    node_env,
    provider_calls,
    settle,
    submit,
)
from tests.generator.test_hostile_pipeline import png

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

__all__ = ["node", "node_env"]  # fixtures


@contextmanager
def started(env: dict[str, str], tmp_path: Path, settings: Any, names: tuple[str, ...]):
    settings.GENERATION_QUEUE_GRACE_SECONDS = int(env["GENERATION_QUEUE_GRACE_SECONDS"])
    group = ChaosNode(env, tmp_path)
    with studio_broker(env):
        try:
            yield group.start(names)
        finally:
            group.stop()


def tasks_run(node: ChaosNode, task: str) -> int:
    """How many times the workers executed `task` (finished, retried or failed)."""
    pattern = re.compile(rf"Task generator\.tasks\.{task}\[[^\]]+\] (succeeded|retry|raised)")
    return sum(len(pattern.findall(node.logs[name].read_text(errors="replace"))) for name in
               ("worker-provider", "worker-images"))  # fmt: skip


# --- 3. Rate limits are "later", not "no" -------------------------------------------------


def test_four_rate_limits_then_success_take_about_the_sum_of_their_backoffs(
    owner, provider, private_redis, tmp_path, settings
):
    # No beat: the retries alone must get there, without waiting for a sweep.
    env = chaos_env(provider, private_redis.url, GENERATION_MAX_ATTEMPTS="3")
    with started(env, tmp_path, settings, ("worker-provider", "worker-images")):
        provider.fail_next(429, times=4, retry_after=1)
        generation = submit(owner, "four 429s", num_images=1)
        settle([generation], timeout=40)

    assert_nothing_lost_or_duplicated([generation], provider, rate_limited=4)
    assert generation.status == "succeeded", generation.error
    assert provider_calls(provider, generation) == 5
    assert generation.attempts == 1 and generation.rate_limits == 0
    waited = (generation.provider_finished_at - generation.created_at).total_seconds()
    # Four Retry-After: 1 backoffs; the sweep's grace (2 s) per retry would double it.
    assert 4 <= waited < 4 + 4, waited


def test_a_rate_limit_stretch_is_waited_out_by_every_generation(
    owner, provider, private_redis, tmp_path, settings
):
    """A stretch of 429s with Retry-After failed 12 of 60 generations by using up their
    attempts. Forty 429s over twelve generations with a cap of 3 attempts: none fails."""
    env = chaos_env(provider, private_redis.url, GENERATION_MAX_ATTEMPTS="3")
    with started(env, tmp_path, settings, ("worker-provider", "worker-images", "beat")):
        provider.fail_next(429, times=40, retry_after=1)
        generations = [submit(owner, f"stretch {i}", num_images=1) for i in range(12)]
        settle(generations, timeout=90)

    assert_nothing_lost_or_duplicated(generations, provider, rate_limited=40)
    assert [g.status for g in generations] == ["succeeded"] * 12, [g.error for g in generations]
    assert sum(provider_calls(provider, g) for g in generations) == 12 + 40


def test_a_rate_limit_longer_than_the_patience_fails_with_a_reason(
    owner, provider, private_redis, tmp_path, settings
):
    env = chaos_env(
        provider, private_redis.url, GENERATION_MAX_ATTEMPTS="2",
        GENERATION_RATE_LIMIT_PATIENCE="4",
    )  # fmt: skip
    with started(env, tmp_path, settings, ("worker-provider", "worker-images")):
        provider.fail_next(429, times=1000, retry_after=1)
        generation = submit(owner, "endless 429s", num_images=1)
        settle([generation], timeout=40)

    assert generation.status == "failed"
    assert generation.error_status == 429
    assert "kept refusing with rate limits" in generation.error
    # Every 429 of the stretch was a call, none of them counted against the 2 attempts.
    assert provider_calls(provider, generation) >= 4


# --- 4. Hostile but well-formed answers ---------------------------------------------------


def hostile_answers(image_url: str) -> dict[str, Callable[[], bytes]]:
    def answer(**fields: Any) -> bytes:
        return json.dumps({"images": [{"url": image_url, "width": 64, "height": 48}], **fields})

    def deep() -> bytes:
        # An ignored field 5,000 lists deep: json reads it, a recursive walk does not.
        body = answer(seed=7)
        return body[:-1].encode() + b', "debug": ' + b"[" * 5000 + b"]" * 5000 + b"}"

    return {
        "deep": deep,
        # json.dumps escapes a lone surrogate as \ud800, as a hostile server would send it.
        "surrogate": lambda: answer(seed=7, revised_prompt="a \ud800 lighthouse").encode(),
        "nul": lambda: answer(
            seed=7, revised_prompt="a \x00 lighthouse", timings={"in\x00ference": 1.0}
        ).encode(),  # fmt: skip
        "long seed": lambda: answer(seed=int("1" * 40)).encode(),
    }


def test_hostile_answers_end_cleanly_after_exactly_one_call(
    owner, private_redis, tmp_path, settings
):
    fake = FakeServer()
    fake.routes["/cdn/image.png"] = Reply(200, {"Content-Type": "image/png"}, png())
    answers = hostile_answers(fake.url("/cdn/image.png"))

    def reply(seen: Seen) -> Reply:
        prompt = json.loads(seen.body)["prompt"]
        case = prompt.removeprefix("chaos hostile ").split(":")[0]
        return Reply(200, {"Content-Type": "application/json"}, answers[case]())

    fake.routes["/v1/images/generations"] = reply
    fake.base_url = fake.url("/v1")  # as the offline provider names it, for chaos_env
    env = chaos_env(fake, private_redis.url)
    try:
        with started(env, tmp_path, settings, ("worker-provider", "worker-images")):
            generations = {case: submit(owner, f"hostile {case}", num_images=1)
                           for case in answers}  # fmt: skip
            started_at = time.monotonic()
            settle(list(generations.values()), timeout=30)
            seconds = time.monotonic() - started_at
    finally:
        fake.stop()

    calls = [json.loads(seen.body)["prompt"] for seen in fake.seen if seen.method == "POST"]
    for case, generation in generations.items():
        assert calls.count(generation.prompt) == 1, case
        assert generation.attempts == 1, case
        # Succeeded, cleaned: what no database can store is replaced, not a crash.
        assert generation.status == "succeeded", (case, generation.error)
        assert "\x00" not in generation.provider_prompt
        assert "\x00" not in json.dumps(generation.provider_response)
        generation.provider_prompt.encode("utf-8")
    assert generations["surrogate"].provider_prompt == "a \ufffd lighthouse"
    assert generations["nul"].provider_prompt == "a \ufffd lighthouse"
    assert generations["long seed"].seed == ""
    assert generations["deep"].seed == "7"
    assert seconds < 20


# --- 6. A backlog is not a lost message ---------------------------------------------------


def test_a_backlog_runs_each_step_about_once_per_generation(
    owner, provider, slow_cdn, node, settings
):
    """100 generations behind a mirror backlog ran 275 mirror tasks: the sweep re-sent
    every queued generation each grace period though its message was still waiting."""
    settings.GENERATION_MAX_ACTIVE_PER_USER = 30
    node.start()
    provider.latency = 0.5  # 30 calls on 4 threads: about 4 s of backlog
    slow_cdn.delay = 0.3  # 30 copies on one process: about 9 s, over four grace periods
    generations = [submit(owner, f"backlog {i}", num_images=1) for i in range(30)]
    settle(generations, timeout=120)

    assert_nothing_lost_or_duplicated(generations, provider)
    assert all(g.status == "succeeded" for g in generations)
    needed = len(generations)
    calls = sum(provider_calls(provider, g) for g in generations)
    assert calls <= 1.1 * needed
    wait_for(lambda: tasks_run(node, "generation_mirror") >= needed, timeout=10)
    time.sleep(2)  # any re-sent duplicate would run now
    assert tasks_run(node, "generation_call") <= 1.1 * needed
    assert tasks_run(node, "generation_mirror") <= 1.1 * needed
    assert slow_cdn.downloads == needed


# --- 7. A paused worker keeps the answers it paid for ---------------------------------------


def test_a_worker_paused_past_its_lease_keeps_the_answers_that_arrived(owner, provider, node):
    """SIGSTOP for longer than the lease: the sweep voids the claims and re-sends, but
    the answers that came in meanwhile are saved and the provider is not called again.
    Four calls fill the worker's four threads, so a re-sent message cannot start before
    the paused ones have finished."""
    node.start()
    provider.latency = 1.0
    generations = [submit(owner, f"paused {i}", num_images=1) for i in range(4)]
    wait_for(lambda: provider.in_flight >= 4, timeout=30, interval=0.05)
    worker = node.procs["worker-provider"]
    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        # The lease (8 s) runs out and the sweep voids every claim.
        def swept() -> bool:
            rows = Generation.objects.filter(pk__in=[g.pk for g in generations])
            return all(g.claim_token is None for g in rows)

        wait_for(swept, timeout=20, interval=0.3)
    finally:
        os.killpg(worker.pid, signal.SIGCONT)
    settle(generations, timeout=60)

    assert_nothing_lost_or_duplicated(generations, provider)
    assert all(g.status == "succeeded" for g in generations), [g.error for g in generations]
    assert [provider_calls(provider, g) for g in generations] == [1, 1, 1, 1]
    assert worker.poll() is None
