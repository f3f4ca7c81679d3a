"""Checking and thumbnailing downloaded images with Pillow.

Everything here treats its input as hostile: only PNG, JPEG and WebP are opened,
the pixel count is capped before decoding, and bytes that carry more than the image
(a PNG followed by HTML, say) are re-encoded rather than stored as received.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
FORMAT_NAMES = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}
THUMBNAIL_SIZE = (512, 512)
# Encoder effort 1 of 6: about a third of the default's time for a 512 px thumbnail at
# the same size within a few percent (encoding was half the image worker's CPU).
THUMBNAIL_WEBP = {"quality": 80, "method": 1}

# Truncated files must fail, not decode as half an image.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class InvalidImage(Exception):
    pass


@dataclass
class CheckedImage:
    content: bytes
    format: str  # "png" | "jpeg" | "webp"
    extension: str
    width: int
    height: int
    sha256: str
    thumbnail: bytes


# Long on purpose: each check of untrusted bytes runs before the next may touch them.
def check_image(data: bytes, *, max_pixels: int) -> CheckedImage:
    """Verify, decode and thumbnail `data`; raise InvalidImage with a reason."""
    if not data:
        raise InvalidImage("the file is empty")
    thumb: Image.Image | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as probe:
                fmt = probe.format
                width, height = probe.size
                if width * height > max_pixels:
                    raise InvalidImage(f"{width}×{height} is more pixels than allowed")
                if getattr(probe, "n_frames", 1) > 1:
                    raise InvalidImage("animated images are not accepted")
                trailing = _has_trailing_data(data, fmt)
                if fmt == "JPEG" and not trailing:
                    # Kept as received, so only the thumbnail's pixels are needed: libjpeg
                    # decodes every block at 1/2-1/8 scale straight to about the thumbnail
                    # size (a truncated or corrupt stream still fails), several times
                    # cheaper than a full decode and resize. JPEG has no verify() step.
                    probe.draft(probe.mode, _fitted(probe.size, THUMBNAIL_SIZE))
                    probe.load()
                    thumb = probe.copy()
                else:
                    probe.verify()
            if thumb is None:
                # verify() leaves the image unusable; decoding needs a fresh open.
                with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
                    img.load()
                    thumb = img.copy()
    except InvalidImage:
        raise
    except Image.DecompressionBombError as exc:
        raise InvalidImage(f"too many pixels ({exc})") from None
    except Image.DecompressionBombWarning:
        raise InvalidImage("too many pixels") from None
    except Image.UnidentifiedImageError:
        raise InvalidImage("not a PNG, JPEG or WebP image") from None
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise InvalidImage(f"the image is damaged ({exc.__class__.__name__})") from None

    content = data
    if trailing:
        # Bytes after the image's end are how polyglots (PNG+HTML) smuggle content;
        # the pixels are kept, the rest is dropped by re-encoding losslessly.
        content = _reencode(thumb, fmt)

    thumb.thumbnail(THUMBNAIL_SIZE)
    if thumb.mode not in ("RGB", "RGBA"):
        thumb = thumb.convert("RGBA" if "A" in thumb.getbands() else "RGB")
    out = io.BytesIO()
    thumb.save(out, "WEBP", **THUMBNAIL_WEBP)
    return CheckedImage(
        content=content,
        format=FORMAT_NAMES[fmt],
        extension=EXTENSIONS[fmt],
        width=width,
        height=height,
        sha256=hashlib.sha256(content).hexdigest(),
        thumbnail=out.getvalue(),
    )


def _fitted(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """`size` scaled down to fit `box`, aspect kept: the size thumbnail() will make."""
    scale = min(box[0] / size[0], box[1] / size[1], 1.0)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _has_trailing_data(data: bytes, fmt: str) -> bool:
    if fmt == "PNG":
        end = data.rfind(b"IEND")
        return end == -1 or len(data) > end + 8
    if fmt == "JPEG":
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if fmt == "WEBP":
        declared = struct.unpack("<I", data[4:8])[0] + 8
        return len(data) > declared + (declared & 1)
    return True


def _reencode(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        img.save(out, "JPEG", quality=95)
    elif fmt == "WEBP":
        img.save(out, "WEBP", lossless=True)
    else:
        img.save(out, "PNG")
    return out.getvalue()


def prepare_reference(data: bytes, *, max_bytes: int, max_pixels: int) -> bytes:
    """An uploaded starting image, checked and re-encoded as a plain PNG.

    Re-encoding drops whatever else the file carried (metadata, trailing bytes) so
    only pixels ever reach the provider or our storage. Raises InvalidImage.
    """
    if len(data) > max_bytes:
        raise InvalidImage(f"the file is larger than {max_bytes // (1024 * 1024) or 1} MB")
    checked = check_image(data, max_pixels=max_pixels)
    with Image.open(io.BytesIO(checked.content)) as img:
        img.load()
        if img.mode not in ("RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
        out = io.BytesIO()
        img.save(out, "PNG", optimize=False, compress_level=6)
    return out.getvalue()
