"""Downloaded bytes are untrusted: only real PNG/JPEG/WebP within the pixel cap pass,
and anything riding along after the image is dropped."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from generator.imaging import InvalidImage, check_image


def encoded(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(out, fmt)
    return out.getvalue()


def noisy(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((256, 256), 80).convert("RGB").save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize(("fmt", "name", "ext"), [("PNG", "png", "png"), ("JPEG", "jpeg", "jpg"),
                                                  ("WEBP", "webp", "webp")])  # fmt: skip
def test_clean_images_are_kept_byte_for_byte(fmt, name, ext):
    data = encoded(fmt)
    checked = check_image(data, max_pixels=10_000)
    assert (checked.format, checked.extension, checked.width, checked.height) == (name, ext, 64, 48)
    assert checked.content == data
    assert Image.open(io.BytesIO(checked.thumbnail)).format == "WEBP"


def test_a_png_html_polyglot_is_reencoded():
    data = encoded("PNG") + b"<html><script>alert(document.cookie)</script></html>"
    checked = check_image(data, max_pixels=10_000)
    assert b"<script" not in checked.content
    assert Image.open(io.BytesIO(checked.content)).size == (64, 48)


def test_a_jpeg_with_trailing_data_is_reencoded():
    checked = check_image(encoded("JPEG") + b"<svg onload=alert(1)>", max_pixels=10_000)
    assert b"<svg" not in checked.content


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<html><body>not an image</body></html>",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        encoded("GIF"),
        encoded("BMP"),
        noisy("PNG")[:20_000],  # truncated
        noisy("JPEG")[:5_000],
    ],
)
def test_anything_else_is_rejected(data):
    with pytest.raises(InvalidImage):
        check_image(data, max_pixels=10_000)


def test_a_decompression_bomb_is_rejected_before_decoding():
    width = height = 30_000

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
    )
    bomb += chunk(b"IEND", b"")
    with pytest.raises(InvalidImage, match="pixels"):
        check_image(bomb, max_pixels=40_000_000)


def test_the_pixel_cap_is_the_settings_value():
    with pytest.raises(InvalidImage, match="more pixels"):
        check_image(encoded("PNG", (100, 100)), max_pixels=9_999)
