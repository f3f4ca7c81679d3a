"""PostgreSQL faults: the workers' connections cut mid-step, and the sweep run by two
processes at once. Both need PostgreSQL (SQLite has neither backends to terminate nor
row locks), which is what CI runs."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from generator.models import Generation
from tests.conftest import ROOT, chaos_env, studio_broker, wait_for
from tests.generator.test_chaos import (
    assert_nothing_lost_or_duplicated,
    node,
    node_env,
    settle,
    submit,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.worker,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: pg_terminate_backend and SELECT ... SKIP LOCKED (CI runs it)",
    ),
]

__all__ = ["node", "node_env"]  # fixtures shared with the other chaos tests


def terminate_other_backends() -> int:
    """Cut every connection to the test database but this process's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_connections_cut_mid_call_and_mid_copy_lose_and_duplicate_nothing(
    owner, provider, slow_cdn, node
):
    node.start()
    provider.latency = 2.0
    slow_cdn.delay = 3.0
    generations = [submit(owner, f"db {i}") for i in range(2)]
    wait_for(lambda: provider.in_flight >= 2, timeout=30, interval=0.05)
    assert terminate_other_backends() >= 1
    wait_for(lambda: slow_cdn.downloads >= 1, timeout=30)
    # The image worker holds its connection while it copies; the next write finds it cut.
    assert terminate_other_backends() >= 1
    provider.latency = 0.0
    slow_cdn.delay = 0.0

    settle(generations, timeout=60)
    assert_nothing_lost_or_duplicated(generations, provider)
    assert all(g.status == "succeeded" for g in generations)


SWEEP = """
import os, sys, time, django
django.setup()
from generator.services import generation_sweep
while not os.path.exists(sys.argv[1]):
    time.sleep(0.001)
print(generation_sweep(limit=10_000))
"""


def test_two_sweeps_at_once_send_each_generation_exactly_once(
    owner, provider, private_redis, tmp_path, settings
):
    env = chaos_env(provider, private_redis.url)
    settings.GENERATION_MAX_ACTIVE_PER_USER = 1000
    settings.GENERATION_MAX_PER_HOUR = 1000
    with studio_broker(env):
        generations = [submit(owner, f"sweep {i}", num_images=1) for i in range(300)]
    # As if every message had been lost: nothing queued, every row due for the sweep.
    private_redis.client().delete(*private_redis.queue_keys("provider"))
    Generation.objects.update(sweep_after=timezone.now() - timedelta(seconds=1))

    go = tmp_path / "go"
    sweeps = [
        subprocess.Popen(
            [sys.executable, "-c", SWEEP, str(go)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    go.touch()
    counts = [int(sweep.communicate(timeout=60)[0].split()[-1]) for sweep in sweeps]

    assert sum(counts) == len(generations), counts
    assert private_redis.queued("provider") == len(generations)
