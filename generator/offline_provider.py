"""A local stand-in for the AI/ML API image endpoint (POST /v1/images/generations).

Used by the demo setup (``manage.py offline_provider``) and by tests, which start it
in a thread. It validates bodies per model like the real API (shared/docs/aimlapi.md
§4), answers in the per-model shapes of §5, serves the images it "generated" from
its own /files/ URLs and can be told to fail, hang or drop connections.

Standard library plus Pillow only: it must not import Django, so that it can run
without settings and next to any test process.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import json
import random
import re
import socket
import sys
import textwrap
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from PIL import Image, ImageDraw, ImageFont, ImageOps

GENERATIONS_PATH = "/v1/images/generations"

# §3: fal's preset sizes.
IMAGE_SIZE_PRESETS: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}

# Only 16:9 (2752x1536) is documented; the others are ~4.2 MP at the ratio, multiples of 32.
ULTRA_SIZES: dict[str, tuple[int, int]] = {
    "21:9": (3136, 1344),
    "16:9": (2752, 1536),
    "4:3": (2368, 1792),
    "3:2": (2496, 1664),
    "1:1": (2048, 2048),
    "2:3": (1664, 2496),
    "3:4": (1792, 2368),
    "9:16": (1536, 2752),
    "9:21": (1344, 3136),
}
IMAGEN_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1024, 576),
    "9:16": (576, 1024),
    "4:3": (1024, 768),
    "3:4": (768, 1024),
}
I2I_DEFAULT_SIZE = (1024, 768)

# The messages of aimlapi.md §6, used for injected failures.
ERROR_MESSAGES: dict[int, str] = {
    400: "Body validation error!",
    401: (
        "This request requires a valid API key. You can create a new API key on the "
        "Billing page: https://aimlapi.com/app/keys"
    ),
    403: (
        "You've run out of credits. Please top up your balance or update your payment "
        "method to continue: https://aimlapi.com/app/billing/"
    ),
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal server error",
    502: "Bad Gateway",
    503: "Service unavailable",
    504: "Generation timeout",
}

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}

# Token bounds: tokens are unsigned, so /files/ must not render whatever a forged one asks.
MAX_SIDE = 4096
PROMPT_SNIPPET = 80


# ---- validation table -------------------------------------------------------------
# One dict per model, written from aimlapi.md §4 and kept apart from generator.registry
# on purpose: the fake checks the studio, so it must not share the studio's mistakes.


def _num(minimum: float | None = None, maximum: float | None = None) -> dict[str, Any]:
    return {"type": "number", "min": minimum, "max": maximum}


def _int(minimum: int | None = None, maximum: int | None = None) -> dict[str, Any]:
    return {"type": "integer", "min": minimum, "max": maximum}


def _enum(*values: str) -> dict[str, Any]:
    return {"type": "enum", "values": values}


def _literal(value: Any) -> dict[str, Any]:
    return {"type": "literal", "value": value}


def _size(minimum: int, maximum: int) -> dict[str, Any]:
    return {"type": "image_size", "min": minimum, "max": maximum}


BOOL: dict[str, Any] = {"type": "boolean"}
STRING: dict[str, Any] = {"type": "string"}
URI: dict[str, Any] = {"type": "uri"}
COLORS: dict[str, Any] = {"type": "colors"}

SAFETY_TOLERANCE = _enum("1", "2", "3", "4", "5", "6")
JPEG_OR_PNG = _enum("jpeg", "png")
FAL_SEED = _int(1)
GUIDANCE = _num(1, 20)
STEPS = _int(1, 50)
NUM_IMAGES = _num(1, 4)

RECRAFT_STYLES = (
    "any",
    "realistic_image",
    "digital_illustration",
    "vector_illustration",
    *(
        f"realistic_image/{s}"
        for s in (
            "b_and_w",
            "hard_flash",
            "hdr",
            "natural_light",
            "studio_portrait",
            "enterprise",
            "motion_blur",
        )
    ),
    *(
        f"digital_illustration/{s}"
        for s in (
            "pixel_art",
            "hand_drawn",
            "grain",
            "infantile_sketch",
            "2d_art_poster",
            "handmade_3d",
            "hand_drawn_outline",
            "engraving_color",
            "2d_art_poster_2",
        )
    ),
    *(f"vector_illustration/{s}" for s in ("engraving", "line_art", "line_circuit", "linocut")),
)

_IMAGEN_PARAMS: dict[str, dict[str, Any]] = {
    "convert_base64_to_url": BOOL,
    # §4d gives only "max 4"; fewer than one image is no answer at all.
    "num_images": _int(1, 4),
    "seed": _int(0, 4294967295),
    "enhance_prompt": BOOL,
    "aspect_ratio": _enum(*IMAGEN_SIZES),
    "person_generation": _enum("dont_allow", "allow_adult"),
    "safety_setting": _enum("block_low_and_above", "block_medium_and_above", "block_only_high"),
    "add_watermark": BOOL,
}

# shape: answer shape when not forced to "b"; format: output format when the body has no
# output_format (png where the docs list PNG only, as for schnell and dev).
MODELS: dict[str, dict[str, Any]] = {
    "flux-pro": {
        "prompt_max": 4000,
        "shape": "a",
        "format": "jpeg",
        "params": {
            "num_images": NUM_IMAGES,
            "seed": FAL_SEED,
            "image_size": _size(256, 1440),
            "guidance_scale": GUIDANCE,
            "num_inference_steps": STEPS,
            "safety_tolerance": SAFETY_TOLERANCE,
            "output_format": JPEG_OR_PNG,
        },
    },
    "flux-pro/v1.1": {
        "prompt_max": 4000,
        "shape": "a",
        "format": "jpeg",
        "params": {
            "num_images": NUM_IMAGES,
            "seed": FAL_SEED,
            "image_size": _size(256, 1440),
            "enable_safety_checker": BOOL,
            "safety_tolerance": SAFETY_TOLERANCE,
            "output_format": JPEG_OR_PNG,
        },
    },
    "flux-pro/v1.1-ultra": {
        "prompt_max": 4000,
        "shape": "a",
        "format": "jpeg",
        "params": {
            "num_images": NUM_IMAGES,
            "seed": FAL_SEED,
            "enable_safety_checker": BOOL,
            "safety_tolerance": SAFETY_TOLERANCE,
            "output_format": JPEG_OR_PNG,
            "aspect_ratio": _enum(*ULTRA_SIZES),
            "raw": _literal(False),
        },
    },
    "flux-realism": {
        "prompt_max": 4000,
        "shape": "a",
        "format": "jpeg",
        "params": {
            "num_images": NUM_IMAGES,
            "seed": FAL_SEED,
            "image_size": _size(512, 1536),
            "guidance_scale": GUIDANCE,
            "num_inference_steps": STEPS,
            "enable_safety_checker": BOOL,
            "output_format": JPEG_OR_PNG,
        },
    },
    "flux/dev": {
        "prompt_max": 4000,
        "shape": "a",
        "format": "png",
        "params": {
            "num_images": NUM_IMAGES,
            "seed": FAL_SEED,
            "image_size": _size(512, 1536),
            "guidance_scale": GUIDANCE,
            "num_inference_steps": STEPS,
            "enable_safety_checker": BOOL,
        },
    },
    "flux/dev/image-to-image": {
        "prompt_max": 4000,
        "shape": "a",
        "format": "jpeg",
        "required": ("image_url",),
        "params": {
            "num_images": NUM_IMAGES,
            "seed": FAL_SEED,
            "guidance_scale": GUIDANCE,
            "num_inference_steps": STEPS,
            "enable_safety_checker": BOOL,
            "image_url": URI,
            "strength": _num(),
        },
    },
    "flux/schnell": {
        "prompt_max": 4000,
        "shape": "a",
        "format": "png",
        "params": {
            "num_images": NUM_IMAGES,
            "seed": FAL_SEED,
            "image_size": _size(64, 1536),
            "num_inference_steps": _int(1),
            "enable_safety_checker": BOOL,
        },
    },
    "stable-diffusion-v3-medium": {
        "prompt_max": 4000,
        "shape": "a",
        "format": "jpeg",
        "default_size": "square_hd",
        "params": {
            "num_images": NUM_IMAGES,
            "seed": FAL_SEED,
            "image_size": _size(64, 1536),
            "negative_prompt": STRING,
            "prompt_expansion": BOOL,
            "guidance_scale": GUIDANCE,
            "num_inference_steps": STEPS,
            "enable_safety_checker": BOOL,
        },
    },
    "stable-diffusion-v35-large": {
        "prompt_max": 4000,
        "shape": "a",
        "format": "jpeg",
        "default_size": "square_hd",
        "params": {
            "num_images": NUM_IMAGES,
            "seed": FAL_SEED,
            "image_size": _size(64, 1536),
            "negative_prompt": STRING,
            "guidance_scale": GUIDANCE,
            "num_inference_steps": STEPS,
            "enable_safety_checker": BOOL,
            "output_format": JPEG_OR_PNG,
        },
    },
    "recraft-v3": {
        "prompt_max": 4000,
        "shape": "a_file",
        "format": "webp",
        "default_size": "square_hd",
        "params": {
            "image_size": _size(64, 1536),
            "style": _enum(*RECRAFT_STYLES),
            "colors": COLORS,
            "num_images": _literal(1),
        },
    },
    "imagen-3.0-generate-002": {
        "prompt_max": 400,
        "shape": "c",
        "format": "png",
        "params": _IMAGEN_PARAMS,
    },
    "google/imagen4/preview": {
        "prompt_max": 400,
        "shape": "a_file",
        "format": "png",
        "params": _IMAGEN_PARAMS,
    },
    "dall-e-2": {
        "prompt_max": 1000,
        "shape": "d",
        "format": "png",
        "params": {
            "n": _int(1, 10),
            "size": _enum("256x256", "512x512", "1024x1024"),
            "response_format": _enum("url", "b64_json"),
        },
    },
    "dall-e-3": {
        "prompt_max": 4000,
        "shape": "d",
        "format": "png",
        "params": {
            "n": _literal(1),
            "size": _enum("1024x1024", "1024x1792", "1792x1024"),
            "quality": _enum("standard", "hd"),
            "style": _enum("vivid", "natural"),
            "response_format": _enum("url", "b64_json"),
        },
    },
}
# The model DB lists the short id too (§2); answer it exactly like the long one.
MODEL_ALIASES = {"imagen4/preview": "google/imagen4/preview"}

# Shape B's meta.usage.credits_used per image; only the order of magnitude matters.
CREDITS_PER_IMAGE = 2100


# ---- validation ------------------------------------------------------------------


class ValidationError(Exception):
    def __init__(self, issues: list[str]) -> None:
        super().__init__("; ".join(issues))
        self.issues = issues


def _type_name(value: Any) -> str:
    # zod's names for JSON values, used in "Expected X, received Y".
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _quote(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_number(path: str, value: Any, spec: dict[str, Any], issues: list[str]) -> None:
    if not _is_number(value):
        issues.append(f"{path}: Expected number, received {_type_name(value)}")
        return
    # JSON has one number type, so 2.0 is an integer to the real (JS) validator too.
    if spec["type"] == "integer" and not float(value).is_integer():
        issues.append(f"{path}: Expected integer, received float")
        return
    if spec.get("min") is not None and value < spec["min"]:
        issues.append(f"{path}: Number must be greater than or equal to {spec['min']}")
    if spec.get("max") is not None and value > spec["max"]:
        issues.append(f"{path}: Number must be less than or equal to {spec['max']}")


def _check_uri(path: str, value: Any, issues: list[str]) -> None:
    if not isinstance(value, str):
        issues.append(f"{path}: Expected string, received {_type_name(value)}")
        return
    parts = urlsplit(value)
    if not parts.scheme or not (parts.netloc or parts.scheme == "data"):
        issues.append(f"{path}: Invalid url")


def _check_image_size(path: str, value: Any, spec: dict[str, Any], issues: list[str]) -> None:
    if isinstance(value, str):
        if value not in IMAGE_SIZE_PRESETS:
            expected = " | ".join(_quote(p) for p in IMAGE_SIZE_PRESETS)
            issues.append(
                f"{path}: Invalid enum value. Expected {expected}, received {_quote(value)}"
            )
        return
    if not isinstance(value, dict):
        issues.append(f"{path}: Expected object | string, received {_type_name(value)}")
        return
    unknown = [k for k in value if k not in ("width", "height")]
    if unknown:
        issues.append(f"{path}: Unrecognized key(s) in object: {', '.join(map(_quote, unknown))}")
    for side in ("width", "height"):
        if side not in value:
            issues.append(f"{path}.{side}: Required")
            continue
        number = value[side]
        bounds = {"type": "integer", "min": spec["min"], "max": spec["max"]}
        _check_number(f"{path}.{side}", number, bounds, issues)
        if _is_number(number) and float(number).is_integer() and int(number) % 32:
            issues.append(f"{path}.{side}: Number must be a multiple of 32")


def _check_colors(path: str, value: Any, issues: list[str]) -> None:
    if not isinstance(value, list):
        issues.append(f"{path}: Expected array, received {_type_name(value)}")
        return
    for i, color in enumerate(value):
        if not isinstance(color, dict):
            issues.append(f"{path}.{i}: Expected object, received {_type_name(color)}")
            continue
        unknown = [k for k in color if k not in ("r", "g", "b")]
        if unknown:
            issues.append(
                f"{path}.{i}: Unrecognized key(s) in object: {', '.join(map(_quote, unknown))}"
            )
        for channel in ("r", "g", "b"):
            if channel not in color:
                issues.append(f"{path}.{i}.{channel}: Required")
            else:
                _check_number(f"{path}.{i}.{channel}", color[channel], _int(0, 255), issues)


def _check_field(path: str, value: Any, spec: dict[str, Any], issues: list[str]) -> None:
    kind = spec["type"]
    if kind in ("number", "integer"):
        _check_number(path, value, spec, issues)
    elif kind == "boolean":
        if not isinstance(value, bool):
            issues.append(f"{path}: Expected boolean, received {_type_name(value)}")
    elif kind == "string":
        if not isinstance(value, str):
            issues.append(f"{path}: Expected string, received {_type_name(value)}")
    elif kind == "enum":
        if not isinstance(value, str):
            issues.append(f"{path}: Expected string, received {_type_name(value)}")
        elif value not in spec["values"]:
            expected = " | ".join(_quote(v) for v in spec["values"])
            issues.append(
                f"{path}: Invalid enum value. Expected {expected}, received {_quote(value)}"
            )
    elif kind == "literal":
        # type() too: 1 == True in Python, but not to a JSON validator.
        if type(value) is not type(spec["value"]) or value != spec["value"]:
            issues.append(f"{path}: Invalid literal value, expected {_quote(spec['value'])}")
    elif kind == "uri":
        _check_uri(path, value, issues)
    elif kind == "image_size":
        _check_image_size(path, value, spec, issues)
    elif kind == "colors":
        _check_colors(path, value, issues)
    else:  # pragma: no cover - a typo in the table above
        raise AssertionError(f"unknown field type {kind!r}")


def validate_body(body: Any) -> tuple[str, dict[str, Any]]:
    """Check a parsed request body; return (canonical model id, model entry).

    Raises ValidationError with zod-like issues ("path: message"). Keys a model does
    not take are errors (zod .strict()), so the studio can never send them unnoticed.
    """
    if not isinstance(body, dict):
        raise ValidationError([f"Expected object, received {_type_name(body)}"])
    issues: list[str] = []
    model = body.get("model")
    if "model" not in body:
        issues.append("model: Required")
    elif not isinstance(model, str):
        issues.append(f"model: Expected string, received {_type_name(model)}")
    elif model not in MODELS and model not in MODEL_ALIASES:
        expected = " | ".join(_quote(m) for m in [*MODELS, *MODEL_ALIASES])
        issues.append(f"model: Invalid enum value. Expected {expected}, received {_quote(model)}")
    prompt = body.get("prompt")
    if "prompt" not in body:
        issues.append("prompt: Required")
    elif not isinstance(prompt, str):
        issues.append(f"prompt: Expected string, received {_type_name(prompt)}")
    elif not prompt:
        issues.append("prompt: String must contain at least 1 character(s)")
    if issues and any(i.startswith("model:") for i in issues):
        # Without a model there is no schema to check the rest against.
        raise ValidationError(issues)

    model_id = MODEL_ALIASES.get(model, model)
    entry = MODELS[model_id]
    if isinstance(prompt, str) and len(prompt) > entry["prompt_max"]:
        issues.append(f"prompt: String must contain at most {entry['prompt_max']} character(s)")
    params: dict[str, dict[str, Any]] = entry["params"]
    unknown = [k for k in body if k not in params and k not in ("model", "prompt")]
    for key, value in body.items():
        if key in params:
            _check_field(key, value, params[key], issues)
    if unknown:
        issues.append(f"Unrecognized key(s) in object: {', '.join(map(_quote, unknown))}")
    for key in entry.get("required", ()):
        if key not in body:
            issues.append(f"{key}: Required")
    if issues:
        raise ValidationError(issues)
    return model_id, entry


# ---- sizes, tokens, rendering ------------------------------------------------------


def _data_uri_size(uri: str) -> tuple[int, int] | None:
    # Only inline PNG/JPEG/WebP references are measured: fetching remote URLs would make
    # the fake depend on the network.
    match = re.match(r"data:image/(png|jpeg|jpg|webp)(;[^,]*)?;base64,", uri, re.IGNORECASE)
    if not match:
        return None
    try:
        raw = base64.b64decode(uri[match.end() :], validate=False)
        with Image.open(io.BytesIO(raw)) as img:
            if img.format not in ("PNG", "JPEG", "WEBP"):
                return None
            width, height = img.size
    except (OSError, ValueError, binascii.Error, Image.DecompressionBombError):
        return None
    # Beyond what a file token may carry: fall back rather than hand out dead URLs.
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        return None
    return width, height


def resolve_size(model_id: str, entry: dict[str, Any], body: dict[str, Any]) -> tuple[int, int]:
    """Output width and height for a validated body."""
    if model_id == "flux-pro/v1.1-ultra":
        return ULTRA_SIZES[body.get("aspect_ratio", "16:9")]
    if model_id == "flux/dev/image-to-image":
        return _data_uri_size(body["image_url"]) or I2I_DEFAULT_SIZE
    if entry["shape"] == "d":
        width, height = body.get("size", "1024x1024").split("x")
        return int(width), int(height)
    if "aspect_ratio" in entry["params"]:
        return IMAGEN_SIZES[body.get("aspect_ratio", "1:1")]
    size = body.get("image_size", entry.get("default_size", "landscape_4_3"))
    if isinstance(size, str):
        return IMAGE_SIZE_PRESETS[size]
    return int(size["width"]), int(size["height"])


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
    # A str seed goes through sha512, so this is stable across processes.
    rng = random.Random(f"{model}|{digest}|{seed}|{width}x{height}|{fmt}")

    def colour() -> tuple[int, int, int]:
        return (rng.randrange(256), rng.randrange(256), rng.randrange(256))

    gradient = Image.linear_gradient("L").rotate(
        rng.uniform(0, 360), resample=Image.Resampling.BILINEAR, fillcolor=128
    )
    gradient = gradient.resize((width, height), Image.Resampling.BILINEAR)
    base = ImageOps.colorize(gradient, colour(), colour(), mid=colour()).convert("RGBA")

    overlay = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    short, long = min(width, height), max(width, height)
    for _ in range(rng.randint(14, 28)):
        x0, y0 = rng.randrange(-width // 4, width), rng.randrange(-height // 4, height)
        extent = rng.randint(max(1, short // 12), max(2, long // 2))
        fill = (*colour(), rng.randint(60, 170))
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
    image = Image.alpha_composite(base, overlay).convert("RGB")

    # Image.effect_noise is not seedable; random bytes from our own rng are.
    nw, nh = max(1, width // 2), max(1, height // 2)
    noise = Image.frombytes("RGB", (nw, nh), rng.randbytes(nw * nh * 3))
    image = Image.blend(image, noise.resize((width, height), Image.Resampling.BILINEAR), 0.10)

    draw = ImageDraw.Draw(image)
    font_size = max(8, short // 22)
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


def enhance_prompt(prompt: str) -> str:
    # Imagen 3 answers with its rewritten prompt (§5 C); a stable suffix is enough to
    # let clients tell it apart from what they sent.
    return f"{prompt.rstrip().rstrip('.')}, highly detailed, natural lighting, sharp focus"


# ---- the server ----------------------------------------------------------------------


def _canonical_headers(headers: Any) -> dict[str, str]:
    # Canonical casing, so tests can check "Authorization" whatever case a client sends.
    return {"-".join(p.capitalize() for p in k.split("-")): v for k, v in headers.items()}


def _utc_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_body(status: int, message: str, path: str = GENERATIONS_PATH) -> dict[str, Any]:
    """The flat error body of aimlapi.md §6 (statusCode an int, as captured live)."""
    return {
        "message": message,
        "path": path,
        "requestId": str(uuid.uuid4()),
        "statusCode": status,
        "timestamp": _utc_timestamp(),
    }


def _default_message(status: int) -> str:
    if status in ERROR_MESSAGES:
        return ERROR_MESSAGES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # 40+ clients may connect at once; the default backlog of 5 would reset some.
    request_queue_size = 128
    # stop() must not wait for handlers that sleep through a "timeout" failure.
    block_on_close = False
    allow_reuse_address = True

    provider: OfflineProvider

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that give up (read timeouts, dropped pools) are routine here.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    @property
    def provider(self) -> OfflineProvider:
        return self.server.provider

    def setup(self) -> None:
        super().setup()
        self.provider._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.provider._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.provider.log_requests:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")
            sys.stderr.flush()

    # -- plumbing --

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length < 0 or length > 32 * 1024 * 1024:
            return None
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        *,
        extra_headers: dict[str, str] | None = None,
        record: dict[str, Any] | None = None,
        head: bool = False,
    ) -> None:
        # The status is recorded before the bytes go out: a client that got its answer
        # must find it in `calls` already.
        if record is not None:
            record["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(payload)

    def _send_json(self, status: int, data: Any, **kwargs: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", **kwargs)

    def _send_error(self, status: int, message: str, **kwargs: Any) -> None:
        self._send_json(status, error_body(status, message, self._route()), **kwargs)

    def _route(self) -> str:
        path = self.path.split("?", 1)[0]
        return path[:-1] if len(path) > 1 and path.endswith("/") else path

    # -- verbs --

    def do_GET(self) -> None:
        self._get(head=False)

    def do_HEAD(self) -> None:
        self._get(head=True)

    def do_POST(self) -> None:
        route = self._route()
        if route == GENERATIONS_PATH:
            self._generate()
        elif route == "/_control/fail":
            self._control_fail()
        elif route == "/_control/reset":
            self._read_body()
            self.provider.reset()
            self._send_json(200, {"ok": True})
        else:
            self._read_body()
            self._send_error(404, f"Cannot POST {route}")

    def _get(self, *, head: bool) -> None:
        route = self._route()
        if route.startswith("/files/"):
            self._serve_file(route, head=head)
        elif route == "/_control/stats":
            stats = {
                "generation_calls": self.provider.generation_calls(),
                "cdn_requests": len(self.provider.cdn_requests),
                "in_flight": self.provider.in_flight,
                "max_in_flight": self.provider.max_in_flight,
            }
            self._send_json(200, stats, head=head)
        elif route == "/v1/models":
            models = [{"id": m, "object": "model", "type": "image"} for m in MODELS]
            self._send_json(200, {"object": "list", "data": models}, head=head)
        else:
            self._send_error(404, f"Cannot {self.command} {route}", head=head)

    # -- /files --

    def _serve_file(self, route: str, *, head: bool) -> None:
        provider = self.provider
        with provider._lock:
            provider.cdn_requests.append(
                {"path": route, "method": self.command, "headers": _canonical_headers(self.headers)}
            )
        name = route.removeprefix("/files/")
        token, _, ext = name.rpartition(".")
        info = parse_token(token) if token else None
        if info is None or EXTENSIONS[info["format"]] != ext:
            self._send_error(404, "File not found", head=head)
            return
        ttl = provider.url_ttl
        if ttl is not None and time.time() - info["issued"] > ttl:
            self._send_error(404, "File not found (expired)", head=head)
            return
        payload = render_token(token)
        assert payload is not None
        self._send(200, payload, CONTENT_TYPES[info["format"]], head=head)

    # -- /_control --

    def _control_fail(self) -> None:
        raw = self._read_body()
        try:
            data = json.loads(raw or b"")
            status = data["status"]
            self.provider.fail_next(
                status,
                int(data.get("times", 1)),
                message=data.get("message"),
                retry_after=data.get("retry_after"),
            )
        except (ValueError, TypeError, KeyError) as exc:
            self._send_json(400, {"ok": False, "error": f"bad control body: {exc!r}"})
            return
        self._send_json(200, {"ok": True})

    # -- /v1/images/generations --

    def _generate(self) -> None:
        provider = self.provider
        started = time.monotonic()
        raw = self._read_body()
        body: Any = None
        parsed_ok = False
        if raw:
            try:
                body = json.loads(raw, parse_constant=_reject_constant)
                parsed_ok = True
            except ValueError:  # UnicodeDecodeError and JSONDecodeError included
                pass
        record: dict[str, Any] = {
            "body": body,
            "headers": _canonical_headers(self.headers),
            "status": None,
        }
        with provider._lock:
            provider.calls.append(record)

        scheme, _, token = (self.headers.get("Authorization") or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            self._send_error(401, ERROR_MESSAGES[401], record=record)
            return
        if provider.api_key is not None and token != provider.api_key:
            self._send_error(401, ERROR_MESSAGES[401], record=record)
            return

        # Injected failures come after auth (a wrong key stays a 401 whatever is queued,
        # as a gateway authenticates first) and before validation (a queued 503 does
        # not depend on the body being right, so tests can script failures cheaply).
        failure = provider._take_failure()
        if failure is not None:
            status = failure["status"]
            if status == "disconnect":
                # No answer at all: the client sees the connection drop.
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if status == "timeout":
                provider._stopping.wait(provider.hang_seconds)
            else:
                headers = {}
                if failure.get("retry_after") is not None:
                    headers["Retry-After"] = str(failure["retry_after"])
                message = failure.get("message") or _default_message(status)
                self._send_error(status, message, extra_headers=headers, record=record)
                return

        if not parsed_ok:
            self._send_error(
                400, "Body validation error! Expected a JSON object body", record=record
            )
            return
        try:
            model_id, entry = validate_body(body)
        except ValidationError as exc:
            self._send_error(400, f"{ERROR_MESSAGES[400]} {exc}", record=record)
            return

        # Counted while "generating", so callers can see how many calls a client keeps
        # in flight at once (the studio's throughput target).
        provider._enter()
        try:
            if provider.latency > 0:
                provider._stopping.wait(provider.latency)
        finally:
            provider._leave()
        answer = provider._build_answer(
            model_id, entry, body, self._public_origin(), time.monotonic() - started
        )
        self._send_json(provider.success_status, answer, record=record)

    def _public_origin(self) -> str:
        # URLs follow the Host the client used (e.g. "offline:8001" inside docker
        # compose), as a CDN URL must be reachable by whoever called us.
        host = self.headers.get("Host", "")
        if re.fullmatch(r"[A-Za-z0-9.\-]+(:\d+)?|\[[0-9A-Fa-f:.]+\](:\d+)?", host):
            return f"http://{host}"
        return self.provider.origin


class OfflineProvider:
    """The AI/ML API image endpoint, locally. See the module docstring.

    Binds at construction (so `base_url` is known, also with port 0); start() serves in
    a daemon thread, serve_forever() in the foreground. Attributes latency, api_key,
    nsfw_words, success_status, url_ttl, shape ("auto", "b" or "b64") and hang_seconds may be
    changed while it runs.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        latency: float = 0.0,
        nsfw_words: Iterable[str] = ("nsfw", "nude", "naked"),
        success_status: int = 200,
        url_ttl: float | None = None,
        fail_rate: float = 0.0,
        fail_status: int = 500,
        shape: str = "auto",
        log_requests: bool = False,
    ) -> None:
        self.api_key = api_key
        self.latency = latency
        self.nsfw_words: Iterable[str] = tuple(nsfw_words)
        self.success_status = success_status
        self.url_ttl = url_ttl
        self.fail_rate = fail_rate
        self.fail_status = fail_status
        self.shape = shape
        self.hang_seconds: float = 30.0
        self.log_requests = log_requests
        self.calls: list[dict[str, Any]] = []
        self.cdn_requests: list[dict[str, Any]] = []
        self._failures: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self._random = random.Random()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None

        server_class: type[_Server] = _Server
        if ":" in host:
            server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
        self._server = server_class((host, port), _Handler)
        self._server.provider = self
        self.host = host
        self.port: int = self._server.server_address[1]
        bracketed = f"[{host}]" if ":" in host else host
        self.origin = f"http://{bracketed}:{self.port}"
        self.base_url = f"{self.origin}/v1"

    # -- lifecycle --

    def start(self) -> OfflineProvider:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"offline-provider-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until KeyboardInterrupt (or shutdown from elsewhere)."""
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and free the port. Idempotent."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._close()

    def _close(self) -> None:
        self._stopping.set()
        self._server.server_close()
        # Keep-alive connections would otherwise go on being served by a "stopped" server.
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> OfflineProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- scripting --

    def fail_next(
        self,
        status: int | str,
        times: int = 1,
        *,
        message: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        """Queue `times` failures for the next generation calls (FIFO).

        An int status answers that status with the flat body; "timeout" sleeps
        hang_seconds and then answers normally; "disconnect" closes the connection
        without an answer (the call is recorded with status None).
        """
        if isinstance(status, bool) or not (
            (isinstance(status, int) and 100 <= status <= 599)
            or status in ("timeout", "disconnect")
        ):
            raise ValueError(f"unsupported failure {status!r}")
        entry = {"status": status, "message": message, "retry_after": retry_after}
        with self._lock:
            self._failures.extend(dict(entry) for _ in range(times))

    def generation_calls(self) -> int:
        with self._lock:
            return len(self.calls)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.cdn_requests.clear()
            self._failures.clear()
            self.max_in_flight = 0

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _take_failure(self) -> dict[str, Any] | None:
        with self._lock:
            if self._failures:
                return self._failures.popleft()
        if self.fail_rate > 0 and self._random.random() < self.fail_rate:
            return {"status": self.fail_status}
        return None

    # -- answers --

    def _is_nsfw(self, prompt: str) -> bool:
        words = [w.strip() for w in self.nsfw_words if w and w.strip()]
        if not words:
            return False
        pattern = r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b"
        return re.search(pattern, prompt, re.IGNORECASE) is not None

    def _build_answer(
        self,
        model_id: str,
        entry: dict[str, Any],
        body: dict[str, Any],
        origin: str,
        elapsed: float,
    ) -> dict[str, Any]:
        prompt: str = body["prompt"]
        width, height = resolve_size(model_id, entry, body)
        fmt = body.get("output_format", entry["format"])
        count = int(body.get("num_images", body.get("n", 1)))
        given_seed = body.get("seed")
        seed = int(given_seed) if given_seed is not None else self._random.randint(1, 2**32 - 1)
        issued = time.time()
        tokens = [
            make_token(model_id, prompt, seed + i, width, height, fmt, issued) for i in range(count)
        ]
        ext = EXTENSIONS[fmt]
        urls = [f"{origin}/files/{t}.{ext}" for t in tokens]
        content_type = CONTENT_TYPES[fmt]

        def file_bytes(i: int) -> bytes:
            payload = render_token(tokens[i])
            assert payload is not None
            return payload

        # Inline base64 instead of a URL: dall-e's response_format, Imagen's switch.
        # shape "b64" forces the documented data[] shape with inline images, the answer
        # some models give instead of URLs.
        inline = (
            self.shape == "b64"
            or body.get("response_format") == "b64_json"
            or (body.get("convert_base64_to_url") is False and entry["shape"] == "c")
        )
        shape = "b" if self.shape in ("b", "b64") else entry["shape"]
        if shape == "b":
            data = [
                {
                    "url": None if inline else urls[i],
                    "b64_json": base64.b64encode(file_bytes(i)).decode() if inline else None,
                }
                for i in range(count)
            ]
            return {"data": data, "meta": {"usage": {"credits_used": CREDITS_PER_IMAGE * count}}}
        if shape == "a":
            answer: dict[str, Any] = {
                "images": [
                    {"url": u, "width": width, "height": height, "content_type": content_type}
                    for u in urls
                ],
                "timings": {"inference": round(elapsed, 3)},
                "seed": seed,
                "has_nsfw_concepts": [self._is_nsfw(prompt)] * count,
                "prompt": prompt,
            }
            if model_id == "stable-diffusion-v3-medium":
                answer["num_images"] = count
            return answer
        if shape == "a_file":
            images = [
                {
                    "url": urls[i],
                    "content_type": content_type,
                    "file_name": f"{hashlib.sha256(tokens[i].encode()).hexdigest()[:20]}.{ext}",
                    "file_size": len(file_bytes(i)),
                }
                for i in range(count)
            ]
            answer = {"images": images}
            if "seed" in entry["params"]:
                answer["seed"] = seed
            return answer
        if shape == "c":
            shown = enhance_prompt(prompt) if body.get("enhance_prompt", True) else prompt
            items: list[dict[str, Any]] = []
            for i in range(count):
                item: dict[str, Any] = {"mime_type": content_type}
                if inline:
                    # [U] in §5: the field name for this case is not documented.
                    item["b64_json"] = base64.b64encode(file_bytes(i)).decode()
                else:
                    item["url"] = urls[i]
                item["prompt"] = shown
                items.append(item)
            return {"data": items}
        # shape "d": OpenAI passthrough.
        items = []
        for i in range(count):
            if inline:
                item = {"b64_json": base64.b64encode(file_bytes(i)).decode()}
            else:
                item = {"url": urls[i]}
            if model_id == "dall-e-3":
                item["revised_prompt"] = enhance_prompt(prompt)
            items.append(item)
        return {"created": int(issued), "data": items}


def _main(argv: list[str] | None = None) -> None:
    # Standalone use without Django: python -m generator.offline_provider --port 8001
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--key", default=None)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    provider = OfflineProvider(
        args.host, args.port, api_key=args.key, latency=args.latency, log_requests=True
    )
    print(f"offline provider listening on {provider.base_url}", flush=True)
    try:
        provider.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    _main()
