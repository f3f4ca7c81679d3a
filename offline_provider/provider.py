"""OfflineProvider: the server's state, lifecycle and failure scripting."""

from __future__ import annotations

import random
import socket
import threading
from collections import deque
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from .answers import build_answer
from .rules import USD_PER_IMAGE
from .server import make_server


class OfflineProvider:
    """The AI/ML API image endpoint, locally. See the package docstring.

    Binds at construction (so `base_url` is known, also with port 0); start() serves in
    a daemon thread, serve_forever() in the foreground. Attributes latency, api_key,
    nsfw_words, success_status, url_ttl, shape ("auto", "b" or "b64") and hang_seconds may be
    changed while it runs.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        latency: float = 0.0,
        nsfw_words: Iterable[str] = ("nsfw", "nude", "naked"),
        success_status: int = 200,
        url_ttl: float | None = None,
        fail_rate: float = 0.0,
        fail_status: int = 500,
        shape: str = "auto",
        prices: dict[str, str | float] | None = None,
        log_requests: bool = False,
    ) -> None:
        self.api_key = api_key
        self.latency = latency
        self.nsfw_words: Iterable[str] = tuple(nsfw_words)
        self.success_status = success_status
        self.url_ttl = url_ttl
        self.fail_rate = fail_rate
        self.fail_status = fail_status
        self.shape = shape
        # Per-image USD figures that replace the price table (USD_PER_IMAGE) in the
        # x-aimlapi-usd-spent header, so a test or a demo can set what "was charged".
        self.prices: dict[str, str | float] = dict(prices or {})
        self._initial_prices = dict(self.prices)
        self.hang_seconds: float = 30.0
        self.log_requests = log_requests
        self.calls: list[dict[str, Any]] = []
        self.cdn_requests: list[dict[str, Any]] = []
        self._failures: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self._random = random.Random()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None

        self._server = make_server(host, port, self)
        self.host = host
        self.port: int = self._server.server_address[1]
        bracketed = f"[{host}]" if ":" in host else host
        self.origin = f"http://{bracketed}:{self.port}"
        self.base_url = f"{self.origin}/v1"

    def start(self) -> OfflineProvider:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"offline-provider-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until KeyboardInterrupt (or shutdown from elsewhere)."""
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and free the port. Idempotent."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._close()

    def _close(self) -> None:
        self._stopping.set()
        self._server.server_close()
        # Keep-alive connections would otherwise go on being served by a "stopped" server.
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> OfflineProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def fail_next(
        self,
        status: int | str,
        times: int = 1,
        *,
        message: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        """Queue `times` failures for the next generation calls (FIFO).

        An int status answers that status with the flat body; "timeout" sleeps
        hang_seconds and then answers normally; "disconnect" closes the connection
        without an answer (the call is recorded with status None).
        """
        if isinstance(status, bool) or not (
            (isinstance(status, int) and 100 <= status <= 599)
            or status in ("timeout", "disconnect")
        ):
            raise ValueError(f"unsupported failure {status!r}")
        entry = {"status": status, "message": message, "retry_after": retry_after}
        with self._lock:
            self._failures.extend(dict(entry) for _ in range(times))

    def generation_calls(self) -> int:
        with self._lock:
            return len(self.calls)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.cdn_requests.clear()
            self._failures.clear()
            self.max_in_flight = 0
            self.prices = dict(self._initial_prices)

    def usd_spent(self, model_id: str, images: int) -> Decimal:
        """What a call for `images` images of `model_id` is charged, in USD."""
        price = self.prices.get(model_id, USD_PER_IMAGE.get(model_id, "0"))
        return Decimal(str(price)) * images

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _take_failure(self) -> dict[str, Any] | None:
        with self._lock:
            if self._failures:
                return self._failures.popleft()
        if self.fail_rate > 0 and self._random.random() < self.fail_rate:
            return {"status": self.fail_status}
        return None

    def _build_answer(
        self,
        model_id: str,
        entry: dict[str, Any],
        body: dict[str, Any],
        origin: str,
        elapsed: float,
    ) -> dict[str, Any]:
        return build_answer(
            model_id,
            entry,
            body,
            origin=origin,
            elapsed=elapsed,
            rng=self._random,
            shape=self.shape,
            nsfw_words=self.nsfw_words,
        )
