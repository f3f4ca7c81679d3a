"""Every /v1 answer is JSON with the provider's flat error body, whatever the method,
the path or the body, and a provider's odd status never reaches an API client."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
from django.test import Client

from accounts.tokens import api_token_create
from generator import services
from generator.models import Generation
from generator.registry import get_model
from tests.generator.http_fakes import Reply, fake, provider_url

__all__ = ["fake", "provider_url"]  # fixtures

URL = "/v1/images/generations"
FLAT = {"message", "path", "requestId", "statusCode", "timestamp"}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
PATHS = (
    URL,
    URL + "/",
    f"/v1/generations/{uuid.uuid4()}",
    "/v1/generations/not-a-uuid",
    "/v1/generations/",
    "/v1/models",
    "/v1/models/",
    "/v1/openapi.json",
    "/v1/",
    "/v1/chat/completions",
    "/v1/images/generations/extra",
    "/v1/%ff",
)


@pytest.fixture
def token(owner) -> str:
    return api_token_create(user=owner, name="notebook")[1]


def post(client: Any, data: str | bytes, token: str) -> Any:
    return client.post(
        URL,
        data=data,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def flat_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == FLAT and body["statusCode"] == status
    return body


def assert_json_answer(response: Any, method: str, path: str) -> None:
    where = f"{method} {path}"
    assert response["Content-Type"] == "application/json", where
    if response.status_code == 405:
        allowed = [m.strip() for m in response["Allow"].split(",")]
        assert method not in allowed and allowed, where
    if response.status_code >= 400 and method != "HEAD":
        body = response.json()
        assert set(body) == FLAT, where
        assert body["statusCode"] == response.status_code, where


# --- Any method, any path ------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["anonymous", "session", "suspended", "token"])
def test_every_v1_answer_is_json_with_the_flat_body(who, owner, suspended):
    # CSRF enforced as a browser would meet it: the method is refused before CSRF is.
    client = Client(enforce_csrf_checks=True)
    headers = {}
    if who == "session":
        client.force_login(owner)
    elif who == "suspended":  # an account page would be the HTML "suspended" 403
        client.force_login(suspended)
    elif who == "token":
        headers["Authorization"] = f"Bearer {api_token_create(user=owner, name='t')[1]}"
    for path in PATHS:
        for method in METHODS:
            response = client.generic(method, path, data=b"{}", headers=headers)
            assert_json_answer(response, method, path)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("DELETE", f"/v1/generations/{uuid.uuid4()}", "GET, HEAD"),
        ("POST", "/v1/models", "GET, HEAD"),
        ("PUT", "/v1/openapi.json", "GET, HEAD"),
        ("GET", URL, "POST"),
    ],
)
def test_a_wrong_method_is_a_flat_405_with_allow_even_for_a_session(owner, method, path, allow):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.generic(method, path)
    flat_error(response, 405)
    assert response["Allow"] == allow


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/v1/generations/not-a-uuid", "/v1/nope", "/v1/models/x"])
def test_an_unknown_path_or_id_is_a_flat_404(client, token, path):
    body = flat_error(client.get(path, headers={"Authorization": f"Bearer {token}"}), 404)
    assert body["path"] == path


@pytest.mark.django_db
def test_an_unexpected_exception_is_a_flat_500_not_the_html_page(owner, monkeypatch):
    def broken() -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("api.catalog.enabled_model_ids", broken)
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    body = flat_error(client.get("/v1/models"), 500)
    assert body["path"] == "/v1/models" and "a bug" not in body["message"]


# --- Bodies the parser cannot take -------------------------------------------------------


@pytest.mark.django_db
def test_a_100000_deep_json_body_is_a_flat_400(client, provider, token):
    body = flat_error(post(client, "[" * 100_000 + "]" * 100_000, token), 400)
    assert "nests too deeply" in body["message"]
    assert provider.generation_calls() == 0 and not Generation.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw, field",
    [
        ('{"model": "flux-realism", "prompt": "a fox \\ud800"}', "prompt"),
        ('{"model": "flux-realism", "prompt": "x", "image_size": {"width": "\\udfff"}}',
         "image_size.width"),
        ('{"model": "flux-realism\\ud83d", "prompt": "x"}', "model"),
    ],
)  # fmt: skip
def test_a_lone_surrogate_is_a_flat_400_naming_the_field(client, provider, token, raw, field):
    body = flat_error(post(client, raw, token), 400)
    assert body["message"].startswith(f"Body validation error! {field}: ")
    assert "lone surrogate" in body["message"]
    assert provider.generation_calls() == 0 and not Generation.objects.exists()


@pytest.mark.django_db
def test_a_body_over_the_upload_limit_is_a_flat_413(client, provider, token, settings):
    prompt = "x" * (3 * 1024 * 1024)
    body = flat_error(
        post(client, json.dumps({"model": "flux-realism", "prompt": prompt}), token), 413
    )
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in body["message"]
    assert provider.generation_calls() == 0


# --- A provider's status outside 4xx and 5xx -----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("status", [101, 103, 302, 304, 600])
def test_a_provider_status_outside_4xx_and_5xx_is_stored_as_502(owner, fake, provider_url, status):
    fake.routes[provider_url] = Reply(status, {"Content-Type": "application/json"}, b"{}")
    body = {"model": "flux-realism", "prompt": "odd", "image_size": "square"}
    generation = services.generation_create(owner=owner, spec=get_model("flux-realism"), body=body)
    services.generation_call(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
    assert generation.error_status == 502
    assert generation.error.startswith(f"Provider answered HTTP {status}, ")


@pytest.mark.usefixtures("workers")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("status", [101, 103, 302, 304])
def test_an_odd_provider_status_reaches_the_api_client_as_502(live_server, provider, owner, status):
    token = api_token_create(user=owner, name="x")[1]
    provider.fail_next(status)
    response = requests.post(
        f"{live_server.url}{URL}",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "flux-realism", "prompt": "odd"},
        timeout=60,
    )
    assert response.status_code == 502, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["statusCode"] == 502
    assert provider.generation_calls() == 1
