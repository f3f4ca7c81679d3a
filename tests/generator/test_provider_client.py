"""generator.provider against a real local HTTP server: the request, the answer
shapes, the error mapping and the limits on time and size.
"""

from __future__ import annotations

import gzip
import json
import time
from email.utils import formatdate
from typing import Any

import pytest

from generator import provider
from generator.provider import PermanentProviderError, ProviderError, TransientProviderError
from tests.generator.http_fakes import (
    KEY,
    FakeServer,
    Reply,
    fake,
    free_port,
    json_reply,
    provider_url,
)

__all__ = ["fake", "provider_url"]  # fixtures

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


@pytest.mark.parametrize("status", [200, 201, 202])
def test_generate_accepts_any_2xx_and_parses_shape_a(
    fake: FakeServer, provider_url: str, status: int
) -> None:
    fake.routes[provider_url] = json_reply(status, SHAPE_A)
    body = {"model": "flux-realism", "prompt": "A T-Rex relaxing on a beach"}

    result = provider.generate_images(body)

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
    assert provider.generate_images({}).seed == 3082066483
    assert fake.seen[0].headers["accept-encoding"] == "identity"


def test_generate_does_not_follow_redirects(fake: FakeServer, provider_url: str) -> None:
    fake.routes[provider_url] = Reply(307, {"Location": "/v1/elsewhere"})
    fake.routes["/v1/elsewhere"] = json_reply(200, SHAPE_A)

    with pytest.raises(PermanentProviderError) as caught:
        provider.generate_images({})

    assert caught.value.status == 307
    assert fake.paths() == [provider_url]


def test_generate_without_a_key_makes_no_request(
    fake: FakeServer, provider_url: str, settings: Any
) -> None:
    settings.AIMLAPI_KEY = ""
    with pytest.raises(PermanentProviderError, match="AIMLAPI_KEY"):
        provider.generate_images({})
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
        provider.generate_images({})


@pytest.mark.parametrize("body", [b"<html>OK</html>", b"", b'{"images": [', b'{"seed": NaN}'])
def test_generate_refuses_a_2xx_that_is_not_json(
    fake: FakeServer, provider_url: str, body: bytes
) -> None:
    fake.routes[provider_url] = Reply(200, {"Content-Type": "text/html"}, body)
    with pytest.raises(PermanentProviderError, match="not understood"):
        provider.generate_images({})


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
        provider.generate_images({})

    assert type(caught.value) is error_class
    assert caught.value.status == status
    assert str(caught.value) == caught.value.message == f"Documented message for {status}"
    assert caught.value.retry_after is None


def test_error_with_statuscode_as_string(fake: FakeServer, provider_url: str) -> None:
    fake.routes[provider_url] = json_reply(
        429, {"message": "Too Many Requests", "statusCode": "429", "path": "/v1/x"}
    )
    with pytest.raises(TransientProviderError, match="^Too Many Requests$") as caught:
        provider.generate_images({})
    assert caught.value.status == 429


def test_error_with_validation_messages_as_a_list(fake: FakeServer, provider_url: str) -> None:
    fake.routes[provider_url] = json_reply(
        400, {"message": ["prompt must be a string", "model is required"], "statusCode": 400}
    )
    with pytest.raises(PermanentProviderError) as caught:
        provider.generate_images({})
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
        provider.generate_images({})
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
        provider.generate_images({})
    assert caught.value.retry_after is not None
    assert low <= caught.value.retry_after <= high


@pytest.mark.parametrize("header", ["soon", "-5", "1.5e3", "Mon, 99 Foo 2026", "9" * 5000, ""])
def test_retry_after_garbage_is_none(fake: FakeServer, provider_url: str, header: str) -> None:
    fake.routes[provider_url] = json_reply(429, {"message": "x"}, **{"Retry-After": header})
    with pytest.raises(TransientProviderError) as caught:
        provider.generate_images({})
    assert caught.value.retry_after is None


def test_connection_refused_is_transient(settings: Any) -> None:
    settings.AIMLAPI_KEY = KEY
    settings.AIMLAPI_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(TransientProviderError) as caught:
        provider.generate_images({})
    assert caught.value.status is None


def test_read_timeout_is_transient(fake: FakeServer, provider_url: str, settings: Any) -> None:
    settings.AIMLAPI_READ_TIMEOUT = 0.3
    fake.routes[provider_url] = Reply(200, body=json.dumps(SHAPE_A).encode(), delay=5)
    started = time.monotonic()
    with pytest.raises(TransientProviderError):
        provider.generate_images({})
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
        provider.generate_images({})
    assert time.monotonic() - started < 4  # well before the server would have finished


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_answer_is_refused(
    fake: FakeServer, provider_url: str, settings: Any, chunked: bool
) -> None:
    settings.AIMLAPI_MAX_RESPONSE_BYTES = 2048
    padded = {**SHAPE_A, "padding": "x" * 100_000}
    fake.routes[provider_url] = Reply(200, body=json.dumps(padded).encode(), chunked=chunked)
    with pytest.raises(PermanentProviderError, match="larger than AIMLAPI_MAX_RESPONSE_BYTES"):
        provider.generate_images({})


def test_key_appears_in_no_error_or_log_line(
    fake: FakeServer, provider_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A provider that echoes the credential back must not get it into our records.
    fake.routes[provider_url] = json_reply(
        401, {"message": f"Invalid key Bearer {KEY}", "requestId": KEY, "statusCode": 401}
    )
    caplog.set_level("DEBUG")
    with pytest.raises(PermanentProviderError) as caught:
        provider.generate_images({})

    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value)
    assert "[redacted]" in caught.value.message
    assert KEY not in caplog.text


def test_key_is_not_in_transport_errors(settings: Any) -> None:
    settings.AIMLAPI_KEY = KEY
    settings.AIMLAPI_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(TransientProviderError) as caught:
        provider.generate_images({})
    chain = [caught.value, caught.value.__cause__, caught.value.__context__]
    assert all(KEY not in str(exc) for exc in chain if exc is not None)


def test_key_with_a_newline_is_refused_without_echo(settings: Any) -> None:
    settings.AIMLAPI_KEY = f"{KEY}\nX-Injected: 1"
    with pytest.raises(PermanentProviderError) as caught:
        provider.generate_images({})
    assert KEY not in str(caught.value)


# --- parse_generation_response ------------------------------------------------------------


def test_parse_shape_a_with_null_sizes_and_a_seed_above_2_53() -> None:
    result = provider.parse_generation_response(
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
    result = provider.parse_generation_response(
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
    result = provider.parse_generation_response(
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
    result = provider.parse_generation_response(
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
    result = provider.parse_generation_response(
        {"created": 1700000000, "data": [{"url": url, "revised_prompt": "A revised cat"}]}
    )
    assert result.images[0].url == url
    assert result.revised_prompt == "A revised cat"


def test_parse_legacy_output_choices() -> None:
    result = provider.parse_generation_response(
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
    (image,) = provider.parse_generation_response({"images": [{"url": uri}]}).images
    assert (image.url, image.b64_json) == (None, uri)


@pytest.mark.parametrize(
    "seed, expected",
    [("42", 42), ("18446744073709551615", 2**64 - 1), (7.0, 7), (True, None), ("x", None)],
)
def test_parse_seed_forms(seed: object, expected: int | None) -> None:
    result = provider.parse_generation_response(
        {"images": [{"url": "https://cdn.aimlapi.com/a.png"}], "seed": seed}
    )
    assert result.seed == expected


def test_parse_refuses_more_than_16_images() -> None:
    entries = [{"url": f"https://cdn.aimlapi.com/{i}.png"} for i in range(17)]
    with pytest.raises(PermanentProviderError, match="17 images"):
        provider.parse_generation_response({"images": entries})


@pytest.mark.parametrize(
    "data", [None, "images", {"images": ["https://cdn.aimlapi.com/a.png"]}, {"data": {}}]
)
def test_parse_refuses_answers_it_does_not_understand(data: object) -> None:
    with pytest.raises(PermanentProviderError, match="not understood"):
        provider.parse_generation_response(data)


def test_parse_refuses_entries_with_neither_url_nor_data() -> None:
    with pytest.raises(PermanentProviderError, match="no images"):
        provider.parse_generation_response({"data": [{"url": None, "b64_json": None}]})


# --- Memory: an answer is read in pieces ---------------------------------------------------


def test_a_16_mb_inline_answer_is_read_in_memory_far_below_one_image(
    fake: FakeServer, provider_url: str, settings: Any
) -> None:
    """A 50 MB answer cost 1.3 GiB of worker memory: the body was read into a list of
    chunks, joined, parsed whole and each image decoded in one piece. Now the images'
    characters go to temporary files as they arrive and are decoded from there in pieces."""
    import base64
    import os
    import tempfile
    import tracemalloc

    from generator import fetch

    settings.AIMLAPI_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
    image_bytes = 3 * 1024 * 1024
    images = [os.urandom(image_bytes) for _ in range(4)]
    answer = {"data": [{"b64_json": base64.b64encode(raw).decode()} for raw in images], "seed": 5}
    fake.routes[provider_url] = json_reply(200, answer)
    del answer
    assert len(fake.routes[provider_url].body) > 16 * 1024 * 1024

    tracemalloc.start()
    try:
        result = provider.generate_images({})
        _, read_peak = tracemalloc.get_traced_memory()
        # The old reader held the answer three times over (chunks, join, parsed text).
        assert read_peak < image_bytes / 2, f"reading took {read_peak / 2**20:.1f} MiB"
        decoded, decode_peak = [], 0
        for image in result.images:
            with tempfile.TemporaryFile() as target:
                tracemalloc.reset_peak()
                fetch.decode_b64_image_to(image.b64_json, target)
                decode_peak = max(decode_peak, tracemalloc.get_traced_memory()[1])
                target.seek(0)
                decoded.append(target.read() == images[len(decoded)])
    finally:
        tracemalloc.stop()

    assert result.seed == 5
    assert decoded == [True] * 4
    assert decode_peak < image_bytes / 2, f"decoding took {decode_peak / 2**20:.1f} MiB"


# --- What the call cost, and the request id -------------------------------------------------


def test_the_request_id_goes_out_and_the_providers_cost_headers_are_read(
    fake: FakeServer, provider_url: str
) -> None:
    from decimal import Decimal

    fake.routes[provider_url] = json_reply(
        200, SHAPE_A, **{"x-aimlapi-usd-spent": "0.0421", "x-aimlapi-credits-used": "2100"}
    )
    result = provider.generate_images({}, request_id="5b0c-2")

    assert fake.seen[0].headers["x-client-request-id"] == "5b0c-2"
    assert (result.usd_spent, result.credits_used) == (Decimal("0.0421"), Decimal(2100))


def test_without_headers_the_cost_comes_from_meta_usage(
    fake: FakeServer, provider_url: str
) -> None:
    from decimal import Decimal

    shape_b = {
        "data": [{"url": SHAPE_A["images"][0]["url"], "b64_json": None}],
        "meta": {"usage": {"credits_used": 2100, "usd_spent": 0.0368}},
    }
    fake.routes[provider_url] = json_reply(200, shape_b)
    result = provider.generate_images({})

    assert "x-client-request-id" not in fake.seen[0].headers
    assert (result.usd_spent, result.credits_used) == (Decimal("0.0368"), Decimal(2100))


@pytest.mark.parametrize(
    "spent", ["-0.01", "NaN", "Infinity", "1e3", "0.04, 0.05", "5000", "", "0x10"]
)
def test_a_cost_header_that_is_not_a_plausible_amount_is_ignored(
    fake: FakeServer, provider_url: str, spent: str
) -> None:
    fake.routes[provider_url] = json_reply(200, SHAPE_A, **{"x-aimlapi-usd-spent": spent})
    result = provider.generate_images({})
    assert result.usd_spent is None
    assert result.images  # the answer itself is still used
