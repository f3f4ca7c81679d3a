"""The studio's settings pages: usage and budgets, the models, and the prompt policy."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import rules
from accounts.errors import InvalidRequest
from accounts.forms import form_errors
from accounts.services import member_of
from generator import policy as prompt_policy
from generator import selectors, services
from generator import services as budgets
from generator.forms import BlockedTermForm
from generator.models import BlockedTerm, CostEntry
from generator.registry import MODELS, get_model
from studio.http import see_other

# What an entry cost: the provider's own figure when it gave one, else the estimate.
SPENT = Coalesce("provider_usd", "estimated_usd")


@require_GET
@login_required
def usage(request: HttpRequest) -> HttpResponse:
    """The viewer's spending this month by model, and for admins the whole team's."""
    since = budgets.month_start()
    mine = (
        CostEntry.objects.filter(owner=request.user, created_at__gte=since)
        .values("model")
        .annotate(
            images=Sum("images"),
            usd=Sum(SPENT),
            estimated=Sum("estimated_usd"),
            credits=Sum("credits_used"),
            entries=Count("id"),
            charged=Count("provider_usd"),
        )
        .order_by("model")
    )
    member = member_of(request.user)
    budget = (
        member.monthly_budget_usd
        if member and member.monthly_budget_usd is not None
        else settings.USER_MONTHLY_BUDGET_USD
    )
    context: dict[str, Any] = {
        "since": since,
        "mine": mine,
        "spent": budgets.month_spend(owner=request.user),
        "budget": budget,
    }
    if rules.may_view_team_spending(request.user):
        context["team"] = (
            CostEntry.objects.filter(created_at__gte=since)
            .values("owner__username", "owner__member__monthly_budget_usd")
            .annotate(images=Sum("images"), usd=Sum(SPENT), count=Count("id"))
            .order_by("-usd")
        )
        context["studio_spent"] = budgets.month_spend()
        context["studio_budget"] = settings.STUDIO_MONTHLY_BUDGET_USD
    return render(request, "generator/usage.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def policy(request: HttpRequest) -> HttpResponse:
    if not rules.may_edit_policy(request.user):
        raise PermissionDenied("Your role does not allow this page")
    if request.method == "POST":
        form = BlockedTermForm(request.POST)
        if not form.is_valid():
            messages.error(request, form_errors(form))
            return see_other(reverse("generator:policy"))
        try:
            if form.cleaned_data["remove"]:
                term = get_object_or_404(BlockedTerm, pk=form.cleaned_data["remove"])
                prompt_policy.blocked_term_remove(term=term, by=request.user)
            else:
                prompt_policy.blocked_term_add(
                    pattern=form.cleaned_data["pattern"],
                    is_regex=form.cleaned_data["is_regex"],
                    by=request.user,
                )
        except InvalidRequest as exc:
            messages.error(request, str(exc))
        return see_other(reverse("generator:policy"))
    terms = BlockedTerm.objects.select_related("created_by").order_by("pattern")
    return render(request, "generator/policy.html", {"terms": terms})


@require_GET
@login_required
def models_page(request: HttpRequest) -> HttpResponse:
    """Every model with its options, limits and price, and the latest images from it."""
    examples = selectors.latest_images_by_model(viewer=request.user, per_model=4)
    enabled = selectors.enabled_model_ids()
    models = [
        {"spec": spec, "examples": examples.get(spec.id, []), "enabled": spec.id in enabled}
        for spec in MODELS.values()
    ]
    return render(request, "generator/models.html", {"models": models})


@require_POST
@login_required
def model_enable(request: HttpRequest, model_id: str) -> HttpResponse:
    """An admin turns a model on or off for everyone (deprecated ones start off)."""
    spec = get_model(model_id)
    if spec is None:
        raise Http404("No such model")
    # Refused (not an admin) becomes a 403 in accounts.middleware.domain_errors.
    services.model_setting_set(
        model=spec.id, enabled=request.POST.get("enabled") == "true", by=request.user
    )
    return see_other("generator:models")
