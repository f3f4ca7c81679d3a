"""POST /v1/generations/<uuid>/cancel: the owner or an admin, JSON in every case."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.tokens import api_token_create
from generator import services
from generator.models import CostEntry, Generation
from generator.registry import FLUX_REALISM
from tests.conftest import with_role

pytestmark = pytest.mark.django_db


def make(owner: Any, visibility: str = "private") -> Generation:
    body = {"model": "flux-realism", "prompt": "A kite over the dunes", "image_size": "square"}
    return services.generation_create(
        owner=owner, spec=FLUX_REALISM, body=body, visibility=visibility
    )


def cancel(client: Client, ident: Any, user: Any = None, method: str = "post") -> Any:
    headers = {}
    if user is not None:
        headers["Authorization"] = f"Bearer {api_token_create(user=user, name='cli')[1]}"
    return getattr(client, method)(f"/v1/generations/{ident}/cancel", headers=headers)


def test_the_owner_cancels_and_gets_the_generation_back(client, owner, provider):
    generation = make(owner)
    response = cancel(client, generation.uuid, owner)
    assert response.status_code == 200
    data = response.json()
    assert data["id"] == str(generation.uuid)
    assert data["status"] == "cancelled" and data["images"] == []
    assert data["finished_at"] is not None
    services.generation_call(generation_id=generation.pk)
    assert provider.generation_calls() == 0 and not CostEntry.objects.exists()
    polled = client.get(
        f"/v1/generations/{generation.uuid}",
        headers={"Authorization": f"Bearer {api_token_create(user=owner, name='x')[1]}"},
    )
    assert polled.json()["status"] == "cancelled"


def test_an_admin_cancels_anyones(client, owner, teammate):
    generation = make(owner)
    response = cancel(client, generation.uuid, with_role(teammate, "admin"))
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_a_finished_generation_is_a_409_in_the_flat_error_body(client, owner):
    generation = make(owner)
    Generation.objects.filter(pk=generation.pk).update(status="succeeded")
    response = cancel(client, generation.uuid, owner)
    assert response.status_code == 409
    body = response.json()
    assert body["statusCode"] == 409 and "already succeeded" in body["message"]
    assert body["path"] == f"/v1/generations/{generation.uuid}/cancel"


def test_a_teammate_who_sees_it_is_refused_and_one_who_does_not_gets_404(
    client, owner, teammate, moderator
):
    shared = make(owner, visibility="shared")
    private = make(owner)
    refused = cancel(client, shared.uuid, teammate)
    assert refused.status_code == 403 and "owner or an admin" in refused.json()["message"]
    assert cancel(client, private.uuid, teammate).status_code == 404
    # Moderators see everything but do not stop other people's spending.
    assert cancel(client, private.uuid, moderator).status_code == 403
    assert set(Generation.objects.values_list("status", flat=True)) == {"queued"}


def test_without_a_token_or_with_a_bad_id(client, owner):
    generation = make(owner)
    assert cancel(client, generation.uuid).status_code == 401
    assert cancel(client, "not-a-uuid", owner).status_code == 404
    assert cancel(client, "00000000-0000-0000-0000-000000000000", owner).status_code == 404
    wrong = cancel(client, generation.uuid, owner, method="get")
    assert wrong.status_code == 405 and wrong["Allow"] == "POST"
    assert Generation.objects.get().status == "queued"


def test_a_signed_in_session_needs_the_csrf_token(owner):
    generation = make(owner)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    response = browser.post(f"/v1/generations/{generation.uuid}/cancel")
    assert response.status_code == 403 and "CSRF" in response.json()["message"]
    assert Generation.objects.get().status == "queued"
    page = browser.get("/").text
    token = page.split('"x-csrftoken": "', 1)[1].split('"', 1)[0]
    response = browser.post(
        f"/v1/generations/{generation.uuid}/cancel", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_a_waiting_call_whose_generation_is_cancelled_answers_409(client, owner, monkeypatch):
    import api.views

    real_current = api.views._current

    def cancelled_while_waiting(generation_id: int) -> Generation:
        generation = Generation.objects.get(pk=generation_id)
        if generation.is_cancellable:
            services.generation_cancel(generation=generation, by=owner)
        return real_current(generation_id)

    monkeypatch.setattr(api.views, "_current", cancelled_while_waiting)
    token = api_token_create(user=owner, name="cli")[1]
    response = client.post(
        "/v1/images/generations",
        {"model": "flux-realism", "prompt": "A kite over the dunes"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 409
    assert "was cancelled" in response.json()["message"]
    generation = Generation.objects.get()
    assert response["Location"].endswith(f"/v1/generations/{generation.uuid}")
