"""Held for review, reports, the moderation queue and its one write path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from accounts.models import Notification
from audit.models import AuditEvent
from gallery import selectors as moderation_selectors
from gallery import services as moderation
from gallery.models import Report
from generator import services
from generator.models import Generation, Image
from generator.registry import FLUX_REALISM

pytestmark = pytest.mark.django_db


def finished(owner: Any, prompt: str = "a quiet harbour", **params: Any) -> Image:
    body = {"model": "flux-realism", "prompt": prompt, "image_size": "square", **params}
    generation = services.generation_create(owner=owner, spec=FLUX_REALISM, body=body)
    services.generation_call(generation_id=generation.pk)
    services.generation_mirror(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.status == "succeeded", generation.error
    return generation.images.get()


def gallery_uuids(client: Any) -> str:
    return client.get(reverse("gallery:index"), {"nsfw": "show"}).content.decode()


def test_a_flagged_image_is_held_until_a_moderator_approves_it(
    client, owner, teammate, moderator, provider
):
    image = finished(owner, "a nude figure study in charcoal")
    assert image.nsfw and image.review == "held" and image.review_reason == "flagged"
    client.force_login(teammate)
    assert str(image.uuid) not in gallery_uuids(client)
    assert client.get(reverse("gallery:image", args=[image.uuid])).status_code == 404
    assert client.get(reverse("generator:media", args=[image.file.name])).status_code == 404
    client.force_login(owner)
    own = client.get(reverse("gallery:image", args=[image.uuid]))
    assert own.status_code == 200

    client.force_login(moderator)
    queue = client.get(reverse("gallery:moderation")).content.decode()
    assert f'id="moderation-{image.uuid}"' in queue and "Flagged NSFW" in queue
    client.post(reverse("gallery:decide"), {"one": f"approve:{image.uuid}"})
    client.force_login(teammate)
    assert str(image.uuid) in gallery_uuids(client)
    assert Notification.objects.filter(user=owner, text__contains="approved").exists()
    assert AuditEvent.objects.filter(action="moderation.approve", actor=moderator).count() == 1


def test_a_report_holds_the_image_and_duplicates_merge(client, owner, teammate, viewer, provider):
    image = finished(owner)
    client.force_login(teammate)
    form = client.get(reverse("gallery:report", args=[image.uuid]))
    assert form.status_code == 200 and 'name="reason"' in form.content.decode()
    client.post(reverse("gallery:report", args=[image.uuid]), {"reason": "spam"})
    image.refresh_from_db()
    assert image.review == "held" and image.review_reason == "reported"
    # Held: the reporter and everyone else but the owner no longer see it.
    assert str(image.uuid) not in gallery_uuids(client)
    client.force_login(viewer)
    assert str(image.uuid) not in gallery_uuids(client)
    # A second report by the same person (a double submit) updates the first.
    moderation.image_report(image=image, reporter=teammate, reason="hateful", text="slur")
    moderation.image_report(image=image, reporter=viewer, reason="hateful")
    assert Report.objects.filter(image=image).count() == 2
    assert Report.objects.get(reporter=teammate).reason == "hateful"
    queue = moderation_selectors.moderation_queue()
    assert [(i.pk, i.report_count) for i in queue] == [(image.pk, 2)]


def test_nobody_reports_their_own_or_an_unseen_image(client, owner, outsider, provider):
    image = finished(owner)
    Generation.objects.update(visibility="private")
    client.force_login(owner)
    refused = client.post(reverse("gallery:report", args=[image.uuid]), {"reason": "spam"})
    assert refused.status_code == 400
    client.force_login(outsider)
    assert (
        client.post(reverse("gallery:report", args=[image.uuid]), {"reason": "spam"}).status_code
        == 404
    )
    assert not Report.objects.exists()


def test_hide_needs_a_reason_tells_the_owner_and_restore_brings_it_back(
    client, owner, teammate, moderator, provider
):
    image = finished(owner)
    moderation.image_report(image=image, reporter=teammate, reason="person")
    client.force_login(moderator)
    client.post(reverse("gallery:decide"), {"one": f"hide:{image.uuid}"})
    image.refresh_from_db()
    assert image.review == "held"  # no reason, no decision
    client.post(reverse("gallery:decide"), {"one": f"hide:{image.uuid}", "reason": "Real person"})
    image.refresh_from_db()
    assert image.review == "hidden" and image.review_reason == "Real person"
    assert Report.objects.get().outcome == "hide"
    note = Notification.objects.get(user=owner)
    assert "Real person" in note.text
    client.force_login(owner)
    page = client.get(reverse("gallery:image", args=[image.uuid])).content.decode()
    assert "Real person" in page  # the owner sees why
    client.force_login(moderator)
    hidden = client.get(reverse("gallery:moderation"), {"state": "hidden"}).content.decode()
    assert f'id="moderation-{image.uuid}"' in hidden
    client.post(reverse("gallery:decide"), {"one": f"approve:{image.uuid}", "state": "hidden"})
    image.refresh_from_db()
    assert image.review == "visible"
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions[-3:] == ["moderation.report", "moderation.hide", "moderation.approve"]


def test_bulk_delete_removes_rows_and_files(
    client, owner, teammate, moderator, provider, django_capture_on_commit_callbacks
):
    first, second = finished(owner, "one"), finished(owner, "two")
    for image in (first, second):
        moderation.image_report(image=image, reporter=teammate, reason="spam")
    paths = [Path(first.file.path), Path(second.thumbnail.path)]
    assert all(p.exists() for p in paths)
    client.force_login(moderator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("gallery:decide"),
            {"image": [str(first.uuid), str(second.uuid)], "decision": "delete", "reason": "Spam"},
        )
    assert response.status_code == 303
    assert not Image.objects.filter(pk__in=[first.pk, second.pk]).exists()
    assert not any(p.exists() for p in paths)
    assert AuditEvent.objects.filter(action="moderation.delete").count() == 2


@pytest.mark.parametrize("persona", ["owner", "teammate", "viewer"])
def test_only_moderators_reach_the_queue(client, request, persona, provider):
    user = request.getfixturevalue(persona)
    client.force_login(user)
    assert client.get(reverse("gallery:moderation")).status_code == 403
    assert client.post(reverse("gallery:decide"), {"decision": "approve"}).status_code == 403


def test_the_queue_costs_a_fixed_number_of_queries(
    client, owner, teammate, moderator, provider, django_assert_max_num_queries
):
    for n in range(3):
        moderation.image_report(image=finished(owner, f"p{n}"), reporter=teammate, reason="spam")
    client.force_login(moderator)
    with django_assert_max_num_queries(12) as small:
        client.get(reverse("gallery:moderation"))
    for n in range(5):
        moderation.image_report(image=finished(owner, f"q{n}"), reporter=teammate, reason="spam")
    with django_assert_max_num_queries(len(small.captured_queries)):
        client.get(reverse("gallery:moderation"))


def test_a_report_after_a_decision_queues_without_hiding_and_shows_the_repeat_reporter(
    client, owner, teammate, moderator, provider
):
    image = finished(owner)
    moderation.image_report(image=image, reporter=teammate, reason="spam")
    image.refresh_from_db()
    moderation.moderation_decide(images=[image], decision="approve", by=moderator)
    image.refresh_from_db()
    # Reported again by the same person: the team still sees it, a moderator is asked.
    moderation.image_report(image=image, reporter=teammate, reason="spam")
    image.refresh_from_db()
    assert image.review == "visible"
    queue = list(moderation_selectors.moderation_queue())
    assert [i.pk for i in queue] == [image.pk]
    assert queue[0].open_reports[0].overruled == 1
    client.force_login(moderator)
    page = client.get(reverse("gallery:moderation")).content.decode()
    assert "reported it 1 time before and was overruled" in page
