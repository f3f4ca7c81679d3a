"""Property-based checks of /v1 against its own OpenAPI document (schemathesis): valid
and invalid requests, every check schemathesis has (what `--checks all` runs)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.specs.openapi.checks import positive_data_acceptance

from accounts.tokens import api_token_create

EDITS = "POST /v1/images/edits"

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 12}


def test_the_api_honours_its_openapi_document(live_server, owner, settings):
    # Every valid example is queued and none runs (no worker): limits must not be what
    # answers.
    settings.GENERATION_MAX_ACTIVE_PER_USER = 10_000
    settings.GENERATION_MAX_PER_HOUR = 10_000
    # Without respond-async (the invalid examples) an accepted body waits this long.
    settings.API_WAIT_TIMEOUT = 1
    # Loaded over HTTP, so the document's server is the live test server. The
    # schemathesis pytest plugin does not run on this pytest, so each operation's
    # strategy is driven by hypothesis directly.
    schema = schemathesis.openapi.from_url(f"{live_server.url}/v1/openapi.json")
    load_all_checks()
    token = api_token_create(user=owner, name="schemathesis")[1]
    checked = []
    for mode, examples in EXAMPLES.items():
        for result in schema.get_all_operations():
            operation = result.ok()
            checks = CHECKS.get_all()
            if operation.label == EDITS:
                # A schema cannot describe a decodable image: the edit form's generated
                # `image` bytes are refused, so valid-data acceptance does not apply.
                checks = [check for check in checks if check is not positive_data_acceptance]
            run_examples(operation, mode, examples, token, checks)
            checked.append((mode, operation.label))
    labels = {label for _, label in checked}
    assert {
        "POST /v1/images/generations",
        EDITS,
        "GET /v1/generations/{id}",
        "GET /v1/models",
    } <= labels
    assert {mode for mode, _ in checked} == set(EXAMPLES)


def run_examples(
    operation: Any, mode: GenerationMode, examples: int, token: str, checks: list[Any]
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    # Derandomized: the same examples every run, so a pass is a pass.
    @hypothesis_settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        if mode is GenerationMode.POSITIVE:
            # respond-async: valid bodies are accepted at once instead of waiting for a
            # worker. A fresh key per example: the same key with another body is
            # rightly a 422, which is not what a valid example's answer is checked for.
            headers["Prefer"] = "respond-async"
            if case.headers and "Idempotency-Key" in case.headers:
                case.headers["Idempotency-Key"] = str(uuid.uuid4())
        case.call_and_validate(headers=headers, checks=checks, timeout=30)

    check()
