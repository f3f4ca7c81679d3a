"""Exactly one paid generation per intended API request.

A client says two requests are one in two ways: the same `Idempotency-Key` with the
same token, or an SDK's automatic retry (`x-stainless-retry-count` above 0) of a body a
token sent moments ago, byte for byte. Either reattaches to the generation the first
request started, whatever its state. Nothing else merges requests: four identical
requests sent at once without these signals are four generations.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts.errors import StudioError
from accounts.models import ApiToken
from generator import services
from generator.models import Generation
from generator.registry import ModelSpec


class IdempotencyKeyReused(StudioError):
    """The Idempotency-Key already named a generation made from another body."""

    status = 422


def replay_window() -> timedelta:
    """How far back an SDK retry may reach: the longest the studio keeps a request
    waiting, plus the SDK's backoff and a margin."""
    return timedelta(seconds=settings.API_WAIT_TIMEOUT + 300)


def generation_replay(
    *, token: ApiToken, body_sha256: str, idempotency_key: str, sdk_retry: bool
) -> Generation | None:
    """The generation an earlier request of this one started, or None.

    Raises IdempotencyKeyReused when the key was used with a different body."""
    generations = Generation.objects.filter(api_token=token)
    if idempotency_key:
        earlier = generations.filter(idempotency_key=idempotency_key).first()
        if earlier is not None and earlier.request_sha256 != body_sha256:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {idempotency_key!r} was already used for generation "
                f"{earlier.uuid} with a different request body; use a new key for a new "
                "request"
            )
        return earlier
    if sdk_retry:
        return (
            generations.filter(
                request_sha256=body_sha256, created_at__gte=timezone.now() - replay_window()
            )
            .order_by("-created_at", "-id")
            .first()
        )
    return None


@transaction.atomic
def generation_submit(
    *,
    token: ApiToken,
    spec: ModelSpec,
    body: dict[str, Any],
    options: dict[str, Any],
    reference: Any,
    body_sha256: str,
    idempotency_key: str,
    sdk_retry: bool,
) -> tuple[Generation, bool]:
    """The generation for an API request: the one an earlier request of it started
    (True), or a new one (False) tagged so that later repeats find it.

    The owner's row is locked before looking, as generation_create locks it to count,
    so two requests with one key cannot both create. Raises what generation_create
    raises, and IdempotencyKeyReused.
    """
    owner = token.user
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    earlier = generation_replay(
        token=token,
        body_sha256=body_sha256,
        idempotency_key=idempotency_key,
        sdk_retry=sdk_retry,
    )
    if earlier is not None:
        return earlier, True
    generation = services.generation_create(
        owner=owner, spec=spec, body=body, options=options, reference=reference
    )
    # In the same transaction as the insert: the message goes out after commit, and a
    # repeat waiting on the owner's lock finds the tagged row once it can look.
    generation.api_token = token
    generation.idempotency_key = idempotency_key
    generation.request_sha256 = body_sha256
    generation.save(update_fields=["api_token", "idempotency_key", "request_sha256"])
    return generation, False
