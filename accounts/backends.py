"""Authentication that loads the user's Member row with the user, in one query, and
answers permission questions (the role groups' and the person's own) in one more."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.db.models import Q


class StudioBackend(ModelBackend):
    def get_user(self, user_id: Any) -> Any:
        User = get_user_model()
        try:
            user = User._default_manager.select_related("member").get(pk=user_id)
        except User.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        # ModelBackend asks twice (own permissions, then the groups'); pages ask on every
        # request, so this asks once and caches on the user object like Django does.
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            rows = (
                Permission.objects.filter(Q(user=user_obj) | Q(group__user=user_obj))
                .values_list("content_type__app_label", "codename")
                .order_by()
                .distinct()
            )
            user_obj._perm_cache = {f"{app}.{codename}" for app, codename in rows}
        return user_obj._perm_cache

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        if user_obj.is_active and user_obj.is_superuser and obj is None:
            return True
        return perm in self.get_all_permissions(user_obj, obj)


class SessionOnlyBackend(StudioBackend):
    """Restores existing sessions and answers permission questions, but never checks
    a password: sign-ins go through StudioBackend, so a failed one is hashed once."""

    def authenticate(self, request: Any, **credentials: Any) -> None:
        return None

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        # StudioBackend answers permission questions; asking twice would only repeat it.
        return False
