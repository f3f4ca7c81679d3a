"""The JSON schema (as OpenAPI 3.1 uses it) of each registry model's request body.

GET /v1/models, the OpenAPI document and the body type checks in api.views all read
it, so a new sort of registry parameter needs a form field (generator.forms) and an
entry in PARAM_TYPES here, nothing else. The schema states types, ranges and enums
for clients; the API itself checks only the types and leaves the rest to the form.
"""

from __future__ import annotations

import copy
from typing import Any

from generator.registry import ModelSpec, Param, SizeRule

_CHANNEL = {"type": "integer", "minimum": 0, "maximum": 255}
COLOUR = {
    "type": "object",
    "required": ["r", "g", "b"],
    "properties": {"r": _CHANNEL, "g": _CHANNEL, "b": _CHANNEL},
    "additionalProperties": False,
}

# Each registry parameter type as JSON Schema; param_schema adds the constraints.
PARAM_TYPES: dict[str, dict[str, Any]] = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "choice": {"type": "string"},
    "text": {"type": "string"},
    "colors": {"type": "array", "items": COLOUR},
}

# Fields the studio answers itself (api.views pops them from the body); a model that
# documents a field of the same name takes it as its own parameter instead.
STUDIO_FIELDS: dict[str, dict[str, Any]] = {
    "response_format": {"type": "string", "enum": ["url", "b64_json"], "default": "url"},
    # OpenAI's end-user id: recorded on the generation, never sent upstream.
    "user": {
        "type": "string",
        "maxLength": 256,
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        "description": "The end user a script acts for, recorded with the generation.",
    },
}

IMAGE_URL = {
    "type": "string",
    # The pattern covers outside https URLs; a data: URI holding a PNG, JPEG or WebP
    # image is accepted too, which a pattern cannot express.
    "pattern": "^https://[a-z0-9-]+(\\.[a-z0-9-]+)+(/[A-Za-z0-9._~/-]*)?$",
    "maxLength": 2048,
    "description": "The starting image: an https URL, the URL of a studio image, or a "
    "data:image/png|jpeg|webp;base64 URI.",
}


def param_schema(param: Param) -> dict[str, Any]:
    """The schema of one registry parameter's value in a request body."""
    try:
        base = PARAM_TYPES[param.kind]
    except KeyError:
        raise ValueError(f"unknown parameter type {param.kind!r}") from None
    schema: dict[str, Any] = {**copy.deepcopy(base), "description": param.help}
    if param.max_length is not None:
        schema["maxLength"] = param.max_length
    if param.minimum is not None:
        schema["minimum"] = param.minimum
    if param.maximum is not None:
        schema["maximum"] = param.maximum
    if param.choices:
        schema["enum"] = [value for value, _ in param.choices]
    if param.default is not None:
        schema["default"] = param.default
    return schema


def _size_schema(rule: SizeRule) -> dict[str, Any]:
    side = {"type": "integer", "minimum": rule.minimum, "maximum": rule.maximum,
            "multipleOf": rule.multiple}  # fmt: skip
    return {
        "oneOf": [
            {"type": "string", "enum": list(rule.presets)},
            {
                "type": "object",
                "required": ["width", "height"],
                "properties": {"width": side, "height": dict(side)},
                "additionalProperties": False,
            },
        ],
        "default": rule.default,
    }


def model_schema(spec: ModelSpec) -> dict[str, Any]:
    """The schema of a request body for `spec`: every field it accepts, and no other."""
    properties: dict[str, Any] = {
        "model": {"type": "string", "enum": [spec.id]},
        "prompt": {
            "type": "string",
            "minLength": 1,
            "maxLength": spec.prompt_max_length,
            # At least one visible character; control characters are dropped.
            "pattern": "[^\\s\\u0000-\\u001f\\u007f]",
        },
    }
    required = ["model", "prompt"]
    if spec.size is not None:
        properties["image_size"] = _size_schema(spec.size)
    if spec.reference_image:
        properties["image_url"] = copy.deepcopy(IMAGE_URL)
        required.append("image_url")
    for name, value in spec.fixed.items():
        properties[name] = {"type": "boolean", "enum": [value], "default": value}
    for param in spec.params:
        properties[param.name] = param_schema(param)
    for name, schema in STUDIO_FIELDS.items():
        properties.setdefault(name, copy.deepcopy(schema))
    return {
        "type": "object",
        "title": spec.label,
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


def json_type(value: Any) -> str:
    """The JSON Schema type of a decoded JSON value. A whole number is an "integer",
    2.0 included: JSON has one number type, and the provider's validator agrees."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def type_error(value: Any, schema: dict[str, Any]) -> str | None:
    """Why `value` does not have the type `schema` names, in the provider's words
    ("Expected number, received string"), or None when it has it.

    Only the type: ranges, enums and lengths are the form's to check, so its messages
    are the ones the web page shows too.
    """
    expected = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    received = json_type(value)
    if received in expected or (received == "integer" and "number" in expected):
        return None
    if received == "number" and "integer" in expected:
        return "Expected integer, received float"
    # zod, the provider's validator, calls every JSON number a "number".
    named = "number" if received == "integer" else received
    return f"Expected {' | '.join(expected)}, received {named}"
