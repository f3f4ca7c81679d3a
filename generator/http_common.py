"""What the provider client and the image fetch share, so neither imports the other.

Both read a body under a byte cap and a total deadline (AIMLAPI_* for the provider,
reliability.md F-4 and F-5 for the mirror): a `Watchdog` ends any read at the deadline,
`set_timeout` bounds each socket wait in between, and `content_length` lets an announced
size be refused before reading. Both trust the same CA bundle and send the same
User-Agent.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time

from requests.utils import DEFAULT_CA_BUNDLE_PATH

USER_AGENT = "team-image-studio/0.1"
CHUNK_BYTES = 64 * 1024


class Watchdog:
    """Shuts a socket down at the deadline.

    Per-read timeouts cannot bound a server that sends one byte just inside each
    timeout, and http.client reads header and chunk-size lines in loops that never
    come back to our code; a shut-down socket ends any of those reads at once.

    With `pause_grace`, a process that was stopped (SIGSTOP, a frozen VM) past the
    deadline gets `pause_grace` seconds after it resumes before the socket is shut: the
    reader thread resumes at the same moment and may find its whole answer waiting.
    A pause shows as one tick of the watchdog's own clock overshooting by far.
    """

    TICK = 0.25
    PAUSED_AFTER = 1.0  # a tick this late means the process was not running

    def __init__(
        self, deadline: float, sock: socket.socket | None = None, pause_grace: float | None = None
    ) -> None:
        self.sock = sock
        self.fired = False
        self.deadline = deadline
        self.pause_grace = pause_grace
        now = time.monotonic()
        if pause_grace is not None and deadline <= now:
            # Started late: the pause came before this read began.
            self.deadline = now + pause_grace
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="watchdog")

    def _run(self) -> None:
        while True:
            before = time.monotonic()
            remaining = self.deadline - before
            if remaining <= 0:
                break
            wait = remaining if self.pause_grace is None else min(self.TICK, remaining)
            if self._cancelled.wait(wait):
                return
            now = time.monotonic()
            if self.pause_grace is not None and now - before - wait > self.PAUSED_AFTER:
                self.deadline = max(self.deadline, now + self.pause_grace)
        if not self._cancelled.is_set():
            self._fire()

    def _fire(self) -> None:
        self.fired = True
        sock = self.sock
        if sock is not None:
            try:
                # The plain socket call: SSLSocket.shutdown would tear down the TLS
                # object under a read that is still running in another thread.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._cancelled.set()


def set_timeout(sock: socket.socket | None, seconds: float) -> None:
    if sock is None:
        return
    try:
        sock.settimeout(seconds)
    except OSError:
        pass  # http.client closes the socket as soon as the body is complete


def content_length(value: str | None) -> int | None:
    if value is None or not re.fullmatch(r"[0-9]{1,20}", value.strip()):
        return None
    return int(value.strip())


def ca_bundle() -> tuple[str | None, str | None]:
    # The image fetch builds its own urllib3 connections: give them the trust store
    # requests uses for the provider call, env overrides included.
    path = (
        os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("CURL_CA_BUNDLE")
        or DEFAULT_CA_BUNDLE_PATH
    )
    return (None, path) if os.path.isdir(path) else (path, None)
