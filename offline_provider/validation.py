"""Body validation against the rules table, with zod-like issues as the real API gives."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from .rules import IMAGE_SIZE_PRESETS, MODEL_ALIASES, MODELS

# Recraft's colour channels (aimlapi.md §4).
_CHANNEL: dict[str, Any] = {"type": "integer", "min": 0, "max": 255}


class ValidationError(Exception):
    def __init__(self, issues: list[str]) -> None:
        super().__init__("; ".join(issues))
        self.issues = issues


def _type_name(value: Any) -> str:
    # zod's names for JSON values, used in "Expected X, received Y".
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _quote(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_number(path: str, value: Any, spec: dict[str, Any], issues: list[str]) -> None:
    if not _is_number(value):
        issues.append(f"{path}: Expected number, received {_type_name(value)}")
        return
    # JSON has one number type, so 2.0 is an integer to the real (JS) validator too.
    if spec["type"] == "integer" and not float(value).is_integer():
        issues.append(f"{path}: Expected integer, received float")
        return
    if spec.get("min") is not None and value < spec["min"]:
        issues.append(f"{path}: Number must be greater than or equal to {spec['min']}")
    if spec.get("max") is not None and value > spec["max"]:
        issues.append(f"{path}: Number must be less than or equal to {spec['max']}")


def _check_uri(path: str, value: Any, issues: list[str]) -> None:
    if not isinstance(value, str):
        issues.append(f"{path}: Expected string, received {_type_name(value)}")
        return
    parts = urlsplit(value)
    if not parts.scheme or not (parts.netloc or parts.scheme == "data"):
        issues.append(f"{path}: Invalid url")


def _check_image_size(path: str, value: Any, spec: dict[str, Any], issues: list[str]) -> None:
    if isinstance(value, str):
        if value not in IMAGE_SIZE_PRESETS:
            expected = " | ".join(_quote(p) for p in IMAGE_SIZE_PRESETS)
            issues.append(
                f"{path}: Invalid enum value. Expected {expected}, received {_quote(value)}"
            )
        return
    if not isinstance(value, dict):
        issues.append(f"{path}: Expected object | string, received {_type_name(value)}")
        return
    unknown = [k for k in value if k not in ("width", "height")]
    if unknown:
        issues.append(f"{path}: Unrecognized key(s) in object: {', '.join(map(_quote, unknown))}")
    for side in ("width", "height"):
        if side not in value:
            issues.append(f"{path}.{side}: Required")
            continue
        number = value[side]
        bounds = {"type": "integer", "min": spec["min"], "max": spec["max"]}
        _check_number(f"{path}.{side}", number, bounds, issues)
        if _is_number(number) and float(number).is_integer() and int(number) % 32:
            issues.append(f"{path}.{side}: Number must be a multiple of 32")


def _check_colors(path: str, value: Any, issues: list[str]) -> None:
    if not isinstance(value, list):
        issues.append(f"{path}: Expected array, received {_type_name(value)}")
        return
    for i, color in enumerate(value):
        if not isinstance(color, dict):
            issues.append(f"{path}.{i}: Expected object, received {_type_name(color)}")
            continue
        unknown = [k for k in color if k not in ("r", "g", "b")]
        if unknown:
            issues.append(
                f"{path}.{i}: Unrecognized key(s) in object: {', '.join(map(_quote, unknown))}"
            )
        for channel in ("r", "g", "b"):
            if channel not in color:
                issues.append(f"{path}.{i}.{channel}: Required")
            else:
                _check_number(f"{path}.{i}.{channel}", color[channel], _CHANNEL, issues)


def _check_field(path: str, value: Any, spec: dict[str, Any], issues: list[str]) -> None:
    kind = spec["type"]
    if kind in ("number", "integer"):
        _check_number(path, value, spec, issues)
    elif kind == "boolean":
        if not isinstance(value, bool):
            issues.append(f"{path}: Expected boolean, received {_type_name(value)}")
    elif kind == "string":
        if not isinstance(value, str):
            issues.append(f"{path}: Expected string, received {_type_name(value)}")
    elif kind == "enum":
        if not isinstance(value, str):
            issues.append(f"{path}: Expected string, received {_type_name(value)}")
        elif value not in spec["values"]:
            expected = " | ".join(_quote(v) for v in spec["values"])
            issues.append(
                f"{path}: Invalid enum value. Expected {expected}, received {_quote(value)}"
            )
    elif kind == "literal":
        # type() too: 1 == True in Python, but not to a JSON validator.
        if type(value) is not type(spec["value"]) or value != spec["value"]:
            issues.append(f"{path}: Invalid literal value, expected {_quote(spec['value'])}")
    elif kind == "uri":
        _check_uri(path, value, issues)
    elif kind == "image_size":
        _check_image_size(path, value, spec, issues)
    elif kind == "colors":
        _check_colors(path, value, issues)
    else:  # pragma: no cover - a typo in the table above
        raise AssertionError(f"unknown field type {kind!r}")


def validate_body(body: Any) -> tuple[str, dict[str, Any]]:
    """Check a parsed request body; return (canonical model id, model entry).

    Raises ValidationError with zod-like issues ("path: message"). Keys a model does
    not take are errors (zod .strict()), so the studio can never send them unnoticed.
    """
    if not isinstance(body, dict):
        raise ValidationError([f"Expected object, received {_type_name(body)}"])
    issues: list[str] = []
    model = body.get("model")
    if "model" not in body:
        issues.append("model: Required")
    elif not isinstance(model, str):
        issues.append(f"model: Expected string, received {_type_name(model)}")
    elif model not in MODELS and model not in MODEL_ALIASES:
        expected = " | ".join(_quote(m) for m in [*MODELS, *MODEL_ALIASES])
        issues.append(f"model: Invalid enum value. Expected {expected}, received {_quote(model)}")
    prompt = body.get("prompt")
    if "prompt" not in body:
        issues.append("prompt: Required")
    elif not isinstance(prompt, str):
        issues.append(f"prompt: Expected string, received {_type_name(prompt)}")
    elif not prompt:
        issues.append("prompt: String must contain at least 1 character(s)")
    if issues and any(i.startswith("model:") for i in issues):
        # Without a model there is no schema to check the rest against.
        raise ValidationError(issues)

    model_id = MODEL_ALIASES.get(model, model)
    entry = MODELS[model_id]
    if isinstance(prompt, str) and len(prompt) > entry["prompt_max"]:
        issues.append(f"prompt: String must contain at most {entry['prompt_max']} character(s)")
    params: dict[str, dict[str, Any]] = entry["params"]
    unknown = [k for k in body if k not in params and k not in ("model", "prompt")]
    for key, value in body.items():
        if key in params:
            _check_field(key, value, params[key], issues)
    if unknown:
        issues.append(f"Unrecognized key(s) in object: {', '.join(map(_quote, unknown))}")
    for key in entry.get("required", ()):
        if key not in body:
            issues.append(f"{key}: Required")
    if issues:
        raise ValidationError(issues)
    return model_id, entry
