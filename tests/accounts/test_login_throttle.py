"""Login throttling: a username is locked out from one address after repeated failures,
for the cool-off only, and nobody else at that address is."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.utils import timezone

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

OFFICE = "203.0.113.7"
HOME = "198.51.100.23"


def login(username: str, password: str, address: str = OFFICE) -> Any:
    # A fresh client per attempt, as a script guessing passwords would be: the lockout
    # must not depend on a session cookie the attacker can drop.
    return Client(REMOTE_ADDR=address).post(
        "/accounts/login/", {"username": username, "password": password}
    )


def signed_in(response: Any) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.client.session


def fail_until_locked(username: str, address: str = OFFICE) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(username, "not the password", address)


def test_the_failure_limit_and_cool_off_come_from_the_environment():
    assert settings.AXES_FAILURE_LIMIT >= 3
    assert settings.AXES_COOLOFF_TIME.total_seconds() > 0
    # The pair, never the address alone: a shared office IP must not lock everyone out.
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


def test_failed_logins_below_the_limit_do_not_lock(owner):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login("olivia", "wrong").status_code == 200
    assert signed_in(login("olivia", PASSWORD))


def test_repeated_failures_lock_the_username_even_with_the_right_password(owner):
    fail_until_locked("olivia")
    response = login("olivia", PASSWORD)
    assert response.status_code == 429
    assert not signed_in(response)


def test_a_colleague_at_the_same_address_still_signs_in(owner, teammate):
    fail_until_locked("olivia")
    assert signed_in(login("theo", PASSWORD))


def test_the_locked_username_still_signs_in_from_another_address(owner):
    fail_until_locked("olivia")
    assert signed_in(login("olivia", PASSWORD, address=HOME))


def test_the_right_password_works_after_the_cool_off(owner):
    fail_until_locked("olivia")
    assert login("olivia", PASSWORD).status_code == 429
    # Age the recorded failures past the cool-off rather than sleeping through it.
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    )
    assert signed_in(login("olivia", PASSWORD))


def test_a_lockout_leaves_signed_in_sessions_alone(owner):
    session = Client(REMOTE_ADDR=OFFICE)
    session.force_login(owner)
    fail_until_locked("olivia")
    # Throttling guards password guessing only; a signed-in browser keeps working.
    assert session.get("/").status_code == 200
