"""An existing studio upgrades with `manage.py migrate` and loses nothing.

The database is made the way the studio's earlier code made it (its migrations, rows
through the historical models: tests/accounts/upgrade_steps.py), in a scratch database
of the same engine the suite runs on (SQLite by default, PostgreSQL in CI), then
migrated forward by `manage.py migrate` in a process of its own, and read back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.worker  # real processes, a database of their own


@pytest.fixture
def scratch_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", DATA_DIR=str(tmp_path / "data"))
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        yield env  # SQLite: a file under the scratch DATA_DIR
        return
    import psycopg

    name = f"studio_upgrade_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        yield env
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_studio_made_by_the_earlier_code_upgrades_with_every_row(scratch_env):
    before = json.loads(run(scratch_env, "-m", "tests.accounts.upgrade_steps", "build"))
    migrated = run(scratch_env, "manage.py", "migrate", "--noinput")
    assert "accounts.0002_roles_are_groups... OK" in migrated
    after = json.loads(
        run(
            scratch_env,
            "-m",
            "tests.accounts.upgrade_steps",
            "check",
            before["session"],
            before["image"],
        )
    )
    # No row lost or added by the upgrade, in any table, except what it adds on purpose:
    # the three new capabilities (rows, and the Admins group's hold on them) and a role
    # group for the account that had no Member row, and the default permissions of the
    # provider calls' and the live events' new models (add, change, delete, view each).
    # No permission row goes.
    grown = {"auth_permission": 3 + 4 + 4, "auth_group_permissions": 3, "auth_user_groups": 1}
    assert {t: n - grown.get(t, 0) for t, n in after["counts"].items()} == before["counts"]
    assert set(before["permission_ids"]) <= set(after["permission_ids"])
    # Passwords still sign in (pending and suspended accounts too: the middleware, not
    # the login, keeps them out), roles became groups with the same capabilities.
    assert after["logins"] == {u: True for u in after["logins"]}
    assert after["roles"] == {
        "ada": "admin",
        "mona": "moderator",
        "theo": "member",
        "vera": "viewer",
        "sam": "member",
        "pete": "member",
        "olga": "member",
    }
    everything = ["edit_policy", "enable_models", "generate", "manage_members", "moderate"]
    assert after["capabilities"] == {
        "ada": sorted([*everything, "set_budgets"]),
        "mona": ["generate", "moderate"],
        "theo": ["generate"],
        "vera": [],
        "sam": [],  # suspended: capabilities count only while active
        "pete": [],  # waiting for approval
        "olga": ["generate"],  # no Member row: a member, as before
    }
    assert after["superusers"] == ["ada"]
    assert after["statuses"]["sam"] == "suspended" and after["statuses"]["pete"] == "pending"
    assert after["theo_limits"] == ["12.50", 3]
    assert after["token_user"] == "theo" and after["token_api"] == 200
    assert after["generation"][0][1:] == ["123456789012345678901", "succeeded", "theo"]
    assert after["image_seeds"] == ["123456789012345678901"]
    assert after["cost_source"] == "estimate"  # no provider figure before the upgrade
    assert after["cost"] == "12.0000" and after["collection"] == ["Lighthouses"]
    assert after["report"] == "spam" and after["audit"] == [["member.role", "ada"]]
    # Admin log entries and permissions still point at the moved models.
    assert after["log_entry_type"] == ["accounts", "member"]
    assert after["log_entry_object"] == "theo"
    assert after["content_types"] == [
        "accounts.apitoken",
        "accounts.invitation",
        "accounts.member",
        "accounts.notification",
        "audit.auditevent",
    ]
    # The browser signed in before the upgrade is still signed in, and sees its file.
    assert after["session_studio"] == 200
    assert after["session_media"] == [200, before["image_sha256"]]
