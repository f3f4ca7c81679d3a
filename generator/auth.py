"""The authentication backend's old dotted path, kept so that sessions signed in
before the upgrade stay signed in: Django stores the backend's path in each session
and restores only sessions whose backend it can still import."""

from __future__ import annotations

from accounts.backends import SessionOnlyBackend as StudioBackend

__all__ = ["StudioBackend"]
