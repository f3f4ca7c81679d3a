"""The only module that speaks HTTP: to the AI/ML API, and to the CDNs its answers name.

Two clients live here and share nothing, so the provider key can never reach a CDN:

- `generate_images` POSTs to the provider with `requests` and parses whatever answer
  shape comes back (../docs/aimlapi.md §5) into a `ProviderResult`.
- `fetch_image` downloads one image with raw urllib3 connections to an address it has
  resolved and checked itself (reliability.md §6, F-1..F-5), because a URL in a
  provider answer is hostile input.

Every failure is either Transient (worth retrying later) or Permanent, which is all the
tasks need to pick a retry policy. Configuration is read from settings at call time.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import math
import os
import re
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests
import urllib3
from django.conf import settings
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError

logger = logging.getLogger(__name__)

USER_AGENT = "team-image-studio/0.1"

# More images than any model's num_images allows (4, or 10 for dall-e-2): a longer list
# is a broken or hostile answer, and each entry would cost a download.
MAX_IMAGES_PER_ANSWER = 16
# Reliability F-3: Mastodon follows 2 hops and Camo 4.
MAX_REDIRECTS = 3
# Reliability F-1: no URL a CDN hands out is longer; longer ones are probing something.
MAX_URL_LENGTH = 2048
# Upper bound on any single socket wait while mirroring; the deadline caps the sum.
MIRROR_SOCKET_TIMEOUT = 10.0
# An error answer is a few hundred bytes; anything past this is not worth reading.
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_ERROR_MESSAGE_CHARS = 500
CHUNK_BYTES = 64 * 1024

ALLOWED_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


# --- Errors -----------------------------------------------------------------------------


class ProviderError(Exception):
    """A failed provider call. `status` is the HTTP status when the provider answered."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class TransientProviderError(ProviderError):
    """Worth retrying: timeouts, connection failures, 408, 429 and 5xx."""


class PermanentProviderError(ProviderError):
    """Retrying cannot help: bad request, bad key, no credits, or an answer we cannot use."""


class MirrorError(Exception):
    """A provider image that could not be downloaded."""


class TransientMirrorError(MirrorError):
    """Worth retrying: the CDN is down, slow or rate limiting."""


class PermanentMirrorError(MirrorError):
    """Retrying cannot help: a blocked URL, an expired URL, or content that is not an image."""


# --- Provider answers ---------------------------------------------------------------------


@dataclass
class ProviderImage:
    url: str | None
    b64_json: str | None
    width: int | None
    height: int | None
    content_type: str | None
    # Per-image fields kept as sent: file_name, file_size, mime_type, revised_prompt, prompt.
    extra: dict = field(default_factory=dict)


@dataclass
class ProviderResult:
    images: list[ProviderImage]
    seed: int | None
    has_nsfw_concepts: list[bool]
    timings: dict
    prompt: str | None
    revised_prompt: str | None
    usage: dict | None
    raw: dict


def generate_images(body: dict) -> ProviderResult:
    """POST `body` to {AIMLAPI_BASE_URL}/images/generations and parse the answer.

    Raises TransientProviderError or PermanentProviderError; neither ever carries the key.
    A 3xx is not followed but refused: the API documents none, and following one would
    replay the prompt (and, on the same host, the key) to an address nobody configured.
    """
    key = settings.AIMLAPI_KEY or ""
    if not key:
        raise PermanentProviderError("AIMLAPI_KEY is not set, so the provider cannot be called")
    # requests echoes a rejected header value in its exception text: refuse it first.
    if not re.fullmatch(r"[\x21-\x7e]+", key):
        raise PermanentProviderError("AIMLAPI_KEY contains characters a header cannot carry")

    url = f"{settings.AIMLAPI_BASE_URL.rstrip('/')}/images/generations"
    connect_timeout = float(settings.AIMLAPI_CONNECT_TIMEOUT)
    read_timeout = float(settings.AIMLAPI_READ_TIMEOUT)
    total_timeout = float(settings.AIMLAPI_TOTAL_TIMEOUT)
    max_bytes = int(settings.AIMLAPI_MAX_RESPONSE_BYTES)
    started = time.monotonic()
    deadline = started + total_timeout
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json",
        # A compressed answer could inflate past the byte cap inside urllib3; plain bytes
        # are counted exactly as they arrive.
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
    }

    with requests.Session() as session:
        try:
            response = session.post(
                url,
                json=body,
                headers=headers,
                timeout=(connect_timeout, min(read_timeout, total_timeout)),
                stream=True,
                allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout as exc:
            raise TransientProviderError("Timed out connecting to the provider") from exc
        except requests.exceptions.ReadTimeout as exc:
            raise TransientProviderError(
                f"The provider did not answer within {min(read_timeout, total_timeout):g} s"
            ) from exc
        except requests.exceptions.SSLError as exc:
            raise TransientProviderError("TLS handshake with the provider failed") from exc
        except requests.exceptions.ConnectionError as exc:
            raise TransientProviderError("Could not connect to the provider") from exc
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            requests.exceptions.InvalidHeader,
            requests.exceptions.InvalidJSONError,
        ) as exc:
            # A configuration or programming error; the text may quote a header, so it
            # is not chained.
            raise PermanentProviderError(
                f"The provider request could not be built ({type(exc).__name__})"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TransientProviderError(
                f"The provider request failed ({type(exc).__name__})"
            ) from exc

        with response:
            status = response.status_code
            if 200 <= status < 300:
                raw = _read_provider_body(response, deadline, read_timeout, max_bytes)
                result = parse_generation_response(_load_json(raw))
                logger.info(
                    "Provider answered HTTP %s with %d image(s) in %.1f s",
                    status,
                    len(result.images),
                    time.monotonic() - started,
                )
                return result
            raise _provider_error(response, key, deadline, read_timeout, max_bytes)


def _provider_error(
    response: requests.Response, key: str, deadline: float, read_timeout: float, max_bytes: int
) -> ProviderError:
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    try:
        raw = _read_provider_body(
            response, deadline, read_timeout, min(max_bytes, MAX_ERROR_BODY_BYTES), truncate=True
        )
    except ProviderError:
        # The status alone classifies the failure; a body we could not read adds nothing.
        raw = b""
    payload = _error_payload(raw)
    message = _error_message(payload, key) or f"Provider answered HTTP {status}"
    if 300 <= status < 400:
        message = f"Provider answered HTTP {status}, a redirect, which is not followed"
    if status in (408, 429) or 500 <= status < 600:
        error_class: type[ProviderError] = TransientProviderError
    else:
        error_class = PermanentProviderError
    request_id = payload.get("requestId") if payload else None
    logger.warning(
        "Provider answered HTTP %s (request id %s, retry after %s): %s",
        status,
        _clean_text(request_id, key, 80) if isinstance(request_id, str) else "-",
        retry_after,
        message,
    )
    return error_class(message, status=status, retry_after=retry_after)


def _read_provider_body(
    response: requests.Response,
    deadline: float,
    read_timeout: float,
    max_bytes: int,
    *,
    truncate: bool = False,
) -> bytes:
    """The body, read within `deadline` and `max_bytes` (or cut at it when `truncate`)."""
    announced = _content_length(response.headers.get("Content-Length"))
    if announced is not None and announced > max_bytes and not truncate:
        raise PermanentProviderError(
            "The provider's answer is larger than AIMLAPI_MAX_RESPONSE_BYTES"
        )
    raw = response.raw
    sock = _response_socket(raw)
    chunks: list[bytes] = []
    received = 0
    with _Watchdog(deadline, sock) as watchdog:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _provider_deadline_error()
            _set_timeout(sock, min(read_timeout, remaining))
            try:
                # read1 returns whatever one socket read brings, so a dripping body
                # comes back here between bytes and meets the deadline check above.
                chunk = raw.read1(CHUNK_BYTES, decode_content=False)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if watchdog.fired or time.monotonic() >= deadline:
                    raise _provider_deadline_error() from None
                if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
                    raise TransientProviderError("The provider stopped sending its answer") from exc
                raise TransientProviderError("The connection to the provider broke") from exc
            if not chunk:
                break
            received += len(chunk)
            chunks.append(chunk)
            if received > max_bytes:
                if truncate:
                    break
                raise PermanentProviderError(
                    "The provider's answer is larger than AIMLAPI_MAX_RESPONSE_BYTES"
                )
        if watchdog.fired:
            raise _provider_deadline_error()
    body = b"".join(chunks)[:max_bytes] if truncate else b"".join(chunks)
    return _decode_provider_encoding(response.headers.get("Content-Encoding"), body, max_bytes)


def _provider_deadline_error() -> TransientProviderError:
    return TransientProviderError(
        f"The provider's answer took longer than {float(settings.AIMLAPI_TOTAL_TIMEOUT):g} s"
    )


def _decode_provider_encoding(encoding: str | None, body: bytes, max_bytes: int) -> bytes:
    # Only a proxy that ignores "Accept-Encoding: identity" gets here.
    name = (encoding or "").strip().lower()
    if name in ("", "identity"):
        return body
    if name not in ("gzip", "x-gzip", "deflate"):
        raise PermanentProviderError("The provider's answer used an unsupported encoding")
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib framing
    try:
        decoded = decoder.decompress(body, max_bytes + 1)
    except zlib.error:
        raise PermanentProviderError("The provider's answer was not understood") from None
    if len(decoded) > max_bytes or decoder.unconsumed_tail:
        raise PermanentProviderError(
            "The provider's answer is larger than AIMLAPI_MAX_RESPONSE_BYTES"
        )
    return decoded


def _response_socket(raw: Any) -> socket.socket | None:
    """The socket under a streamed urllib3 response, or None when it cannot be found.

    urllib3 keeps the connection on the response; http.client drops it from the
    connection on a "Connection: close" answer but its file still reads the socket.
    Without a socket the deadline is still checked between reads.
    """
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is None:
        reader = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(reader, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _set_timeout(sock: socket.socket | None, seconds: float) -> None:
    if sock is None:
        return
    try:
        sock.settimeout(seconds)
    except OSError:
        pass  # http.client closes the socket as soon as the body is complete


def _load_json(raw: bytes) -> object:
    def reject_constant(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(raw, parse_constant=reject_constant)
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8 and numbers longer than int's digit limit too.
        raise PermanentProviderError("The provider's answer was not understood") from None


def _error_payload(raw: bytes) -> dict | None:
    try:
        payload = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def _error_message(payload: dict | None, key: str) -> str | None:
    # The documented body is flat: {message, path, requestId, statusCode, timestamp}.
    # NestJS-style validation errors send `message` as a list of strings.
    if not payload:
        return None
    message = payload.get("message")
    if isinstance(message, list):
        message = "; ".join(item for item in message if isinstance(item, str))
    if not isinstance(message, str):
        return None
    return _clean_text(message, key, MAX_ERROR_MESSAGE_CHARS) or None


def _clean_text(text: str, key: str, limit: int) -> str:
    """Provider text made safe to store and show: one line, bounded, and never the key."""
    if key:
        text = text.replace(key, "[redacted]")
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), else None.

    Not clamped: the task that schedules the retry owns the upper bound.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if re.fullmatch(r"[0-9]+", text):
        try:
            seconds = float(int(text))
        except (ValueError, OverflowError):
            return None
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - datetime.now(UTC)).total_seconds())
    return seconds if math.isfinite(seconds) else None


def parse_generation_response(data: object) -> ProviderResult:
    """Turn any documented answer shape into a ProviderResult (aimlapi.md §5).

    Shape A/A' (fal) list `images`; B, C and D (OpenAI-like) list `data`; the legacy
    shape lists `output.choices`. Raises PermanentProviderError for an answer with no
    images, one not understood, or one with more than MAX_IMAGES_PER_ANSWER images.
    """
    if not isinstance(data, dict):
        raise PermanentProviderError("The provider's answer was not understood")

    entries: object
    if "images" in data:
        entries = data["images"]
    elif "data" in data:
        entries = data["data"]
    elif isinstance(data.get("output"), dict) and "choices" in data["output"]:
        entries = [
            {"b64_json": choice.get("image_base64")} if isinstance(choice, dict) else choice
            for choice in _as_list(data["output"]["choices"])
        ]
    else:
        raise PermanentProviderError("The provider's answer had no images")
    if entries is None:
        raise PermanentProviderError("The provider's answer had no images")
    if not isinstance(entries, list):
        raise PermanentProviderError("The provider's answer was not understood")
    if len(entries) > MAX_IMAGES_PER_ANSWER:
        raise PermanentProviderError(
            f"The provider's answer listed {len(entries)} images, more than {MAX_IMAGES_PER_ANSWER}"
        )

    images: list[ProviderImage] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise PermanentProviderError("The provider's answer was not understood")
        image = _parse_image(entry)
        if image is None:
            logger.warning("Provider answer had an image entry with neither url nor b64_json")
            continue
        images.append(image)
    if not images:
        raise PermanentProviderError("The provider's answer had no images")

    nsfw = data.get("has_nsfw_concepts")
    meta = data.get("meta")
    usage = meta.get("usage") if isinstance(meta, dict) else None
    if not isinstance(usage, dict):
        # OpenAI's gpt-image models put token usage at the top level.
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    timings = data.get("timings")
    return ProviderResult(
        images=images,
        seed=_as_int(data.get("seed"), allow_negative=False),
        has_nsfw_concepts=[bool(x) for x in nsfw if isinstance(x, bool)]
        if isinstance(nsfw, list)
        else [],
        timings=timings if isinstance(timings, dict) else {},
        prompt=_first_str(data.get("prompt")),
        revised_prompt=_revised_prompt(data, images),
        usage=usage,
        raw=data,
    )


def _parse_image(entry: dict) -> ProviderImage | None:
    url = entry.get("url") if isinstance(entry.get("url"), str) else None
    b64 = entry.get("b64_json") if isinstance(entry.get("b64_json"), str) else None
    if url is not None and url.startswith("data:") and b64 is None:
        # fal's sync_mode returns the image as a data: URI in `url`.
        url, b64 = None, url
    if not url and not b64:
        return None
    content_type = entry.get("content_type")
    if not isinstance(content_type, str):
        content_type = entry.get("mime_type") if isinstance(entry.get("mime_type"), str) else None
    consumed = {"url", "b64_json", "width", "height", "content_type"}
    return ProviderImage(
        url=url or None,
        b64_json=b64 or None,
        width=_as_dimension(entry.get("width")),
        height=_as_dimension(entry.get("height")),
        content_type=content_type,
        extra={name: value for name, value in entry.items() if name not in consumed},
    )


def _revised_prompt(data: dict, images: list[ProviderImage]) -> str | None:
    # DALL-E 3 sends `revised_prompt` per image; Imagen 3 sends its enhanced prompt as a
    # per-image `prompt`. Both are what the model actually drew.
    if isinstance(data.get("revised_prompt"), str):
        return data["revised_prompt"]
    for name in ("revised_prompt", "prompt"):
        for image in images:
            if isinstance(image.extra.get(name), str):
                return image.extra[name]
    return None


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else []


def _first_str(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # the legacy shape sends prompt[]
        return next((item for item in value if isinstance(item, str)), None)
    return None


def _as_int(value: object, *, allow_negative: bool) -> int | None:
    """An int from an int, an integral float or a numeric string; seeds exceed 2**53."""
    if isinstance(value, bool):
        return None
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,40}", value.strip()):
        number = int(value.strip())
    if number is None or (number < 0 and not allow_negative):
        return None
    return number


def _as_dimension(value: object) -> int | None:
    number = _as_int(value, allow_negative=False)
    return number if number else None


def _content_length(value: str | None) -> int | None:
    if value is None or not re.fullmatch(r"[0-9]{1,20}", value.strip()):
        return None
    return int(value.strip())


# --- Mirroring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # lower-case, no trailing dot, IPv6 without brackets
    port: int
    explicit_port: bool
    request_target: str  # path and query, percent-encoded
    trusted: bool = False  # on the configured provider's own origin

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.explicit_port else host


_HOSTNAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))*")
# WHATWG URL: a host whose last label is a number is parsed as IPv4, in every base
# browsers and inet_aton accept (2130706433, 0x7f.1, 0177.0.0.1, 0).
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
# Ranges `is_global` lets through or that tunnel to IPv4 space (requests-hardened's list).
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2001::/32",
        "2002::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
    )
)


def check_mirror_url(url: str) -> None:
    """Raise PermanentMirrorError unless `url` may be fetched; no DNS lookup, no socket.

    The rules are reliability.md F-1. IP-literal hosts pass only when the literal itself
    is in MIRROR_ALLOWED_HOSTS and MIRROR_ALLOW_PRIVATE_ADDRESSES is on (local tests).
    Messages name the reason and the host, never the rest of the URL, whose query may
    hold a signature.
    """
    _parse_mirror_url(url)


def _provider_origin() -> tuple[str, str, int] | None:
    parts = urlsplit(settings.AIMLAPI_BASE_URL)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port


def _is_provider_origin(url: str) -> bool:
    """Whether `url` is on the exact origin (scheme, host, port) of AIMLAPI_BASE_URL.

    The studio already sends its key there, so images served by the configured provider
    itself are trusted like it, even on a private address: that is what makes a local
    AI/ML-API-compatible server work by setting only AIMLAPI_BASE_URL and AIMLAPI_KEY.
    Every other host still goes through the allowlist and the address checks.
    """
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return False
    if "@" in parts.netloc or not parts.hostname:
        return False
    return (scheme, parts.hostname.lower().rstrip("."), port) == _provider_origin()


def _parse_mirror_url(url: str) -> _Target:
    trusted = isinstance(url, str) and _is_provider_origin(url)
    allow_private = trusted or bool(settings.MIRROR_ALLOW_PRIVATE_ADDRESSES)
    if not isinstance(url, str) or not url:
        raise PermanentMirrorError("The image URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise PermanentMirrorError(f"The image URL is longer than {MAX_URL_LENGTH} characters")
    # urlsplit silently drops tabs and newlines, and a backslash is a path separator
    # to browsers but not to Python: parsers disagree on such URLs, so none pass.
    if any(_forbidden_url_char(ch) for ch in url):
        raise PermanentMirrorError(
            "The image URL contains whitespace, control characters or backslashes"
        )
    try:
        parts = urlsplit(url)
    except ValueError:  # bad brackets, or a netloc that NFKC turns into another one
        raise PermanentMirrorError("The image URL is malformed") from None
    scheme = parts.scheme.lower()
    allowed_schemes = ("https", "http") if allow_private else ("https",)
    if scheme not in allowed_schemes:
        shown = re.sub(r"[^a-z0-9+.-]", "", scheme)[:20]
        raise PermanentMirrorError(f"The image URL scheme {shown!r} is not allowed (https only)")
    if not url[len(parts.scheme) :].startswith("://"):
        raise PermanentMirrorError("The image URL is not an absolute URL")
    netloc = parts.netloc
    if "@" in netloc:
        raise PermanentMirrorError("The image URL carries credentials (user info)")
    host, port_text, bracketed = _split_host_port(netloc)

    default_port = 443 if scheme == "https" else 80
    port = default_port
    if port_text is not None:
        if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 0 < int(port_text) < 65536:
            raise PermanentMirrorError("The image URL has a malformed port")
        port = int(port_text)
        if port != default_port and not allow_private:
            raise PermanentMirrorError(f"The image URL port {port} is not allowed")

    allowed = [entry.strip().lower().rstrip(".") for entry in settings.MIRROR_ALLOWED_HOSTS]
    if trusted:
        allowed.append(_provider_origin()[1])
    literal = _ip_literal(host, bracketed)
    if literal is not None:
        allowed_literals = {_normalize_literal(entry) for entry in allowed}
        if not allow_private or str(literal) not in allowed_literals:
            raise PermanentMirrorError(
                f"The image URL names an IP address ({host}) instead of an allowed host"
            )
        host = str(literal)
    elif not _host_allowed(host, allowed):
        raise PermanentMirrorError(f"The image host {host} is not in MIRROR_ALLOWED_HOSTS")

    request_target = parts.path or "/"
    if parts.query:
        request_target += f"?{parts.query}"
    # Keep existing escapes and reserved characters; encode the rest (non-ASCII paths).
    request_target = quote(request_target, safe="/:@!$&'()*+,;=?%~-._")
    return _Target(scheme, host, port, port != default_port, request_target, trusted)


def _forbidden_url_char(ch: str) -> bool:
    code = ord(ch)
    if code <= 0x20 or code == 0x7F or ch == "\\":
        return True
    return code >= 0x80 and (ch.isspace() or not ch.isprintable())


def _split_host_port(netloc: str) -> tuple[str, str | None, bool]:
    """(host, port text or None, host was in brackets); raises on a malformed authority."""
    if netloc.startswith("["):
        end = netloc.find("]")
        rest = netloc[end + 1 :] if end > 0 else ""
        if end < 0 or (rest and not rest.startswith(":")):
            raise PermanentMirrorError("The image URL has a malformed host")
        return netloc[1:end].lower(), (rest[1:] if rest else None), True
    host, colon, port_text = netloc.rpartition(":")
    if not colon:
        host, port_text = netloc, ""
    host = host.lower()
    if host.endswith("."):  # the root label: "cdn.aimlapi.com." is the same host
        host = host[:-1]
    if not host:
        raise PermanentMirrorError("The image URL has no host")
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise PermanentMirrorError("The image URL has a malformed host")
    return host, (port_text if colon else None), False


def _ip_literal(host: str, bracketed: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if bracketed:
        if "%" in host:  # a zone id names an interface, never a CDN
            raise PermanentMirrorError("The image URL has a malformed host")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise PermanentMirrorError("The image URL has a malformed host") from None
    if not _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        return None
    try:
        # Only the canonical dotted quad; "0x7f.1" and "2130706433" reach the same
        # address through inet_aton but can never match an allowlist entry.
        return ipaddress.IPv4Address(host)
    except ValueError:
        raise PermanentMirrorError(
            f"The image URL names an IP address ({host}) instead of an allowed host"
        ) from None


def _normalize_literal(entry: str) -> str | None:
    try:
        return str(ipaddress.ip_address(entry.strip("[]")))
    except ValueError:
        return None


def _host_allowed(host: str, allowed: list[str]) -> bool:
    # Django's ALLOWED_HOSTS convention: ".fal.media" admits fal.media and its
    # subdomains, always on a label boundary (the dot is part of the suffix).
    for entry in allowed:
        if not entry:
            continue
        if entry.startswith("."):
            if host == entry[1:] or host.endswith(entry):
                return True
        elif host == entry:
            return True
    return False


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(
        address in network for network in _BLOCKED_NETWORKS if network.version == address.version
    ):
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
    )


def _is_private_or_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_private or address.is_loopback


def _resolve(target: _Target, allow_private: bool) -> list[str]:
    """The host's addresses, each checked; the caller connects only to these (F-2)."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise TransientMirrorError(f"Could not resolve the image host {target.host}") from None
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TransientMirrorError(f"The image host {target.host} has no addresses")
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            raise PermanentMirrorError(
                f"The image host {target.host} resolves to an unusable address"
            ) from None
        # Any bad address rejects the host, stricter than dropping it (Discourse does):
        # a CDN name never legitimately points inside our network.
        if not allow_private and not _is_public(ip):
            raise PermanentMirrorError(
                f"The image host {target.host} resolves to a non-public address ({ip})"
            )
        if target.scheme == "http" and not _is_private_or_loopback(ip):
            raise PermanentMirrorError("Plain http is allowed only to private addresses")
    return addresses


class _Watchdog:
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

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()


def _ca_bundle() -> tuple[str | None, str | None]:
    # The same trust store requests uses for the provider call, env overrides included.
    path = (
        os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("CURL_CA_BUNDLE")
        or DEFAULT_CA_BUNDLE_PATH
    )
    return (None, path) if os.path.isdir(path) else (path, None)


def _connect(target: _Target, addresses: list[str], deadline: float) -> HTTPConnection:
    """A connection to the first reachable checked address, with TLS for the real name."""
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _mirror_deadline_error()
        timeout = min(remaining, MIRROR_SOCKET_TIMEOUT)
        conn: HTTPConnection
        if target.scheme == "https":
            ca_certs, ca_cert_dir = _ca_bundle()
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
            target = _parse_mirror_url(current)
            addresses = _resolve(target, allow_private or target.trusted)
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
    target: _Target, addresses: list[str], deadline: float, max_bytes: int
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
        with _Watchdog(deadline, conn.sock) as watchdog:
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


def _read_image_response(
    target: _Target,
    response: urllib3.HTTPResponse,
    sock: socket.socket | None,
    watchdog: _Watchdog,
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
    announced = _content_length(response.headers.get("Content-Length"))
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
        _set_timeout(sock, min(remaining, MIRROR_SOCKET_TIMEOUT))
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
