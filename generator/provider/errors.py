"""The provider call's failures, split by whether trying again later can help.

Every failure is either Transient (worth retrying later) or Permanent, which is all the
tasks need to pick a retry policy.
"""

from __future__ import annotations


class ProviderError(Exception):
    """A failed provider call. `status` is the HTTP status when the provider answered."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class TransientProviderError(ProviderError):
    """Worth retrying: timeouts, connection failures, 408, 429 and 5xx."""


class PermanentProviderError(ProviderError):
    """Retrying cannot help: bad request, bad key, no credits, or an answer we cannot use."""
