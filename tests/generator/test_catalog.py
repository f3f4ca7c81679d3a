"""Every model of the registry against the reference, through the form, the API and the
offline provider (whose validation table is written separately from the registry)."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from PIL import Image as PILImage

import offline_provider as reference
from accounts.tokens import api_token_create
from generator import services
from generator.models import CostEntry, Generation, Image
from generator.registry import CUSTOM_SIZE, MODELS, ModelSpec, get_model
from tests.conftest import run_steps

pytestmark = pytest.mark.django_db

PROMPT = "A lighthouse at dusk, waves breaking on the rocks"
I2I = "flux/dev/image-to-image"


@pytest.fixture
def all_models_enabled(admin_user: Any) -> None:
    # DALL·E starts disabled (deprecated upstream); these tests cover it as an admin would.
    for spec in MODELS.values():
        if spec.deprecated:
            services.model_setting_set(model=spec.id, enabled=True, by=admin_user)


@pytest.fixture
def source_image(owner: Any, provider: Any) -> Image:
    """A finished studio image to start image-to-image from (640×512)."""
    body = {"model": "flux-realism", "prompt": "a red door"}
    body["image_size"] = {"width": 640, "height": 512}
    spec = MODELS["flux-realism"]
    generation = run(services.generation_create(owner=owner, spec=spec, body=body))
    assert generation.status == "succeeded", generation.error
    provider.reset()
    return generation.images.get()


run = run_steps


def form_data(spec: ModelSpec) -> dict[str, str]:
    """What the studio form posts when a user only types a prompt."""
    data = {"model": spec.id, "prompt": PROMPT}
    if spec.size is not None:
        data["image_size"] = spec.size.default
    for param in spec.params:
        if not param.in_form:
            continue
        if param.kind == "bool":
            if param.default:
                data[param.name] = "on"
        elif param.default is not None:
            data[param.name] = str(param.default)
    return data


def documented(spec: ModelSpec) -> set[str]:
    names = {p.name for p in spec.params} | set(spec.fixed)
    if spec.size is not None:
        names.add("image_size")
    if spec.reference_image:
        names.add("image_url")
    return names


# --- The registry is the reference -------------------------------------------------------


def test_the_registry_offers_exactly_the_documented_models():
    assert list(MODELS)[0] == "flux-realism"
    assert set(MODELS) == set(reference.MODELS)
    assert {m for m, s in MODELS.items() if s.deprecated} == {"dall-e-2", "dall-e-3"}


@pytest.mark.parametrize("model_id", list(MODELS))
def test_each_model_takes_exactly_its_documented_parameters(model_id):
    spec = MODELS[model_id]
    table = reference.MODELS[model_id]
    assert documented(spec) == set(table["params"])
    assert spec.prompt_max_length == table["prompt_max"]
    if spec.size is not None:
        assert (spec.size.minimum, spec.size.maximum) == (
            table["params"]["image_size"]["min"],
            table["params"]["image_size"]["max"],
        )
        assert spec.size.default == table.get("default_size", "landscape_4_3")
    for param in spec.params:
        rule = table["params"][param.name]
        if rule["type"] == "enum":
            assert {value for value, _ in param.choices} == set(rule["values"]), param.name
        elif rule["type"] == "literal":
            assert param.minimum == param.maximum == rule["value"], param.name
        elif rule["type"] in ("number", "integer"):
            for bound, ours in (("min", param.minimum), ("max", param.maximum)):
                if rule[bound] is not None:
                    assert ours == rule[bound], f"{param.name} {bound}"
                else:
                    # Where the reference leaves a bound open the studio adds one only for
                    # strength (0-1, its meaningful range) and seeds (unsigned 64-bit).
                    assert ours is None or param.name in ("strength", "seed"), param.name
        elif rule["type"] == "boolean":
            assert param.kind == "bool", param.name


@pytest.mark.parametrize("model_id", list(MODELS))
def test_a_form_request_is_a_valid_reference_request(
    model_id, client, owner, provider, all_models_enabled, request
):
    spec = MODELS[model_id]
    data = form_data(spec)
    if spec.reference_image:
        data["source_image"] = str(request.getfixturevalue("source_image").uuid)
    client.force_login(owner)
    response = client.post(reverse("generator:studio"), data)
    assert response.status_code == 303, response.content.decode()[:3000]
    generation = Generation.objects.latest("id")
    body = services.generation_request_body(generation)
    # The independent validator accepts it, and nothing undocumented is in it.
    assert reference.validate_body(body)[0] == spec.id
    assert set(body) - {"model", "prompt"} <= documented(spec)
    for param in spec.params:
        if param.in_form and param.default is not None and param.kind != "bool":
            assert body[param.name] == param.default, param.name
    assert provider.generation_calls() == 0  # nothing is sent before a worker runs it


def _bounded() -> list[tuple[str, str, float]]:
    cases = []
    for spec in MODELS.values():
        for param in spec.params:
            if not param.in_form:
                continue
            if param.minimum is not None:
                cases.append((spec.id, param.name, param.minimum - 1))
            if param.maximum is not None:
                cases.append((spec.id, param.name, param.maximum + 1))
        if spec.size is not None:
            cases.append((spec.id, "width", spec.size.minimum - 32))
            cases.append((spec.id, "height", spec.size.maximum + 32))
    return cases


@pytest.mark.parametrize(("model_id", "field", "value"), _bounded())
def test_an_out_of_range_value_is_refused_at_the_form_and_the_api(
    model_id, field, value, client, owner, provider, all_models_enabled
):
    spec = MODELS[model_id]
    data = form_data(spec)
    if spec.reference_image:
        data["image_url"] = "https://images.example.com/start.png"
    if field in ("width", "height"):
        data.update(image_size=CUSTOM_SIZE, width="512", height="512")
    data[field] = str(value)
    client.force_login(owner)
    response = client.post(reverse("generator:studio"), data)
    assert response.status_code == 400
    assert f'id="id_{field}_error"' in response.content.decode()

    token = api_token_create(user=owner, name="catalog")[1]
    body: dict[str, Any] = {"model": spec.id, "prompt": PROMPT}
    if spec.reference_image:
        body["image_url"] = "https://images.example.com/start.png"
    if field in ("width", "height"):
        body["image_size"] = {"width": 512, "height": 512, field: int(value)}
        named = f"image_size.{field}"
    else:
        body[field] = value
        named = field
    answer = client.post(
        "/v1/images/generations",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 400
    assert named in answer.json()["message"]
    assert Generation.objects.count() == 0
    assert provider.generation_calls() == 0


# --- Every answer shape, mirrored ------------------------------------------------------------


def default_body(spec: ModelSpec, **extra: Any) -> dict[str, Any]:
    form_values = {k: v for k, v in form_data(spec).items() if k not in ("model", "prompt")}
    cleaned: dict[str, Any] = {"prompt": PROMPT}
    for param in spec.params:
        if param.name in form_values:
            cleaned[param.name] = form_values[param.name]
            if param.kind == "int":
                cleaned[param.name] = int(form_values[param.name])
            if param.kind == "bool":
                cleaned[param.name] = True
    cleaned["image_size"] = form_values.get("image_size")
    return {**spec.build_body(cleaned), **extra}


@pytest.mark.parametrize("model_id", list(MODELS))
def test_each_models_answer_is_mirrored_with_sizes_read_from_the_files(
    model_id, owner, provider, all_models_enabled, request
):
    spec = MODELS[model_id]
    reference_image = request.getfixturevalue("source_image") if spec.reference_image else None
    count_param = "n" if spec.param("n") else "num_images"
    count = min(2, spec.max_images)
    body = default_body(spec, **{count_param: count})
    generation = services.generation_create(
        owner=owner,
        spec=spec,
        body=body,
        reference=services_reference(image=reference_image),
    )
    generation = run(generation)
    assert generation.status == "succeeded", generation.error
    images = list(generation.images.order_by("index"))
    assert len(images) == count
    expected = spec.requested_size(body) or (reference_image.width, reference_image.height)
    for image in images:
        with PILImage.open(image.file.path) as stored:
            assert stored.size == (image.width, image.height) == expected
    answer = provider.calls[-1]
    assert answer["status"] in (200, 201)
    assert CostEntry.objects.get(generation=generation).estimated_usd == spec.price * count


def services_reference(*, image: Image | None = None, upload: bytes | None = None) -> Any:
    from generator.forms import Reference

    return Reference(image=image, upload=upload) if (image or upload) else None


def test_imagen_3s_enhanced_prompt_is_kept_and_shown(client, owner, provider):
    spec = get_model("imagen-3.0-generate-002")
    generation = run(services.generation_create(owner=owner, spec=spec, body=default_body(spec)))
    assert generation.status == "succeeded", generation.error
    assert generation.provider_prompt == reference.enhance_prompt(PROMPT)
    client.force_login(owner)
    page = client.get(reverse("generator:detail", args=[generation.uuid])).content.decode()
    assert "Prompt as the provider used it" in page
    assert generation.provider_prompt in page


def test_dall_e_3s_revised_prompt_is_kept(owner, provider, all_models_enabled):
    spec = get_model("dall-e-3")
    generation = run(services.generation_create(owner=owner, spec=spec, body=default_body(spec)))
    assert generation.status == "succeeded", generation.error
    assert generation.provider_prompt == reference.enhance_prompt(PROMPT)


@pytest.mark.parametrize("shape", ["b", "b64"])
def test_the_documented_data_shape_and_its_credits_reach_the_ledger(shape, owner, provider):
    provider.shape = shape
    spec = get_model("flux/schnell")
    body = default_body(spec, num_images=2, image_size="square")
    generation = run(services.generation_create(owner=owner, spec=spec, body=body))
    assert generation.status == "succeeded", generation.error
    assert [(i.width, i.height) for i in generation.images.all()] == [(512, 512)] * 2
    entry = CostEntry.objects.get(generation=generation)
    assert entry.credits_used == Decimal(reference.CREDITS_PER_IMAGE * 2)
    assert entry.owner == owner and entry.images == 2


def test_dall_e_b64_answers_are_mirrored(owner, provider, all_models_enabled):
    spec = get_model("dall-e-2")
    body = default_body(spec, n=2, size="256x256", response_format="b64_json")
    generation = run(services.generation_create(owner=owner, spec=spec, body=body))
    assert generation.status == "succeeded", generation.error
    assert [(i.width, i.height) for i in generation.images.all()] == [(256, 256)] * 2
    assert provider.cdn_requests == []


# --- Deprecated models ------------------------------------------------------------------------


def test_deprecated_models_are_shown_disabled_until_an_admin_enables_them(
    client, owner, admin_user, provider
):
    client.force_login(owner)
    page = client.get(reverse("generator:studio")).content.decode()
    assert '<option value="dall-e-3" disabled>OpenAI DALL·E 3 (deprecated, disabled)' in page
    refused = client.post(reverse("generator:studio"), form_data(MODELS["dall-e-3"]))
    assert refused.status_code == 400 and "deprecated by the provider" in refused.content.decode()
    token = api_token_create(user=owner, name="x")[1]
    api = client.post(
        "/v1/images/generations",
        data=json.dumps({"model": "dall-e-3", "prompt": PROMPT}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert api.status_code == 400 and "deprecated" in api.json()["message"]

    # A member cannot turn it on; an admin can, from the models page.
    toggle = reverse("generator:model-enable", args=["dall-e-3"])
    assert client.post(toggle, {"enabled": "true"}).status_code == 403
    client.force_login(admin_user)
    assert client.post(toggle, {"enabled": "true"}).status_code == 303
    client.force_login(owner)
    accepted = client.post(reverse("generator:studio"), form_data(MODELS["dall-e-3"]))
    assert accepted.status_code == 303
    assert Generation.objects.get().model == "dall-e-3"


def test_the_form_shows_the_models_description_and_price(client, owner):
    client.force_login(owner)
    page = client.get(
        reverse("generator:studio"), {"model": "flux/schnell"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert MODELS["flux/schnell"].description in page
    assert "About $0.0030 per image" in page
    assert 'name="guidance_scale"' not in page  # schnell takes none


def test_an_uploaded_png_passes_and_a_fake_one_is_refused(client, owner, provider):
    client.force_login(owner)
    data = form_data(MODELS[I2I])
    buffer = io.BytesIO()
    PILImage.new("RGB", (320, 256), "teal").save(buffer, "JPEG")
    buffer.name = "start.jpg"
    buffer.seek(0)
    response = client.post(reverse("generator:studio"), {**data, "image_file": buffer})
    assert response.status_code == 303, response.content.decode()[:2000]
    generation = Generation.objects.get()
    with generation.source_file.open("rb") as fh, PILImage.open(fh) as stored:
        assert stored.format == "PNG" and stored.size == (320, 256)  # re-encoded
    fake = io.BytesIO(b"<html><script>alert(1)</script></html>")
    fake.name = "start.png"
    refused = client.post(reverse("generator:studio"), {**data, "image_file": fake})
    assert refused.status_code == 400
    assert "The starting image was refused" in refused.content.decode()
    assert Generation.objects.count() == 1
