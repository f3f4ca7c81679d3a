"""The command lines of the studio's processes, shared by `make run`, the tests and
docker-compose.yml (which spells the same commands), so they cannot drift apart."""

from __future__ import annotations

from django.conf import settings


def celery_base(python: str) -> list[str]:
    return [python, "-m", "celery", "-A", "studio"]


def worker_commands(
    python: str,
    *,
    loglevel: str = "INFO",
    provider_concurrency: int | None = None,
    image_concurrency: int | None = None,
) -> dict[str, list[str]]:
    common = ["--without-gossip", "--without-mingle", "-l", loglevel]
    provider_concurrency = provider_concurrency or settings.WORKER_PROVIDER_CONCURRENCY
    image_concurrency = image_concurrency or settings.WORKER_IMAGE_CONCURRENCY
    # Both workers also take the sweep, from a queue of its own, so it keeps running
    # while either is down or behind on its own queue (a worker that exited during a
    # Redis restart once took the sweep with it). Each sweep runs on one of them.
    return {
        # Provider calls only wait on the network: many threads, bounded by the HTTP
        # timeouts in generator/provider/client.py (Celery time limits do not apply to threads).
        "worker-provider": celery_base(python)
        + [
            "worker",
            "-Q",
            "provider,sweep",
            "-P",
            "threads",
            "-c",
            str(provider_concurrency),
            "-n",
            "provider@%h",
            *common,
        ],
        # Decoding and thumbnails are CPU work on untrusted bytes: separate processes,
        # with time limits and memory recycling.
        "worker-images": celery_base(python)
        + [
            "worker",
            "-Q",
            "images,sweep",
            "-P",
            "prefork",
            "-c",
            str(image_concurrency),
            "-n",
            "images@%h",
            *common,
        ],
    }


def beat_command(python: str, *, loglevel: str = "INFO") -> list[str]:
    return celery_base(python) + [
        "beat",
        "-l",
        loglevel,
        "-s",
        settings.CELERY_BEAT_SCHEDULE_FILENAME,
    ]


def web_command(python: str, *, bind: str, workers: int = 2) -> list[str]:
    # ASGI, so an API call waiting minutes for its images holds neither a worker
    # process nor a thread, only a coroutine.
    return [
        python, "-m", "gunicorn", "studio.asgi:application",
        "--worker-class", "asgi",
        "--bind", bind,
        "--workers", str(workers),
        "--access-logfile", "-",
        # A client that hangs up before its answer is logged as 499, not 500.
        "--logger-class", "studio.serverlog.AccessLogger",
        "--graceful-timeout", "10",
    ]  # fmt: skip
