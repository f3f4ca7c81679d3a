"""Step 1: call the provider and save its answer (and its cost) before anything is
downloaded."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.utils import timezone

from generator import fetch, provider
from generator.models import CostEntry, Generation
from generator.registry import get_model
from generator.services.claims import (
    RetryLater,
    RetryPolicy,
    claim,
    default_policy,
    fail,
    release_for_retry,
    send_on_commit,
    update_held,
)
from generator.services.references import generation_request_body

logger = logging.getLogger(__name__)

Status = Generation.Status
Step = Generation.Step


def generation_call(*, generation_id: int, policy: RetryPolicy | None = None) -> None:
    """Ask the provider for the images and save its answer.

    Does nothing if another worker holds the generation or it is past this step.
    Raises RetryLater after a transient error while attempts remain.
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

    if not connection.in_atomic_block:
        # The call waits 3-30 s; 32 of them in flight must not pin 32 DB connections.
        connection.close()
    try:
        result = provider.generate_images(generation_request_body(generation))
    except provider.TransientProviderError as exc:
        reason = f"The provider did not answer this time: {exc.message}"
        if generation.attempts >= policy.max_attempts:
            fail(
                generation,
                f"Gave up after {generation.attempts} attempts. {exc.message}",
                status=exc.status or 504,
            )
            return
        countdown = policy.delay(generation.attempts, exc.retry_after)
        release_for_retry(generation, countdown, reason)
        raise RetryLater(countdown, reason) from exc
    except provider.ProviderError as exc:
        fail(generation, exc.message, status=exc.status or 502)
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
                fail(generation, f"Image {index + 1} in the provider's answer: {exc}")
                return
            name = f"generations/{generation.uuid}/incoming/{index}.bin"
            default_storage.save(name, ContentFile(content))
            entry["stored"] = name
        elif not image.url:
            fail(generation, f"Image {index + 1} in the provider's answer has no URL or data.")
            return
        images.append(entry)

    now = timezone.now()
    saved = update_held(
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
        send_on_commit(generation)


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
