"""A provider worker's memory while 32 large inline answers arrive at once.

Starts the studio's provider worker as `make run` does (`celery -A studio worker -Q
provider -P threads -c 32`) against a fresh database named after DATABASE_URL's (plus
"_memory") and CELERY_BROKER_URL, and a provider of its own, in another process, that
answers every call after the same pause with the same answer: --images inline images
(b64_json) of random bytes, --answer-mib in all. --calls generations are queued in one
commit; the worker's resident memory (the process and its children) is sampled every
50 ms until each has saved its answer. The figure is the peak, against the idle worker.

--before REV also runs a worker of the studio as it was at git revision REV (extracted
to a temporary folder, run with the same .venv) against the same provider and
database first, as the baseline.

    python bench/memory.py [--calls 32] [--answer-mib 16] [--images 4] [--before REV]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    ROOT,
    drop_database,
    emit,
    figure,
    fresh_database,
    rss_mib,
    stop,
    table,
)

BODY = {"model": "flux-realism", "prompt": "a lighthouse on a cliff at dusk", "num_images": 4}


def serve(answer_bytes: int, images: int, pause: float) -> None:
    """The provider: one answer, built once, sent to every call after `pause` seconds."""
    image_bytes = (answer_bytes - 200) // images * 3 // 4
    answer = json.dumps(
        {
            "data": [
                {"b64_json": base64.b64encode(os.urandom(image_bytes)).decode()}
                for _ in range(images)
            ],
            "seed": 42,
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(pause)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"serving {len(answer)} http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    server.serve_forever()


def run_worker(
    source: Path, env: dict[str, str], calls: int, count_answers: int, log: object
) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from api.views import _validate_and_create_unbounded
    from generator.models import Generation

    python = sys.executable
    worker = subprocess.Popen(
        [python, "-m", "celery", "-A", "studio", "worker", "-Q", "provider", "-P", "threads",
         "-c", str(calls), "-n", "memory-bench@%h", "--without-gossip", "--without-mingle",
         "-l", "WARNING"],
        cwd=source, env={**env, "PYTHONPATH": str(source)}, start_new_session=True,
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        time.sleep(6)  # the worker finishes starting
        idle = rss_mib(worker.pid)
        user = get_user_model().objects.get(username="bench")
        Generation.objects.all().delete()
        with transaction.atomic():
            for _ in range(count_answers):
                _validate_and_create_unbounded(user, dict(BODY))
        peak = idle
        deadline = time.monotonic() + 120
        saved = failed = 0
        while time.monotonic() < deadline:
            peak = max(peak, rss_mib(worker.pid))
            saved = Generation.objects.filter(step=Generation.Step.MIRROR).count()
            failed = Generation.objects.filter(status=Generation.Status.FAILED).count()
            if saved + failed >= count_answers:
                break
            time.sleep(0.05)
        errors = set(
            Generation.objects.filter(status=Generation.Status.FAILED).values_list(
                "error", flat=True
            )
        )
    finally:
        stop([worker])
    return {"idle": idle, "peak": peak, "saved": saved, "failed": failed, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=32)
    parser.add_argument("--answer-mib", type=float, default=16)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--pause", type=float, default=2.0)
    parser.add_argument("--before", help="a git revision to measure first, as the baseline")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    answer_bytes = int(args.answer_mib * 1024 * 1024)
    if args.serve:
        serve(answer_bytes, args.images, args.pause)
        return

    data_dir = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIMLAPI_", "DJANGO_"))}
    env.update(
        DATA_DIR=str(data_dir),
        GENERATION_MAX_ACTIVE_PER_USER=str(args.calls * 2),
        GENERATION_MAX_PER_HOUR=str(args.calls * 10),
        AIMLAPI_KEY="bench-key",
        AIMLAPI_MAX_RESPONSE_BYTES=str(max(answer_bytes * 2, 64 * 1024 * 1024)),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    database_url = env.get("DATABASE_URL", "")
    if database_url:
        database_url = fresh_database(database_url, "memory")
        env["DATABASE_URL"] = database_url
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "studio.settings"
    python = sys.executable
    log = (data_dir / "bench.log").open("w")
    procs = []
    try:
        subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"],
                       cwd=ROOT, env=env, check=True)  # fmt: skip
        provider = subprocess.Popen(
            [python, __file__, "--serve", "--answer-mib", str(args.answer_mib),
             "--images", str(args.images), "--pause", str(args.pause)],
            stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        procs.append(provider)
        _, size, url = provider.stdout.readline().split()
        env["AIMLAPI_BASE_URL"] = url
        import django

        django.setup()
        from django.contrib.auth import get_user_model

        get_user_model().objects.create_user("bench", password="bench-pass-123")
        before = None
        if args.before:
            old = data_dir / "before"
            old.mkdir()
            archive = subprocess.run(["git", "archive", args.before], cwd=ROOT,
                                     check=True, capture_output=True).stdout  # fmt: skip
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            before = run_worker(old, env, args.calls, args.calls, log)
        result = run_worker(ROOT, env, args.calls, args.calls, log)
    finally:
        stop(procs)
        if database_url:
            from django.db import connections

            connections.close_all()
            drop_database(database_url)

    answer_mib = int(size) / 2**20
    print(f"\nProvider worker, {args.calls} threads, {args.calls} answers at once of "
          f"{answer_mib:.1f} MiB ({args.images} inline images each)\n")  # fmt: skip
    runs = [(f"at {args.before}", before), ("this tree", result)] if before else [("", result)]

    def row(name: str, run: dict) -> list[str]:
        return [
            name,
            f"{run['saved']}/{args.calls}",
            str(run["failed"]),
            f"{run['idle']:.0f} MiB",
            f"{run['peak']:.0f} MiB",
            f"{run['peak'] - run['idle']:.0f} MiB",
            f"{(run['peak'] - run['idle']) / args.calls:.1f} MiB",
        ]

    head = ["worker", "saved", "failed", "idle RSS", "peak RSS", "peak − idle", "per answer"]
    print(table([head, *(row(name, run) for name, run in runs)]))
    for _, run in runs:
        for error in run["errors"]:
            print("failed:", error)
    print()
    figures = [
        figure("memory_worker_rss_peak_mib", result["peak"], "MiB", result["idle"]),
        figure(
            "memory_rss_per_answer_mib",
            (result["peak"] - result["idle"]) / args.calls,
            "MiB",
            answer_mib,
        ),
    ]
    if before:
        figures.append(figure("memory_worker_rss_peak_vs_before", result["peak"], "MiB",
                              before["peak"]))  # fmt: skip
    emit(figures)
    if result["saved"] != args.calls:
        raise SystemExit(f"only {result['saved']} of {args.calls} answers were saved")


if __name__ == "__main__":
    main()
