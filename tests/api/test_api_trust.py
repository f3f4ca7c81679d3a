"""A gateway a script can trust: image URLs that open, one paid generation per intended
request, and errors that say whose fault they are."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.core import signing
from django.test import Client
from django.utils import timezone
from PIL import Image as PILImage

from accounts.models import ApiToken, Notification
from accounts.tokens import api_token_create, api_token_revoke
from api.views import failure_response
from gallery.services import moderation_decide
from generator import services
from generator.models import Generation, Image
from generator.registry import get_model
from tests.conftest import run_steps, wait_for, with_role

URL = "/v1/images/generations"
FLAT = {"message", "path", "requestId", "statusCode", "timestamp"}
BODY = {"model": "flux-realism", "prompt": "a lighthouse at dusk", "image_size": "square"}


@pytest.fixture
def token(owner) -> str:
    return api_token_create(user=owner, name="notebook")[1]


def post(client: Any, body: Any, token: str, **headers: str) -> Any:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(
        URL,
        data=data,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", **headers},
    )


def flat(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == FLAT and body["statusCode"] == status
    return body


def finished_generation(client: Any, token: str) -> tuple[Generation, dict[str, Any]]:
    """A generation made through the API and run in this process; with its API state."""
    accepted = post(client, BODY, token, Prefer="respond-async")
    assert accepted.status_code == 202
    generation = run_steps(Generation.objects.get(uuid=accepted.json()["id"]))
    assert generation.status == Generation.Status.SUCCEEDED
    state = client.get(accepted["Location"], headers={"Authorization": f"Bearer {token}"})
    return generation, state.json()


# --- 1. Image URLs that open ------------------------------------------------------------


@pytest.mark.django_db
def test_a_signed_image_url_opens_without_a_token_until_the_image_is_less_visible(
    client, provider, owner, moderator, token
):
    generation, state = finished_generation(client, token)
    url = state["images"][0]["url"]
    assert "sig=" in url
    anonymous = Client()
    opened = anonymous.get(url)
    assert opened.status_code == 200 and opened["Content-Type"] == "image/jpeg"
    assert opened["X-Content-Type-Options"] == "nosniff"
    assert opened["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert opened["Cache-Control"] == "private, no-cache"
    assert PILImage.open(io.BytesIO(b"".join(opened.streaming_content))).size == (512, 512)
    assert anonymous.get(state["images"][0]["thumbnail_url"]).status_code == 200

    services.generation_visibility_set(generations=[generation], visibility="private", by=owner)
    flat(anonymous.get(url), 404)
    # Fresh URLs, signed for the image as it is now, open again.
    fresh = client.get(
        f"/v1/generations/{generation.uuid}", headers={"Authorization": f"Bearer {token}"}
    )
    assert anonymous.get(fresh.json()["images"][0]["url"]).status_code == 200
    # Sharing it again restores the old link too: it never asked for more than that.
    services.generation_visibility_set(generations=[generation], visibility="shared", by=owner)
    assert anonymous.get(url).status_code == 200

    image = generation.images.get()
    moderation_decide(images=[image], decision="hide", by=moderator, reason="Off-topic")
    flat(anonymous.get(url), 404)
    flat(anonymous.get(fresh.json()["images"][0]["url"]), 404)


@pytest.mark.django_db
def test_a_signed_url_stops_opening_when_deleted_revoked_or_expired(
    client, provider, owner, token, settings, monkeypatch
):
    generation, state = finished_generation(client, token)
    url = state["images"][0]["url"]
    anonymous = Client()
    # The signature is for one file: moved onto another name it opens nothing.
    thumb_path = urlsplit(state["images"][0]["thumbnail_url"]).path
    flat(anonymous.get(thumb_path + "?" + urlsplit(url).query), 404)
    flat(anonymous.get(urlsplit(url).path + "?sig=1.1.11:abc:def"), 404)
    # Without a signature it is the page for people: sign in first.
    assert anonymous.get(urlsplit(url).path).status_code == 302

    settings.API_IMAGE_URL_TTL = 60
    later = time.time() + 120
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: later))
    expired = flat(anonymous.get(url), 403)
    assert "expired" in expired["message"] and "/v1/generations/" in expired["message"]
    monkeypatch.undo()
    assert anonymous.get(url).status_code == 200

    api_token = ApiToken.objects.get(user=owner)
    api_token_revoke(token=api_token, user=owner)
    flat(anonymous.get(url), 404)


@pytest.mark.django_db
def test_a_deleted_image_link_is_404_and_a_token_or_session_still_opens_the_plain_path(
    client, provider, owner, token
):
    generation, state = finished_generation(client, token)
    url = state["images"][0]["url"]
    path = urlsplit(url).path
    assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    signed_in = Client()
    signed_in.force_login(owner)
    assert signed_in.get(path).status_code == 200
    Image.objects.filter(generation=generation).delete()
    flat(Client().get(url), 404)


# --- 2. Exactly one paid generation per intended request ---------------------------------


@pytest.mark.django_db
def test_one_idempotency_key_is_one_generation_and_another_body_is_422(client, owner, token):
    key = {"Idempotency-Key": "notebook-cell-7", "Prefer": "respond-async"}
    first = post(client, BODY, token, **key)
    again = post(client, BODY, token, **key)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert Generation.objects.count() == 1

    other = flat(post(client, {**BODY, "prompt": "a different picture"}, token, **key), 422)
    assert "Idempotency-Key" in other["message"] and first.json()["id"] in other["message"]
    # A key is the token's own: another token's same key is another request.
    second_token = api_token_create(user=owner, name="laptop")[1]
    assert post(client, BODY, second_token, **key).json()["id"] != first.json()["id"]
    assert Generation.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    "headers, named",
    [
        ({"Idempotency-Key": "x" * 256}, "Idempotency-Key"),
        ({"Idempotency-Key": "caf\u00e9"}, "Idempotency-Key"),
        ({"Prefer": "respond-sync"}, "Prefer"),
        ({"Prefer": "respond-async, wait=5"}, "Prefer"),
    ],
)
def test_a_malformed_header_is_a_400_naming_it(client, provider, token, headers, named):
    assert named in flat(post(client, BODY, token, **headers), 400)["message"]
    assert not Generation.objects.exists()


@pytest.mark.django_db
def test_an_sdk_retry_of_the_same_bytes_reattaches_and_nothing_else_does(client, token):
    raw = json.dumps(BODY)
    first = post(client, raw, token, Prefer="respond-async", **{"X-Stainless-Retry-Count": "0"})
    retry = post(client, raw, token, Prefer="respond-async", **{"X-Stainless-Retry-Count": "1"})
    assert retry.json()["id"] == first.json()["id"] and retry["Idempotent-Replayed"] == "true"
    # The same request again without the retry signal is a new picture.
    assert post(client, raw, token, Prefer="respond-async").json()["id"] != first.json()["id"]
    # Other bytes (the same JSON spaced differently) are another request.
    spaced = json.dumps(BODY, indent=1)
    retried_other = post(
        client, spaced, token, Prefer="respond-async", **{"X-Stainless-Retry-Count": "2"}
    )
    assert retried_other.json()["id"] != first.json()["id"]
    assert Generation.objects.count() == 3
    # Long after the first request, a retry is not one any more.
    Generation.objects.update(created_at=timezone.now() - timedelta(hours=2))
    late = post(client, raw, token, Prefer="respond-async", **{"X-Stainless-Retry-Count": "1"})
    assert "Idempotent-Replayed" not in late and Generation.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_four_identical_requests_at_once_are_four_generations(live_server, owner):
    token = api_token_create(user=owner, name="batch")[1]
    answers: list[requests.Response] = []
    start = threading.Barrier(4)

    def send() -> None:
        start.wait()
        answers.append(
            requests.post(
                live_server.url + URL,
                data=json.dumps(BODY),
                headers={"Authorization": f"Bearer {token}", "Prefer": "respond-async",
                         "Content-Type": "application/json"},
                timeout=60,
            )
        )  # fmt: skip

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [202] * 4
    assert len({a.json()["id"] for a in answers}) == 4
    assert Generation.objects.count() == 4


@pytest.mark.django_db
def test_a_generation_still_running_at_the_wait_limit_is_202_with_a_location(
    client, token, settings
):
    settings.API_WAIT_TIMEOUT = 0.5  # no worker runs here: it stays queued
    response = post(client, BODY, token)
    assert response.status_code == 202
    generation = Generation.objects.get()
    assert response.json()["id"] == str(generation.uuid)
    assert response.json()["status"] == "queued"
    assert response["Location"].endswith(f"/v1/generations/{generation.uuid}")
    assert "Preference-Applied" not in response


# --- 3. Errors that say whose fault it is --------------------------------------------------


@pytest.mark.django_db
def test_an_exhausted_budget_is_403_without_retry_after(client, provider, token, settings):
    settings.USER_MONTHLY_BUDGET_USD = Decimal("0.01")
    response = post(client, BODY, token)
    body = flat(response, 403)
    assert "budget" in body["message"] and "Retry-After" not in response
    assert provider.generation_calls() == 0


def _generation(owner: Any, **fields: Any) -> Generation:
    generation = services.generation_create(
        owner=owner, spec=get_model("flux-realism"), body=dict(BODY)
    )
    Generation.objects.filter(pk=generation.pk).update(**fields)
    return generation


@pytest.mark.django_db
def test_the_concurrency_limit_says_when_a_slot_should_free(client, owner, token, settings):
    now = timezone.now()
    # Their typical generation takes 40 s; the one in progress started 10 s ago.
    for seconds in (38, 40, 45):
        _generation(
            owner, status="succeeded", started_at=now - timedelta(minutes=5),
            finished_at=now - timedelta(minutes=5) + timedelta(seconds=seconds),
        )  # fmt: skip
    _generation(owner, status="running", started_at=now - timedelta(seconds=10))
    settings.GENERATION_MAX_ACTIVE_PER_USER = 1
    response = post(client, BODY, token)
    flat(response, 429)
    assert 28 <= int(response["Retry-After"]) <= 31


@pytest.mark.django_db
def test_the_hourly_limit_says_when_the_oldest_call_leaves_the_hour(client, owner, token, settings):
    now = timezone.now()
    for minutes in (50, 20):
        _generation(owner, status="succeeded", created_at=now - timedelta(minutes=minutes))
    settings.GENERATION_MAX_PER_HOUR = 2
    response = post(client, BODY, token)
    flat(response, 429)
    assert 598 <= int(response["Retry-After"]) <= 602  # the 50-minute-old one, in 10 minutes


@pytest.mark.django_db
@pytest.mark.parametrize(
    "upstream, status, says",
    [
        (401, 502, "studio's AI/ML API key was refused"),
        (403, 502, "studio's AI/ML API key was refused"),
        (404, 502, "upstream said"),
        (429, 503, "rate-limiting the studio"),
        (500, 502, "upstream said"),
        (503, 502, "upstream said"),
        (504, 504, "upstream said"),
        (400, 400, "upstream said"),
        (None, 502, "upstream said"),
    ],
)
def test_a_provider_failure_never_reaches_the_caller_as_its_own_status(
    owner, upstream, status, says
):
    generation = _generation(owner, status="failed", error="upstream said", error_status=upstream)
    generation.refresh_from_db()
    response = failure_response(generation, URL, "http://testserver/v1/generations/x")
    body = json.loads(response.content)
    assert response.status_code == body["statusCode"] == status
    assert says in body["message"] and "upstream said" in body["message"]
    assert ("Retry-After" in response) == (status == 503)


# --- Through real HTTP, with real workers and the offline provider -------------------------


@pytest.mark.usefixtures("workers")
@pytest.mark.django_db(transaction=True)
def test_the_openai_sdk_timing_out_and_retrying_pays_for_one_generation(
    live_server, provider, owner
):
    import httpx2
    from openai import APITimeoutError, OpenAI

    token = api_token_create(user=owner, name="sdk")[1]
    provider.latency = 6
    sent: list[str] = []
    watch = httpx2.Client(
        event_hooks={"request": [lambda r: sent.append(r.headers["x-stainless-retry-count"])]}
    )
    # Default retries: the SDK gives up on each attempt after 2 s and tries twice more.
    sdk = OpenAI(api_key=token, base_url=live_server.url + "/v1", timeout=2, http_client=watch)
    try:
        result = sdk.images.generate(
            model="flux-realism", prompt="a slow fox", extra_body={"image_size": "square"}
        )
    except APITimeoutError:
        result = None  # every attempt gave up before the images were ready
    # The first attempt cannot outlast a 6 s generation: the SDK retried at least once.
    assert sent[:2] == ["0", "1"]
    generation = wait_for(lambda: Generation.objects.filter(status="succeeded").first(), timeout=60)
    assert Generation.objects.count() == 1 and generation.api_token is not None
    if result is not None:
        # The last retry reattached in time and got the first request's images.
        assert str(generation.uuid) in result.data[0].url
    assert provider.generation_calls() == 1


@pytest.mark.usefixtures("workers")
@pytest.mark.django_db(transaction=True)
def test_two_posts_with_one_idempotency_key_make_one_provider_call(live_server, provider, owner):
    token = api_token_create(user=owner, name="x")[1]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "2f9c1e0a-order-1"}
    first = requests.post(live_server.url + URL, json=BODY, headers=headers, timeout=60)
    second = requests.post(live_server.url + URL, json=BODY, headers=headers, timeout=60)
    assert first.status_code == second.status_code == 200, second.text
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert provider.generation_calls() == 1 and Generation.objects.count() == 1
    # Both answers carry links that open without the token.
    assert requests.get(second.json()["data"][0]["url"], timeout=10).status_code == 200


@pytest.mark.usefixtures("workers")
@pytest.mark.django_db(transaction=True)
def test_the_studios_refused_key_is_a_502_for_the_caller_and_a_notice_for_admins(
    live_server, provider, owner, django_user_model
):
    admin = with_role(
        django_user_model.objects.create_user("ada", "ada@example.com", "pw"), "admin"
    )
    token = api_token_create(user=owner, name="x")[1]
    provider.api_key = "the-key-the-studio-no-longer-has"
    response = requests.post(
        live_server.url + URL, json=BODY, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert response.status_code == 502, response.text
    body = response.json()
    assert body["statusCode"] == 502 and "studio's AI/ML API key was refused" in body["message"]
    assert "not about your token" in body["message"]
    notice = Notification.objects.get(user=admin)
    assert notice.text.startswith("The studio's AI/ML API key was refused (HTTP 401")
    assert not Notification.objects.filter(user=owner).exists()
    # A second refusal does not pile up another unread notice.
    requests.post(
        live_server.url + URL, json=BODY, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert Notification.objects.filter(user=admin).count() == 1


@pytest.mark.django_db(transaction=True)
def test_over_budget_unknown_paths_and_wrong_methods_answer_json_over_http(
    live_server, owner, settings
):
    settings.USER_MONTHLY_BUDGET_USD = Decimal("0.01")
    token = api_token_create(user=owner, name="x")[1]
    auth = {"Authorization": f"Bearer {token}"}
    over = requests.post(live_server.url + URL, json=BODY, headers=auth, timeout=30)
    assert over.status_code == 403 and "Retry-After" not in over.headers
    assert over.json()["statusCode"] == 403
    for path in ("/v1/nope", "/v1/generations/not-a-uuid", "/v1/images/generations/extra"):
        missing = requests.get(live_server.url + path, headers=auth, timeout=30)
        assert missing.status_code == 404 and missing.json()["path"] == path
        assert missing.headers["Content-Type"] == "application/json"
    wrong = requests.delete(live_server.url + URL, headers=auth, timeout=30)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    assert wrong.json()["statusCode"] == 405
