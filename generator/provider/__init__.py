"""The provider (the AI/ML API): the call, its answer and its errors.

Callers import from here (`provider.generate_images`, `provider.ProviderError`); the
submodules are the call (client), the answer parser (parser) and the errors (errors).
"""

from __future__ import annotations

from generator.provider.answer import InlineData
from generator.provider.client import generate_images, parse_retry_after
from generator.provider.errors import PermanentProviderError, ProviderError, TransientProviderError
from generator.provider.parser import (
    MAX_IMAGES_PER_ANSWER,
    ProviderImage,
    ProviderResult,
    parse_generation_response,
)

__all__ = [
    "InlineData",
    "MAX_IMAGES_PER_ANSWER",
    "PermanentProviderError",
    "ProviderError",
    "ProviderImage",
    "ProviderResult",
    "TransientProviderError",
    "generate_images",
    "parse_generation_response",
    "parse_retry_after",
]
