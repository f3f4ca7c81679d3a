"""The live event stream: one server-sent event stream per browser (its tabs share it,
static/js/live-worker.js), carrying what changed for the signed-in person.

Served by gunicorn's ASGI worker in production (an async body: a waiting stream holds
a coroutine, not a thread) and by the threaded WSGI server in the tests (a sync body).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET

from accounts import rules
from accounts.selectors import unread_count
from generator import events
from studio.http import HtmxHttpRequest

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_open_streams = 0


class _Slot:
    """One of this process's SSE_MAX_CONNECTIONS; released once, however the stream ends."""

    def __init__(self) -> None:
        self.held = True

    def release(self) -> None:
        global _open_streams
        with _lock:
            if self.held:
                self.held = False
                _open_streams -= 1


def _take_slot() -> _Slot | None:
    global _open_streams
    with _lock:
        if _open_streams >= settings.SSE_MAX_CONNECTIONS:
            return None
        _open_streams += 1
        return _Slot()


def open_streams() -> int:
    return _open_streams


def _frame(event: events.Event) -> bytes:
    # The unread count is sent with the id of the last event read (the browser keeps
    # it for Last-Event-ID either way).
    return f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(event.data)}\n\n".encode()


HEARTBEAT = b": heartbeat\n\n"
# The first bytes: how long the browser waits before reconnecting, and a comment that
# gets the headers out, so the browser knows the stream is open.
OPENING = b"retry: 3000\n: open\n\n"


class _Stream:
    """The events after `after` that `audiences` may see, with heartbeats, until
    SSE_STREAM_SECONDS have passed. Django calls close() when the response ends."""

    def __init__(self, slot: _Slot, after: str, audiences: frozenset[str], user: Any) -> None:
        self.slot = slot
        self.after = after
        self.audiences = audiences
        self.user = user
        # Unknown at first: the first count is always sent, so a page rendered before
        # the stream opened is brought up to date.
        self.unread: int | None = None
        self.reader = events.Reader()
        self.ends_at = time.monotonic() + settings.SSE_STREAM_SECONDS

    def _wait(self) -> float:
        return max(0.0, min(settings.SSE_HEARTBEAT_SECONDS, self.ends_at - time.monotonic()))

    def _frames(self, found: list[events.Event]) -> tuple[list[bytes], bool]:
        """The frames of the events this reader may see, and whether the unread count
        should be looked at: after a quiet wait (notifications also come from code
        that cannot publish, like a sign-up waiting for an admin) or when told to."""
        frames = []
        recount = not found
        for event in found:
            self.after = event.id
            if event.audience not in self.audiences:
                continue
            if event.kind == events.NOTIFICATIONS:
                recount = True
            else:
                frames.append(_frame(event))
        return frames, recount

    def _count_unread(self) -> int:
        try:
            return unread_count(self.user)
        finally:
            events.release_database()

    def _unread_frame(self, unread: int) -> list[bytes]:
        if unread == self.unread:
            return []
        self.unread = unread
        event = events.Event(self.after, events.NOTIFICATIONS, "", {"unread": unread})
        return [_frame(event)]

    def close(self) -> None:
        self.slot.release()


class _SyncStream(_Stream):
    def __iter__(self) -> Iterator[bytes]:
        try:
            yield OPENING + b"".join(self._unread_frame(self._count_unread()))
            while time.monotonic() < self.ends_at:
                frames, recount = self._frames(self.reader.read(self.after, self._wait()))
                if recount:
                    frames += self._unread_frame(self._count_unread())
                # A heartbeat after a quiet wait: it also finds out a browser that left
                # (the write fails) within one interval.
                yield b"".join(frames) or HEARTBEAT
        except Exception:
            # The store is unreachable: the stream ends cleanly and the browser
            # reconnects after the retry interval (polling meanwhile if it lasts).
            logger.warning("live stream ended: the event store failed", exc_info=True)
        finally:
            self.slot.release()


class _AsyncStream(_Stream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            count_unread = sync_to_async(self._count_unread, thread_sensitive=False)
            yield OPENING + b"".join(self._unread_frame(await count_unread()))
            while time.monotonic() < self.ends_at:
                frames, recount = self._frames(await self.reader.aread(self.after, self._wait()))
                if recount:
                    frames += self._unread_frame(await count_unread())
                yield b"".join(frames) or HEARTBEAT
        except Exception:
            logger.warning("live stream ended: the event store failed", exc_info=True)
        finally:
            self.slot.release()
            await self.reader.aclose()


@require_GET
def live_events(request: HtmxHttpRequest) -> HttpResponse:
    """GET /live/events: the stream. A reconnecting browser's Last-Event-ID (or, for
    its first connection, ?since= from the page it rendered) says where to resume."""
    user = request.user
    if not user.is_authenticated or not rules.is_active(user):
        return HttpResponse(
            "Sign in to follow live updates.", status=403, content_type="text/plain"
        )
    audiences = {events.for_user(user.pk)}
    if rules.may_moderate(user):
        audiences.add(events.MODERATORS)
    after = (
        events.valid_id(request.headers.get("Last-Event-ID"))
        or events.valid_id(request.GET.get("since"))
        or events.latest_id()
    )
    # Read what the stream needs from the database first, then give the connection
    # back: the stream may wait for minutes.
    events.release_database()
    slot = _take_slot()
    if slot is None:
        busy = HttpResponse(
            "Too many live connections; this page updates by polling instead.",
            status=503,
            content_type="text/plain",
        )
        busy["Retry-After"] = str(settings.SSE_RETRY_AFTER)
        return busy
    stream_class = _AsyncStream if isinstance(request, ASGIRequest) else _SyncStream
    response = StreamingHttpResponse(
        stream_class(slot, after, frozenset(audiences), user),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    # nginx would otherwise buffer the stream until its buffer fills.
    response["X-Accel-Buffering"] = "no"
    return response
