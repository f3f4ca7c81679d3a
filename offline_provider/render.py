"""File tokens and the placeholder images they stand for.

A token carries everything needed to draw its image again, so /files/ URLs keep working
across restarts without any state. Used by the server for answers and /files/, and by
the studio's tests, seeds and benchmarks for realistic image bytes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import json
import random
import textwrap
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}

# Token bounds: tokens are unsigned, so /files/ must not render whatever a forged one asks.
MAX_SIDE = 4096
PROMPT_SNIPPET = 80


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_token(
    model: str, prompt: str, seed: int, width: int, height: int, fmt: str, issued: float
) -> str:
    """A stateless file token: all a restarted server needs to re-render the image.

    The prompt travels as a digest (for determinism) plus a short snippet (to draw),
    which keeps URLs a few hundred characters long even for 4000-character prompts.
    """
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:16]
    payload = [model, prompt[:PROMPT_SNIPPET], digest, seed, width, height, fmt, int(issued * 1000)]
    return _b64encode(json.dumps(payload, separators=(",", ":")).encode())


def parse_token(token: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        model, snippet, digest, seed, width, height, fmt, issued_ms = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        return None
    ok = (
        isinstance(model, str)
        and isinstance(snippet, str)
        and isinstance(digest, str)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in (seed, width, height))
        and isinstance(issued_ms, int)
        and fmt in CONTENT_TYPES
        and 1 <= width <= MAX_SIDE
        and 1 <= height <= MAX_SIDE
    )
    if not ok:
        return None
    return {
        "model": model,
        "snippet": snippet,
        "digest": digest,
        "seed": seed,
        "width": width,
        "height": height,
        "format": fmt,
        "issued": issued_ms / 1000,
    }


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


# Small: it only saves the second render when a client downloads what was just answered
# (A′ and b64 answers render at POST time to know the bytes).
@functools.lru_cache(maxsize=24)
def render_image(
    model: str, snippet: str, digest: str, seed: int, width: int, height: int, fmt: str
) -> bytes:
    """Deterministic placeholder art: same arguments, byte-identical file.

    Gradient, translucent shapes, full-resolution grain (so JPEG sizes look like real
    photos rather than flat fills) and the prompt. Only whole-image Pillow ops: a
    1536x1536 image takes well under 0.5 s.
    """
    # A str seed goes through sha512, so this is stable across processes. The steps
    # below draw from it in a fixed order: reordering them changes every image.
    rng = random.Random(f"{model}|{digest}|{seed}|{width}x{height}|{fmt}")
    base = _background(rng, width, height)
    image = Image.alpha_composite(base, _shapes(rng, width, height)).convert("RGB")
    image = _grain(rng, image)
    _caption(image, model, snippet, seed)
    return _encode(image, fmt)


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _background(rng: random.Random, width: int, height: int) -> Image.Image:
    gradient = Image.linear_gradient("L").rotate(
        rng.uniform(0, 360), resample=Image.Resampling.BILINEAR, fillcolor=128
    )
    gradient = gradient.resize((width, height), Image.Resampling.BILINEAR)
    return ImageOps.colorize(gradient, _colour(rng), _colour(rng), mid=_colour(rng)).convert("RGBA")


def _shapes(rng: random.Random, width: int, height: int) -> Image.Image:
    overlay = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    short, long = min(width, height), max(width, height)
    for _ in range(rng.randint(14, 28)):
        x0, y0 = rng.randrange(-width // 4, width), rng.randrange(-height // 4, height)
        extent = rng.randint(max(1, short // 12), max(2, long // 2))
        fill = (*_colour(rng), rng.randint(60, 170))
        kind = rng.randrange(3)
        if kind == 0:
            box = (x0, y0, x0 + extent, y0 + int(extent * rng.uniform(0.5, 1.5)))
            draw.ellipse(box, fill=fill)
        elif kind == 1:
            box = (x0, y0, x0 + extent, y0 + int(extent * rng.uniform(0.3, 1.2)))
            draw.rectangle(box, fill=fill)
        else:
            points = [
                (x0 + rng.randrange(extent), y0 + rng.randrange(extent))
                for _ in range(rng.randint(3, 6))
            ]
            draw.polygon(points, fill=fill)
    return overlay


def _grain(rng: random.Random, image: Image.Image) -> Image.Image:
    # Image.effect_noise is not seedable; random bytes from our own rng are.
    width, height = image.size
    nw, nh = max(1, width // 2), max(1, height // 2)
    noise = Image.frombytes("RGB", (nw, nh), rng.randbytes(nw * nh * 3))
    return Image.blend(image, noise.resize((width, height), Image.Resampling.BILINEAR), 0.10)


def _caption(image: Image.Image, model: str, snippet: str, seed: int) -> None:
    width, height = image.size
    draw = ImageDraw.Draw(image)
    font_size = max(8, min(width, height) // 22)
    font = _font(font_size)
    line_height = int(font_size * 1.25)
    text = snippet if len(snippet) < PROMPT_SNIPPET else snippet.rstrip() + "…"
    lines = textwrap.wrap(text, width=max(8, int(width / (font_size * 0.55))))[:4]
    top = height - (len(lines) + 1) * line_height
    draw.rectangle((0, top - font_size // 2, width, height), fill=(0, 0, 0))
    for line in lines:
        draw.text((font_size, top), line, font=font, fill=(255, 255, 255))
        top += line_height
    draw.text(
        (font_size // 2, font_size // 2),
        f"{model} · seed {seed}",
        font=_font(max(8, font_size // 2)),
        fill=(255, 255, 255),
    )


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, "JPEG", quality=90)
    elif fmt == "png":
        # Level 1: noisy PNGs barely compress better at 6 and take several times longer.
        image.save(buffer, "PNG", compress_level=1)
    else:
        image.save(buffer, "WEBP", quality=85)
    return buffer.getvalue()


def render_token(token: str) -> bytes | None:
    info = parse_token(token)
    if info is None:
        return None
    return render_image(
        info["model"],
        info["snippet"],
        info["digest"],
        info["seed"],
        info["width"],
        info["height"],
        info["format"],
    )
