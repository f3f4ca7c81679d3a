"""One provider image downloaded, or decoded from base64 (reliability.md F-3..F-6).

A URL in a provider answer is hostile input, so `fetch_image` uses raw urllib3
connections to an address generator.fetch.checks resolved and checked, never a pool or
session that would look the name up again, and sends no credentials or cookies.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import socket
import time
from dataclasses import dataclass
from typing import IO, Protocol
from urllib.parse import urljoin

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError

from generator.fetch.checks import Target, parse_mirror_url, resolve
from generator.fetch.errors import MirrorError, PermanentMirrorError, TransientMirrorError
from generator.http_common import (
    CHUNK_BYTES,
    USER_AGENT,
    Watchdog,
    ca_bundle,
    content_length,
    set_timeout,
)

logger = logging.getLogger(__name__)

# Reliability F-3: Mastodon follows 2 hops and Camo 4.
MAX_REDIRECTS = 3
# Upper bound on any single socket wait while mirroring; the deadline caps the sum.
MIRROR_SOCKET_TIMEOUT = 10.0

ALLOWED_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def _connect(target: Target, addresses: list[str], deadline: float) -> HTTPConnection:
    """A connection to the first reachable checked address, with TLS for the real name."""
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _mirror_deadline_error()
        timeout = min(remaining, MIRROR_SOCKET_TIMEOUT)
        conn: HTTPConnection
        if target.scheme == "https":
            ca_certs, ca_cert_dir = ca_bundle()
            # Connect to the pinned IP, but send SNI and verify the certificate for the
            # name in the URL, so a DNS rebind between check and connect cannot happen.
            conn = HTTPSConnection(
                address,
                target.port,
                timeout=timeout,
                server_hostname=target.host,
                assert_hostname=target.host,
                cert_reqs="CERT_REQUIRED",
                ca_certs=ca_certs,
                ca_cert_dir=ca_cert_dir,
            )
        else:
            conn = HTTPConnection(address, target.port, timeout=timeout)
        try:
            conn.connect()
        except ConnectTimeoutError:  # also NewConnectionError: try the next address
            conn.close()
            continue
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            # After TCP connected: a failed TLS handshake or certificate check.
            conn.close()
            raise TransientMirrorError(
                f"The TLS handshake with {target.host} failed ({type(exc).__name__})"
            ) from exc
        return conn
    raise TransientMirrorError(f"Could not connect to the image host {target.host}")


def _mirror_deadline_error() -> TransientMirrorError:
    return TransientMirrorError(
        f"The image download took longer than {float(settings.MIRROR_TIMEOUT):g} s"
    )


@dataclass
class _Redirect:
    location: str


def fetch_image(url: str) -> bytes:
    """Download one provider image and return its bytes, undecoded.

    Checks the URL (F-1), resolves the host once and refuses non-public addresses (F-2),
    connects to the checked address only, follows at most MAX_REDIRECTS redirects with
    every check repeated (F-3), caps the size (F-4) and the total time (F-5), and
    accepts only PNG, JPEG and WebP content types (F-6). No credentials or cookies are
    ever sent. Pillow verification is the caller's job.
    """
    deadline = time.monotonic() + float(settings.MIRROR_TIMEOUT)
    max_bytes = int(settings.MIRROR_MAX_BYTES)
    allow_private = bool(settings.MIRROR_ALLOW_PRIVATE_ADDRESSES)
    current = url
    for hop in range(MAX_REDIRECTS + 1):
        try:
            target = parse_mirror_url(current)
            addresses = resolve(target, allow_private or target.trusted)
        except MirrorError as exc:
            logger.warning("Image URL refused%s: %s", " after a redirect" if hop else "", exc)
            if hop:
                raise type(exc)(f"Redirect refused: {exc}") from None
            raise
        outcome = _fetch_once(target, addresses, deadline, max_bytes)
        if isinstance(outcome, _Redirect):
            current = urljoin(current, outcome.location)
            continue
        logger.info("Mirrored %d bytes from %s", len(outcome), target.host)
        return outcome
    raise PermanentMirrorError(f"The image URL redirected more than {MAX_REDIRECTS} times")


def _fetch_once(
    target: Target, addresses: list[str], deadline: float, max_bytes: int
) -> bytes | _Redirect:
    conn = _connect(target, addresses, deadline)
    headers = {
        "Host": target.host_header,
        "User-Agent": USER_AGENT,
        "Accept": "image/png, image/jpeg, image/webp",
        # A compressed body would inflate past the byte cap after it was counted.
        "Accept-Encoding": "identity",
    }
    try:
        with Watchdog(deadline, conn.sock) as watchdog:
            try:
                conn.request(
                    "GET",
                    target.request_target,
                    headers=headers,
                    preload_content=False,
                    decode_content=False,
                )
                # http.client drops the socket from the connection on "Connection:
                # close", but the response still reads from it: keep our own reference.
                sock = conn.sock
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _mirror_deadline_error()
                conn.timeout = min(remaining, MIRROR_SOCKET_TIMEOUT)
                response = conn.getresponse()
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                if watchdog.fired:
                    raise _mirror_deadline_error() from None
                raise TransientMirrorError(
                    f"The image host {target.host} did not answer ({type(exc).__name__})"
                ) from exc
            try:
                return _read_image_response(target, response, sock, watchdog, deadline, max_bytes)
            finally:
                response.close()
    finally:
        conn.close()


# Long on purpose: status, header and body checks in the order they must run (F-4..F-6).
def _read_image_response(
    target: Target,
    response: urllib3.HTTPResponse,
    sock: socket.socket | None,
    watchdog: Watchdog,
    deadline: float,
    max_bytes: int,
) -> bytes | _Redirect:
    status = response.status
    if status in REDIRECT_STATUSES:
        location = response.headers.get("Location")
        if not location:
            raise PermanentMirrorError(f"The image host answered HTTP {status} with no Location")
        return _Redirect(location.strip())
    if status in (408, 429) or 500 <= status < 600:
        raise TransientMirrorError(f"The image host answered HTTP {status}")
    if status in (403, 404, 410):
        raise PermanentMirrorError(
            f"The image host answered HTTP {status}; the image URL has probably expired"
        )
    if not 200 <= status < 300:
        raise PermanentMirrorError(f"The image host answered HTTP {status}")

    encoding = (response.headers.get("Content-Encoding") or "").strip().lower()
    if encoding not in ("", "identity"):
        raise PermanentMirrorError("The image host sent a compressed body")
    content_type = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if content_type not in ALLOWED_IMAGE_TYPES:
        shown = re.sub(r"[^a-z0-9/+.-]", "", content_type)[:60] or "none"
        raise PermanentMirrorError(f"The image host sent content type {shown}, not an image")
    announced = content_length(response.headers.get("Content-Length"))
    if announced is not None and announced > max_bytes:
        raise PermanentMirrorError(
            f"The image is {announced} bytes, more than MIRROR_MAX_BYTES ({max_bytes})"
        )

    chunks: list[bytes] = []
    received = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _mirror_deadline_error()
        set_timeout(sock, min(remaining, MIRROR_SOCKET_TIMEOUT))
        try:
            chunk = response.read1(CHUNK_BYTES, decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if watchdog.fired or time.monotonic() >= deadline:
                raise _mirror_deadline_error() from None
            raise TransientMirrorError(
                f"The download from {target.host} broke off ({type(exc).__name__})"
            ) from exc
        if not chunk:
            break
        received += len(chunk)
        if received > max_bytes:
            raise PermanentMirrorError(f"The image is more than MIRROR_MAX_BYTES ({max_bytes})")
        chunks.append(chunk)
    if watchdog.fired:
        # A body with no length ends at connection close, which the watchdog causes.
        raise _mirror_deadline_error()
    if not received:
        raise PermanentMirrorError("The image host sent an empty body")
    return b"".join(chunks)


_DATA_URI = re.compile(r"data:image/(?:png|jpeg|jpg|webp);base64,", re.IGNORECASE)


# Decoded this many base64 characters at a time (a multiple of 4): 256 KiB in, 192 out.
B64_PIECE_CHARS = 256 * 1024


class B64Text(Protocol):
    """Base64 text kept in a file (generator.provider's InlineData): plain ASCII."""

    def __len__(self) -> int: ...

    def open(self) -> IO[bytes]: ...


def decode_b64_image_to(data: str | B64Text, target: IO[bytes]) -> int:
    """decode_b64_image, written to `target`; text kept in a file is decoded from it in
    pieces, so no more than B64_PIECE_CHARS of it is ever in memory. The checks and
    their messages are decode_b64_image's. Returns the number of bytes written."""
    if isinstance(data, str):
        return target.write(decode_b64_image(data))
    source, length = data.open(), len(data)
    # text = data.strip(): the characters are printable ASCII, so only spaces are cut.
    start, end = 0, length
    while start < end:
        source.seek(start)
        piece = source.read(min(B64_PIECE_CHARS, end - start))
        start += len(piece) - len(piece.lstrip(b" "))
        if piece.lstrip(b" "):
            break
    while end > start:
        size = min(B64_PIECE_CHARS, end - start)
        source.seek(end - size)
        piece = source.read(size)
        end -= len(piece) - len(piece.rstrip(b" "))
        if piece.rstrip(b" "):
            break
    source.seek(start)
    head = source.read(min(end - start, 64))
    if head[:5].lower() == b"data:":
        prefix = _DATA_URI.match(head.decode("ascii"))
        if prefix is None:
            raise PermanentMirrorError("The data: URI is not a base64 PNG, JPEG or WebP image")
        start += prefix.end()
    if start >= end:
        raise PermanentMirrorError("The base64 image is empty")
    max_bytes = int(settings.MIRROR_MAX_BYTES)
    source.seek(max(start, end - 2))
    tail = source.read(end - max(start, end - 2))
    decoded_size = (end - start) // 4 * 3 - tail.count(b"=")
    if decoded_size > max_bytes:
        raise PermanentMirrorError(
            f"The base64 image is about {decoded_size} bytes, more than MIRROR_MAX_BYTES "
            f"({max_bytes})"
        )
    written = 0
    source.seek(start)
    position = start
    try:
        while position < end:
            piece = source.read(min(B64_PIECE_CHARS, end - position))
            if not piece:
                raise PermanentMirrorError("The base64 image is not valid base64")
            position += len(piece)
            # Padding before the last piece is data after padding, which strict decoding
            # refuses in the whole text too.
            if position < end and b"=" in piece:
                raise binascii.Error("padding inside the text")
            written += target.write(binascii.a2b_base64(piece, strict_mode=True))
    except (binascii.Error, ValueError):
        raise PermanentMirrorError("The base64 image is not valid base64") from None
    return written


def decode_b64_image(data: str) -> bytes:
    """Decode a provider's base64 image (optionally a data: URI) under MIRROR_MAX_BYTES.

    The size is judged from the encoded length before anything is decoded (F-4).
    """
    if not isinstance(data, str):
        raise PermanentMirrorError("The base64 image is not text")
    text = data.strip()
    if text[:5].lower() == "data:":
        prefix = _DATA_URI.match(text)
        if prefix is None:
            raise PermanentMirrorError("The data: URI is not a base64 PNG, JPEG or WebP image")
        text = text[prefix.end() :]
    if not text:
        raise PermanentMirrorError("The base64 image is empty")
    max_bytes = int(settings.MIRROR_MAX_BYTES)
    decoded_size = len(text) // 4 * 3 - text[-2:].count("=")
    if decoded_size > max_bytes:
        raise PermanentMirrorError(
            f"The base64 image is about {decoded_size} bytes, more than MIRROR_MAX_BYTES "
            f"({max_bytes})"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PermanentMirrorError("The base64 image is not valid base64") from None
