"""GET /v1/models and GET /v1/openapi.json: the registry as clients read it.

Both describe each model's parameters with api.schema, the schema the body checks in
api.views use, so what a client is told is what the API accepts.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from api.openapi import openapi_document
from api.schema import model_schema
from api.views import allow_methods, request_user
from generator.registry import MODELS, ModelSpec
from generator.selectors import enabled_model_ids
from studio.http import unauthorized

# Copied from each parameter's schema to the top of its /v1/models entry, where clients
# read them from before the entry carried the schema itself.
FLAT_FIELDS = ("description", "default", "minimum", "maximum", "maxLength", "enum")


def _type_label(schema: dict[str, Any]) -> str:
    """A short reading of the schema's type: "integer", "array of {r, g, b}", ..."""
    if "oneOf" in schema:
        return " | ".join(_type_label(choice) for choice in schema["oneOf"])
    if schema["type"] == "object":
        return "{" + ", ".join(schema["properties"]) + "}"
    if schema["type"] == "array":
        return f"array of {_type_label(schema['items'])}"
    return schema["type"]


def parameter_json(name: str, schema: dict[str, Any], required: bool) -> dict[str, Any]:
    """One entry of a model's `parameters`: the flat fields, then the whole schema."""
    entry: dict[str, Any] = {"name": name, "type": _type_label(schema), "required": required}
    entry.update((field, schema[field]) for field in FLAT_FIELDS if field in schema)
    # image_size: the preset names, and the bounds of a custom width and height.
    for choice in schema.get("oneOf", ()):
        if "enum" in choice:
            entry["enum"] = choice["enum"]
        for side, rule in choice.get("properties", {}).items():
            entry[side] = {key: value for key, value in rule.items() if key != "type"}
    entry["schema"] = schema
    return entry


def model_json(spec: ModelSpec, enabled: frozenset[str] | None = None) -> dict[str, Any]:
    request = model_schema(spec)
    parameters = [
        parameter_json(name, schema, name in request["required"])
        for name, schema in request["properties"].items()
        if name != "model"  # the entry's own id
    ]
    return {
        "id": spec.id,
        "object": "model",
        "type": "image",
        "name": spec.label,
        "description": spec.description,
        "deprecated": spec.deprecated,
        "enabled": enabled is None or spec.id in enabled,
        "price_per_image_usd": str(spec.price),
        "parameters": parameters,
    }


@allow_methods("GET")
def models(request: HttpRequest) -> HttpResponse:
    path = request.path
    if request_user(request, allow_session=True) is None:
        return unauthorized(path)
    enabled = enabled_model_ids()
    return JsonResponse(
        {"object": "list", "data": [model_json(s, enabled) for s in MODELS.values()]}
    )


# Read-only like every other GET here (tests/studio/test_csrf.py walks the URLs).
@allow_methods("GET")
def openapi(request: HttpRequest) -> HttpResponse:
    server = request.build_absolute_uri("/").rstrip("/")
    return JsonResponse(openapi_document(server, enabled_model_ids()))
