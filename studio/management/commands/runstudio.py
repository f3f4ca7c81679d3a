"""`make run`: the web app, its workers and beat in the foreground until Ctrl-C.

Without AIMLAPI_KEY it also starts the bundled offline provider and points the
studio at it, so a fresh clone works with no key and no services.

The terminal gets one line per process and "serving on" once /healthz answers;
everything the processes print (Celery's banners, warnings, the access log) goes to
DATA_DIR/logs/studio.log, each line prefixed with the process's name.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from studio.processes import beat_command, web_command, worker_commands

OFFLINE_KEY = "offline-demo-key"
# How long the web app may take to answer /healthz after it started (a cold start on a
# busy machine migrates nothing but still imports everything).
READY_TIMEOUT = 120


class Command(BaseCommand):
    help = "Serve the studio with its workers and beat (and the offline provider without a key)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--web-workers", type=int, default=2)
        # The processes' own level: the Makefile runs this launcher itself at WARNING so
        # that its start-up messages stay off the terminal.
        parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))

    def handle(self, *args: Any, **options: Any) -> None:
        python = sys.executable
        env = os.environ.copy()
        # Lines reach the log as they are printed, not when a buffer fills.
        env.update(PYTHONUNBUFFERED="1", LOG_LEVEL=options["log_level"])
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.copiers: list[threading.Thread] = []
        self.stopping = False
        self.log_path = Path(settings.DATA_DIR) / "logs" / "studio.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = self.log_path.open("a", buffering=1, encoding="utf-8", errors="replace")
        self.log_lock = threading.Lock()
        self._log_root_logger_to_file()
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)

        try:
            if not settings.AIMLAPI_KEY:
                env.update(self._start_offline_provider(python, env))
            for name, argv in worker_commands(python).items():
                self._started(self._spawn(name, argv, env), name)
            self._started(self._spawn("beat", beat_command(python), env), "beat")
            bind = f"{options['host']}:{options['port']}"
            web = self._spawn(
                "web", web_command(python, bind=bind, workers=options["web_workers"]), env
            )
            self._started(web, "web")
            self._wait_ready(f"http://{bind}/healthz")
            self.stdout.write(
                f"studio: serving on http://{bind}/ (Ctrl-C to stop; logs in {self.log_path})"
            )
            self._supervise()
        finally:
            self._shutdown()

    def _log_root_logger_to_file(self) -> None:
        # This launcher's own warnings go where its children's go, not to the terminal.
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                root.removeHandler(handler)
        handler = logging.StreamHandler(_Prefixed(self, "runstudio"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)

    def _started(self, proc: subprocess.Popen, name: str) -> None:
        self.stdout.write(f"studio: {name} started (pid {proc.pid})")

    def write_log(self, name: str, line: str) -> None:
        with self.log_lock:
            if self.log.closed:  # a late line from a copier still draining at exit
                return
            self.log.write(f"{name} | {line if line.endswith(chr(10)) else line + chr(10)}")

    def _wait_ready(self, url: str) -> None:
        """Until /healthz answers 200; a process that exits meanwhile stops everything."""
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.stopping:
            self._check_children()
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 (our own)
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening yet, or the database or broker not reachable yet
            if time.monotonic() > deadline:
                raise CommandError(
                    f"the studio did not answer {url} within {READY_TIMEOUT} s; see {self.log_path}"
                )
            time.sleep(0.3)

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
        self.stdout.write(
            f"studio: offline-provider started (pid {proc.pid}): no AIMLAPI_KEY, "
            f"so the offline demo provider at {base_url} draws the images"
        )
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
            self.write_log("offline-provider", line)
            if "listening on" in line:
                url = line.rsplit(" ", 1)[-1].strip()
                self._copy_to_log("offline-provider", proc.stdout)
                return url
        raise CommandError(f"the offline provider did not start; see {self.log_path}")

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str], *, pipe_first_line: bool = False
    ) -> subprocess.Popen:
        proc = subprocess.Popen(
            argv,
            env=env,
            # Everything the process prints goes to the log, through a pipe read here.
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            # Own process group: Ctrl-C reaches us once, and we stop children in order.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.children.append((name, proc))
        if not pipe_first_line:  # the caller reads the first line, then copies the rest
            assert proc.stdout is not None
            self._copy_to_log(name, proc.stdout)
        return proc

    def _copy_to_log(self, name: str, stream: IO[str]) -> None:
        def copy() -> None:
            for line in stream:
                self.write_log(name, line)

        thread = threading.Thread(target=copy, name=f"log-{name}", daemon=True)
        thread.start()
        self.copiers.append(thread)

    def _check_children(self) -> None:
        for name, proc in self.children:
            if proc.poll() is not None:
                self.stderr.write(
                    f"studio: {name} exited with {proc.returncode}; stopping (see {self.log_path})"
                )
                self.stopping = True
                raise CommandError(f"{name} exited")

    def _supervise(self) -> None:
        while not self.stopping:
            self._check_children()
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
        # The last lines the processes printed while stopping, then the log is complete.
        for thread in self.copiers:
            thread.join(timeout=5)
        self.log.close()
        self.stdout.write("studio: stopped")


def _die_with_parent() -> None:
    # If this launcher is killed outright, its children must not linger as orphans
    # holding the port and consuming the queue (Linux only; elsewhere a no-op).
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Prefixed:
    """A stream for logging's handler that writes to the launcher's log."""

    def __init__(self, command: Command, name: str) -> None:
        self.command, self.name = command, name

    def write(self, text: str) -> None:
        if text.strip():
            self.command.write_log(self.name, text)

    def flush(self) -> None:
        pass
