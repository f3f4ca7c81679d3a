"""The studio's domain errors: what a service raises when it will not do something.

Services raise these; each surface maps them in one place — pages in
`accounts.middleware.domain_errors`, the API in `api.views.error_response` — so no view
decides a status code from a message.
"""

from __future__ import annotations


class StudioError(Exception):
    """A request the studio does not carry out; `message` is meant for the person."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Refused(StudioError):
    """A rule of accounts.rules says no: this person may not do this (to this object)."""

    status = 403


class InvalidRequest(StudioError):
    """The request itself is wrong (an unknown role, a bad pattern, a missing reason)."""

    status = 400


class Conflict(StudioError):
    """The object is past the point where this can be done (cancelling a finished job)."""

    status = 409


class LimitReached(StudioError):
    """Too many generations in progress or this hour; `retry_after` seconds is a hint."""

    status = 429

    def __init__(self, message: str, *, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BudgetExhausted(StudioError):
    """The estimated cost would exceed a monthly budget (the person's or the studio's)."""

    status = 429

    def __init__(self, message: str, *, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after
