"""The mailer of a studio with no email server configured."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.core.mail.backends.base import BaseEmailBackend

logger = logging.getLogger(__name__)


class NoEmailBackend(BaseEmailBackend):
    """Sends nothing, and says so in the log. Without it Django would try SMTP on
    localhost; the studio's pages that would send (the password reset) tell the person
    to ask an admin instead, so this only catches what slips through."""

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        for message in email_messages:
            logger.warning("no email server is configured; not sent: %r", message.subject)
        return 0
