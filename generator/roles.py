"""The studio's roles and what each may do.

Roles are Django groups holding the generator permissions (so the admin site shows
and edits them), mirrored in Member.role so a check costs no query: the auth backend
(generator.auth) loads the Member row with the user. Every capability check in the
studio goes through the functions here.
"""

from __future__ import annotations

from typing import Any

from generator.models import Member

Role = Member.Role

GROUP_NAMES: dict[str, str] = {
    Role.ADMIN: "Admins",
    Role.MODERATOR: "Moderators",
    Role.MEMBER: "Members",
    Role.VIEWER: "Viewers",
}
GROUP_PERMISSIONS: dict[str, tuple[str, ...]] = {
    Role.ADMIN: ("generate", "moderate", "manage_members"),
    Role.MODERATOR: ("generate", "moderate"),
    Role.MEMBER: ("generate",),
    Role.VIEWER: (),
}


def member_of(user: Any) -> Member | None:
    if not getattr(user, "is_authenticated", False):
        return None
    try:
        return user.member
    except Member.DoesNotExist:
        return None


def role_of(user: Any) -> str:
    """The user's role; accounts without a Member row (made with createsuperuser or the
    shell) are members, superusers always admins."""
    if not getattr(user, "is_authenticated", False):
        return ""
    if user.is_superuser:
        return Role.ADMIN
    member = member_of(user)
    return member.role if member else Role.MEMBER


def status_of(user: Any) -> str:
    member = member_of(user)
    return member.status if member else Member.Status.ACTIVE


def is_active_member(user: Any) -> bool:
    return getattr(user, "is_authenticated", False) and status_of(user) == Member.Status.ACTIVE


def can_generate(user: Any) -> bool:
    return is_active_member(user) and role_of(user) != Role.VIEWER


def can_moderate(user: Any) -> bool:
    return is_active_member(user) and role_of(user) in (Role.ADMIN, Role.MODERATOR)


def can_manage_members(user: Any) -> bool:
    return is_active_member(user) and role_of(user) == Role.ADMIN


def roles_ensure() -> dict[str, Any]:
    """Create the role groups with their permissions if missing; returns them by role."""
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType

    from generator.models import Generation

    content_type = ContentType.objects.get_for_model(Generation)
    permissions = {p.codename: p for p in Permission.objects.filter(content_type=content_type)}
    for codename, name in Generation._meta.permissions:
        if codename not in permissions:
            permissions[codename] = Permission.objects.create(
                codename=codename, name=name, content_type=content_type
            )
    groups = {}
    for role, name in GROUP_NAMES.items():
        group, created = Group.objects.get_or_create(name=name)
        if created:
            group.permissions.set([permissions[c] for c in GROUP_PERMISSIONS[role]])
        groups[role] = group
    return groups
