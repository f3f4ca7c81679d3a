"""`{% generation_job generation user as job %}`: what a generation's card shows and
offers, from the generation alone, so any code that re-renders the card partial
(polling, server-sent events) gets the same card without building a context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import template

from accounts import rules
from generator import selectors, services
from generator.models import Generation

register = template.Library()


@dataclass(frozen=True)
class Job:
    progress: selectors.Progress | None
    can_cancel: bool
    can_rerun: bool
    can_vary: bool
    variation_count: int


@register.simple_tag
def generation_job(generation: Generation, user: Any) -> Job:
    finished = generation.is_finished
    rerun = finished and rules.may_rerun(user, generation)
    return Job(
        progress=selectors.generation_progress(generation),
        can_cancel=generation.is_cancellable and rules.may_cancel(user, generation),
        can_rerun=rerun,
        can_vary=rerun and services.variations_supported(generation),
        variation_count=services.VARIATION_COUNT,
    )
