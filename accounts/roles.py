"""The studio's roles, stored the Django way: a role is a group holding capability
permissions (declared on Member), so the admin site shows and edits them and
`user.has_perm` answers for them (accounts.rules asks).

A person has one role group. Admins are also Django superusers and staff: the flag
follows the Admins group — set and cleared only with it (accounts.signals) — so the
admin site is theirs alone. A capability can also be given to one person through
their own permissions in the admin site.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType

from accounts.models import Member

Role = Member.Role

# Highest first: someone put in two role groups by hand counts as the higher one.
GROUP_NAMES: dict[str, str] = {
    Role.ADMIN: "Admins",
    Role.MODERATOR: "Moderators",
    Role.MEMBER: "Members",
    Role.VIEWER: "Viewers",
}
ROLE_OF_GROUP = {name: role for role, name in GROUP_NAMES.items()}
# What each role's group holds when the studio creates it; admins may change a group
# in the admin site afterwards, and that change is what counts.
GROUP_PERMISSIONS: dict[str, tuple[str, ...]] = {
    Role.ADMIN: tuple(codename for codename, _ in Member._meta.permissions),
    Role.MODERATOR: ("generate", "moderate"),
    Role.MEMBER: ("generate",),
    Role.VIEWER: (),
}


def role_of(user: Any) -> str:
    """The user's role: their highest role group ("" when they have none)."""
    if not getattr(user, "is_authenticated", False):
        return ""
    return _highest(_group_names(user))


def role_from_groups(groups: Any) -> str:
    """The role given by these (prefetched) groups, for lists of people."""
    return _highest({group.name for group in groups})


def _highest(names: set[str]) -> str:
    for role, name in GROUP_NAMES.items():
        if name in names:
            return role
    return ""


def _group_names(user: Any) -> set[str]:
    # Cached on the user object like Django's permission cache: one query per request.
    cached = getattr(user, "_studio_group_names", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        user._studio_group_names = cached
    return cached


def forget_cached_roles(user: Any) -> None:
    """Drop what this user object remembers of its groups and permissions."""
    for attr in ("_studio_group_names", "_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(attr, None)


def roles_ensure() -> dict[str, Group]:
    """The role groups by role, created with their default permissions if missing."""
    content_type = ContentType.objects.get_for_model(Member)
    permissions = {p.codename: p for p in Permission.objects.filter(content_type=content_type)}
    for codename, name in Member._meta.permissions:
        if codename not in permissions:
            permissions[codename], _ = Permission.objects.get_or_create(
                codename=codename, content_type=content_type, defaults={"name": name}
            )
    groups = {}
    for role, name in GROUP_NAMES.items():
        group, created = Group.objects.get_or_create(name=name)
        if created:
            group.permissions.set([permissions[c] for c in GROUP_PERMISSIONS[role]])
        groups[role] = group
    return groups


def role_groups_set(user: Any, role: str) -> None:
    """Put `user` in exactly the group of `role`; the superuser flag follows (signals)."""
    groups = roles_ensure()
    others = [g for r, g in groups.items() if r != role]
    user.groups.remove(*others)
    user.groups.add(groups[role])
    forget_cached_roles(user)
