"""The API's answer keeps what each model's answer carried (aimlapi.md §5) beside the
merged images[] and data[] fields: imagen's mime_type, recraft's file_name and
file_size, meta.usage, and revised_prompt only where the prompt was revised."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.test import RequestFactory

from api.views import answer_json
from generator import services
from generator.models import Generation, ModelSetting
from generator.provider.parser import (
    MAX_EXTRA_FIELDS,
    MAX_EXTRA_TEXT,
    parse_generation_response,
)
from generator.registry import get_model
from offline_provider import answers as reference
from tests.conftest import run_steps

pytestmark = pytest.mark.django_db
PROMPT = "A lighthouse at dusk"
URL = "https://cdn.aimlapi.com/generations/a.png"


def answer_for(owner: Any, model_id: str, **params: Any) -> tuple[dict[str, Any], Generation]:
    """The 200 answer the API gives once the generation has run against the provider."""
    spec = get_model(model_id)
    body = {"model": spec.id, "prompt": PROMPT, **params}
    generation = services.generation_create(owner=owner, spec=spec, body=body)
    generation = run_steps(generation)
    assert generation.status == "succeeded", generation.error
    request = RequestFactory().get("/v1/images/generations")
    return json.loads(
        json.dumps(answer_json(request, generation, generation.owner, None))
    ), generation


def test_imagen_3_keeps_mime_type_and_its_enhanced_prompt(owner, provider):
    answer, _ = answer_for(owner, "imagen-3.0-generate-002", num_images=2)
    enhanced = reference.enhance_prompt(PROMPT)
    for entry in answer["data"]:
        assert entry["mime_type"] == "image/png"
        assert entry["prompt"] == enhanced  # the provider's own field, as it sent it
        assert entry["revised_prompt"] == enhanced  # what OpenAI clients read
        assert entry["url"].startswith("http://testserver/media/generations/")
    assert answer["images"][0]["mime_type"] == "image/png"
    assert answer["images"][0]["content_type"] == "image/png"


def test_imagen_3_without_enhancing_has_no_revised_prompt(owner, provider):
    answer, _ = answer_for(owner, "imagen-3.0-generate-002", enhance_prompt=False)
    assert answer["data"][0]["prompt"] == PROMPT
    assert "revised_prompt" not in answer["data"][0]


@pytest.mark.parametrize("model_id", ["recraft-v3", "google/imagen4/preview"])
def test_the_fal_file_shape_keeps_file_name_and_file_size(owner, provider, model_id):
    answer, generation = answer_for(owner, model_id)
    image = generation.images.get()
    for entry in (answer["images"][0], answer["data"][0]):
        assert entry["file_name"].endswith((".png", ".webp", ".jpeg"))
        # The studio's copy is the provider's file, byte for byte.
        assert entry["file_size"] == image.bytes == default_storage.size(image.file.name)
    assert "revised_prompt" not in answer["data"][0]


def test_an_echoed_prompt_is_not_a_revised_one(owner, provider):
    answer, _ = answer_for(owner, "flux/schnell", image_size="square")
    assert answer["prompt"] == PROMPT
    assert "revised_prompt" not in answer["data"][0]
    assert "meta" not in answer  # fal's shape sends no usage


def test_dall_e_3s_revised_prompt_is_kept(owner, provider):
    ModelSetting.objects.create(model="dall-e-3", enabled=True)
    answer, _ = answer_for(owner, "dall-e-3")
    assert answer["data"][0]["revised_prompt"] == reference.enhance_prompt(PROMPT)


def test_meta_usage_is_the_providers(owner, provider):
    provider.shape = "b"
    answer, _ = answer_for(owner, "flux/schnell", num_images=2, image_size="square")
    assert answer["meta"] == {"usage": {"credits_used": reference.CREDITS_PER_IMAGE * 2}}


def test_a_hostile_answers_extra_fields_are_bounded():
    entry = {
        "url": URL,
        "file_name": "a.png",
        "nested": {"deep": [1, 2, 3]},
        "long_text": "x" * (MAX_EXTRA_TEXT + 1),
        "n" * 65: "a long name",
        "ratio": float("inf"),
        **{f"field_{i}": i for i in range(100)},
    }
    extra = parse_generation_response({"images": [entry]}).images[0].extra
    assert len(extra) == MAX_EXTRA_FIELDS
    assert extra["file_name"] == "a.png"
    assert not {"nested", "long_text", "n" * 65, "ratio", "url"} & set(extra)


def test_the_studios_own_fields_are_never_replaced_by_the_providers(owner, provider):
    answer, generation = answer_for(owner, "flux/schnell", image_size="square")
    # An answer saved before: the provider's url and size must not reach the client.
    Generation.objects.filter(pk=generation.pk).update(
        provider_images=[
            {**generation.provider_images[0], "extra": {"url": URL, "width": 1, "seed": 5}}
        ]
    )
    generation.refresh_from_db()
    request = RequestFactory().get("/")
    again = answer_json(request, generation, generation.owner, None)
    assert again["data"][0]["url"] == answer["data"][0]["url"]
    assert again["images"][0]["width"] == 512 and again["images"][0]["seed"] == 5
