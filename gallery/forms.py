from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser
from django.core.validators import MaxValueValidator, MinValueValidator
from django.utils.http import urlencode

from gallery.models import Collection, Preferences, Report
from gallery.selectors import ORIENTATIONS, Filters
from generator.registry import IMAGE_SIZE_PRESETS, MODELS

SIZE_PATTERN = re.compile(r"^\d{2,5}x\d{2,5}$")


EARLIEST = dt.date(1970, 1, 1)
LATEST = dt.date(9998, 12, 31)


class FilterForm(forms.Form):
    """The gallery's filters, read from the query string so every view is a URL.

    Invalid values are dropped rather than reported: a stale bookmark (a deleted
    collection, a model since removed) still opens the gallery."""

    q = forms.CharField(required=False, max_length=200, label="Search")
    model = forms.ChoiceField(required=False)
    author = forms.ChoiceField(required=False)
    size = forms.ChoiceField(required=False)
    # Bounded so that "the day after" and time-zone shifts stay within what datetime
    # can hold: 9999-12-31 would overflow where the query adds a day.
    date_from = forms.DateField(
        required=False,
        label="From",
        widget=forms.DateInput(attrs={"type": "date"}),
        validators=[MinValueValidator(EARLIEST), MaxValueValidator(LATEST)],
    )
    date_to = forms.DateField(
        required=False,
        label="To",
        widget=forms.DateInput(attrs={"type": "date"}),
        validators=[MinValueValidator(EARLIEST), MaxValueValidator(LATEST)],
    )
    nsfw = forms.ChoiceField(
        required=False,
        label="Flagged",
        choices=[("", "As in my settings"), ("show", "Show"), ("hide", "Hide")],
    )
    fav = forms.BooleanField(required=False, label="Favourites only")
    collection = forms.ChoiceField(required=False)

    def __init__(
        self,
        data: Any,
        *,
        authors: list[str],
        collections: list[Collection],
    ) -> None:
        super().__init__(data)
        # The registry is read now, not at import: models come and go without a restart
        # of this module's callers.
        self.fields["model"].choices = [("", "Any model")] + [
            (spec.id, spec.label) for spec in MODELS.values()
        ]
        self.fields["author"].choices = [("", "Anyone")] + [(name, name) for name in authors]
        self.fields["size"].choices = [
            ("", "Any size"),
            *[(name, name.capitalize()) for name in ORIENTATIONS],
            *[
                (f"{w}x{h}", f"{w}×{h}")
                for w, h in sorted(set(IMAGE_SIZE_PRESETS.values()), reverse=True)
            ],
        ]
        self.collections = {str(c.uuid): c for c in collections}
        self.fields["collection"].choices = [("", "All images")] + [
            (key, c.name) for key, c in self.collections.items()
        ]

    def filters(self) -> Filters:
        """The valid filters; fields with bad values count as unset."""
        self.is_valid()
        data = {name: self.cleaned_data.get(name) for name in self.fields}
        if not data.get("size") and SIZE_PATTERN.match(self.data.get("size", "")):
            # Exact sizes outside the presets are accepted from hand-written URLs.
            data["size"] = self.data["size"]
        return Filters(
            q=(data["q"] or "").strip(),
            model=data["model"] or "",
            author=data["author"] or "",
            size=data["size"] or "",
            date_from=data["date_from"],
            date_to=data["date_to"],
            nsfw=data["nsfw"] or "",
            favourites=bool(data["fav"]),
            collection=self.collections.get(data["collection"] or ""),
        )

    def querystring(self) -> str:
        """The active filters as "?k=v&..." ("" when none), for links that keep them."""
        params = [
            (name, self.data[name])
            for name in self.fields
            if self.data.get(name) and (name not in self.errors)
        ]
        return "?" + urlencode(params) if params else ""


class PreferencesForm(forms.ModelForm):
    class Meta:
        model = Preferences
        fields = ["nsfw"]
        labels = {"nsfw": "Images the provider flagged as NSFW"}
        widgets = {"nsfw": forms.RadioSelect}


class CollectionForm(forms.Form):
    name = forms.CharField(max_length=100)

    def __init__(
        self,
        *args: Any,
        owner: AbstractBaseUser,
        renaming: Collection | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner
        # Renaming a collection to its own name (or a change of case) is not a clash.
        self.renaming = renaming

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        others = Collection.objects.filter(owner=self.owner, name=name)
        if self.renaming is not None:
            others = others.exclude(pk=self.renaming.pk)
        if others.exists():
            raise forms.ValidationError("You already have a collection with this name.")
        return name


class CollectionItemForm(forms.Form):
    """The image a collection's move and cover buttons post."""

    image = forms.UUIDField()


class BulkForm(forms.Form):
    ACTIONS = [
        ("star", "Star"),
        ("unstar", "Unstar"),
        ("collect", "Add to collection"),
        ("uncollect", "Remove from collection"),
        ("delete", "Delete"),
        ("zip", "Download ZIP"),
        ("share", "Share with the team"),
        ("private", "Make private"),
    ]
    # Large enough for a few pages of the grid, small enough to build a ZIP in a request.
    MAX_IMAGES = 500

    action = forms.ChoiceField(choices=ACTIONS)
    image = forms.MultipleChoiceField(required=False)
    collection = forms.ChoiceField(required=False)
    next = forms.CharField(required=False)

    def __init__(self, data: Any, *, collections: list[Collection]) -> None:
        super().__init__(data)
        self.collections = {str(c.uuid): c for c in collections}
        self.fields["collection"].choices = [("", "—")] + [
            (key, c.name) for key, c in self.collections.items()
        ]
        # Any UUID sent is a valid choice here; access is the selector's job.
        self.fields["image"].choices = [(v, v) for v in data.getlist("image")]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        uuids = []
        for raw in cleaned.get("image") or []:
            try:
                uuids.append(forms.UUIDField().clean(raw))
            except forms.ValidationError:
                continue
        if not uuids:
            raise forms.ValidationError("Select at least one image.")
        if len(uuids) > self.MAX_IMAGES:
            raise forms.ValidationError(f"Select at most {self.MAX_IMAGES} images at once.")
        cleaned["uuids"] = uuids
        action = cleaned.get("action")
        if action in ("collect", "uncollect"):
            collection = self.collections.get(cleaned.get("collection") or "")
            if collection is None:
                raise forms.ValidationError("Choose a collection.")
            cleaned["collection_obj"] = collection
        return cleaned


class _PostedIds(forms.Field):
    """Every value posted under one name, as text; ids that are not UUIDs are dropped
    (and which images they name is the selector's business)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[str]:
        return [str(v) for v in value or []][:500]


class ModerationDecisionForm(forms.Form):
    """The review queue's post: a row's own button sends `one=<decision>:<uuid>`; the
    bar's buttons send `decision` for every ticked `image`."""

    one = forms.CharField(required=False, max_length=60)
    decision = forms.CharField(required=False, max_length=16)
    image = _PostedIds(required=False)
    reason = forms.CharField(required=False, max_length=500, strip=True)
    state = forms.ChoiceField(required=False, choices=[("held", "held"), ("hidden", "hidden")])

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        decision, _, single = (data.get("one") or "").partition(":")
        raw_ids = [single] if single else data.get("image") or []
        if not single:
            decision = data.get("decision") or ""
        uuids = []
        for raw in raw_ids:
            try:
                uuids.append(uuid.UUID(raw))
            except ValueError:
                continue
        data["decision_name"], data["uuids"] = decision, uuids
        return data


class ReportForm(forms.Form):
    reason = forms.ChoiceField(
        choices=Report.Reason.choices,
        error_messages={"required": "Choose a reason.", "invalid_choice": "Choose a reason."},
    )
    text = forms.CharField(required=False, max_length=1000, strip=True)
