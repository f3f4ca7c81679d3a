"""POST /v1/images/edits: OpenAI's multipart edit form becomes an image-to-image
generation whose starting image is the upload (no worker needed: nothing is sent)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from accounts.tokens import api_token_create
from generator.models import Generation

pytestmark = pytest.mark.django_db
URL = "/v1/images/edits"


@pytest.fixture
def token(owner) -> str:
    return api_token_create(user=owner, name="sdk")[1]


def png(size: tuple[int, int] = (96, 64), name: str = "start.png") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, (200, 80, 40)).save(buffer, "PNG")
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png")


def edit(client: Any, token: str | None, data: dict[str, Any], **headers: str) -> Any:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    headers.setdefault("Prefer", "respond-async")
    return client.post(URL, data=data, headers=headers)


def assert_refused(response: Any, status: int, named: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["statusCode"] == status and body["path"] == URL
    assert named in body["message"]
    assert Generation.objects.count() == 0


def test_an_upload_becomes_the_starting_image_of_the_default_model(client, token):
    response = edit(client, token, {"image": png(), "prompt": "make it night", "n": "2",
                                    "user": "ada", "size": "1024x1024"})  # fmt: skip
    assert response.status_code == 202, response.content
    generation = Generation.objects.get()
    assert generation.model == "flux/dev/image-to-image"
    assert generation.params["num_images"] == 2 and generation.params["prompt"] == "make it night"
    assert "image_url" not in generation.params  # sent from the stored file at call time
    # Re-encoded and stored with the generation, as an upload on the web form is.
    with generation.source_file.open("rb") as fh:
        assert PILImage.open(fh).size == (96, 64)
    assert generation.options == {"user": "ada", "ignored_params": ["size"]}
    assert response["x-studio-ignored-params"] == "size"


def test_the_models_own_fields_are_typed_from_the_form_text(client, token):
    data = {"image[]": png(), "prompt": "p", "strength": "0.5", "seed": "7",
            "enable_safety_checker": "false", "model": "flux/dev/image-to-image"}  # fmt: skip
    assert edit(client, token, data).status_code == 202
    params = Generation.objects.get().params
    assert (params["strength"], params["seed"], params["enable_safety_checker"]) == (0.5, 7, False)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"prompt": "p"}, "image: Required"),
        ({"image": "not a file", "prompt": "p"}, "image: Expected a file"),
        ({"image": [png(), png(name="b.png")], "prompt": "p"}, "starts from one image"),
        ({"image": png(), "prompt": "p", "mask": png(name="mask.png")},
         "mask: flux/dev/image-to-image does not take a mask"),
        ({"image": png(), "prompt": "p", "model": "flux-realism"}, "model: Invalid enum value"),
        ({"image": png(), "prompt": "p", "strength": "lots"},
         "strength: Expected number, received string"),
        ({"image": png(), "prompt": "p", "strength": "2"}, "strength:"),
        ({"image": png(), "prompt": "p", "n": "9"}, "num_images:"),
        ({"image": png(), "prompt": "p", "response_format": "png"}, "response_format"),
        ({"image": png(), "prompt": ""}, "prompt:"),
        ({"image": SimpleUploadedFile("a.png", b"GIF89a not an image"), "prompt": "p"},
         "image: The starting image was refused"),
    ],
)  # fmt: skip
def test_a_bad_edit_is_a_400_naming_the_field(client, token, data, named):
    response = edit(client, token, data)
    assert_refused(response, 400, named)
    assert response.json()["message"].startswith("Body validation error!")


def test_only_a_token_may_edit(client, owner, viewer):
    assert_refused(edit(client, None, {"image": png(), "prompt": "p"}), 401, "API key")
    client.force_login(owner)  # a browser session cannot create: only a token can
    assert_refused(edit(client, None, {"image": png(), "prompt": "p"}), 401, "API key")
    seen = api_token_create(user=viewer, name="v")[1]
    assert_refused(edit(client, seen, {"image": png(), "prompt": "p"}), 403, "cannot generate")


def test_a_json_body_is_refused_with_what_to_send(client, token):
    response = client.post(
        URL, data={"prompt": "p"}, content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip
    assert_refused(response, 400, "multipart/form-data")


def test_an_upload_over_the_limit_is_a_413(client, token, settings):
    settings.REFERENCE_MAX_BYTES = 1024
    big = SimpleUploadedFile("big.png", b"\x89PNG" + b"0" * (1024 * 1024 + 2048))
    assert_refused(edit(client, token, {"image": big, "prompt": "p"}), 413, "too large")


def test_a_get_is_the_flat_405(client, token):
    response = client.get(URL, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 405 and response["Allow"] == "POST"


def test_an_edit_sent_twice_with_one_idempotency_key_is_one_generation(client, token):
    first = edit(client, token, {"image": png(), "prompt": "at night"}, **{"Idempotency-Key": "e1"})
    again = edit(client, token, {"image": png(), "prompt": "at night"}, **{"Idempotency-Key": "e1"})
    assert first.status_code == again.status_code == 202, again.content
    assert first.json()["id"] == again.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert Generation.objects.count() == 1
    # The same key with another edit is refused, and creates nothing.
    other = edit(client, token, {"image": png(), "prompt": "at dawn"}, **{"Idempotency-Key": "e1"})
    assert other.status_code == 422, other.content
    assert Generation.objects.count() == 1


def test_an_sdk_retry_of_the_same_edit_reattaches_and_another_image_does_not(client, token):
    retry = {"x-stainless-retry-count": "1"}
    first = edit(client, token, {"image": png(), "prompt": "at night"})
    again = edit(client, token, {"image": png(), "prompt": "at night"}, **retry)
    assert first.json()["id"] == again.json()["id"]
    other = edit(client, token, {"image": png((64, 64)), "prompt": "at night"}, **retry)
    assert other.json()["id"] != first.json()["id"]
    assert Generation.objects.count() == 2
