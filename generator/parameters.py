"""Generation parameters read back from an image file, for the studio form.

The studio's downloads (gallery/downloads.py) and AUTOMATIC1111 write the settings as
one `parameters` text: in a PNG tEXt/iTXt chunk, or in a JPEG's EXIF UserComment. This
reads that text and turns it into form values for a registry model, so dropping a
downloaded image on the form fills it in again.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from generator.registry import CUSTOM_SIZE, IMAGE_SIZE_PRESETS, MODELS, ModelSpec

EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
# A1111's own pattern for one "Key: value" pair of its settings line (values with a
# comma or colon are JSON-quoted).
SETTING = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
A1111_FIELDS = {
    "Steps": "num_inference_steps",
    "CFG scale": "guidance_scale",
    "Seed": "seed",
}


class NotAnImage(ValueError):
    pass


def parameters_text(data: bytes) -> str | None:
    """The `parameters` text an image file carries, or None. Raises NotAnImage when
    Pillow cannot read the file at all."""
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            if image.format == "PNG":
                # Text chunks before the pixels, as the studio and A1111 write them, are
                # in `info` without decoding the image (which could be a pixel bomb).
                text = image.info.get("parameters")
                return str(text) if text else None
            if image.format in ("JPEG", "WEBP"):
                comment = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
                return _user_comment(comment)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise NotAnImage(str(exc) or "not an image") from exc
    return None


def _user_comment(value: Any) -> str | None:
    # EXIF's UserComment starts with an 8-byte character-code prefix; piexif and A1111
    # write UNICODE as UTF-16 big-endian.
    if isinstance(value, str):
        return value.strip("\x00") or None
    if not isinstance(value, bytes) or len(value) <= 8:
        return None
    prefix, body = value[:8], value[8:]
    if prefix.startswith(b"UNICODE"):
        encoding = "utf-16-le" if body[:1] != b"\x00" and body[1:2] == b"\x00" else "utf-16-be"
        text = body.decode(encoding, errors="replace")
    else:
        text = body.decode("utf-8", errors="replace")
    return text.strip("\x00") or None


def parse(text: str) -> dict[str, str]:
    """A1111's `parameters` text as {"prompt", "negative_prompt", <setting>: value}: the
    prompt lines, an optional "Negative prompt:" part, and a last "Key: value, ..." line."""
    lines = text.strip().split("\n")
    settings: dict[str, str] = {}
    if lines and len(SETTING.findall(lines[-1])) >= 3:
        for key, value in SETTING.findall(lines.pop()):
            value = value.strip()
            if value.startswith('"') and value.endswith('"'):
                try:
                    value = json.loads(value)
                except ValueError:
                    value = value[1:-1]
            settings[key.strip()] = value
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        if line.startswith("Negative prompt:"):
            negative.append(line[len("Negative prompt:") :].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    parsed = {"prompt": "\n".join(prompt).strip()}
    if negative:
        parsed["negative_prompt"] = "\n".join(negative).strip()
    parsed.update(settings)
    return parsed


def form_values(parsed: dict[str, str], *, model: str) -> dict[str, str]:
    """Form values (as a browser would post them) for the model the parameters name
    when the studio knows it, else for `model`. Settings the model has no field for
    are left out; fit_to_model clamps the rest when the form is built."""
    named = parsed.get("Model", "")
    spec: ModelSpec = MODELS.get(named) or MODELS[model]
    values: dict[str, str] = {"model": spec.id}
    if parsed.get("prompt"):
        values["prompt"] = parsed["prompt"]
    names = {param.name for param in spec.params if param.in_form}
    if parsed.get("negative_prompt") and "negative_prompt" in names:
        values["negative_prompt"] = parsed["negative_prompt"]
    for label, name in A1111_FIELDS.items():
        if parsed.get(label) and name in names:
            values[name] = parsed[label]
    size = re.fullmatch(r"\s*(\d{2,5})\s*x\s*(\d{2,5})\s*", parsed.get("Size", ""))
    if size and spec.size is not None:
        width, height = int(size[1]), int(size[2])
        preset = next(
            (p for p in spec.size.presets if IMAGE_SIZE_PRESETS[p] == (width, height)), None
        )
        if preset:
            values["image_size"] = preset
        else:
            values.update(image_size=CUSTOM_SIZE, width=str(width), height=str(height))
    # The studio writes its other parameters under their own names (output_format...).
    for param in spec.params:
        raw = parsed.get(param.name)
        if raw is None or not param.in_form or param.name in values:
            continue
        if param.kind == "bool":
            # A checkbox is ticked by any value but the empty one.
            values[param.name] = "on" if raw.lower() == "true" else ""
        elif param.kind != "colors":
            values[param.name] = raw
    return values


def summary(values: dict[str, str]) -> str:
    """One line naming what the parameters would fill, for the form's question."""
    parts = [MODELS[values["model"]].label]
    if values.get("image_size") == CUSTOM_SIZE:
        parts.append(f"{values['width']}×{values['height']}")
    if values.get("num_inference_steps"):
        parts.append(f"{values['num_inference_steps']} steps")
    if values.get("guidance_scale"):
        parts.append(f"guidance {values['guidance_scale']}")
    if values.get("seed"):
        parts.append(f"seed {values['seed']}")
    return ", ".join(parts)
