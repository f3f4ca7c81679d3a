"""The flat error bodies and messages of aimlapi.md §6."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

GENERATIONS_PATH = "/v1/images/generations"

# The messages of aimlapi.md §6, used for injected failures.
ERROR_MESSAGES: dict[int, str] = {
    400: "Body validation error!",
    401: (
        "This request requires a valid API key. You can create a new API key on the "
        "Billing page: https://aimlapi.com/app/keys"
    ),
    403: (
        "You've run out of credits. Please top up your balance or update your payment "
        "method to continue: https://aimlapi.com/app/billing/"
    ),
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal server error",
    502: "Bad Gateway",
    503: "Service unavailable",
    504: "Generation timeout",
}


def _utc_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_body(status: int, message: str, path: str = GENERATIONS_PATH) -> dict[str, Any]:
    """The flat error body of aimlapi.md §6 (statusCode an int, as captured live)."""
    return {
        "message": message,
        "path": path,
        "requestId": str(uuid.uuid4()),
        "statusCode": status,
        "timestamp": _utc_timestamp(),
    }


def default_message(status: int) -> str:
    if status in ERROR_MESSAGES:
        return ERROR_MESSAGES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
