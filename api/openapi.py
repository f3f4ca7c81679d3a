"""The OpenAPI description of /v1; each model's request body is api.schema's, built from
the registry, so it cannot drift from what the API accepts."""

from __future__ import annotations

import copy
from typing import Any

from api.schema import model_schema
from generator.registry import FLUX_DEV_I2I, MODELS, ModelSpec

# The Idempotency-Key api.views accepts: visible ASCII, inner spaces allowed.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"

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


def _error(description: str, *headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        answer["headers"] = {name: HEADERS[name] for name in headers}
    return answer


HEADERS: dict[str, Any] = {
    "Retry-After": {
        "description": "Seconds until trying again can succeed",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "Location": {
        "description": "The generation's URL (GET /v1/generations/{id}) to poll",
        "required": True,
        "schema": {"type": "string", "format": "uri"},
    },
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
        "status": {
            "type": "string",
            "enum": ["queued", "running", "succeeded", "failed", "cancelled"],
        },
        "error": {"type": ["string", "null"]},
        "parameters": {"type": "object"},
        "user": {"type": ["string", "null"]},
        "ignored_params": {"type": "array", "items": {"type": "string"}},
        "seed": {"type": ["integer", "null"]},
        "timings": {"type": "object"},
        "attempts": {"type": "integer"},
        "cost": {
            "type": "object",
            "description": "What it cost in USD: the provider's own figure (its "
            "x-aimlapi-usd-spent) when it gave one, else the studio's estimate.",
            "properties": {
                "usd": {"type": "number"},
                "source": {"type": "string", "enum": ["provider", "estimate"]},
            },
        },
        "failures": {
            "type": "array",
            "description": "Images of the batch that did not come back, and why.",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "seed": {"type": ["integer", "null"]},
                    "error": {"type": "string"},
                },
            },
        },
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
                "description": "Also each model's own per-image fields, as it sent them "
                "(mime_type, prompt, file_name, file_size...).",
                "properties": {
                    "url": {"type": "string"},
                    "b64_json": {"type": "string"},
                    "revised_prompt": {
                        "type": "string",
                        "description": "Only where the model drew another prompt than asked",
                    },
                },
            },
        },
        "meta": {
            "type": "object",
            "description": "The provider's meta, when it sent usage",
            "properties": {"usage": {"type": "object"}},
        },
    },
}


def edit_request_schema() -> dict[str, Any]:
    """OpenAI's multipart edit form: the starting image and the default image-to-image
    model's parameters (another such model's are accepted by name as well)."""
    starters = [spec for spec in MODELS.values() if spec.reference_image]
    base = model_schema(FLUX_DEV_I2I)["properties"]
    properties: dict[str, Any] = {
        "image": {
            "type": "string",
            "format": "binary",
            "description": "The starting image: PNG, JPEG or WebP (also sent as image[]).",
        },
        "prompt": base["prompt"],
        "model": {
            "type": "string",
            "enum": [spec.id for spec in starters],
            "default": FLUX_DEV_I2I.id,
        },
        "n": {**base["num_images"], "description": "OpenAI's name for num_images."},
        "size": {
            "type": "string",
            "pattern": "^([1-9][0-9]{0,4}x[1-9][0-9]{0,4}|auto)$",
            "description": "WIDTHxHEIGHT or auto; accepted and ignored: the result keeps "
            "the starting image's size.",
        },
        **{
            name: schema
            for name, schema in base.items()
            if name not in ("model", "prompt", "image_url", "num_images")
        },
    }
    return {
        "type": "object",
        "required": ["image", "prompt"],
        "properties": properties,
        "additionalProperties": False,
    }


def request_schema(spec: ModelSpec) -> dict[str, Any]:
    """api.schema's body schema as the API accepts it: a model parameter (or image_size)
    sent as null is the same as leaving it out (api.views.form_data_from_body)."""
    schema = copy.deepcopy(model_schema(spec))
    nullable = {p.name for p in spec.params} | ({"image_size"} if spec.size else set())
    for name in sorted(nullable & set(schema["properties"]) - set(schema["required"])):
        schema["properties"][name] = {"anyOf": [schema["properties"][name], {"type": "null"}]}
    return schema


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
                "studio; every URL in an answer is the studio's copy, signed so that a "
                "plain GET opens it (for API_IMAGE_URL_TTL seconds, while the image stays "
                "as visible as it was), and readable with the same token too. A request "
                "with the Idempotency-Key of an earlier one, or an SDK's retry of the same "
                "bytes (x-stainless-retry-count above 0), answers with the generation the "
                "first one started instead of paying for another."
            ),
        },
        "servers": [{"url": server}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": ERROR,
                "Generation": GENERATION,
                "Answer": ANSWER,
                **{f"Request_{i}": request_schema(s) for i, s in enumerate(offered)},
            },
        },
        "security": security,
        "paths": {
            "/v1/images/generations": {
                "post": {
                    "operationId": "createImage",
                    "summary": "Generate images and wait for the studio's copies",
                    "description": "Each model's body as the AI/ML API documents it. "
                    "OpenAI's parameters are accepted too: without `model` the studio's "
                    "default is used; `n` is num_images; `size` (WIDTHxHEIGHT or auto) is "
                    "image_size or the nearest aspect_ratio; `quality` and `style` go to "
                    "the models that have them. What a model has no use for is named in "
                    "the answer's x-studio-ignored-params header.",
                    "parameters": [
                        {
                            "name": "Prefer",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "enum": ["respond-async"]},
                            "description": (
                                "respond-async: answer 202 at once with a Location; any "
                                "other preference is a 400"
                            ),
                        },
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 255,
                                "pattern": IDEMPOTENCY_KEY_PATTERN,
                            },
                            "description": (
                                "The same key with the same token is the same generation "
                                "(its current state); with a different body, a 422"
                            ),
                        },
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
                            "description": (
                                "Accepted: Prefer: respond-async, or still running after "
                                "API_WAIT_TIMEOUT seconds; poll the Location"
                            ),
                            "headers": {"Location": HEADERS["Location"]},
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Generation"}
                                }
                            },
                        },
                        "400": _error(
                            "Body or header validation error (nothing was sent upstream), "
                            "or the provider refused the request's content"
                        ),
                        "401": _error("Missing or invalid token"),
                        "403": _error("Your role cannot generate, or a monthly budget is spent"),
                        "413": _error("The body is over the upload limit"),
                        "422": _error(
                            "The Idempotency-Key was used with another body, or the provider "
                            "could not process the request"
                        ),
                        "429": _error(
                            "A per-user limit (in progress at once, per hour); Retry-After "
                            "says when a slot or the hour frees",
                            "Retry-After",
                        ),
                        "502": _error(
                            "Upstream failed: the studio's AI/ML API key was refused (an "
                            "admin must fix it), the provider failed, or its answer or "
                            "images were unusable"
                        ),
                        "503": _error("The provider is rate-limiting the studio", "Retry-After"),
                        "504": _error("The provider timed out"),
                    },
                }
            },
            "/v1/images/edits": {
                "post": {
                    "operationId": "editImage",
                    "summary": "OpenAI's image edit: an image-to-image generation from an upload",
                    "description": "The uploaded image is the starting image of an "
                    "image-to-image model (flux/dev/image-to-image unless `model` names "
                    "another). A `mask` is refused: no model here takes one. The answer is "
                    "the one of POST /v1/images/generations.",
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
                        "content": {"multipart/form-data": {"schema": edit_request_schema()}},
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
                        "400": _error("Form validation error (the image, a field, a mask)"),
                        "401": _error("Missing or invalid token"),
                        "403": _error("The provider refused, or the role cannot generate"),
                        "413": _error("The upload is larger than allowed"),
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
            "/v1/generations/{id}/cancel": {
                "post": {
                    "operationId": "cancelGeneration",
                    "summary": "Cancel a queued or running generation (its owner or an admin)",
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
                            "description": "The generation, now cancelled",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Generation"}
                                }
                            },
                        },
                        "401": _error("Missing or invalid token"),
                        "403": _error("Only its owner or an admin may cancel it"),
                        "404": _error("No such generation for this user"),
                        "409": _error("It has already finished"),
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
