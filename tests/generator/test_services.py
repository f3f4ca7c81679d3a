"""The pipeline's services against the offline provider over real HTTP, step by step."""

from __future__ import annotations

import datetime as dt
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from PIL import Image as PILImage

from generator import services
from generator.fetch import download
from generator.models import Generation
from generator.provider import answer
from generator.registry import FLUX_REALISM
from tests.conftest import purge_queues, run_steps

pytestmark = pytest.mark.django_db

TREX = "A T-Rex relaxing on a beach, lying on a sun lounger and wearing sunglasses."


def make(owner: Any, **params: Any) -> Generation:
    body = {"model": "flux-realism", "prompt": TREX, "image_size": "square", **params}
    return services.generation_create(owner=owner, spec=FLUX_REALISM, body=body)


run = run_steps


def media_files(generation: Generation) -> list[str]:
    folder = Path(settings.MEDIA_ROOT) / "generations" / str(generation.uuid)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_create_sends_its_message_only_after_commit(owner, django_capture_on_commit_callbacks):
    import generator.services.claims as claims

    sent = []
    original, claims.send = claims.send, lambda *args, **kw: sent.append(args)
    try:
        with django_capture_on_commit_callbacks() as callbacks:
            generation = make(owner)
            assert sent == []  # nothing published inside the transaction
        assert generation.status == Generation.Status.QUEUED and len(callbacks) == 1
        callbacks[0]()  # what the commit runs
    finally:
        claims.send = original
    assert sent == [(generation.pk, "call", generation.priority)]


def test_it_mirrors_the_images_the_provider_made(owner, provider):
    generation = run(make(owner, image_size={"width": 1472, "height": 512}, num_images=2))

    assert generation.status == Generation.Status.SUCCEEDED, generation.error
    assert generation.seed.isdigit()
    assert generation.provider_finished_at <= generation.finished_at
    images = list(generation.images.order_by("index"))
    assert [(i.index, i.width, i.height, i.format) for i in images] == [
        (0, 1472, 512, "jpeg"),
        (1, 1472, 512, "jpeg"),
    ]
    assert media_files(generation) == ["0.jpg", "0_thumb.webp", "1.jpg", "1_thumb.webp"]
    with PILImage.open(images[0].file.path) as stored:
        assert stored.size == (1472, 512)
    with PILImage.open(images[0].thumbnail.path) as thumb:
        assert thumb.format == "WEBP" and max(thumb.size) <= 512
    # One call per image, with consecutive seeds and a request id each.
    assert provider.generation_calls() == 2
    sent = sorted((c["body"] for c in provider.calls), key=lambda body: body["seed"])
    assert all(body["image_size"] == {"width": 1472, "height": 512} for body in sent)
    assert [body["num_images"] for body in sent] == [1, 1]
    assert sent[1]["seed"] == sent[0]["seed"] + 1
    assert [i.seed for i in images] == [str(sent[0]["seed"]), str(sent[1]["seed"])]
    assert generation.seed == str(sent[0]["seed"])
    assert sorted(c["headers"]["X-Client-Request-Id"] for c in provider.calls) == [
        f"{generation.uuid}-0",
        f"{generation.uuid}-1",
    ]
    assert all(
        "authorization" not in {k.lower() for k in r["headers"]} for r in provider.cdn_requests
    )


def test_the_provider_seed_is_kept_exactly(owner, provider):
    generation = run(make(owner, seed=123456789))
    assert generation.seed == "123456789"
    assert generation.images.get().seed == "123456789"
    assert provider.calls[0]["body"]["seed"] == 123456789
    # A generation of one image makes one call, named after the generation.
    assert provider.calls[0]["headers"]["X-Client-Request-Id"] == str(generation.uuid)


def test_a_500_then_success_yields_exactly_the_requested_images(owner, provider):
    provider.fail_next(500)
    generation = make(owner, num_images=3)

    with pytest.raises(services.RetryLater):
        services.generation_call(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.RUNNING
    assert generation.lease_until is None  # released for the retry

    generation = run(generation)
    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.attempts == 2
    assert generation.images.count() == 3
    assert len(media_files(generation)) == 6
    # Three calls, one per image; only the one that got the 500 was sent again.
    assert provider.generation_calls() == 4
    assert sorted(c.attempts for c in generation.calls.all()) == [1, 1, 2]


def test_a_401_fails_once_with_the_providers_message(owner, provider):
    provider.api_key = "another-key"
    generation = run(make(owner))
    assert generation.status == Generation.Status.FAILED
    assert "requires a valid API key" in generation.error
    assert provider.generation_calls() == 1
    assert generation.images.count() == 0


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_permanent_errors_are_not_retried(owner, provider, status):
    provider.fail_next(status)
    generation = run(make(owner))
    assert generation.status == Generation.Status.FAILED
    assert generation.error
    assert provider.generation_calls() == 1


def test_429s_spend_no_attempts_and_fail_only_after_the_rate_limit_patience(
    owner, provider, settings
):
    """A rate limit is "later", not "no": ten 429s against an attempt cap of 3 are all
    waited out; only a stretch longer than GENERATION_RATE_LIMIT_PATIENCE fails."""
    settings.GENERATION_MAX_ATTEMPTS = 3
    settings.GENERATION_RATE_LIMIT_PATIENCE = 600
    provider.fail_next(429, times=10)
    generation = make(owner)
    for _ in range(6):
        with pytest.raises(services.RetryLater):
            services.generation_call(generation_id=generation.pk)
    generation.refresh_from_db()
    assert not generation.is_finished and generation.lease_until is None
    assert generation.attempts == 0
    assert generation.rate_limits == 6
    assert "rate-limiting" in generation.error
    # As if the stretch had begun longer ago than the patience allows.
    started = generation.rate_limited_since
    Generation.objects.filter(pk=generation.pk).update(
        rate_limited_since=started - dt.timedelta(seconds=601)
    )
    services.generation_call(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
    assert generation.error_status == 429
    assert "kept refusing with rate limits for 601 s" in generation.error
    assert provider.generation_calls() == 7


def test_a_success_after_429s_ends_the_stretch(owner, provider, settings):
    provider.fail_next(429, times=2)
    generation = make(owner)
    for _ in range(2):
        with pytest.raises(services.RetryLater):
            services.generation_call(generation_id=generation.pk)
    generation = run(generation)
    assert generation.status == Generation.Status.SUCCEEDED
    assert (generation.attempts, generation.rate_limits) == (1, 0)
    assert generation.rate_limited_since is None


def test_other_transient_errors_still_count_as_attempts(owner, provider, settings):
    settings.GENERATION_MAX_ATTEMPTS = 3
    provider.fail_next(503, times=10)
    generation = make(owner)
    for _ in range(2):
        with pytest.raises(services.RetryLater):
            services.generation_call(generation_id=generation.pk)
    services.generation_call(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
    assert "Gave up after 3 attempts" in generation.error
    assert provider.generation_calls() == 3


def test_retry_after_is_honoured_within_bounds(settings):
    settings.GENERATION_RETRY_MAX = 60
    assert services.retry_delay(1, 7.0) == 7.0
    assert services.retry_delay(1, 86400.0) == 60
    assert services.retry_delay(1, 0.0) == 1.0
    assert 0 < services.retry_delay(3, None) <= 60


def test_an_nsfw_answer_is_flagged_not_altered(owner, provider):
    generation = run(make(owner, prompt="a nude statue in a museum"))
    image = generation.images.get()
    assert image.nsfw is True


def test_a_second_delivery_does_nothing(owner, provider):
    generation = run(make(owner))
    services.generation_call(generation_id=generation.pk)
    services.generation_mirror(generation_id=generation.pk)
    assert provider.generation_calls() == 1
    assert generation.images.count() == 1


def test_a_held_generation_is_not_claimed_twice(owner, provider):
    generation = make(owner)
    Generation.objects.filter(pk=generation.pk).update(
        status="running", lease_until=timezone.now() + timedelta(minutes=5)
    )
    services.generation_call(generation_id=generation.pk)
    assert provider.generation_calls() == 0


def test_a_generation_that_never_finishes_is_failed_at_the_cap(owner, provider, settings):
    settings.GENERATION_MAX_ATTEMPTS = 2
    generation = make(owner)
    # Two deliveries whose worker died mid-call: claimed, never released.
    Generation.objects.filter(pk=generation.pk).update(
        status="running", attempts=2, lease_until=timezone.now() - timedelta(seconds=1)
    )
    services.generation_call(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
    assert "Stopped after 2 attempts" in generation.error
    assert provider.generation_calls() == 0


def test_an_expired_provider_url_fails_without_calling_the_provider_again(owner, provider):
    generation = make(owner)
    services.generation_call(generation_id=generation.pk)
    provider.url_ttl = 0.000001
    services.generation_mirror(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
    assert "Could not copy image 1" in generation.error
    assert provider.generation_calls() == 1


def test_mirroring_resumes_after_a_partial_copy(owner, provider):
    generation = make(owner, num_images=2)
    services.generation_call(generation_id=generation.pk)
    generation.refresh_from_db()
    good = generation.provider_images[0]["url"]
    broken = dict(generation.provider_images[1], url=good.replace("/files/", "/files/x"))
    Generation.objects.filter(pk=generation.pk).update(
        provider_images=[generation.provider_images[0], broken]
    )
    services.generation_mirror(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
    assert generation.images.count() == 1  # the first was kept, not re-fetched later


@pytest.mark.parametrize("in_files", [False, True], ids=["in memory", "in files"])
def test_inline_base64_answers_are_mirrored(owner, provider, monkeypatch, in_files):
    if in_files:  # the images are kept in files, as a long answer's are
        monkeypatch.setattr(answer, "INLINE_MIN_BYTES", 1024)
        # And decoded from there: the in-memory decoder is not called.
        monkeypatch.setattr(download, "decode_b64_image", None)
    provider.shape = "b64"
    generation = make(owner, num_images=2)
    services.generation_call(generation_id=generation.pk)
    generation.refresh_from_db()
    assert all(entry.get("stored") for entry in generation.provider_images)
    assert "characters>" in str(generation.provider_response)  # payload not kept twice
    generation = run(generation)
    assert generation.status == Generation.Status.SUCCEEDED, generation.error
    assert [i.width for i in generation.images.all()] == [512, 512]
    assert "incoming" not in media_files(generation)
    assert provider.cdn_requests == []


def test_the_sweep_resends_what_nobody_holds(owner, django_capture_on_commit_callbacks):
    # Messages another test left behind would count as a backlog the sweep waits behind.
    purge_queues()
    now = timezone.now()
    due = make(owner)
    held = make(owner)
    abandoned = make(owner)
    fresh = make(owner)
    done = make(owner)
    Generation.objects.filter(pk=due.pk).update(sweep_after=now - timedelta(seconds=1))
    Generation.objects.filter(pk=held.pk).update(
        status="running", lease_until=now + timedelta(minutes=1), sweep_after=now
    )
    Generation.objects.filter(pk=abandoned.pk).update(
        status="running", lease_until=now - timedelta(seconds=1)
    )
    Generation.objects.filter(pk=done.pk).update(
        status="succeeded", sweep_after=now - timedelta(hours=1)
    )
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.generation_sweep() == 2
    assert len(callbacks) == 2
    fresh.refresh_from_db()
    assert fresh.status == "queued"
    # Re-sent rows are not re-sent again on the next tick.
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.generation_sweep() == 0


def unreachable_for(monkeypatch: Any, times: int) -> list[float]:
    """The database refuses the answer's save `times` times; sleeps are recorded, not slept."""
    from django.db import OperationalError

    import generator.services.call as call

    original, slept = call._save_provider_result, []

    def flaky(*args: Any, **kwargs: Any) -> None:
        if len(slept) < times:
            raise OperationalError("server closed the connection unexpectedly")
        original(*args, **kwargs)

    monkeypatch.setattr(call, "_save_provider_result", flaky)
    # The call module's clock only: the provider client keeps real time.
    monkeypatch.setattr(call, "time", SimpleNamespace(monotonic=time.monotonic, sleep=slept.append))
    return slept


def test_an_answer_is_saved_when_the_database_returns_within_the_lease(
    owner, provider, settings, monkeypatch
):
    settings.GENERATION_LEASE_SECONDS = 180
    slept = unreachable_for(monkeypatch, times=8)
    generation = make(owner)
    services.generation_call(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.step == Generation.Step.MIRROR and generation.attempts == 1
    assert len(slept) == 8 and max(slept) == 8.0  # backed off, capped
    assert provider.generation_calls() == 1


def test_an_answer_the_database_refuses_past_the_lease_fails_and_is_counted(
    owner, provider, settings, monkeypatch
):
    import generator.services.call as call

    settings.GENERATION_LEASE_SECONDS = 0  # the lease is over before the first retry
    unreachable_for(monkeypatch, times=10**6)
    counted: list[dict] = []
    monkeypatch.setattr(call, "cost_entry_record", lambda **kw: counted.append(kw))
    generation = make(owner)
    services.generation_call(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
    assert "could not be saved" in generation.error
    assert counted and counted[0]["images"] == 1
    assert provider.generation_calls() == 1
