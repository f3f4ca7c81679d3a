"""The OpenAPI description of /v1; each model's request body is api.schema's, built from
the registry, so it cannot drift from what the API accepts."""

from __future__ import annotations

from typing import Any

from api.schema import model_schema
from generator.registry import MODELS

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
                **{f"Request_{i}": model_schema(s) for i, s in enumerate(offered)},
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
