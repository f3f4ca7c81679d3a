"""Step 1: call the provider and save its answer (and its cost) before anything is
downloaded."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from generator import fetch, provider
from generator.models import CostEntry, Generation
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
from generator.services.references import generation_request_body

logger = logging.getLogger(__name__)

Status = Generation.Status
Step = Generation.Step


def generation_call(*, generation_id: int, policy: RetryPolicy | None = None) -> None:
    """Ask the provider for the images and save its answer.

    Does nothing if another worker holds the generation or it is past this step.
    Raises RetryLater after a transient error while attempts remain (a rate limit
    counts none, within GENERATION_RATE_LIMIT_PATIENCE). Whatever else goes wrong ends
    the generation as failed with a reason: a step that crashed would leave it running
    until its lease expired, and the sweep would then pay for the call again.
    """
    policy = policy or default_policy()
    generation = claim(generation_id, Step.CALL)
    if generation is None:
        return
    if generation.attempts > policy.max_attempts:
        # Reaching here means earlier attempts never finished: the worker died or was
        # killed mid-call. Giving up caps what a poisonous request can cost.
        fail(
            generation,
            f"Stopped after {policy.max_attempts} attempts that did not finish. "
            + (generation.error or ""),
        )
        return

    try:
        body = generation_request_body(generation)
    except Exception as exc:
        logger.exception("generation %s: request body could not be built", generation.uuid)
        fail(generation, f"The request could not be prepared ({type(exc).__name__}).")
        return
    if not connection.in_atomic_block:
        # The call waits 3-30 s; 32 of them in flight must not pin 32 DB connections.
        connection.close()
    try:
        result = provider.generate_images(body)
    except provider.TransientProviderError as exc:
        if exc.status == 429:
            countdown = _rate_limit_countdown(generation, exc)
            if countdown is None:
                return
            raise RetryLater(countdown, "The provider is rate-limiting") from exc
        reason = f"The provider did not answer this time: {exc.message}"
        if generation.attempts >= policy.max_attempts:
            fail(
                generation,
                f"Gave up after {generation.attempts} attempts. {exc.message}",
                status=exc.status or 504,
            )
            return
        countdown = policy.delay(generation.attempts, exc.retry_after)
        logger.info("generation %s: %s; again in %.1f s", generation.uuid, reason, countdown)
        release_for_retry(generation, countdown, reason, **_STRETCH_ENDED)
        raise RetryLater(countdown, reason) from exc
    except provider.ProviderError as exc:
        fail(generation, exc.message, status=exc.status or 502)
        return
    except Exception as exc:
        # A bug, or an answer shaped to break the parser: the call may have been paid,
        # so it is never repeated on its own.
        logger.exception("generation %s: the provider's answer broke the client", generation.uuid)
        fail(generation, f"The provider's answer could not be read ({type(exc).__name__}).")
        return

    try:
        _save_answer(generation, result)
    except Exception as exc:
        logger.exception("generation %s: the provider's answer was not saved", generation.uuid)
        fail(
            generation,
            f"The provider answered, but its answer could not be saved ({type(exc).__name__}).",
        )
        # It was paid for all the same: the spending must say so.
        with contextlib.suppress(Exception):
            cost_entry_record(generation=generation, images=len(result.images), usage=None)


# A call that got past the rate limit (or failed otherwise) ends the stretch.
_STRETCH_ENDED: dict[str, Any] = {"rate_limited_since": None, "rate_limits": 0}


def _rate_limit_countdown(
    generation: Generation, exc: provider.TransientProviderError
) -> float | None:
    """Release the generation to try again later without spending an attempt (the
    seconds until then), or fail it (None) once the provider has been rate-limiting it
    for GENERATION_RATE_LIMIT_PATIENCE."""
    now = timezone.now()
    since = generation.rate_limited_since or now
    waited = (now - since).total_seconds()
    patience = settings.GENERATION_RATE_LIMIT_PATIENCE
    if waited >= patience:
        fail(
            generation,
            f"The provider kept refusing with rate limits for {waited:.0f} s "
            f"(GENERATION_RATE_LIMIT_PATIENCE is {patience} s). {exc.message}",
            status=429,
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


def _save_answer(generation: Generation, result: provider.ProviderResult) -> None:
    """Save the answer, waiting out a database that is unreachable for as long as the
    lease lasts: the answer was paid for, and giving up here would leave the sweep to
    pay for it again. Past the lease the sweep may have re-sent the call anyway."""
    give_up_at = time.monotonic() + float(settings.GENERATION_LEASE_SECONDS)
    delay = 0.5
    while True:
        try:
            with transaction.atomic():
                _save_provider_result(generation, result)
            return
        except (OperationalError, InterfaceError):
            if time.monotonic() + delay > give_up_at:
                raise
            logger.warning("generation %s: database unreachable, saving again", generation.uuid)
            if not connection.in_atomic_block:
                connection.close()  # the next query opens a new connection
            time.sleep(delay)
            delay = min(delay * 2, 8.0)


def _save_provider_result(generation: Generation, result: provider.ProviderResult) -> None:
    wanted = generation.num_images
    images = []
    for index, image in enumerate(result.images[:wanted]):
        entry: dict[str, Any] = {
            "index": index,
            "url": db_text(image.url) if image.url else image.url,
            "width": image.width,
            "height": image.height,
            "content_type": db_text(image.content_type) if image.content_type else None,
            "nsfw": bool(index < len(result.has_nsfw_concepts) and result.has_nsfw_concepts[index]),
        }
        if not image.url and image.b64_json:
            # An inline image has no URL to come back to: keep its bytes before the
            # answer is committed, so the mirror step can run (and re-run) from them.
            # They are decoded in pieces through a temporary file, never whole in memory.
            with tempfile.TemporaryFile() as content:
                try:
                    fetch.decode_b64_image_to(image.b64_json, content)
                except fetch.MirrorError as exc:
                    fail(generation, f"Image {index + 1} in the provider's answer: {exc}")
                    return
                # Named after the claim too: a second paid answer never overwrites the first.
                name = (
                    f"generations/{generation.uuid}/incoming/{index}-{generation.claim_token}.bin"
                )
                content.seek(0)
                default_storage.save(name, File(content, name=name))
            entry["stored"] = name
        elif not image.url:
            fail(generation, f"Image {index + 1} in the provider's answer has no URL or data.")
            return
        images.append(entry)

    now = timezone.now()
    # Kept while the generation has no answer yet, even if this worker's claim was
    # voided (it was paused past its lease and the sweep re-sent the message): the
    # answer is paid for, and throwing it away would pay for the same images again.
    saved = Generation.objects.filter(
        pk=generation.pk, step=Step.CALL, status__in=(Status.QUEUED, Status.RUNNING)
    ).update(
        step=Step.MIRROR,
        status=Status.RUNNING,
        seed=_storable_seed(result.seed, generation),
        timings=_capped(result.timings or {}),
        provider_response=_capped(result.raw),
        provider_images=images,
        provider_prompt=db_text(result.revised_prompt or result.prompt or "")[:8000],
        provider_finished_at=now,
        lease_until=None,
        claim_token=None,
        error="",
        sweep_after=now + timedelta(seconds=settings.GENERATION_QUEUE_GRACE_SECONDS),
        **_STRETCH_ENDED,
    )
    if saved:
        generation.step = Step.MIRROR
        generation.status = Status.RUNNING
        cost_entry_record(generation=generation, images=len(images), usage=result.usage)
        send_on_commit(generation, announce=True)
    else:
        # Another attempt's answer was saved first (this worker was paused past its
        # lease, say): these images were paid for too, and the spending says so.
        logger.warning(
            "generation %s: a second paid answer arrived after the first was saved",
            generation.uuid,
        )
        cost_entry_add(generation=generation, images=len(images))
        delete_incoming_names([entry["stored"] for entry in images if entry.get("stored")])


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


def _storable_seed(seed: int | None, generation: Generation) -> str:
    """The seed as text, or "" for one no model could have used: seeds are unsigned
    64-bit integers at most, and a longer one would not fit the column."""
    if seed is None:
        return ""
    if not 0 <= seed < 2**64:
        logger.warning("generation %s: the provider's seed is out of range", generation.uuid)
        return ""
    return str(seed)


def cost_entry_add(*, generation: Generation, images: int) -> None:
    """Add a second paid answer's images to the generation's cost entry."""
    spec = get_model(generation.model)
    price = spec.price if spec else Decimal(0)
    CostEntry.objects.filter(generation=generation).update(
        images=F("images") + images, estimated_usd=F("estimated_usd") + price * images
    )


# Deeper than any documented answer (they nest three or four levels); a hostile answer
# nested thousands deep would exhaust the stack of whatever walks it next.
MAX_STORED_DEPTH = 16


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def db_text(text: str) -> str:
    """Text every database can store: no NUL (PostgreSQL refuses it) and no lone
    surrogate (no UTF-8 encoder accepts one), each replaced by U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = LONE_SURROGATE.sub("\ufffd", text)
    return text


def _capped(raw: dict[str, Any]) -> dict[str, Any]:
    """The provider's answer for the record: without inline image data, no deeper than
    MAX_STORED_DEPTH, with text every database stores, and size-capped."""

    def strip(value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return db_text(value)
        if isinstance(value, provider.InlineData):
            return f"<{len(value)} characters>"
        if isinstance(value, dict | list) and depth >= MAX_STORED_DEPTH:
            return "<nested too deep>"
        if isinstance(value, dict):
            return {
                db_text(str(k)): (
                    f"<{len(v)} characters>"
                    if k in ("b64_json", "image_base64") and v
                    else strip(v, depth + 1)
                )
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [strip(v, depth + 1) for v in value[:64]]
        return value

    cleaned = strip(raw, 0)
    if not isinstance(cleaned, dict):
        cleaned = {"value": cleaned}
    text = json.dumps(cleaned)
    limit = settings.GENERATION_MAX_STORED_RESPONSE
    if len(text) > limit:
        return {"truncated": True, "excerpt": text[:limit]}
    return cleaned
