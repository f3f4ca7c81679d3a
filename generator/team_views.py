"""The team pages: members (admins; moderators may suspend), the audit log, usage and
budgets, notifications, the prompt policy, and each user's own account settings."""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from generator import audit, members, services
from generator.models import BlockedTerm, CostEntry, Generation, Member, Notification
from generator.roles import (
    GROUP_NAMES,
    can_manage_members,
    can_moderate,
    member_of,
    role_of,
    status_of,
)
from generator.views import see_other

AUDIT_PAGE_SIZE = 100


def _require(check: Any, request: HttpRequest) -> None:
    if not check(request.user):
        raise PermissionDenied("Your role does not allow this page")


# --- Members ---------------------------------------------------------------------------------


@require_GET
@login_required
def member_list(request: HttpRequest) -> HttpResponse:
    _require(can_moderate, request)
    User = get_user_model()
    users = list(User.objects.select_related("member").order_by("username"))
    spend = dict(
        Generation.objects.filter(created_at__gte=services.month_start())
        .exclude(status=Generation.Status.FAILED, cost__isnull=True)
        .values_list("owner")
        .annotate(total=Sum(Coalesce("cost__estimated_usd", "estimated_usd")))
        .values_list("owner", "total")
    )
    rows = [
        {
            "user": user,
            "role": role_of(user),
            "status": status_of(user),
            "member": member_of(user),
            "spend": spend.get(user.pk) or Decimal(0),
        }
        for user in users
    ]
    invitation = None
    token = request.GET.get("invited")
    if token and can_manage_members(request.user):
        invitation = members.invitation_valid(token)
    context = {
        "rows": rows,
        "roles": list(GROUP_NAMES),
        "can_manage": can_manage_members(request.user),
        "invitation_url": request.build_absolute_uri(reverse("signup") + f"?invite={token}")
        if invitation
        else None,
    }
    return render(request, "generator/members.html", context)


def _target(username: str) -> Any:
    return get_object_or_404(get_user_model().objects.select_related("member"), username=username)


@require_POST
@login_required
def member_action(request: HttpRequest, username: str) -> HttpResponse:
    """One form per row: approve, suspend, reinstate, role, limits."""
    action = request.POST.get("action", "")
    target = _target(username)
    moderator_actions = {"suspend", "reinstate"}
    _require(can_moderate if action in moderator_actions else can_manage_members, request)
    try:
        if action == "approve":
            members.member_approve(user=target, by=request.user)
        elif action == "suspend":
            reason = request.POST.get("reason", "").strip()
            if not reason:
                raise members.MemberError("Give a reason for the suspension.")
            if role_of(target) == Member.Role.MODERATOR and not can_manage_members(request.user):
                raise members.MemberError("Only an admin may suspend a moderator.")
            members.member_suspend(user=target, by=request.user, reason=reason)
        elif action == "reinstate":
            members.member_reinstate(user=target, by=request.user)
        elif action == "role":
            members.role_set(user=target, role=request.POST.get("role", ""), by=request.user)
        elif action == "limits":
            members.member_limits_set(
                user=target,
                by=request.user,
                monthly_budget_usd=_decimal_or_none(request.POST.get("monthly_budget_usd")),
                max_active=_int_or_none(request.POST.get("max_active")),
            )
        else:
            raise members.MemberError(f"Unknown action {action!r}")
    except members.MemberError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{target.get_username()}: done.")
    return see_other(reverse("team:members"))


def _decimal_or_none(raw: str | None) -> Decimal | None:
    if not raw or not raw.strip():
        return None
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise members.MemberError(f"{raw!r} is not an amount in dollars") from None
    if value < 0 or not value.is_finite():
        raise members.MemberError("A budget cannot be negative")
    return value.quantize(Decimal("0.01"))


def _int_or_none(raw: str | None) -> int | None:
    if not raw or not raw.strip():
        return None
    if not raw.strip().isdigit() or not 1 <= int(raw) <= 1000:
        raise members.MemberError("The limit is a whole number from 1 to 1000")
    return int(raw)


@require_POST
@login_required
def invitation_create(request: HttpRequest) -> HttpResponse:
    _require(can_manage_members, request)
    try:
        invitation = members.invitation_create(
            by=request.user, role=request.POST.get("role", Member.Role.MEMBER)
        )
    except members.MemberError as exc:
        messages.error(request, str(exc))
        return see_other(reverse("team:members"))
    return see_other(reverse("team:members") + f"?invited={invitation.token}")


# --- Audit log -------------------------------------------------------------------------------


def _audit_filters(request: HttpRequest) -> dict[str, Any]:
    def day(name: str) -> dt.datetime | None:
        try:
            value = dt.date.fromisoformat(request.GET.get(name, ""))
        except ValueError:
            return None
        return timezone.make_aware(dt.datetime.combine(value, dt.time()))

    until = day("until")
    return {
        "action": request.GET.get("action", "").strip(),
        "actor": request.GET.get("actor", "").strip(),
        "since": day("since"),
        "until": until + dt.timedelta(days=1) if until else None,
    }


@require_GET
@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    _require(can_moderate, request)
    filters = _audit_filters(request)
    before = request.GET.get("before", "")
    events = list(
        audit.audit_events(**filters, before_id=int(before) if before.isdigit() else None)[
            : AUDIT_PAGE_SIZE + 1
        ]
    )
    more = len(events) > AUDIT_PAGE_SIZE
    events = events[:AUDIT_PAGE_SIZE]
    context = {
        "events": events,
        "actions": audit.ACTIONS,
        "older": events[-1].pk if more else None,
        "filters": request.GET,
    }
    return render(request, "generator/audit.html", context)


class _Echo:
    def write(self, value: str) -> str:
        return value


@require_GET
@login_required
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered log as CSV, streamed so a long history costs no memory."""
    _require(can_moderate, request)
    events = audit.audit_events(**_audit_filters(request)).iterator(chunk_size=500)
    writer = csv.writer(_Echo())
    header = ["time", "actor", "action", "target_type", "target_id", "target", "reason", "detail"]

    def rows() -> Any:
        yield writer.writerow(header)
        for event in events:
            yield writer.writerow(
                [
                    event.created_at.isoformat(),
                    event.actor_name,
                    event.action,
                    event.target_type,
                    event.target_id,
                    _csv_safe(event.target_label),
                    _csv_safe(event.reason),
                    _csv_safe(str(event.detail)),
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
    return response


def _csv_safe(text: str) -> str:
    # A cell starting with = + - @ runs as a formula in spreadsheet programs.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


# --- Usage and budgets -----------------------------------------------------------------------


@require_GET
@login_required
def usage(request: HttpRequest) -> HttpResponse:
    """The viewer's spending this month by model, and for admins the whole team's."""
    since = services.month_start()
    mine = (
        CostEntry.objects.filter(owner=request.user, created_at__gte=since)
        .values("model")
        .annotate(images=Sum("images"), usd=Sum("estimated_usd"), credits=Sum("credits_used"))
        .order_by("model")
    )
    member = member_of(request.user)
    budget = (
        member.monthly_budget_usd
        if member and member.monthly_budget_usd is not None
        else services.settings.USER_MONTHLY_BUDGET_USD
    )
    context: dict[str, Any] = {
        "since": since,
        "mine": mine,
        "spent": services.month_spend(owner=request.user),
        "budget": budget,
    }
    if can_manage_members(request.user):
        context["team"] = (
            CostEntry.objects.filter(created_at__gte=since)
            .values("owner__username")
            .annotate(images=Sum("images"), usd=Sum("estimated_usd"), count=Count("id"))
            .order_by("-usd")
        )
        context["studio_spent"] = services.month_spend()
        context["studio_budget"] = services.settings.STUDIO_MONTHLY_BUDGET_USD
    return render(request, "generator/usage.html", context)


# --- Notifications and account ------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def notifications(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        members.notifications_read(user=request.user)
        return see_other(reverse("team:notifications"))
    items = Notification.objects.filter(user=request.user).order_by("-created_at", "-id")[:100]
    return render(request, "generator/notifications.html", {"items": items})


@require_http_methods(["GET", "POST"])
@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The user's own settings: who sees new work by default."""
    choices = Generation.Visibility
    if request.method == "POST":
        value = request.POST.get("default_visibility", "")
        if value in choices.values:
            members.member_visibility_set(user=request.user, visibility=value)
            messages.success(request, "Saved.")
            return see_other(reverse("team:account"))
        messages.error(request, "Choose private or shared.")
    current = members.default_visibility_of(request.user)
    return render(
        request,
        "generator/account.html",
        {"choices": choices.choices, "current": current, "role": role_of(request.user)},
    )


# --- Prompt policy ------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def policy(request: HttpRequest) -> HttpResponse:
    _require(can_manage_members, request)
    if request.method == "POST":
        try:
            if request.POST.get("remove"):
                term = get_object_or_404(BlockedTerm, pk=request.POST["remove"])
                members.blocked_term_remove(term=term, by=request.user)
            else:
                members.blocked_term_add(
                    pattern=request.POST.get("pattern", ""),
                    is_regex=request.POST.get("is_regex") == "on",
                    by=request.user,
                )
        except members.MemberError as exc:
            messages.error(request, str(exc))
        return see_other(reverse("team:policy"))
    terms = BlockedTerm.objects.select_related("created_by").order_by("pattern")
    return render(request, "generator/policy.html", {"terms": terms})
