"""Real clients against the studio: the OpenAI Python SDK (sync and async, generate and
edit) and LiteLLM's `aiml/` provider, each with only the base URL and the key changed,
through live HTTP with real workers and the offline provider."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
import requests
from PIL import Image as PILImage

from accounts.tokens import api_token_create
from generator.models import Generation

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.worker,
    pytest.mark.usefixtures("workers"),
]
PROMPT = "A lighthouse at dusk, oil on canvas"


@pytest.fixture
def token(owner) -> str:
    return api_token_create(user=owner, name="client")[1]


def studio_image(url: str, token: str, live_server: Any) -> PILImage.Image:
    """The image at an answer's URL, which must be the studio's copy."""
    assert url.startswith(live_server.url + "/media/generations/"), url
    response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200
    return PILImage.open(io.BytesIO(response.content))


def png_file(size: tuple[int, int]) -> tuple[str, bytes, str]:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, (30, 90, 160)).save(buffer, "PNG")
    return ("start.png", buffer.getvalue(), "image/png")


def test_openai_sync_generate_with_openai_parameters(live_server, provider, token):
    from openai import OpenAI

    sdk = OpenAI(api_key=token, base_url=live_server.url + "/v1", max_retries=0, timeout=60)
    raw = sdk.images.with_raw_response.generate(
        prompt=PROMPT, size="1024x576", n=2, quality="hd", style="vivid", user="ada-42"
    )  # no model: the studio's default
    assert raw.headers["x-studio-ignored-params"] == "quality,style"
    result = raw.parse()
    assert len(result.data) == 2 and result.created > 0
    assert studio_image(result.data[0].url, token, live_server).size == (1024, 576)
    assert result.data[0].revised_prompt is None  # fal echoes the prompt: not a revision
    generation = Generation.objects.get()
    assert generation.model == "flux-realism" and generation.options["user"] == "ada-42"
    assert generation.params["image_size"] == {"width": 1024, "height": 576}
    assert generation.params["num_images"] == 2
    assert provider.calls
    for call in provider.calls:
        assert not {"quality", "style", "user", "size", "n"} & set(call["body"])


def test_openai_sync_generate_keeps_imagens_own_fields(live_server, provider, token):
    from openai import OpenAI

    sdk = OpenAI(api_key=token, base_url=live_server.url + "/v1", max_retries=0, timeout=60)
    result = sdk.images.generate(model="imagen-3.0-generate-002", prompt=PROMPT, size="1792x1024")
    image = result.data[0]
    assert studio_image(image.url, token, live_server).size == (1024, 576)  # nearest: 16:9
    assert image.revised_prompt and image.revised_prompt != PROMPT
    assert image.model_extra["mime_type"] == "image/png"


def test_openai_async_generate(live_server, provider, token):
    from openai import AsyncOpenAI

    async def generate() -> Any:
        async with AsyncOpenAI(
            api_key=token, base_url=live_server.url + "/v1", max_retries=0, timeout=60
        ) as sdk:
            return await sdk.images.generate(
                model="recraft-v3", prompt=PROMPT, size="auto", style="digital_illustration"
            )

    result = asyncio.run(generate())
    image = result.data[0]
    assert studio_image(image.url, token, live_server).size == (1024, 1024)  # square_hd
    assert image.model_extra["file_name"] and image.model_extra["file_size"] > 0
    assert provider.calls[-1]["body"]["style"] == "digital_illustration"


def test_openai_images_edit_returns_a_studio_image(live_server, provider, token):
    from openai import OpenAI

    sdk = OpenAI(api_key=token, base_url=live_server.url + "/v1", max_retries=0, timeout=60)
    result = sdk.images.edit(
        image=png_file((640, 448)), prompt="the same, at night", n=1, size="1024x1024",
        user="ada-42", response_format="b64_json",
    )  # fmt: skip
    assert result.data[0].b64_json  # asked for inline, as OpenAI answers it
    assert studio_image(result.data[0].url, token, live_server).size == (640, 448)
    generation = Generation.objects.get()
    assert generation.model == "flux/dev/image-to-image"
    assert generation.options["ignored_params"] == ["size"]
    assert provider.calls[-1]["body"]["image_url"].startswith("data:image/png;base64,")


def test_openai_images_edit_with_a_mask_is_a_400(live_server, provider, token):
    from openai import BadRequestError, OpenAI

    sdk = OpenAI(api_key=token, base_url=live_server.url + "/v1", max_retries=0, timeout=60)
    with pytest.raises(BadRequestError, match="does not take a mask"):
        sdk.images.edit(image=png_file((64, 64)), mask=png_file((64, 64)), prompt="p")
    assert Generation.objects.count() == 0 and provider.generation_calls() == 0


def test_litellm_aiml_provider_gets_a_studio_url(live_server, provider, token, monkeypatch):
    # Without it LiteLLM downloads its model cost map when imported.
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    result = litellm.image_generation(
        model="aiml/flux-pro", prompt=PROMPT, size="512x512",
        api_base=live_server.url + "/v1", api_key=token,
    )  # fmt: skip
    assert studio_image(result.data[0].url, token, live_server).size == (512, 512)
    assert provider.calls[-1]["body"]["model"] == "flux-pro"


def test_litellm_openai_prefix_gets_a_studio_url(live_server, provider, token, monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    result = litellm.image_generation(
        model="openai/flux/schnell", prompt=PROMPT, size="512x512", n=1, user="ada-42",
        api_base=live_server.url + "/v1", api_key=token,
    )  # fmt: skip
    assert studio_image(result.data[0].url, token, live_server).size == (512, 512)
    assert Generation.objects.get().options["user"] == "ada-42"
