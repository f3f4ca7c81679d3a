"""Signed image URLs: what the API answers with, so a script's plain `requests.get(url)`
opens the image without a token.

A link names one stored file and is signed for the API token (or, for a signed-in
session reading /v1, the user) it was made for, with how open the image was at that
moment. It expires after API_IMAGE_URL_TTL seconds, and on every GET the media view
checks it again: the token still works, its owner may still see the image, and the image
is no less open than when the link was made (made private, held after a report, hidden
by a moderator or deleted: the link stops opening).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing

from generator.models import Generation, Image

MEDIA_LINK_SALT = "generator.media-link"
# The query parameter of a signed media URL.
MEDIA_LINK_PARAM = "sig"


class MediaLinkExpired(Exception):
    """The link was valid but is older than API_IMAGE_URL_TTL."""


@dataclass(frozen=True)
class MediaGrant:
    """Whom a valid link opens the file for, and how open the image was when signed."""

    user_id: int
    token_id: int | None
    shared: bool
    visible: bool

    def still_holds(self, image: Image, generation: Generation) -> bool:
        if image.review == Image.Review.HIDDEN:
            return False
        if self.shared and generation.visibility != Generation.Visibility.SHARED:
            return False
        return not (self.visible and image.review != Image.Review.VISIBLE)


def _signer(name: str) -> signing.TimestampSigner:
    # The file name is in the salt, so a link opens only the file it was made for.
    return signing.TimestampSigner(salt=f"{MEDIA_LINK_SALT}:{name}")


def media_link_sign(
    *, name: str, image: Image, generation: Generation, user_id: int, token_id: int | None
) -> str:
    """The `sig` value for the stored file `name` (an image's file or thumbnail)."""
    shared = generation.visibility == Generation.Visibility.SHARED
    visible = image.review == Image.Review.VISIBLE
    value = f"{user_id}.{token_id or 0}.{int(shared)}{int(visible)}"
    return _signer(name).sign(value)


def media_link_check(name: str, sig: str) -> MediaGrant | None:
    """The grant of a link for `name`, or None if it is not one the studio made.

    Raises MediaLinkExpired for a genuine link past API_IMAGE_URL_TTL.
    """
    try:
        value = _signer(name).unsign(sig, max_age=settings.API_IMAGE_URL_TTL)
    except signing.SignatureExpired:
        raise MediaLinkExpired(name) from None
    except signing.BadSignature:
        return None
    user_id, token_id, flags = value.split(".")
    return MediaGrant(
        user_id=int(user_id),
        token_id=int(token_id) or None,
        shared=flags[0] == "1",
        visible=flags[1] == "1",
    )
