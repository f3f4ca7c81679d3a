"""api.schema is the one description of a request body: GET /v1/models, the OpenAPI
document and the body checks all agree with it, for every parameter in the registry."""

from __future__ import annotations

import re
from typing import Any

import pytest

from api.openapi import request_schema
from api.schema import model_schema, param_schema
from api.views import BodyError, form_data_from_body
from generator.forms import generation_form
from generator.models import ModelSetting
from generator.registry import MODELS, ModelSpec
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db

START = "https://images.example.com/start.png"
# One decoded JSON value of each JSON Schema type ("null" means "left out" for a
# parameter, so it is not a wrong type).
OF_TYPE: dict[str, Any] = {
    "boolean": True,
    "integer": 7,
    "number": 2.5,
    "string": "7",
    "array": [],
    "object": {},
}
PARAMS = [(spec.id, param.name) for spec in MODELS.values() for param in spec.params]


@pytest.fixture(autouse=True)
def every_model_enabled() -> None:
    # The deprecated models start disabled, and the OpenAPI document lists enabled ones.
    for model_id in MODELS:
        ModelSetting.objects.update_or_create(model=model_id, defaults={"enabled": True})


def base_body(spec: ModelSpec) -> dict[str, Any]:
    body: dict[str, Any] = {"model": spec.id, "prompt": "A lighthouse at dusk"}
    if spec.reference_image:
        body["image_url"] = START
    return body


def example(schema: dict[str, Any]) -> Any:
    """A value the schema allows, read from the schema alone."""
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    if schema["type"] == "object":
        return {name: example(rule) for name, rule in schema["properties"].items()}
    if schema["type"] == "array":
        return [example(schema["items"])]
    return {"integer": schema.get("minimum", 1), "number": schema.get("minimum", 0.5),
            "boolean": True, "string": "a lighthouse"}[schema["type"]]  # fmt: skip


def of_another_type(schema: dict[str, Any]) -> list[Any]:
    allowed = {schema["type"]} | ({"integer"} if schema["type"] == "number" else set())
    return [value for name, value in OF_TYPE.items() if name not in allowed]


@pytest.fixture
def listed(client, owner) -> dict[str, dict[str, dict[str, Any]]]:
    """Each model's /v1/models parameters by name."""
    client.force_login(owner)
    data = client.get("/v1/models").json()["data"]
    return {m["id"]: {p["name"]: p for p in m["parameters"]} for m in data}


@pytest.fixture
def documented(client) -> dict[str, dict[str, Any]]:
    """Each model's OpenAPI request schema."""
    schemas = client.get("/v1/openapi.json").json()["components"]["schemas"]
    requests = [s for name, s in schemas.items() if name.startswith("Request_")]
    return {s["properties"]["model"]["enum"][0]: s for s in requests}


def test_every_model_is_described_once_in_each_place(listed, documented):
    assert set(listed) == set(documented) == set(MODELS)
    for spec in MODELS.values():
        assert documented[spec.id] == request_schema(spec)
        assert set(listed[spec.id]) == set(model_schema(spec)["properties"]) - {"model"}


@pytest.mark.parametrize(("model_id", "name"), PARAMS)
def test_models_and_openapi_describe_a_parameter_with_the_same_schema(
    model_id, name, listed, documented
):
    spec = MODELS[model_id]
    schema = param_schema(spec.param(name))
    # The document adds only that null stands for leaving the parameter out.
    assert documented[model_id]["properties"][name] == {"anyOf": [schema, {"type": "null"}]}
    entry = listed[model_id][name]
    assert entry["schema"] == schema
    assert entry["required"] is (name in documented[model_id]["required"])
    # The flat fields clients read are the schema's own values.
    assert entry["type"].split(" ")[0] == schema["type"]
    for field in ("description", "default", "minimum", "maximum", "maxLength", "enum"):
        assert entry.get(field) == schema.get(field), field


@pytest.mark.parametrize(("model_id", "name"), PARAMS)
def test_the_body_check_accepts_the_schemas_type_and_refuses_the_others(model_id, name, owner):
    spec = MODELS[model_id]
    schema = model_schema(spec)["properties"][name]
    value = example(schema)
    _, data, _ = form_data_from_body({**base_body(spec), name: value})
    # The schema's example is valid for the form too: the two describe the same field.
    form = generation_form(data, viewer=owner)
    assert form.is_valid(), form.errors
    for wrong in of_another_type(schema):
        with pytest.raises(BodyError, match=rf"^{re.escape(name)}: Expected "):
            form_data_from_body({**base_body(spec), name: wrong})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("guidance_scale", "7", "guidance_scale: Expected number, received string"),
        ("num_images", 1.5, "num_images: Expected integer, received float"),
        ("enable_safety_checker", 1, "enable_safety_checker: Expected boolean, received number"),
        ("output_format", ["png"], "output_format: Expected string, received array"),
    ],
)
def test_a_wrong_type_is_named_as_the_provider_names_it(name, value, message):
    with pytest.raises(BodyError, match=f"^{re.escape(message)}$"):
        form_data_from_body({**base_body(MODELS["flux-realism"]), name: value})


def test_a_whole_number_written_with_a_point_is_an_integer(owner):
    _, data, _ = form_data_from_body({**base_body(MODELS["flux-realism"]), "num_images": 2.0})
    form = generation_form(data, viewer=owner)
    assert form.is_valid(), form.errors
    assert form.request_body()["num_images"] == 2


@pytest.mark.parametrize("model_id", list(MODELS))
def test_the_body_check_refuses_a_field_the_schema_does_not_list(model_id):
    spec = MODELS[model_id]
    assert model_schema(spec)["additionalProperties"] is False
    with pytest.raises(BodyError, match="Unrecognized key"):
        form_data_from_body({**base_body(spec), "not_a_parameter": 1})


def test_only_the_schema_module_reads_the_parameter_type_in_the_api():
    readers = {
        f"{path.relative_to(ROOT)}:{number}": line.strip()
        for path in sorted((ROOT / "api").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "kind" in line
    }
    assert readers
    for where, line in readers.items():
        assert where.startswith("api/schema.py:") and "param.kind" in line, where


def test_a_parameter_sent_as_null_is_left_out_as_the_document_says(owner):
    spec = MODELS["flux-realism"]
    _, data, _ = form_data_from_body({**base_body(spec), "seed": None, "image_size": None})
    form = generation_form(data, viewer=owner)
    assert form.is_valid(), form.errors
    assert "seed" not in form.request_body()
    documented = request_schema(spec)["properties"]
    assert {"type": "null"} in documented["seed"]["anyOf"]
    assert {"type": "null"} in documented["image_size"]["anyOf"]
    assert "anyOf" not in documented["prompt"]  # required: never null
