"""Control over every job: cancel (queued, running, an answer or a copy arriving after
it), Regenerate and Variations, and the progress a card shows."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from accounts.errors import BudgetExhausted, Conflict, InvalidRequest, LimitReached, Refused
from audit.models import AuditEvent
from generator import provider as provider_client
from generator import selectors, services
from generator.models import CostEntry, Generation, Image
from generator.registry import FLUX_REALISM, get_model
from generator.services import claims, mirror
from tests.conftest import run_steps, with_role

pytestmark = pytest.mark.django_db

Status = Generation.Status
PROMPT = "A paper boat on a puddle after the rain"


def make(owner: Any, model: str = "flux-realism", **params: Any) -> Generation:
    spec = get_model(model)
    body = {"model": spec.id, "prompt": PROMPT, **params}
    if spec.size is not None:
        body.setdefault("image_size", "square")
    return services.generation_create(owner=owner, spec=spec, body=body)


def folder_files(generation: Generation) -> list[str]:
    folder = Path(settings.MEDIA_ROOT) / "generations" / str(generation.uuid)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --- Cancel -----------------------------------------------------------------------------


def test_a_cancelled_queued_job_is_never_sent_and_costs_nothing(owner, provider):
    generation = make(owner, num_images=2)
    assert services.month_spend(owner=owner) == generation.estimated_usd

    cancelled = services.generation_cancel(generation=generation, by=owner)

    assert cancelled.status == Status.CANCELLED and cancelled.finished_at is not None
    # The message still in the broker reaches a worker: it must not call the provider.
    services.generation_call(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.CANCELLED
    assert provider.generation_calls() == 0
    assert not CostEntry.objects.exists()
    assert services.month_spend(owner=owner) == 0


def test_the_sweep_never_resends_a_cancelled_job(owner, provider):
    generation = make(owner)
    services.generation_cancel(generation=generation, by=owner)
    Generation.objects.filter(pk=generation.pk).update(
        sweep_after=timezone.now() - timedelta(hours=1)
    )
    assert services.generation_sweep() == 0
    # An unfinished one in the same state would have been re-sent.
    other = make(owner)
    Generation.objects.filter(pk=other.pk).update(sweep_after=timezone.now() - timedelta(hours=1))
    assert services.generation_sweep() == 1


def test_a_job_cancelled_after_its_claim_is_not_sent(owner, provider, monkeypatch):
    generation = make(owner)
    real_body = services.generation_request_body

    def cancelled_meanwhile(claimed: Generation) -> dict[str, Any]:
        # The worker has claimed it (running) when the owner presses Cancel.
        assert claimed.status == Status.RUNNING
        services.generation_cancel(generation=claimed, by=owner)
        return real_body(claimed)

    monkeypatch.setattr("generator.services.call.generation_request_body", cancelled_meanwhile)
    services.generation_call(generation_id=generation.pk)

    generation.refresh_from_db()
    assert generation.status == Status.CANCELLED
    assert provider.generation_calls() == 0
    assert not CostEntry.objects.exists()


@pytest.mark.parametrize("shape", ["auto", "b64"], ids=["urls", "inline"])
def test_an_answer_after_cancel_is_charged_but_stores_no_images(
    owner, provider, monkeypatch, shape
):
    provider.shape = shape
    # One image, one call: the call runs in this thread, where the cancel can be made.
    generation = make(owner, num_images=1)
    real_generate = provider_client.generate_images

    def cancelled_in_flight(body: dict[str, Any], **kwargs: Any) -> Any:
        # The call has gone out; it cannot be recalled.
        services.generation_cancel(generation=generation, by=owner)
        return real_generate(body, **kwargs)

    monkeypatch.setattr("generator.provider.generate_images", cancelled_in_flight)
    services.generation_call(generation_id=generation.pk)
    services.generation_mirror(generation_id=generation.pk)

    generation.refresh_from_db()
    assert generation.status == Status.CANCELLED
    assert provider.generation_calls() == 1
    cost = CostEntry.objects.get(generation=generation)
    assert cost.images == 1 and cost.estimated_usd == FLUX_REALISM.price
    # The ledger's figure counts against the budget like any other answered call.
    assert services.month_spend(owner=owner) == cost.estimated_usd
    assert not Image.objects.exists()
    assert generation.provider_images == []
    assert folder_files(generation) == []  # no inline image kept for a mirror step


def test_cancel_during_the_copy_step_keeps_the_cost_and_no_image(
    owner, provider, django_capture_on_commit_callbacks
):
    generation = make(owner)
    services.generation_call(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.step == Generation.Step.MIRROR

    with django_capture_on_commit_callbacks(execute=True):
        services.generation_cancel(generation=generation, by=owner)
    services.generation_mirror(generation_id=generation.pk)

    generation.refresh_from_db()
    assert generation.status == Status.CANCELLED
    assert not Image.objects.exists()
    assert CostEntry.objects.filter(generation=generation).exists()


def test_images_copied_while_cancelling_are_removed(
    owner, provider, monkeypatch, django_capture_on_commit_callbacks
):
    generation = make(owner, num_images=2)
    services.generation_call(generation_id=generation.pk)
    real_fetch = mirror.fetch.fetch_image
    fetched: list[str] = []

    def cancelled_mid_copy(url: str) -> bytes:
        fetched.append(url)
        if len(fetched) == 2:
            # One image is already stored when the owner presses Cancel.
            assert Image.objects.filter(generation=generation).count() == 1
            services.generation_cancel(generation=generation, by=owner)
        return real_fetch(url)

    monkeypatch.setattr(mirror.fetch, "fetch_image", cancelled_mid_copy)
    with django_capture_on_commit_callbacks(execute=True):
        services.generation_mirror(generation_id=generation.pk)

    generation.refresh_from_db()
    assert generation.status == Status.CANCELLED
    assert len(fetched) == 2
    assert not Image.objects.exists()
    assert folder_files(generation) == []


@pytest.mark.parametrize("status", [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED])
def test_a_finished_job_cannot_be_cancelled(owner, provider, status):
    generation = make(owner)
    Generation.objects.filter(pk=generation.pk).update(status=status)
    generation.refresh_from_db()
    with pytest.raises(Conflict, match="only a queued or running one"):
        services.generation_cancel(generation=generation, by=owner)
    generation.refresh_from_db()
    assert generation.status == status


def test_a_succeeded_job_finished_by_the_pipeline_cannot_be_cancelled(owner, provider):
    generation = run_steps(make(owner))
    assert generation.status == Status.SUCCEEDED
    with pytest.raises(Conflict):
        services.generation_cancel(generation=generation, by=owner)
    assert generation.images.count() == 1


@pytest.mark.parametrize("persona", ["teammate", "moderator", "viewer", "suspended"])
def test_only_the_owner_or_an_admin_cancels(owner, persona, request):
    generation = make(owner)
    Generation.objects.filter(pk=generation.pk).update(visibility="shared")
    with pytest.raises(Refused):
        services.generation_cancel(generation=generation, by=request.getfixturevalue(persona))
    generation.refresh_from_db()
    assert generation.status == Status.QUEUED
    assert not AuditEvent.objects.filter(action="generation.cancel").exists()


def test_an_admin_cancels_someone_elses_job_and_it_is_audited(owner, teammate):
    admin = with_role(teammate, "admin")
    generation = make(owner)
    services.generation_cancel(generation=generation, by=admin)
    generation.refresh_from_db()
    assert generation.status == Status.CANCELLED
    event = AuditEvent.objects.get(action="generation.cancel")
    assert event.actor == admin and event.target_id == str(generation.uuid)
    assert event.detail == {"was": "queued", "step": "call", "sent": False}


def test_an_owner_demoted_to_viewer_still_cancels_their_own(owner):
    generation = make(owner)
    with_role(owner, "viewer")
    services.generation_cancel(generation=generation, by=owner)
    generation.refresh_from_db()
    assert generation.status == Status.CANCELLED


# --- Regenerate and Variations ----------------------------------------------------------


def finished(owner: Any, **params: Any) -> Generation:
    generation = make(owner, **params)
    Generation.objects.filter(pk=generation.pk).update(
        status=Status.SUCCEEDED, seed="1234", finished_at=timezone.now()
    )
    generation.refresh_from_db()
    return generation


def test_regenerate_keeps_the_settings_with_a_new_seed(owner):
    original = finished(owner, seed=1234, guidance_scale=4.5, num_images=2)
    again = services.generation_regenerate(generation=original, by=owner)
    assert again.pk != original.pk and again.status == Status.QUEUED
    assert {k: v for k, v in again.params.items() if k != "seed"} == {
        k: v for k, v in original.params.items() if k != "seed"
    }
    assert isinstance(again.params["seed"], int) and again.params["seed"] != 1234
    assert 1 <= again.params["seed"] <= 2**32 - 1
    assert again.visibility == original.visibility


def test_regenerate_leaves_the_seed_to_the_provider_for_a_model_without_one(owner, settings):
    spec = get_model("recraft-v3")
    assert spec.param("seed") is None
    original = finished(owner, model=spec.id)
    again = services.generation_regenerate(generation=original, by=owner)
    assert "seed" not in again.params
    assert not services.variations_supported(original)
    with pytest.raises(InvalidRequest, match="cannot make variations"):
        services.generation_variations(generation=original, by=owner)


def test_variations_take_the_seeds_after_the_one_used(owner):
    original = finished(owner, image_size="square_hd")
    made = services.generation_variations(generation=original, by=owner)
    assert len(made) == services.VARIATION_COUNT == 4
    assert [g.params["seed"] for g in made] == [1235, 1236, 1237, 1238]
    assert all(g.params["image_size"] == "square_hd" for g in made)
    assert all(g.status == Status.QUEUED for g in made)


def test_variations_wrap_within_the_models_seed_range(owner):
    original = finished(owner)
    Generation.objects.filter(pk=original.pk).update(seed=str(2**32 - 2))
    original.refresh_from_db()
    made = services.generation_variations(generation=original, by=owner)
    assert [g.params["seed"] for g in made] == [2**32 - 1, 1, 2, 3]


def test_variations_of_an_image_to_image_result_start_from_that_result(owner, provider):
    start = run_steps(make(owner))
    spec = get_model("flux/dev/image-to-image")
    body = {"model": spec.id, "prompt": "The same boat, at night"}
    from generator.forms import Reference

    result = services.generation_create(
        owner=owner, spec=spec, body=body, reference=Reference(image=start.images.get())
    )
    result = run_steps(result)
    assert result.status == Status.SUCCEEDED
    made = services.generation_variations(generation=result, by=owner)
    assert {g.source_image_id for g in made} == {result.images.get().pk}
    assert all("image_url" not in g.params for g in made)


def test_variations_are_all_or_nothing_under_the_active_limit(owner, settings):
    settings.GENERATION_MAX_ACTIVE_PER_USER = 3
    original = finished(owner)
    with pytest.raises(LimitReached):
        services.generation_variations(generation=original, by=owner)
    assert Generation.objects.count() == 1


def test_regenerate_and_variations_respect_the_budget(owner, settings):
    original = finished(owner)
    Generation.objects.filter(pk=original.pk).update(estimated_usd=0)
    settings.USER_MONTHLY_BUDGET_USD = FLUX_REALISM.price * 2
    with pytest.raises(BudgetExhausted):
        services.generation_variations(generation=original, by=owner)
    assert Generation.objects.count() == 1
    services.generation_regenerate(generation=original, by=owner)
    assert Generation.objects.count() == 2


@pytest.mark.parametrize("persona", ["teammate", "moderator", "viewer"])
def test_only_the_owner_regenerates(owner, persona, request):
    original = finished(owner)
    Generation.objects.filter(pk=original.pk).update(visibility="shared")
    for service in (services.generation_regenerate, services.generation_variations):
        with pytest.raises(Refused):
            service(generation=original, by=request.getfixturevalue(persona))
    assert Generation.objects.count() == 1


def test_an_unfinished_job_is_not_regenerated(owner):
    queued = make(owner)
    with pytest.raises(InvalidRequest, match="finish"):
        services.generation_regenerate(generation=queued, by=owner)


def test_a_prompt_blocked_since_is_not_regenerated(owner):
    from generator.models import BlockedTerm

    original = finished(owner)
    BlockedTerm.objects.create(pattern="boat")
    with pytest.raises(InvalidRequest, match="prompt policy"):
        services.generation_regenerate(generation=original, by=owner)
    assert AuditEvent.objects.filter(action="policy.blocked").count() == 1


# --- Progress ---------------------------------------------------------------------------


def test_progress_gives_the_queue_position_while_queued(owner, teammate):
    first = make(teammate)
    second = make(owner)
    assert selectors.generation_progress(first).position == 1
    assert selectors.generation_progress(second).position == 2
    claims.claim(first.pk, Generation.Step.CALL)
    assert selectors.generation_progress(second).position == 1
    running = Generation.objects.get(pk=first.pk)
    assert selectors.generation_progress(running).position is None


def test_the_eta_is_the_median_of_the_models_recent_durations(owner):
    now = timezone.now()
    for seconds in (10, 20, 90):
        done = make(owner)
        Generation.objects.filter(pk=done.pk).update(
            status=Status.SUCCEEDED,
            started_at=now - timedelta(seconds=seconds + 5),
            finished_at=now - timedelta(seconds=5),
        )
    other_model = make(owner, model="flux/schnell")
    Generation.objects.filter(pk=other_model.pk).update(
        status=Status.SUCCEEDED, started_at=now - timedelta(hours=1), finished_at=now
    )
    assert selectors.typical_seconds("flux-realism") == pytest.approx(20)

    running = make(owner)
    Generation.objects.filter(pk=running.pk).update(
        status=Status.RUNNING, started_at=now - timedelta(seconds=5)
    )
    running.refresh_from_db()
    progress = selectors.generation_progress(running)
    assert progress.since == running.started_at
    assert progress.eta == running.started_at + timedelta(seconds=20)
    assert 14 <= progress.remaining_seconds <= 15
    assert progress.elapsed_text in ("5 s", "6 s")
    assert selectors.generation_progress(Generation.objects.get(pk=other_model.pk)) is None


def test_a_model_never_run_has_no_eta(owner):
    progress = selectors.generation_progress(make(owner))
    assert progress.eta is None and progress.typical_seconds is None


def test_clock_text():
    assert selectors.clock_text(7.9) == "7 s"
    assert selectors.clock_text(65) == "1 min 05 s"


# --- Pages ------------------------------------------------------------------------------


def test_the_running_card_shows_elapsed_eta_and_cancel(client, owner):
    now = timezone.now()
    done = make(owner)
    Generation.objects.filter(pk=done.pk).update(
        status=Status.SUCCEEDED, started_at=now - timedelta(seconds=30), finished_at=now
    )
    running = make(owner)
    Generation.objects.filter(pk=running.pk).update(
        status=Status.RUNNING, started_at=now - timedelta(seconds=4)
    )
    client.force_login(owner)
    card = client.get(
        reverse("generator:detail", args=[running.uuid]),
        {"part": "card"},
        headers={"HX-Request": "true"},
    ).text
    assert 'data-clock="up"' in card and "Elapsed" in card
    assert 'data-clock="down"' in card and "ETA" in card
    assert reverse("generator:cancel", args=[running.uuid]) in card
    assert "Regenerate" not in card


def test_the_queued_card_shows_its_queue_position(client, owner, teammate):
    make(teammate)
    queued = make(owner)
    client.force_login(owner)
    page = client.get(reverse("generator:studio")).text
    assert "Queue position 2" in page
    assert reverse("generator:cancel", args=[queued.uuid]) in page


def test_cancel_from_the_card_with_htmx_answers_the_cancelled_card(client, owner):
    generation = make(owner)
    client.force_login(owner)
    response = client.post(
        reverse("generator:cancel", args=[generation.uuid]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert f'id="generation-{generation.uuid}"' in response.text
    assert "badge-cancelled" in response.text and "it cost nothing" in response.text
    assert "hx-trigger" not in response.text  # a cancelled card stops polling
    assert "Regenerate" in response.text


def test_cancel_without_javascript_goes_to_the_generation(client, owner):
    generation = make(owner)
    client.force_login(owner)
    response = client.post(reverse("generator:cancel", args=[generation.uuid]))
    assert response.status_code == 303
    assert response["Location"] == reverse("generator:detail", args=[generation.uuid])
    page = client.get(response["Location"]).text
    assert "Cancelled before it was sent" in page


def test_cancelling_a_finished_job_is_a_clear_409(client, owner):
    generation = finished(owner)
    client.force_login(owner)
    url = reverse("generator:cancel", args=[generation.uuid])
    response = client.post(url)
    assert response.status_code == 409
    assert "already succeeded" in response.text
    # With htmx (it finished as the button was pressed) the card shows how it ended.
    response = client.post(url, headers={"HX-Request": "true"})
    assert response.status_code == 200 and "badge-succeeded" in response.text


def test_a_card_cancelled_after_the_call_shows_the_charge(client, owner):
    generation = make(owner)
    Generation.objects.filter(pk=generation.pk).update(
        status=Status.CANCELLED, started_at=timezone.now(), finished_at=timezone.now()
    )
    services.cost_entry_record(generation=generation, images=1, usage=None)
    client.force_login(owner)
    card = client.get(
        reverse("generator:detail", args=[generation.uuid]),
        {"part": "card"},
        headers={"HX-Request": "true"},
    ).text
    assert "it billed the call" in card and f"{FLUX_REALISM.price:.4f}" in card


def test_regenerate_with_htmx_puts_the_new_card_on_top(client, owner):
    original = finished(owner)
    client.force_login(owner)
    response = client.post(
        reverse("generator:regenerate", args=[original.uuid]), headers={"HX-Request": "true"}
    )
    again = Generation.objects.exclude(pk=original.pk).get()
    assert response.status_code == 200
    assert f'id="generation-{again.uuid}"' in response.text
    assert response["HX-Retarget"] == "#generation-list"
    assert response["HX-Reswap"] == "afterbegin"


def test_variations_with_htmx_answer_every_new_card(client, owner):
    original = finished(owner)
    client.force_login(owner)
    response = client.post(
        reverse("generator:variations", args=[original.uuid]), headers={"HX-Request": "true"}
    )
    made = Generation.objects.exclude(pk=original.pk)
    assert made.count() == 4
    for generation in made:
        assert f'id="generation-{generation.uuid}"' in response.text


def test_regenerate_and_variations_without_javascript(client, owner):
    original = finished(owner)
    client.force_login(owner)
    page = client.get(reverse("generator:detail", args=[original.uuid])).text
    assert reverse("generator:regenerate", args=[original.uuid]) in page
    response = client.post(reverse("generator:regenerate", args=[original.uuid]))
    again = Generation.objects.exclude(pk=original.pk).get()
    assert response["Location"] == reverse("generator:detail", args=[again.uuid])
    response = client.post(reverse("generator:variations", args=[original.uuid]))
    assert response.status_code == 303 and response["Location"] == reverse("generator:studio")
    assert Generation.objects.count() == 6


def test_a_limit_on_variations_is_a_clear_429(client, owner, settings):
    settings.GENERATION_MAX_ACTIVE_PER_USER = 2
    original = finished(owner)
    client.force_login(owner)
    response = client.post(reverse("generator:variations", args=[original.uuid]))
    assert response.status_code == 429 and "limit is 2" in response.text
    assert Generation.objects.count() == 1
