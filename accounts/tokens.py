"""Personal API tokens: create, list, revoke, and authenticate a bearer token.

A token is `sk-studio-` plus 32 random bytes (url-safe base64). The database keeps
only its sha256 and its first characters, so a leaked database reveals no usable
token. generator.api calls `bearer_token` and `api_token_authenticate` on every
API request (through `sync_to_async` in the async views).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts import rules
from accounts.errors import InvalidRequest, LimitReached
from accounts.models import ApiToken
from accounts.rules import is_active
from audit.services import audit_record

TOKEN_PREFIX = "sk-studio-"
# What the list shows: the fixed prefix and 4 random characters (24 of 256 bits).
SHOWN_PREFIX_LENGTH = len(TOKEN_PREFIX) + 4
MAX_ACTIVE_TOKENS = 25
NAME_MAX_LENGTH = 100
# A token is 53 characters; anything much longer is not ours and is not hashed.
RAW_MAX_LENGTH = 256
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def api_token_create(*, user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    """Create a token named `name` for `user`; returns it with the raw token.

    The raw token exists only in the return value: callers show it once and must
    not log it or keep it. Raises InvalidRequest for a blank or too long name, or LimitReached when
    the user already has MAX_ACTIVE_TOKENS active tokens.
    """
    name = (name or "").strip()
    if not name:
        raise InvalidRequest("Give the token a name.")
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidRequest(f"The name can have at most {NAME_MAX_LENGTH} characters.")
    # Locking the user row serialises concurrent creates, so the cap holds.
    get_user_model().objects.select_for_update().filter(pk=user.pk).exists()
    active = ApiToken.objects.filter(user=user, revoked_at__isnull=True).count()
    if active >= MAX_ACTIVE_TOKENS:
        raise LimitReached(f"You have {MAX_ACTIVE_TOKENS} active tokens; revoke one first.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user=user, name=name, prefix=raw[:SHOWN_PREFIX_LENGTH], token_hash=token_hash(raw)
    )
    token.save()
    audit_record(actor=user, action="token.create", target=token, target_label=name)
    return token, raw


def api_token_revoke(*, token: ApiToken, user: AbstractBaseUser) -> None:
    """Revoke `token` on behalf of `user` (its owner or an admin); idempotent.

    Raises Refused for anyone else; views scope their lookup to the owner first, so a
    stranger sees a 404 before reaching this.
    """
    rules.require(rules.may_revoke_token(user, token), "Only the token's owner can revoke it.")
    if token.revoked_at is not None:
        return
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_record(actor=user, action="token.revoke", target=token, target_label=token.name)


def api_token_authenticate(raw: str) -> AbstractBaseUser | None:
    """The active user behind the raw token, or None (unknown, revoked, inactive user).

    Records `last_used_at` at most once per LAST_USED_RESOLUTION with one
    conditional UPDATE, so busy clients cost no extra write per request and
    concurrent requests never race. Synchronous ORM: call it through
    `sync_to_async` from async code.
    """
    token = api_token_find(raw)
    return token.user if token is not None else None


def api_token_find(raw: str) -> ApiToken | None:
    """The active token (with its user) for a raw token, as api_token_authenticate
    checks it; the API keeps the token itself to scope idempotency and sign image URLs."""
    if not raw or not raw.startswith(TOKEN_PREFIX) or len(raw) > RAW_MAX_LENGTH:
        return None
    # The lookup is by the hash, never by the token, so timing says nothing about
    # how much of a guessed token was right.
    token = (
        ApiToken.objects.select_related("user__member")
        .filter(token_hash=token_hash(raw), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active or not is_active(token.user):
        # Pending and suspended accounts' tokens stop working with the account.
        return None
    now = timezone.now()
    ApiToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
    return token


def api_token_owner(token_id: int) -> AbstractBaseUser | None:
    """The active user of the token with this id while it is not revoked, or None: what
    a signed image URL made for that token still opens for."""
    token = (
        ApiToken.objects.select_related("user__member")
        .filter(pk=token_id, revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active or not is_active(token.user):
        return None
    return token.user


def api_token_list(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """The user's tokens, active and revoked, newest first."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")


def bearer_token(header_value: str | None) -> str | None:
    """The token in an `Authorization: Bearer <token>` value; None for anything else."""
    if not header_value:
        return None
    parts = header_value.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]
