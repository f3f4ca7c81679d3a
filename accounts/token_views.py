"""The account pages: personal API tokens.

The raw token exists in one response only, the one that created it: it is never
put in the session, a message, a redirect or a log, and that response is no-store.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import reswap, retarget

from accounts import tokens as token_services
from accounts.errors import StudioError
from accounts.forms import ApiTokenForm
from accounts.models import ApiToken
from studio.http import HtmxHttpRequest

# The model of the page's code example: the registry's default. accounts sits below the
# generator and cannot read the registry; tests/generator/test_layout.py keeps them equal.
EXAMPLE_MODEL = "flux-realism"


@require_http_methods(["GET", "POST"])
@login_required
@never_cache
@vary_on_headers("HX-Request")
def tokens(request: HtmxHttpRequest) -> HttpResponse:
    raw_token: str | None = None
    status = 200
    if request.method == "POST":
        form = ApiTokenForm(request.POST)
        if form.is_valid():
            try:
                _, raw_token = token_services.api_token_create(
                    user=request.user, name=form.cleaned_data["name"]
                )
            except StudioError as exc:
                form.add_error(None, str(exc))
        if raw_token is None:
            if request.htmx:
                response = render(request, "accounts/tokens.html#token-form", {"form": form})
                # As in the studio: htmx does not swap 4xx answers, so errors come
                # back as 200 and replace the form in place.
                return reswap(retarget(response, "#token-form"), "outerHTML")
            status = 400
        else:
            form = ApiTokenForm()
    else:
        form = ApiTokenForm()
    context: dict[str, Any] = {
        "form": form,
        "tokens": token_services.api_token_list(user=request.user),
        "raw_token": raw_token,
        "api_base": request.build_absolute_uri("/v1"),
        "example_model": EXAMPLE_MODEL,
    }
    template = "accounts/tokens.html"
    if request.htmx and raw_token:
        # The new token and a fresh form replace #token-created; the list comes
        # along out of band so the new row appears.
        template += "#token-created"
        context["list_out_of_band"] = True
    return render(request, template, context, status=status)


@require_POST
@login_required
@never_cache
def token_revoke(request: HtmxHttpRequest, uuid: UUID) -> HttpResponse:
    # Scoped to the owner: anyone else, staff included, gets the same 404 as for a
    # token that does not exist.
    token = get_object_or_404(ApiToken, uuid=uuid, user=request.user)
    token_services.api_token_revoke(token=token, user=request.user)
    if request.htmx:
        return render(request, "accounts/tokens.html#token-row", {"token": token})
    response = redirect("accounts:tokens")
    response.status_code = 303
    return response
