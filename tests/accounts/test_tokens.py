"""Personal API tokens: hashing, authentication, the tokens page and its permission edges."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from datetime import timedelta
from html.parser import HTMLParser
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import tokens
from accounts.errors import InvalidRequest, LimitReached, Refused
from accounts.models import ApiToken

pytestmark = pytest.mark.django_db

TOKENS_URL = "/account/tokens/"


def revoke_url(token: ApiToken) -> str:
    return f"/account/tokens/{token.uuid}/revoke/"


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def owner_token(owner) -> tuple[ApiToken, str]:
    return tokens.api_token_create(user=owner, name="CI renders")


# --- Creating and storing ---------------------------------------------------------------


def test_the_token_is_stored_only_as_its_hash(owner):
    token, raw = tokens.api_token_create(user=owner, name="laptop")
    assert raw.startswith("sk-studio-") and len(raw) >= 50
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert all(raw not in str(value) for value in row.values())
    assert row["token_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert row["prefix"] == raw[:14] and len(row["prefix"]) == 14


def test_every_token_is_new(owner):
    raws = {tokens.api_token_create(user=owner, name=f"t{i}")[1] for i in range(5)}
    assert len(raws) == 5


def test_names_are_stripped_and_required(owner):
    token, _ = tokens.api_token_create(user=owner, name="  CI  ")
    assert token.name == "CI"
    for bad in ("", "   ", "x" * 101):
        with pytest.raises(InvalidRequest):
            tokens.api_token_create(user=owner, name=bad)
    assert ApiToken.objects.count() == 1


def test_25_active_tokens_is_the_cap(owner):
    made = [tokens.api_token_create(user=owner, name=f"t{i}")[0] for i in range(25)]
    with pytest.raises(LimitReached, match="You have 25 active tokens; revoke one first."):
        tokens.api_token_create(user=owner, name="one too many")
    tokens.api_token_revoke(token=made[0], user=owner)
    tokens.api_token_create(user=owner, name="fits again")
    assert ApiToken.objects.filter(user=owner).count() == 26


def test_the_cap_is_per_user(owner, outsider):
    for i in range(25):
        tokens.api_token_create(user=owner, name=f"t{i}")
    token, raw = tokens.api_token_create(user=outsider, name="mine")
    assert token.user == outsider and tokens.api_token_authenticate(raw) == outsider


def test_the_list_holds_only_the_users_tokens_newest_first(owner, outsider):
    first, _ = tokens.api_token_create(user=owner, name="first")
    second, _ = tokens.api_token_create(user=owner, name="second")
    tokens.api_token_create(user=outsider, name="theirs")
    assert list(tokens.api_token_list(user=owner)) == [second, first]


# --- Authenticating ----------------------------------------------------------------------


def test_a_token_authenticates_its_owner(owner, owner_token):
    _, raw = owner_token
    assert tokens.api_token_authenticate(raw) == owner


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "sk-studio-",
        "sk-studio-not-a-real-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "not-even-our-prefix",
        "sk-studio-" + "a" * 10_000,
    ],
)
def test_unknown_tokens_are_refused(owner_token, raw):
    assert tokens.api_token_authenticate(raw) is None


def test_a_token_differing_in_one_character_is_refused(owner_token):
    _, raw = owner_token
    other = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    assert tokens.api_token_authenticate(other) is None


def test_a_revoked_token_is_refused(owner, owner_token):
    token, raw = owner_token
    tokens.api_token_revoke(token=token, user=owner)
    assert tokens.api_token_authenticate(raw) is None


def test_an_inactive_users_token_is_refused(owner, owner_token):
    _, raw = owner_token
    owner.is_active = False
    owner.save(update_fields=["is_active"])
    assert tokens.api_token_authenticate(raw) is None


def test_last_used_is_recorded_at_most_once_a_minute(owner_token, django_assert_num_queries):
    token, raw = owner_token
    assert token.last_used_at is None
    tokens.api_token_authenticate(raw)
    token.refresh_from_db()
    first_use = token.last_used_at
    assert first_use is not None

    # One read and one UPDATE that matches nothing: no read-modify-write.
    with django_assert_num_queries(2):
        tokens.api_token_authenticate(raw)
    token.refresh_from_db()
    assert token.last_used_at == first_use

    long_ago = timezone.now() - timedelta(minutes=2)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=long_ago)
    tokens.api_token_authenticate(raw)
    token.refresh_from_db()
    assert token.last_used_at > long_ago


def test_authenticate_works_through_sync_to_async(owner, owner_token):
    _, raw = owner_token
    assert async_to_sync(sync_to_async(tokens.api_token_authenticate))(raw) == owner


@pytest.mark.django_db(transaction=True)
def test_authenticate_works_from_another_thread(owner):
    _, raw = tokens.api_token_create(user=owner, name="threaded")
    found: list[Any] = []

    def work() -> None:
        try:
            found.append(tokens.api_token_authenticate(raw))
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    assert found == [owner]
    assert ApiToken.objects.get().last_used_at is not None


# --- Revoking ----------------------------------------------------------------------------


def test_revoke_is_idempotent(owner, owner_token):
    token, _ = owner_token
    tokens.api_token_revoke(token=token, user=owner)
    revoked_at = ApiToken.objects.get().revoked_at
    assert revoked_at is not None and not token.is_active
    tokens.api_token_revoke(token=token, user=owner)
    assert ApiToken.objects.get().revoked_at == revoked_at


def test_only_the_owner_or_an_admin_may_revoke(owner_token, outsider, moderator, admin_user):
    token, raw = owner_token
    for stranger in (outsider, moderator):
        with pytest.raises(Refused):
            tokens.api_token_revoke(token=token, user=stranger)
    assert tokens.api_token_authenticate(raw) is not None
    tokens.api_token_revoke(token=token, user=admin_user)
    assert tokens.api_token_authenticate(raw) is None


# --- The Authorization header ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Bearer sk-studio-abc", "sk-studio-abc"),
        ("bearer sk-studio-abc", "sk-studio-abc"),
        ("BEARER   sk-studio-abc  ", "sk-studio-abc"),
        ("  Bearer\tsk-studio-abc", "sk-studio-abc"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer a b", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Token sk-studio-abc", None),
        ("sk-studio-abc", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token_parsing(value, expected):
    assert tokens.bearer_token(value) == expected


# --- The management command --------------------------------------------------------------


def test_the_command_prints_a_working_token_last(owner):
    out = StringIO()
    call_command("create_api_token", "olivia", stdout=out)
    raw = out.getvalue().rstrip("\n").splitlines()[-1]
    assert tokens.api_token_authenticate(raw) == owner
    assert ApiToken.objects.get().name == "created by manage.py"


def test_the_command_takes_a_name(owner):
    out = StringIO()
    call_command("create_api_token", "olivia", "--name", "nightly batch", stdout=out)
    assert ApiToken.objects.get().name == "nightly batch"


def test_the_command_refuses_an_unknown_user(owner):
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("create_api_token", "nobody", stdout=StringIO())
    assert ApiToken.objects.count() == 0


# --- The tokens page: permission edges ---------------------------------------------------


def test_the_pages_require_sign_in(client, owner_token):
    token, _ = owner_token
    for response in (
        client.get(TOKENS_URL),
        client.post(TOKENS_URL, {"name": "sneaky"}),
        client.post(revoke_url(token)),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    assert ApiToken.objects.count() == 1
    assert ApiToken.objects.get().is_active


@pytest.mark.parametrize("persona", ["outsider", "moderator"])
def test_others_cannot_revoke_a_token_and_learn_nothing(client, request, owner_token, persona):
    token, raw = owner_token
    client.force_login(request.getfixturevalue(persona))
    unknown = client.post("/account/tokens/00000000-0000-0000-0000-000000000000/revoke/")
    response = client.post(revoke_url(token))
    assert response.status_code == unknown.status_code == 404
    assert tokens.api_token_authenticate(raw) is not None


def test_the_list_shows_only_the_users_tokens(owner_client, owner_token, outsider):
    mine, _ = owner_token
    theirs, _ = tokens.api_token_create(user=outsider, name="oscar's")
    response = owner_client.get(reverse("accounts:tokens"))
    assert response.status_code == 200
    assert f'id="token-{mine.uuid}"' in response.text
    assert f"{mine.prefix}…" in response.text
    assert mine.token_hash not in response.text
    assert f"token-{theirs.uuid}" not in response.text
    assert 'href="/account/tokens/">API tokens</a>' in response.text


def test_the_views_reject_other_methods(owner_client, owner_token):
    token, _ = owner_token
    assert owner_client.put(TOKENS_URL).status_code == 405
    assert owner_client.get(revoke_url(token)).status_code == 405


# --- Creating on the page ----------------------------------------------------------------


def new_token_in(text: str) -> str:
    match = re.search(r'<input type="text" readonly id="new-token" value="([^"]+)"', text)
    assert match, "no new-token input"
    return match.group(1)


def test_creation_shows_the_token_once_and_never_again(owner_client, owner, caplog):
    caplog.set_level(logging.DEBUG)
    response = owner_client.post(TOKENS_URL, {"name": "CI renders"})
    assert response.status_code == 200
    raw = new_token_in(response.text)
    assert tokens.api_token_authenticate(raw) == owner
    assert response.text.count(raw) == 1
    assert "Copy it now: it will not be shown again" in response.text
    assert "no-store" in response["Cache-Control"]
    # The usage examples: curl and the OpenAI SDK against this studio's /v1.
    assert "http://testserver/v1/images/generations" in response.text
    assert "Authorization: Bearer" in response.text
    assert 'base_url="http://testserver/v1"' in response.text
    assert "OpenAI(" in response.text

    later = owner_client.get(TOKENS_URL)
    assert raw not in later.text
    assert 'id="new-token"' not in later.text
    assert "CI renders" in later.text
    assert all(raw not in str(value) for value in owner_client.session.values())
    assert raw not in caplog.text


def test_an_htmx_create_swaps_in_the_token_and_the_list(owner_client):
    response = owner_client.post(TOKENS_URL, {"name": "laptop"}, headers={"HX-Request": "true"})
    token = ApiToken.objects.get()
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="token-created"')
    assert "<html" not in response.text
    raw = new_token_in(response.text)
    assert tokens.api_token_authenticate(raw) is not None
    assert response.text.count(raw) == 1
    assert '<ol id="token-list" class="generation-list token-list" hx-swap-oob="true">' in (
        response.text
    )
    assert f'id="token-{token.uuid}"' in response.text
    assert 'id="token-form"' in response.text  # a fresh form to create another
    assert "no-store" in response["Cache-Control"]


def test_a_blank_name_gets_an_error_at_the_field(owner_client):
    response = owner_client.post(TOKENS_URL, {"name": "   "})
    assert response.status_code == 400
    assert "name" in response.context["form"].errors
    assert 'id="id_name_error"' in response.text
    assert 'id="new-token"' not in response.text
    assert ApiToken.objects.count() == 0


def test_an_htmx_create_with_errors_replaces_the_form(owner_client):
    response = owner_client.post(TOKENS_URL, {"name": "x" * 101}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#token-form"
    assert response["HX-Reswap"] == "outerHTML"
    assert response.text.lstrip().startswith('<form id="token-form"')
    assert "id_name_error" in response.text
    assert ApiToken.objects.count() == 0


def test_the_page_refuses_a_26th_active_token(owner_client, owner):
    for i in range(25):
        tokens.api_token_create(user=owner, name=f"t{i}")
    response = owner_client.post(TOKENS_URL, {"name": "one too many"})
    assert response.status_code == 400
    assert "You have 25 active tokens; revoke one first." in response.text
    assert 'id="new-token"' not in response.text
    assert ApiToken.objects.count() == 25


def test_csrf_is_enforced_on_create_and_revoke(owner, owner_token):
    token, _ = owner_token
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post(TOKENS_URL, {"name": "forged"}).status_code == 403
    assert client.post(revoke_url(token)).status_code == 403
    assert ApiToken.objects.count() == 1 and ApiToken.objects.get().is_active

    page = client.get(TOKENS_URL).text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(TOKENS_URL, {"name": "real", "csrfmiddlewaretoken": csrf})
    assert response.status_code == 200
    # The HTMX path sends the token in the header set on <body hx-headers>.
    htmx = client.post(
        TOKENS_URL, {"name": "also real"}, headers={"HX-Request": "true", "X-CSRFToken": csrf}
    )
    assert htmx.status_code == 200
    assert ApiToken.objects.count() == 3


# --- Revoking on the page ----------------------------------------------------------------


def test_the_owner_revokes_with_a_plain_form(owner_client, owner_token):
    token, raw = owner_token
    response = owner_client.post(revoke_url(token))
    assert response.status_code == 303
    assert response["Location"] == TOKENS_URL
    assert tokens.api_token_authenticate(raw) is None
    page = owner_client.get(TOKENS_URL).text
    assert "Revoked" in page
    assert revoke_url(token) not in page
    # Again: nothing changes, same answer.
    assert owner_client.post(revoke_url(token)).status_code == 303


def test_the_owner_revokes_with_htmx_and_gets_the_row(owner_client, owner_token):
    token, raw = owner_token
    response = owner_client.post(revoke_url(token), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.text.lstrip().startswith(f'<li id="token-{token.uuid}"')
    assert "Revoked" in response.text
    assert revoke_url(token) not in response.text
    assert "<html" not in response.text
    assert tokens.api_token_authenticate(raw) is None


# --- Page hygiene ------------------------------------------------------------------------


class InlineCode(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "style" or "style" in attributes:
            self.found.append(tag)
        if tag == "script" and not attributes.get("src"):
            self.found.append(tag)
        if any(name.startswith("hx-on") for name in attributes):
            self.found.append(tag)


def test_the_tokens_page_has_no_inline_code(owner_client, owner_token):
    response = owner_client.post(TOKENS_URL, {"name": "another"})
    parser = InlineCode()
    parser.feed(response.text)
    assert parser.found == []
