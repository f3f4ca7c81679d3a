"""The HTTP side: POST /v1/images/generations, GET /v1/models, the /files/ the answers
point at, and /_control/ for tests and benchmarks in another process to script failures
(POST /_control/fail, /_control/reset) and read counters (GET /_control/stats).
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .answers import CREDITS_PER_IMAGE
from .errors import ERROR_MESSAGES, GENERATIONS_PATH, default_message, error_body
from .render import CONTENT_TYPES, EXTENSIONS, parse_token, render_token
from .rules import MODELS
from .validation import ValidationError, validate_body

if TYPE_CHECKING:
    from .provider import OfflineProvider


def _canonical_headers(headers: Any) -> dict[str, str]:
    # Canonical casing, so tests can check "Authorization" whatever case a client sends.
    return {"-".join(p.capitalize() for p in k.split("-")): v for k, v in headers.items()}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # 40+ clients may connect at once; the default backlog of 5 would reset some.
    request_queue_size = 128
    # stop() must not wait for handlers that sleep through a "timeout" failure.
    block_on_close = False
    allow_reuse_address = True

    provider: OfflineProvider

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that give up (read timeouts, dropped pools) are routine here.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(host: str, port: int, provider: OfflineProvider) -> ThreadingHTTPServer:
    """Bind (port 0 picks a free one) and serve requests on behalf of `provider`."""
    server_class = _Server6 if ":" in host else _Server
    server = server_class((host, port), _Handler)
    server.provider = provider
    return server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    @property
    def provider(self) -> OfflineProvider:
        return self.server.provider

    def setup(self) -> None:
        super().setup()
        self.provider._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.provider._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.provider.log_requests:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")
            sys.stderr.flush()

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length < 0 or length > 32 * 1024 * 1024:
            return None
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        *,
        extra_headers: dict[str, str] | None = None,
        record: dict[str, Any] | None = None,
        head: bool = False,
    ) -> None:
        # The status is recorded before the bytes go out: a client that got its answer
        # must find it in `calls` already.
        if record is not None:
            record["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(payload)

    def _send_json(self, status: int, data: Any, **kwargs: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", **kwargs)

    def _send_error(self, status: int, message: str, **kwargs: Any) -> None:
        if self._route() == GENERATIONS_PATH:
            kwargs["extra_headers"] = {**kwargs.get("extra_headers", {}), **self._request_id_echo()}
        self._send_json(status, error_body(status, message, self._route()), **kwargs)

    def _route(self) -> str:
        path = self.path.split("?", 1)[0]
        return path[:-1] if len(path) > 1 and path.endswith("/") else path

    def do_GET(self) -> None:
        self._get(head=False)

    def do_HEAD(self) -> None:
        self._get(head=True)

    def do_POST(self) -> None:
        route = self._route()
        if route == GENERATIONS_PATH:
            self._generate()
        elif route == "/_control/fail":
            self._control_fail()
        elif route == "/_control/reset":
            self._read_body()
            self.provider.reset()
            self._send_json(200, {"ok": True})
        else:
            self._read_body()
            self._send_error(404, f"Cannot POST {route}")

    def _get(self, *, head: bool) -> None:
        route = self._route()
        if route.startswith("/files/"):
            self._serve_file(route, head=head)
        elif route == "/_control/stats":
            stats = {
                "generation_calls": self.provider.generation_calls(),
                "cdn_requests": len(self.provider.cdn_requests),
                "in_flight": self.provider.in_flight,
                "max_in_flight": self.provider.max_in_flight,
            }
            self._send_json(200, stats, head=head)
        elif route == "/v1/models":
            models = [{"id": m, "object": "model", "type": "image"} for m in MODELS]
            self._send_json(200, {"object": "list", "data": models}, head=head)
        else:
            self._send_error(404, f"Cannot {self.command} {route}", head=head)

    def _serve_file(self, route: str, *, head: bool) -> None:
        provider = self.provider
        with provider._lock:
            provider.cdn_requests.append(
                {"path": route, "method": self.command, "headers": _canonical_headers(self.headers)}
            )
        name = route.removeprefix("/files/")
        token, _, ext = name.rpartition(".")
        info = parse_token(token) if token else None
        if info is None or EXTENSIONS[info["format"]] != ext:
            self._send_error(404, "File not found", head=head)
            return
        ttl = provider.url_ttl
        if ttl is not None and time.time() - info["issued"] > ttl:
            self._send_error(404, "File not found (expired)", head=head)
            return
        payload = render_token(token)
        assert payload is not None
        self._send(200, payload, CONTENT_TYPES[info["format"]], head=head)

    def _control_fail(self) -> None:
        raw = self._read_body()
        try:
            data = json.loads(raw or b"")
            status = data["status"]
            self.provider.fail_next(
                status,
                int(data.get("times", 1)),
                message=data.get("message"),
                retry_after=data.get("retry_after"),
            )
        except (ValueError, TypeError, KeyError) as exc:
            self._send_json(400, {"ok": False, "error": f"bad control body: {exc!r}"})
            return
        self._send_json(200, {"ok": True})

    def _generate(self) -> None:
        provider = self.provider
        started = time.monotonic()
        raw = self._read_body()
        body: Any = None
        parsed_ok = False
        if raw:
            try:
                body = json.loads(raw, parse_constant=_reject_constant)
                parsed_ok = True
            except ValueError:  # UnicodeDecodeError and JSONDecodeError included
                pass
        record: dict[str, Any] = {
            "body": body,
            "headers": _canonical_headers(self.headers),
            "status": None,
        }
        with provider._lock:
            provider.calls.append(record)

        if not self._authorized():
            self._send_error(401, ERROR_MESSAGES[401], record=record)
            return
        # Injected failures come after auth (a wrong key stays a 401 whatever is queued,
        # as a gateway authenticates first) and before validation (a queued 503 does
        # not depend on the body being right, so tests can script failures cheaply).
        if self._inject_failure(record):
            return
        if not parsed_ok:
            self._send_error(
                400, "Body validation error! Expected a JSON object body", record=record
            )
            return
        try:
            model_id, entry = validate_body(body)
        except ValidationError as exc:
            self._send_error(400, f"{ERROR_MESSAGES[400]} {exc}", record=record)
            return

        # Counted while "generating", so callers can see how many calls a client keeps
        # in flight at once (the studio's throughput target).
        provider._enter()
        try:
            if provider.latency > 0:
                provider._stopping.wait(provider.latency)
        finally:
            provider._leave()
        answer = provider._build_answer(
            model_id, entry, body, self._public_origin(), time.monotonic() - started
        )
        # What the call cost, as the real API reports it on every answer.
        images = int(body.get("num_images", body.get("n", 1)))
        cost = {
            "x-aimlapi-usd-spent": f"{provider.usd_spent(model_id, images):f}",
            "x-aimlapi-credits-used": str(CREDITS_PER_IMAGE * images),
        }
        self._send_json(
            provider.success_status,
            answer,
            record=record,
            extra_headers={**cost, **self._request_id_echo()},
        )

    def _request_id_echo(self) -> dict[str, str]:
        # The client's X-Client-Request-Id comes back as sent (the real API also keeps
        # it in its usage logs); only a plain, short token is echoed.
        value = self.headers.get("X-Client-Request-Id")
        if value and re.fullmatch(r"[\x21-\x7e]{1,128}", value):
            return {"X-Client-Request-Id": value}
        return {}

    def _authorized(self) -> bool:
        scheme, _, token = (self.headers.get("Authorization") or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        return self.provider.api_key is None or token == self.provider.api_key

    def _inject_failure(self, record: dict[str, Any]) -> bool:
        """Apply the next scripted or random failure; True if it was the whole answer."""
        provider = self.provider
        failure = provider._take_failure()
        if failure is None:
            return False
        status = failure["status"]
        if status == "disconnect":
            # No answer at all: the client sees the connection drop.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        if status == "timeout":
            provider._stopping.wait(provider.hang_seconds)
            return False
        headers = {}
        if failure.get("retry_after") is not None:
            headers["Retry-After"] = str(failure["retry_after"])
        message = failure.get("message") or default_message(status)
        self._send_error(status, message, extra_headers=headers, record=record)
        return True

    def _public_origin(self) -> str:
        # URLs follow the Host the client used (e.g. "offline:8001" inside docker
        # compose), as a CDN URL must be reachable by whoever called us.
        host = self.headers.get("Host", "")
        if re.fullmatch(r"[A-Za-z0-9.\-]+(:\d+)?|\[[0-9A-Fa-f:.]+\](:\d+)?", host):
            return f"http://{host}"
        return self.provider.origin
