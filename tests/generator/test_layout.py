"""Values a lower app keeps a copy of because it may not import the generator."""

from __future__ import annotations

from accounts.token_views import EXAMPLE_MODEL
from generator.registry import DEFAULT_MODEL


def test_the_tokens_page_example_uses_the_registry_default_model():
    assert EXAMPLE_MODEL == DEFAULT_MODEL
