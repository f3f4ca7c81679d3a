"""20 people using the studio for 60 seconds: browsing and submitting at once.

Starts the studio as `make run` does (gunicorn web, provider and image workers) with a
separate offline provider, signs in --users people through the login form, and has
each one, for --seconds, open the studio, the gallery and image pages and submit a
generation now and then, as a browser would (CSRF token, no JavaScript). Then waits for
every submitted generation to finish and reports requests per second, latency
percentiles per kind of request, errors (exceptions and unexpected statuses) and lost
generations (submitted but not succeeded). Uses DATABASE_URL / CELERY_BROKER_URL when
set, else the embedded SQLite and file broker in a temporary DATA_DIR.

    python bench/load.py [--users 20] [--seconds 60] [--latency 1]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

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
    stop,
    table,
)

PASSWORD = "load-test-pass-123"
IMAGE_LINK = re.compile(r'href="/images/([0-9a-f-]{36})/"')


class Person:
    """One signed-in browser: a session, and the image pages it has seen links to."""

    def __init__(self, base: str, username: str, record: callable) -> None:
        self.base, self.record = base, record
        self.session = requests.Session()
        self.images: list[str] = []
        self.submitted = 0
        page = self.request("login-page", "GET", "/accounts/login/")
        response = self.request(
            "login", "POST", "/accounts/login/", expect=(302,),
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": csrf(page)},
        )  # fmt: skip
        assert response is not None and response.status_code == 302, "login failed"

    def request(
        self, kind: str, method: str, path: str, expect: tuple[int, ...] = (200,), **kw
    ) -> requests.Response | None:
        start = time.perf_counter()
        try:
            response = self.session.request(
                method, self.base + path, timeout=30, allow_redirects=False, **kw
            )
        except requests.RequestException as exc:
            self.record(kind, time.perf_counter() - start, f"{type(exc).__name__}")
            return None
        error = None if response.status_code in expect else f"HTTP {response.status_code}"
        self.record(kind, time.perf_counter() - start, error)
        return response

    def step(self, n: int) -> None:
        roll = random.random()
        if roll < 0.15:
            page = self.request("studio", "GET", "/")
            if page is not None and page.ok:
                prompt = f"load test {n}: a lighthouse at dusk, {random.randint(0, 10**6)}"
                data = {"model": "flux/schnell", "prompt": prompt, "image_size": "square",
                        "csrfmiddlewaretoken": csrf(page)}  # fmt: skip
                sent = self.request("submit", "POST", "/", expect=(302, 303), data=data)
                if sent is not None and sent.status_code in (302, 303):
                    self.submitted += 1
                    self.request("generation", "GET", sent.headers["Location"])
        elif roll < 0.55:
            page = self.request("gallery", "GET", "/gallery/")
            if page is not None and page.ok:
                self.images = IMAGE_LINK.findall(page.text)[:24] or self.images
        elif roll < 0.9 and self.images:
            self.request("image", "GET", f"/images/{random.choice(self.images)}/")
        else:
            self.request("studio", "GET", "/")


def csrf(page: requests.Response) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--latency", type=float, default=1.0)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="studio-load-"))
    python = sys.executable
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIMLAPI_", "DJANGO_"))}
    env.update(
        DATA_DIR=str(data_dir),
        DJANGO_SETTINGS_MODULE="studio.settings",
        # The run measures the pipeline, not the per-user quotas.
        GENERATION_MAX_ACTIVE_PER_USER="1000",
        GENERATION_MAX_PER_HOUR="10000",
        MIRROR_ALLOWED_HOSTS="127.0.0.1",
        MIRROR_ALLOW_PRIVATE_ADDRESSES="true",
        PYTHONUNBUFFERED="1",
    )
    database_url = env.get("DATABASE_URL", "")
    if database_url:
        database_url = fresh_database(database_url, "load")
        env["DATABASE_URL"] = database_url
    procs: list[subprocess.Popen] = []
    log = (data_dir / "load.log").open("w")

    def spawn(argv: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True, **kw)
        procs.append(proc)
        return proc

    try:
        provider = spawn(
            [python, "-m", "offline_provider", "--port", "0", "--key", "load-key",
             "--latency", str(args.latency)],
            stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
        provider_url = provider.stdout.readline().rsplit(" ", 1)[-1].strip()
        env.update(AIMLAPI_KEY="load-key", AIMLAPI_BASE_URL=provider_url)
        for command in (["migrate"], ["collectstatic"]):
            subprocess.run([python, "manage.py", *command, "--noinput", "-v", "0"], cwd=ROOT,
                           env=env, check=True)  # fmt: skip
        os.environ.update(env)
        import django

        django.setup()
        from django.contrib.auth import get_user_model

        from generator.models import Generation
        from studio.processes import web_command, worker_commands

        names = [f"person{i:02d}" for i in range(args.users)]
        for name in names:
            get_user_model().objects.create_user(name, password=PASSWORD)
        for argv in worker_commands(python, loglevel="WARNING").values():
            spawn(argv, stdout=log, stderr=subprocess.STDOUT)
        spawn(web_command(python, bind=f"127.0.0.1:{port}", workers=2), stdout=log,
              stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(base + "/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        time.sleep(3)  # the workers finish starting

        latencies: dict[str, list[float]] = defaultdict(list)
        errors: dict[str, int] = defaultdict(int)
        lock = threading.Lock()

        def record(kind: str, seconds: float, error: str | None) -> None:
            with lock:
                latencies[kind].append(seconds)
                if error:
                    errors[f"{kind}: {error}"] += 1

        people = [Person(base, name, record) for name in names]
        latencies.clear()
        errors.clear()
        stop_at = time.monotonic() + args.seconds

        def browse(person: Person) -> None:
            n = 0
            while time.monotonic() < stop_at:
                person.step(n)
                n += 1
                time.sleep(random.uniform(0.2, 1.0))  # reading the page

        started = time.monotonic()
        threads = [threading.Thread(target=browse, args=(p,)) for p in people]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        submitted = sum(p.submitted for p in people)

        # Every submitted generation must finish: wait for the queue to drain.
        drain_started = time.monotonic()
        while time.monotonic() - drain_started < 180:
            if not Generation.objects.exclude(status__in=["succeeded", "failed"]).exists():
                break
            time.sleep(1)
        drained = time.monotonic() - drain_started
        stored = Generation.objects.count()
        succeeded = Generation.objects.filter(status="succeeded").count()
        lost = submitted - succeeded + (stored - submitted if stored > submitted else 0)

        every = [s for values in latencies.values() for s in values]
        rows = [["request", "count", "p50 ms", "p95 ms", "p99 ms"]]
        for kind in sorted(latencies):
            values = latencies[kind]
            rows.append([kind, str(len(values))] + [
                f"{percentile(values, p) * 1000:.0f}" for p in (50, 95, 99)
            ])  # fmt: skip
        rows.append(["all", str(len(every))] + [
            f"{percentile(every, p) * 1000:.0f}" for p in (50, 95, 99)
        ])  # fmt: skip
        print(table(rows))
        print(
            f"\n{args.users} users, {elapsed:.0f} s: {len(every) / elapsed:.1f} requests/s, "
            f"{sum(errors.values())} errors, {submitted} generations submitted, "
            f"{succeeded} succeeded, {lost} lost; queue drained {drained:.0f} s after the run"
        )
        for what, count in sorted(errors.items()):
            print(f"  error {what}: {count}")
        emit([
            figure("load_requests_per_second", len(every) / elapsed, "req/s", None),
            figure("load_p50_ms", percentile(every, 50) * 1000, "ms", None),
            figure("load_p95_ms", percentile(every, 95) * 1000, "ms", None),
            figure("load_p99_ms", percentile(every, 99) * 1000, "ms", None),
            figure("load_errors", sum(errors.values()), "count", None),
            figure("load_generations_submitted", submitted, "count", None),
            figure("load_generations_lost", lost, "count", None),
            figure("load_drain_seconds", drained, "s", None),
        ])  # fmt: skip
        if errors or lost:
            raise SystemExit("errors or lost generations")
    finally:
        stop(procs)
        if database_url:
            from django.db import connections

            connections.close_all()
            drop_database(database_url)


if __name__ == "__main__":
    main()
