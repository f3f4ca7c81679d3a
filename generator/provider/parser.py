"""The provider's answer, in whatever documented shape it comes (aimlapi.md §5).

Pure functions on decoded JSON, with no I/O: generator.provider.client reads the body,
and every shape can be tested without a server. An inline image the client kept out of
memory arrives as an InlineData (generator.provider.answer) where its text would be.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal

from generator.provider.answer import InlineData
from generator.provider.errors import PermanentProviderError

logger = logging.getLogger(__name__)

# More images than any model's num_images allows (4, or 10 for dall-e-2): a longer list
# is a broken or hostile answer, and each entry would cost a download.
MAX_IMAGES_PER_ANSWER = 16
# The per-image fields kept besides the image itself (file_name, file_size, mime_type,
# revised_prompt, prompt: a handful in every documented shape). Each is saved with the
# generation and shown to API clients, so a hostile answer must not make them large:
# only this many, with short names and scalar values, text no longer than a prompt.
MAX_EXTRA_FIELDS = 16
MAX_EXTRA_NAME = 64
MAX_EXTRA_TEXT = 8000


@dataclass
class ProviderImage:
    url: str | None
    # The base64 text (or data: URI), in memory or, from a long answer, in a file.
    b64_json: str | InlineData | None
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
    # What the provider says the call cost: its x-aimlapi-usd-spent and
    # x-aimlapi-credits-used headers (or meta.usage), filled in by the client.
    usd_spent: Decimal | None = None
    credits_used: Decimal | None = None


# Long on purpose: every documented shape is told apart in one place (aimlapi.md §5).
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
    url = entry.get("url") if isinstance(entry.get("url"), str | InlineData) else None
    b64 = entry.get("b64_json") if isinstance(entry.get("b64_json"), str | InlineData) else None
    if url is not None and url.startswith("data:") and b64 is None:
        # fal's sync_mode returns the image as a data: URI in `url`.
        url, b64 = None, url
    if isinstance(url, InlineData):
        url = url.text()  # a URL that long is refused later, when it is checked
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
        extra=_extra_fields(entry, consumed),
    )


def _extra_fields(entry: dict, consumed: set[str]) -> dict:
    """The entry's other fields as sent, bounded (MAX_EXTRA_FIELDS): nested values,
    long names and long text are left out, never cut, so what is kept is what was sent."""
    extra: dict = {}
    for name, value in entry.items():
        if len(extra) >= MAX_EXTRA_FIELDS:
            break
        if name in consumed or len(name) > MAX_EXTRA_NAME:
            continue
        if isinstance(value, str) and len(value) > MAX_EXTRA_TEXT:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        if value is None or isinstance(value, str | bool | int | float):
            extra[name] = value
    return extra


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
