"""Run the bundled offline provider (a local AI/ML API image endpoint) in the foreground.

The demo compose file and developers point AIMLAPI base URL settings at it to work
without a key or credits.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from offline_provider import OfflineProvider


def _fraction(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0.0 and 1.0")
    return number


def _success_status(value: str) -> int:
    if value not in ("200", "201"):
        raise argparse.ArgumentTypeError("must be 200 or 201")
    return int(value)


class Command(BaseCommand):
    help = "Serve a local stand-in for POST /v1/images/generations until Ctrl-C or SIGTERM."

    # It serves HTTP, it does not touch the database.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
        parser.add_argument("--key", default=None, help="accept only this bearer token")
        parser.add_argument("--latency", type=float, default=0.0, help="seconds per generation")
        parser.add_argument(
            "--nsfw-words",
            default="nsfw,nude,naked",
            help="comma-separated words that set has_nsfw_concepts",
        )
        parser.add_argument("--status", type=_success_status, default=200)
        parser.add_argument("--url-ttl", type=float, default=None, help="image URL lifetime")
        parser.add_argument("--fail-rate", type=_fraction, default=0.0)
        parser.add_argument("--fail-status", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        words = [w.strip() for w in options["nsfw_words"].split(",") if w.strip()]
        try:
            provider = OfflineProvider(
                options["host"],
                options["port"],
                api_key=options["key"] or None,
                latency=options["latency"],
                nsfw_words=words,
                success_status=options["status"],
                url_ttl=options["url_ttl"],
                fail_rate=options["fail_rate"],
                fail_status=options["fail_status"],
                log_requests=True,
            )
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {options['host']}:{options['port']}: {exc}"
            ) from exc

        # SIGTERM (docker stop, the test harness) takes the same clean path as Ctrl-C:
        # raising in the main thread unwinds serve_forever, which closes the socket.
        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, on_sigterm)
        self.stdout.write(f"offline provider listening on {provider.base_url}")
        self.stdout.flush()
        try:
            provider.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
        self.stdout.write("offline provider stopped")
        self.stdout.flush()
