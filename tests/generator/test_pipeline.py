"""End to end with real worker processes, the real broker and the offline provider."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import requests
from django.urls import reverse

from generator.models import Generation
from tests.conftest import PASSWORD, Workers, wait_for, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

TREX = (
    "A T-Rex relaxing on a beach, lying on a sun lounger and wearing sunglasses, "
    "with a tropical cocktail in its tiny claws."
)


def submit(client: Any, **fields: Any) -> Generation:
    data = {
        "model": "flux-realism",
        "prompt": TREX,
        "image_size": "square",
        "num_images": "1",
        "output_format": "jpeg",
        "enable_safety_checker": "on",
        **fields,
    }
    response = client.post(reverse("generator:studio"), data)
    assert response.status_code == 303, response.content[:2000]
    return Generation.objects.order_by("-id").first()


def finished(generation: Generation, timeout: float = 40) -> Generation:
    def done() -> Generation | None:
        generation.refresh_from_db()
        return generation if generation.is_finished else None

    return wait_for(done, timeout=timeout)


def test_a_worker_generates_and_mirrors(client, owner, provider, workers):
    client.force_login(owner)
    generation = finished(submit(client, num_images="2"))
    assert generation.status == "succeeded", generation.error
    assert generation.images.count() == 2
    assert provider.generation_calls() == 2  # one per image, each with its own seed


def test_a_provider_500_then_success_yields_exactly_the_images(client, owner, provider, workers):
    client.force_login(owner)
    provider.fail_next(500)
    generation = finished(submit(client, num_images="3"))
    assert generation.status == "succeeded", generation.error
    assert generation.attempts == 2
    assert generation.images.count() == 3
    folder = generation.images.first().file.path.rsplit("/", 1)[0]
    import os

    assert sorted(os.listdir(folder)) == [
        "0.jpg",
        "0_thumb.webp",
        "1.jpg",
        "1_thumb.webp",
        "2.jpg",
        "2_thumb.webp",
    ]
    # One call per image; only the one that got the 500 was sent again.
    assert provider.generation_calls() == 4


def test_a_401_fails_the_generation_once(client, owner, provider, workers):
    client.force_login(owner)
    provider.api_key = "rotated-key"
    generation = finished(submit(client))
    assert generation.status == "failed"
    assert "requires a valid API key" in generation.error
    assert provider.generation_calls() == 1
    page = client.get(f"/generations/{generation.uuid}/")
    assert "requires a valid API key" in page.text
    assert "test-provider-key" not in page.text


def test_repeated_503s_end_in_failed_after_bounded_attempts(client, owner, provider, workers):
    # 429s spend no attempt (tests/generator/test_chaos_pipeline.py); other transient
    # errors do, so the cap ends them.
    client.force_login(owner)
    provider.fail_next(503, times=20)
    generation = finished(submit(client), timeout=60)
    assert generation.status == "failed"
    assert "Gave up after 3 attempts" in generation.error
    assert provider.generation_calls() == 3


def test_an_nsfw_answer_is_marked_on_the_page(client, owner, provider, workers):
    client.force_login(owner)
    generation = finished(submit(client, prompt="a naked mole rat in a tuxedo"))
    assert generation.status == "succeeded"
    assert generation.images.get().nsfw
    page = client.get(f"/generations/{generation.uuid}/")
    assert "badge-nsfw" in page.text and 'class="image nsfw"' in page.text


def test_a_worker_killed_mid_call_loses_nothing(
    client, owner, provider, offline_provider_server, tmp_path, django_db_blocker
):
    """SIGKILL the provider worker while the provider is answering; a new worker
    (whose start-up sweep finds the expired lease) completes the generation."""
    env = worker_env(
        offline_provider_server, GENERATION_LEASE_SECONDS="4", CELERY_VISIBILITY_TIMEOUT="30"
    )
    group = Workers(env, tmp_path).start()
    try:
        client.force_login(owner)
        provider.latency = 3.0
        generation = submit(client, num_images="2")
        wait_for(lambda: provider.generation_calls() >= 1, timeout=20)
        group.kill("worker-provider")
        generation.refresh_from_db()
        assert generation.status == "running" and generation.images.count() == 0

        provider.latency = 0.0
        time.sleep(4.5)  # let the dead worker's lease run out
        group.start(("worker-provider",))
        generation = finished(generation, timeout=40)
        assert generation.status == "succeeded", generation.error
        assert generation.images.count() == 2
        # Each call was sent at most once per attempt it counted: the killed one again.
        for call in generation.calls.all():
            sent = [
                c for c in provider.calls
                if c["headers"].get("X-Client-Request-Id") == call.request_id
            ]  # fmt: skip
            assert 1 <= len(sent) <= call.attempts
    finally:
        group.stop()


def test_a_new_user_generates_over_http_and_the_image_outlives_the_cdn(
    live_server, provider, workers, django_user_model
):
    """The journey of the issue: sign up, submit the T-Rex at 1472×512, see the
    studio's copy with the provider's seed, and still load it after the provider's
    URLs have expired."""
    django_user_model.objects.create_user("admin", password=PASSWORD, is_staff=True)
    browser = requests.Session()
    base = live_server.url

    def csrf(path: str) -> str:
        page = browser.get(base + path)
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)

    user = django_user_model.objects.create_user("newcomer", password=PASSWORD)
    response = browser.post(
        base + "/accounts/login/",
        {
            "username": user.username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": csrf("/accounts/login/"),
        },
    )
    assert response.ok and "New image" in response.text

    response = browser.post(
        base + "/",
        {
            "csrfmiddlewaretoken": csrf("/"),
            "model": "flux-realism",
            "prompt": TREX,
            "image_size": "custom",
            "width": "1472",
            "height": "512",
            "output_format": "jpeg",
            "enable_safety_checker": "on",
        },
        allow_redirects=False,
    )
    assert response.status_code == 303
    detail = base + response.headers["Location"]

    def page_done() -> str | None:
        text = browser.get(detail).text
        return text if "badge-succeeded" in text or "badge-failed" in text else None

    text = wait_for(page_done, timeout=40)
    assert "badge-succeeded" in text
    generation = Generation.objects.get()
    assert generation.seed and f'<dd id="generation-seed">{generation.seed}</dd>' in text
    assert "1472×512" in text
    image_url = re.search(r'<img src="(/media/generations/[^"]+\.jpg)"', text).group(1)
    first = browser.get(base + image_url)
    assert first.status_code == 200 and first.headers["Content-Type"] == "image/jpeg"
    from io import BytesIO

    from PIL import Image as PILImage

    assert PILImage.open(BytesIO(first.content)).size == (1472, 512)

    provider.url_ttl = 0.000001  # every provider URL is now expired
    cdn_url = generation.provider_images[0]["url"]
    assert requests.get(cdn_url, timeout=5).status_code == 404
    again = browser.get(base + image_url)
    assert again.status_code == 200 and again.content == first.content
    assert again.headers["X-Content-Type-Options"] == "nosniff"
    anonymous = requests.get(base + image_url, timeout=5, allow_redirects=False)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous.headers["Location"]


def test_one_worker_node_keeps_32_provider_calls_in_flight(
    owner, provider, offline_provider_server, tmp_path, settings
):
    """The provider worker, as `make run` and docker-compose start it (32 threads),
    waits on 32 slow provider calls at once rather than one per core."""
    from generator.registry import FLUX_REALISM
    from generator.services import generation_create

    settings.GENERATION_MAX_ACTIVE_PER_USER = 64
    env = worker_env(offline_provider_server)
    del env["WORKER_PROVIDER_CONCURRENCY"]  # the production default
    group = Workers(env, tmp_path).start()
    try:
        provider.latency = 4.0
        generations = [
            generation_create(
                owner=owner,
                spec=FLUX_REALISM,
                body={"model": "flux-realism", "prompt": f"tile {i}", "image_size": "square"},
            )
            for i in range(36)
        ]
        wait_for(lambda: provider.max_in_flight >= 32, timeout=40, interval=0.05)
        provider.latency = 0.0
        for generation in generations:
            assert finished(generation, timeout=60).status == "succeeded"
        assert provider.generation_calls() == 36
    finally:
        group.stop()


def test_the_api_answer_passes_on_what_the_provider_charged(client, owner, provider, workers):
    from accounts.tokens import api_token_create

    provider.prices["flux-realism"] = "0.0421"
    _, raw = api_token_create(user=owner, name="script")
    response = client.post(
        "/v1/images/generations",
        {"model": "flux-realism", "prompt": TREX, "image_size": "square", "num_images": 2},
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 200, response.content[:2000]
    # Two calls of one image each: the batch cost what both did.
    assert response["x-aimlapi-usd-spent"] == "0.0842"
    assert sorted(c["headers"]["X-Client-Request-Id"] for c in provider.calls) == [
        f"{response.json()['id']}-0",
        f"{response.json()['id']}-1",
    ]
