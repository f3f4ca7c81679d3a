"""Every URL that takes an object id, for every persona.

The objects are the owner's *private* work, so only the owner and moderators may see
them: anyone else gets 404 (never the object's data), a suspended account 403, and an
anonymous visitor the sign-in page (or 401 on the API). A meta-test fails when a URL
with an object id is added without a row here.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from PIL import Image as PILImage

from accounts.models import ApiToken
from accounts.tokens import api_token_create
from gallery.models import Collection, Report
from generator import services
from generator.models import Generation, Image
from generator.registry import FLUX_REALISM

pytestmark = pytest.mark.django_db

PERSONAS = ("owner", "teammate", "outsider", "viewer", "moderator", "suspended", "anonymous")
HIDDEN = 404  # what anyone gets for an object they may not see
INACTIVE = 403  # a suspended account, whatever it asks
SIGN_IN = 302


@dataclass
class Objects:
    generation: Generation
    failed: Generation
    queued: Generation
    image: Image
    token: ApiToken
    collection: Collection
    reference: str
    users: dict[str, Any] = field(default_factory=dict)


def _png() -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 48), "navy").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def objects(request: Any, owner: Any) -> Objects:
    body = {"model": "flux-realism", "prompt": "a private sketch", "image_size": "square"}
    generation = services.generation_create(
        owner=owner, spec=FLUX_REALISM, body=body, visibility="private"
    )
    Generation.objects.filter(pk=generation.pk).update(status="succeeded", seed="7")
    name = default_storage.save(f"generations/{generation.uuid}/0.png", ContentFile(_png()))
    thumb = default_storage.save(f"generations/{generation.uuid}/0_thumb.webp", ContentFile(_png()))
    image = Image.objects.create(
        generation=generation,
        index=0,
        file=name,
        thumbnail=thumb,
        width=64,
        height=48,
        format="png",
        bytes=10,
        sha256="0" * 64,
    )
    failed = services.generation_create(
        owner=owner, spec=FLUX_REALISM, body=body, visibility="private"
    )
    Generation.objects.filter(pk=failed.pk).update(status="failed", error="no")
    source = services.generation_create(
        owner=owner, spec=FLUX_REALISM, body=body, visibility="private"
    )
    source.source_file.save("source.png", ContentFile(_png()))
    users = {p: request.getfixturevalue(p) for p in PERSONAS if p != "anonymous"}
    return Objects(
        generation=generation,
        failed=failed,
        queued=source,
        image=image,
        token=api_token_create(user=owner, name="mine")[0],
        collection=Collection.objects.create(owner=owner, name="Board"),
        reference=services.reference_token(source),
        users=users,
    )


@dataclass(frozen=True)
class Case:
    name: str  # URL name (namespace:name)
    method: str
    expect: dict[str, int]
    data: Any = None
    htmx: bool = False
    note: str = ""


def read(owner: int = 200, moderator: int = 200, anonymous: int = SIGN_IN) -> dict[str, int]:
    return {
        "owner": owner,
        "teammate": HIDDEN,
        "outsider": HIDDEN,
        "viewer": HIDDEN,
        "moderator": moderator,
        "suspended": INACTIVE,
        "anonymous": anonymous,
    }


def only_owner(owner: int = 303) -> dict[str, int]:
    return {**read(owner=owner, moderator=HIDDEN)}


CASES = [
    Case("generator:detail", "GET", read()),
    Case("generator:detail", "GET", read(), data={"part": "card"}, htmx=True, note="card"),
    Case("generator:media", "GET", read()),
    Case("generator:retry", "POST", read(owner=303, moderator=403), note="failed"),
    Case("generator:cancel", "POST", read(owner=303, moderator=403), note="queued"),
    Case("generator:cancel", "POST", read(owner=409, moderator=403), note="finished"),
    Case("generator:regenerate", "POST", read(owner=303, moderator=403)),
    Case("generator:variations", "POST", read(owner=303, moderator=403)),
    Case("generator:visibility", "POST", read(owner=303, moderator=303), {"visibility": "private"}),
    Case("generator:reference", "GET", {p: 200 for p in PERSONAS} | {"suspended": INACTIVE}),
    Case(
        "generator:model-enable",
        "POST",
        {p: 403 for p in PERSONAS} | {"anonymous": SIGN_IN},
        {"enabled": "true"},
    ),
    Case("gallery:image", "GET", read()),
    Case("gallery:download", "GET", read()),
    Case("gallery:star", "POST", read(owner=303, moderator=303)),
    Case("gallery:report", "GET", read()),
    Case("gallery:report", "POST", read(owner=400, moderator=303), {"reason": "spam"}, note="p"),
    Case("gallery:collection_delete", "POST", only_owner()),
    Case("gallery:collection", "GET", only_owner(owner=200)),
    Case("gallery:collection_rename", "POST", only_owner(), {"name": "Renamed"}),
    Case("gallery:collection_move", "POST", only_owner(), {"direction": "up"}),
    Case("gallery:collection_cover", "POST", only_owner()),
    Case("accounts:token-revoke", "POST", only_owner()),
    Case("api:generation", "GET", read(anonymous=401)),
    Case("api:generation-cancel", "POST", read(moderator=403, anonymous=401), note="queued"),
    Case("api:generation-cancel", "POST", read(owner=409, moderator=403, anonymous=401), note="f"),
    Case(
        "accounts:member-action",
        "POST",
        {p: 403 for p in PERSONAS} | {"moderator": 303, "anonymous": SIGN_IN},
        {"action": "suspend", "reason": "testing"},
    ),
]
# Ids posted in the body rather than the path: checked for what they change.
BODY_ID_ROUTES = {"gallery:bulk", "gallery:decide"}
# Django's own password-reset link carries a signed user id, not one of our objects.
NOT_OBJECT_ROUTES = {"password_reset_confirm"}


def url_for(case: Case, objects: Objects) -> str:
    args = {
        "generator:detail": [objects.generation.uuid],
        "generator:media": [objects.image.file.name],
        "generator:retry": [objects.failed.uuid],
        "generator:cancel": [objects.queued.uuid],
        "generator:regenerate": [objects.generation.uuid],
        "generator:variations": [objects.generation.uuid],
        "generator:visibility": [objects.generation.uuid],
        "generator:reference": [objects.reference],
        "generator:model-enable": ["dall-e-3"],
        "gallery:image": [objects.image.uuid],
        "gallery:download": [objects.image.uuid],
        "gallery:star": [objects.image.uuid],
        "gallery:report": [objects.image.uuid],
        "gallery:collection_delete": [objects.collection.uuid],
        "gallery:collection": [objects.collection.uuid],
        "gallery:collection_rename": [objects.collection.uuid],
        "gallery:collection_move": [objects.collection.uuid],
        "gallery:collection_cover": [objects.collection.uuid],
        "accounts:token-revoke": [objects.token.uuid],
        "api:generation": [objects.generation.uuid],
        "api:generation-cancel": [objects.queued.uuid],
        "accounts:member-action": ["oscar"],
    }[case.name]
    if case.name.endswith("cancel") and case.note != "queued":
        args = [objects.generation.uuid]  # finished: nothing left to cancel
    return reverse(case.name, args=args)


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method}-{c.name}-{c.note}")
def test_the_permission_matrix(case, persona, client, objects):
    if persona != "anonymous":
        client.force_login(objects.users[persona])
    url = url_for(case, objects)
    headers = {"HX-Request": "true"} if case.htmx else {}
    if case.method == "GET":
        response = client.get(url, case.data or {}, headers=headers)
    else:
        response = client.post(url, case.data or {}, headers=headers)
    expected = case.expect[persona]
    assert response.status_code == expected, (case.name, persona, response.status_code)
    if expected == HIDDEN:
        body = b"".join(response) if not response.streaming else b""
        # Nothing of the object: not its prompt, not its files (the 404 may repeat the
        # id the client sent, which tells it nothing new).
        assert objects.generation.prompt.encode() not in body
        assert objects.image.file.name.encode() not in body or case.name == "generator:media"
    if expected in (HIDDEN, INACTIVE, SIGN_IN, 401, 403) and case.method == "POST":
        _assert_unchanged(objects)


def _assert_unchanged(objects: Objects) -> None:
    generation = Generation.objects.get(pk=objects.generation.pk)
    assert generation.visibility == "private"
    assert not Report.objects.exists()
    assert Collection.objects.get(pk=objects.collection.pk).name == "Board"
    assert ApiToken.objects.get(pk=objects.token.pk).revoked_at is None
    assert Generation.objects.count() == 3
    assert Generation.objects.get(pk=objects.queued.pk).status == "queued"


@pytest.mark.parametrize("persona", ["teammate", "outsider", "viewer", "suspended"])
def test_ids_posted_in_bulk_forms_change_nothing_they_may_not_see(persona, client, objects):
    client.force_login(objects.users[persona])
    uuid = str(objects.image.uuid)
    inactive = persona == "suspended"
    for action in ("star", "delete", "share"):
        posted = client.post(reverse("gallery:bulk"), {"action": action, "image": [uuid]})
        # Back to the gallery with nothing done (or the inactive page for a suspended one).
        assert posted.status_code == (INACTIVE if inactive else 303), action
    for body in (
        {"one": f"delete:{uuid}", "reason": "x"},
        {"image": [uuid], "decision": "approve", "reason": "x"},
    ):
        assert client.post(reverse("gallery:decide"), body).status_code == 403
    assert Image.objects.filter(pk=objects.image.pk).exists()
    assert not objects.image.favourites.exists()
    assert Generation.objects.get(pk=objects.generation.pk).visibility == "private"
    zipped = client.post(reverse("gallery:bulk"), {"action": "zip", "image": [uuid]})
    if inactive:
        assert zipped.status_code == INACTIVE
    else:
        # The archive is made of what they may see: here, nothing.
        assert zipped.status_code == 200
        archive = zipfile.ZipFile(io.BytesIO(b"".join(zipped.streaming_content)))
        assert archive.namelist() == []


def _routes(patterns: list[Any], namespace: str = "") -> list[tuple[str, str]]:
    found = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.app_name == "admin":
                continue  # Django's admin checks staff itself
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            found += [
                (str(pattern.pattern) + r, n) for r, n in _routes(pattern.url_patterns, inner)
            ]
        elif isinstance(pattern, URLPattern) and pattern.name:
            found.append((str(pattern.pattern), namespace + pattern.name))
    return found


def test_every_url_with_an_object_id_is_in_the_matrix():
    with_ids = {name for route, name in _routes(get_resolver().url_patterns) if "<" in route}
    covered = {case.name for case in CASES}
    assert with_ids - NOT_OBJECT_ROUTES == covered, "add the new URL to CASES"
    names = {name for _, name in _routes(get_resolver().url_patterns)}
    assert BODY_ID_ROUTES <= names
