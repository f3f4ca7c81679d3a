"""The generation pipeline end to end: studio overhead, then throughput.

Starts the studio's processes as `make run` does (ASGI web, provider worker on threads,
image worker on processes) against a fresh database named after DATABASE_URL's (plus
"_pipeline") and CELERY_BROKER_URL, with the offline provider in its own process.

Overhead: one generation at a time (1024×768 JPEG, provider answering in --latency
seconds); a browser polls the generation's card every --poll seconds until its image
is there. The figure is from the provider's answer (the worker's provider_finished_at)
to the poll that first shows the image: download, verify, store, thumbnail, status
update and the next poll. The baseline is the poll interval itself, the floor any
polling page has.

Throughput: --count generations queued at once (one commit), provider taking 2 s,
--in-flight provider threads on one worker node. Completed per
second from the first submit to the last image, against the ideal (in-flight ÷
provider time), with the peak RSS of both workers and their pools.

    python bench/pipeline.py [--samples 20] [--count 200] [--in-flight 40]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    ROOT,
    drop_database,
    emit,
    figure,
    free_port,
    fresh_database,
    percentile,
    rss_mib,
    stop,
    table,
)

# Same prompt and seed every time: the offline provider renders the art once and then
# serves it from memory, so its drawing is not counted as the studio's time.
BODY = {
    "model": "flux-realism",
    "prompt": "a lighthouse on a cliff at dusk",
    "image_size": {"width": 1024, "height": 768},
    "output_format": "jpeg",
    "seed": 42,
}


class Stack:
    """The studio's processes plus the offline provider; `with stack.running(...)`."""

    def __init__(self, env: dict[str, str], log: Any) -> None:
        self.env = env
        self.log = log
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.base = ""
        self.provider_url = ""

    def spawn(self, argv: list[str], extra: dict[str, str] | None = None, **kw: Any):
        proc = subprocess.Popen(
            argv, cwd=ROOT, env={**self.env, **(extra or {})}, start_new_session=True, **kw
        )
        self.procs.append(proc)
        return proc

    @contextmanager
    def running(self, *, latency: float, in_flight: int):
        python = sys.executable
        before = len(self.procs)
        provider = self.spawn(
            [python, "-m", "offline_provider", "--port", "0", "--key", "bench-key",
             "--latency", str(latency)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.provider_url = provider.stdout.readline().rsplit(" ", 1)[-1].strip()
        extra = {
            "AIMLAPI_KEY": "bench-key",
            "AIMLAPI_BASE_URL": self.provider_url,
            "WORKER_PROVIDER_CONCURRENCY": str(in_flight),
        }
        from studio.processes import web_command, worker_commands

        self.workers = [
            self.spawn(argv, extra, stdout=self.log, stderr=subprocess.STDOUT)
            for argv in worker_commands(
                python, loglevel="WARNING", provider_concurrency=in_flight
            ).values()
        ]
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.spawn(web_command(python, bind=f"127.0.0.1:{port}", workers=2), extra,
                   stdout=self.log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base + "/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        time.sleep(3)  # the workers finish starting
        try:
            yield self
        finally:
            stop(self.procs[before:])
            del self.procs[before:]

    def worker_rss(self) -> float:
        return sum(rss_mib(w.pid) for w in self.workers)


def submit(base: str, token: str) -> str:
    response = requests.post(
        base + "/v1/images/generations",
        headers={"Authorization": f"Bearer {token}", "Prefer": "respond-async"},
        json=BODY,
        timeout=60,
    )
    assert response.status_code == 202, (response.status_code, response.text[:300])
    return response.json()["id"]


def measure_overhead(stack: Stack, token: str, cookie: str, samples: int, poll: float) -> dict:
    from generator.models import Generation

    session = requests.Session()
    session.cookies.set("sessionid", cookie)
    rows = []
    for i in range(samples + 1):
        uuid = submit(stack.base, token)
        card = f"{stack.base}/generations/{uuid}/?part=card"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            html = session.get(card, headers={"HX-Request": "true"}, timeout=10).text
            if "_thumb.webp" in html:
                visible = dt.datetime.now(dt.UTC)
                break
            time.sleep(poll)
        else:
            raise SystemExit(f"generation {uuid} did not finish in 60 s")
        if i == 0:
            continue  # the first one warms the provider's image cache and the workers
        generation = Generation.objects.get(uuid=uuid)
        # The card shows an image as soon as its row exists; the status update that
        # sets finished_at commits a moment later.
        settle = time.monotonic() + 10
        while generation.finished_at is None and time.monotonic() < settle:
            time.sleep(0.01)
            generation.refresh_from_db()
        rows.append(
            (
                (visible - generation.provider_finished_at).total_seconds() * 1000,
                (generation.finished_at - generation.provider_finished_at).total_seconds() * 1000,
            )
        )
    overhead = [r[0] for r in rows]
    pipeline = [r[1] for r in rows]
    return {
        "median": statistics.median(overhead),
        "p95": percentile(overhead, 95),
        "pipeline_median": statistics.median(pipeline),
        "pipeline_p95": percentile(pipeline, 95),
    }


def measure_throughput(stack: Stack, count: int, latency: float) -> dict:
    """`count` generations queued in one transaction, so their messages all reach the
    broker at its commit: the pipeline's rate, not the web's submit rate (that is
    bench/api_concurrency.py's). Each goes through the API's own validation and
    generation_create; only the HTTP hop is skipped."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from api.views import _validate_and_create_unbounded
    from generator.models import Generation

    user = get_user_model().objects.get(username="bench")
    idle_rss = stack.worker_rss()
    created = time.time()
    with transaction.atomic():
        for _ in range(count):
            generation = _validate_and_create_unbounded(user, dict(BODY))
            assert isinstance(generation, Generation), generation
    started = time.time()
    peak_rss = idle_rss
    done = 0
    deadline = time.monotonic() + 60 + count * latency
    while time.monotonic() < deadline:
        peak_rss = max(peak_rss, stack.worker_rss())
        done = Generation.objects.filter(status=Generation.Status.SUCCEEDED).count()
        failed = Generation.objects.filter(status=Generation.Status.FAILED).count()
        if done + failed >= count:
            break
        time.sleep(0.25)
    last = max(t for t in Generation.objects.values_list("finished_at", flat=True) if t)
    wall = last.timestamp() - started
    stats = requests.get(stack.provider_url.removesuffix("/v1") + "/_control/stats").json()
    return {
        "succeeded": done,
        "wall": wall,
        "create_wall": started - created,
        "rate": done / wall,
        "max_in_flight": stats["max_in_flight"],
        "idle_rss": idle_rss,
        "peak_rss": peak_rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=40)
    parser.add_argument("--provider-seconds", type=float, default=2.0)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIMLAPI_", "DJANGO_"))}
    env.update(
        DATA_DIR=str(data_dir),
        GENERATION_MAX_ACTIVE_PER_USER=str(args.count * 2),
        GENERATION_MAX_PER_HOUR=str(args.count * 10),
        MIRROR_ALLOWED_HOSTS="127.0.0.1",
        MIRROR_ALLOW_PRIVATE_ADDRESSES="true",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    database_url = env.get("DATABASE_URL", "")
    if database_url:
        database_url = fresh_database(database_url, "pipeline")
        env["DATABASE_URL"] = database_url
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "studio.settings"
    log = (data_dir / "bench.log").open("w")
    stack = Stack(env, log)
    try:
        python = sys.executable
        for argv in (
            ["migrate", "--noinput", "-v", "0"],
            ["collectstatic", "--noinput", "-v", "0"],
        ):
            subprocess.run([python, "manage.py", *argv, "-v", "0"], cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.test import Client

        get_user_model().objects.create_user("bench", password="bench-pass-123")
        token = subprocess.run(
            [python, "manage.py", "create_api_token", "bench", "--name", "bench"],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        browser = Client()
        browser.force_login(get_user_model().objects.get(username="bench"))
        cookie = browser.cookies["sessionid"].value

        with stack.running(latency=args.latency, in_flight=args.in_flight):
            overhead = measure_overhead(stack, token, cookie, args.samples, args.poll)
        from generator.models import Generation

        Generation.objects.all().delete()
        with stack.running(latency=args.provider_seconds, in_flight=args.in_flight):
            throughput = measure_throughput(stack, args.count, args.provider_seconds)
    finally:
        stop(stack.procs)
        if database_url:
            from django.db import connections

            connections.close_all()
            drop_database(database_url)

    ideal = args.in_flight / args.provider_seconds
    poll_ms = args.poll * 1000
    print(f"\nStudio overhead, 1024×768 JPEG, {args.samples} generations one at a time,")
    print(f"browser polling every {poll_ms:.0f} ms\n")
    print(
        table(
            [
                ["", "median", "p95"],
                ["answer → visible", f"{overhead['median']:.0f} ms", f"{overhead['p95']:.0f} ms"],
                [
                    "answer → stored (worker)",
                    f"{overhead['pipeline_median']:.0f} ms",
                    f"{overhead['pipeline_p95']:.0f} ms",
                ],
            ]
        )
    )
    print(f"\nThroughput: {args.count} at once, {args.provider_seconds:g} s provider, "
          f"{args.in_flight} provider threads on one node\n")  # fmt: skip
    print(
        table(
            [
                ["succeeded", "wall", "completed/s", "ideal/s", "ratio", "in flight", "RSS"],
                [
                    f"{throughput['succeeded']}/{args.count}",
                    f"{throughput['wall']:.1f} s",
                    f"{throughput['rate']:.2f}",
                    f"{ideal:.2f}",
                    f"{throughput['rate'] / ideal:.2f}",
                    str(throughput["max_in_flight"]),
                    f"{throughput['idle_rss']:.0f} → {throughput['peak_rss']:.0f} MiB",
                ],
            ]
        )
    )
    print(f"(from the commit that queued them all; creating them took "
          f"{throughput['create_wall']:.1f} s before it)\n")  # fmt: skip
    emit(
        [
            figure("overhead_median_ms", overhead["median"], "ms", poll_ms),
            figure("overhead_p95_ms", overhead["p95"], "ms", poll_ms),
            figure("overhead_worker_median_ms", overhead["pipeline_median"], "ms", poll_ms),
            figure("throughput_completed_per_s", throughput["rate"], "1/s", ideal),
            figure(
                "throughput_max_in_flight", throughput["max_in_flight"], "calls", args.in_flight
            ),
            figure("throughput_worker_rss_peak_mib", throughput["peak_rss"], "MiB", 600.0),
        ]
    )


if __name__ == "__main__":
    main()
