"""View helpers every app shares: the bottom layer, importing no app of the studio.

- `see_other`: the 303 every POST answers with, so the browser follows with a GET.
- `HtmxHttpRequest`: the request type django-htmx's middleware gives views.
- `private_file_headers`: the headers of any response carrying stored user files.
- `flat_error`: the provider's flat JSON error body, which the API and API-facing
  views (media fetched with a bearer token) both answer with.
- `gateway_status`: the status a failed provider call is stored and answered with.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.utils import timezone
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def see_other(to: str, *args: Any, **kwargs: Any) -> HttpResponse:
    """A 303 to a URL or view name: after a POST the browser follows it with a GET."""
    response = redirect(to, *args, **kwargs)
    response.status_code = 303
    return response


def private_file_headers(
    response: HttpResponse, *, download_name: str | None = None, cache: str | None = None
) -> HttpResponse:
    """Mark `response` as carrying a stored file of a user's.

    Served from our own origin, the browser must treat the bytes as the declared image
    type and nothing else, even if they were crafted to look like a page: nosniff and
    a sandboxing CSP. `download_name` makes it an attachment; `cache` sets
    Cache-Control when given.
    """
    if download_name is not None:
        response["Content-Disposition"] = f'attachment; filename="{download_name}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    if cache is not None:
        response["Cache-Control"] = cache
    return response


def flat_error(status: int, message: str, path: str, **headers: str) -> JsonResponse:
    """The AI/ML API's flat error body (`message`, `path`, `requestId`, `statusCode`,
    `timestamp`); keyword arguments become headers (`Retry_After` → `Retry-After`)."""
    response = JsonResponse(
        {
            "message": message,
            "path": path,
            "requestId": str(uuid.uuid4()),
            "statusCode": status,
            "timestamp": timezone.now().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        },
        status=status,
    )
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def gateway_status(status: int | None) -> int:
    """A provider's failure status as the studio passes it on: a 4xx or 5xx as it is,
    anything else (none, 1xx, 2xx, 3xx, 600+) as 502 Bad Gateway. A `101 Switching
    Protocols` or a `304` handed to an API client would be read as something else
    entirely; the generation's store (generator.services.claims.fail) and the API's
    answer (api.views) both use this."""
    if status is not None and 400 <= status <= 599:
        return status
    return 502


def unauthorized(path: str) -> JsonResponse:
    return flat_error(
        401,
        "This request requires a valid API key. Create one on the studio's API tokens page "
        "and send it as 'Authorization: Bearer <token>'.",
        path,
    )
