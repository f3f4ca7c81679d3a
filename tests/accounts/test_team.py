"""Roles, sign-up modes, suspension, budgets, fair scheduling, prompt policy, audit."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from accounts import services as members
from accounts.errors import BudgetExhausted, LimitReached
from accounts.models import Member, Notification
from accounts.roles import role_of
from accounts.rules import may_generate as can_generate
from accounts.rules import may_moderate as can_moderate
from accounts.tokens import api_token_create
from audit.models import AuditEvent
from generator import services
from generator.models import Generation
from generator.registry import FLUX_REALISM
from tests.conftest import with_role

pytestmark = pytest.mark.django_db

SIGNUP = {
    "username": "ada",
    "email": "ada@example.com",
    "password1": "a long enough pass 42",
    "password2": "a long enough pass 42",
}
FORM = {
    "model": "flux-realism",
    "prompt": "A lighthouse at dusk",
    "image_size": "square",
    "num_images": "1",
    "output_format": "jpeg",
}


def make(owner: Any, **params: Any) -> Generation:
    body = {"model": "flux-realism", "prompt": "a lighthouse", "image_size": "square", **params}
    return services.generation_create(owner=owner, spec=FLUX_REALISM, body=body)


# --- Sign-up -----------------------------------------------------------------------------------


def test_the_first_account_is_the_admin_and_later_ones_wait_for_approval(client, django_user_model):
    assert client.post("/accounts/signup/", SIGNUP).status_code == 303
    ada = django_user_model.objects.get(username="ada")
    assert ada.is_superuser and role_of(ada) == "admin"
    assert ada.groups.filter(name="Admins").exists()
    client.logout()

    assert client.post("/accounts/signup/", {**SIGNUP, "username": "bob"}).status_code == 303
    bob = django_user_model.objects.select_related("member").get(username="bob")
    assert bob.member.status == "pending" and not bob.is_staff
    # Pending: cannot browse or generate, and is told why.
    page = client.get("/")
    assert page.status_code == 403 and "Waiting for approval" in page.content.decode()
    assert client.get(reverse("gallery:index")).status_code == 403
    assert Notification.objects.filter(user=ada, text__contains="bob").exists()

    client.force_login(ada)
    client.post(reverse("accounts:member-action", args=["bob"]), {"action": "approve"})
    client.force_login(bob)
    assert client.get("/").status_code == 200
    assert AuditEvent.objects.filter(action="member.approve", target_label="bob").exists()


def test_open_sign_up_admits_at_once(client, owner, settings, django_user_model):
    settings.SIGNUP_MODE = "open"
    client.post("/accounts/signup/", SIGNUP)
    ada = django_user_model.objects.get(username="ada")
    assert ada.member.status == "active" and role_of(ada) == "member"


def test_invite_mode_needs_a_valid_single_use_link(client, owner, settings, django_user_model):
    settings.SIGNUP_MODE = "invite"
    admin = with_role(owner, "admin")
    assert client.get("/accounts/signup/").status_code == 403
    assert client.post("/accounts/signup/", SIGNUP).status_code == 403
    client.force_login(admin)
    response = client.post(reverse("accounts:invite"), {"role": "viewer"})
    token = response["Location"].split("invited=")[1]
    page = client.get(reverse("accounts:members") + f"?invited={token}").content.decode()
    assert f"/accounts/signup/?invite={token}" in page
    client.logout()
    assert client.post(f"/accounts/signup/?invite={token}", SIGNUP).status_code == 303
    ada = django_user_model.objects.get(username="ada")
    assert role_of(ada) == "viewer" and ada.member.status == "active"
    client.logout()
    reused = client.post(f"/accounts/signup/?invite={token}", {**SIGNUP, "username": "eve"})
    assert reused.status_code == 403
    assert AuditEvent.objects.filter(action="member.invite").count() == 1


# --- Roles ---------------------------------------------------------------------------------


def test_a_viewer_browses_but_cannot_generate(client, viewer):
    client.force_login(viewer)
    assert client.get(reverse("gallery:index")).status_code == 200
    assert client.post("/", FORM).status_code == 403
    token = api_token_create(user=viewer, name="v")[1]
    api = client.post(
        "/v1/images/generations",
        data=json.dumps({"model": "flux-realism", "prompt": "x"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert api.status_code == 403
    assert Generation.objects.count() == 0


def test_role_changes_are_groups_and_audited(client, owner, teammate):
    admin = with_role(owner, "admin")
    client.force_login(admin)
    client.post(
        reverse("accounts:member-action", args=["theo"]), {"action": "role", "role": "moderator"}
    )
    teammate.refresh_from_db()
    assert teammate.groups.filter(name="Moderators").exists()
    assert teammate.has_perm("accounts.moderate") and can_moderate(teammate)
    event = AuditEvent.objects.get(action="member.role")
    assert event.actor == admin and event.detail == {"old": "member", "new": "moderator"}
    # The last admin cannot step down.
    client.post(
        reverse("accounts:member-action", args=["olivia"]), {"action": "role", "role": "member"}
    )
    assert role_of(type(owner).objects.get(pk=owner.pk)) == "admin"


def test_team_pages_permission_edges(client, owner, moderator, viewer):
    admin = with_role(owner, "admin")
    for url, allowed in (
        (reverse("accounts:members"), {"admin", "moderator"}),
        (reverse("accounts:audit"), {"admin", "moderator"}),
        (reverse("accounts:audit-export"), {"admin", "moderator"}),
        (reverse("generator:policy"), {"admin"}),
        (reverse("generator:usage"), {"admin", "moderator", "viewer"}),
    ):
        client.logout()
        assert client.get(url).status_code == 302, url
        for user, role in ((admin, "admin"), (moderator, "moderator"), (viewer, "viewer")):
            client.force_login(user)
            assert client.get(url).status_code == (200 if role in allowed else 403), (url, role)


# --- Suspension -------------------------------------------------------------------------------


def test_a_suspended_user_loses_pages_media_and_tokens(client, owner, moderator, teammate):
    generation = make(teammate)
    token = api_token_create(user=teammate, name="t")[1]
    client.force_login(moderator)
    response = client.post(
        reverse("accounts:member-action", args=["theo"]), {"action": "suspend", "reason": "Spam"}
    )
    assert response.status_code == 303
    teammate.refresh_from_db()
    assert teammate.member.status == "suspended"
    client.force_login(teammate)
    page = client.get("/")
    assert page.status_code == 403 and "Spam" in page.content.decode()
    assert client.get(f"/generations/{generation.uuid}/").status_code == 403
    client.logout()
    api = client.get(
        f"/v1/generations/{generation.uuid}", headers={"Authorization": f"Bearer {token}"}
    )
    assert api.status_code == 401
    event = AuditEvent.objects.get(action="member.suspend")
    assert event.actor == moderator and event.reason == "Spam"
    # A moderator cannot suspend an admin or themselves.
    admin = with_role(owner, "admin")
    client.force_login(moderator)
    client.post(
        reverse("accounts:member-action", args=[admin.username]),
        {"action": "suspend", "reason": "x"},
    )
    client.post(
        reverse("accounts:member-action", args=["mona"]), {"action": "suspend", "reason": "x"}
    )
    assert Member.objects.filter(status="suspended").count() == 1


# --- Budgets and limits ------------------------------------------------------------


def test_a_user_over_budget_is_refused_before_anything_is_queued(
    client, owner, teammate, settings, django_capture_on_commit_callbacks
):
    admin = with_role(owner, "admin")
    client.force_login(admin)
    client.post(
        reverse("accounts:member-action", args=["theo"]),
        {"action": "limits", "monthly_budget_usd": "0.05", "max_active": ""},
    )
    assert AuditEvent.objects.filter(action="member.limits").exists()
    client.force_login(teammate)
    with django_capture_on_commit_callbacks() as callbacks:
        assert client.post("/", FORM).status_code == 303  # $0.0368
        refused = client.post("/", FORM)
    assert refused.status_code == 429
    assert "over your budget of $0.05" in refused.content.decode()
    assert Generation.objects.filter(owner=teammate).count() == 1
    assert len(callbacks) == 1  # only the first was sent to the broker

    token = api_token_create(user=teammate, name="t")[1]
    api = client.post(
        "/v1/images/generations",
        data=json.dumps({"model": "flux-realism", "prompt": "x"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    # The API says 403, as the provider does for its own credits: retrying cannot help.
    assert api.status_code == 403 and "budget" in api.json()["message"]
    assert "Retry-After" not in api


def test_the_studio_budget_covers_everyone(owner, teammate, settings):
    settings.STUDIO_MONTHLY_BUDGET_USD = Decimal("0.06")
    make(owner)
    with pytest.raises(BudgetExhausted, match="studio.s budget"):
        make(teammate)


def test_failed_generations_cost_nothing(owner, settings):
    settings.USER_MONTHLY_BUDGET_USD = Decimal("0.04")
    first = make(owner)
    Generation.objects.filter(pk=first.pk).update(status="failed")
    make(owner)  # the failure freed the budget
    assert services.month_spend(owner=owner) == Decimal("0.0368")


def test_the_per_user_concurrency_limit_can_be_set_per_member(owner, teammate):
    with_role(owner, "admin")
    members.member_limits_set(user=teammate, by=owner, monthly_budget_usd=None, max_active=1)
    make(teammate)
    with pytest.raises(LimitReached, match="in progress"):
        make(teammate)


def test_a_big_batch_steps_back_in_priority(owner, teammate, settings):
    settings.GENERATION_FAIR_SHARE = 2
    settings.GENERATION_MAX_ACTIVE_PER_USER = 100
    batch = [make(owner) for _ in range(10)]
    assert [g.priority for g in batch] == [0, 0, 3, 3, 6, 6, 6, 6, 9, 9]
    assert make(teammate).priority == 0


def test_the_usage_page_shows_spending(client, owner, teammate):
    admin = with_role(owner, "admin")
    generation = make(teammate)
    services.cost_entry_record(generation=generation, images=1, usage={"credits_used": 12})
    client.force_login(teammate)
    page = client.get(reverse("generator:usage")).content.decode()
    assert "$0.04" in page and "flux-realism" in page and "The team" not in page
    client.force_login(admin)
    page = client.get(reverse("generator:usage")).content.decode()
    assert "The team" in page and "theo" in page


# --- Prompt policy -------------------------------------------------------------------------------


def test_a_blocked_prompt_is_refused_everywhere_and_logged(client, owner, teammate):
    admin = with_role(owner, "admin")
    client.force_login(admin)
    client.post(reverse("generator:policy"), {"pattern": "gore"})
    client.post(reverse("generator:policy"), {"pattern": r"blood\w*", "is_regex": "on"})
    client.force_login(teammate)
    refused = client.post("/", {**FORM, "prompt": "A castle, Gore everywhere"})
    assert refused.status_code == 400
    assert "prompt policy does not allow “gore”" in refused.content.decode()
    assert client.post("/", {**FORM, "prompt": "A gorgeous castle"}).status_code == 303
    token = api_token_create(user=teammate, name="t")[1]
    api = client.post(
        "/v1/images/generations",
        data=json.dumps({"model": "flux-realism", "prompt": "bloody moon"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert api.status_code == 400 and "prompt policy" in api.json()["message"]
    logged = AuditEvent.objects.filter(action="policy.blocked").order_by("id")
    assert [e.detail["via"] for e in logged] == ["form", "api"]
    assert logged[0].actor == teammate


# --- Audit log ---------------------------------------------------------------------


def test_the_audit_log_filters_exports_and_cannot_be_edited(client, owner, moderator):
    admin = with_role(owner, "admin")
    api_token_create(user=admin, name="=cmd|evil")
    members.member_suspend(user=moderator, by=admin, reason="Testing")
    client.force_login(admin)
    page = client.get(reverse("accounts:audit"), {"action": "token"}).content.decode()
    assert "<code>token.create</code>" in page and "<code>member.suspend</code>" not in page
    export = client.get(reverse("accounts:audit-export"), {"action": "member.suspend"})
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows[0][:3] == ["time", "actor", "action"]
    assert [r[2] for r in rows[1:]] == ["member.suspend"]
    everything = client.get(reverse("accounts:audit-export"))
    text = b"".join(everything.streaming_content).decode()
    assert "'=cmd|evil" in text  # formula injection defused
    event = AuditEvent.objects.first()
    event.reason = "rewritten"
    with pytest.raises(ValueError, match="append-only"):
        event.save()


def test_token_creation_and_revocation_are_audited(owner):
    from accounts.tokens import api_token_revoke

    token, _ = api_token_create(user=owner, name="ci")
    api_token_revoke(token=token, user=owner)
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "token.create",
        "token.revoke",
    ]


def test_default_visibility_is_a_per_user_setting(client, owner):
    client.force_login(owner)
    client.post(reverse("accounts:account"), {"default_visibility": "private"})
    owner.refresh_from_db()
    assert (
        make(type(owner).objects.select_related("member").get(pk=owner.pk)).visibility == "private"
    )
    assert can_generate(owner)
