"""generator.client against real local HTTP servers: the provider call and the mirror.

The fakes are stdlib HTTP servers in threads, so every byte goes through a socket. DNS
is faked by patching socket.getaddrinfo (reliability F-2); the TLS tests make a
throwaway CA with the openssl command and skip without it.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from generator import client
from generator.client import (
    PermanentMirrorError,
    PermanentProviderError,
    ProviderError,
    TransientMirrorError,
    TransientProviderError,
)

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


# --- The provider: request and success shapes ---------------------------------------------

SHAPE_A = {
    "images": [
        {
            "url": "https://cdn.aimlapi.com/eagle/files/elephant/RmRsL9NMW.jpg",
            "width": 1472,
            "height": 512,
            "content_type": "image/jpeg",
        }
    ],
    "timings": {"inference": 4.445},
    "seed": 3082066483,
    "has_nsfw_concepts": [False],
    "prompt": "A T-Rex relaxing on a beach",
}


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


@pytest.mark.parametrize("status", [200, 201, 202])
def test_generate_accepts_any_2xx_and_parses_shape_a(
    fake: FakeServer, provider_url: str, status: int
) -> None:
    fake.routes[provider_url] = json_reply(status, SHAPE_A)
    body = {"model": "flux-realism", "prompt": "A T-Rex relaxing on a beach"}

    result = client.generate_images(body)

    assert [image.url for image in result.images] == [SHAPE_A["images"][0]["url"]]
    assert (result.images[0].width, result.images[0].height) == (1472, 512)
    assert result.images[0].content_type == "image/jpeg"
    assert result.seed == 3082066483
    assert result.has_nsfw_concepts == [False]
    assert result.timings == {"inference": 4.445}
    assert result.prompt == "A T-Rex relaxing on a beach"
    assert result.raw == SHAPE_A
    (request,) = fake.seen
    assert (request.method, request.path) == ("POST", "/v1/images/generations")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept"] == "application/json"
    assert json.loads(request.body) == body


def test_generate_reads_a_gzipped_answer_from_a_proxy_that_ignores_identity(
    fake: FakeServer, provider_url: str
) -> None:
    fake.routes[provider_url] = Reply(
        200,
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        gzip.compress(json.dumps(SHAPE_A).encode()),
    )
    assert client.generate_images({}).seed == 3082066483
    assert fake.seen[0].headers["accept-encoding"] == "identity"


def test_generate_does_not_follow_redirects(fake: FakeServer, provider_url: str) -> None:
    fake.routes[provider_url] = Reply(307, {"Location": "/v1/elsewhere"})
    fake.routes["/v1/elsewhere"] = json_reply(200, SHAPE_A)

    with pytest.raises(PermanentProviderError) as caught:
        client.generate_images({})

    assert caught.value.status == 307
    assert fake.paths() == [provider_url]


def test_generate_without_a_key_makes_no_request(
    fake: FakeServer, provider_url: str, settings: Any
) -> None:
    settings.AIMLAPI_KEY = ""
    with pytest.raises(PermanentProviderError, match="AIMLAPI_KEY"):
        client.generate_images({})
    assert fake.seen == []


@pytest.mark.parametrize(
    "payload, message",
    [
        ({}, "no images"),
        ({"data": []}, "no images"),
        ({"images": None}, "no images"),
        ({"images": "https://cdn.aimlapi.com/x.png"}, "not understood"),
        ([SHAPE_A], "not understood"),
    ],
)
def test_generate_refuses_a_2xx_without_images(
    fake: FakeServer, provider_url: str, payload: Any, message: str
) -> None:
    fake.routes[provider_url] = json_reply(200, payload)
    with pytest.raises(PermanentProviderError, match=message):
        client.generate_images({})


@pytest.mark.parametrize("body", [b"<html>OK</html>", b"", b'{"images": [', b'{"seed": NaN}'])
def test_generate_refuses_a_2xx_that_is_not_json(
    fake: FakeServer, provider_url: str, body: bytes
) -> None:
    fake.routes[provider_url] = Reply(200, {"Content-Type": "text/html"}, body)
    with pytest.raises(PermanentProviderError, match="not understood"):
        client.generate_images({})


# --- The provider: errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "status, error_class",
    [
        (400, PermanentProviderError),
        (401, PermanentProviderError),
        (403, PermanentProviderError),
        (404, PermanentProviderError),
        (418, PermanentProviderError),
        (422, PermanentProviderError),
        (408, TransientProviderError),
        (429, TransientProviderError),
        (500, TransientProviderError),
        (502, TransientProviderError),
        (503, TransientProviderError),
        (504, TransientProviderError),
        (599, TransientProviderError),
    ],
)
def test_error_statuses_are_classified(
    fake: FakeServer, provider_url: str, status: int, error_class: type[ProviderError]
) -> None:
    fake.routes[provider_url] = json_reply(
        status,
        {
            "message": f"Documented message for {status}",
            "path": "/v1/images/generations",
            "requestId": "062c6a47-aaaa",
            "statusCode": status,
            "timestamp": "2024-11-08T13:47:48.395Z",
        },
    )

    with pytest.raises(ProviderError) as caught:
        client.generate_images({})

    assert type(caught.value) is error_class
    assert caught.value.status == status
    assert str(caught.value) == caught.value.message == f"Documented message for {status}"
    assert caught.value.retry_after is None


def test_error_with_statuscode_as_string(fake: FakeServer, provider_url: str) -> None:
    fake.routes[provider_url] = json_reply(
        429, {"message": "Too Many Requests", "statusCode": "429", "path": "/v1/x"}
    )
    with pytest.raises(TransientProviderError, match="^Too Many Requests$") as caught:
        client.generate_images({})
    assert caught.value.status == 429


def test_error_with_validation_messages_as_a_list(fake: FakeServer, provider_url: str) -> None:
    fake.routes[provider_url] = json_reply(
        400, {"message": ["prompt must be a string", "model is required"], "statusCode": 400}
    )
    with pytest.raises(PermanentProviderError) as caught:
        client.generate_images({})
    assert caught.value.message == "prompt must be a string; model is required"


@pytest.mark.parametrize(
    "reply",
    [
        Reply(502, {"Content-Type": "text/html"}, b"<html><h1>502 Bad Gateway</h1></html>"),
        Reply(503, {}, b""),
        Reply(500, {"Content-Type": "application/json"}, b'{"error": {"message": 1}}'),
    ],
)
def test_error_body_that_is_not_the_documented_json(
    fake: FakeServer, provider_url: str, reply: Reply
) -> None:
    fake.routes[provider_url] = reply
    with pytest.raises(TransientProviderError) as caught:
        client.generate_images({})
    assert caught.value.message == f"Provider answered HTTP {reply.status}"


@pytest.mark.parametrize(
    "header, low, high",
    [("7", 7, 7), ("0", 0, 0), ("date+30", 27, 31), ("date-300", 0, 0)],
)
def test_retry_after_seconds_and_http_date(
    fake: FakeServer, provider_url: str, header: str, low: float, high: float
) -> None:
    if header.startswith("date"):
        header = formatdate(time.time() + int(header[4:]), usegmt=True)
    fake.routes[provider_url] = json_reply(
        503, {"message": "Service unavailable"}, **{"Retry-After": header}
    )
    with pytest.raises(TransientProviderError) as caught:
        client.generate_images({})
    assert caught.value.retry_after is not None
    assert low <= caught.value.retry_after <= high


@pytest.mark.parametrize("header", ["soon", "-5", "1.5e3", "Mon, 99 Foo 2026", "9" * 5000, ""])
def test_retry_after_garbage_is_none(fake: FakeServer, provider_url: str, header: str) -> None:
    fake.routes[provider_url] = json_reply(429, {"message": "x"}, **{"Retry-After": header})
    with pytest.raises(TransientProviderError) as caught:
        client.generate_images({})
    assert caught.value.retry_after is None


def test_connection_refused_is_transient(settings: Any) -> None:
    settings.AIMLAPI_KEY = KEY
    settings.AIMLAPI_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(TransientProviderError) as caught:
        client.generate_images({})
    assert caught.value.status is None


def test_read_timeout_is_transient(fake: FakeServer, provider_url: str, settings: Any) -> None:
    settings.AIMLAPI_READ_TIMEOUT = 0.3
    fake.routes[provider_url] = Reply(200, body=json.dumps(SHAPE_A).encode(), delay=5)
    started = time.monotonic()
    with pytest.raises(TransientProviderError):
        client.generate_images({})
    assert time.monotonic() - started < 4  # well before the server would have finished


def test_slow_drip_is_cut_at_the_total_deadline(
    fake: FakeServer, provider_url: str, settings: Any
) -> None:
    # Each byte arrives well inside the read timeout; only the total deadline stops it.
    settings.AIMLAPI_READ_TIMEOUT = 1.0
    settings.AIMLAPI_TOTAL_TIMEOUT = 0.8
    fake.routes[provider_url] = Reply(200, body=json.dumps(SHAPE_A).encode(), drip=0.02)
    started = time.monotonic()
    with pytest.raises(TransientProviderError, match="took longer"):
        client.generate_images({})
    assert time.monotonic() - started < 4  # well before the server would have finished


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_answer_is_refused(
    fake: FakeServer, provider_url: str, settings: Any, chunked: bool
) -> None:
    settings.AIMLAPI_MAX_RESPONSE_BYTES = 2048
    padded = {**SHAPE_A, "padding": "x" * 100_000}
    fake.routes[provider_url] = Reply(200, body=json.dumps(padded).encode(), chunked=chunked)
    with pytest.raises(PermanentProviderError, match="larger than AIMLAPI_MAX_RESPONSE_BYTES"):
        client.generate_images({})


def test_key_appears_in_no_error_or_log_line(
    fake: FakeServer, provider_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A provider that echoes the credential back must not get it into our records.
    fake.routes[provider_url] = json_reply(
        401, {"message": f"Invalid key Bearer {KEY}", "requestId": KEY, "statusCode": 401}
    )
    caplog.set_level("DEBUG")
    with pytest.raises(PermanentProviderError) as caught:
        client.generate_images({})

    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value)
    assert "[redacted]" in caught.value.message
    assert KEY not in caplog.text


def test_key_is_not_in_transport_errors(settings: Any) -> None:
    settings.AIMLAPI_KEY = KEY
    settings.AIMLAPI_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(TransientProviderError) as caught:
        client.generate_images({})
    chain = [caught.value, caught.value.__cause__, caught.value.__context__]
    assert all(KEY not in str(exc) for exc in chain if exc is not None)


def test_key_with_a_newline_is_refused_without_echo(settings: Any) -> None:
    settings.AIMLAPI_KEY = f"{KEY}\nX-Injected: 1"
    with pytest.raises(PermanentProviderError) as caught:
        client.generate_images({})
    assert KEY not in str(caught.value)


# --- parse_generation_response ------------------------------------------------------------


def test_parse_shape_a_with_null_sizes_and_a_seed_above_2_53() -> None:
    result = client.parse_generation_response(
        {
            "images": [{"url": "https://cdn.aimlapi.com/a.png", "width": None}],
            "seed": 3544609846964942300,
            "num_images": 1,
        }
    )
    (image,) = result.images
    assert (image.width, image.height, image.content_type) == (None, None, None)
    assert result.seed == 3544609846964942300
    assert result.has_nsfw_concepts == []
    assert result.timings == {}
    assert result.usage is None


def test_parse_shape_a_prime_keeps_file_fields() -> None:
    result = client.parse_generation_response(
        {
            "images": [
                {
                    "url": "https://v3b.fal.media/files/rabbit/x.webp",
                    "content_type": "image/webp",
                    "file_name": "x.webp",
                    "file_size": 123456,
                }
            ]
        }
    )
    (image,) = result.images
    assert image.content_type == "image/webp"
    assert image.extra == {"file_name": "x.webp", "file_size": 123456}
    assert result.seed is None


def test_parse_shape_b_url_and_b64() -> None:
    result = client.parse_generation_response(
        {
            "data": [
                {"url": "https://cdn.aimlapi.com/generations/x.png", "b64_json": None},
                {"url": None, "b64_json": "iVBORw0KGgo="},
            ],
            "meta": {"usage": {"credits_used": 42000}},
        }
    )
    first, second = result.images
    assert (first.url, first.b64_json) == ("https://cdn.aimlapi.com/generations/x.png", None)
    assert (second.url, second.b64_json) == (None, "iVBORw0KGgo=")
    assert result.usage == {"credits_used": 42000}


def test_parse_shape_c_imagen_maps_mime_type_and_enhanced_prompt() -> None:
    result = client.parse_generation_response(
        {
            "data": [
                {
                    "mime_type": "image/png",
                    "url": "https://cdn.aimlapi.com/generations/guepard/1-u.png",
                    "prompt": "An enhanced prompt",
                }
            ]
        }
    )
    (image,) = result.images
    assert image.content_type == "image/png"
    assert image.extra == {"mime_type": "image/png", "prompt": "An enhanced prompt"}
    assert result.revised_prompt == "An enhanced prompt"


def test_parse_shape_d_openai_passthrough() -> None:
    url = "https://oaidalleapiprodscus.blob.core.windows.net/private/x.png?st=1&sig=abc"
    result = client.parse_generation_response(
        {"created": 1700000000, "data": [{"url": url, "revised_prompt": "A revised cat"}]}
    )
    assert result.images[0].url == url
    assert result.revised_prompt == "A revised cat"


def test_parse_legacy_output_choices() -> None:
    result = client.parse_generation_response(
        {
            "status": "succeeded",
            "prompt": ["a cat"],
            "model": "x",
            "output": {"choices": [{"image_base64": "iVBORw0KGgo="}]},
        }
    )
    assert [(image.url, image.b64_json) for image in result.images] == [(None, "iVBORw0KGgo=")]
    assert result.prompt == "a cat"


def test_parse_moves_a_data_uri_url_to_b64() -> None:
    uri = "data:image/png;base64,iVBORw0KGgo="
    (image,) = client.parse_generation_response({"images": [{"url": uri}]}).images
    assert (image.url, image.b64_json) == (None, uri)


@pytest.mark.parametrize(
    "seed, expected",
    [("42", 42), ("18446744073709551615", 2**64 - 1), (7.0, 7), (True, None), ("x", None)],
)
def test_parse_seed_forms(seed: object, expected: int | None) -> None:
    result = client.parse_generation_response(
        {"images": [{"url": "https://cdn.aimlapi.com/a.png"}], "seed": seed}
    )
    assert result.seed == expected


def test_parse_refuses_more_than_16_images() -> None:
    entries = [{"url": f"https://cdn.aimlapi.com/{i}.png"} for i in range(17)]
    with pytest.raises(PermanentProviderError, match="17 images"):
        client.parse_generation_response({"images": entries})


@pytest.mark.parametrize(
    "data", [None, "images", {"images": ["https://cdn.aimlapi.com/a.png"]}, {"data": {}}]
)
def test_parse_refuses_answers_it_does_not_understand(data: object) -> None:
    with pytest.raises(PermanentProviderError, match="not understood"):
        client.parse_generation_response(data)


def test_parse_refuses_entries_with_neither_url_nor_data() -> None:
    with pytest.raises(PermanentProviderError, match="no images"):
        client.parse_generation_response({"data": [{"url": None, "b64_json": None}]})


# --- check_mirror_url (F-1): every refusal without a socket --------------------------------

PRODUCTION_HOSTS = ["cdn.aimlapi.com", ".fal.media", "oaidalleapiprodscus.blob.core.windows.net"]


@pytest.fixture
def production_mirror(settings: Any) -> None:
    settings.MIRROR_ALLOWED_HOSTS = PRODUCTION_HOSTS
    settings.MIRROR_ALLOW_PRIVATE_ADDRESSES = False
    settings.MIRROR_TIMEOUT = 5.0
    settings.MIRROR_MAX_BYTES = 1024 * 1024


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.aimlapi.com/a.png",
        "file:///etc/passwd",
        "ftp://cdn.aimlapi.com/a.png",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "//cdn.aimlapi.com/a.png",
        "https:cdn.aimlapi.com/a.png",
        "https://user@cdn.aimlapi.com/a.png",
        "https://user:hunter2@cdn.aimlapi.com/a.png",
        "https://cdn.aimlapi.com.evil.test/a.png",
        "https://evil.test/cdn.aimlapi.com",
        "https://evil.test?@cdn.aimlapi.com/",
        "https://notfal.media/a.png",
        "https://127.0.0.1/a.png",
        "https://[::1]/a.png",
        "https://[::ffff:127.0.0.1]/a.png",
        "https://[fe80::1%25eth0]/a.png",
        "https://0/a.png",
        "https://2130706433/a.png",
        "https://0x7f.1/a.png",
        "https://0177.0.0.1/a.png",
        "https://169.254.169.254/latest/meta-data/",
        "https://cdn.aimlapi.com:8080/a.png",
        "https://cdn.aimlapi.com:/a.png",
        "https://cdn.aimlapi.com:99999/a.png",
        "https://cdn.aimlapi.com\\@evil.test/",
        "https://cdn.aimlapi.com/a b.png",
        "https://cdn.aimlapi.com/a.png\n",
        "https://cdn.aimlapi.com\t/a.png",
        "https://cdn.aimlapi.com\x00.evil.test/",
        "https://cdn.aimlapi.com\u3000/a.png",
        "https://cdn.aimlapı.com/a.png",
        "https://cdn_aimlapi.com/a.png",
        "https:///a.png",
        "https://cdn.aimlapi.com/" + "a" * 2048,
        "",
    ],
)
def test_hostile_urls_are_refused_without_any_socket(
    production_mirror: None, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    attempts = forbid_network(monkeypatch)

    with pytest.raises(PermanentMirrorError) as checked:
        client.check_mirror_url(url)
    with pytest.raises(PermanentMirrorError):
        client.fetch_image(url)

    assert attempts == []
    assert "hunter2" not in str(checked.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.aimlapi.com/eagle/files/elephant/x.jpg",
        "https://CDN.AIMLAPI.COM/a.png",
        "https://cdn.aimlapi.com./a.png",
        "https://cdn.aimlapi.com:443/a.png",
        "HTTPS://v3b.fal.media/files/x.png?x=1",
        "https://fal.media/a.png",
        "https://oaidalleapiprodscus.blob.core.windows.net/private/a.png?se=2&sig=x%2B",
        "https://cdn.aimlapi.com/caf\u00e9.png",
    ],
)
def test_allowlisted_urls_pass_the_check_without_any_socket(
    production_mirror: None, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    attempts = forbid_network(monkeypatch)
    client.check_mirror_url(url)
    assert attempts == []


def test_ip_literal_passes_only_when_listed_and_private_addresses_are_allowed(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_network(monkeypatch)
    settings.MIRROR_ALLOWED_HOSTS = ["127.0.0.1", "::1"]
    settings.MIRROR_ALLOW_PRIVATE_ADDRESSES = True
    client.check_mirror_url("http://127.0.0.1:8123/a.png")
    client.check_mirror_url("https://[::1]:8443/a.png")
    with pytest.raises(PermanentMirrorError):
        client.check_mirror_url("http://127.0.0.2:8123/a.png")
    with pytest.raises(PermanentMirrorError):
        client.check_mirror_url("http://2130706433:8123/a.png")

    settings.MIRROR_ALLOW_PRIVATE_ADDRESSES = False
    with pytest.raises(PermanentMirrorError):
        client.check_mirror_url("https://127.0.0.1/a.png")


# --- fetch_image: resolved addresses (F-2) ----------------------------------------------------


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["169.254.169.254"],
        ["10.0.0.5"],
        ["172.16.3.4"],
        ["192.168.1.1"],
        ["100.64.0.1"],
        ["0.0.0.0"],
        ["224.0.0.1"],
        ["240.0.0.1"],
        ["::1"],
        ["::ffff:127.0.0.1"],
        ["::ffff:169.254.169.254"],
        ["64:ff9b::a00:1"],
        ["2002:7f00:1::1"],
        ["fc00::1"],
        ["fe80::1"],
        [PUBLIC_IP, "10.0.0.5"],
        ["2606:2800:220:1::1", "::1"],
    ],
)
def test_allowlisted_host_resolving_to_a_private_address_is_refused_before_connect(
    production_mirror: None, monkeypatch: pytest.MonkeyPatch, addresses: list[str]
) -> None:
    lookups = fake_dns(monkeypatch, {"cdn.aimlapi.com": addresses})
    connects = record_connects(monkeypatch)

    with pytest.raises(PermanentMirrorError, match="non-public address"):
        client.fetch_image("https://cdn.aimlapi.com/a.png")

    assert lookups == ["cdn.aimlapi.com"]
    assert connects == []


@pytest.fixture
def local_mirror(settings: Any) -> None:
    settings.MIRROR_ALLOWED_HOSTS = ["127.0.0.1", "cdn.test"]
    settings.MIRROR_ALLOW_PRIVATE_ADDRESSES = True
    settings.MIRROR_TIMEOUT = 5.0
    settings.MIRROR_MAX_BYTES = 64 * 1024
    settings.AIMLAPI_KEY = KEY


def png_reply(**headers: str) -> Reply:
    return Reply(200, {"Content-Type": "image/png", **headers}, PNG)


def test_fetch_returns_the_bytes(fake: FakeServer, local_mirror: None) -> None:
    fake.routes["/a.png?sig=1"] = png_reply()
    assert client.fetch_image(fake.url("/a.png?sig=1")) == PNG


def test_fetch_resolves_once_per_hop_and_connects_to_that_address(
    fake: FakeServer, local_mirror: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second lookup would get an address nothing listens on (a DNS rebind); the
    # fetch only works if each hop connects to the address it checked.
    answers = iter([["127.0.0.1"], ["127.0.0.1"]])
    lookups: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "cdn.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = next(answers, ["127.0.0.9"])[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    connects = record_connects(monkeypatch)
    fake.routes["/first"] = Reply(302, {"Location": "/second.png"})
    fake.routes["/second.png"] = png_reply()

    assert client.fetch_image(fake.url("/first", host="cdn.test")) == PNG

    assert lookups == ["cdn.test", "cdn.test"]
    assert connects == [("127.0.0.1", fake.port), ("127.0.0.1", fake.port)]
    assert [seen.headers["host"] for seen in fake.seen] == [f"cdn.test:{fake.port}"] * 2


def test_plain_http_needs_the_private_flag(
    fake: FakeServer, local_mirror: None, settings: Any
) -> None:
    fake.routes["/a.png"] = png_reply()
    settings.MIRROR_ALLOW_PRIVATE_ADDRESSES = False
    with pytest.raises(PermanentMirrorError):
        client.fetch_image(fake.url("/a.png"))
    assert fake.seen == []


def test_plain_http_to_a_public_address_is_refused_even_with_the_flag(
    local_mirror: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"cdn.test": [PUBLIC_IP]})
    connects = record_connects(monkeypatch)
    with pytest.raises(PermanentMirrorError, match="Plain http"):
        client.fetch_image("http://cdn.test/a.png")
    assert connects == []


def test_redirect_to_a_host_off_the_allowlist_is_refused(
    fake: FakeServer, local_mirror: None, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.MIRROR_ALLOWED_HOSTS = ["cdn.test"]
    fake_dns(monkeypatch, {"cdn.test": ["127.0.0.1"]})
    fake.routes["/a.png"] = Reply(302, {"Location": fake.url("/secret")})
    fake.routes["/secret"] = png_reply()

    with pytest.raises(PermanentMirrorError, match="Redirect refused"):
        client.fetch_image(fake.url("/a.png", host="cdn.test"))
    assert fake.paths() == ["/a.png"]


@pytest.mark.parametrize("redirects, succeeds", [(3, True), (4, False)])
def test_redirect_chain_is_capped_at_three(
    fake: FakeServer, local_mirror: None, redirects: int, succeeds: bool
) -> None:
    for hop in range(redirects):
        fake.routes[f"/r{hop}"] = Reply(302, {"Location": f"/r{hop + 1}"})
    fake.routes[f"/r{redirects}"] = png_reply()

    if succeeds:
        assert client.fetch_image(fake.url("/r0")) == PNG
    else:
        with pytest.raises(PermanentMirrorError, match="redirected more than 3"):
            client.fetch_image(fake.url("/r0"))
        assert len(fake.seen) == 4


# --- fetch_image: size, time, type, headers, statuses --------------------------------------


def test_announced_length_over_the_cap_is_refused_before_reading(
    fake: FakeServer, local_mirror: None, settings: Any
) -> None:
    settings.MIRROR_MAX_BYTES = 2048
    # Announces more than it sends: reading the body would wait for the rest.
    fake.routes["/big.png"] = Reply(
        200, {"Content-Type": "image/png", "Content-Length": "50000000"}, PNG
    )
    started = time.monotonic()
    with pytest.raises(PermanentMirrorError, match="MIRROR_MAX_BYTES"):
        client.fetch_image(fake.url("/big.png"))
    assert time.monotonic() - started < 4  # not waiting for the announced body


def test_chunked_body_over_the_cap_is_cut_off(
    fake: FakeServer, local_mirror: None, settings: Any
) -> None:
    settings.MIRROR_MAX_BYTES = 64 * 1024
    fake.routes["/big.png"] = Reply(200, {"Content-Type": "image/png"}, PNG * 2000, chunked=True)
    with pytest.raises(PermanentMirrorError, match="MIRROR_MAX_BYTES"):
        client.fetch_image(fake.url("/big.png"))


def test_chunked_body_under_the_cap_is_read(fake: FakeServer, local_mirror: None) -> None:
    fake.routes["/a.png"] = Reply(200, {"Content-Type": "image/png"}, PNG * 100, chunked=True)
    assert client.fetch_image(fake.url("/a.png")) == PNG * 100


def test_slow_drip_is_cut_at_the_mirror_deadline(
    fake: FakeServer, local_mirror: None, settings: Any
) -> None:
    settings.MIRROR_TIMEOUT = 0.8
    fake.routes["/slow.png"] = Reply(200, {"Content-Type": "image/png"}, PNG, drip=0.05)
    started = time.monotonic()
    with pytest.raises(TransientMirrorError, match="took longer"):
        client.fetch_image(fake.url("/slow.png"))
    assert time.monotonic() - started < 4  # well before the server would have finished


def test_silent_host_is_cut_at_the_mirror_deadline(
    fake: FakeServer, local_mirror: None, settings: Any
) -> None:
    settings.MIRROR_TIMEOUT = 0.5
    fake.routes["/silent.png"] = Reply(200, {"Content-Type": "image/png"}, PNG, delay=10)
    started = time.monotonic()
    with pytest.raises(TransientMirrorError):
        client.fetch_image(fake.url("/silent.png"))
    assert time.monotonic() - started < 4  # well before the server would have finished


@pytest.mark.parametrize(
    "content_type",
    ["text/html", "image/svg+xml", "image/gif", "application/octet-stream", "image/png-x", None],
)
def test_only_png_jpeg_and_webp_content_types_are_accepted(
    fake: FakeServer, local_mirror: None, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    fake.routes["/a.png"] = Reply(200, headers, PNG)
    with pytest.raises(PermanentMirrorError, match="content type"):
        client.fetch_image(fake.url("/a.png"))


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/webp", "IMAGE/PNG; charset=x"])
def test_content_type_parameters_and_case_are_ignored(
    fake: FakeServer, local_mirror: None, content_type: str
) -> None:
    fake.routes["/a"] = Reply(200, {"Content-Type": content_type}, PNG)
    assert client.fetch_image(fake.url("/a")) == PNG


def test_compressed_body_is_refused(fake: FakeServer, local_mirror: None) -> None:
    fake.routes["/a.png"] = Reply(
        200, {"Content-Type": "image/png", "Content-Encoding": "gzip"}, gzip.compress(PNG)
    )
    with pytest.raises(PermanentMirrorError, match="compressed"):
        client.fetch_image(fake.url("/a.png"))


def test_no_credentials_or_cookies_reach_the_cdn(fake: FakeServer, local_mirror: None) -> None:
    # local_mirror configures the provider key; a redirect on the way sets a cookie.
    fake.routes["/a.png"] = Reply(302, {"Location": "/b.png", "Set-Cookie": "session=abc"})
    fake.routes["/b.png"] = png_reply()

    assert client.fetch_image(fake.url("/a.png")) == PNG

    for seen in fake.seen:
        assert "authorization" not in seen.headers
        assert "proxy-authorization" not in seen.headers
        assert "cookie" not in seen.headers
        assert seen.headers["accept-encoding"] == "identity"
        assert KEY not in json.dumps(seen.headers) + seen.path


@pytest.mark.parametrize(
    "status, error_class",
    [
        (403, PermanentMirrorError),
        (404, PermanentMirrorError),
        (410, PermanentMirrorError),
        (400, PermanentMirrorError),
        (304, PermanentMirrorError),
        (408, TransientMirrorError),
        (429, TransientMirrorError),
        (500, TransientMirrorError),
        (503, TransientMirrorError),
    ],
)
def test_cdn_statuses_are_classified(
    fake: FakeServer, local_mirror: None, status: int, error_class: type[Exception]
) -> None:
    fake.routes["/a.png"] = Reply(status, {"Content-Type": "text/plain"}, b"nope")
    with pytest.raises(client.MirrorError) as caught:
        client.fetch_image(fake.url("/a.png"))
    assert type(caught.value) is error_class
    assert str(status) in str(caught.value)


def test_connection_refused_is_transient_for_the_mirror(local_mirror: None) -> None:
    with pytest.raises(TransientMirrorError):
        client.fetch_image(f"http://127.0.0.1:{free_port()}/a.png")


def test_empty_body_is_refused(fake: FakeServer, local_mirror: None) -> None:
    fake.routes["/a.png"] = Reply(200, {"Content-Type": "image/png"}, b"")
    with pytest.raises(PermanentMirrorError, match="empty"):
        client.fetch_image(fake.url("/a.png"))


# --- fetch_image over TLS: pinned address, real name for SNI and the certificate -----------


@dataclass
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and a certificate for cdn.test and cdn.aimlapi.com."""
    folder = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (folder / "leaf.ext").write_text(
        "subjectAltName=DNS:cdn.test,DNS:cdn.aimlapi.com\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    commands = [
        ["openssl", "req", "-x509", "-new", *ec, "-keyout", "ca.key", "-out", "ca.pem"]
        + ["-days", "2", "-subj", "/CN=Studio Test CA"]
        + ["-addext", "basicConstraints=critical,CA:TRUE"]
        + ["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-new", *ec, "-keyout", "leaf.key", "-out", "leaf.csr"]
        + ["-subj", "/CN=cdn.test"],
        ["openssl", "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key"]
        + ["-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext"],
    ]
    try:
        for command in commands:
            subprocess.run(command, cwd=folder, check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"openssl cannot make test certificates: {exc}")
    return TlsFiles(folder / "ca.pem", folder / "leaf.pem", folder / "leaf.key")


@pytest.fixture
def tls_fake(tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files.cert, tls_files.key)
    server = FakeServer(tls=context)
    # The mirror trusts what requests trusts, REQUESTS_CA_BUNDLE included.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca))
    yield server
    server.stop()


def test_https_connects_to_the_checked_address_with_the_real_name(
    tls_fake: FakeServer, local_mirror: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"cdn.test": ["127.0.0.1"]})
    connects = record_connects(monkeypatch)
    tls_fake.routes["/a.png"] = png_reply()

    assert client.fetch_image(tls_fake.url("/a.png", host="cdn.test")) == PNG

    assert connects == [("127.0.0.1", tls_fake.port)]
    assert tls_fake.sni == ["cdn.test"]
    assert tls_fake.seen[0].headers["host"] == f"cdn.test:{tls_fake.port}"


def test_https_certificate_must_match_the_url_host(
    tls_fake: FakeServer, local_mirror: None, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.MIRROR_ALLOWED_HOSTS = ["other.test"]
    fake_dns(monkeypatch, {"other.test": ["127.0.0.1"]})
    tls_fake.routes["/a.png"] = png_reply()

    with pytest.raises(client.MirrorError, match="TLS handshake"):
        client.fetch_image(tls_fake.url("/a.png", host="other.test"))
    assert tls_fake.seen == []


@pytest.mark.parametrize(
    "location, dns",
    [
        ("http://127.0.0.1:{port}/secret", {}),
        ("https://127.0.0.1/secret", {}),
        ("https://169.254.169.254/latest/meta-data/", {}),
        ("https://v3b.fal.media/secret", {"v3b.fal.media": ["10.0.0.5"]}),
        ("https://cdn.aimlapi.com:{port}/secret", {}),
    ],
)
def test_redirect_into_private_space_is_refused_in_production_mode(
    tls_fake: FakeServer,
    fake: FakeServer,
    production_mirror: None,
    monkeypatch: pytest.MonkeyPatch,
    location: str,
    dns: dict[str, list[str]],
) -> None:
    # The first hop is real HTTPS to cdn.aimlapi.com on 443, which "resolves" to a
    # public address that the test reroutes to the local TLS server.
    lookups = fake_dns(monkeypatch, {"cdn.aimlapi.com": [PUBLIC_IP], **dns})
    connects = record_connects(monkeypatch, {(PUBLIC_IP, 443): ("127.0.0.1", tls_fake.port)})
    tls_fake.routes["/a.png"] = Reply(302, {"Location": location.format(port=fake.port)})
    fake.routes["/secret"] = png_reply()

    with pytest.raises(PermanentMirrorError, match="Redirect refused"):
        client.fetch_image("https://cdn.aimlapi.com/a.png")

    assert tls_fake.sni == ["cdn.aimlapi.com"]
    assert connects == [(PUBLIC_IP, 443)]
    assert fake.seen == []
    assert lookups[0] == "cdn.aimlapi.com"


# --- decode_b64_image ------------------------------------------------------------------------


def test_b64_decodes_plain_and_data_uri(settings: Any) -> None:
    settings.MIRROR_MAX_BYTES = 1024
    encoded = base64.b64encode(PNG).decode()
    assert client.decode_b64_image(encoded) == PNG
    assert client.decode_b64_image(f"data:image/png;base64,{encoded}") == PNG
    assert client.decode_b64_image(f"DATA:image/webp;base64,{encoded}\n") == PNG


def test_b64_over_the_cap_is_refused_before_decoding(settings: Any) -> None:
    settings.MIRROR_MAX_BYTES = 1024
    assert client.decode_b64_image(base64.b64encode(b"x" * 1024).decode()) == b"x" * 1024
    with pytest.raises(PermanentMirrorError, match="MIRROR_MAX_BYTES"):
        client.decode_b64_image(base64.b64encode(b"x" * 1025).decode())
    # Not valid base64 at all: only the length check can have refused it.
    with pytest.raises(PermanentMirrorError, match="MIRROR_MAX_BYTES"):
        client.decode_b64_image("!" * 10_000_000)


@pytest.mark.parametrize(
    "data",
    [
        "",
        "data:image/png;base64,",
        "not base64!",
        "iVBORw0KGgo",  # missing padding
        "iVBO\nRw0KGgo=",
        "iVBORw0KGgo=iVBO",
        "data:text/html;base64,PGgxPng8L2gxPg==",
        "data:image/svg+xml;base64,PHN2Zy8+",
        "data:image/png,rawbytes",
        "iVBORw0KGgo\u00e9",
    ],
)
def test_bad_b64_is_refused(settings: Any, data: str) -> None:
    settings.MIRROR_MAX_BYTES = 1024
    with pytest.raises(PermanentMirrorError):
        client.decode_b64_image(data)
