"""The models the studio offers, one declarative entry each.

The generation form and the provider request body are both built from these
entries, so a parameter a model does not take can be neither shown nor sent. Values
follow the AI/ML API reference for POST /v1/images/generations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# fal's preset sizes, which the AI/ML API uses for `image_size` strings.
IMAGE_SIZE_PRESETS: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
CUSTOM_SIZE = "custom"

# Seeds are unsigned 64-bit upstream (answers carry seeds above 2**53).
SEED_MAX = 2**64 - 1


@dataclass(frozen=True)
class Param:
    """One request parameter, as the provider names it.

    kind is one of "int", "float", "bool", "choice"; `default` None means the
    parameter is left out of the request unless the user sets it.
    """

    name: str
    kind: str
    label: str
    help: str = ""
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[tuple[str, str], ...] = ()
    placeholder: str = ""


@dataclass(frozen=True)
class SizeRule:
    """`image_size`: a preset, or custom width and height within bounds."""

    minimum: int
    maximum: int
    multiple: int = 32
    default: str = "landscape_4_3"
    presets: tuple[str, ...] = tuple(IMAGE_SIZE_PRESETS)

    def pixels(self, value: str | dict) -> tuple[int, int]:
        if isinstance(value, dict):
            return int(value["width"]), int(value["height"])
        return IMAGE_SIZE_PRESETS[value]


@dataclass(frozen=True)
class ModelSpec:
    id: str
    label: str
    description: str
    prompt_max_length: int
    params: tuple[Param, ...]
    size: SizeRule | None = None
    max_images: int = 1
    deprecated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def build_body(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        """The exact JSON body for POST /images/generations from validated values."""
        body: dict[str, Any] = {"model": self.id, "prompt": cleaned["prompt"]}
        if self.size is not None:
            preset = cleaned.get("image_size") or self.size.default
            if preset == CUSTOM_SIZE:
                body["image_size"] = {"width": cleaned["width"], "height": cleaned["height"]}
            else:
                body["image_size"] = preset
        for param in self.params:
            value = cleaned.get(param.name)
            if value is None or value == "":
                continue
            if param.kind == "float":
                value = float(value)
            body[param.name] = value
        return body

    def requested_size(self, body: dict[str, Any]) -> tuple[int, int] | None:
        if self.size is None or "image_size" not in body:
            return None
        return self.size.pixels(body["image_size"])


FLUX_REALISM = ModelSpec(
    id="flux-realism",
    label="FLUX Realism",
    description="FLUX.1 with a realism LoRA: photographic people, places and products.",
    prompt_max_length=4000,
    size=SizeRule(minimum=512, maximum=1536, multiple=32, default="landscape_4_3"),
    max_images=4,
    params=(
        Param(
            "num_images",
            "int",
            "Images",
            default=1,
            minimum=1,
            maximum=4,
            help="How many images to make from this prompt (1-4).",
        ),
        Param(
            "guidance_scale",
            "float",
            "Guidance",
            minimum=1,
            maximum=20,
            placeholder="3.5",
            help="How closely to follow the prompt (1-20). Blank lets the provider choose.",
        ),
        Param(
            "num_inference_steps",
            "int",
            "Steps",
            default=50,
            minimum=1,
            maximum=50,
            help="Denoising steps (1-50); fewer is faster.",
        ),
        Param(
            "seed",
            "int",
            "Seed",
            minimum=1,
            maximum=SEED_MAX,
            placeholder="random",
            help="The same seed and settings give the same image. Blank picks one.",
        ),
        Param(
            "output_format",
            "choice",
            "Format",
            default="jpeg",
            choices=(("jpeg", "JPEG"), ("png", "PNG")),
        ),
        Param(
            "enable_safety_checker",
            "bool",
            "Safety checker",
            default=True,
            help="Let the provider flag NSFW results.",
        ),
    ),
)

MODELS: dict[str, ModelSpec] = {spec.id: spec for spec in (FLUX_REALISM,)}
DEFAULT_MODEL = FLUX_REALISM.id


def get_model(model_id: str) -> ModelSpec | None:
    return MODELS.get(model_id)


def model_choices() -> list[tuple[str, str]]:
    return [(spec.id, spec.label) for spec in MODELS.values()]
