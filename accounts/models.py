"""The team: who is a member and in what standing, their invitations, notifications
and API tokens.

Roles are not stored here: they are Django groups holding the capability permissions
declared on Member (accounts.roles); accounts.rules answers every "may they?" question.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Visibility(models.TextChoices):
    """Who besides the owner (and moderators) sees a generation. Declared here, below
    the generator, because a member's default visibility is one of them."""

    PRIVATE = "private", "Private"
    SHARED = "shared", "Shared with the team"


class ApiToken(models.Model):
    """A personal token for the studio's API; only the sha256 of the token is stored.

    Created and checked in accounts.tokens; the gateway relies on `token_hash`
    being unique to find the user behind an `Authorization: Bearer` header.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # The token's first characters, so a user can tell tokens apart in the list.
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "generator_apitoken"
        ordering = ("-created_at", "-id")
        indexes = [
            # The tokens page and the per-user cap: one user's tokens, newest first.
            models.Index(fields=["user", "-created_at", "-id"], name="apitoken_user_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Member(models.Model):
    """A user's standing in the studio, beside Django's User.

    Roles are not here: they are groups with permissions (accounts.roles). This holds
    whether the account is approved or suspended, the user's default visibility
    and their limits.
    A user without a row is treated as active with the studio's defaults (accounts
    made before this model, or by createsuperuser).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for approval"
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        MODERATOR = "moderator", "Moderator"
        MEMBER = "member", "Member"
        VIEWER = "viewer", "Viewer"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="member"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.CharField(max_length=500, blank=True)
    default_visibility = models.CharField(max_length=8, choices=Visibility.choices, blank=True)
    # Null: the studio-wide default from settings.
    monthly_budget_usd = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    max_active = models.PositiveSmallIntegerField(null=True, blank=True)
    # The studio form's "Save as my defaults": a model id and that model's settings, as
    # form values (generator.views builds and reads them); empty means the registry's.
    studio_defaults = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # The table keeps the name it had when the generator app held the team.
        db_table = "generator_member"
        # The capabilities a role group holds (accounts.roles); accounts.rules reads them.
        permissions = [
            ("generate", "Can generate images"),
            ("moderate", "Can review, hide and restore any image and suspend users"),
            ("manage_members", "Can approve, invite and change members"),
            ("set_budgets", "Can set budgets and limits"),
            ("enable_models", "Can enable and disable models"),
            ("edit_policy", "Can edit the prompt policy"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.status}"


class Invitation(models.Model):
    """A sign-up link an admin hands out; used once, before it expires."""

    token = models.CharField(max_length=64, unique=True)
    role = models.CharField(max_length=20)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "generator_invitation"

    def __str__(self) -> str:
        return f"invitation {self.token[:6]}… ({self.role})"


class Notification(models.Model):
    """A message for one user (a moderation outcome, say), shown until read."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    text = models.TextField()
    link = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "generator_notification"
        ordering = ("-created_at", "-id")
        indexes = [
            # The unread count in the header: one user's unread notifications.
            models.Index(
                fields=["user"], name="notification_unread", condition=models.Q(read_at=None)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.text[:40]}"
