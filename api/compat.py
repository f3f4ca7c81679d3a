"""OpenAI's image parameters on the AI/ML API body, and the provider's own answer fields.

Clients written for OpenAI (its SDKs, LiteLLM's `openai/` prefix) send `n`, `size`,
`quality`, `style` and `user` whatever the model. A model that documents the parameter
takes it as its own; otherwise `n` and `size` become the AI/ML API equivalents, and
`quality` and `style` are accepted, left out of the provider's body and named in the
answer's `x-studio-ignored-params` header, so a script sees what had no effect instead
of a 400 it cannot fix without knowing every model.
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any

from django.http import HttpResponse

from api.schema import json_type
from generator.models import CostEntry, Generation
from generator.registry import ModelSpec

IGNORED_HEADER = "x-studio-ignored-params"
# OpenAI's own values: one a model does not offer under the same name (recraft-v3's
# `style` is a house style, not "vivid") is OpenAI's meaning, which that model lacks.
OPENAI_VALUES = {
    "quality": {"standard", "hd", "low", "medium", "high", "auto"},
    "style": {"vivid", "natural"},
}
# OpenAI documents no limit; this one keeps a hostile value out of every page and log.
USER_MAX_LENGTH = 256


class BodyError(Exception):
    """A request body the API refuses, with the field named first ("size: ...")."""


def openai_translate(spec: ModelSpec, data: dict[str, Any], known: set[str]) -> list[str]:
    """Turn the OpenAI parameters in `data` into the model's own, in place.

    `known` is every field the model's schema lists. Returns the parameters accepted
    but ignored, in the order OpenAI documents them. Raises BodyError naming the field.
    """
    ignored = []
    if "n" in data and "n" not in known and "num_images" in known:
        if "num_images" in data:
            raise BodyError("n: give either n or num_images, not both")
        data["num_images"] = data.pop("n")
    if "size" in data and "size" not in known:
        if _translate_size(spec, data, known):
            ignored.append("size")
    elif data.get("size") == "auto":
        # DALL·E: OpenAI's "auto" is the model's default size.
        del data["size"]
    for name in ("quality", "style"):
        if name not in data:
            continue
        param, value = spec.param(name), data[name]
        if not isinstance(value, str):
            if param is None:
                raise BodyError(f"{name}: Expected string, received {json_type(value)}")
            continue  # the model's own parameter: its type check names the field
        offered = {choice for choice, _ in param.choices} if param else set()
        if param is None or (value not in offered and value in OPENAI_VALUES[name]):
            del data[name]
            ignored.append(name)
    return ignored


def _translate_size(spec: ModelSpec, data: dict[str, Any], known: set[str]) -> bool:
    """`size` for a model sized another way; True when the model has no size to set
    (the output follows the starting image)."""
    size = data.pop("size")
    if not isinstance(size, str):
        raise BodyError(f"size: Expected string, received {json_type(size)}")
    auto = size == "auto"
    if not auto:
        width, _, height = size.partition("x")
        if not (width.isdigit() and height.isdigit() and int(width) and int(height)):
            raise BodyError(f"size: Expected 'WIDTHxHEIGHT' or 'auto', received '{size}'")
    if spec.size is not None:
        if "image_size" in data:
            raise BodyError("size: give either size or image_size, not both")
        if not auto:
            data["image_size"] = {"width": int(width), "height": int(height)}
        return False
    if spec.aspect_sizes and "aspect_ratio" in known:
        if "aspect_ratio" in data:
            raise BodyError("size: give either size or aspect_ratio, not both")
        if not auto:
            data["aspect_ratio"] = nearest_aspect_ratio(spec, int(width), int(height))
        return False
    return not auto


def nearest_aspect_ratio(spec: ModelSpec, width: int, height: int) -> str:
    """The documented aspect ratio closest to width:height (compared as logarithms,
    so 2:1 and 1:2 are equally far from 1:1)."""
    wanted = math.log(width / height)
    return min(
        spec.aspect_sizes,
        key=lambda ratio: abs(math.log(_ratio(ratio)) - wanted),
    )


def _ratio(name: str) -> float:
    left, _, right = name.partition(":")
    return int(left) / int(right)


def user_check(value: Any) -> str:
    """OpenAI's `user` (the end user a script acts for), as it is recorded."""
    if not isinstance(value, str):
        raise BodyError(f"user: Expected string, received {json_type(value)}")
    if len(value) > USER_MAX_LENGTH:
        raise BodyError(f"user: String must contain at most {USER_MAX_LENGTH} character(s)")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise BodyError("user: Invalid string: control characters are not allowed")
    return value


def ignored_params(generation: Generation) -> list[str]:
    return list(generation.options.get("ignored_params", ()))


def with_ignored_header(response: HttpResponse, generation: Generation) -> HttpResponse:
    """Name the parameters this generation accepted but did not use, if any."""
    ignored = ignored_params(generation)
    if ignored:
        response[IGNORED_HEADER] = ",".join(ignored)
    return response


# The studio's own fields of an answer entry: a provider field of the same name never
# replaces them (the URL is the studio's copy, the size and type are what it stored).
# revised_prompt is set only where the prompt was revised.
STUDIO_IMAGE_FIELDS = frozenset(
    {"url", "b64_json", "width", "height", "content_type", "revised_prompt"}
)


def with_provider_fields(
    answer: dict[str, Any], generation: Generation, images: list[Any]
) -> dict[str, Any]:
    """Add what the provider sent beyond the merged fields: each image's own fields
    (imagen's mime_type, recraft's file_name and file_size...) on its `images[]` and
    `data[]` entries, `revised_prompt` where the model drew another prompt than the one
    asked, and `meta.usage`."""
    extras = {
        entry.get("index"): entry.get("extra") or {}
        for entry in generation.provider_images or ()
        if isinstance(entry, dict)
    }
    for image, shown, entry in zip(images, answer["images"], answer["data"], strict=True):
        extra = extras.get(image.index, {})
        for target in (shown, entry):
            target.update((k, v) for k, v in extra.items() if k not in STUDIO_IMAGE_FIELDS)
        # DALL·E 3 says revised_prompt; Imagen 3 sends the prompt it enhanced as `prompt`.
        revised = extra.get("revised_prompt") or extra.get("prompt")
        if isinstance(revised, str) and revised.strip() != generation.prompt.strip():
            entry["revised_prompt"] = revised
    usage = _recorded_usage(generation)
    if usage:
        answer["meta"] = {"usage": usage}
    return answer


def _recorded_usage(generation: Generation) -> dict[str, Any] | None:
    usage = CostEntry.objects.filter(generation=generation).values_list("usage", flat=True).first()
    return usage if isinstance(usage, dict) and usage else None
