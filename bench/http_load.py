"""The gallery under load: the production web server, 50 clients, 30 seconds.

Serves the studio with gunicorn as `make run` and docker-compose.yml do (ASGI
workers), signed in as a gallery viewer, against the database bench/gallery.py seeded
(100,000 generations, 200,000 images). wrk (Debian's package) holds --clients
connections open for --seconds on the first gallery page; requests per second, p99
latency and errors (socket errors and non-2xx answers) are reported. The baseline for
requests per second is the same run's single-client rate (one connection, 5 s), so
the ratio is how far concurrency scales on this machine.

    python bench/http_load.py [--clients 50] [--seconds 30] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, emit, figure, free_port, stop, table  # noqa: E402


def wrk(url: str, cookie: str, clients: int, seconds: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t", str(min(2, clients)), "-c", str(clients), "-d", f"{seconds}s", "--latency",
         "--timeout", "10s", "-H", f"Cookie: sessionid={cookie}", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip

    def ms(text: str) -> float:
        # wrk writes 850.00us, 12.34ms, 2.07s or 1.02m; nothing it can parse when no
        # request finished (a cold warm-up), which counts as unknown.
        match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
        if not match:
            return float("nan")
        value, unit = match.groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]

    if "50%" not in out:
        return {"rps": 0.0, "p50": float("nan"), "p99": float("nan"), "requests": 0, "errors": 0}
    requests_total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms(re.search(r"50%\s+(\S+)", out).group(1)),
        "p99": ms(re.search(r"99%\s+(\S+)", out).group(1)),
        "requests": requests_total,
        "errors": (sum(int(g) for g in errors.groups()) if errors else 0)
        + (int(non_2xx.group(1)) if non_2xx else 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (make bench installs it)")

    data_dir = os.environ.get("DATA_DIR") or tempfile.mkdtemp(prefix="http-bench-")
    os.environ.update(DATA_DIR=data_dir, DJANGO_SETTINGS_MODULE="studio.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from generator.models import Image
    from studio.processes import web_command

    call_command("collectstatic", interactive=False, verbosity=0)
    if not Image.objects.exists():
        raise SystemExit("no images: run bench/gallery.py first (it seeds the gallery)")
    browser = Client()
    browser.force_login(get_user_model().objects.get(username="bench-00"))
    cookie = browser.cookies["sessionid"].value

    port = free_port()
    url = f"http://127.0.0.1:{port}/gallery/"
    env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING"}
    log = open(Path(data_dir) / "http-bench.log", "w")  # noqa: SIM115
    command = [a for a in web_command(sys.executable, bind=f"127.0.0.1:{port}",
                                      workers=args.workers) if a != "--access-logfile"]  # fmt: skip
    command.remove("-")
    web = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = requests.get(url, cookies={"sessionid": cookie}, timeout=5)
                if response.status_code == 200 and "image-grid" in response.text:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the web server did not answer the gallery")
            time.sleep(0.3)
        wrk(url, cookie, args.clients, 3)  # warm every worker
        single = wrk(url, cookie, 1, 5)
        loaded = wrk(url, cookie, args.clients, args.seconds)
    finally:
        stop([web])

    print(f"\nGallery first page over HTTP, gunicorn with {args.workers} ASGI workers\n")
    print(
        table(
            [
                ["clients", "requests", "req/s", "p50", "p99", "errors"],
                *[
                    [str(n), str(r["requests"]), f"{r['rps']:.1f}", f"{r['p50']:.0f} ms",
                     f"{r['p99']:.0f} ms", str(r["errors"])]
                    for n, r in ((1, single), (args.clients, loaded))
                ],
            ]
        )
    )  # fmt: skip
    print()
    emit(
        [
            figure("http_gallery_rps", loaded["rps"], "1/s", single["rps"]),
            figure("http_gallery_p99_ms", loaded["p99"], "ms", single["p99"]),
            figure("http_gallery_errors", loaded["errors"], "errors", None),
        ]
    )


if __name__ == "__main__":
    main()
