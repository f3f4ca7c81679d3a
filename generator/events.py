"""Live events: what changed, told to the pages that show it.

A service that changes something a page shows publishes a small event after its
transaction commits (a generation's new state, the moderation queue's new length).
Events go to a Redis stream when the broker is Redis, otherwise to the `LiveEvent`
table, and stay there SSE_EVENT_RETENTION seconds, so a browser that reconnects with
Last-Event-ID is sent what it missed. generator.live_views streams them; the page
re-renders what an event names (static/js/live.js).

Publishing never fails the change it reports: a lost event costs a page a refresh
(the polling fallback), never a generation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

MODERATORS = "moderators"
NOTIFICATIONS = "notifications"
# How often a stream looks at the change-log table for new rows (no Redis to block on).
TABLE_POLL_SECONDS = 0.5
BATCH = 100

REDIS_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
TABLE_ID = re.compile(r"^\d{1,20}$")


@dataclass(frozen=True)
class Event:
    id: str
    kind: str
    audience: str
    data: dict[str, Any]


def for_user(user_id: int) -> str:
    return f"user:{user_id}"


def _use_redis() -> bool:
    return bool(settings.LIVE_EVENTS_REDIS_URL)


def valid_id(value: str | None) -> str | None:
    """`value` if it is an event id of the store in use (a Last-Event-ID from a
    browser is untrusted text), else None."""
    value = (value or "").strip()
    pattern = REDIS_ID if _use_redis() else TABLE_ID
    return value if pattern.match(value) else None


def id_order(event_id: str) -> tuple[int, int]:
    first, _, second = event_id.partition("-")
    return int(first), int(second or 0)


# --- Publishing -------------------------------------------------------------------


def publish(kind: str, audience: str, data: dict[str, Any]) -> None:
    """Store one event now. Logs and returns when the store is unreachable."""
    try:
        if _use_redis():
            _redis_publish(kind, audience, data)
        else:
            _table_publish(kind, audience, data)
    except Exception:
        logger.warning("live event %s for %s was not stored", kind, audience, exc_info=True)


def publish_on_commit(kind: str, audience: str, data: dict[str, Any]) -> None:
    # After commit: a page that re-renders on the event must read the new state.
    transaction.on_commit(partial(publish, kind, audience, data), robust=True)


def generation_event(generation: Any, **fields: Any) -> tuple[str, str, dict[str, Any]]:
    """The event (kind, audience, data) saying `generation` changed; `fields` are the
    columns the caller just wrote, which the object in hand may not carry yet."""
    return (
        "generation",
        for_user(generation.owner_id),
        {
            "uuid": str(generation.uuid),
            "status": str(fields.get("status", generation.status)),
            "step": str(fields.get("step", generation.step)),
        },
    )


def generation_changed(generation: Any, **fields: Any) -> None:
    """Tell the owner's pages that `generation` changed, after commit."""
    publish_on_commit(*generation_event(generation, **fields))


def moderation_changed(waiting: int) -> None:
    """Tell moderators' pages how many reports wait for review now."""
    publish(MODERATORS, MODERATORS, {"waiting": waiting})


def notifications_changed(user_id: int) -> None:
    """Tell a person's pages to recount their unread notifications."""
    publish_on_commit(NOTIFICATIONS, for_user(user_id), {})


def latest_id() -> str:
    """The id a stream starts after when the browser names none: the newest event."""
    try:
        if _use_redis():
            newest = _redis_client().xrevrange(settings.LIVE_EVENTS_KEY, count=1)
            return newest[0][0] if newest else "0-0"
        from generator.models import LiveEvent

        newest_pk = LiveEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
        return str(newest_pk or 0)
    except Exception:
        # Empty, not the oldest id: a page must not replay an hour of events because
        # the store missed one read; the stream then starts from what comes next.
        logger.warning("live events: the newest id could not be read", exc_info=True)
        return ""


# --- Reading ----------------------------------------------------------------------


class Reader:
    """One stream's view of the store: `read` (sync, for WSGI) or `aread` (ASGI)
    waits up to `block` seconds for events after an id. Between reads it holds no
    database connection."""

    def __init__(self) -> None:
        self._async_client: Any = None

    def read(self, after: str, block: float) -> list[Event]:
        if _use_redis():
            # One socket timeout for every read (a read blocks at most a heartbeat),
            # so the threads of a process share one pool.
            client = _redis_client(timeout=settings.SSE_HEARTBEAT_SECONDS + 5)
            block = min(block, settings.SSE_HEARTBEAT_SECONDS)
            # "$": whatever comes after now.
            return _redis_events(
                client.xread(
                    {settings.LIVE_EVENTS_KEY: after or "$"}, count=BATCH, block=_ms(block)
                )
            )
        deadline = time.monotonic() + block
        while True:
            found = _table_read(after)
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            time.sleep(min(TABLE_POLL_SECONDS, remaining))

    async def aread(self, after: str, block: float) -> list[Event]:
        if _use_redis():
            if self._async_client is None:
                import redis.asyncio

                self._async_client = redis.asyncio.Redis.from_url(
                    settings.LIVE_EVENTS_REDIS_URL,
                    decode_responses=True,
                    socket_timeout=block + 5,
                    socket_connect_timeout=2,
                )
            answer = await self._async_client.xread(
                {settings.LIVE_EVENTS_KEY: after or "$"}, count=BATCH, block=_ms(block)
            )
            return _redis_events(answer)
        deadline = time.monotonic() + block
        # thread_sensitive=False: a waiting stream must not queue behind the request
        # thread every sync view shares.
        table_read = sync_to_async(_table_read, thread_sensitive=False)
        while True:
            found = await table_read(after)
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            await asyncio.sleep(min(TABLE_POLL_SECONDS, remaining))

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


# --- The Redis stream ---------------------------------------------------------------

_clients: dict[tuple[str, float], Any] = {}
_clients_lock = threading.Lock()


def _redis_client(timeout: float = 2.0) -> Any:
    # One pool per URL and timeout, shared by the threads of a process; a blocking
    # read needs a socket timeout longer than its block.
    import redis

    key = (settings.LIVE_EVENTS_REDIS_URL, timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = redis.Redis.from_url(
                settings.LIVE_EVENTS_REDIS_URL,
                decode_responses=True,
                socket_timeout=timeout,
                socket_connect_timeout=2,
            )
        return client


def _redis_publish(kind: str, audience: str, data: dict[str, Any]) -> None:
    oldest_ms = int((time.time() - settings.SSE_EVENT_RETENTION) * 1000)
    _redis_client().xadd(
        settings.LIVE_EVENTS_KEY,
        {"kind": kind, "audience": audience, "data": json.dumps(data)},
        # Entries older than the retention go as new ones come (approximately: whole
        # stream nodes at a time, which is what keeps XADD cheap).
        minid=f"{oldest_ms}-0",
        approximate=True,
    )


def _redis_events(answer: Any) -> list[Event]:
    found: list[Event] = []
    for _key, entries in answer or []:
        for entry_id, fields in entries:
            found.append(_event(entry_id, fields))
    return found


def _event(entry_id: str, fields: dict[str, str]) -> Event:
    try:
        data = json.loads(fields.get("data") or "{}")
    except ValueError:
        data = {}
    return Event(entry_id, fields.get("kind", ""), fields.get("audience", ""), data)


# --- The change-log table (the embedded setup) --------------------------------------

_last_trim = 0.0
TRIM_EVERY_SECONDS = 60


def _table_publish(kind: str, audience: str, data: dict[str, Any]) -> None:
    global _last_trim
    from generator.models import LiveEvent

    LiveEvent.objects.create(kind=kind, audience=audience, data=data)
    if time.monotonic() - _last_trim > TRIM_EVERY_SECONDS:
        _last_trim = time.monotonic()
        cutoff = timezone.now() - timedelta(seconds=settings.SSE_EVENT_RETENTION)
        LiveEvent.objects.filter(created_at__lt=cutoff).delete()


def _table_read(after: str) -> list[Event]:
    from generator.models import LiveEvent

    try:
        rows = list(
            LiveEvent.objects.filter(pk__gt=int(after or 0))
            .order_by("pk")
            .values_list("pk", "kind", "audience", "data")[:BATCH]
        )
    finally:
        release_database()
    return [Event(str(pk), kind, audience, data) for pk, kind, audience, data in rows]


def release_database() -> None:
    """Close this thread's database connection, so a stream waiting for events holds
    none; inside a transaction (a test's) there is nothing to give back."""
    if not connection.in_atomic_block:
        connection.close()
