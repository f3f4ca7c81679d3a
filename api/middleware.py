"""Every answer under /v1 is JSON in the provider's flat error shape, whoever made it.

The API's views answer their own errors; this catches the rest, made before or around
them: a suspended account's HTML 403 page (accounts.middleware.member_status), Django's
400 for a body it refuses to read, the HTML 500 page of an unexpected exception. First
in MIDDLEWARE, so it sees every other middleware's answer.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from studio.http import flat_error

# The headers an error keeps when its body is replaced: they tell the client what next.
KEPT_HEADERS = ("Allow", "Retry-After", "Location", "WWW-Authenticate")


def is_api_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def flat_errors(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable:
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if (
            response.status_code >= 400
            and is_api_path(request.path)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            headers = {
                name.replace("-", "_"): response[name] for name in KEPT_HEADERS if name in response
            }
            status = response.status_code
            return flat_error(status, response.reason_phrase, request.path, **headers)
        return response

    return middleware
