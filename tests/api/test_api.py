"""The AI/ML-API-compatible gateway: same body, same errors, studio-served images."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
import requests
from PIL import Image as PILImage

from accounts.tokens import api_token_create, api_token_revoke
from generator import services
from generator.models import Generation
from tests.conftest import wait_for

TREX = "A T-Rex relaxing on a beach, lying on a sun lounger and wearing sunglasses."
URL = "/v1/images/generations"


@pytest.fixture
def token(owner) -> str:
    return api_token_create(user=owner, name="notebook")[1]


def post(client: Any, body: Any, token: str | None, **headers: str) -> Any:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", headers=headers)


def assert_flat_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"message", "path", "requestId", "statusCode", "timestamp"}
    assert body["statusCode"] == status and body["path"] == URL
    assert body["timestamp"].endswith("Z")
    return body


# --- Authentication and validation (no worker needed: nothing is sent) ------------------


@pytest.mark.django_db
def test_no_token_is_401_in_the_providers_shape(client, provider, owner):
    assert_flat_error(post(client, {"model": "flux-realism", "prompt": "x"}, None), 401)
    assert_flat_error(post(client, {"model": "flux-realism", "prompt": "x"}, "sk-studio-nope"), 401)
    client.force_login(owner)  # a browser session cannot create: only a token can
    assert_flat_error(post(client, {"model": "flux-realism", "prompt": "x"}, None), 401)
    assert provider.generation_calls() == 0


@pytest.mark.django_db
def test_a_revoked_token_is_refused(client, owner):
    api_token, raw = api_token_create(user=owner, name="old")
    api_token_revoke(token=api_token, user=owner)
    assert_flat_error(post(client, {"model": "flux-realism", "prompt": "x"}, raw), 401)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("{not json", "JSON"),
        ([1, 2], "JSON object"),
        ({"model": "flux-imaginary", "prompt": TREX}, "model"),
        ({"model": "flux-realism"}, "prompt"),
        ({"model": "flux-realism", "prompt": "x" * 4001}, "prompt"),
        ({"model": "flux-realism", "prompt": TREX, "image_size": {"width": 1600, "height": 512}},
         "image_size.width"),
        ({"model": "flux-realism", "prompt": TREX, "image_size": {"width": 1000, "height": 512}},
         "image_size.width"),
        ({"model": "flux-realism", "prompt": TREX, "image_size": "poster"}, "image_size"),
        ({"model": "flux-realism", "prompt": TREX, "guidance_scale": 21}, "guidance_scale"),
        ({"model": "flux-realism", "prompt": TREX, "num_inference_steps": 0},
         "num_inference_steps"),
        ({"model": "flux-realism", "prompt": TREX, "num_images": 5}, "num_images"),
        ({"model": "flux-realism", "prompt": TREX, "num_images": 2.5}, "num_images"),
        ({"model": "flux-realism", "prompt": TREX, "seed": 0}, "seed"),
        ({"model": "flux-realism", "prompt": TREX, "output_format": "gif"}, "output_format"),
        ({"model": "flux-realism", "prompt": TREX, "enable_safety_checker": "yes"},
         "enable_safety_checker"),
        ({"model": "flux-realism", "prompt": TREX, "steps": 4}, "steps"),
        ({"model": "flux-realism", "prompt": TREX, "response_format": "png"}, "response_format"),
        ({"model": "flux-realism", "prompt": TREX, "size": "big"}, "size"),
    ],
)  # fmt: skip
def test_bad_input_is_400_and_reaches_nobody(client, provider, token, body, named):
    error = assert_flat_error(post(client, body, token), 400)
    assert error["message"].startswith("Body validation error!")
    assert named in error["message"]
    assert Generation.objects.count() == 0
    assert provider.generation_calls() == 0


@pytest.mark.django_db
def test_openai_size_and_n_are_translated(client, token, django_capture_on_commit_callbacks):
    body = {"model": "flux-realism", "prompt": TREX, "size": "1024x576", "n": 2}
    with django_capture_on_commit_callbacks():
        response = post(client, body, token, Prefer="respond-async")
    assert response.status_code == 202
    params = Generation.objects.get().params
    assert params["image_size"] == {"width": 1024, "height": 576}
    assert params["num_images"] == 2 and "n" not in params and "size" not in params


@pytest.mark.django_db
def test_respond_async_answers_202_with_a_location(client, owner, token):
    response = post(
        client, {"model": "flux-realism", "prompt": TREX}, token, Prefer="respond-async"
    )
    assert response.status_code == 202
    generation = Generation.objects.get()
    assert generation.owner == owner
    assert response["Location"].endswith(f"/v1/generations/{generation.uuid}")
    assert response.json()["status"] == "queued"
    polled = client.get(response["Location"], headers={"Authorization": f"Bearer {token}"})
    assert polled.status_code == 200 and polled.json()["id"] == str(generation.uuid)


@pytest.mark.django_db
def test_generation_lookup_permission_edges(client, owner, outsider, moderator, token, settings):
    settings.GENERATION_DEFAULT_VISIBILITY = "private"
    post(client, {"model": "flux-realism", "prompt": TREX}, token, Prefer="respond-async")
    url = f"/v1/generations/{Generation.objects.get().uuid}"
    assert client.get(url).status_code == 401
    other = api_token_create(user=outsider, name="x")[1]
    missing = client.get(url, headers={"Authorization": f"Bearer {other}"})
    assert missing.status_code == 404 and missing.json()["statusCode"] == 404
    client.force_login(owner)
    assert client.get(url).status_code == 200  # a signed-in session may read
    client.force_login(moderator)
    assert client.get(url).status_code == 200
    Generation.objects.update(visibility=Generation.Visibility.SHARED)
    shared = client.get(url, headers={"Authorization": f"Bearer {other}"})
    assert shared.status_code == 200  # a teammate may read what is shared with the team


@pytest.mark.django_db
def test_models_lists_the_registry(client, owner, token):
    assert client.get("/v1/models").status_code == 401
    models = client.get("/v1/models", headers={"Authorization": f"Bearer {token}"}).json()
    realism = next(m for m in models["data"] if m["id"] == "flux-realism")
    params = {p["name"]: p for p in realism["parameters"]}
    assert params["prompt"]["maxLength"] == 4000
    assert params["image_size"]["width"] == {"minimum": 512, "maximum": 1536, "multipleOf": 32}
    assert params["num_images"]["maximum"] == 4 and params["num_images"]["default"] == 1
    assert params["output_format"]["enum"] == ["jpeg", "png"]
    assert params["guidance_scale"]["minimum"] == 1 and params["guidance_scale"]["maximum"] == 20
    client.force_login(owner)
    assert client.get("/v1/models").status_code == 200


@pytest.mark.django_db
def test_limits_apply_to_the_api_and_the_form_alike(client, owner, token, settings):
    settings.GENERATION_MAX_ACTIVE_PER_USER = 1
    assert (
        post(
            client, {"model": "flux-realism", "prompt": "a"}, token, Prefer="respond-async"
        ).status_code
        == 202
    )
    error = assert_flat_error(post(client, {"model": "flux-realism", "prompt": "b"}, token), 429)
    assert "limit" in error["message"]
    client.force_login(owner)
    form = client.post("/", {"model": "flux-realism", "prompt": "c", "image_size": "square"})
    assert form.status_code == 429
    assert "limit is 1" in form.text
    assert Generation.objects.count() == 1


@pytest.mark.django_db
def test_the_openapi_document_describes_the_endpoints(client):
    document = client.get("/v1/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert {"/v1/images/generations", "/v1/generations/{id}", "/v1/models"} <= set(
        document["paths"]
    )
    realism = document["components"]["schemas"]["Request_0"]
    assert realism["properties"]["model"]["enum"] == ["flux-realism"]


# --- Through real HTTP with real workers ------------------------------------------------


pipeline = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.mark.usefixtures("workers")
@pytest.mark.django_db(transaction=True)
def test_the_providers_own_python_example_works_against_the_studio(live_server, provider, owner):
    """The docs' requests example with only the host and the key changed."""
    token = api_token_create(user=owner, name="notebook")[1]
    response = requests.post(
        f"{live_server.url}/v1/images/generations",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        json={
            "model": "flux-realism",
            "prompt": TREX,
            "image_size": {"width": 1472, "height": 512},
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    data = response.json()
    image = data["images"][0]
    assert image["url"].startswith(live_server.url + "/media/generations/")
    assert (image["width"], image["height"], image["content_type"]) == (1472, 512, "image/jpeg")
    assert isinstance(data["seed"], int) and data["has_nsfw_concepts"] == [False]
    assert data["prompt"] == TREX and "inference" in data["timings"]
    assert data["data"][0]["url"] == image["url"]

    # The notebook's next line: a plain GET, no token, saves the real JPEG.
    provider.url_ttl = 0.000001  # the provider's CDN copies are gone
    plain = requests.get(image["url"], timeout=10, allow_redirects=False)
    assert plain.status_code == 200
    assert plain.headers["Content-Type"] == "image/jpeg"
    assert plain.headers["X-Content-Type-Options"] == "nosniff"
    picture = PILImage.open(io.BytesIO(plain.content))
    assert (picture.format, picture.size) == ("JPEG", (1472, 512))
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.get(image["url"], headers=auth, timeout=10).content == plain.content

    generation = Generation.objects.get(uuid=data["id"])
    assert generation.owner == owner and generation.seed == str(data["seed"])
    services.generation_visibility_set(generations=[generation], visibility="private", by=owner)
    gone = requests.get(image["url"], timeout=10, allow_redirects=False)
    assert gone.status_code == 404 and gone.json()["statusCode"] == 404


@pytest.mark.usefixtures("workers")
@pytest.mark.django_db(transaction=True)
def test_the_openai_sdk_gets_studio_urls_and_base64(live_server, provider, owner):
    from openai import OpenAI

    token = api_token_create(user=owner, name="sdk")[1]
    sdk = OpenAI(api_key=token, base_url=live_server.url + "/v1", max_retries=0, timeout=60)
    result = sdk.images.generate(
        model="flux-realism", prompt=TREX, extra_body={"image_size": "square_hd"}
    )
    assert result.data[0].url.startswith(live_server.url + "/media/generations/")
    assert result.created > 0
    inline = sdk.images.generate(
        model="flux-realism", prompt="a red fox", response_format="b64_json",
        extra_body={"image_size": "square"},
    )  # fmt: skip
    pixels = PILImage.open(io.BytesIO(base64.b64decode(inline.data[0].b64_json)))
    assert pixels.size == (512, 512)
    assert "response_format" not in provider.calls[-1]["body"]  # answered by the studio


@pytest.mark.usefixtures("workers")
@pytest.mark.django_db(transaction=True)
def test_a_provider_refusal_maps_to_its_status_and_message(live_server, provider, owner):
    token = api_token_create(user=owner, name="x")[1]
    provider.fail_next(403)
    response = requests.post(
        f"{live_server.url}/v1/images/generations",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "flux-realism", "prompt": TREX},
        timeout=60,
    )
    # The provider's 403 is about the studio's key (out of credits), not the caller's.
    assert response.status_code == 502
    assert "The studio's AI/ML API key was refused" in response.json()["message"]
    assert "run out of credits" in response.json()["message"]
    assert response.json()["statusCode"] == 502
    assert "/v1/generations/" in response.headers["Location"]


@pytest.mark.usefixtures("workers")
@pytest.mark.django_db(transaction=True)
def test_an_api_generation_is_in_the_owners_history(live_server, client, provider, owner):
    token = api_token_create(user=owner, name="x")[1]
    response = requests.post(
        f"{live_server.url}/v1/images/generations",
        headers={"Authorization": f"Bearer {token}", "Prefer": "respond-async"},
        json={"model": "flux-realism", "prompt": "from a script"},
        timeout=60,
    )
    assert response.status_code == 202
    location = response.headers["Location"]

    def done() -> dict | None:
        body = requests.get(
            location, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ).json()
        return body if body["status"] in ("succeeded", "failed") else None

    assert wait_for(done, timeout=40)["status"] == "succeeded"
    client.force_login(owner)
    assert "from a script" in client.get("/").text
