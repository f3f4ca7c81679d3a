from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from generator import events


def live(request: HttpRequest) -> dict[str, object]:
    # Lazy: read only by base.html, for signed-in pages. The page's stream starts from
    # here, so nothing that happens between the render and the stream's start is lost.
    return {"live_since": SimpleLazyObject(events.latest_id)}
