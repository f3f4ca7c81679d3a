"""The prompt policy: blocked words and regular expressions, and the record of refusals."""

from __future__ import annotations

import logging
import re

from django.contrib.auth.models import AbstractBaseUser

from accounts import rules
from accounts.errors import InvalidRequest
from audit.services import audit_record
from generator.models import BlockedTerm

logger = logging.getLogger(__name__)


def blocked_term_add(*, pattern: str, is_regex: bool, by: AbstractBaseUser) -> BlockedTerm:
    rules.require(rules.may_edit_policy(by), "Only an admin may edit the prompt policy.")
    pattern = pattern.strip()
    if not pattern:
        raise InvalidRequest("Give a word or pattern.")
    if is_regex:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidRequest(f"Not a valid regular expression: {exc}") from None
    term, _ = BlockedTerm.objects.update_or_create(
        pattern=pattern, defaults={"is_regex": is_regex, "created_by": by}
    )
    audit_record(actor=by, action="policy.add", target=term, is_regex=is_regex)
    return term


def blocked_term_remove(*, term: BlockedTerm, by: AbstractBaseUser) -> None:
    rules.require(rules.may_edit_policy(by), "Only an admin may edit the prompt policy.")
    audit_record(actor=by, action="policy.remove", target=term, pattern=term.pattern)
    term.delete()


def prompt_violation(prompt: str) -> str | None:
    """The blocked term `prompt` contains, or None. Words match whole and case-blind."""
    for term in BlockedTerm.objects.order_by("pk"):
        if term.is_regex:
            try:
                found = re.search(term.pattern, prompt, re.IGNORECASE)
            except re.error:
                # Written before patterns were checked: it can match nothing, and must
                # not turn every submission into an error.
                logger.warning("blocked term %s is not a valid pattern; ignored", term.pk)
                continue
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
