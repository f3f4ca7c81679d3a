"""Each image of a batch comes from its own provider call with its own seed, and the
cost is what the provider said it charged (x-aimlapi-usd-spent), against the offline
provider over real HTTP."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from PIL import Image as PILImage

from generator import services
from generator.models import CostEntry, Generation, ProviderCall
from generator.registry import FLUX_REALISM
from tests.conftest import run_steps

pytestmark = pytest.mark.django_db

PROMPT = "A lighthouse on a cliff at dusk, long exposure"


def make(owner: Any, **params: Any) -> Generation:
    body = {"model": "flux-realism", "prompt": PROMPT, "image_size": "square", **params}
    return services.generation_create(owner=owner, spec=FLUX_REALISM, body=body)


def stored_bytes(image: Any) -> bytes:
    with image.file.open("rb") as fh:
        return fh.read()


def request_ids(provider: Any) -> list[str]:
    return sorted(call["headers"].get("X-Client-Request-Id", "") for call in provider.calls)


# --- Part 1: every image reproducible by its own seed --------------------------------------


def test_each_image_of_a_batch_reproduces_alone_from_its_own_seed(owner, provider):
    seed = 1234567
    batch = run_steps(make(owner, seed=seed, num_images=4))
    assert batch.status == Generation.Status.SUCCEEDED, batch.error
    images = list(batch.images.order_by("index"))
    assert [image.seed for image in images] == [str(seed + i) for i in range(4)]
    assert batch.seed == str(seed)
    # Four calls of one image each, seeds S..S+3, each named after its image.
    assert sorted(call["body"]["seed"] for call in provider.calls) == [seed + i for i in range(4)]
    assert all(call["body"]["num_images"] == 1 for call in provider.calls)
    assert request_ids(provider) == [f"{batch.uuid}-{i}" for i in range(4)]

    again = run_steps(make(owner, seed=seed + 2))
    image = again.images.get()
    assert image.seed == str(seed + 2)
    assert image.sha256 == images[2].sha256
    assert stored_bytes(image) == stored_bytes(images[2])
    # And not just any image of the batch: the others differ.
    assert image.sha256 not in {images[0].sha256, images[1].sha256, images[3].sha256}


def test_a_batch_without_a_seed_still_gets_consecutive_seeds_kept_across_retries(owner, provider):
    provider.fail_next(503)
    generation = make(owner, num_images=3)
    with pytest.raises(services.RetryLater):
        services.generation_call(generation_id=generation.pk)
    first_seeds = sorted(int(c.seed) for c in generation.calls.all())
    generation = run_steps(generation)
    assert generation.status == Generation.Status.SUCCEEDED, generation.error
    seeds = sorted(int(image.seed) for image in generation.images.all())
    assert seeds == first_seeds == [seeds[0], seeds[0] + 1, seeds[0] + 2]
    # The call sent again asked for the same seed as the first time.
    sent = [call["body"]["seed"] for call in provider.calls]
    assert sorted(set(sent)) == seeds and len(sent) == 4


def test_one_of_four_calls_failing_leaves_three_images_and_says_which(owner, provider, client):
    provider.fail_next(400, message="Body validation error! the prompt was refused")
    generation = run_steps(make(owner, seed=500, num_images=4))
    assert generation.status == Generation.Status.SUCCEEDED
    images = list(generation.images.order_by("index"))
    assert len(images) == 3
    failed = generation.calls.get(status=ProviderCall.Status.FAILED)
    assert failed.index not in [image.index for image in images]
    # The images that came back keep their own index and seed.
    assert all(image.seed == str(500 + image.index) for image in images)
    assert "3 of 4 images came back" in generation.error
    assert f"image {failed.index + 1} (seed {500 + failed.index})" in generation.error
    assert "the prompt was refused" in generation.error
    # Only the three images that came back are counted.
    assert generation.cost.images == 3

    client.force_login(owner)
    card = client.get(
        reverse("generator:detail", args=[generation.uuid]) + "?part=card",
        headers={"HX-Request": "true"},
    )
    assert 'class="partial-failure"' in card.text and "3 of 4 images came back" in card.text
    page = client.get(reverse("generator:detail", args=[generation.uuid]))
    assert 'id="generation-partial"' in page.text and "the prompt was refused" in page.text
    assert f"seed {500 + images[0].index}" in page.text

    data = client.get(f"/v1/generations/{generation.uuid}").json()
    assert data["status"] == "succeeded" and len(data["images"]) == 3
    assert "3 of 4 images came back" in data["error"]
    assert data["failures"] == [
        {"index": failed.index, "seed": 500 + failed.index, "error": failed.error}
    ]


def test_a_call_that_keeps_failing_reaches_its_own_cap_and_the_rest_come_back(
    owner, provider, settings
):
    settings.GENERATION_MAX_ATTEMPTS = 3
    generation = make(owner, seed=77, num_images=2)
    for _ in range(2):
        # One 503 a run: the first run's goes to one of the two calls, and the next
        # runs send only that one.
        provider.fail_next(503)
        with pytest.raises(services.RetryLater):
            services.generation_call(generation_id=generation.pk)
    provider.fail_next(503)
    generation = run_steps(generation)
    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.images.count() == 1
    failed = generation.calls.get(status=ProviderCall.Status.FAILED)
    assert failed.attempts == 3 and "Gave up after 3 attempts" in failed.error
    # The call that answered was sent once; the failing one once per attempt.
    assert provider.generation_calls() == 4
    assert sorted(c.attempts for c in generation.calls.all()) == [1, 3]


def test_a_batch_whose_every_call_fails_fails_with_their_reasons(owner, provider):
    provider.fail_next(422, times=2, message="No such style")
    generation = run_steps(make(owner, seed=9, num_images=2))
    assert generation.status == Generation.Status.FAILED
    assert generation.error.startswith("None of the 2 images came back.")
    assert "image 1 (seed 9): No such style" in generation.error
    assert generation.error_status == 422


def test_models_without_a_seed_keep_one_call_for_all_their_images():
    assert services.splits_per_image(Generation(model="flux-realism", params={"num_images": 3}))
    assert not services.splits_per_image(Generation(model="flux-realism", params={}))
    assert not services.splits_per_image(Generation(model="dall-e-2", params={"n": 3}))
    assert not services.splits_per_image(Generation(model="recraft-v3", params={}))


def test_the_image_page_and_download_carry_the_images_own_seed(owner, provider, client):
    generation = run_steps(make(owner, seed=4242, num_images=2, output_format="png"))
    second = generation.images.get(index=1)
    client.force_login(owner)
    page = client.get(reverse("gallery:image", args=[second.uuid]))
    assert '<dd id="image-seed">4243</dd>' in page.text
    assert f"reuse={generation.uuid}&amp;image={second.uuid}" in page.text
    download = client.get(reverse("gallery:download", args=[second.uuid]))
    with PILImage.open(io.BytesIO(download.content)) as im:
        assert "Seed: 4243," in im.text["parameters"]
    # "Reuse with seed" on that image opens the form for that image alone.
    form = client.get(reverse("generator:studio") + f"?reuse={generation.uuid}&image={second.uuid}")
    assert form.context["form"].initial["seed"] == "4243"
    assert form.context["form"].initial["num_images"] == 1


# --- Part 2: the cost the provider actually charged ---------------------------------------


def test_the_providers_usd_spent_is_the_cost_the_api_and_usage_page_show(owner, provider, client):
    provider.prices["flux-realism"] = "0.0421"
    generation = run_steps(make(owner))
    assert generation.status == Generation.Status.SUCCEEDED, generation.error
    assert provider.calls[0]["headers"]["X-Client-Request-Id"] == str(generation.uuid)
    entry = CostEntry.objects.get(generation=generation)
    assert entry.provider_usd == Decimal("0.0421")
    assert entry.estimated_usd == FLUX_REALISM.price  # the estimate is kept beside it
    assert entry.credits_used is not None

    client.force_login(owner)
    answer = client.get(f"/v1/generations/{generation.uuid}")
    assert answer.json()["cost"] == {"usd": 0.0421, "source": "provider"}
    assert answer["x-aimlapi-usd-spent"] == "0.0421"

    usage = client.get(reverse("generator:usage"))
    assert "$0.0421" in usage.text
    assert usage.context["spent"] == Decimal("0.0421")
    assert services.month_spend(owner=owner) == Decimal("0.0421")


def test_a_batch_costs_the_sum_of_its_calls(owner, provider, client):
    provider.prices["flux-realism"] = "0.011"
    generation = run_steps(make(owner, seed=3, num_images=3))
    entry = generation.cost
    assert (entry.images, entry.provider_usd) == (3, Decimal("0.033"))
    assert entry.estimated_usd == FLUX_REALISM.price * 3
    assert entry.credits_used == sum(c.credits_used for c in generation.calls.all())
    client.force_login(owner)
    assert client.get(f"/v1/generations/{generation.uuid}").json()["cost"] == {
        "usd": 0.033,
        "source": "provider",
    }


def test_without_the_providers_figure_the_estimate_is_the_cost(owner, provider, client):
    generation = run_steps(make(owner))
    # As if the provider had not sent x-aimlapi-usd-spent.
    CostEntry.objects.filter(generation=generation).update(provider_usd=None)
    client.force_login(owner)
    answer = client.get(f"/v1/generations/{generation.uuid}")
    assert answer.json()["cost"] == {"usd": float(FLUX_REALISM.price), "source": "estimate"}
    assert "x-aimlapi-usd-spent" not in answer
    assert services.month_spend(owner=owner) == FLUX_REALISM.price


def test_a_failure_nothing_was_paid_for_costs_nothing(owner, provider, client):
    provider.fail_next(400)
    generation = run_steps(make(owner))
    assert generation.status == Generation.Status.FAILED
    client.force_login(owner)
    cost = client.get(f"/v1/generations/{generation.uuid}").json()["cost"]
    assert cost == {"usd": 0.0, "source": "estimate"}
