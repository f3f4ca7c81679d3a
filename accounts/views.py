"""The team pages: sign-up, members (admins; moderators may suspend), the audit log,
notifications, and each user's own account settings. Spending is on the generator's
usage page, which owns the ledger."""

from __future__ import annotations

import csv
import datetime as dt
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import PasswordResetView
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import rules, selectors
from accounts import services as members
from accounts.errors import StudioError
from accounts.forms import (
    AccountSettingsForm,
    InvitationForm,
    MemberActionForm,
    SignupForm,
    form_errors,
)
from accounts.models import Visibility
from accounts.roles import GROUP_NAMES, role_from_groups, role_of
from audit import selectors as audit_selectors
from audit.services import ACTIONS
from studio.http import see_other

AUDIT_PAGE_SIZE = 100


# --- Members ---------------------------------------------------------------------------------


@require_GET
@login_required
def member_list(request: HttpRequest) -> HttpResponse:
    if not rules.may_view_members(request.user):
        raise PermissionDenied("Your role does not allow this page")
    users = list(selectors.people_for_members_page())
    rows = [
        {
            "user": user,
            "role": role_from_groups(user.groups.all()),
            "status": rules.status_of(user),
            "member": members.member_of(user),
        }
        for user in users
    ]
    invitation = None
    token = request.GET.get("invited")
    if token and rules.may_invite(request.user):
        invitation = members.invitation_valid(token)
    context = {
        "rows": rows,
        "roles": list(GROUP_NAMES),
        "can_manage": rules.may_manage_members(request.user),
        "can_set_budgets": rules.may_set_budgets(request.user),
        "invitation_url": request.build_absolute_uri(reverse("signup") + f"?invite={token}")
        if invitation
        else None,
    }
    return render(request, "accounts/members.html", context)


@require_POST
@login_required
def member_action(request: HttpRequest, username: str) -> HttpResponse:
    """One form per row: approve, suspend, reinstate, role, limits. Who may do which to
    whom is decided by the services (accounts.rules); a refusal is shown as a message."""
    target = get_object_or_404(get_user_model().objects.select_related("member"), username=username)
    if not rules.may_view_members(request.user):
        raise PermissionDenied("Your role does not allow this page")
    form = MemberActionForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return see_other(reverse("accounts:members"))
    data, by = form.cleaned_data, request.user
    try:
        match data["action"]:
            case "approve":
                members.member_approve(user=target, by=by)
            case "suspend":
                members.member_suspend(user=target, by=by, reason=data["reason"])
            case "reinstate":
                members.member_reinstate(user=target, by=by)
            case "role":
                members.role_set(user=target, role=data["role"], by=by)
            case "limits":
                members.member_limits_set(
                    user=target,
                    by=by,
                    monthly_budget_usd=data["monthly_budget_usd"],
                    max_active=data["max_active"],
                )
    except StudioError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{target.get_username()}: done.")
    return see_other(reverse("accounts:members"))


@require_POST
@login_required
def invitation_create(request: HttpRequest) -> HttpResponse:
    form = InvitationForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return see_other(reverse("accounts:members"))
    # Refused (not an admin) becomes a 403 in accounts.middleware.domain_errors.
    invitation = members.invitation_create(by=request.user, role=form.cleaned_data["role"])
    return see_other(reverse("accounts:members") + f"?invited={invitation.token}")


# --- Audit log -------------------------------------------------------------------------------


def _require_audit(request: HttpRequest) -> None:
    if not rules.may_view_audit(request.user):
        raise PermissionDenied("Your role does not allow this page")


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
    _require_audit(request)
    filters = _audit_filters(request)
    before = request.GET.get("before", "")
    events = list(
        audit_selectors.audit_events(
            **filters, before_id=int(before) if before.isdigit() else None
        )[: AUDIT_PAGE_SIZE + 1]
    )
    more = len(events) > AUDIT_PAGE_SIZE
    events = events[:AUDIT_PAGE_SIZE]
    context = {
        "events": events,
        "actions": ACTIONS,
        "older": events[-1].pk if more else None,
        "filters": request.GET,
    }
    return render(request, "accounts/audit.html", context)


class _Echo:
    def write(self, value: str) -> str:
        return value


@require_GET
@login_required
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered log as CSV, streamed so a long history costs no memory."""
    _require_audit(request)
    events = audit_selectors.audit_events(**_audit_filters(request)).iterator(chunk_size=500)
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


# --- Notifications and account ------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def notifications(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        members.notifications_read(user=request.user)
        return see_other(reverse("accounts:notifications"))
    items = selectors.notifications_of(request.user)
    return render(request, "accounts/notifications.html", {"items": items})


@require_http_methods(["GET", "POST"])
@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The user's own settings: who sees new work by default."""
    if request.method == "POST":
        form = AccountSettingsForm(request.POST)
        if form.is_valid():
            members.member_visibility_set(
                user=request.user, visibility=form.cleaned_data["default_visibility"]
            )
            messages.success(request, "Saved.")
            return see_other(reverse("accounts:account"))
        messages.error(request, form_errors(form))
    current = members.default_visibility_of(request.user)
    return render(
        request,
        "accounts/account.html",
        {"choices": Visibility.choices, "current": current, "role": role_of(request.user)},
    )


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """The first account becomes the studio's admin. After that SIGNUP_MODE decides:
    "approval" (the account waits for an admin), "open", or "invite" (only with a
    valid `?invite=` link, which also works in the other modes)."""
    User = get_user_model()
    first = not User.objects.exists()
    token = request.POST.get("invite") or request.GET.get("invite")
    invitation = members.invitation_valid(token)
    if token and invitation is None:
        return render(
            request, "registration/signup.html", {"closed": True, "expired": True}, status=403
        )
    if not first and invitation is None and settings.SIGNUP_MODE == "invite":
        return render(request, "registration/signup.html", {"closed": True}, status=403)
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            try:
                user = members.member_signup(form=form, invitation=invitation)
            except StudioError as exc:
                form.add_error(None, str(exc))
            else:
                login(request, user, backend="accounts.backends.StudioBackend")
                return see_other("generator:studio")
    else:
        form = SignupForm()
    context = {
        "form": form,
        "first": first,
        "invitation": invitation,
        "approval": not first and invitation is None and settings.SIGNUP_MODE == "approval",
    }
    return render(request, "registration/signup.html", context)


@require_http_methods(["GET", "POST"])
def password_reset(request: HttpRequest) -> HttpResponse:
    """Django's reset-by-email when the studio can send email; otherwise a page that
    says an admin sets a new password (on the admin site), and nothing is sent."""
    if settings.STUDIO_SENDS_EMAIL:
        return PasswordResetView.as_view()(request)
    return render(request, "registration/password_reset_unavailable.html")
