"""Services for the team: sign-up, approval, roles, suspension, limits, invitations and
notifications. Each change that matters is in the audit log."""

from __future__ import annotations

import secrets
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts import rules
from accounts.errors import InvalidRequest, Refused
from accounts.models import Invitation, Member, Notification
from accounts.roles import GROUP_NAMES, Role, role_groups_set, role_of
from accounts.signals import changing_role, superuser_follow_role
from audit.services import audit_record


def member_get(user: AbstractBaseUser) -> Member:
    """The user's Member row, created if missing; the one cached on `user` if loaded, so
    a change made through it is what later checks on the same object read."""
    try:
        return user.member
    except Member.DoesNotExist:
        member, _ = Member.objects.get_or_create(user=user)
        return member


def member_of(user: Any) -> Member | None:
    """The user's Member row, or None (signed out, or an account without one)."""
    if not getattr(user, "is_authenticated", False):
        return None
    try:
        return user.member
    except Member.DoesNotExist:
        return None


@transaction.atomic
def member_signup(*, form: Any, invitation: Invitation | None = None) -> AbstractBaseUser:
    """Create the account from a valid sign-up form.

    The studio's first account becomes its admin. Later ones are active members in
    "open" mode or with an invitation (taking its role), and wait for approval in
    "approval" mode (admins are notified).
    """
    User = get_user_model()
    # The user table lock makes "first account" exact under concurrent sign-ups.
    first = not User.objects.select_for_update().exists()
    user = form.save()
    if first:
        role, status = Role.ADMIN, Member.Status.ACTIVE
    elif invitation is not None:
        role, status = invitation.role, Member.Status.ACTIVE
        updated = Invitation.objects.filter(
            pk=invitation.pk, used_at__isnull=True, expires_at__gt=timezone.now()
        ).update(used_by=user, used_at=timezone.now())
        if not updated:
            raise InvalidRequest("This invitation has been used or has expired.")
    elif settings.SIGNUP_MODE == "open":
        role, status = Role.MEMBER, Member.Status.ACTIVE
    else:
        role, status = Role.MEMBER, Member.Status.PENDING
    Member.objects.update_or_create(user=user, defaults={"status": status})
    role_apply(user, role)
    audit_record(actor=user, action="member.signup", target=user, role=role, status=status)
    if status == Member.Status.PENDING:
        for admin in _admins():
            notification_send(
                user=admin,
                text=f"{user.get_username()} signed up and is waiting for approval.",
                link="/members/",
            )
    return user


def _admins() -> list[AbstractBaseUser]:
    User = get_user_model()
    return list(
        User.objects.filter(is_active=True, groups__name=GROUP_NAMES[Role.ADMIN]).distinct()
    )


def role_apply(user: AbstractBaseUser, role: str) -> bool:
    """Give `user` exactly the role group of `role`, with the superuser flag following;
    True if the flag changed. Callers audit; sign-up and role_set are the callers."""
    with changing_role():
        role_groups_set(user, role)
        return superuser_follow_role(user)


@transaction.atomic
def role_set(*, user: AbstractBaseUser, role: str, by: AbstractBaseUser) -> str:
    rules.require(rules.may_change_role(by, user), "Only an admin may change roles.")
    if role not in GROUP_NAMES:
        raise InvalidRequest(f"Unknown role {role!r}")
    old = role_of(user)
    if old == Role.ADMIN and role != Role.ADMIN and len(_admins()) <= 1:
        raise InvalidRequest("The studio needs at least one admin.")
    flag_changed = role_apply(user, role)
    audit_record(
        actor=by,
        action="member.role",
        target=user,
        old=old,
        new=role,
        **({"superuser": user.is_superuser} if flag_changed else {}),
    )
    return role


def _status_set(member: Member, status: str, reason: str = "") -> None:
    member.status, member.status_reason = status, reason[:500]
    member.save(update_fields=["status", "status_reason", "updated_at"])


@transaction.atomic
def member_approve(*, user: AbstractBaseUser, by: AbstractBaseUser) -> Member:
    rules.require(
        rules.may_approve(by, user), "Only an admin may approve, and only a pending sign-up."
    )
    member = member_get(user)
    _status_set(member, Member.Status.ACTIVE)
    audit_record(actor=by, action="member.approve", target=user)
    notification_send(user=user, text="Your account was approved: welcome to the studio.")
    return member


@transaction.atomic
def member_suspend(*, user: AbstractBaseUser, by: AbstractBaseUser, reason: str) -> Member:
    """Suspend `user`: they can no longer browse, generate or use their API tokens."""
    refusal = rules.suspend_refusal(by, user, role_of(user))
    if refusal:
        raise Refused(refusal)
    reason = reason.strip()
    if not reason:
        raise InvalidRequest("Give a reason for the suspension.")
    member = member_get(user)
    _status_set(member, Member.Status.SUSPENDED, reason)
    audit_record(actor=by, action="member.suspend", target=user, reason=reason)
    return member


@transaction.atomic
def member_reinstate(*, user: AbstractBaseUser, by: AbstractBaseUser) -> Member:
    refusal = rules.reinstate_refusal(by, user, role_of(user))
    if refusal:
        raise Refused(refusal)
    member = member_get(user)
    _status_set(member, Member.Status.ACTIVE)
    audit_record(actor=by, action="member.reinstate", target=user)
    notification_send(user=user, text="Your account was reinstated.")
    return member


@transaction.atomic
def member_limits_set(
    *,
    user: AbstractBaseUser,
    by: AbstractBaseUser,
    monthly_budget_usd: Decimal | None,
    max_active: int | None,
) -> Member:
    rules.require(rules.may_set_limits(by, user), "Only an admin may set budgets and limits.")
    member = member_get(user)
    old = {"monthly_budget_usd": member.monthly_budget_usd, "max_active": member.max_active}
    member.monthly_budget_usd, member.max_active = monthly_budget_usd, max_active
    member.save(update_fields=["monthly_budget_usd", "max_active", "updated_at"])
    audit_record(
        actor=by,
        action="member.limits",
        target=user,
        old={k: None if v is None else str(v) for k, v in old.items()},
        new={
            "monthly_budget_usd": None if monthly_budget_usd is None else str(monthly_budget_usd),
            "max_active": max_active,
        },
    )
    return member


def member_visibility_set(*, user: AbstractBaseUser, visibility: str) -> Member:
    member = member_get(user)
    member.default_visibility = visibility
    member.save(update_fields=["default_visibility", "updated_at"])
    return member


def member_studio_defaults_set(*, user: AbstractBaseUser, values: dict[str, Any]) -> Member:
    """Store the form values the user's next fresh studio visit starts from ({} clears
    them). The caller (the studio) has validated them for their model."""
    member = member_get(user)
    member.studio_defaults = values
    member.save(update_fields=["studio_defaults", "updated_at"])
    return member


def studio_defaults_of(user: AbstractBaseUser) -> dict[str, Any]:
    member = member_of(user)
    return dict(member.studio_defaults) if member and member.studio_defaults else {}


def default_visibility_of(user: AbstractBaseUser) -> str:
    member = member_of(user)
    return (member and member.default_visibility) or settings.GENERATION_DEFAULT_VISIBILITY


def invitation_create(*, by: AbstractBaseUser, role: str = Role.MEMBER) -> Invitation:
    rules.require(rules.may_invite(by), "Only an admin may invite.")
    if role not in GROUP_NAMES:
        raise InvalidRequest(f"Unknown role {role!r}")
    invitation = Invitation.objects.create(
        token=secrets.token_urlsafe(24),
        role=role,
        created_by=by,
        expires_at=timezone.now() + timedelta(days=settings.INVITATION_DAYS),
    )
    audit_record(actor=by, action="member.invite", target=invitation, role=role)
    return invitation


def invitation_valid(token: str | None) -> Invitation | None:
    if not token:
        return None
    return Invitation.objects.filter(
        token=token, used_at__isnull=True, expires_at__gt=timezone.now()
    ).first()


def notification_send(*, user: AbstractBaseUser, text: str, link: str = "") -> Notification:
    return Notification.objects.create(user=user, text=text[:2000], link=link[:300])


def notifications_read(*, user: AbstractBaseUser) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).update(
        read_at=timezone.now()
    )
