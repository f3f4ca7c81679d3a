"""generator.fetch against real local HTTP servers: URL and address checks, redirects,
size and time caps, TLS to the checked address, and base64 images.

The TLS tests make a throwaway CA with the openssl command and skip without it.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from generator import fetch
from generator.fetch import PermanentMirrorError, TransientMirrorError
from tests.generator.http_fakes import (
    KEY,
    PNG,
    PUBLIC_IP,
    FakeServer,
    Reply,
    fake,
    fake_dns,
    forbid_network,
    free_port,
    record_connects,
)

__all__ = ["fake"]  # fixtures

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
        fetch.check_mirror_url(url)
    with pytest.raises(PermanentMirrorError):
        fetch.fetch_image(url)

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
    fetch.check_mirror_url(url)
    assert attempts == []


def test_ip_literal_passes_only_when_listed_and_private_addresses_are_allowed(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_network(monkeypatch)
    settings.MIRROR_ALLOWED_HOSTS = ["127.0.0.1", "::1"]
    settings.MIRROR_ALLOW_PRIVATE_ADDRESSES = True
    fetch.check_mirror_url("http://127.0.0.1:8123/a.png")
    fetch.check_mirror_url("https://[::1]:8443/a.png")
    with pytest.raises(PermanentMirrorError):
        fetch.check_mirror_url("http://127.0.0.2:8123/a.png")
    with pytest.raises(PermanentMirrorError):
        fetch.check_mirror_url("http://2130706433:8123/a.png")

    settings.MIRROR_ALLOW_PRIVATE_ADDRESSES = False
    with pytest.raises(PermanentMirrorError):
        fetch.check_mirror_url("https://127.0.0.1/a.png")


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
        fetch.fetch_image("https://cdn.aimlapi.com/a.png")

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
    assert fetch.fetch_image(fake.url("/a.png?sig=1")) == PNG


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

    assert fetch.fetch_image(fake.url("/first", host="cdn.test")) == PNG

    assert lookups == ["cdn.test", "cdn.test"]
    assert connects == [("127.0.0.1", fake.port), ("127.0.0.1", fake.port)]
    assert [seen.headers["host"] for seen in fake.seen] == [f"cdn.test:{fake.port}"] * 2


def test_plain_http_needs_the_private_flag(
    fake: FakeServer, local_mirror: None, settings: Any
) -> None:
    fake.routes["/a.png"] = png_reply()
    settings.MIRROR_ALLOW_PRIVATE_ADDRESSES = False
    with pytest.raises(PermanentMirrorError):
        fetch.fetch_image(fake.url("/a.png"))
    assert fake.seen == []


def test_plain_http_to_a_public_address_is_refused_even_with_the_flag(
    local_mirror: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"cdn.test": [PUBLIC_IP]})
    connects = record_connects(monkeypatch)
    with pytest.raises(PermanentMirrorError, match="Plain http"):
        fetch.fetch_image("http://cdn.test/a.png")
    assert connects == []


def test_redirect_to_a_host_off_the_allowlist_is_refused(
    fake: FakeServer, local_mirror: None, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.MIRROR_ALLOWED_HOSTS = ["cdn.test"]
    fake_dns(monkeypatch, {"cdn.test": ["127.0.0.1"]})
    fake.routes["/a.png"] = Reply(302, {"Location": fake.url("/secret")})
    fake.routes["/secret"] = png_reply()

    with pytest.raises(PermanentMirrorError, match="Redirect refused"):
        fetch.fetch_image(fake.url("/a.png", host="cdn.test"))
    assert fake.paths() == ["/a.png"]


@pytest.mark.parametrize("redirects, succeeds", [(3, True), (4, False)])
def test_redirect_chain_is_capped_at_three(
    fake: FakeServer, local_mirror: None, redirects: int, succeeds: bool
) -> None:
    for hop in range(redirects):
        fake.routes[f"/r{hop}"] = Reply(302, {"Location": f"/r{hop + 1}"})
    fake.routes[f"/r{redirects}"] = png_reply()

    if succeeds:
        assert fetch.fetch_image(fake.url("/r0")) == PNG
    else:
        with pytest.raises(PermanentMirrorError, match="redirected more than 3"):
            fetch.fetch_image(fake.url("/r0"))
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
        fetch.fetch_image(fake.url("/big.png"))
    assert time.monotonic() - started < 4  # not waiting for the announced body


def test_chunked_body_over_the_cap_is_cut_off(
    fake: FakeServer, local_mirror: None, settings: Any
) -> None:
    settings.MIRROR_MAX_BYTES = 64 * 1024
    fake.routes["/big.png"] = Reply(200, {"Content-Type": "image/png"}, PNG * 2000, chunked=True)
    with pytest.raises(PermanentMirrorError, match="MIRROR_MAX_BYTES"):
        fetch.fetch_image(fake.url("/big.png"))


def test_chunked_body_under_the_cap_is_read(fake: FakeServer, local_mirror: None) -> None:
    fake.routes["/a.png"] = Reply(200, {"Content-Type": "image/png"}, PNG * 100, chunked=True)
    assert fetch.fetch_image(fake.url("/a.png")) == PNG * 100


def test_slow_drip_is_cut_at_the_mirror_deadline(
    fake: FakeServer, local_mirror: None, settings: Any
) -> None:
    settings.MIRROR_TIMEOUT = 0.8
    fake.routes["/slow.png"] = Reply(200, {"Content-Type": "image/png"}, PNG, drip=0.05)
    started = time.monotonic()
    with pytest.raises(TransientMirrorError, match="took longer"):
        fetch.fetch_image(fake.url("/slow.png"))
    assert time.monotonic() - started < 4  # well before the server would have finished


def test_silent_host_is_cut_at_the_mirror_deadline(
    fake: FakeServer, local_mirror: None, settings: Any
) -> None:
    settings.MIRROR_TIMEOUT = 0.5
    fake.routes["/silent.png"] = Reply(200, {"Content-Type": "image/png"}, PNG, delay=10)
    started = time.monotonic()
    with pytest.raises(TransientMirrorError):
        fetch.fetch_image(fake.url("/silent.png"))
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
        fetch.fetch_image(fake.url("/a.png"))


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/webp", "IMAGE/PNG; charset=x"])
def test_content_type_parameters_and_case_are_ignored(
    fake: FakeServer, local_mirror: None, content_type: str
) -> None:
    fake.routes["/a"] = Reply(200, {"Content-Type": content_type}, PNG)
    assert fetch.fetch_image(fake.url("/a")) == PNG


def test_compressed_body_is_refused(fake: FakeServer, local_mirror: None) -> None:
    fake.routes["/a.png"] = Reply(
        200, {"Content-Type": "image/png", "Content-Encoding": "gzip"}, gzip.compress(PNG)
    )
    with pytest.raises(PermanentMirrorError, match="compressed"):
        fetch.fetch_image(fake.url("/a.png"))


def test_no_credentials_or_cookies_reach_the_cdn(fake: FakeServer, local_mirror: None) -> None:
    # local_mirror configures the provider key; a redirect on the way sets a cookie.
    fake.routes["/a.png"] = Reply(302, {"Location": "/b.png", "Set-Cookie": "session=abc"})
    fake.routes["/b.png"] = png_reply()

    assert fetch.fetch_image(fake.url("/a.png")) == PNG

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
    with pytest.raises(fetch.MirrorError) as caught:
        fetch.fetch_image(fake.url("/a.png"))
    assert type(caught.value) is error_class
    assert str(status) in str(caught.value)


def test_connection_refused_is_transient_for_the_mirror(local_mirror: None) -> None:
    with pytest.raises(TransientMirrorError):
        fetch.fetch_image(f"http://127.0.0.1:{free_port()}/a.png")


def test_empty_body_is_refused(fake: FakeServer, local_mirror: None) -> None:
    fake.routes["/a.png"] = Reply(200, {"Content-Type": "image/png"}, b"")
    with pytest.raises(PermanentMirrorError, match="empty"):
        fetch.fetch_image(fake.url("/a.png"))


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

    assert fetch.fetch_image(tls_fake.url("/a.png", host="cdn.test")) == PNG

    assert connects == [("127.0.0.1", tls_fake.port)]
    assert tls_fake.sni == ["cdn.test"]
    assert tls_fake.seen[0].headers["host"] == f"cdn.test:{tls_fake.port}"


def test_https_certificate_must_match_the_url_host(
    tls_fake: FakeServer, local_mirror: None, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.MIRROR_ALLOWED_HOSTS = ["other.test"]
    fake_dns(monkeypatch, {"other.test": ["127.0.0.1"]})
    tls_fake.routes["/a.png"] = png_reply()

    with pytest.raises(fetch.MirrorError, match="TLS handshake"):
        fetch.fetch_image(tls_fake.url("/a.png", host="other.test"))
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
        fetch.fetch_image("https://cdn.aimlapi.com/a.png")

    assert tls_fake.sni == ["cdn.aimlapi.com"]
    assert connects == [(PUBLIC_IP, 443)]
    assert fake.seen == []
    assert lookups[0] == "cdn.aimlapi.com"


# --- decode_b64_image ------------------------------------------------------------------------


def test_b64_decodes_plain_and_data_uri(settings: Any) -> None:
    settings.MIRROR_MAX_BYTES = 1024
    encoded = base64.b64encode(PNG).decode()
    assert fetch.decode_b64_image(encoded) == PNG
    assert fetch.decode_b64_image(f"data:image/png;base64,{encoded}") == PNG
    assert fetch.decode_b64_image(f"DATA:image/webp;base64,{encoded}\n") == PNG


def test_b64_over_the_cap_is_refused_before_decoding(settings: Any) -> None:
    settings.MIRROR_MAX_BYTES = 1024
    assert fetch.decode_b64_image(base64.b64encode(b"x" * 1024).decode()) == b"x" * 1024
    with pytest.raises(PermanentMirrorError, match="MIRROR_MAX_BYTES"):
        fetch.decode_b64_image(base64.b64encode(b"x" * 1025).decode())
    # Not valid base64 at all: only the length check can have refused it.
    with pytest.raises(PermanentMirrorError, match="MIRROR_MAX_BYTES"):
        fetch.decode_b64_image("!" * 10_000_000)


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
        fetch.decode_b64_image(data)
