"""Every state change of a generation happens here.

The pipeline is `generation_create` (web) → `generation_call` (provider queue) →
`generation_mirror` (images queue), with `generation_sweep` re-sending whatever a
lost message or a dead worker left behind. Each step claims the generation with one
conditional UPDATE, so a message delivered twice does the work once.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts import rules
from accounts.errors import BudgetExhausted, InvalidRequest, LimitReached
from accounts.services import default_visibility_of, member_of
from audit.services import audit_record
from generator import fetch, provider
from generator.imaging import InvalidImage, check_image
from generator.models import CostEntry, Generation, Image, ModelSetting
from generator.registry import ModelSpec, get_model

logger = logging.getLogger(__name__)

Status = Generation.Status
Step = Generation.Step


class RetryLater(Exception):
    """The step hit a transient error and released its claim; try again later."""

    def __init__(self, countdown: float, reason: str) -> None:
        super().__init__(reason)
        self.countdown = countdown


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    delay: Callable[[int, float | None], float]


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter; a provider's Retry-After wins, within bounds."""
    cap = settings.GENERATION_RETRY_MAX
    if retry_after is not None:
        return min(max(retry_after, 1.0), cap)
    base = settings.GENERATION_RETRY_BASE * 2 ** max(attempt - 1, 0)
    return min(cap, base) * random.uniform(0.5, 1.0)


def default_policy(*, mirror: bool = False) -> RetryPolicy:
    limit = settings.GENERATION_MAX_MIRROR_ATTEMPTS if mirror else settings.GENERATION_MAX_ATTEMPTS
    return RetryPolicy(max_attempts=limit, delay=retry_delay)


# --- Accounts ---------------------------------------------------------------------------


# --- Models ---------------------------------------------------------------------------


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


# --- Creating and sending ------------------------------------------------------------


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
    the submission estimate for those still waiting; failures cost nothing."""
    generations = Generation.objects.filter(created_at__gte=month_start())
    if owner is not None:
        generations = generations.filter(owner=owner)
    total = generations.exclude(status=Status.FAILED, cost__isnull=True).aggregate(
        total=Sum(Coalesce("cost__estimated_usd", "estimated_usd"))
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


def generation_limit_reason(*, owner: AbstractBaseUser, active: int) -> str | None:
    """Why `owner`, with `active` generations queued or running, may not start another
    one now, or None if they may."""
    member = member_of(owner)
    active_limit = (
        member.max_active
        if member and member.max_active is not None
        else settings.GENERATION_MAX_ACTIVE_PER_USER
    )
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


@transaction.atomic
def generation_create(
    *,
    owner: AbstractBaseUser,
    spec: ModelSpec,
    body: dict[str, Any],
    options: dict[str, Any] | None = None,
    visibility: str | None = None,
    reference: Any = None,
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
        raise LimitReached(reason)
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
    if reference is not None and reference.image is not None:
        generation.source_image = reference.image
    if reference is not None and reference.upload is not None:
        # Stored under the generation's own folder, so it is served and deleted with it.
        generation.source_file.save("source.png", ContentFile(reference.upload), save=False)
    generation.save()
    _send_on_commit(generation)
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
    """A new generation with the same parameters and starting image as `generation`."""
    rules.require(
        rules.may_retry(by, generation) and generation.status == Status.FAILED,
        "Only the owner can retry, and only a failed generation.",
    )
    spec = get_model(generation.model)
    if spec is None:
        raise InvalidRequest(f"The model {generation.model} is no longer offered.")
    retried = generation_create(
        owner=generation.owner,
        spec=spec,
        body=dict(generation.params),
        options=dict(generation.options),
        visibility=generation.visibility,
    )
    if generation.source_image_id or generation.source_file:
        retried.source_image_id = generation.source_image_id
        retried.source_file = generation.source_file.name or ""
        retried.save(update_fields=["source_image", "source_file"])
    return retried


def generation_request_body(generation: Generation) -> dict[str, Any]:
    """The JSON body for the provider: the saved parameters, plus the starting image of
    an image-to-image request, which is never stored in `params` (it may be megabytes).

    The image goes as a data: URI, or as a signed URL on STUDIO_PUBLIC_URL that expires
    after REFERENCE_URL_TTL seconds when the studio is reachable from the provider.
    """
    body = dict(generation.params)
    name = reference_file_name(generation)
    if name is None:
        return body
    if settings.STUDIO_PUBLIC_URL:
        from django.urls import reverse

        token = reference_token(generation)
        body["image_url"] = settings.STUDIO_PUBLIC_URL + reverse(
            "generator:reference", args=[token]
        )
        return body
    with default_storage.open(name, "rb") as fh:
        data = fh.read()
    mime = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}[name.rsplit(".", 1)[1]]
    body["image_url"] = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    return body


def reference_file_name(generation: Generation) -> str | None:
    """The stored file of the generation's starting image, if it has one."""
    if generation.source_file:
        return generation.source_file.name
    if generation.source_image_id:
        return Image.objects.only("file").get(pk=generation.source_image_id).file.name
    return None


REFERENCE_SALT = "generator.reference"


def reference_token(generation: Generation) -> str:
    return signing.TimestampSigner(salt=REFERENCE_SALT).sign(str(generation.uuid))


def reference_unsign(token: str) -> str | None:
    """The generation UUID of a reference token still within REFERENCE_URL_TTL, or None."""
    try:
        return signing.TimestampSigner(salt=REFERENCE_SALT).unsign(
            token, max_age=settings.REFERENCE_URL_TTL
        )
    except signing.BadSignature:
        return None


def _send_on_commit(generation: Generation) -> None:
    # robust=True: with the broker down the user still gets their queued generation
    # (the row is committed) and the sweep sends the message later.
    transaction.on_commit(
        partial(_send, generation.pk, generation.step, generation.priority), robust=True
    )


def _send(generation_id: int, step: str, priority: int = 0) -> None:
    from generator.tasks import generation_call as generation_call_task
    from generator.tasks import generation_mirror as generation_mirror_task

    task = generation_call_task if step == Step.CALL else generation_mirror_task
    task.apply_async((generation_id,), priority=priority)


# --- Claiming -------------------------------------------------------------------------


def _claim(generation_id: int, step: str) -> Generation | None:
    now = timezone.now()
    token = uuid.uuid4()
    counter = "attempts" if step == Step.CALL else "mirror_attempts"
    lease = timedelta(seconds=settings.GENERATION_LEASE_SECONDS)
    claimed = (
        Generation.objects.filter(
            pk=generation_id, step=step, status__in=(Status.QUEUED, Status.RUNNING)
        )
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(
            status=Status.RUNNING,
            lease_until=now + lease,
            claim_token=token,
            started_at=Coalesce("started_at", Value(now)),
            **{counter: F(counter) + 1},
        )
    )
    if not claimed:
        return None
    return Generation.objects.get(pk=generation_id)


def _update_held(generation: Generation, **fields: Any) -> bool:
    """Write `fields` only if this worker still holds the generation."""
    return bool(
        Generation.objects.filter(pk=generation.pk, claim_token=generation.claim_token).update(
            **fields
        )
    )


def _release_for_retry(generation: Generation, countdown: float, reason: str) -> None:
    grace = settings.GENERATION_QUEUE_GRACE_SECONDS
    _update_held(
        generation,
        lease_until=None,
        claim_token=None,
        error=reason,
        sweep_after=timezone.now() + timedelta(seconds=countdown + grace),
    )


def _fail(generation: Generation, message: str, *, status: int | None = None) -> None:
    now = timezone.now()
    _update_held(
        generation,
        status=Status.FAILED,
        error=message[:2000],
        error_status=status,
        lease_until=None,
        claim_token=None,
        finished_at=now,
    )
    _delete_incoming(generation)
    logger.info("generation %s failed: %s", generation.uuid, message)


# --- Step 1: the provider call --------------------------------------------------------


def generation_call(*, generation_id: int, policy: RetryPolicy | None = None) -> None:
    """Ask the provider for the images and save its answer.

    Does nothing if another worker holds the generation or it is past this step.
    Raises RetryLater after a transient error while attempts remain.
    """
    policy = policy or default_policy()
    generation = _claim(generation_id, Step.CALL)
    if generation is None:
        return
    if generation.attempts > policy.max_attempts:
        # Reaching here means earlier attempts never finished: the worker died or was
        # killed mid-call. Giving up caps what a poisonous request can cost.
        _fail(
            generation,
            f"Stopped after {policy.max_attempts} attempts that did not finish. "
            + (generation.error or ""),
        )
        return

    if not connection.in_atomic_block:
        # The call waits 3-30 s; 32 of them in flight must not pin 32 DB connections.
        connection.close()
    try:
        result = provider.generate_images(generation_request_body(generation))
    except provider.TransientProviderError as exc:
        reason = f"The provider did not answer this time: {exc.message}"
        if generation.attempts >= policy.max_attempts:
            _fail(
                generation,
                f"Gave up after {generation.attempts} attempts. {exc.message}",
                status=exc.status or 504,
            )
            return
        countdown = policy.delay(generation.attempts, exc.retry_after)
        _release_for_retry(generation, countdown, reason)
        raise RetryLater(countdown, reason) from exc
    except provider.ProviderError as exc:
        _fail(generation, exc.message, status=exc.status or 502)
        return

    _save_provider_result(generation, result)


def _save_provider_result(generation: Generation, result: provider.ProviderResult) -> None:
    wanted = generation.num_images
    images = []
    for index, image in enumerate(result.images[:wanted]):
        entry: dict[str, Any] = {
            "index": index,
            "url": image.url,
            "width": image.width,
            "height": image.height,
            "content_type": image.content_type,
            "nsfw": bool(index < len(result.has_nsfw_concepts) and result.has_nsfw_concepts[index]),
        }
        if not image.url and image.b64_json:
            # An inline image has no URL to come back to: keep its bytes before the
            # answer is committed, so the mirror step can run (and re-run) from them.
            try:
                content = fetch.decode_b64_image(image.b64_json)
            except fetch.MirrorError as exc:
                _fail(generation, f"Image {index + 1} in the provider's answer: {exc}")
                return
            name = f"generations/{generation.uuid}/incoming/{index}.bin"
            default_storage.save(name, ContentFile(content))
            entry["stored"] = name
        elif not image.url:
            _fail(generation, f"Image {index + 1} in the provider's answer has no URL or data.")
            return
        images.append(entry)

    now = timezone.now()
    saved = _update_held(
        generation,
        step=Step.MIRROR,
        seed="" if result.seed is None else str(result.seed),
        timings=result.timings or {},
        provider_response=_capped(result.raw),
        provider_images=images,
        provider_prompt=(result.revised_prompt or result.prompt or "")[:8000],
        provider_finished_at=now,
        lease_until=None,
        claim_token=None,
        error="",
        sweep_after=now + timedelta(seconds=settings.GENERATION_QUEUE_GRACE_SECONDS),
    )
    if saved:
        generation.step = Step.MIRROR
        cost_entry_record(generation=generation, images=len(images), usage=result.usage)
        _send_on_commit(generation)


def cost_entry_record(
    *, generation: Generation, images: int, usage: dict[str, Any] | None
) -> CostEntry:
    """Write what the generation cost: the registry price × images, and the provider's
    own `meta.usage` figure when it sent one. One entry per generation."""
    spec = get_model(generation.model)
    price = spec.price if spec else Decimal(0)
    credits = None
    if usage:
        raw = usage.get("credits_used", usage.get("tokens_used"))
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            credits = Decimal(str(raw))
    entry, _ = CostEntry.objects.update_or_create(
        generation=generation,
        defaults={
            "owner_id": generation.owner_id,
            "model": generation.model,
            "images": images,
            "estimated_usd": price * images,
            "credits_used": credits,
            "usage": _capped(usage or {}),
        },
    )
    return entry


def _capped(raw: dict[str, Any]) -> dict[str, Any]:
    """The provider's answer for the record, without inline image data, size-capped."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (
                    f"<{len(v)} characters>"
                    if k in ("b64_json", "image_base64") and v
                    else strip(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [strip(v) for v in value[:64]]
        return value

    cleaned = strip(raw)
    text = json.dumps(cleaned)
    limit = settings.GENERATION_MAX_STORED_RESPONSE
    if len(text) > limit:
        return {"truncated": True, "excerpt": text[:limit]}
    return cleaned


# --- Step 2: mirroring -----------------------------------------------------------------


def generation_mirror(*, generation_id: int, policy: RetryPolicy | None = None) -> None:
    """Copy every image of the provider's answer into our storage.

    Resumable: images already stored are kept, the rest are fetched; file names come
    from the generation's UUID and the image index, so a re-run overwrites.
    """
    policy = policy or default_policy(mirror=True)
    generation = _claim(generation_id, Step.MIRROR)
    if generation is None:
        return
    if generation.mirror_attempts > policy.max_attempts:
        # As in generation_call: the copies before were cut off (a worker killed while
        # decoding, say), so say so rather than leave the user with no reason.
        _fail(
            generation,
            f"Could not copy the images: stopped after {policy.max_attempts} attempts "
            "that did not finish. " + (generation.error or ""),
        )
        return

    done = set(generation.images.values_list("index", flat=True))
    for entry in generation.provider_images:
        index = entry["index"]
        if index in done:
            continue
        try:
            if entry.get("stored"):
                with default_storage.open(entry["stored"], "rb") as fh:
                    data = fh.read()
            else:
                data = fetch.fetch_image(entry["url"])
            checked = check_image(data, max_pixels=settings.MIRROR_MAX_PIXELS)
        except fetch.TransientMirrorError as exc:
            reason = f"Copying image {index + 1} failed for now: {exc}"
            if generation.mirror_attempts >= policy.max_attempts:
                _fail(generation, f"Could not copy image {index + 1}: {exc}")
                return
            countdown = policy.delay(generation.mirror_attempts, None)
            _release_for_retry(generation, countdown, reason)
            raise RetryLater(countdown, reason) from exc
        except fetch.MirrorError as exc:
            _fail(generation, f"Could not copy image {index + 1}: {exc}")
            return
        except InvalidImage as exc:
            _fail(generation, f"Image {index + 1} from the provider was rejected: {exc}")
            return
        except OSError as exc:
            _fail(generation, f"Image {index + 1} could not be read back: {exc}")
            return
        _store_image(generation, entry, checked)

    now = timezone.now()
    if _update_held(
        generation,
        status=Status.SUCCEEDED,
        lease_until=None,
        claim_token=None,
        error="",
        finished_at=now,
    ):
        _delete_incoming(generation)
        logger.info("generation %s succeeded", generation.uuid)


def _store_image(generation: Generation, entry: dict[str, Any], checked: Any) -> Image:
    base = f"generations/{generation.uuid}/{entry['index']}"
    original = default_storage.save(f"{base}.{checked.extension}", ContentFile(checked.content))
    thumbnail = default_storage.save(f"{base}_thumb.webp", ContentFile(checked.thumbnail))
    flagged = bool(entry.get("nsfw"))
    fields = {
        "file": original,
        "thumbnail": thumbnail,
        "width": checked.width,
        "height": checked.height,
        "format": checked.format,
        "bytes": len(checked.content),
        "sha256": checked.sha256,
        "nsfw": flagged,
    }
    image, _ = Image.objects.update_or_create(
        generation=generation,
        index=entry["index"],
        defaults=fields,
        # Held for review: the team sees a flagged image only after a moderator approves.
        # Set on creation only, so a re-run never undoes a moderator's decision.
        create_defaults={
            **fields,
            "review": Image.Review.HELD if flagged else Image.Review.VISIBLE,
            "review_reason": "flagged" if flagged else "",
        },
    )
    return image


def _delete_incoming(generation: Generation) -> None:
    stored = [e["stored"] for e in generation.provider_images or [] if e.get("stored")]
    for name in stored:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete %s", name)
    if stored:
        try:
            os.rmdir(default_storage.path(f"generations/{generation.uuid}/incoming"))
        except (NotImplementedError, OSError):
            pass  # object stores have no folders; a non-empty one is left for inspection


# --- The sweep ---------------------------------------------------------------------------


def generation_sweep(*, limit: int = 500) -> int:
    """Re-send the message of every unfinished generation nobody is working on.

    Covers a message lost between commit and broker, a broker that was down at
    submit, and a worker that died holding a lease. Returns how many were re-sent.
    """
    now = timezone.now()
    grace = timedelta(seconds=settings.GENERATION_QUEUE_GRACE_SECONDS)
    with transaction.atomic():
        due = list(
            Generation.objects.select_for_update(skip_locked=True)
            .filter(status__in=(Status.QUEUED, Status.RUNNING))
            .filter(Q(lease_until__isnull=True, sweep_after__lt=now) | Q(lease_until__lt=now))
            .order_by("sweep_after")
            .only("pk", "step", "uuid", "priority")[:limit]
        )
        for generation in due:
            # An expired lease is void: its holder is presumed dead and may no longer
            # write, and the row waits for the re-sent message like a queued one.
            Generation.objects.filter(pk=generation.pk).update(
                sweep_after=now + grace, lease_until=None, claim_token=None
            )
            _send_on_commit(generation)
    if due:
        logger.info("sweep re-sent %d generation(s)", len(due))
    return len(due)
