"""Regenerate and Variations: new submissions made from a finished generation's
settings, through generation_create like any other (role, limits, budgets)."""

from __future__ import annotations

import random
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from accounts import rules
from accounts.errors import InvalidRequest
from generator.forms import Reference
from generator.models import Generation
from generator.policy import prompt_blocked_record, prompt_violation
from generator.registry import ModelSpec, get_model
from generator.selectors import enabled_model_ids
from generator.services.creating import generation_create

# How many generations one press of Variations makes. Each costs what the original did.
VARIATION_COUNT = 4

# New seeds are drawn from the range every model with a seed accepts (some stop at
# 2**32 - 1), so a regenerated generation can be reproduced on any of them.
_DRAWN_SEED_MAX = 2**32 - 1


def _resubmittable(generation: Generation, by: AbstractBaseUser, *, via: str) -> ModelSpec:
    """The checks a resubmission passes before generation_create's own: the owner, a
    finished generation, a model still offered, a prompt the policy allows now."""
    rules.require(
        rules.may_rerun(by, generation),
        "Only the owner can make new images from these settings.",
    )
    if not generation.is_finished:
        raise InvalidRequest("Wait for this generation to finish first.")
    spec = get_model(generation.model)
    if spec is None or spec.id not in enabled_model_ids():
        raise InvalidRequest(f"The model {generation.model} is not offered any more.")
    term = prompt_violation(generation.prompt)
    if term is not None:
        prompt_blocked_record(user=by, prompt=generation.prompt, term=term, via=via)
        raise InvalidRequest("This prompt is now blocked by the studio's prompt policy.")
    return spec


def _seed_bounds(spec: ModelSpec) -> tuple[int, int] | None:
    param = spec.param("seed")
    if param is None:
        return None
    return int(param.minimum or 0), int(min(param.maximum or _DRAWN_SEED_MAX, _DRAWN_SEED_MAX))


def _used_seed(generation: Generation) -> int | None:
    """The seed the images were made with: the provider's answer, else the one asked."""
    for value in (generation.seed, generation.params.get("seed")):
        if str(value or "").isdigit():
            return int(value)
    return None


def generation_regenerate(*, generation: Generation, by: AbstractBaseUser) -> Generation:
    """The same settings with a new seed (left to the provider for a model without one)."""
    spec = _resubmittable(generation, by, via="regenerate")
    body: dict[str, Any] = dict(generation.params)
    bounds = _seed_bounds(spec)
    body.pop("seed", None)
    if bounds is not None:
        old = _used_seed(generation)
        seed = random.randint(*bounds)
        while seed == old:
            seed = random.randint(*bounds)
        body["seed"] = seed
    return generation_create(
        owner=generation.owner,
        spec=spec,
        body=body,
        options=dict(generation.options),
        visibility=generation.visibility,
        retry_of=generation,
    )


def variations_supported(generation: Generation) -> bool:
    """Nearby seeds need a model that takes a seed; an image-to-image model can start
    from the result instead."""
    spec = get_model(generation.model)
    return spec is not None and (spec.param("seed") is not None or spec.reference_image)


@transaction.atomic
def generation_variations(
    *, generation: Generation, by: AbstractBaseUser, count: int = VARIATION_COUNT
) -> list[Generation]:
    """`count` new generations with the same settings and the seeds right after the one
    used (wrapping within the model's range). An image-to-image model starts each from
    the result's first image instead of the original starting image, so the variations
    stay close to what was made. All or none: a limit or budget reached part-way
    refuses the whole set."""
    spec = _resubmittable(generation, by, via="variations")
    if not variations_supported(generation):
        raise InvalidRequest(f"{spec.label} takes no seed, so it cannot make variations.")
    bounds = _seed_bounds(spec)
    base = _used_seed(generation)
    if bounds is not None and base is None:
        base = random.randint(*bounds)
    start_from = None
    if spec.reference_image:
        start_from = generation.images.order_by("index").first()
    created = []
    for offset in range(1, count + 1):
        body: dict[str, Any] = dict(generation.params)
        if bounds is not None and base is not None:
            low, high = bounds
            body["seed"] = low + (base + offset - low) % (high - low + 1)
        if start_from is not None:
            body.pop("image_url", None)
        variation = generation_create(
            owner=generation.owner,
            spec=spec,
            body=body,
            options=dict(generation.options),
            visibility=generation.visibility,
            retry_of=None if start_from is not None else generation,
            reference=Reference(image=start_from) if start_from is not None else None,
        )
        created.append(variation)
    return created
