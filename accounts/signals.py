"""Keep the role groups and the superuser flag in step, however they are changed.

- A new account gets its Member row and a role group: Admins for a superuser (so
  `createsuperuser` makes an admin), Members otherwise; sign-up then sets the role it
  decides.
- The superuser and staff flags follow the Admins group: whoever joins it (on the
  members page or in the admin site) becomes a superuser, whoever leaves it stops
  being one. A change made outside the members page is written to the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import m2m_changed, post_save
from django.dispatch import receiver

from accounts import roles
from accounts.models import Member
from audit.services import audit_record

User = get_user_model()

# Set while accounts.services changes a role itself (and audits it with its actor).
_changing_role: ContextVar[bool] = ContextVar("changing_role", default=False)


@contextmanager
def changing_role() -> Iterator[None]:
    """The group changes inside are the studio's own, audited where they are made."""
    token = _changing_role.set(True)
    try:
        yield
    finally:
        _changing_role.reset(token)


def superuser_follow_role(user: Any) -> bool:
    """Set the superuser and staff flags from the Admins group; True if they changed."""
    roles.forget_cached_roles(user)
    is_admin = roles.role_of(user) == roles.Role.ADMIN
    if user.is_superuser == is_admin and user.is_staff == is_admin:
        return False
    user.is_superuser = user.is_staff = is_admin
    user.save(update_fields=["is_superuser", "is_staff"])
    return True


@receiver(post_save, sender=User, dispatch_uid="accounts.new_account")
def _new_account(sender: Any, instance: Any, created: bool, raw: bool = False, **_: Any) -> None:
    if not created or raw:
        return
    Member.objects.get_or_create(user=instance)
    with changing_role():
        roles.role_groups_set(
            instance, roles.Role.ADMIN if instance.is_superuser else roles.Role.MEMBER
        )


@receiver(m2m_changed, sender=User.groups.through, dispatch_uid="accounts.groups_changed")
def _groups_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **_: Any
) -> None:
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if reverse:
        # Changed from the group's side (the admin site's group page): `pk_set` are users.
        users = list(User.objects.filter(pk__in=pk_set or ()))
    else:
        users = [instance]
    for user in users:
        flag_changed = superuser_follow_role(user)
        if not _changing_role.get():
            audit_record(
                actor=None,
                action="member.role",
                target=user,
                new=roles.role_of(user),
                via="admin site",
                **({"superuser": user.is_superuser} if flag_changed else {}),
            )
