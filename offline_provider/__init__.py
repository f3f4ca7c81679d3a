"""A local stand-in for the AI/ML API image endpoint (POST /v1/images/generations).

Used by the demo setup (``python -m offline_provider``, started by ``make run`` without a
key), by benchmarks and by tests, which start it in a thread. It validates bodies per
model like the real API (aimlapi.md §4), answers in the per-model shapes of §5, serves
the images it "generated" from its own /files/ URLs and can be told to fail, hang or
drop connections.

Standard library plus Pillow only, and outside the studio's apps: it must not import
Django, so that it runs without settings, next to any test process, and is not part of
the production app.
"""

from __future__ import annotations

from .answers import CREDITS_PER_IMAGE, build_answer, enhance_prompt, resolve_size
from .errors import ERROR_MESSAGES, GENERATIONS_PATH, error_body
from .provider import OfflineProvider
from .render import CONTENT_TYPES, EXTENSIONS, make_token, parse_token, render_image, render_token
from .rules import IMAGE_SIZE_PRESETS, IMAGEN_SIZES, MODEL_ALIASES, MODELS, ULTRA_SIZES
from .validation import ValidationError, validate_body

__all__ = [
    "CONTENT_TYPES",
    "CREDITS_PER_IMAGE",
    "ERROR_MESSAGES",
    "EXTENSIONS",
    "GENERATIONS_PATH",
    "IMAGEN_SIZES",
    "IMAGE_SIZE_PRESETS",
    "MODELS",
    "MODEL_ALIASES",
    "OfflineProvider",
    "ULTRA_SIZES",
    "ValidationError",
    "build_answer",
    "enhance_prompt",
    "error_body",
    "make_token",
    "parse_token",
    "render_image",
    "render_token",
    "resolve_size",
    "validate_body",
]
