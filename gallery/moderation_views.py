"""Reporting an image, and the moderators' review queue."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import rules
from accounts.errors import InvalidRequest, StudioError
from accounts.forms import form_errors
from gallery import selectors, services
from gallery.forms import ModerationDecisionForm, ReportForm
from gallery.models import Report
from generator.models import Image
from studio.http import see_other


@require_http_methods(["GET", "POST"])
@login_required
def image_report(request: HttpRequest, uuid: UUID) -> HttpResponse:
    """Any viewer who can see an image may report it (not its owner)."""
    image = selectors.image_for_viewer(viewer=request.user, uuid=uuid)
    if image is None:
        raise Http404("No such image")
    error = ""
    if request.method == "POST":
        form = ReportForm(request.POST)
        try:
            if not form.is_valid():
                raise InvalidRequest(form_errors(form))
            services.image_report(
                image=image,
                reporter=request.user,
                reason=form.cleaned_data["reason"],
                text=form.cleaned_data["text"],
            )
        except StudioError as exc:
            error = str(exc)
        else:
            messages.success(
                request, "Thank you: the image is held from the gallery until a moderator decides."
            )
            return see_other(reverse("gallery:index"))
    context = {"image": image, "reasons": Report.Reason.choices, "error": error}
    return render(request, "gallery/report.html", context, status=400 if error else 200)


@require_GET
@login_required
def queue(request: HttpRequest) -> HttpResponse:
    if not rules.may_moderate(request.user):
        raise PermissionDenied("Moderators only")
    state = "hidden" if request.GET.get("state") == "hidden" else "held"
    images = list(selectors.moderation_queue(state=state)[:200])
    return render(request, "gallery/moderation.html", {"images": images, "state": state})


@require_POST
@login_required
def decide(request: HttpRequest) -> HttpResponse:
    """Approve, hide or delete the posted images (one, or a bulk selection)."""
    if not rules.may_moderate(request.user):
        raise PermissionDenied("Moderators only")
    form = ModerationDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return see_other(reverse("gallery:moderation"))
    data = form.cleaned_data
    decision = data.get("decision_name", "")
    images = list(
        Image.objects.filter(uuid__in=data.get("uuids", []))
        .select_related("generation__owner")
        .order_by("id")
    )
    try:
        done = services.moderation_decide(
            images=images, decision=decision, by=request.user, reason=data.get("reason", "")
        )
    except StudioError as exc:
        messages.error(request, str(exc))
        done = 0
    else:
        messages.success(request, f"{decision.capitalize()}: {done} image(s).")
    target = reverse("gallery:moderation")
    if data.get("state") == "hidden":
        target += "?state=hidden"
    return see_other(target)
