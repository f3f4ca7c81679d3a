from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from generator import fetch
from generator.imaging import InvalidImage, prepare_reference
from generator.models import Image
from generator.registry import (
    CUSTOM_SIZE,
    DEFAULT_MODEL,
    IMAGE_SIZE_PRESETS,
    MODELS,
    ModelSpec,
    Param,
    get_model,
)

# Control characters other than tab and newline reach the provider as noise and can
# hide text in logs and pages.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class PromptField(forms.CharField):
    def to_python(self, value: Any) -> str:
        # Stripped before validation, so a stray control character (NUL included) is
        # dropped rather than failing a prompt that is otherwise fine.
        return super().to_python(CONTROL_CHARS.sub("", value) if isinstance(value, str) else value)


class ColorsField(forms.Field):
    """Recraft's `colors`: a list of {r, g, b} from "#rrggbb" / "r,g,b" text or a JSON list."""

    HEX = re.compile(r"#?([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})")

    def to_python(self, value: Any) -> list[dict[str, int]] | None:
        if value in (None, "", []):
            return None
        if isinstance(value, list):
            return [self._from_item(item) for item in value]
        if not isinstance(value, str):
            raise forms.ValidationError("Give colours as #rrggbb or r,g,b.")
        items = [i for i in re.split(r"[;\s]+", value.replace(", #", " #").strip()) if i]
        return [self._from_text(item.strip(",")) for item in items]

    def _from_text(self, text: str) -> dict[str, int]:
        match = self.HEX.fullmatch(text)
        if match:
            r, g, b = (int(part, 16) for part in match.groups())
            return {"r": r, "g": g, "b": b}
        parts = text.split(",")
        if len(parts) == 3 and all(p.strip().isdigit() for p in parts):
            return self._from_item(dict(zip("rgb", (int(p) for p in parts), strict=True)))
        raise forms.ValidationError(f"{text!r} is not a colour; use #rrggbb or r,g,b.")

    def _from_item(self, item: Any) -> dict[str, int]:
        if not isinstance(item, dict) or set(item) != {"r", "g", "b"}:
            raise forms.ValidationError("Each colour is an object with r, g and b.")
        colour = {}
        for channel in "rgb":
            value = item[channel]
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # JSON does not tell 5 from 5.0
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
                raise forms.ValidationError(f"{channel} must be an integer from 0 to 255.")
            colour[channel] = value
        return colour


@dataclass(frozen=True)
class Reference:
    """The starting image of an image-to-image request, resolved by the form.

    Exactly one of: a studio image the viewer may see, an uploaded file (already
    re-encoded as PNG), or an outside URL passed on to the provider as given.
    """

    image: Image | None = None
    upload: bytes | None = None
    url: str | None = None


# The studio's own media URLs, so an API client can start from an image it got back.
STUDIO_MEDIA_PATH = re.compile(r"^/media/generations/(?P<uuid>[0-9a-f-]{36})/(?P<index>\d{1,3})\.")


# What "Save as my defaults" never keeps: what one image is about, not how it is made.
DEFAULTS_LEFT_OUT = ("prompt", "seed", "source_image", "image_file", "image_url")


def size_label(preset: str) -> str:
    width, height = IMAGE_SIZE_PRESETS[preset]
    name = preset.replace("_", " ").replace(" 4 3", " 4:3").replace(" 16 9", " 16:9")
    return f"{name.capitalize()} ({width}×{height})"


class GenerationForm(forms.Form):
    """Validates one generation request for one registry model.

    The fields are the provider's parameter names (plus `model`, and `width`/`height`
    for a custom `image_size`), so the same names work from the HTML form and from
    scripts posting form data.
    """

    model = forms.ChoiceField(
        label="Model",
        error_messages={"invalid_choice": "Unknown model %(value)s; choose one from the list."},
    )

    # Long on purpose: the fields are built from the registry entry, one block per concern.
    def __init__(
        self,
        *args: Any,
        spec: ModelSpec,
        enabled: frozenset[str] | None = None,
        viewer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.spec = spec
        self.viewer = viewer
        self.reference: Reference | None = None
        self.blocked_term: str | None = None
        self.switch_notes: list[str] = []  # what a model switch changed (fit_to_model)
        # Set by the studio views (generator.views._with_extras) for the form partial.
        self.prompt_history: list[tuple[str, str]] = []
        self.has_saved_defaults = False
        self.enabled = enabled if enabled is not None else frozenset(MODELS)
        # Only enabled models validate; the template shows the others greyed out.
        self.fields["model"].choices = [
            (m.id, m.label) for m in MODELS.values() if m.id in self.enabled
        ]
        self.fields["model"].initial = spec.id
        if spec.id not in self.enabled:
            self.fields["model"].error_messages["invalid_choice"] = (
                f"{spec.label} is deprecated by the provider and disabled in this studio; "
                "an admin can enable it on the Models page."
            )
        self.model_options = [
            {
                "id": m.id,
                "label": m.label + (" (deprecated, disabled)" if m.id not in self.enabled else ""),
                "disabled": m.id not in self.enabled,
                "reference": m.reference_image,
            }
            for m in MODELS.values()
        ]
        self.fields["prompt"] = PromptField(
            label="Prompt",
            max_length=spec.prompt_max_length,
            widget=forms.Textarea(attrs={"rows": 4, "autofocus": True}),
            help_text=f"Up to {spec.prompt_max_length} characters.",
        )
        if spec.size is not None:
            rule = spec.size
            choices = [(p, size_label(p)) for p in rule.presets]
            choices.append((CUSTOM_SIZE, "Custom…"))
            self.fields["image_size"] = forms.ChoiceField(
                label="Size", choices=choices, initial=rule.default
            )
            for name in ("width", "height"):
                self.fields[name] = forms.IntegerField(
                    label=name.capitalize(),
                    required=False,
                    min_value=rule.minimum,
                    max_value=rule.maximum,
                    # The multiple is checked in clean(), which names the nearest valid
                    # values; the browser still steps by it.
                    widget=forms.NumberInput(attrs={"step": rule.multiple}),
                    help_text=(
                        f"{rule.minimum}–{rule.maximum}, a multiple of {rule.multiple}; "
                        "used when Size is Custom."
                    ),
                )
        if spec.reference_image:
            self.fields["source_image"] = forms.UUIDField(
                required=False, widget=forms.HiddenInput, label="Starting image"
            )
            self.fields["image_file"] = forms.FileField(
                required=False,
                label="Starting image",
                help_text="PNG, JPEG or WebP, up to "
                f"{settings.REFERENCE_MAX_BYTES // (1024 * 1024)} MB.",
                widget=forms.ClearableFileInput(
                    attrs={"accept": "image/png,image/jpeg,image/webp"}
                ),
            )
            self.fields["image_url"] = forms.CharField(
                required=False,
                label="or an image URL",
                help_text="An https URL the provider can fetch, or a data: URI.",
                widget=forms.URLInput(attrs={"placeholder": "https://…"}),
            )
        for param in spec.params:
            self.fields[param.name] = _field_for(param)
        for name in spec.fixed:
            self.fields[name] = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean_prompt(self) -> str:
        from generator.policy import prompt_violation

        prompt = self.cleaned_data["prompt"].strip()
        if not prompt:
            raise forms.ValidationError("Describe the image you want.")
        # Views log the attempt (members.prompt_blocked_record); the form only refuses.
        self.blocked_term = prompt_violation(prompt)
        if self.blocked_term:
            raise forms.ValidationError(
                f"The studio's prompt policy does not allow “{self.blocked_term}”; please rephrase."
            )
        return prompt

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.spec.size is not None:
            for name in ("width", "height"):
                value = cleaned.get(name)
                if value is not None and (message := _off_step(value, self.spec.size)):
                    self.add_error(name, message)
            if cleaned.get("image_size") == CUSTOM_SIZE:
                for name in ("width", "height"):
                    if cleaned.get(name) is None and name not in self.errors:
                        self.add_error(name, "Required for a custom size.")
        for param in self.spec.params:
            if cleaned.get(param.name) in (None, "") and param.default is not None:
                if param.kind != "bool" and param.in_form and param.name not in self.errors:
                    cleaned[param.name] = param.default
        for name, value in self.spec.fixed.items():
            if cleaned.get(name) not in (None, value):
                self.add_error(name, f"Only {str(value).lower()} is accepted for this model.")
        if self.spec.reference_image:
            self.reference = self._clean_reference(cleaned)
        return cleaned

    def _clean_reference(self, cleaned: dict[str, Any]) -> Reference | None:
        given = [n for n in ("source_image", "image_file", "image_url") if cleaned.get(n)]
        if len(given) != 1:
            self.add_error(
                "image_file",
                "Choose a starting image: one from the studio, an upload or a URL."
                if not given
                else "Give one starting image, not several.",
            )
            return None
        if cleaned.get("source_image"):
            # The hidden field cannot show an error; the visible one next to it does.
            return self._studio_image(cleaned["source_image"], "image_file")
        if cleaned.get("image_file"):
            upload = cleaned["image_file"]
            if upload.size > settings.REFERENCE_MAX_BYTES:
                self.add_error("image_file", "The file is larger than allowed.")
                return None
            return self._prepared(upload.read(), "image_file")
        url = cleaned["image_url"].strip()
        if url[:5].lower() == "data:":
            try:
                data = fetch.decode_b64_image(url)
            except fetch.MirrorError as exc:
                self.add_error("image_url", str(exc))
                return None
            return self._prepared(data, "image_url")
        parts = urlsplit(url)
        match = STUDIO_MEDIA_PATH.match(parts.path)
        if match and parts.scheme in ("http", "https"):
            # One of our own images (an API client reusing an answer): use the stored
            # copy, with the viewer's access checked, rather than fetching it.
            return self._studio_media(match["uuid"], int(match["index"]))
        if parts.scheme != "https" or not parts.hostname or len(url) > 2048:
            self.add_error("image_url", "Give an https URL, a data: URI or a studio image URL.")
            return None
        return Reference(url=url)

    def defaults_names(self) -> list[str]:
        """The visible settings "Save as my defaults" stores for this model."""
        return [
            field.name for field in self.visible_fields() if field.name not in DEFAULTS_LEFT_OUT
        ]

    def defaults_values(self) -> dict[str, Any]:
        """The validated settings to store, as JSON-able form values (call after
        is_valid(), with no errors on defaults_names())."""
        values = {}
        for name in self.defaults_names():
            value = self.cleaned_data.get(name)
            if value is not None and value != "":
                values[name] = value
        return values

    def source_preview(self) -> Image | None:
        """The studio image the form starts from, for the preview next to the field."""
        if "source_image" not in self.fields or self.viewer is None:
            return None
        value = self["source_image"].value()
        if not value:
            return None
        try:
            return self._visible_images().select_related("generation").filter(uuid=value).first()
        except (ValueError, TypeError, ValidationError):
            return None

    def _visible_images(self) -> Any:
        from generator.selectors import images_visible_to

        return images_visible_to(self.viewer).filter(generation__status="succeeded")

    def _studio_image(self, uuid: Any, field: str) -> Reference | None:
        image = self._visible_images().select_related("generation").filter(uuid=uuid).first()
        if image is None or self.viewer is None:
            self.add_error(field, "That image does not exist or you cannot use it.")
            return None
        return Reference(image=image)

    def _studio_media(self, generation_uuid: str, index: int) -> Reference | None:
        image = (
            self._visible_images()
            .select_related("generation")
            .filter(generation__uuid=generation_uuid, index=index)
            .first()
        )
        if image is None or self.viewer is None:
            self.add_error("image_url", "That image does not exist or you cannot use it.")
            return None
        return Reference(image=image)

    def _prepared(self, data: bytes, field: str) -> Reference | None:
        try:
            png = prepare_reference(
                data,
                max_bytes=settings.REFERENCE_MAX_BYTES,
                max_pixels=settings.REFERENCE_MAX_PIXELS,
            )
        except InvalidImage as exc:
            self.add_error(field, f"The starting image was refused: {exc}.")
            return None
        return Reference(upload=png)

    def request_body(self) -> dict[str, Any]:
        body = self.spec.build_body(self.cleaned_data)
        if self.reference is not None and self.reference.url:
            body["image_url"] = self.reference.url
        return body

    def estimated_cost(self) -> Any:
        count = self.spec.param("num_images") or self.spec.param("n")
        value = self["num_images" if self.spec.param("num_images") else "n"].value() if count else 1
        try:
            images = max(1, int(value or 1))
        except (TypeError, ValueError):
            images = 1
        return self.spec.price * images


def _off_step(value: int, rule: Any) -> str | None:
    """The error for a size that is not a multiple of the model's step, naming the
    nearest valid values around it (1000 → 992 or 1024), or None when it is valid."""
    offset = (value - rule.minimum) % rule.multiple
    if offset == 0:
        return None
    below = value - offset
    above = below + rule.multiple
    nearest = [v for v in (below, above) if rule.minimum <= v <= rule.maximum]
    return f"Must be a multiple of {rule.multiple}; the nearest valid values are " + (
        " or ".join(str(v) for v in nearest) + "."
    )


def _field_for(param: Param) -> forms.Field:
    common: dict[str, Any] = {"label": param.label, "help_text": param.help, "required": False}
    attrs = {"placeholder": param.placeholder} if param.placeholder else {}
    if param.kind == "int":
        return forms.IntegerField(
            min_value=param.minimum,
            max_value=param.maximum,
            initial=param.default,
            widget=forms.NumberInput(attrs=attrs),
            **common,
        )
    if param.kind == "float":
        return forms.FloatField(
            min_value=param.minimum,
            max_value=param.maximum,
            initial=param.default,
            widget=forms.NumberInput(attrs={"step": "0.1", **attrs}),
            **common,
        )
    if param.kind == "bool":
        if not param.in_form:
            # API-only: absent means "not sent", which a checkbox cannot express.
            return forms.NullBooleanField(widget=forms.HiddenInput, **common)
        return forms.BooleanField(initial=param.default, **common)
    if param.kind == "choice":
        return forms.ChoiceField(
            choices=param.choices,
            initial=param.default,
            widget=forms.Select if param.in_form else forms.HiddenInput,
            **common,
        )
    if param.kind == "text":
        return forms.CharField(
            max_length=param.max_length,
            widget=forms.Textarea(attrs={"rows": 2, **attrs}),
            strip=True,
            **common,
        )
    if param.kind == "colors":
        return ColorsField(widget=forms.TextInput(attrs=attrs), **common)
    raise ValueError(f"unknown parameter kind {param.kind!r}")


def generation_form(
    data: Any = None,
    files: Any = None,
    *,
    initial: dict[str, Any] | None = None,
    viewer: Any = None,
) -> GenerationForm:
    """The form for the model named in `data` (or `initial`), defaulting to the first.

    An unknown or disabled model still gets a form (for that model, or the default
    one), whose `model` field then carries the error, so nothing is sent anywhere.
    """
    from generator.selectors import enabled_model_ids

    requested = (data or initial or {}).get("model") or DEFAULT_MODEL
    spec = get_model(requested) or get_model(DEFAULT_MODEL)
    return GenerationForm(
        data, files, initial=initial, spec=spec, enabled=enabled_model_ids(), viewer=viewer
    )


def fit_to_model(values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The values typed for one model, made to fit the model now chosen: numbers outside
    its range are clamped and choices it does not offer are cleared, each with a note, so
    a switch never leaves a value the new model refuses (4 images on recraft-v3)."""
    spec = get_model(values.get("model") or DEFAULT_MODEL) or get_model(DEFAULT_MODEL)
    fitted, notes = dict(values), []
    for param in spec.params:
        raw = fitted.get(param.name)
        if raw in (None, "") or not param.in_form:
            continue
        if param.kind in ("int", "float"):
            try:
                number = float(raw)
            except (TypeError, ValueError):
                continue
            low = param.minimum if param.minimum is not None else number
            high = param.maximum if param.maximum is not None else number
            clamped = min(max(number, low), high)
            if clamped != number:
                shown = int(clamped) if param.kind == "int" else clamped
                fitted[param.name] = shown
                notes.append(
                    f"{param.label} set to {shown:g}: {spec.label} takes {low:g}–{high:g}."
                )
        elif param.kind == "choice" and raw not in {value for value, _ in param.choices}:
            fitted.pop(param.name)
            notes.append(f"{param.label} reset: {spec.label} does not offer “{raw}”.")
    if spec.size is not None and fitted.get("image_size") not in (None, "", CUSTOM_SIZE):
        if fitted["image_size"] not in spec.size.presets:
            fitted.pop("image_size")
            notes.append(f"Size reset: {spec.label} does not offer that size.")
    return fitted, notes


class BlockedTermForm(forms.Form):
    """The policy page: add a word or pattern, or remove one (`remove` is its id)."""

    pattern = forms.CharField(max_length=200, required=False, strip=True)
    is_regex = forms.BooleanField(required=False)
    remove = forms.IntegerField(min_value=1, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("remove") and not data.get("pattern"):
            self.add_error("pattern", "Give a word or pattern.")
        return data
