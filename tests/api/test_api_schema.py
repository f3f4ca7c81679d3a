"""Property-based checks of /v1 against its own OpenAPI document (schemathesis)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from accounts.tokens import api_token_create

EDITS = "POST /v1/images/edits"

pytestmark = pytest.mark.django_db(transaction=True)


def checker(operation: Any, headers: dict[str, str]) -> Any:
    """The property test of one operation: schemathesis's checks on its cases."""
    # A schema cannot describe a decodable image: the edit form's generated `image`
    # bytes are refused, so only the other checks apply to it.
    excluded = [positive_data_acceptance] if operation.label == EDITS else []

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, timeout=30, excluded_checks=excluded)

    return check


def test_the_api_honours_its_openapi_document(live_server, owner):
    # Loaded over HTTP, so the document's server is the live test server. The
    # schemathesis pytest plugin does not run on this pytest, so each operation's
    # strategy is driven by hypothesis directly.
    schema = schemathesis.openapi.from_url(f"{live_server.url}/v1/openapi.json")
    token = api_token_create(user=owner, name="schemathesis")[1]
    # respond-async: valid bodies are accepted at once instead of waiting for a worker.
    headers = {"Authorization": f"Bearer {token}", "Prefer": "respond-async"}
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        checker(operation, headers)()
        checked.append(operation.label)
    assert {
        "POST /v1/images/generations",
        EDITS,
        "GET /v1/generations/{id}",
        "GET /v1/models",
    } <= set(checked)
