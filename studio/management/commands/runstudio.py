"""`make run`: the web app, its workers and beat in the foreground until Ctrl-C.

Without AIMLAPI_KEY it also starts the bundled offline provider and points the
studio at it, so a fresh clone works with no key and no services.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from studio.processes import beat_command, web_command, worker_commands

OFFLINE_KEY = "offline-demo-key"


class Command(BaseCommand):
    help = "Serve the studio with its workers and beat (and the offline provider without a key)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--web-workers", type=int, default=2)

    def handle(self, *args: Any, **options: Any) -> None:
        python = sys.executable
        env = os.environ.copy()
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)

        try:
            if not settings.AIMLAPI_KEY:
                env.update(self._start_offline_provider(python, env))
            for name, argv in worker_commands(python).items():
                self._spawn(name, argv, env)
            self._spawn("beat", beat_command(python), env)
            bind = f"{options['host']}:{options['port']}"
            self._spawn(
                "web",
                web_command(python, bind=bind, workers=options["web_workers"]),
                env,
            )
            self.stdout.write(f"studio: serving on http://{bind}/ (Ctrl-C to stop)")
            self._supervise()
        finally:
            self._shutdown()

    def _start_offline_provider(self, python: str, env: dict[str, str]) -> dict[str, str]:
        port = os.environ.get("OFFLINE_PROVIDER_PORT", "0")
        proc = self._spawn(
            "offline-provider",
            [
                python,
                "-m",
                "offline_provider",
                "--host",
                "127.0.0.1",
                "--port",
                port,
                "--key",
                OFFLINE_KEY,
                "--latency",
                os.environ.get("OFFLINE_PROVIDER_LATENCY", "2"),
            ],
            env,
            pipe_first_line=True,
        )
        base_url = self._first_line_url(proc)
        self.stdout.write(f"studio: no AIMLAPI_KEY, using the offline demo provider at {base_url}")
        return {
            "AIMLAPI_KEY": OFFLINE_KEY,
            "AIMLAPI_BASE_URL": base_url,
            "OFFLINE_PROVIDER": "true",
        }

    def _first_line_url(self, proc: subprocess.Popen) -> str:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "listening on" in line:
                url = line.rsplit(" ", 1)[-1].strip()
                threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
                return url
        raise CommandError("the offline provider did not start")

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str], *, pipe_first_line: bool = False
    ) -> subprocess.Popen:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE if pipe_first_line else None,
            text=True,
            # Own process group: Ctrl-C reaches us once, and we stop children in order.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.children.append((name, proc))
        return proc

    def _supervise(self) -> None:
        while not self.stopping:
            for name, proc in self.children:
                if proc.poll() is not None:
                    self.stderr.write(f"studio: {name} exited with {proc.returncode}; stopping")
                    self.stopping = True
                    raise CommandError(f"{name} exited")
            time.sleep(0.5)

    def _stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _shutdown(self) -> None:
        for _name, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _name, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        self.stdout.write("studio: stopped")


def _die_with_parent() -> None:
    # If this launcher is killed outright, its children must not linger as orphans
    # holding the port and consuming the queue (Linux only; elsewhere a no-op).
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _drain(stream: IO[str]) -> None:
    for line in stream:
        sys.stdout.write(line)
