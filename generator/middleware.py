"""Pending and suspended accounts may sign out and read why, and nothing else."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from generator.models import Member
from generator.roles import status_of

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
