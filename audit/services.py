"""The append-only audit log: `audit_record` is the one function that writes it."""

from __future__ import annotations

from typing import Any

from audit.models import AuditEvent

# Every action the studio records, with how the audit page names it.
ACTIONS: dict[str, str] = {
    "moderation.approve": "Image approved",
    "moderation.hide": "Image hidden",
    "moderation.delete": "Image deleted",
    "moderation.report": "Image reported",
    "member.approve": "Member approved",
    "member.suspend": "Member suspended",
    "member.reinstate": "Member reinstated",
    "member.role": "Role changed",
    "member.limits": "Budget or limit changed",
    "member.invite": "Invitation created",
    "member.signup": "Account created",
    "token.create": "API token created",
    "token.revoke": "API token revoked",
    "model.enable": "Model enabled",
    "model.disable": "Model disabled",
    "policy.add": "Blocked term added",
    "policy.remove": "Blocked term removed",
    "policy.blocked": "Prompt refused by policy",
    "visibility.change": "Visibility changed",
    "generation.cancel": "Generation cancelled",
}


def audit_record(
    *,
    actor: Any,
    action: str,
    target: Any = None,
    target_label: str = "",
    reason: str = "",
    **detail: Any,
) -> AuditEvent:
    """Append one event: who (`actor`), what (`action`, `target`), when, and why."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    target_type = target_id = ""
    if target is not None:
        target_type = target._meta.model_name
        target_id = str(getattr(target, "uuid", None) or target.pk)
        target_label = target_label or str(target)[:200]
    event = AuditEvent(
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=actor.get_username() if getattr(actor, "pk", None) else "",
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label[:200],
        reason=reason,
        detail=detail,
    )
    event.save()
    return event
