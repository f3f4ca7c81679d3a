"""The one place that answers "may this person do X (to this object)?".

Capabilities are permissions held by the person's role group or given to them alone
(accounts.roles), read with `user.has_perm`, and count only while the account is
active. Object rules read only what the object carries — its owner's id, its
visibility, its review state, a person's role and status — so this module imports no
model of the apps above it; `generator.selectors` holds the queryset form of "who may
see", and tests/accounts/test_rules.py proves the two agree.

Services call these and raise `accounts.errors.Refused` through `require`; views only
turn that error into a 403 (or a 404 where existence must not leak).
"""

from __future__ import annotations

from typing import Any

from accounts.errors import Refused
from accounts.models import Member

Role = Member.Role
Status = Member.Status

# The values of generator.models.Generation.Visibility and Image.Review that the rules
# read (the test above checks they match the models').
SHARED = "shared"
VISIBLE = "visible"
HELD = "held"

CAPABILITIES: dict[str, str] = {codename: label for codename, label in Member._meta.permissions}


def require(allowed: bool, message: str) -> None:
    """Raise Refused with `message` unless `allowed`."""
    if not allowed:
        raise Refused(message)


# --- Who the person is ------------------------------------------------------------------


def status_of(user: Any) -> str:
    """The account's standing; accounts without a Member row count as active."""
    if not getattr(user, "is_authenticated", False):
        return ""
    try:
        return user.member.status
    except Member.DoesNotExist:
        return Status.ACTIVE


def is_active(user: Any) -> bool:
    """Signed in, not deactivated, neither pending nor suspended."""
    return (
        getattr(user, "is_authenticated", False)
        and user.is_active
        and status_of(user) == Status.ACTIVE
    )


def has_capability(user: Any, codename: str) -> bool:
    if codename not in CAPABILITIES:
        raise ValueError(f"unknown capability {codename!r}")
    return is_active(user) and user.has_perm(f"accounts.{codename}")


# --- Capabilities -------------------------------------------------------------------------


def may_generate(user: Any) -> bool:
    return has_capability(user, "generate")


def may_moderate(user: Any) -> bool:
    return has_capability(user, "moderate")


def may_manage_members(user: Any) -> bool:
    """Approve sign-ups, change roles, invite, suspend moderators."""
    return has_capability(user, "manage_members")


def may_set_budgets(user: Any) -> bool:
    return has_capability(user, "set_budgets")


def may_enable_models(user: Any) -> bool:
    return has_capability(user, "enable_models")


def may_edit_policy(user: Any) -> bool:
    return has_capability(user, "edit_policy")


def may_view_members(user: Any) -> bool:
    """The members page: admins, and moderators (who suspend)."""
    return may_moderate(user) or may_manage_members(user)


def may_view_audit(user: Any) -> bool:
    return may_moderate(user) or may_manage_members(user)


def may_view_team_spending(user: Any) -> bool:
    return may_set_budgets(user)


# --- Objects: generations and images ------------------------------------------------------


def may_see_generation(user: Any, generation: Any) -> bool:
    """Its owner, moderators, and every active person once it is shared, unless a
    moderator held or hid every one of its images (its prompt goes with them)."""
    if not is_active(user):
        return False
    if generation.owner_id == user.pk or may_moderate(user):
        return True
    if generation.visibility != SHARED:
        return False
    reviews = [image.review for image in generation.images.all()]
    return not reviews or VISIBLE in reviews


def may_see_source(user: Any, generation: Any) -> bool:
    """Whether the page of an image-to-image generation may show (and link) the image
    it started from: only when `user` may see that image itself."""
    source = generation.source_image
    return source is not None and may_see_image(user, source, source.generation)


def may_see_image(user: Any, image: Any, generation: Any) -> bool:
    """As for its generation, except that an image held for review or hidden is seen
    only by its owner and moderators."""
    if not is_active(user):
        return False
    if generation.owner_id == user.pk or may_moderate(user):
        return True
    return generation.visibility == SHARED and image.review == VISIBLE


def may_change_visibility(user: Any, generation: Any) -> bool:
    return is_active(user) and (generation.owner_id == user.pk or may_moderate(user))


def may_retry(user: Any, generation: Any) -> bool:
    """Only its owner, while they may still generate."""
    return may_generate(user) and generation.owner_id == user.pk


def may_cancel(user: Any, generation: Any) -> bool:
    """Its owner (whatever their role: cancelling only stops spending), or an admin."""
    return is_active(user) and (generation.owner_id == user.pk or may_manage_members(user))


def may_rerun(user: Any, generation: Any) -> bool:
    """Regenerate or make variations: a new submission of one's own settings."""
    return may_generate(user) and generation.owner_id == user.pk


def may_report(user: Any, image: Any, generation: Any) -> bool:
    """Anyone who sees an image may report it, except its owner; an image already held
    for review still takes reports from those who saw it (they add to the case)."""
    if generation.owner_id == user.pk or not is_active(user):
        return False
    if image.review == HELD:
        return generation.visibility == SHARED or may_moderate(user)
    return may_see_image(user, image, generation)


def may_delete_image(user: Any, generation: Any) -> bool:
    """Deleting any image is a moderation decision; an owner deletes their own."""
    return is_active(user) and (generation.owner_id == user.pk or may_moderate(user))


def may_delete_own_image(user: Any, generation: Any) -> bool:
    """The gallery's bulk delete: one's own work only, moderators included (removing
    someone else's is a moderation decision, made on the moderation page)."""
    return is_active(user) and generation.owner_id == user.pk


# --- Objects: people ----------------------------------------------------------------------


def suspend_refusal(actor: Any, target: Any, target_role: str) -> str | None:
    """Why `actor` may not suspend `target` (whose role is `target_role`), or None."""
    if not (may_moderate(actor) or may_manage_members(actor)):
        return "Your role does not allow suspending members."
    if target.pk == actor.pk:
        return "You cannot suspend yourself."
    if target_role == Role.ADMIN or target.is_superuser:
        return "Admins cannot be suspended; change their role first."
    if target_role == Role.MODERATOR and not may_manage_members(actor):
        return "Only an admin may suspend a moderator."
    if status_of(target) == Status.PENDING:
        return "This sign-up is waiting for approval; an admin approves or leaves it."
    return None


def reinstate_refusal(actor: Any, target: Any, target_role: str) -> str | None:
    """Why `actor` may not lift `target`'s suspension, or None. Only a suspension can be
    lifted (a pending sign-up is approved, by an admin), and a moderator may lift only
    what a moderator could have imposed."""
    if not (may_moderate(actor) or may_manage_members(actor)):
        return "Your role does not allow reinstating members."
    if status_of(target) != Status.SUSPENDED:
        return "Only a suspended account can be reinstated."
    if target_role in (Role.ADMIN, Role.MODERATOR) and not may_manage_members(actor):
        return "Only an admin may reinstate a moderator."
    return None


def may_approve(actor: Any, target: Any) -> bool:
    """Approve a pending sign-up."""
    return may_manage_members(actor) and status_of(target) == Status.PENDING


def may_change_role(actor: Any, target: Any) -> bool:
    return may_manage_members(actor)


def may_set_limits(actor: Any, target: Any) -> bool:
    return may_set_budgets(actor)


def may_invite(actor: Any) -> bool:
    return may_manage_members(actor)


def may_revoke_token(user: Any, token: Any) -> bool:
    """Its owner (whatever their standing: revoking only takes access away), or an admin."""
    return token.user_id == user.pk or may_manage_members(user)
