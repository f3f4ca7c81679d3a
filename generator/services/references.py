"""The starting image of an image-to-image request: how it is sent to the provider (a
data: URI, or a signed URL on the studio that expires)."""

from __future__ import annotations

import base64
import logging
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage

from generator.models import Generation, Image

logger = logging.getLogger(__name__)

Status = Generation.Status
Step = Generation.Step


def generation_request_body(generation: Generation) -> dict[str, Any]:
    """The JSON body for the provider: the saved parameters, plus the starting image of
    an image-to-image request, which is never stored in `params` (it may be megabytes).

    The image goes as a data: URI, or as a signed URL on STUDIO_PUBLIC_URL that expires
    after REFERENCE_URL_TTL seconds when the studio is reachable from the provider.
    """
    body = dict(generation.params)
    name = reference_file_name(generation)
    if name is None:
        return body
    if settings.STUDIO_PUBLIC_URL:
        from django.urls import reverse

        token = reference_token(generation)
        body["image_url"] = settings.STUDIO_PUBLIC_URL + reverse(
            "generator:reference", args=[token]
        )
        return body
    with default_storage.open(name, "rb") as fh:
        data = fh.read()
    mime = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}[name.rsplit(".", 1)[1]]
    body["image_url"] = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    return body


def reference_file_name(generation: Generation) -> str | None:
    """The stored file of the generation's starting image, if it has one."""
    if generation.source_file:
        return generation.source_file.name
    if generation.source_image_id:
        return Image.objects.only("file").get(pk=generation.source_image_id).file.name
    return None


REFERENCE_SALT = "generator.reference"


def reference_token(generation: Generation) -> str:
    return signing.TimestampSigner(salt=REFERENCE_SALT).sign(str(generation.uuid))


def reference_unsign(token: str) -> str | None:
    """The generation UUID of a reference token still within REFERENCE_URL_TTL, or None."""
    try:
        return signing.TimestampSigner(salt=REFERENCE_SALT).unsign(
            token, max_age=settings.REFERENCE_URL_TTL
        )
    except signing.BadSignature:
        return None
