"""The SSRF-safe image fetch: the only code that downloads what a provider answer names.

It shares no session or headers with generator.provider, so the provider key can never
reach a CDN (reliability.md §6). Callers import from here (`fetch.fetch_image`,
`fetch.MirrorError`); the submodules are the URL and address checks (checks), the
download and base64 decoding (download) and the errors (errors).
"""

from __future__ import annotations

from generator.fetch.checks import check_mirror_url
from generator.fetch.download import decode_b64_image, decode_b64_image_to, fetch_image
from generator.fetch.errors import MirrorError, PermanentMirrorError, TransientMirrorError

__all__ = [
    "MirrorError",
    "PermanentMirrorError",
    "TransientMirrorError",
    "check_mirror_url",
    "decode_b64_image",
    "decode_b64_image_to",
    "fetch_image",
]
