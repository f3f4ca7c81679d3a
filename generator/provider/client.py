"""The only code that speaks to the provider (the AI/ML API), with `requests`.

`generate_images` POSTs to the provider and parses whatever answer shape comes back
(../docs/aimlapi.md §5) into a `ProviderResult`, reading the body under a byte cap and
a total deadline. Every failure becomes a TransientProviderError or a
PermanentProviderError, and none carries the key. Images the answer names are
downloaded by generator.fetch, which shares no session with this module, so the key can
never reach a CDN. Configuration is read from settings at call time.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import requests
import urllib3
from django.conf import settings

from generator.http_common import CHUNK_BYTES, USER_AGENT, Watchdog, content_length, set_timeout
from generator.provider.answer import AnswerReader
from generator.provider.errors import PermanentProviderError, ProviderError, TransientProviderError
from generator.provider.parser import ProviderResult, parse_generation_response

logger = logging.getLogger(__name__)

# An error answer is a few hundred bytes; anything past this is not worth reading.
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_ERROR_MESSAGE_CHARS = 500
LATE_READ_SECONDS = 1.0
LATE_READ_WAIT = 0.1


# Long on purpose: one request, with each transport failure mapped where it is caught.
def generate_images(body: dict, *, request_id: str | None = None) -> ProviderResult:
    """POST `body` to {AIMLAPI_BASE_URL}/images/generations and parse the answer.

    `request_id` goes out as X-Client-Request-Id, which the provider echoes and keeps in
    its usage logs. The result carries what the provider says the call cost.

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
    if request_id:
        headers["X-Client-Request-Id"] = request_id

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
                answer = _read_provider_answer(response, deadline, read_timeout, max_bytes)
                try:
                    result = parse_generation_response(_load_json(answer))
                except BaseException:
                    answer.close()
                    raise
                _read_cost(result, response.headers)
                logger.info(
                    "Provider answered HTTP %s with %d image(s) in %.1f s",
                    status,
                    len(result.images),
                    time.monotonic() - started,
                )
                return result
            raise _provider_error(response, key, deadline, read_timeout, max_bytes)


# More than any image call costs; a larger figure is a broken or hostile header, and
# counting it would exhaust every budget at once.
MAX_CALL_USD = Decimal(1000)
MAX_CALL_CREDITS = Decimal(10**9)


def _read_cost(result: ProviderResult, headers: Any) -> None:
    """What the provider charged: its x-aimlapi-usd-spent and x-aimlapi-credits-used
    headers, else the same figures in the body's meta.usage."""
    usage = result.usage or {}
    result.usd_spent = _amount(headers.get("x-aimlapi-usd-spent"), MAX_CALL_USD)
    if result.usd_spent is None:
        result.usd_spent = _amount(usage.get("usd_spent"), MAX_CALL_USD)
    result.credits_used = _amount(headers.get("x-aimlapi-credits-used"), MAX_CALL_CREDITS)
    if result.credits_used is None:
        result.credits_used = _amount(
            usage.get("credits_used", usage.get("tokens_used")), MAX_CALL_CREDITS
        )


def _amount(value: object, maximum: Decimal) -> Decimal | None:
    """A finite, non-negative amount no larger than `maximum`, else None (ignored)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    amount: Decimal | None = None
    if isinstance(value, int | float):
        amount = Decimal(str(value))
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,12}(\.[0-9]{1,12})?", value.strip()):
        amount = Decimal(value.strip())
    if amount is None or not amount.is_finite() or amount < 0 or amount > maximum:
        logger.warning("Provider sent a cost figure that is not a plausible amount; ignored")
        return None
    return amount


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
    if status in (301, 302, 303, 307, 308):
        message = f"Provider answered HTTP {status}, a redirect, which is not followed"
    elif not 400 <= status < 600:
        # A 1xx, a 304 or a 600 is no answer to a POST: its body says nothing either.
        message = f"Provider answered HTTP {status}, which is not an answer to a generation"
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
    chunks: list[bytes] = []
    _read_provider_pieces(response, deadline, read_timeout, max_bytes, chunks.append, truncate)
    body = b"".join(chunks)[:max_bytes] if truncate else b"".join(chunks)
    return _decode_provider_encoding(response.headers.get("Content-Encoding"), body, max_bytes)


def _read_provider_answer(
    response: requests.Response, deadline: float, read_timeout: float, max_bytes: int
) -> AnswerReader:
    """A successful answer, read as _read_provider_body reads one but never held whole:
    each piece goes to an AnswerReader as it arrives (decompressed first, under the
    same cap, if a proxy compressed it), which keeps inline images in files."""
    reader = AnswerReader()
    decoder = _StreamDecoder(response.headers.get("Content-Encoding"), max_bytes)
    try:
        _read_provider_pieces(
            response, deadline, read_timeout, max_bytes,
            lambda chunk: reader.feed(decoder.decode(chunk)), False,
        )  # fmt: skip
        decoder.finish()
    except BaseException:
        reader.close()
        raise
    return reader


def _read_provider_pieces(
    response: requests.Response,
    deadline: float,
    read_timeout: float,
    max_bytes: int,
    take: Callable[[bytes], object],
    truncate: bool,
) -> None:
    """Hand each piece of the body to `take` as it is read within `deadline` and
    `max_bytes` (the piece that passes `max_bytes` is the last one when `truncate`)."""
    announced = content_length(response.headers.get("Content-Length"))
    if announced is not None and announced > max_bytes and not truncate:
        raise PermanentProviderError(
            "The provider's answer is larger than AIMLAPI_MAX_RESPONSE_BYTES"
        )
    raw = response.raw
    sock = _response_socket(raw)
    received = 0
    # Past the deadline, what has already arrived is still read, for LATE_READ_SECONDS
    # at most from the moment the reader notices: a worker paused (SIGSTOP, a frozen VM)
    # finds its paid answer waiting in the socket, and throwing it away would pay for the
    # images again. The watchdog's clock allows the same after a pause.
    late_until: float | None = None
    with Watchdog(deadline, sock, pause_grace=LATE_READ_SECONDS) as watchdog:
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining > 0:
                set_timeout(sock, min(read_timeout, remaining))
            else:
                late_until = late_until or now + LATE_READ_SECONDS
                if now >= late_until:
                    raise _provider_deadline_error()
                set_timeout(sock, LATE_READ_WAIT)
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
            take(chunk)
            if received > max_bytes:
                if truncate:
                    break
                raise PermanentProviderError(
                    "The provider's answer is larger than AIMLAPI_MAX_RESPONSE_BYTES"
                )
        if watchdog.fired:
            raise _provider_deadline_error()


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


class _StreamDecoder:
    """_decode_provider_encoding one piece at a time, with the same errors: an
    unsupported encoding is refused once the body has been read, as before."""

    def __init__(self, encoding: str | None, max_bytes: int) -> None:
        name = (encoding or "").strip().lower()
        self.identity = name in ("", "identity")
        self.supported = self.identity or name in ("gzip", "x-gzip", "deflate")
        self.decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib framing
        self.max_bytes = max_bytes
        self.decoded = 0

    def decode(self, chunk: bytes) -> bytes:
        if self.identity:
            return chunk
        if not self.supported:
            return b""
        try:
            piece = self.decoder.decompress(chunk, self.max_bytes + 1 - self.decoded)
        except zlib.error:
            raise PermanentProviderError("The provider's answer was not understood") from None
        self.decoded += len(piece)
        if self.decoded > self.max_bytes or self.decoder.unconsumed_tail:
            raise PermanentProviderError(
                "The provider's answer is larger than AIMLAPI_MAX_RESPONSE_BYTES"
            )
        return piece

    def finish(self) -> None:
        if not self.supported:
            raise PermanentProviderError("The provider's answer used an unsupported encoding")


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


def _load_json(raw: bytes | AnswerReader) -> object:
    def reject_constant(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    try:
        if isinstance(raw, AnswerReader):
            return raw.load(reject_constant)
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
