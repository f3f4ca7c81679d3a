"""50 synchronous API calls at once against a provider that takes 2 s each.

Starts the studio as `make run` does (ASGI web, provider and image workers), a
separate offline provider, then fires the calls and samples, while they wait, the web
server's memory (RSS of gunicorn and its workers) and the database connections the
web server holds. Uses DATABASE_URL / CELERY_BROKER_URL when set (as CI does), else
the embedded SQLite and file broker in a temporary DATA_DIR.

    python bench/api_concurrency.py [--calls 50] [--latency 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    drop_database,
    emit,
    figure,
    free_port,
    fresh_database,
    rss_mib,
    tree,
    with_database,
)


def sqlite_handles(pid: int, db_file: str) -> int:
    count = 0
    for p in tree(pid):
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                if os.readlink(f"/proc/{p}/fd/{fd}") == db_file:
                    count += 1
        except OSError:
            continue
    return count


def pg_connections(database_url: str, application: str) -> int:
    import psycopg

    with psycopg.connect(with_database(database_url, "postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application,)
        ).fetchone()
    return int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--latency", type=float, default=2.0)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    python = sys.executable
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIMLAPI_", "DJANGO_"))}
    env.update(
        DATA_DIR=str(data_dir),
        GENERATION_MAX_ACTIVE_PER_USER=str(args.calls * 2),
        GENERATION_MAX_PER_HOUR=str(args.calls * 10),
        MIRROR_ALLOWED_HOSTS="127.0.0.1",
        MIRROR_ALLOW_PRIVATE_ADDRESSES="true",
        PYTHONUNBUFFERED="1",
    )
    database_url = env.get("DATABASE_URL", "")
    if database_url:
        # A fresh database of its own, dropped afterwards.
        database_url = fresh_database(database_url, "api")
        env["DATABASE_URL"] = database_url + "?application_name=studio-bench-web"
    procs: list[subprocess.Popen] = []
    log = (data_dir / "bench.log").open("w")

    def spawn(argv: list[str], extra: dict[str, str] | None = None, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env={**env, **(extra or {})}, start_new_session=True, **kw
        )
        procs.append(proc)
        return proc

    try:
        provider = spawn(
            [python, "-m", "offline_provider", "--port", "0", "--key", "bench-key",
             "--latency", str(args.latency)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = provider.stdout.readline()
        provider_url = line.rsplit(" ", 1)[-1].strip()
        env.update(AIMLAPI_KEY="bench-key", AIMLAPI_BASE_URL=provider_url)
        subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                       env=env, check=True)  # fmt: skip
        subprocess.run([python, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT,
                       env=env, check=True)  # fmt: skip
        created = subprocess.run(
            [python, "manage.py", "shell", "-c",
             "from django.contrib.auth import get_user_model as g; "
             "g().objects.create_user('bench', password='bench-pass-123')"],
            cwd=ROOT, env=env, check=True,
        )  # fmt: skip
        assert created.returncode == 0
        token = subprocess.run(
            [python, "manage.py", "create_api_token", "bench", "--name", "bench"],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip

        os.environ.update(env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
        import django

        django.setup()
        from studio.processes import web_command, worker_commands

        worker_env = dict(env)
        if database_url:
            worker_env["DATABASE_URL"] = (
                database_url.split("?")[0] + "?application_name=studio-bench-worker"
            )
        for argv in worker_commands(python, loglevel="WARNING").values():
            spawn(argv, worker_env, stdout=log, stderr=subprocess.STDOUT)
        web = spawn(web_command(python, bind=f"127.0.0.1:{port}", workers=2), stdout=log,
                    stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(base + "/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        time.sleep(3)  # let the workers finish starting
        idle_rss = rss_mib(web.pid)

        results: list[tuple[int, float]] = []
        lock = threading.Lock()

        def call(i: int) -> None:
            started = time.monotonic()
            response = requests.post(
                base + "/v1/images/generations",
                headers={"Authorization": f"Bearer {token}"},
                json={"model": "flux-realism", "prompt": f"bench {i}", "image_size": "square"},
                timeout=300,
            )
            with lock:
                results.append((response.status_code, time.monotonic() - started))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(args.calls)]
        samples_rss: list[float] = []
        samples_db: list[int] = []
        db_file = str((data_dir / "studio.sqlite3").resolve())
        started = time.monotonic()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            samples_rss.append(rss_mib(web.pid))
            if database_url:
                samples_db.append(pg_connections(database_url, "studio-bench-web"))
            else:
                samples_db.append(sqlite_handles(web.pid, db_file))
            time.sleep(0.2)
        wall = time.monotonic() - started
        statuses = [status for status, _ in results]
        latencies = sorted(seconds for _, seconds in results)
        report = {
            "calls": args.calls,
            "provider_latency_s": args.latency,
            "database": "postgresql" if database_url else "sqlite",
            "succeeded": statuses.count(200),
            "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
            "wall_s": round(wall, 2),
            "latency_median_s": round(statistics.median(latencies), 2),
            "latency_max_s": round(latencies[-1], 2),
            "web_rss_idle_mib": round(idle_rss, 1),
            "web_rss_peak_mib": round(max(samples_rss), 1),
            "web_db_connections_peak": max(samples_db),
            "web_db_connections_median": statistics.median(samples_db),
        }
        print(json.dumps(report, indent=2))
        emit(
            [
                figure("api_50_waiting_calls_succeeded", report["succeeded"], "calls", args.calls),
                figure("api_50_waiting_calls_wall_s", wall, "s", args.latency),
                figure("api_web_rss_peak_mib", report["web_rss_peak_mib"], "MiB", idle_rss),
            ]
        )
    finally:
        stop(procs)
        if database_url:
            drop_database(database_url)


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
