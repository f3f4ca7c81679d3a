"""What a generation cost, and what of the provider's answers is kept: the cost
ledger (one CostEntry per generation, from its calls' records) and the cleaning every
stored answer goes through."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import F

from generator import provider
from generator.models import CostEntry, Generation, ProviderCall
from generator.registry import get_model


def cost_entry_sync(*, generation: Generation) -> CostEntry | None:
    """Write what the generation cost from its calls' records: the registry price ×
    the images paid for, and the sum of the provider's own figures when every paid
    call sent one. One entry per generation."""
    calls = list(ProviderCall.objects.filter(generation=generation, answers__gt=0))
    if not calls:
        return None
    spec = get_model(generation.model)
    price = spec.price if spec else Decimal(0)
    images = sum(c.paid_images for c in calls)
    usd = [c.usd_spent for c in calls]
    credits = [c.credits_used for c in calls if c.credits_used is not None]
    entry, _ = CostEntry.objects.update_or_create(
        generation=generation,
        defaults={
            "owner_id": generation.owner_id,
            "model": generation.model,
            "images": images,
            "estimated_usd": price * images,
            "credits_used": sum(credits, Decimal(0)) if credits else None,
            "provider_usd": sum(usd, Decimal(0)) if None not in usd else None,  # type: ignore[arg-type]
            "usage": summed_usage([c.usage for c in calls]),
        },
    )
    return entry


def summed_usage(usages: list[Any]) -> dict[str, Any]:
    """The batch's `meta.usage`: each call reports its own, so numbers add up (credits,
    tokens) and anything else is the first call's."""
    total: dict[str, Any] = {}
    for usage in usages:
        if not isinstance(usage, dict):
            continue
        for key, value in usage.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if key not in total:
                total[key] = value
            elif (
                number and isinstance(total[key], int | float) and not isinstance(total[key], bool)
            ):
                total[key] += value
    return total


def cost_entry_record(
    *,
    generation: Generation,
    images: int,
    usage: dict[str, Any] | None,
    provider_usd: Decimal | None = None,
) -> CostEntry:
    """Write what the generation cost: the registry price × images, and the provider's
    own figures (`meta.usage` credits, the USD it charged) when it sent them. One entry
    per generation."""
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
            "provider_usd": provider_usd,
            "usage": capped(usage or {}),
        },
    )
    return entry


def cost_entry_add(
    *, generation: Generation, images: int, provider_usd: Decimal | None = None
) -> None:
    """Add a paid answer that has no attempt record to the generation's cost entry; the
    provider's total stays known only if it said what this one cost."""
    spec = get_model(generation.model)
    price = spec.price if spec else Decimal(0)
    CostEntry.objects.filter(generation=generation).update(
        images=F("images") + images,
        estimated_usd=F("estimated_usd") + price * images,
        provider_usd=None if provider_usd is None else F("provider_usd") + provider_usd,
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


def capped(raw: dict[str, Any]) -> dict[str, Any]:
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
