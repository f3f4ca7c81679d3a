"""Image-to-image: where the starting image comes from, how it reaches the provider, and
how the result links back to it."""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

import pytest
from django.core import signing
from django.urls import reverse
from PIL import Image as PILImage

from accounts.tokens import api_token_create
from generator import services
from generator.models import Generation, Image
from generator.registry import MODELS
from tests.conftest import run_steps

pytestmark = pytest.mark.django_db

I2I = "flux/dev/image-to-image"
PROMPT = "The same door, painted blue, in winter"


run = run_steps


def finished_image(owner: Any, visibility: str = "shared") -> Image:
    spec = MODELS["flux-realism"]
    body = {"model": spec.id, "prompt": "a red door", "image_size": {"width": 640, "height": 512}}
    generation = run(
        services.generation_create(owner=owner, spec=spec, body=body, visibility=visibility)
    )
    assert generation.status == "succeeded", generation.error
    return generation.images.get()


def post_i2i(client: Any, **fields: Any) -> Any:
    data = {
        "model": I2I,
        "prompt": PROMPT,
        "num_images": "1",
        "strength": "0.8",
        "num_inference_steps": "20",
        "enable_safety_checker": "on",
        **fields,
    }
    return client.post(reverse("generator:studio"), data)


def test_a_studio_image_is_sent_inline_and_the_result_links_back(client, owner, provider):
    source = finished_image(owner)
    client.force_login(owner)
    prefilled = client.get(reverse("generator:studio"), {"model": I2I, "source": source.uuid})
    page = prefilled.content.decode()
    assert 'id="source-preview"' in page and f'value="{source.uuid}"' in page

    response = post_i2i(client, source_image=str(source.uuid))
    assert response.status_code == 303
    generation = Generation.objects.get(model=I2I)
    assert "image_url" not in generation.params  # megabytes never go into the record
    provider.reset()
    generation = run(generation)
    assert generation.status == "succeeded", generation.error
    sent = provider.calls[0]["body"]["image_url"]
    assert sent.startswith("data:image/jpeg;base64,")
    with source.file.open("rb") as fh:
        assert base64.b64decode(sent.split(",", 1)[1]) == fh.read()
    result = generation.images.get()
    assert (result.width, result.height) == (640, 512)  # output follows the reference

    result_page = client.get(reverse("generator:detail", args=[generation.uuid])).content.decode()
    assert "Started from" in result_page
    assert reverse("gallery:image", args=[source.uuid]) in result_page
    image_page = client.get(reverse("gallery:image", args=[result.uuid])).content.decode()
    assert 'id="image-source"' in image_page
    assert reverse("gallery:image", args=[source.uuid]) in image_page
    source_page = client.get(
        reverse("generator:detail", args=[source.generation.uuid])
    ).content.decode()
    assert "Used as a starting image by" in source_page
    assert reverse("generator:detail", args=[generation.uuid]) in source_page


def test_with_a_public_url_the_reference_is_a_signed_expiring_link(
    client, owner, provider, settings
):
    settings.STUDIO_PUBLIC_URL = "https://studio.example.com"
    source = finished_image(owner)
    generation = services.generation_create(
        owner=owner,
        spec=MODELS[I2I],
        body={"model": I2I, "prompt": PROMPT},
        reference=_reference(image=source),
    )
    body = services.generation_request_body(generation)
    prefix = "https://studio.example.com/reference/"
    assert body["image_url"].startswith(prefix)
    path = body["image_url"].removeprefix("https://studio.example.com")

    served = client.get(path)  # no session: the provider fetches it
    assert served.status_code == 200 and served["Content-Type"] == "image/jpeg"
    with source.file.open("rb") as fh:
        assert b"".join(served.streaming_content) == fh.read()
    assert client.get(path[:-3] + "xx/").status_code == 404  # tampered

    class Earlier(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time()) - settings.REFERENCE_URL_TTL - 5)

    old = Earlier(salt=services.REFERENCE_SALT).sign(str(generation.uuid))
    assert client.get(reverse("generator:reference", args=[old])).status_code == 404


def _reference(**kwargs: Any) -> Any:
    from generator.forms import Reference

    return Reference(**kwargs)


def test_nobody_starts_from_an_image_they_cannot_see(client, owner, outsider, provider):
    private = finished_image(owner, visibility="private")
    client.force_login(outsider)
    response = post_i2i(client, source_image=str(private.uuid))
    assert response.status_code == 400
    assert "does not exist or you cannot use it" in response.content.decode()
    assert not Generation.objects.filter(model=I2I).exists()


def test_one_starting_image_is_required(client, owner):
    client.force_login(owner)
    response = post_i2i(client)
    assert response.status_code == 400
    assert "Choose a starting image" in response.content.decode()


def _api(client: Any, token: str, body: dict[str, Any]) -> Any:
    return client.post(
        "/v1/images/generations",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", "Prefer": "respond-async"},
    )


def test_the_api_takes_a_data_uri_a_studio_url_or_an_outside_url(client, owner, provider):
    token = api_token_create(user=owner, name="i2i")[1]
    buffer = io.BytesIO()
    PILImage.new("RGB", (256, 192), "orange").save(buffer, "PNG")
    data_uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert (
        _api(client, token, {"model": I2I, "prompt": PROMPT, "image_url": data_uri}).status_code
        == 202
    )
    uploaded = Generation.objects.get(model=I2I)
    assert uploaded.source_file and "image_url" not in uploaded.params

    source = finished_image(owner)
    url = "http://testserver" + reverse("generator:media", args=[source.file.name])
    assert (
        _api(client, token, {"model": I2I, "prompt": PROMPT, "image_url": url}).status_code == 202
    )
    assert Generation.objects.filter(model=I2I, source_image=source).exists()

    outside = "https://images.example.com/start.png"
    assert (
        _api(client, token, {"model": I2I, "prompt": PROMPT, "image_url": outside}).status_code
        == 202
    )
    assert Generation.objects.filter(model=I2I, params__image_url=outside).exists()

    refused = _api(client, token, {"model": I2I, "prompt": PROMPT, "image_url": "ftp://x/y.png"})
    assert refused.status_code == 400 and "image_url" in refused.json()["message"]
    missing = _api(client, token, {"model": I2I, "prompt": PROMPT})
    assert missing.status_code == 400 and "image_url" in missing.json()["message"]
