"""Creating generations: the limits, budgets and fair priority checked before anything
is queued, visibility, retries, and the studio-wide model switches."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts import rules
from accounts.errors import BudgetExhausted, InvalidRequest, LimitReached
from accounts.services import default_visibility_of, member_of
from audit.services import audit_record
from generator.models import Generation, ModelSetting
from generator.policy import prompt_blocked_record, prompt_violation
from generator.registry import ModelSpec, get_model
from generator.selectors import enabled_model_ids
from generator.services.claims import send_on_commit

logger = logging.getLogger(__name__)

Status = Generation.Status
Step = Generation.Step


def model_setting_set(*, model: str, enabled: bool, by: AbstractBaseUser) -> ModelSetting:
    """Enable or disable a registry model for the whole studio."""
    rules.require(rules.may_enable_models(by), "Only an admin may enable or disable models.")
    setting, _ = ModelSetting.objects.update_or_create(
        model=model, defaults={"enabled": enabled, "updated_by": by}
    )
    audit_record(
        actor=by, action="model.enable" if enabled else "model.disable", target_label=model
    )
    return setting


def _image_count(body: dict[str, Any]) -> int:
    return int(body.get("num_images") or body.get("n") or 1)


def fair_priority(in_flight: int) -> int:
    """Broker priority (0 first) for a user's next generation, given how many of theirs
    are already queued or running: the first GENERATION_FAIR_SHARE go first, the rest
    of a big batch step back so other people's work overtakes it."""
    share = settings.GENERATION_FAIR_SHARE
    if in_flight < share:
        return 0
    if in_flight < 2 * share:
        return 3
    if in_flight < 4 * share:
        return 6
    return 9


def month_start() -> datetime:
    now = timezone.localtime()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_spend(*, owner: AbstractBaseUser | None = None) -> Decimal:
    """This month's spending (one query): the ledger's figure for answered generations,
    the submission estimate for those still waiting; failures, and cancellations the
    provider never billed, cost nothing."""
    generations = Generation.objects.filter(created_at__gte=month_start())
    if owner is not None:
        generations = generations.filter(owner=owner)
    total = generations.exclude(
        status__in=(Status.FAILED, Status.CANCELLED), cost__isnull=True
    ).aggregate(
        # The provider's own figure first: what it charged, when it said.
        total=Sum(Coalesce("cost__provider_usd", "cost__estimated_usd", "estimated_usd"))
    )["total"]
    return total or Decimal(0)


def budget_limit_reason(*, owner: AbstractBaseUser, estimate: Decimal) -> str | None:
    """Why `estimate` more would exceed the owner's or the studio's monthly budget."""
    member = member_of(owner)
    budget = (
        member.monthly_budget_usd
        if member and member.monthly_budget_usd is not None
        else (settings.USER_MONTHLY_BUDGET_USD)
    )
    if budget is not None:
        spent = month_spend(owner=owner)
        if spent + estimate > budget:
            return (
                f"{LIMIT_PREFIX} this would bring your spending this month to about "
                f"${spent + estimate:.2f}, over your budget of ${budget:.2f}. Ask an admin "
                "to raise it."
            )
    studio_budget = settings.STUDIO_MONTHLY_BUDGET_USD
    if studio_budget is not None:
        spent = month_spend()
        if spent + estimate > studio_budget:
            return (
                f"{LIMIT_PREFIX} the studio's budget for this month (${studio_budget:.2f}) "
                "would be exceeded; ask an admin."
            )
    return None


def _active_limit(owner: AbstractBaseUser) -> int:
    member = member_of(owner)
    if member and member.max_active is not None:
        return member.max_active
    return settings.GENERATION_MAX_ACTIVE_PER_USER


def generation_limit_reason(*, owner: AbstractBaseUser, active: int) -> str | None:
    """Why `owner`, with `active` generations queued or running, may not start another
    one now, or None if they may."""
    active_limit = _active_limit(owner)
    if active >= active_limit:
        return (
            f"{LIMIT_PREFIX} you have {active} generations in progress and the limit is "
            f"{active_limit}; wait for one to finish."
        )
    hourly_limit = settings.GENERATION_MAX_PER_HOUR
    since = timezone.now() - timedelta(hours=1)
    recent = Generation.objects.filter(owner=owner, created_at__gte=since).count()
    if recent >= hourly_limit:
        return (
            f"{LIMIT_PREFIX} {recent} generations in the last hour (the limit is {hourly_limit})."
        )
    return None


LIMIT_PREFIX = "Limit reached:"


def generation_limit_retry_after(*, owner: AbstractBaseUser, active: int) -> int:
    """Seconds until `owner`, refused by generation_limit_reason, may try again: when
    the hour window lets go of enough of their calls, or when one of theirs in progress
    should finish (its start plus their typical duration, the median of their last
    finished ones; GENERATION_LIMIT_RETRY_AFTER while they have none). The API sends it
    as Retry-After, so an SDK sleeps as long as it has to and no longer."""
    now = timezone.now()
    waits = []
    if active >= _active_limit(owner):
        recent = list(
            Generation.objects.filter(
                owner=owner, status=Status.SUCCEEDED, started_at__isnull=False
            )
            .order_by("-finished_at")
            .values_list("started_at", "finished_at")[:20]
        )
        durations = sorted((end - start).total_seconds() for start, end in recent)
        typical = (
            durations[len(durations) // 2] if durations else settings.GENERATION_LIMIT_RETRY_AFTER
        )
        starts = Generation.objects.filter(
            owner=owner, status__in=(Status.QUEUED, Status.RUNNING)
        ).values_list("started_at", flat=True)
        # One not started yet would take its whole typical duration from now.
        waits.append(min(((s or now) - now).total_seconds() + typical for s in starts or [now]))
    hourly_limit = settings.GENERATION_MAX_PER_HOUR
    window = timedelta(hours=1)
    in_window = Generation.objects.filter(owner=owner, created_at__gte=now - window)
    over = in_window.count() - hourly_limit
    if over >= 0:
        # The (over+1)th oldest call in the window leaving it brings them under the limit.
        leaving = in_window.order_by("created_at").values_list("created_at", flat=True)[over]
        waits.append((leaving + window - now).total_seconds())
    # A generation overdue by its typical duration may finish any moment: ask again soon.
    return max(1, math.ceil(max(waits, default=settings.GENERATION_LIMIT_RETRY_AFTER)))


@transaction.atomic
def generation_create(
    *,
    owner: AbstractBaseUser,
    spec: ModelSpec,
    body: dict[str, Any],
    options: dict[str, Any] | None = None,
    visibility: str | None = None,
    reference: Any = None,
    retry_of: Generation | None = None,
) -> Generation:
    """Save a queued generation; its message goes to the broker after commit.

    `visibility` None takes GENERATION_DEFAULT_VISIBILITY. `reference` (a
    forms.Reference) is the starting image of an image-to-image request.

    Raises LimitReached or BudgetExhausted when the owner is over a limit or a budget;
    the owner's row is locked while counting, so concurrent submissions cannot both
    slip under it. Refused when the owner may not generate.
    """
    rules.require(rules.may_generate(owner), "Your role does not allow generating.")
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    estimate = spec.price * _image_count(body)
    # One count serves the concurrency limit and the fair-scheduling priority.
    in_flight = Generation.objects.filter(
        owner=owner, status__in=(Status.QUEUED, Status.RUNNING)
    ).count()
    reason = generation_limit_reason(owner=owner, active=in_flight)
    if reason:
        raise LimitReached(
            reason, retry_after=generation_limit_retry_after(owner=owner, active=in_flight)
        )
    reason = budget_limit_reason(owner=owner, estimate=estimate)
    if reason:
        raise BudgetExhausted(reason)
    generation = Generation(
        owner=owner,
        model=spec.id,
        prompt=body["prompt"],
        params=body,
        options=options or {},
        visibility=visibility or default_visibility_of(owner),
        estimated_usd=estimate,
        priority=fair_priority(in_flight),
        status=Status.QUEUED,
        step=Step.CALL,
        sweep_after=timezone.now() + timedelta(seconds=settings.GENERATION_QUEUE_GRACE_SECONDS),
    )
    if retry_of is not None:
        # A retry starts from the same image; set before saving, so the message sent
        # on commit never reaches a worker ahead of its starting image.
        generation.source_image_id = retry_of.source_image_id
        generation.source_file = retry_of.source_file.name or ""
    if reference is not None and reference.image is not None:
        generation.source_image = reference.image
    if reference is not None and reference.upload is not None:
        # Stored under the generation's own folder, so it is served and deleted with it.
        generation.source_file.save("source.png", ContentFile(reference.upload), save=False)
    generation.save()
    # Announced: other tabs showing the owner's studio add the new card.
    send_on_commit(generation, announce=True)
    return generation


def generation_visibility_set(
    *, generations: list[Generation], visibility: str, by: AbstractBaseUser
) -> int:
    """Make `generations` private or shared; only their owner or a moderator may.

    Returns how many changed. Each change is in the audit log.
    """
    if visibility not in Generation.Visibility.values:
        raise InvalidRequest("Choose private or shared.")
    changed = 0
    for generation in generations:
        rules.require(
            rules.may_change_visibility(by, generation),
            "Only the owner or a moderator can change who sees this.",
        )
        if generation.visibility == visibility:
            continue
        old = generation.visibility
        generation.visibility = visibility
        generation.save(update_fields=["visibility"])
        audit_record(
            actor=by,
            action="visibility.change",
            target=generation,
            target_label=generation.prompt[:80],
            old=old,
            new=visibility,
        )
        changed += 1
    return changed


def generation_retry(*, generation: Generation, by: AbstractBaseUser) -> Generation:
    """A new generation with the same parameters and starting image as `generation`.

    A retry is a new submission: the same checks as the form (role, the model still
    enabled, the prompt policy as it is now, limits and budget), and a refused prompt
    is in the audit log like one refused at the form.
    """
    rules.require(
        rules.may_retry(by, generation) and generation.status == Status.FAILED,
        "Only the owner can retry, and only a failed generation.",
    )
    spec = get_model(generation.model)
    if spec is None or spec.id not in enabled_model_ids():
        raise InvalidRequest(f"The model {generation.model} is not offered any more.")
    term = prompt_violation(generation.prompt)
    if term is not None:
        prompt_blocked_record(user=by, prompt=generation.prompt, term=term, via="retry")
        raise InvalidRequest("This prompt is now blocked by the studio's prompt policy.")
    return generation_create(
        owner=generation.owner,
        spec=spec,
        body=dict(generation.params),
        options=dict(generation.options),
        visibility=generation.visibility,
        retry_of=generation,
    )
