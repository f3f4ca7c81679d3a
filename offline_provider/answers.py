"""Successful answers in each model's documented shape (aimlapi.md §5).

Shapes: "a" (fal: images with sizes, seed, timings, has_nsfw_concepts), "a_file" (fal
with file names and sizes), "b" (data[] with url or b64_json and credits used), "c"
(Imagen: data[] with mime types and the rewritten prompt) and "d" (OpenAI passthrough).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import random
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .render import CONTENT_TYPES, EXTENSIONS, MAX_SIDE, make_token, render_token
from .rules import I2I_DEFAULT_SIZE, IMAGE_SIZE_PRESETS, IMAGEN_SIZES, ULTRA_SIZES

# Shape B's meta.usage.credits_used per image; only the order of magnitude matters.
CREDITS_PER_IMAGE = 2100


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


def enhance_prompt(prompt: str) -> str:
    # Imagen 3 answers with its rewritten prompt (§5 C); a stable suffix is enough to
    # let clients tell it apart from what they sent.
    return f"{prompt.rstrip().rstrip('.')}, highly detailed, natural lighting, sharp focus"


def is_nsfw(prompt: str, nsfw_words: Iterable[str]) -> bool:
    words = [w.strip() for w in nsfw_words if w and w.strip()]
    if not words:
        return False
    pattern = r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b"
    return re.search(pattern, prompt, re.IGNORECASE) is not None


@dataclass
class _Batch:
    """What every shape is built from: the images of one generation call."""

    model_id: str
    entry: dict[str, Any]
    body: dict[str, Any]
    width: int
    height: int
    seed: int
    issued: float
    tokens: list[str]
    urls: list[str]
    ext: str
    content_type: str
    inline: bool

    @property
    def prompt(self) -> str:
        return self.body["prompt"]

    @property
    def count(self) -> int:
        return len(self.tokens)

    def file_bytes(self, i: int) -> bytes:
        payload = render_token(self.tokens[i])
        assert payload is not None
        return payload

    def b64(self, i: int) -> str:
        return base64.b64encode(self.file_bytes(i)).decode()


def build_answer(
    model_id: str,
    entry: dict[str, Any],
    body: dict[str, Any],
    *,
    origin: str,
    elapsed: float,
    rng: random.Random,
    shape: str = "auto",
    nsfw_words: Iterable[str] = (),
) -> dict[str, Any]:
    """The success body for a validated request.

    `origin` prefixes the /files/ URLs; `rng` picks the seed when the body gives none;
    `shape` is the provider's override ("auto", "b" or "b64", see OfflineProvider).
    """
    prompt: str = body["prompt"]
    width, height = resolve_size(model_id, entry, body)
    fmt = body.get("output_format", entry["format"])
    count = int(body.get("num_images", body.get("n", 1)))
    given_seed = body.get("seed")
    seed = int(given_seed) if given_seed is not None else rng.randint(1, 2**32 - 1)
    issued = time.time()
    tokens = [
        make_token(model_id, prompt, seed + i, width, height, fmt, issued) for i in range(count)
    ]
    ext = EXTENSIONS[fmt]
    # Inline base64 instead of a URL: dall-e's response_format, Imagen's switch.
    # shape "b64" forces the documented data[] shape with inline images, the answer
    # some models give instead of URLs.
    inline = (
        shape == "b64"
        or body.get("response_format") == "b64_json"
        or (body.get("convert_base64_to_url") is False and entry["shape"] == "c")
    )
    batch = _Batch(
        model_id=model_id,
        entry=entry,
        body=body,
        width=width,
        height=height,
        seed=seed,
        issued=issued,
        tokens=tokens,
        urls=[f"{origin}/files/{t}.{ext}" for t in tokens],
        ext=ext,
        content_type=CONTENT_TYPES[fmt],
        inline=inline,
    )
    answer_shape = "b" if shape in ("b", "b64") else entry["shape"]
    if answer_shape == "b":
        return _shape_b(batch)
    if answer_shape == "a":
        return _shape_a(batch, elapsed, is_nsfw(prompt, nsfw_words))
    if answer_shape == "a_file":
        return _shape_a_file(batch)
    if answer_shape == "c":
        return _shape_c(batch)
    return _shape_d(batch)


def _shape_b(batch: _Batch) -> dict[str, Any]:
    data = [
        {
            "url": None if batch.inline else batch.urls[i],
            "b64_json": batch.b64(i) if batch.inline else None,
        }
        for i in range(batch.count)
    ]
    return {"data": data, "meta": {"usage": {"credits_used": CREDITS_PER_IMAGE * batch.count}}}


def _shape_a(batch: _Batch, elapsed: float, nsfw: bool) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "images": [
            {
                "url": u,
                "width": batch.width,
                "height": batch.height,
                "content_type": batch.content_type,
            }
            for u in batch.urls
        ],
        "timings": {"inference": round(elapsed, 3)},
        "seed": batch.seed,
        "has_nsfw_concepts": [nsfw] * batch.count,
        "prompt": batch.prompt,
    }
    if batch.model_id == "stable-diffusion-v3-medium":
        answer["num_images"] = batch.count
    return answer


def _shape_a_file(batch: _Batch) -> dict[str, Any]:
    images = [
        {
            "url": batch.urls[i],
            "content_type": batch.content_type,
            "file_name": f"{hashlib.sha256(token.encode()).hexdigest()[:20]}.{batch.ext}",
            "file_size": len(batch.file_bytes(i)),
        }
        for i, token in enumerate(batch.tokens)
    ]
    answer: dict[str, Any] = {"images": images}
    if "seed" in batch.entry["params"]:
        answer["seed"] = batch.seed
    return answer


def _shape_c(batch: _Batch) -> dict[str, Any]:
    prompt = batch.prompt
    shown = enhance_prompt(prompt) if batch.body.get("enhance_prompt", True) else prompt
    items: list[dict[str, Any]] = []
    for i in range(batch.count):
        item: dict[str, Any] = {"mime_type": batch.content_type}
        if batch.inline:
            # [U] in §5: the field name for this case is not documented.
            item["b64_json"] = batch.b64(i)
        else:
            item["url"] = batch.urls[i]
        item["prompt"] = shown
        items.append(item)
    return {"data": items}


def _shape_d(batch: _Batch) -> dict[str, Any]:
    # OpenAI passthrough.
    items: list[dict[str, Any]] = []
    for i in range(batch.count):
        item = {"b64_json": batch.b64(i)} if batch.inline else {"url": batch.urls[i]}
        if batch.model_id == "dall-e-3":
            item["revised_prompt"] = enhance_prompt(batch.prompt)
        items.append(item)
    return {"created": int(batch.issued), "data": items}
