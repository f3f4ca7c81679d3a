"""The OpenAPI description of /v1, built from the model registry so it cannot drift."""

from __future__ import annotations

from typing import Any

from generator.registry import MODELS, ModelSpec

ERROR = {
    "type": "object",
    "required": ["message", "path", "requestId", "statusCode", "timestamp"],
    "properties": {
        "message": {"type": "string"},
        "path": {"type": "string"},
        "requestId": {"type": "string"},
        "statusCode": {"type": "integer"},
        "timestamp": {"type": "string"},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _request_schema(spec: ModelSpec) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "model": {"type": "string", "enum": [spec.id]},
        "prompt": {
            "type": "string",
            "minLength": 1,
            "maxLength": spec.prompt_max_length,
            # At least one visible character; control characters are dropped.
            "pattern": "[^\\s\\u0000-\\u001f\\u007f]",
        },
        "response_format": {"type": "string", "enum": ["url", "b64_json"], "default": "url"},
    }
    if spec.size is not None:
        rule = spec.size
        side = {"type": "integer", "minimum": rule.minimum, "maximum": rule.maximum,
                "multipleOf": rule.multiple}  # fmt: skip
        properties["image_size"] = {
            "oneOf": [
                {"type": "string", "enum": list(rule.presets)},
                {
                    "type": "object",
                    "required": ["width", "height"],
                    "properties": {"width": side, "height": side},
                    "additionalProperties": False,
                },
            ],
            "default": rule.default,
        }
    required = ["model", "prompt"]
    if spec.reference_image:
        properties["image_url"] = {
            "type": "string",
            # The pattern covers outside https URLs; a data: URI holding a PNG, JPEG or
            # WebP image is accepted too, which a pattern cannot express.
            "pattern": "^https://[a-z0-9-]+(\\.[a-z0-9-]+)+(/[A-Za-z0-9._~/-]*)?$",
            "maxLength": 2048,
            "description": "The starting image: an https URL, the URL of a studio image, or a "
            "data:image/png|jpeg|webp;base64 URI.",
        }
        required.append("image_url")
    for name, value in spec.fixed.items():
        properties[name] = {"type": "boolean", "enum": [value], "default": value}
    for param in spec.params:
        if param.kind == "colors":
            channel = {"type": "integer", "minimum": 0, "maximum": 255}
            properties[param.name] = {
                "type": "array",
                "description": param.help,
                "items": {
                    "type": "object",
                    "required": ["r", "g", "b"],
                    "properties": {"r": channel, "g": channel, "b": channel},
                    "additionalProperties": False,
                },
            }
            continue
        schema: dict[str, Any] = {
            "type": {
                "int": "integer",
                "float": "number",
                "bool": "boolean",
                "choice": "string",
                "text": "string",
            }[param.kind],
            "description": param.help,
        }
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
        properties[param.name] = schema
    return {
        "type": "object",
        "title": spec.label,
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


IMAGE = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "format": "uri"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "content_type": {"type": "string"},
    },
}

GENERATION = {
    "type": "object",
    "required": ["id", "status", "model", "parameters", "images"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "object": {"type": "string"},
        "model": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
        "error": {"type": ["string", "null"]},
        "parameters": {"type": "object"},
        "seed": {"type": ["integer", "null"]},
        "timings": {"type": "object"},
        "attempts": {"type": "integer"},
        "created_at": {"type": "string"},
        "finished_at": {"type": ["string", "null"]},
        "url": {"type": "string"},
        "images": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    **IMAGE["properties"],
                    "thumbnail_url": {"type": "string"},
                    "nsfw": {"type": "boolean"},
                    "sha256": {"type": "string"},
                },
            },
        },
    },
}

ANSWER = {
    "type": "object",
    "required": ["id", "created", "images", "data", "has_nsfw_concepts"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "object": {"type": "string"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "status": {"type": "string"},
        "images": {"type": "array", "items": IMAGE},
        "seed": {"type": ["integer", "null"]},
        "has_nsfw_concepts": {"type": "array", "items": {"type": "boolean"}},
        "timings": {"type": "object"},
        "prompt": {"type": "string"},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "url": {"type": "string"},
                    "b64_json": {"type": "string"},
                    "revised_prompt": {"type": "string"},
                },
            },
        },
    },
}


def openapi_document(server: str, enabled: frozenset[str] | None = None) -> dict[str, Any]:
    """The document for the models enabled now (all of them when `enabled` is None)."""
    security = [{"bearer": []}]
    offered = [spec for spec in MODELS.values() if enabled is None or spec.id in enabled]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Team image studio API",
            "version": "1",
            "description": (
                "AI/ML API compatible image generation. Images are mirrored into the "
                "studio; every URL in an answer is the studio's copy, readable with the "
                "same token."
            ),
        },
        "servers": [{"url": server}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": ERROR,
                "Generation": GENERATION,
                "Answer": ANSWER,
                **{f"Request_{i}": _request_schema(s) for i, s in enumerate(offered)},
            },
        },
        "security": security,
        "paths": {
            "/v1/images/generations": {
                "post": {
                    "operationId": "createImage",
                    "summary": "Generate images and wait for the studio's copies",
                    "parameters": [
                        {
                            "name": "Prefer",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "enum": ["respond-async"]},
                            "description": "respond-async: answer 202 at once with a Location",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": f"#/components/schemas/Request_{i}"}
                                        for i in range(len(offered))
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The finished generation",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Answer"}
                                }
                            },
                        },
                        "202": {
                            "description": "Accepted (Prefer: respond-async)",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Generation"}
                                }
                            },
                        },
                        "400": _error("Body validation error; nothing was sent upstream"),
                        "401": _error("Missing or invalid token"),
                        "403": _error("The provider refused (e.g. out of credits)"),
                        "404": _error("The provider does not know the route or model"),
                        "422": _error("The provider could not process the request"),
                        "429": _error("A per-user limit or the provider's rate limit"),
                        "500": _error("The provider failed"),
                        "502": _error("The provider's answer or images were unusable"),
                        "503": _error("The provider is unavailable"),
                        "504": _error("Still running after the wait limit; see Location"),
                    },
                }
            },
            "/v1/generations/{id}": {
                "get": {
                    "operationId": "getGeneration",
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "format": "uuid"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The generation",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Generation"}
                                }
                            },
                        },
                        "401": _error("Missing or invalid token"),
                        "404": _error("No such generation for this user"),
                    },
                }
            },
            "/v1/models": {
                "get": {
                    "operationId": "listModels",
                    "responses": {
                        "200": {
                            "description": "The model registry",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["data"],
                                        "properties": {
                                            "object": {"type": "string"},
                                            "data": {"type": "array", "items": {"type": "object"}},
                                        },
                                    }
                                }
                            },
                        },
                        "401": _error("Missing or invalid token"),
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "security": [],
                    "responses": {"200": {"description": "This document"}},
                }
            },
        },
    }
