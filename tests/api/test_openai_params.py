"""OpenAI's image parameters on /v1/images/generations: taken by the models that have
them, translated where the model has an equivalent, otherwise accepted and named in the
x-studio-ignored-params header."""

from __future__ import annotations

import json
from typing import Any

import pytest

from accounts.tokens import api_token_create
from api.compat import nearest_aspect_ratio
from api.views import BodyError, form_data_from_body
from generator.forms import generation_form
from generator.models import Generation, ModelSetting
from generator.registry import DEFAULT_MODEL, MODELS

pytestmark = pytest.mark.django_db
URL = "/v1/images/generations"
PROMPT = "A lighthouse at dusk"


@pytest.fixture
def token(owner) -> str:
    return api_token_create(user=owner, name="sdk")[1]


@pytest.fixture
def dalle_enabled() -> None:
    for model_id in ("dall-e-2", "dall-e-3"):
        ModelSetting.objects.update_or_create(model=model_id, defaults={"enabled": True})


def post(client: Any, body: dict[str, Any], token: str) -> Any:
    return client.post(
        URL,
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", "Prefer": "respond-async"},
    )


def sent(body: dict[str, Any], owner: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The provider body a valid API body becomes, and the studio's options."""
    spec, data, options = form_data_from_body(body)
    form = generation_form(data, viewer=owner)
    assert form.is_valid(), form.errors
    return form.request_body(), options


def test_a_body_without_a_model_uses_the_studios_default(client, token):
    response = post(client, {"prompt": PROMPT}, token)
    assert response.status_code == 202, response.content
    assert Generation.objects.get().model == DEFAULT_MODEL
    assert post(client, {"model": None, "prompt": PROMPT}, token).status_code == 202
    refused = post(client, {"model": "", "prompt": PROMPT}, token)
    assert refused.status_code == 400 and "model:" in refused.json()["message"]


def test_user_is_recorded_and_shown_but_never_sent(client, token):
    response = post(client, {"model": "flux/schnell", "prompt": PROMPT, "user": "ada-42"}, token)
    assert response.status_code == 202
    generation = Generation.objects.get()
    assert generation.options["user"] == "ada-42"
    assert "user" not in generation.params
    assert "x-studio-ignored-params" not in response.headers
    shown = client.get(response["Location"], headers={"Authorization": f"Bearer {token}"})
    assert shown.json()["user"] == "ada-42"


@pytest.mark.parametrize(
    ("user", "message"),
    [
        (42, "user: Expected string, received integer"),
        ("x" * 257, "user: String must contain at most 256 character(s)"),
        ("ada\x00", "user: Invalid string: control characters are not allowed"),
    ],
)
def test_a_bad_user_is_a_400_naming_it(client, token, user, message):
    response = post(client, {"model": "flux/schnell", "prompt": PROMPT, "user": user}, token)
    assert response.status_code == 400
    assert response.json()["message"] == f"Body validation error! {message}"
    assert Generation.objects.count() == 0


def test_quality_and_style_are_ignored_where_the_model_lacks_them(client, token):
    body = {"model": "flux/schnell", "prompt": PROMPT, "quality": "hd", "style": "vivid"}
    response = post(client, body, token)
    assert response.status_code == 202
    assert response["x-studio-ignored-params"] == "quality,style"
    generation = Generation.objects.get()
    assert "quality" not in generation.params and "style" not in generation.params
    shown = client.get(response["Location"], headers={"Authorization": f"Bearer {token}"})
    assert shown.json()["ignored_params"] == ["quality", "style"]


def test_dalle_3_takes_quality_and_style_as_its_own(owner, dalle_enabled):
    body, options = sent(
        {"model": "dall-e-3", "prompt": PROMPT, "quality": "hd", "style": "natural"}, owner
    )
    assert (body["quality"], body["style"]) == ("hd", "natural")
    assert "ignored_params" not in options
    # gpt-image's qualities are OpenAI's too, but not DALL·E 3's: ignored, not refused.
    body, options = sent({"model": "dall-e-3", "prompt": PROMPT, "quality": "high"}, owner)
    assert body["quality"] == "standard" and options["ignored_params"] == ["quality"]


def test_recraft_takes_its_own_styles_and_ignores_openais(owner):
    body, options = sent(
        {"model": "recraft-v3", "prompt": PROMPT, "style": "digital_illustration/pixel_art"},
        owner,
    )
    assert body["style"] == "digital_illustration/pixel_art" and not options
    body, options = sent({"model": "recraft-v3", "prompt": PROMPT, "style": "vivid"}, owner)
    assert body["style"] == "realistic_image" and options["ignored_params"] == ["style"]
    spec, data, _ = form_data_from_body({"model": "recraft-v3", "prompt": PROMPT, "style": "oil"})
    assert "style" in generation_form(data, viewer=owner).errors  # a typo is still an error


def test_size_auto_is_the_models_default(owner, dalle_enabled):
    for model_id in ("flux-realism", "imagen-3.0-generate-002", "dall-e-3"):
        body, options = sent({"model": model_id, "prompt": PROMPT, "size": "auto"}, owner)
        default, _ = sent({"model": model_id, "prompt": PROMPT}, owner)
        assert body == default and not options, model_id


@pytest.mark.parametrize(
    ("size", "ratio"),
    [("1024x1024", "1:1"), ("1792x1024", "16:9"), ("1024x1536", "3:4"), ("1536x1024", "4:3"),
     ("1080x1920", "9:16"), ("3000x1000", "16:9")],
)  # fmt: skip
def test_size_on_an_aspect_ratio_model_is_the_nearest_ratio(owner, size, ratio):
    body, options = sent(
        {"model": "imagen-3.0-generate-002", "prompt": PROMPT, "size": size}, owner
    )
    assert body["aspect_ratio"] == ratio and not options
    assert "size" not in body


def test_the_nearest_ratio_is_taken_from_the_models_own_list():
    ultra = MODELS["flux-pro/v1.1-ultra"]
    assert nearest_aspect_ratio(ultra, 2560, 1080) == "21:9"
    assert nearest_aspect_ratio(ultra, 1200, 800) == "3:2"


def test_size_on_a_model_whose_output_follows_the_starting_image_is_ignored(owner):
    body, options = sent(
        {"model": "flux/dev/image-to-image", "prompt": PROMPT, "size": "1024x1024",
         "image_url": "https://images.example.com/start.png"},
        owner,
    )  # fmt: skip
    assert "size" not in body and options["ignored_params"] == ["size"]


def test_n_is_num_images_wherever_the_model_has_it(owner, dalle_enabled):
    for spec in MODELS.values():
        body = {"model": spec.id, "prompt": PROMPT, "n": 1}
        if spec.reference_image:
            body["image_url"] = "https://images.example.com/start.png"
        provider_body, _ = sent(body, owner)
        name = "n" if spec.param("n") else "num_images"
        assert provider_body[name] == 1, spec.id


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"size": "1024x1024", "aspect_ratio": "1:1"}, "size: give either size or aspect_ratio"),
        ({"size": "0x1024"}, "size: Expected 'WIDTHxHEIGHT' or 'auto'"),
        ({"size": 1024}, "size: Expected string, received integer"),
        ({"quality": 3}, "quality: Expected string, received integer"),
    ],
)
def test_a_malformed_openai_parameter_is_named(body, message):
    with pytest.raises(BodyError, match=f"^{message}"):
        form_data_from_body({"model": "imagen-3.0-generate-002", "prompt": PROMPT, **body})
