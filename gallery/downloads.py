"""Downloads that carry their generation parameters, built at download time.

The stored files are never touched: the parameters are spliced into a copy of the
bytes as a PNG text chunk or a JPEG EXIF UserComment, the places AUTOMATIC1111 and the
tools that read its output (image browsers, prompt readers) look. Splicing avoids a
re-encode, so the pixels are exactly the stored ones. WebP files are sent as stored.
"""

from __future__ import annotations

import io
import json
import re
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from typing import IO

from PIL import Image as PILImage

from generator.models import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# piexif's (and so AUTOMATIC1111's) marker for a UTF-16 big-endian UserComment.
USER_COMMENT_UNICODE = b"UNICODE\x00"
EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
# Parameters already written as their own A1111 fields, or meaningless per image.
SKIPPED_PARAMS = {
    "prompt",
    "negative_prompt",
    "model",
    "image_size",
    "seed",
    "num_inference_steps",
    "guidance_scale",
    "num_images",
    "n",
}
A1111_NAMES = {"num_inference_steps": "Steps", "guidance_scale": "CFG scale"}


def parameters_text(image: Image) -> str:
    """The generation's settings in AUTOMATIC1111's `parameters` format: the prompt,
    an optional "Negative prompt:" line, then "Key: value" pairs separated by commas."""
    generation = image.generation
    params = generation.params or {}
    lines = [_one_line(generation.prompt)]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {_one_line(str(params['negative_prompt']))}")
    fields: list[tuple[str, object]] = []
    for name, label in A1111_NAMES.items():
        if params.get(name) is not None:
            fields.append((label, params[name]))
    # The image's own seed: each image of a batch was drawn with its own.
    seed = image.seed or generation.seed
    if seed:
        fields.append(("Seed", seed))
    fields.append(("Size", f"{image.width}x{image.height}"))
    fields.append(("Model", generation.model))
    for name, value in params.items():
        if name not in SKIPPED_PARAMS and value is not None and not isinstance(value, dict):
            fields.append((name, value))
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in fields))
    return "\n".join(lines)


def _one_line(text: str) -> str:
    # Readers split the block into lines and take one starting "Negative prompt:" (or a
    # last "Key: value, ..." line) as settings, so a prompt must not bring lines of its own.
    return " ".join(text.splitlines())


def _quote(value: object) -> str:
    # A1111 quotes values that would break its "k: v, k: v" parsing.
    if isinstance(value, bool):
        value = str(value).lower()
    text = str(value)
    return json.dumps(text) if re.search(r'[,:"\n]', text) else text


def with_parameters(data: bytes, fmt: str, parameters: str) -> bytes:
    """A copy of `data` (a stored image of format `fmt`) carrying `parameters`."""
    if fmt == "png" and data.startswith(PNG_SIGNATURE):
        return _png_with_text(data, "parameters", parameters)
    if fmt == "jpeg" and data.startswith(b"\xff\xd8"):
        return _jpeg_with_user_comment(data, parameters)
    return data


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_with_text(data: bytes, keyword: str, text: str) -> bytes:
    try:
        body = keyword.encode("latin-1") + b"\x00" + text.encode("latin-1")
        chunk = _png_chunk(b"tEXt", body)
    except UnicodeEncodeError:
        # iTXt, uncompressed, no language: how A1111 writes prompts beyond Latin-1.
        body = keyword.encode("latin-1") + b"\x00\x00\x00\x00\x00" + text.encode("utf-8")
        chunk = _png_chunk(b"iTXt", body)
    out = [PNG_SIGNATURE]
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        stale = kind in (b"tEXt", b"iTXt") and data[pos + 8 : end].startswith(
            keyword.encode() + b"\x00"
        )
        if not stale:
            out.append(data[pos:end])
        if kind == b"IHDR":
            out.append(chunk)
        pos = end
    return b"".join(out)


def _jpeg_with_user_comment(data: bytes, text: str) -> bytes:
    # Keep whatever EXIF the file has (orientation...), adding the comment to it.
    with PILImage.open(io.BytesIO(data)) as probe:
        exif = probe.getexif()
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = USER_COMMENT_UNICODE + text.encode("utf-16-be")
    payload = exif.tobytes()
    if not payload.startswith(b"Exif\x00\x00"):
        payload = b"Exif\x00\x00" + payload
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    # Walk the header segments: APP0 (JFIF) stays first, any old EXIF APP1 goes.
    out = [b"\xff\xd8"]
    pos = 2
    inserted = False
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA or not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        end = pos + 2 + length
        if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
            pos = end
            continue
        if marker != 0xE0 and not inserted:
            out.append(segment)
            inserted = True
        out.append(data[pos:end])
        pos = end
    if not inserted:
        out.append(segment)
    out.append(data[pos:])
    return b"".join(out)


def download_name(image: Image) -> str:
    """`<prompt words>-<generation uuid start>-<index>.<ext>`: readable and unique."""
    words = re.sub(r"[^a-z0-9]+", "-", image.generation.prompt.lower()).strip("-")[:48]
    words = words.rsplit("-", 1)[0] if len(words) == 48 and "-" in words else words
    extension = image.file.name.rsplit(".", 1)[-1]
    return f"{words or 'image'}-{str(image.generation.uuid)[:8]}-{image.index}.{extension}"


def image_download_bytes(image: Image) -> bytes:
    with image.file.open("rb") as handle:
        data = handle.read()
    return with_parameters(data, image.format, parameters_text(image))


def images_zip(images: Iterable[Image]) -> IO[bytes]:
    """A ZIP of `images`, each with its parameters, in a temporary file (kept in memory
    up to 32 MiB) positioned at its start. Stored, not deflated: the images are
    compressed already."""
    spool = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_STORED) as archive:
        for image in images:
            try:
                data = image_download_bytes(image)
            except FileNotFoundError:
                continue  # a file lost from storage must not fail the whole archive
            info = zipfile.ZipInfo(download_name(image), image.created_at.timetuple()[:6])
            archive.writestr(info, data)
    spool.seek(0)
    return spool
