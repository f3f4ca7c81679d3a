"""Reading the audit log."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from audit.models import AuditEvent


def audit_events(
    *,
    action: str = "",
    actor: str = "",
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    before_id: int | None = None,
) -> QuerySet[AuditEvent]:
    """Events matching the filters, newest first (a total order, for keyset pages)."""
    events = AuditEvent.objects.all()
    if action:
        events = (
            events.filter(action=action)
            if "." in action
            else events.filter(action__startswith=action + ".")
        )
    if actor:
        events = events.filter(actor_name=actor)
    if since:
        events = events.filter(created_at__gte=since)
    if until:
        events = events.filter(created_at__lt=until)
    if before_id:
        events = events.filter(id__lt=before_id)
    return events.order_by("-id")
