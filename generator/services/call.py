"""Step 1: call the provider and save its answer (and its cost) before anything is
downloaded."""

from __future__ import annotations

import contextlib
import logging
import random
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from generator import fetch, provider
from generator.models import CostEntry, Generation, ProviderCall
from generator.registry import get_model
from generator.services.claims import (
    RetryLater,
    RetryPolicy,
    claim,
    default_policy,
    delete_incoming_names,
    fail,
    release_for_retry,
    retry_delay,
    send_on_commit,
)
from generator.services.key_refused import KEY_REFUSED_STATUSES, provider_key_refused_record
from generator.services.ledger import (
    capped,
    cost_entry_add,
    cost_entry_record,
    cost_entry_sync,
    db_text,
)
from generator.services.references import generation_request_body
from studio.http import gateway_status

logger = logging.getLogger(__name__)

Status = Generation.Status
Step = Generation.Step


# The most calls one generation sends at once (a batch of 4 images is 4 calls).
MAX_PARALLEL_CALLS = 4


# Long on purpose: claim, caps, the calls, then one decision over their outcomes.
def generation_call(*, generation_id: int, policy: RetryPolicy | None = None) -> None:
    """Ask the provider for the images and save its answers.

    A batch of a model that takes a seed is one call per image (seeds S..S+N-1, sent
    in parallel), each with its own attempt record (ProviderCall); other models make
    one call. Each answer is saved as it arrives, before anything is downloaded. A call
    that hit a transient error is tried again on the next delivery, alone, while
    attempts remain (a rate limit counts none, within GENERATION_RATE_LIMIT_PATIENCE):
    this raises RetryLater. Once no call is pending the generation goes on to the
    mirror step with the images that came back, or fails with the calls' reasons.

    Does nothing if another worker holds the generation or it is past this step.
    Whatever else goes wrong ends the generation as failed with a reason: a step that
    crashed would leave it running until its lease expired, and the sweep would then
    pay for the call again.
    """
    policy = policy or default_policy()
    generation = claim(generation_id, Step.CALL)
    if generation is None:
        return
    try:
        body = generation_request_body(generation)
        calls = _calls_for(generation, body)
    except Exception as exc:
        logger.exception("generation %s: request body could not be built", generation.uuid)
        fail(generation, f"The request could not be prepared ({type(exc).__name__}).")
        return
    pending = [c for c in calls if c.status == ProviderCall.Status.PENDING]
    if generation.attempts > policy.max_attempts:
        # Reaching here means earlier attempts never finished: the worker died or was
        # killed mid-call. Giving up caps what a poisonous request can cost; the calls
        # that did answer keep their images.
        message = f"Stopped after {policy.max_attempts} attempts that did not finish. " + (
            generation.error or ""
        )
        for call in pending:
            _call_failed(call, message)
        _finish_calls(generation)
        return

    if not Generation.objects.filter(pk=generation.pk, claim_token=generation.claim_token).exists():
        # Cancelled (which voids the claim) since it was claimed: a call not sent is free.
        return
    ProviderCall.objects.filter(pk__in=[c.pk for c in pending]).update(attempts=F("attempts") + 1)
    for call in pending:
        call.attempts += 1
    work = []
    for call in pending:
        if call.attempts > policy.max_attempts:
            # This call's own tries never finished, while others of the batch did.
            _call_failed(call, f"Stopped after {policy.max_attempts} attempts that did not finish.")
        else:
            work.append((call, _call_body(generation, call, body, split=len(calls) > 1)))

    if not connection.in_atomic_block:
        # The calls wait 3-30 s; 32 of them in flight must not pin 32 DB connections.
        connection.close()
    transient: list[tuple[ProviderCall, provider.TransientProviderError]] = []
    limited: list[tuple[ProviderCall, provider.TransientProviderError]] = []
    abandoned = False
    for call, outcome in _ask_provider(work):
        if isinstance(outcome, provider.ProviderResult):
            if abandoned:
                # The generation failed on an answer that could not be saved; the
                # answers still arriving were paid for all the same.
                _count_unsaved(generation, outcome)
            elif not _answer_kept(generation, call, outcome):
                abandoned = True
        elif isinstance(outcome, provider.TransientProviderError):
            if outcome.status == 429:
                limited.append((call, outcome))
            elif call.attempts >= policy.max_attempts:
                _call_failed(
                    call,
                    f"Gave up after {call.attempts} attempts. {outcome.message}",
                    status=outcome.status or 504,
                )
            else:
                transient.append((call, outcome))
        elif isinstance(outcome, provider.ProviderError):
            _call_failed(call, outcome.message, status=outcome.status or 502)
            if outcome.status in KEY_REFUSED_STATUSES:
                provider_key_refused_record(
                    generation=generation, status=outcome.status, message=outcome.message
                )
        else:
            # A bug, or an answer shaped to break the parser: the call may have been
            # paid, so it is never repeated on its own.
            logger.error(
                "generation %s: the provider's answer broke the client",
                generation.uuid,
                exc_info=outcome,
            )
            _call_failed(
                call, f"The provider's answer could not be read ({type(outcome).__name__})."
            )
        if not connection.in_atomic_block:
            connection.close()  # the other calls may still be waiting

    if abandoned:
        return
    if transient:
        exc = transient[0][1]
        reason = f"The provider did not answer this time: {exc.message}"
        for call, error in transient:
            _call_update(call, error=f"The provider did not answer this time: {error.message}")
        for call, error in limited:
            _call_update(call, attempts=F("attempts") - 1, error=error.message)
        retry_after = max((e.retry_after for _, e in transient if e.retry_after), default=None)
        countdown = policy.delay(generation.attempts, retry_after)
        logger.info("generation %s: %s; again in %.1f s", generation.uuid, reason, countdown)
        release_for_retry(generation, countdown, reason, **({} if limited else _STRETCH_ENDED))
        raise RetryLater(countdown, reason) from exc
    if limited:
        exc = limited[0][1]
        for call, error in limited:
            _call_update(call, attempts=F("attempts") - 1, error=error.message)
        countdown = _rate_limit_countdown(generation, exc)
        if countdown is not None:
            raise RetryLater(countdown, "The provider is rate-limiting") from exc
        for call, _error in limited:
            _call_failed(call, generation.error, status=429)
    _finish_calls(generation)


def _ask_provider(
    work: list[tuple[ProviderCall, dict[str, Any]]],
) -> Iterator[tuple[ProviderCall, provider.ProviderResult | BaseException]]:
    """Send every call (in parallel when there are several) and yield each outcome as
    it arrives, so each paid answer is saved at once. Only the HTTP runs in the
    threads: every database write stays in the calling thread."""
    if len(work) == 1:
        call, body = work[0]
        try:
            yield call, provider.generate_images(body, request_id=call.request_id)
        except Exception as exc:
            yield call, exc
        return
    if not work:
        return
    with ThreadPoolExecutor(max_workers=min(len(work), MAX_PARALLEL_CALLS)) as pool:
        futures = {
            pool.submit(provider.generate_images, body, request_id=call.request_id): call
            for call, body in work
        }
        for future in as_completed(futures):
            exc = future.exception()
            yield futures[future], exc if exc is not None else future.result()


def splits_per_image(generation: Generation) -> bool:
    """Whether the generation makes one call per image: its model takes a seed and
    it asks for several images. Models without a seed (Recraft, DALL·E) make one."""
    spec = get_model(generation.model)
    return bool(
        spec and spec.param("seed") and spec.param("num_images") and generation.num_images > 1
    )


def _calls_for(generation: Generation, body: dict[str, Any]) -> list[ProviderCall]:
    """The generation's attempt records, created at its first call step: one per image
    with seeds S, S+1, ... (S drawn here when the user left it blank, and kept, so a
    retry asks for the same images), or a single one."""
    calls = list(generation.calls.order_by("index"))
    if calls:
        return calls
    if splits_per_image(generation):
        spec = get_model(generation.model)
        assert spec is not None
        seed_param = spec.param("seed")
        assert seed_param is not None
        low = int(seed_param.minimum or 0)
        high = int(seed_param.maximum or SEED_DRAW_MAX)
        first = body.get("seed")
        if first is None:
            first = random.randint(max(low, 1), min(high, SEED_DRAW_MAX))
        span = high - low + 1
        rows = [
            ProviderCall(
                generation=generation,
                index=i,
                request_id=f"{generation.uuid}-{i}",
                # Past the model's largest seed the batch wraps to its smallest.
                seed=str(low + (int(first) - low + i) % span),
            )
            for i in range(generation.num_images)
        ]
    else:
        seed = body.get("seed")
        rows = [
            ProviderCall(
                generation=generation,
                index=0,
                request_id=str(generation.uuid),
                seed="" if seed is None else str(seed),
            )
        ]
    # A worker whose claim was voided may race the one that took over: the first set wins.
    ProviderCall.objects.bulk_create(rows, ignore_conflicts=True)
    return list(generation.calls.order_by("index"))


# Drawn seeds stay below every model's maximum (Imagen's is 2**32 - 1).
SEED_DRAW_MAX = 2**31 - 1


def _call_body(
    generation: Generation, call: ProviderCall, body: dict[str, Any], *, split: bool
) -> dict[str, Any]:
    if not split:
        return body
    return {**body, "num_images": 1, "seed": int(call.seed)}


def _call_update(call: ProviderCall, **fields: Any) -> bool:
    """Write `fields` while the call is pending: once it answered or failed, a worker
    that lost its lease cannot undo that."""
    return bool(
        ProviderCall.objects.filter(pk=call.pk, status=ProviderCall.Status.PENDING).update(**fields)
    )


def _call_failed(call: ProviderCall, message: str, *, status: int | None = None) -> None:
    call.status = ProviderCall.Status.FAILED
    call.error = message[:2000]
    _call_update(
        call,
        status=ProviderCall.Status.FAILED,
        error=call.error,
        error_status=gateway_status(status) if status is not None else None,
    )
    logger.info("call %s failed: %s", call.request_id, message)


def _answer_kept(
    generation: Generation, call: ProviderCall, result: provider.ProviderResult
) -> bool:
    """Save one call's answer; False when it could not be saved, and the generation
    was failed for it."""
    try:
        _save_answer(generation, call, result)
        return True
    except Exception as exc:
        logger.exception("generation %s: the provider's answer was not saved", generation.uuid)
        fail(
            generation,
            f"The provider answered, but its answer could not be saved ({type(exc).__name__}).",
        )
        _count_unsaved(generation, result)
        return False


def _count_unsaved(generation: Generation, result: provider.ProviderResult) -> None:
    # An answer that could not be saved was paid for all the same: the spending must
    # say so, if the database lets it.
    with contextlib.suppress(Exception):
        if CostEntry.objects.filter(generation=generation).exists():
            cost_entry_add(
                generation=generation, images=len(result.images), provider_usd=result.usd_spent
            )
        else:
            cost_entry_record(
                generation=generation,
                images=len(result.images),
                usage=None,
                provider_usd=result.usd_spent,
            )


# A call that got past the rate limit (or failed otherwise) ends the stretch.
_STRETCH_ENDED: dict[str, Any] = {"rate_limited_since": None, "rate_limits": 0}


def _rate_limit_countdown(
    generation: Generation, exc: provider.TransientProviderError
) -> float | None:
    """Release the generation to try again later without spending an attempt (the
    seconds until then), or None once the provider has been rate-limiting it for
    GENERATION_RATE_LIMIT_PATIENCE (generation.error then says so)."""
    now = timezone.now()
    since = generation.rate_limited_since or now
    waited = (now - since).total_seconds()
    patience = settings.GENERATION_RATE_LIMIT_PATIENCE
    if waited >= patience:
        generation.error = (
            f"The provider kept refusing with rate limits for {waited:.0f} s "
            f"(GENERATION_RATE_LIMIT_PATIENCE is {patience} s). {exc.message}"
        )
        return None
    limits = generation.rate_limits + 1
    # Never sleep past the end of the patience: the last try comes just as it ends.
    countdown = max(0.0, min(retry_delay(limits, exc.retry_after), patience - waited))
    release_for_retry(
        generation,
        countdown,
        f"The provider is rate-limiting; trying again in {countdown:.0f} s: {exc.message}",
        # The claim counted an attempt; a rate limit is not one.
        attempts=F("attempts") - 1,
        rate_limited_since=since,
        rate_limits=limits,
    )
    return countdown


def _save_answer(
    generation: Generation, call: ProviderCall, result: provider.ProviderResult
) -> None:
    """Save the answer, waiting out a database that is unreachable for as long as the
    lease lasts: the answer was paid for, and giving up here would leave the sweep to
    pay for it again. Past the lease the sweep may have re-sent the call anyway."""
    give_up_at = time.monotonic() + float(settings.GENERATION_LEASE_SECONDS)
    delay = 0.5
    while True:
        try:
            with transaction.atomic():
                _save_provider_result(generation, call, result)
            return
        except (OperationalError, InterfaceError):
            if time.monotonic() + delay > give_up_at:
                raise
            logger.warning("generation %s: database unreachable, saving again", generation.uuid)
            if not connection.in_atomic_block:
                connection.close()  # the next query opens a new connection
            time.sleep(delay)
            delay = min(delay * 2, 8.0)


def _save_provider_result(
    generation: Generation, call: ProviderCall, result: provider.ProviderResult
) -> None:
    """One call's answer: its images (inline ones kept in files), seed and cost on its
    attempt record, and the generation's cost entry brought up to date."""
    wanted = 1 if splits_per_image(generation) else generation.num_images
    seed = _storable_seed(result.seed, generation) or call.seed
    images = []
    for offset, image in enumerate(result.images[:wanted]):
        index = call.index + offset
        entry: dict[str, Any] = {
            "index": index,
            "url": db_text(image.url) if image.url else image.url,
            "width": image.width,
            "height": image.height,
            "content_type": db_text(image.content_type) if image.content_type else None,
            "nsfw": bool(
                offset < len(result.has_nsfw_concepts) and result.has_nsfw_concepts[offset]
            ),
            # Only a call that made one image says which seed drew it.
            "seed": seed if wanted == 1 else "",
            # The model's own fields (file_name, mime_type...), bounded by the parser.
            "extra": capped(image.extra),
        }
        if not image.url and image.b64_json:
            # An inline image has no URL to come back to: keep its bytes before the
            # answer is committed, so the mirror step can run (and re-run) from them.
            # They are decoded in pieces through a temporary file, never whole in memory.
            with tempfile.TemporaryFile() as content:
                try:
                    fetch.decode_b64_image_to(image.b64_json, content)
                except fetch.MirrorError as exc:
                    _answer_unusable(
                        generation,
                        call,
                        result,
                        images,
                        f"Image {index + 1} in the provider's answer: {exc}",
                        paid=len(result.images[:wanted]),
                    )
                    return
                # Named after the claim too: a second paid answer never overwrites the first.
                name = (
                    f"generations/{generation.uuid}/incoming/{index}-{generation.claim_token}.bin"
                )
                content.seek(0)
                default_storage.save(name, File(content, name=name))
            entry["stored"] = name
        elif not image.url:
            _answer_unusable(
                generation,
                call,
                result,
                images,
                f"Image {index + 1} in the provider's answer has no URL or data.",
                paid=len(result.images[:wanted]),
            )
            return
        images.append(entry)

    # Kept while the call has no answer yet, even if this worker's claim was voided (it
    # was paused past its lease and the sweep re-sent the message): the answer is paid
    # for, and throwing it away would pay for the same images again.
    saved = _call_update(
        call,
        status=ProviderCall.Status.SUCCEEDED,
        seed=seed,
        images=images,
        timings=capped(result.timings or {}),
        response=capped(result.raw),
        provider_prompt=db_text(result.revised_prompt or result.prompt or "")[:8000],
        usage=capped(result.usage or {}),
        answered_at=timezone.now(),
        error="",
        error_status=None,
    )
    if saved:
        call.status = ProviderCall.Status.SUCCEEDED
    else:
        # Another attempt's answer was saved first (this worker was paused past its
        # lease, say): these images were paid for too, and the spending says so.
        logger.warning(
            "call %s: a second paid answer arrived after the first was saved", call.request_id
        )
        delete_incoming_names([entry["stored"] for entry in images if entry.get("stored")])
    _count_paid(generation, call, result, images=len(images))


def _answer_unusable(
    generation: Generation,
    call: ProviderCall,
    result: provider.ProviderResult,
    kept: list[dict[str, Any]],
    message: str,
    paid: int,
) -> None:
    """A paid answer with an image the studio cannot use: the call fails (the others of
    the batch go on) and what it had kept so far is deleted."""
    delete_incoming_names([entry["stored"] for entry in kept if entry.get("stored")])
    _call_failed(call, message)
    _count_paid(generation, call, result, images=paid)


def _count_paid(
    generation: Generation, call: ProviderCall, result: provider.ProviderResult, *, images: int
) -> None:
    """Add one paid answer to the call's record and bring the cost entry up to date."""
    fields: dict[str, Any] = {"answers": F("answers") + 1, "paid_images": F("paid_images") + images}
    if result.usd_spent is not None:
        fields["usd_spent"] = Coalesce("usd_spent", Value(Decimal(0))) + result.usd_spent
    if result.credits_used is not None:
        fields["credits_used"] = Coalesce("credits_used", Value(Decimal(0))) + result.credits_used
    ProviderCall.objects.filter(pk=call.pk).update(**fields)
    cost_entry_sync(generation=generation)


def _finish_calls(generation: Generation) -> None:
    """Every call has answered or failed: go on to the mirror step with the images that
    came back (the failed ones named in `error`), or fail with the calls' reasons."""
    calls = list(generation.calls.order_by("index"))
    answered = [c for c in calls if c.status == ProviderCall.Status.SUCCEEDED]
    if not answered:
        statuses = {c.error_status for c in calls}
        if len(calls) == 1:
            message = calls[0].error
        else:
            message = f"None of the {len(calls)} images came back. " + failures_note(calls)
        fail(
            generation,
            message or "The provider gave no images.",
            status=statuses.pop() if len(statuses) == 1 else None,
        )
        return
    first = answered[0]
    now = timezone.now()
    with transaction.atomic():
        saved = Generation.objects.filter(
            pk=generation.pk, step=Step.CALL, status__in=(Status.QUEUED, Status.RUNNING)
        ).update(
            step=Step.MIRROR,
            status=Status.RUNNING,
            # The batch's seed S: its first image's, whether or not that one came back.
            seed=calls[0].seed,
            timings=first.timings,
            provider_response=first.response,
            provider_images=[entry for call in answered for entry in call.images],
            provider_prompt=first.provider_prompt,
            provider_finished_at=now,
            lease_until=None,
            claim_token=None,
            error=failures_note(calls),
            sweep_after=now + timedelta(seconds=settings.GENERATION_QUEUE_GRACE_SECONDS),
            **_STRETCH_ENDED,
        )
        if saved:
            generation.step = Step.MIRROR
            generation.status = Status.RUNNING
            send_on_commit(generation, announce=True)
        elif Generation.objects.filter(pk=generation.pk, status=Status.CANCELLED).exists():
            # Cancelled while the calls were in flight: the provider billed them (the
            # cost entry counts them), but nothing of the answers is kept.
            logger.info("generation %s: answers arrived after it was cancelled", generation.uuid)
            delete_incoming_names(
                [
                    entry["stored"]
                    for call in answered
                    for entry in call.images
                    if entry.get("stored")
                ]
            )


def failures_note(calls: list[ProviderCall]) -> str:
    """Which images of the batch did not come back and why ("" when all did)."""
    failed = [c for c in calls if c.status == ProviderCall.Status.FAILED]
    if not failed:
        return ""
    came = len(calls) - len(failed)
    parts = [
        f"image {c.index + 1}" + (f" (seed {c.seed})" if c.seed else "") + f": {c.error}"
        for c in failed
    ]
    lead = f"{came} of {len(calls)} images came back; " if came else ""
    return (lead + "; ".join(parts))[:2000]


def _storable_seed(seed: int | None, generation: Generation) -> str:
    """The seed as text, or "" for one no model could have used: seeds are unsigned
    64-bit integers at most, and a longer one would not fit the column."""
    if seed is None:
        return ""
    if not 0 <= seed < 2**64:
        logger.warning("generation %s: the provider's seed is out of range", generation.uuid)
        return ""
    return str(seed)
