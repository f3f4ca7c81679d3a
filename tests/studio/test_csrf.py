"""Cross-site requests: every URL is classified by what it does, state-changing ones
refuse GET, read-only ones refuse POST, and every POST a browser can make needs the
CSRF token, whether it comes from a plain form or from htmx."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import with_role

pytestmark = pytest.mark.django_db

# Only change state, so only take POST.
POST_ONLY = {
    "logout",
    "accounts:token-revoke",
    "accounts:member-action",
    "accounts:invite",
    "gallery:bulk",
    "gallery:collection_delete",
    "gallery:collection_rename",
    "gallery:collection_move",
    "gallery:collection_cover",
    "gallery:star",
    "gallery:decide",
    "generator:retry",
    "generator:cancel",
    "generator:regenerate",
    "generator:variations",
    "api:generation-cancel",
    "generator:visibility",
    "generator:model-enable",
    # The studio form's helpers: they answer for posted values or a file, never on GET.
    "generator:defaults",
    "generator:form",
    "generator:parameters",
}
# Show a form on GET and change state on POST.
FORMS = {
    "signup",
    "login",
    "password_change",
    "password_reset",
    "password_reset_confirm",
    "accounts:tokens",
    "accounts:notifications",
    "accounts:account",
    "generator:policy",
    "gallery:collections",
    "gallery:settings",
    "gallery:report",
    "generator:studio",
}
# Never change state: a download included (it only reads the file).
READ_ONLY = {
    "password_change_done",
    "password_reset_done",
    "password_reset_complete",
    "api:generation",
    "api:models",
    "api:openapi",
    "healthz",
    "live-events",
    "accounts:members",
    "accounts:audit",
    "accounts:audit-export",
    "generator:usage",
    "gallery:index",
    "gallery:collection",
    "gallery:image",
    "gallery:download",
    "gallery:moderation",
    "generator:detail",
    "generator:media",
    "generator:models",
    "generator:reference",
}
# Bearer-token API: exempt from CSRF by design, and refuses a cookie session alone
# (tests/test_hostile_users.py).
TOKEN_API = {"api:images-generations", "api:images-edits"}

ARGUMENTS = {
    "uuid": str(uuid.uuid4()),
    "username": "olivia",
    "model_id": "flux/schnell",
    "token": "not-a-token",
    "name": "generations/x/0.png",
    "uidb64": "MQ",
}


def studio_urls() -> Iterator[tuple[str, str]]:
    """(name, path) for every named URL outside Django's admin, arguments filled in."""

    def walk(patterns: list, prefix: str, namespace: str) -> Iterator[tuple[str, str]]:
        for p in patterns:
            if isinstance(p, URLResolver):
                if p.app_name == "admin":
                    continue
                inner = namespace + (f"{p.namespace}:" if p.namespace else "")
                yield from walk(p.url_patterns, prefix + str(p.pattern), inner)
            elif isinstance(p, URLPattern) and p.name:
                route = prefix + str(p.pattern)
                path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: ARGUMENTS.get(m[1], "x"), route)
                yield namespace + p.name, "/" + path

    return walk(get_resolver().url_patterns, "", "")


URLS = dict(studio_urls())


def test_every_url_is_classified_by_what_it_does():
    # A new view must be put in one of the sets, and so gets the checks below.
    classified = POST_ONLY | FORMS | READ_ONLY | TOKEN_API
    assert set(URLS) == classified, set(URLS) ^ classified
    assert len(classified) == len(POST_ONLY) + len(FORMS) + len(READ_ONLY) + len(TOKEN_API)


@pytest.fixture
def admin_client(owner) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(with_role(owner, "admin"))
    return client


@pytest.mark.parametrize("name", sorted(POST_ONLY))
def test_a_state_changing_url_refuses_get(admin_client, name):
    assert admin_client.get(URLS[name]).status_code == 405
    assert admin_client.get(URLS[name], headers={"HX-Request": "true"}).status_code == 405


@pytest.mark.parametrize("name", sorted(READ_ONLY - {"generator:reference", "generator:media"}))
def test_a_read_only_url_refuses_post(admin_client, name):
    # Refused before the CSRF check could matter: nothing here may act on a POST.
    client = Client()
    client.cookies = admin_client.cookies
    assert client.post(URLS[name]).status_code == 405


@pytest.mark.parametrize("name", ["generator:reference", "generator:media"])
def test_signed_and_media_urls_refuse_post(name):
    assert Client().post(URLS[name]).status_code == 405


@pytest.mark.parametrize("htmx", [False, True], ids=["form", "htmx"])
@pytest.mark.parametrize("name", sorted(POST_ONLY | FORMS))
def test_a_post_without_the_csrf_token_is_refused(admin_client, name, htmx):
    headers = {"HX-Request": "true"} if htmx else {}
    response = admin_client.post(URLS[name], {"anything": "1"}, headers=headers)
    assert response.status_code == 403
    assert b"CSRF" in response.content


def test_an_anonymous_login_or_signup_post_without_the_token_is_refused():
    client = Client(enforce_csrf_checks=True)
    for name in ("login", "signup", "password_reset"):
        assert client.post(URLS[name], {"username": "olivia"}).status_code == 403


def csrf_token(client: Client, path: str) -> str:
    page = client.get(path).content.decode()
    return re.search(r'"x-csrftoken": "([^"]+)"', page)[1]


def test_htmx_requests_carry_the_token_from_the_page_and_are_accepted(admin_client, owner):
    from tests.gallery.test_gallery import make_generation, make_image

    image = make_image(make_generation(owner))
    # base.html puts the token in hx-headers on <body>; htmx sends it with every request.
    token = csrf_token(admin_client, "/")
    response = admin_client.post(
        f"/images/{image.uuid}/star/",
        {"starred": "1"},
        headers={"HX-Request": "true", "X-CSRFToken": token},
    )
    assert response.status_code == 200


def test_a_plain_form_post_with_the_token_is_accepted(admin_client):
    token = csrf_token(admin_client, "/")
    response = admin_client.post(
        URLS["gallery:collections"], {"name": "Moodboard", "csrfmiddlewaretoken": token}
    )
    assert response.status_code in (200, 303)


def test_collection_delete_leaves_the_collection_on_get(admin_client, owner):
    from gallery.models import Collection
    from gallery.services import collection_create

    collection = collection_create(owner=owner, name="Keep me")
    response = admin_client.get(f"/gallery/collections/{collection.uuid}/delete/")
    assert response.status_code == 405
    assert Collection.objects.filter(pk=collection.pk).exists()
