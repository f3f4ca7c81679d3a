"""accounts/rules.py: every rule, for every persona; the queryset form of "who may see"
agrees with the object rules; roles are groups, so changing one changes what a person
may do, whichever way it is changed."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from accounts import rules
from accounts import services as members
from accounts.errors import Refused
from accounts.models import Member
from audit.models import AuditEvent
from generator import selectors, services
from generator.models import Generation, Image
from generator.registry import FLUX_REALISM
from tests.conftest import PASSWORD, with_role

pytestmark = pytest.mark.django_db

PERSONAS = ("owner", "teammate", "viewer", "moderator", "admin", "suspended", "pending")


@pytest.fixture
def people(owner, teammate, viewer, moderator, suspended, admin_user, django_user_model):
    pending = django_user_model.objects.create_user("paul", "paul@example.com", PASSWORD)
    with_role(pending, "member", status="pending")
    return {
        "owner": owner,
        "teammate": teammate,
        "viewer": viewer,
        "moderator": moderator,
        "admin": admin_user,
        "suspended": suspended,
        "pending": pending,
    }


# Who holds each capability, by persona (pending and suspended hold none).
CAPABILITY_HOLDERS = {
    "may_generate": {"owner", "teammate", "moderator", "admin"},
    "may_moderate": {"moderator", "admin"},
    "may_manage_members": {"admin"},
    "may_set_budgets": {"admin"},
    "may_enable_models": {"admin"},
    "may_edit_policy": {"admin"},
    "may_view_members": {"moderator", "admin"},
    "may_view_audit": {"moderator", "admin"},
    "may_view_team_spending": {"admin"},
    "may_invite": {"admin"},
    "is_active": {"owner", "teammate", "viewer", "moderator", "admin"},
}
# Rules about an object, each proven by the tests named beside it.
OBJECT_RULES = {
    "may_see_generation": "test_who_may_see_agrees_with_the_selectors",
    "may_see_image": "test_who_may_see_agrees_with_the_selectors",
    "may_see_source": "test_a_starting_image_is_shown_to_who_may_see_it",
    "may_change_visibility": "test_object_rules_for_each_persona",
    "may_retry": "test_object_rules_for_each_persona",
    "may_cancel": "test_who_may_cancel_and_rerun_a_job",
    "may_rerun": "test_who_may_cancel_and_rerun_a_job",
    "may_report": "test_object_rules_for_each_persona",
    "may_delete_image": "test_object_rules_for_each_persona",
    "may_delete_own_image": "test_object_rules_for_each_persona",
    "may_revoke_token": "test_object_rules_for_each_persona",
    "suspend_refusal": "test_who_may_suspend_reinstate_and_approve_whom",
    "reinstate_refusal": "test_who_may_suspend_reinstate_and_approve_whom",
    "may_approve": "test_who_may_suspend_reinstate_and_approve_whom",
    "may_change_role": "test_who_may_suspend_reinstate_and_approve_whom",
    "may_set_limits": "test_who_may_suspend_reinstate_and_approve_whom",
}
HELPERS = {"require", "status_of", "has_capability"}


def test_every_rule_is_in_a_matrix():
    defined = {
        name
        for name, value in inspect.getmembers(rules, inspect.isfunction)
        if value.__module__ == rules.__name__
    }
    assert defined == set(CAPABILITY_HOLDERS) | set(OBJECT_RULES) | HELPERS
    for test in set(OBJECT_RULES.values()):
        assert test in globals()


def test_capabilities_for_each_persona(people):
    for rule, holders in CAPABILITY_HOLDERS.items():
        check = getattr(rules, rule)
        got = {persona for persona, user in people.items() if check(user)}
        assert got == holders, rule


def _generation(owner: Any, visibility: str, status: str = "succeeded") -> Generation:
    body = {"model": "flux-realism", "prompt": f"{visibility} {status}", "image_size": "square"}
    generation = services.generation_create(
        owner=owner, spec=FLUX_REALISM, body=body, visibility=visibility
    )
    Generation.objects.filter(pk=generation.pk).update(status=status)
    generation.refresh_from_db()
    return generation


def _image(generation: Generation, index: int, review: str) -> Image:
    return Image.objects.create(
        generation=generation,
        index=index,
        file=f"generations/{generation.uuid}/{index}.png",
        thumbnail=f"generations/{generation.uuid}/{index}_thumb.webp",
        width=8,
        height=8,
        format="png",
        bytes=1,
        sha256="0" * 64,
        review=review,
    )


def test_who_may_see_agrees_with_the_selectors(people):
    """The queryset form (generator.selectors) and the object form (accounts.rules) of
    the same rule give the same answer for every persona and every object state."""
    images = []
    for visibility in ("private", "shared"):
        generation = _generation(people["owner"], visibility)
        for index, review in enumerate(("visible", "held", "hidden")):
            images.append(_image(generation, index, review))
    # Shared, but every image withheld: the generation (and its prompt) is withheld too.
    withheld = _generation(people["owner"], "shared")
    images.append(_image(withheld, 0, "held"))
    images.append(_image(withheld, 1, "hidden"))
    checked = 0
    for persona, user in people.items():
        seen_generations = set(selectors.generations_visible_to(user).values_list("pk", flat=True))
        seen_images = set(selectors.images_visible_to(user).values_list("pk", flat=True))
        for image in images:
            generation = image.generation
            assert rules.may_see_generation(user, generation) == (
                generation.pk in seen_generations
            ), (persona, generation.visibility)
            assert rules.may_see_image(user, image, generation) == (image.pk in seen_images), (
                persona,
                generation.visibility,
                image.review,
            )
            checked += 1
    assert checked == len(PERSONAS) * 8


def test_a_starting_image_is_shown_to_who_may_see_it(people):
    source = _generation(people["owner"], "private")
    source_image = _image(source, 0, "visible")
    derived = _generation(people["owner"], "shared")
    assert not rules.may_see_source(people["owner"], derived)  # none to show
    derived.source_image = source_image
    for persona, user in people.items():
        assert rules.may_see_source(user, derived) == rules.may_see_image(
            user, source_image, source
        ), persona
    assert rules.may_see_source(people["owner"], derived)
    assert not rules.may_see_source(people["teammate"], derived)


def test_object_rules_for_each_persona(people):
    from accounts.tokens import api_token_create

    shared = _generation(people["owner"], "shared", status="failed")
    private = _generation(people["owner"], "private")
    visible = _image(private, 0, "visible")
    shared_held = _image(shared, 0, "held")
    token, _ = api_token_create(user=people["owner"], name="ci")
    expected = {
        # persona: (change visibility, retry, report the shared held image,
        #           report the private one, delete, revoke the owner's token,
        #           delete in bulk as one's own)
        "owner": (True, True, False, False, True, True, True),
        "teammate": (False, False, True, False, False, False, False),
        "viewer": (False, False, True, False, False, False, False),
        "moderator": (True, False, True, True, True, False, False),
        "admin": (True, False, True, True, True, True, False),
        "suspended": (False, False, False, False, False, False, False),
        "pending": (False, False, False, False, False, False, False),
    }
    for persona, user in people.items():
        got = (
            rules.may_change_visibility(user, private),
            rules.may_retry(user, shared),
            rules.may_report(user, shared_held, shared),
            rules.may_report(user, visible, private),
            rules.may_delete_image(user, private),
            rules.may_revoke_token(user, token),
            rules.may_delete_own_image(user, private),
        )
        assert got == expected[persona], persona


def test_who_may_cancel_and_rerun_a_job(people):
    shared = _generation(people["owner"], "shared", status="running")
    # Cancelling stops someone's spending: the owner or an admin, not a moderator.
    cancel = {persona for persona, user in people.items() if rules.may_cancel(user, shared)}
    assert cancel == {"owner", "admin"}
    rerun = {persona for persona, user in people.items() if rules.may_rerun(user, shared)}
    assert rerun == {"owner"}
    # An owner who may no longer generate still stops their own job.
    with_role(people["owner"], "viewer")
    assert rules.may_cancel(people["owner"], shared)
    assert not rules.may_rerun(people["owner"], shared)


def test_who_may_suspend_reinstate_and_approve_whom(people, client):
    admin, moderator = people["admin"], people["moderator"]
    other_moderator = with_role(people["teammate"], "moderator")
    # A moderator suspends members, not moderators or admins, and not pending sign-ups.
    assert rules.suspend_refusal(moderator, people["owner"], "member") is None
    assert "Only an admin" in rules.suspend_refusal(moderator, other_moderator, "moderator")
    assert "Admins" in rules.suspend_refusal(moderator, admin, "admin")
    assert "approval" in rules.suspend_refusal(moderator, people["pending"], "member")
    assert "yourself" in rules.suspend_refusal(admin, admin, "admin")
    # "Reinstate" lifts a suspension only: a moderator cannot approve a sign-up through
    # it, nor undo an admin's suspension of a moderator.
    assert "Only a suspended" in rules.reinstate_refusal(moderator, people["pending"], "member")
    with pytest.raises(Refused):
        members.member_reinstate(user=people["pending"], by=moderator)
    members.member_suspend(user=other_moderator, by=admin, reason="Testing")
    with pytest.raises(Refused, match="Only an admin"):
        members.member_reinstate(user=other_moderator, by=moderator)
    members.member_reinstate(user=other_moderator, by=admin)
    # Through the members page, the refusal is a message and nothing changes.
    client.force_login(moderator)
    client.post(
        reverse("accounts:member-action", args=[people["pending"].username]),
        {"action": "reinstate"},
    )
    assert Member.objects.get(user=people["pending"]).status == "pending"
    # Approving is an admin's, and only of a pending sign-up.
    assert not rules.may_approve(moderator, people["pending"])
    assert not rules.may_approve(admin, people["owner"])
    assert rules.may_approve(admin, people["pending"])
    assert rules.may_change_role(admin, people["owner"])
    assert not rules.may_change_role(moderator, people["owner"])
    assert rules.may_set_limits(admin, people["owner"])
    assert not rules.may_set_limits(moderator, people["owner"])


def test_a_role_changed_on_the_members_page_changes_what_they_may_do(people, client):
    owner = people["owner"]
    client.force_login(people["admin"])
    client.post(
        reverse("accounts:member-action", args=[owner.username]),
        {"action": "role", "role": "viewer"},
    )
    owner = type(owner).objects.get(pk=owner.pk)
    assert not rules.may_generate(owner)
    client.force_login(owner)
    refused = client.post(reverse("generator:studio"), {"model": "flux-realism", "prompt": "x"})
    assert refused.status_code == 403
    # Made an admin there, they become a superuser (and stop being one with the role).
    client.force_login(people["admin"])
    client.post(
        reverse("accounts:member-action", args=[owner.username]),
        {"action": "role", "role": "admin"},
    )
    owner = type(owner).objects.get(pk=owner.pk)
    assert owner.is_superuser and owner.is_staff and rules.may_set_budgets(owner)
    client.post(
        reverse("accounts:member-action", args=[owner.username]),
        {"action": "role", "role": "member"},
    )
    owner = type(owner).objects.get(pk=owner.pk)
    assert not owner.is_superuser and rules.may_generate(owner) and not rules.may_moderate(owner)
    events = AuditEvent.objects.filter(action="member.role").order_by("id")
    assert [e.detail.get("new") for e in events] == ["viewer", "admin", "member"]


def test_a_group_edited_in_the_admin_site_changes_what_they_may_do(people, client):
    owner, admin = people["owner"], people["admin"]
    members_group = Group.objects.get(name="Members")
    client.force_login(admin)
    page = reverse("admin:auth_group_change", args=[members_group.pk])
    assert client.get(page).status_code == 200
    # The admin takes "generate" away from the Members group.
    answer = client.post(page, {"name": "Members", "permissions": []})
    assert answer.status_code == 302
    owner = type(owner).objects.get(pk=owner.pk)
    assert not rules.may_generate(owner)
    # One person can be given a capability of their own.
    owner.user_permissions.add(Permission.objects.get(codename="enable_models"))
    owner = type(owner).objects.get(pk=owner.pk)
    assert rules.may_enable_models(owner) and not rules.may_edit_policy(owner)
    # Putting someone in the Admins group (as the admin site's user page does) makes
    # them a superuser, audited; taking them out clears it.
    owner.groups.add(Group.objects.get(name="Admins"))
    owner = type(owner).objects.get(pk=owner.pk)
    assert owner.is_superuser and owner.is_staff
    event = AuditEvent.objects.filter(action="member.role", target_id=str(owner.pk)).last()
    assert event.detail["via"] == "admin site" and event.detail["superuser"] is True
    owner.groups.remove(Group.objects.get(name="Admins"))
    owner = type(owner).objects.get(pk=owner.pk)
    assert not owner.is_superuser and not owner.is_staff


def test_the_superuser_flag_cannot_be_ticked_in_the_admin_site(people, client):
    client.force_login(people["admin"])
    page = client.get(reverse("admin:auth_user_change", args=[people["owner"].pk]))
    assert page.status_code == 200
    assert 'name="is_superuser"' not in page.content.decode()


def test_createsuperuser_makes_an_admin(django_user_model):
    from django.core.management import call_command

    call_command("createsuperuser", "--noinput", username="root", email="root@example.com")
    root = django_user_model.objects.get(username="root")
    from accounts.roles import role_of

    assert role_of(root) == "admin" and Member.objects.filter(user=root).exists()
