"""The team's forms: sign-up, API tokens, and the members page's actions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.validators import ASCIIUsernameValidator

from accounts import tokens as token_services
from accounts.models import Member, Visibility


class SignupForm(UserCreationForm):
    """Usernames are plain ASCII and unique whatever their case, so nobody can sign up
    as a look-alike of a teammate ("аdmin" in Cyrillic, "admiń", "Admin")."""

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        ASCIIUsernameValidator()(username)
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("A user with that username already exists.")
        return username


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=token_services.NAME_MAX_LENGTH,
        help_text="What will use it, e.g. “CI renders” or “Ada's laptop”.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


ACTIONS = ("approve", "suspend", "reinstate", "role", "limits")


class MemberActionForm(forms.Form):
    """One row's action on the members page; which fields count depends on `action`."""

    action = forms.ChoiceField(choices=[(a, a) for a in ACTIONS])
    reason = forms.CharField(max_length=500, required=False, strip=True)
    role = forms.ChoiceField(choices=Member.Role.choices, required=False)
    monthly_budget_usd = forms.DecimalField(
        min_value=Decimal(0), max_digits=10, decimal_places=2, required=False
    )
    max_active = forms.IntegerField(min_value=1, max_value=1000, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        action = data.get("action")
        if action == "suspend" and not data.get("reason"):
            self.add_error("reason", "Give a reason for the suspension.")
        if action == "role" and not data.get("role"):
            self.add_error("role", "Choose a role.")
        return data


class InvitationForm(forms.Form):
    role = forms.ChoiceField(choices=Member.Role.choices, initial=Member.Role.MEMBER)


class AccountSettingsForm(forms.Form):
    default_visibility = forms.ChoiceField(
        choices=Visibility.choices,
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose private or shared.",
            "invalid_choice": "Choose private or shared.",
        },
    )


def form_errors(form: forms.Form) -> str:
    """A bound form's errors as one sentence, for a message after a redirect."""
    return " ".join(str(error) for errors in form.errors.values() for error in errors)
