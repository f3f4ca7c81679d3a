"""A hostile provider and CDN, end to end through the services: every answer ends in a
failed generation with a reason (or a safely re-encoded image), no request reaches a
blocked address, and memory stays bounded. The per-URL and per-byte rules themselves
are proven in generator/test_provider_client.py, generator/test_fetch.py and
test_imaging.py; this is the generation's view."""

from __future__ import annotations

import gzip
import io
import resource
import struct
import zlib
from typing import Any

import pytest
from PIL import Image as PILImage

from generator import services
from generator.models import Generation
from generator.registry import FLUX_REALISM
from tests.generator.http_fakes import (
    FakeServer,
    Reply,
    fake,
    json_reply,
    provider_url,
    record_connects,
)

pytestmark = pytest.mark.django_db

__all__ = ["fake", "provider_url"]  # fixtures

GENERATIONS = "/v1/images/generations"


def png(size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, (20, 120, 200)).save(out, "PNG")
    return out.getvalue()


def noisy_png() -> bytes:
    out = io.BytesIO()
    PILImage.effect_noise((256, 256), 80).convert("RGB").save(out, "PNG")
    return out.getvalue()


def bomb_png(side: int = 30_000) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + side * 3) * 64, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.fixture
def hostile(fake: FakeServer, provider_url: str, settings: Any) -> FakeServer:
    """The fake answers as the provider and serves its 'CDN' files too."""
    settings.MIRROR_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.MIRROR_ALLOW_PRIVATE_ADDRESSES = True
    settings.MIRROR_TIMEOUT = 3.0
    settings.MIRROR_MAX_BYTES = 2 * 1024 * 1024
    settings.GENERATION_MAX_ATTEMPTS = 1
    settings.GENERATION_MAX_MIRROR_ATTEMPTS = 1
    return fake


def answer_with(fake: FakeServer, *paths: str) -> None:
    fake.routes[GENERATIONS] = json_reply(200, {"images": [{"url": fake.url(p)} for p in paths]})


def run(owner: Any) -> Generation:
    body = {"model": "flux-realism", "prompt": "hostile", "image_size": "square"}
    generation = services.generation_create(owner=owner, spec=FLUX_REALISM, body=body)
    services.generation_call(generation_id=generation.pk)
    generation.refresh_from_db()
    if generation.step == Generation.Step.MIRROR and not generation.is_finished:
        try:
            services.generation_mirror(generation_id=generation.pk)
        except services.RetryLater:
            pass  # a transient refusal: with one attempt allowed, the next run fails it
        generation.refresh_from_db()
        if not generation.is_finished:
            services.generation_mirror(generation_id=generation.pk)
            generation.refresh_from_db()
    return generation


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize(
    "payload, reason",
    [
        ({"images": [{"url": f"https://cdn.aimlapi.com/{i}.png"} for i in range(1000)]}, ""),
        (b'{"images": [{"url": ', ""),
        (b"<html>502 Bad Gateway</html>", ""),
        ({"images": "https://cdn.aimlapi.com/a.png"}, ""),
    ],
    ids=["1000-urls", "truncated-json", "html", "wrong-shape"],
)
def test_a_malformed_provider_answer_fails_without_any_download(owner, hostile, payload, reason):
    if isinstance(payload, bytes):
        hostile.routes[GENERATIONS] = Reply(200, {"Content-Type": "application/json"}, payload)
    else:
        hostile.routes[GENERATIONS] = json_reply(200, payload)

    generation = run(owner)

    assert generation.status == "failed" and generation.error.strip()
    assert hostile.paths() == [GENERATIONS]
    assert generation.images.count() == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://10.0.0.5/a.png",
        "https://[::ffff:127.0.0.1]/a.png",
        "https://2130706433/a.png",
        "https://user:pass@cdn.aimlapi.com/a.png",
        "https://cdn.aimlapi.com:2375/a.png",
        "file:///etc/passwd",
    ],
)
def test_an_answer_naming_a_blocked_address_fails_without_a_connection(
    owner, hostile, settings, monkeypatch, url
):
    settings.MIRROR_ALLOWED_HOSTS = ["cdn.aimlapi.com"]
    settings.MIRROR_ALLOW_PRIVATE_ADDRESSES = False
    hostile.routes[GENERATIONS] = json_reply(200, {"images": [{"url": url}]})
    connects = record_connects(monkeypatch)

    generation = run(owner)

    assert generation.status == "failed" and "Could not copy image 1" in generation.error
    # The provider call is the only connection made: nothing towards the named address.
    assert connects == [("127.0.0.1", hostile.port)]
    assert hostile.paths() == [GENERATIONS]


@pytest.mark.parametrize(
    "reply, reason",
    [
        (Reply(200, {"Content-Type": "image/png"}, b"<html><script>x</script></html>"), "rejected"),
        (Reply(200, {"Content-Type": "image/svg+xml"}, b"<svg onload=alert(1)/>"), "content type"),
        (Reply(200, {"Content-Type": "image/png"}, noisy_png()[:20_000]), "rejected"),
        (Reply(200, {"Content-Type": "image/png", "Content-Encoding": "gzip"},
               gzip.compress(b"\0" * 50_000_000)), "compressed"),
        (Reply(200, {"Content-Type": "image/png"}, b"\0" * 6_000_000, chunked=True),
         "MIRROR_MAX_BYTES"),
        (Reply(200, {"Content-Type": "image/png", "Content-Length": "90"}, png() + b"\0" * 5000),
         "rejected"),
        (Reply(200, {"Content-Type": "image/png"}, png(), drip=0.05), "longer"),
    ],
    ids=["html-as-png", "svg", "truncated", "gzip-bomb", "endless", "lying-length", "slow-drip"],
)  # fmt: skip
def test_a_hostile_cdn_answer_fails_the_generation_with_a_reason(owner, hostile, reply, reason):
    hostile.routes["/0.png"] = reply
    answer_with(hostile, "/0.png")
    before = peak_rss_mib()

    generation = run(owner)

    assert generation.status == "failed", generation.error
    assert reason in generation.error
    assert generation.images.count() == 0
    assert peak_rss_mib() - before < 64  # nothing near the bomb's size was held


def test_a_decompression_bomb_fails_before_it_is_decoded(owner, hostile):
    hostile.routes["/0.png"] = Reply(200, {"Content-Type": "image/png"}, bomb_png())
    answer_with(hostile, "/0.png")
    before = peak_rss_mib()

    generation = run(owner)

    assert generation.status == "failed" and "pixels" in generation.error
    assert peak_rss_mib() - before < 64  # 30000² RGB would be 2.5 GiB decoded


def test_a_png_html_polyglot_is_stored_re_encoded_and_served_as_an_image(owner, hostile, client):
    payload = b"<html><script>alert(document.cookie)</script></html>"
    hostile.routes["/0.png"] = Reply(200, {"Content-Type": "image/png"}, png() + payload)
    answer_with(hostile, "/0.png")

    generation = run(owner)

    assert generation.status == "succeeded", generation.error
    image = generation.images.get()
    stored = image.file.read()
    assert b"<script" not in stored and stored != png() + payload
    client.force_login(owner)
    served = client.get(f"/media/{image.file.name}")
    assert served.status_code == 200
    assert served["Content-Type"] == "image/png"
    assert served["X-Content-Type-Options"] == "nosniff"
    assert b"<script" not in b"".join(served.streaming_content)
