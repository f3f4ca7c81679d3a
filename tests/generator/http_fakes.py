"""Local HTTP fakes for the provider client and image fetch tests, and the hostile pipeline.

The fakes are stdlib HTTP servers in threads, so every byte goes through a socket. DNS
is faked by patching socket.getaddrinfo (reliability F-2).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

KEY = "sk-aiml-test-5f3c9a1e-do-not-leak"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
PUBLIC_IP = "93.184.215.14"  # a globally routable address; tests never reach it


# --- A scriptable local HTTP server ------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # before the status line
    drip: float | None = None  # seconds between single body bytes
    chunked: bool = False


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class FakeServer:
    """Answers each path with a Reply (or a function of the request) and records requests."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Reply | Callable[[Seen], Reply]] = {}
        self.seen: list[Seen] = []
        self.sni: list[str | None] = []
        self.stopping = threading.Event()
        self.tls = tls
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.fake = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [seen.path for seen in self.seen]

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeServer

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.fake.tls is not None:
            sock = self.fake.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up on purpose in these tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        seen = Seen(
            self.command,
            self.path,
            {name.lower(): value for name, value in self.headers.items()},
            self.rfile.read(length) if length else b"",
        )
        fake.seen.append(seen)
        reply = fake.routes.get(self.path, Reply(404, body=b"no such route"))
        if callable(reply):
            reply = reply(seen)
        self.close_connection = True
        try:
            if reply.delay and fake.stopping.wait(reply.delay):
                return
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            elif "Content-Length" not in reply.headers:
                self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self._write_body(reply, fake)
        except OSError:
            pass  # the client gave up, which is what several tests want

    def _write_body(self, reply: Reply, fake: FakeServer) -> None:
        if reply.drip is not None:
            for byte in reply.body:
                if fake.stopping.wait(reply.drip):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
        elif reply.chunked:
            for start in range(0, len(reply.body), 16 * 1024):
                piece = reply.body[start : start + 16 * 1024]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(reply.body)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fake_dns(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> list[str]:
    """Answer getaddrinfo for the names in `table`; other names (IP literals) pass through.

    Returns the list of names looked up, in order.
    """
    real = socket.getaddrinfo
    calls: list[str] = []

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, *args: Any) -> Any:
        calls.append(host)
        if host in table:
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
                if ":" in address
                else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                for address in table[host]
            ]
        return real(host, port, family, type, *args)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def forbid_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Make any lookup or connect an error, and record it."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise AssertionError(f"network used: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def record_connects(monkeypatch: pytest.MonkeyPatch, reroute: dict | None = None) -> list[Any]:
    """Record every socket connect target; `reroute` maps a target to where it really goes."""
    real = socket.socket.connect
    targets: list[Any] = []

    def connect(sock: socket.socket, address: Any) -> Any:
        targets.append(tuple(address[:2]))
        return real(sock, (reroute or {}).get(tuple(address[:2]), address))

    monkeypatch.setattr(socket.socket, "connect", connect)
    return targets


@pytest.fixture
def provider_url(fake: FakeServer, settings: Any) -> str:
    settings.AIMLAPI_KEY = KEY
    settings.AIMLAPI_BASE_URL = fake.url("/v1")
    settings.AIMLAPI_CONNECT_TIMEOUT = 2.0
    settings.AIMLAPI_READ_TIMEOUT = 5.0
    settings.AIMLAPI_TOTAL_TIMEOUT = 10.0
    settings.AIMLAPI_MAX_RESPONSE_BYTES = 1024 * 1024
    return "/v1/images/generations"


def json_reply(status: int, payload: Any, **headers: str) -> Reply:
    return Reply(
        status,
        {"Content-Type": "application/json", **headers},
        json.dumps(payload).encode(),
    )
