from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One entry of the append-only audit log (audit.services.audit_record).

    Rows are never updated or deleted by the studio: save() refuses an update and the
    admin site shows them read-only.
    """

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_events",
    )
    # The actor's name at the time, kept even if the account is deleted.
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The table keeps the name it had when the generator app held the audit log.
        db_table = "generator_auditevent"
        ordering = ("-created_at", "-id")
        indexes = [
            # The audit page: newest first, filtered by action or actor.
            models.Index(fields=["-created_at", "-id"], name="auditevent_recent"),
            models.Index(fields=["action", "-created_at"], name="auditevent_action"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name} {self.action}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("The audit log is append-only")
        super().save(*args, **kwargs)
