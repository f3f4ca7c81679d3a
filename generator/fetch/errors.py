"""A provider image that could not be fetched, split like the provider's own errors."""

from __future__ import annotations


class MirrorError(Exception):
    """A provider image that could not be downloaded."""


class TransientMirrorError(MirrorError):
    """Worth retrying: the CDN is down, slow or rate limiting."""


class PermanentMirrorError(MirrorError):
    """Retrying cannot help: a blocked URL, an expired URL, or content that is not an image."""
