from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from generator.registry import (
    CUSTOM_SIZE,
    DEFAULT_MODEL,
    IMAGE_SIZE_PRESETS,
    ModelSpec,
    Param,
    get_model,
    model_choices,
)

# Control characters other than tab and newline reach the provider as noise and can
# hide text in logs and pages.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class PromptField(forms.CharField):
    def to_python(self, value: Any) -> str:
        # Stripped before validation, so a stray control character (NUL included) is
        # dropped rather than failing a prompt that is otherwise fine.
        return super().to_python(CONTROL_CHARS.sub("", value) if isinstance(value, str) else value)


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

    def __init__(self, *args: Any, spec: ModelSpec, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spec = spec
        self.fields["model"].choices = model_choices()
        self.fields["model"].initial = spec.id
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
                    step_size=rule.multiple,
                    error_messages={
                        "step_size": f"Must be a multiple of {rule.multiple}, e.g. "
                        f"{rule.minimum}, {rule.minimum + rule.multiple} or "
                        f"{rule.maximum - rule.multiple}."
                    },
                    help_text=(
                        f"{rule.minimum}–{rule.maximum}, a multiple of {rule.multiple}; "
                        "used when Size is Custom."
                    ),
                )
        for param in spec.params:
            self.fields[param.name] = _field_for(param)

    def clean_prompt(self) -> str:
        prompt = self.cleaned_data["prompt"].strip()
        if not prompt:
            raise forms.ValidationError("Describe the image you want.")
        return prompt

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.spec.size is not None and cleaned.get("image_size") == CUSTOM_SIZE:
            for name in ("width", "height"):
                if cleaned.get(name) is None and name not in self.errors:
                    self.add_error(name, "Required for a custom size.")
        for param in self.spec.params:
            if cleaned.get(param.name) in (None, "") and param.default is not None:
                if param.kind != "bool" and param.name not in self.errors:
                    cleaned[param.name] = param.default
        return cleaned

    def request_body(self) -> dict[str, Any]:
        return self.spec.build_body(self.cleaned_data)


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
        return forms.BooleanField(initial=param.default, **common)
    if param.kind == "choice":
        return forms.ChoiceField(choices=param.choices, initial=param.default, **common)
    raise ValueError(f"unknown parameter kind {param.kind!r}")


def generation_form(data: Any = None, *, initial: dict[str, Any] | None = None) -> GenerationForm:
    """The form for the model named in `data` (or `initial`), defaulting to the first.

    An unknown model still gets a form, for the default model, whose `model` field
    then carries the error, so nothing is sent anywhere.
    """
    requested = (data or initial or {}).get("model") or DEFAULT_MODEL
    spec = get_model(requested) or get_model(DEFAULT_MODEL)
    return GenerationForm(data, initial=initial, spec=spec)


class SignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")
