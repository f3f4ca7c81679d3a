"""Services for the team: sign-up, approval, roles, suspension, limits, invitations,
notifications and the prompt policy. Each change that matters is in the audit log."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from generator.audit import audit_record
from generator.models import BlockedTerm, Invitation, Member, Notification
from generator.roles import GROUP_NAMES, Role, roles_ensure


class MemberError(Exception):
    """A change that is not allowed (e.g. demoting the last admin)."""


def member_get(user: AbstractBaseUser) -> Member:
    member, _ = Member.objects.get_or_create(user=user)
    return member


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
            raise MemberError("This invitation has been used or has expired.")
    elif settings.SIGNUP_MODE == "open":
        role, status = Role.MEMBER, Member.Status.ACTIVE
    else:
        role, status = Role.MEMBER, Member.Status.PENDING
    Member.objects.create(user=user, role=role, status=status)
    _apply_role(user, role)
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
    return list(User.objects.filter(Q(is_superuser=True) | Q(member__role=Role.ADMIN)).distinct())


def _apply_role(user: AbstractBaseUser, role: str) -> None:
    groups = roles_ensure()
    user.groups.remove(*Group.objects.filter(name__in=GROUP_NAMES.values()))
    user.groups.add(groups[role])
    is_admin = role == Role.ADMIN
    if user.is_superuser != is_admin or user.is_staff != is_admin:
        user.is_superuser = user.is_staff = is_admin
        user.save(update_fields=["is_superuser", "is_staff"])


@transaction.atomic
def role_set(*, user: AbstractBaseUser, role: str, by: AbstractBaseUser) -> Member:
    if role not in GROUP_NAMES:
        raise MemberError(f"Unknown role {role!r}")
    member = member_get(user)
    old = Role.ADMIN if user.is_superuser else member.role
    if old == Role.ADMIN and role != Role.ADMIN and len(_admins()) <= 1:
        raise MemberError("The studio needs at least one admin.")
    member.role = role
    member.save(update_fields=["role", "updated_at"])
    _apply_role(user, role)
    audit_record(actor=by, action="member.role", target=user, old=old, new=role)
    return member


@transaction.atomic
def member_approve(*, user: AbstractBaseUser, by: AbstractBaseUser) -> Member:
    member = member_get(user)
    member.status, member.status_reason = Member.Status.ACTIVE, ""
    member.save(update_fields=["status", "status_reason", "updated_at"])
    audit_record(actor=by, action="member.approve", target=user)
    notification_send(user=user, text="Your account was approved: welcome to the studio.")
    return member


@transaction.atomic
def member_suspend(*, user: AbstractBaseUser, by: AbstractBaseUser, reason: str) -> Member:
    """Suspend `user`: they can no longer browse, generate or use their API tokens."""
    if user.pk == by.pk:
        raise MemberError("You cannot suspend yourself.")
    if user.is_superuser or member_get(user).role == Role.ADMIN:
        raise MemberError("Admins cannot be suspended; change their role first.")
    member = member_get(user)
    member.status, member.status_reason = Member.Status.SUSPENDED, reason[:500]
    member.save(update_fields=["status", "status_reason", "updated_at"])
    audit_record(actor=by, action="member.suspend", target=user, reason=reason)
    return member


@transaction.atomic
def member_reinstate(*, user: AbstractBaseUser, by: AbstractBaseUser) -> Member:
    member = member_get(user)
    member.status, member.status_reason = Member.Status.ACTIVE, ""
    member.save(update_fields=["status", "status_reason", "updated_at"])
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


def default_visibility_of(user: AbstractBaseUser) -> str:
    from generator.roles import member_of

    member = member_of(user)
    return (member and member.default_visibility) or settings.GENERATION_DEFAULT_VISIBILITY


def invitation_create(*, by: AbstractBaseUser, role: str = Role.MEMBER) -> Invitation:
    if role not in GROUP_NAMES:
        raise MemberError(f"Unknown role {role!r}")
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


# --- Prompt policy ------------------------------------------------------------------------


def blocked_term_add(*, pattern: str, is_regex: bool, by: AbstractBaseUser) -> BlockedTerm:
    pattern = pattern.strip()
    if not pattern:
        raise MemberError("Give a word or pattern.")
    if is_regex:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise MemberError(f"Not a valid regular expression: {exc}") from None
    term, _ = BlockedTerm.objects.update_or_create(
        pattern=pattern, defaults={"is_regex": is_regex, "created_by": by}
    )
    audit_record(actor=by, action="policy.add", target=term, is_regex=is_regex)
    return term


def blocked_term_remove(*, term: BlockedTerm, by: AbstractBaseUser) -> None:
    audit_record(actor=by, action="policy.remove", target=term, pattern=term.pattern)
    term.delete()


def prompt_violation(prompt: str) -> str | None:
    """The blocked term `prompt` contains, or None. Words match whole and case-blind."""
    for term in BlockedTerm.objects.order_by("pk"):
        if term.is_regex:
            found = re.search(term.pattern, prompt, re.IGNORECASE)
        else:
            found = re.search(rf"(?<!\w){re.escape(term.pattern)}(?!\w)", prompt, re.IGNORECASE)
        if found:
            return term.pattern
    return None


def prompt_blocked_record(*, user: AbstractBaseUser, prompt: str, term: str, via: str) -> None:
    audit_record(
        actor=user,
        action="policy.blocked",
        reason=f"matched {term!r}",
        prompt=prompt[:500],
        via=via,
    )
