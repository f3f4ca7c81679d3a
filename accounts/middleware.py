"""Pending and suspended accounts may sign out and read why, and nothing else; and
domain errors become answers."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.errors import Refused, StudioError
from accounts.models import Member
from accounts.rules import status_of

# Paths an inactive account may still reach: signing out, static files, health.
ALLOWED_PREFIXES = ("/accounts/logout/", "/static/", "/healthz")


def member_status(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable:
    def middleware(request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            status = status_of(user)
            if status != Member.Status.ACTIVE and not request.path.startswith(ALLOWED_PREFIXES):
                return render(
                    request,
                    "registration/inactive.html",
                    {"status": status, "reason": user.member.status_reason},
                    status=403,
                )
        return get_response(request)

    return middleware


class domain_errors:  # noqa: N801  (named like the function middleware beside it)
    """Pages: the one place a domain error raised by a service becomes an answer.

    Refused is a 403 (Django's handler, the site's 403 page); the others are the
    person's to fix, so the message is the answer. Views that can show an error at a
    field catch StudioError themselves; the API maps the same errors in api.views.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, Refused):
            raise PermissionDenied(exception.message) from exception
        if isinstance(exception, StudioError):
            response = HttpResponse(
                exception.message, status=exception.status, content_type="text/plain"
            )
            retry_after = getattr(exception, "retry_after", None)
            if retry_after:
                response["Retry-After"] = str(retry_after)
            return response
        return None
