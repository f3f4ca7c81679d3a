"""The models the studio offers, one declarative entry each.

The generation form and the provider request body are both built from these
entries, so a parameter a model does not take can be neither shown nor sent. Values
follow the AI/ML API reference for POST /v1/images/generations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
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

    kind is one of "int", "float", "bool", "choice", "text", "colors"; `default` None
    means the parameter is left out of the request unless the user sets it.
    `in_form` False keeps a parameter out of the web form (it only changes how the
    answer is delivered, which the studio handles itself) while the API still accepts
    it and passes it on.
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
    in_form: bool = True
    max_length: int | None = None


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
    """One model as the AI/ML API documents it (aimlapi.md §4).

    `size` is the `image_size` rule for models that take one; `aspect_sizes` maps an
    `aspect_ratio` value to the pixels it gives for models sized that way; a
    `reference_image` model (image-to-image) takes `image_url`, which the studio fills
    from a starting image at call time. `fixed` lists parameters with one allowed value:
    accepted from the API when equal, never shown. `price_per_image` is the studio's
    list-price estimate in USD (MODEL_PRICES overrides it), shown in the form and
    written to the cost ledger.
    """

    id: str
    label: str
    description: str
    prompt_max_length: int
    params: tuple[Param, ...]
    price_per_image: Decimal
    size: SizeRule | None = None
    aspect_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    reference_image: bool = False
    fixed: dict[str, Any] = field(default_factory=dict)
    deprecated: bool = False

    @property
    def max_images(self) -> int:
        count = self.param("num_images") or self.param("n")
        return int(count.maximum) if count and count.maximum else 1

    @property
    def price(self) -> Decimal:
        from django.conf import settings

        return settings.MODEL_PRICES.get(self.id, self.price_per_image)

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
        for name, value in self.fixed.items():
            if name in cleaned and cleaned[name] is not None:
                body[name] = value
        return body

    def requested_size(self, body: dict[str, Any]) -> tuple[int, int] | None:
        """The pixels the body asks for; None when the output follows a reference image."""
        if self.size is not None:
            return self.size.pixels(body.get("image_size") or self.size.default)
        if self.aspect_sizes:
            ratio = self.param("aspect_ratio")
            return self.aspect_sizes.get(body.get("aspect_ratio") or (ratio and ratio.default))
        size = self.param("size")
        if size is not None:
            width, _, height = str(body.get("size") or size.default).partition("x")
            return int(width), int(height)
        return None


def _choices(*values: str) -> tuple[tuple[str, str], ...]:
    return tuple((value, value) for value in values)


def _num_images(maximum: int) -> Param:
    return Param(
        "num_images",
        "int",
        "Images",
        default=1,
        minimum=1,
        maximum=maximum,
        help=f"How many images to make from this prompt (1-{maximum})."
        if maximum > 1
        else "This model makes one image per request.",
    )


def _seed(minimum: int = 1, maximum: int = SEED_MAX) -> Param:
    return Param(
        "seed",
        "int",
        "Seed",
        minimum=minimum,
        maximum=maximum,
        placeholder="random",
        help="The same seed and settings give the same image. Blank picks one.",
    )


GUIDANCE = Param(
    "guidance_scale",
    "float",
    "Guidance",
    minimum=1,
    maximum=20,
    placeholder="3.5",
    help="How closely to follow the prompt (1-20). Blank lets the provider choose.",
)
STEPS = Param(
    "num_inference_steps",
    "int",
    "Steps",
    default=50,
    minimum=1,
    maximum=50,
    help="Denoising steps (1-50); fewer is faster.",
)
OUTPUT_FORMAT = Param(
    "output_format",
    "choice",
    "Format",
    default="jpeg",
    choices=(("jpeg", "JPEG"), ("png", "PNG")),
)
SAFETY_CHECKER = Param(
    "enable_safety_checker",
    "bool",
    "Safety checker",
    default=True,
    help="Let the provider flag NSFW results.",
)
SAFETY_TOLERANCE = Param(
    "safety_tolerance",
    "choice",
    "Safety tolerance",
    default="2",
    choices=tuple((str(n), f"{n}{' (strictest)' if n == 1 else ''}") for n in range(1, 7)),
    help="1 is the strictest, 6 the most permissive.",
)
FAL_SIZE_WIDE = SizeRule(minimum=64, maximum=1536)
ULTRA_SIZES: dict[str, tuple[int, int]] = {
    # Only 16:9 (2752×1536) is documented; the others are the same ~4.2 MP at the ratio.
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
IMAGEN_PARAMS = (
    _num_images(4),
    Param(
        "aspect_ratio",
        "choice",
        "Aspect ratio",
        default="1:1",
        choices=tuple((r, f"{r} ({w}×{h})") for r, (w, h) in IMAGEN_SIZES.items()),
    ),
    _seed(minimum=0, maximum=4294967295),
    Param(
        "enhance_prompt",
        "bool",
        "Enhance prompt",
        default=True,
        help="Let the model rewrite the prompt; the prompt it used is shown with the result.",
    ),
    Param(
        "person_generation",
        "choice",
        "People",
        default="allow_adult",
        choices=(("allow_adult", "Allow adults"), ("dont_allow", "Don't allow people")),
    ),
    Param(
        "safety_setting",
        "choice",
        "Safety filter",
        default="block_medium_and_above",
        choices=(
            ("block_low_and_above", "Block low and above (strictest)"),
            ("block_medium_and_above", "Block medium and above"),
            ("block_only_high", "Block only high"),
        ),
    ),
    Param("add_watermark", "bool", "Add watermark", default=False),
    # Whether the answer carries URLs or base64; the studio mirrors either way.
    Param("convert_base64_to_url", "bool", "URL answer", in_form=False),
)
RESPONSE_FORMAT = Param(
    "response_format",
    "choice",
    "Response format",
    choices=(("url", "url"), ("b64_json", "b64_json")),
    in_form=False,
)
NEGATIVE_PROMPT = Param(
    "negative_prompt",
    "text",
    "Negative prompt",
    max_length=4000,
    help="What the image should not contain.",
)

FLUX_PRO = ModelSpec(
    id="flux-pro",
    label="FLUX.1 [pro]",
    description="Black Forest Labs' original pro model: strong prompt following and detail.",
    prompt_max_length=4000,
    price_per_image=Decimal("0.0525"),
    size=SizeRule(minimum=256, maximum=1440),
    params=(
        _num_images(4),
        GUIDANCE,
        STEPS,
        _seed(),
        OUTPUT_FORMAT,
        SAFETY_TOLERANCE,
    ),
)
FLUX_PRO_11 = ModelSpec(
    id="flux-pro/v1.1",
    label="FLUX 1.1 [pro]",
    description="Faster than FLUX.1 [pro] with better composition; no guidance or steps.",
    prompt_max_length=4000,
    price_per_image=Decimal("0.042"),
    size=SizeRule(minimum=256, maximum=1440),
    params=(_num_images(4), _seed(), OUTPUT_FORMAT, SAFETY_CHECKER, SAFETY_TOLERANCE),
)
FLUX_PRO_ULTRA = ModelSpec(
    id="flux-pro/v1.1-ultra",
    label="FLUX 1.1 [pro] ultra",
    description="Up to 4 megapixels for finals; the size follows the aspect ratio.",
    prompt_max_length=4000,
    price_per_image=Decimal("0.063"),
    aspect_sizes=ULTRA_SIZES,
    fixed={"raw": False},
    params=(
        _num_images(4),
        Param(
            "aspect_ratio",
            "choice",
            "Aspect ratio",
            default="16:9",
            choices=tuple((r, f"{r} ({w}×{h})") for r, (w, h) in ULTRA_SIZES.items()),
        ),
        _seed(),
        OUTPUT_FORMAT,
        SAFETY_CHECKER,
        SAFETY_TOLERANCE,
    ),
)
FLUX_REALISM = ModelSpec(
    id="flux-realism",
    label="FLUX Realism",
    description="FLUX.1 with a realism LoRA: photographic people, places and products.",
    prompt_max_length=4000,
    price_per_image=Decimal("0.0368"),
    size=SizeRule(minimum=512, maximum=1536, multiple=32, default="landscape_4_3"),
    params=(
        _num_images(4),
        GUIDANCE,
        STEPS,
        _seed(),
        OUTPUT_FORMAT,
        SAFETY_CHECKER,
    ),
)
FLUX_DEV = ModelSpec(
    id="flux/dev",
    label="FLUX.1 [dev]",
    description="The open-weights FLUX model: good quality at a lower price (PNG output).",
    prompt_max_length=4000,
    price_per_image=Decimal("0.026"),
    size=SizeRule(minimum=512, maximum=1536),
    params=(_num_images(4), GUIDANCE, STEPS, _seed(), SAFETY_CHECKER),
)
FLUX_DEV_I2I = ModelSpec(
    id="flux/dev/image-to-image",
    label="FLUX.1 [dev] image-to-image",
    description="Starts from an image you choose; the result keeps its size.",
    prompt_max_length=4000,
    price_per_image=Decimal("0.0315"),
    reference_image=True,
    params=(
        _num_images(4),
        Param(
            "strength",
            "float",
            "Strength",
            default=0.95,
            minimum=0,
            maximum=1,
            help="How far to move away from the starting image (0-1); lower keeps more of it.",
        ),
        GUIDANCE,
        STEPS,
        _seed(),
        SAFETY_CHECKER,
    ),
)
FLUX_SCHNELL = ModelSpec(
    id="flux/schnell",
    label="FLUX.1 [schnell]",
    description="The fastest and cheapest FLUX model, for drafts (PNG output).",
    prompt_max_length=4000,
    price_per_image=Decimal("0.003"),
    size=FAL_SIZE_WIDE,
    params=(
        _num_images(4),
        Param(
            "num_inference_steps",
            "int",
            "Steps",
            minimum=1,
            placeholder="4",
            help="Denoising steps; schnell needs only a few. Blank lets the provider choose.",
        ),
        _seed(),
        SAFETY_CHECKER,
    ),
)
IMAGEN_3 = ModelSpec(
    id="imagen-3.0-generate-002",
    label="Google Imagen 3",
    description="Google's Imagen 3: natural light and legible text; prompts up to 400 characters.",
    prompt_max_length=400,
    price_per_image=Decimal("0.042"),
    aspect_sizes=IMAGEN_SIZES,
    params=IMAGEN_PARAMS,
)
IMAGEN_4 = ModelSpec(
    id="google/imagen4/preview",
    label="Google Imagen 4 Preview",
    description="Google's Imagen 4 preview: finer detail; prompts up to 400 characters.",
    prompt_max_length=400,
    price_per_image=Decimal("0.0525"),
    aspect_sizes=IMAGEN_SIZES,
    params=IMAGEN_PARAMS,
)
DALL_E_2 = ModelSpec(
    id="dall-e-2",
    label="OpenAI DALL·E 2",
    description="OpenAI's DALL·E 2. Deprecated by the provider.",
    prompt_max_length=1000,
    price_per_image=Decimal("0.021"),
    deprecated=True,
    params=(
        Param("n", "int", "Images", default=1, minimum=1, maximum=10, help="1-10 images."),
        Param(
            "size",
            "choice",
            "Size",
            default="1024x1024",
            choices=_choices("256x256", "512x512", "1024x1024"),
        ),
        RESPONSE_FORMAT,
    ),
)
DALL_E_3 = ModelSpec(
    id="dall-e-3",
    label="OpenAI DALL·E 3",
    description="OpenAI's DALL·E 3; it rewrites the prompt (shown with the result). "
    "Deprecated by the provider.",
    prompt_max_length=4000,
    price_per_image=Decimal("0.042"),
    deprecated=True,
    params=(
        Param("n", "int", "Images", default=1, minimum=1, maximum=1),
        Param(
            "size",
            "choice",
            "Size",
            default="1024x1024",
            choices=_choices("1024x1024", "1024x1792", "1792x1024"),
        ),
        Param(
            "quality",
            "choice",
            "Quality",
            default="standard",
            choices=(("standard", "Standard"), ("hd", "HD")),
        ),
        Param(
            "style",
            "choice",
            "Style",
            default="vivid",
            choices=(("vivid", "Vivid"), ("natural", "Natural")),
        ),
        RESPONSE_FORMAT,
    ),
)
RECRAFT_V3 = ModelSpec(
    id="recraft-v3",
    label="Recraft V3",
    description="Design-minded: illustration and vector styles, brand colours; one image.",
    prompt_max_length=4000,
    price_per_image=Decimal("0.042"),
    size=SizeRule(minimum=64, maximum=1536, default="square_hd"),
    params=(
        Param(
            "style",
            "choice",
            "Style",
            default="realistic_image",
            choices=tuple((s, s.replace("_", " ").replace("/", " / ")) for s in RECRAFT_STYLES),
        ),
        Param(
            "colors",
            "colors",
            "Colours",
            placeholder="#1d4ed8, #f59e0b",
            help="Preferred colours, as #rrggbb or r,g,b separated by spaces or semicolons.",
        ),
        _num_images(1),
    ),
)
SD3_MEDIUM = ModelSpec(
    id="stable-diffusion-v3-medium",
    label="Stable Diffusion 3 Medium",
    description="Stability AI's SD3 Medium, with a negative prompt and prompt expansion.",
    prompt_max_length=4000,
    price_per_image=Decimal("0.0368"),
    size=SizeRule(minimum=64, maximum=1536, default="square_hd"),
    params=(
        NEGATIVE_PROMPT,
        _num_images(4),
        GUIDANCE,
        STEPS,
        _seed(),
        Param(
            "prompt_expansion",
            "bool",
            "Expand prompt",
            help="Let the model add detail to a short prompt.",
        ),
        SAFETY_CHECKER,
    ),
)
SD35_LARGE = ModelSpec(
    id="stable-diffusion-v35-large",
    label="Stable Diffusion 3.5 Large",
    description="Stability AI's SD3.5 Large: the most detailed Stable Diffusion here.",
    prompt_max_length=4000,
    price_per_image=Decimal("0.0683"),
    size=SizeRule(minimum=64, maximum=1536, default="square_hd"),
    params=(
        NEGATIVE_PROMPT,
        _num_images(4),
        GUIDANCE,
        STEPS,
        _seed(),
        OUTPUT_FORMAT,
        SAFETY_CHECKER,
    ),
)

# flux-realism first: it is the studio's default and the form opens on it.
MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        FLUX_REALISM,
        FLUX_PRO,
        FLUX_PRO_11,
        FLUX_PRO_ULTRA,
        FLUX_DEV,
        FLUX_DEV_I2I,
        FLUX_SCHNELL,
        IMAGEN_3,
        IMAGEN_4,
        RECRAFT_V3,
        SD3_MEDIUM,
        SD35_LARGE,
        DALL_E_2,
        DALL_E_3,
    )
}
# The model database also lists the short id (aimlapi.md §2).
MODEL_ALIASES = {"imagen4/preview": "google/imagen4/preview"}
DEFAULT_MODEL = FLUX_REALISM.id


def get_model(model_id: str) -> ModelSpec | None:
    return MODELS.get(MODEL_ALIASES.get(model_id, model_id))


def model_choices() -> list[tuple[str, str]]:
    return [(spec.id, spec.label) for spec in MODELS.values()]
