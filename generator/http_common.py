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
    """

    def __init__(self, deadline: float, sock: socket.socket | None = None) -> None:
        self.sock = sock
        self.fired = False
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True

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
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()


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
