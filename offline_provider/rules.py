"""The documented per-model rules: which fields each model takes, their bounds, its
answer shape and default format, and the sizes it renders (aimlapi.md §3 and §4).

Written from the docs and kept apart from the studio's model registry on purpose: the
offline provider checks the studio, so it must not share the studio's mistakes.
"""

from __future__ import annotations

from typing import Any

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

# What this stand-in charges per image, in USD: the provider's published list prices
# (https://aimlapi.com/ai-ml-api-pricing) as the studio's registry estimates them. The
# answer reports price × images in its x-aimlapi-usd-spent header, as the real API
# reports what it charged; OfflineProvider(prices=...) or --price replaces a figure.
USD_PER_IMAGE: dict[str, str] = {
    "flux-pro": "0.0525",
    "flux-pro/v1.1": "0.042",
    "flux-pro/v1.1-ultra": "0.063",
    "flux-realism": "0.0368",
    "flux/dev": "0.026",
    "flux/dev/image-to-image": "0.0315",
    "flux/schnell": "0.003",
    "imagen-3.0-generate-002": "0.042",
    "google/imagen4/preview": "0.0525",
    "dall-e-2": "0.021",
    "dall-e-3": "0.042",
    "recraft-v3": "0.042",
    "stable-diffusion-v3-medium": "0.0368",
    "stable-diffusion-v35-large": "0.0683",
}
