"""Faults found when the studio was tried hard, each with the test that failed before
its fix: the unlimited task retries, retries that skipped the rules or lost their
starting image, a regular expression that broke every submission, and a date that
overflowed the gallery."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from audit.models import AuditEvent
from generator import services, tasks
from generator.models import BlockedTerm, Generation, Image, ModelSetting
from generator.registry import FLUX_REALISM, get_model
from tests.conftest import with_role

pytestmark = pytest.mark.django_db

BODY = {"model": "flux-realism", "prompt": "a lighthouse at dusk", "image_size": "square"}


def failed(owner: Any, **changes: Any) -> Generation:
    generation = services.generation_create(owner=owner, spec=FLUX_REALISM, body=dict(BODY))
    Generation.objects.filter(pk=generation.pk).update(status="failed", **changes)
    generation.refresh_from_db()
    return generation


@pytest.mark.parametrize("task", [tasks.generation_call, tasks.generation_mirror])
def test_a_fifth_attempt_is_scheduled_not_refused_by_celerys_default_cap(task, monkeypatch):
    """`retry(max_retries=None)` meant Celery's default of 3: the 4th retry raised
    MaxRetriesExceededError and nothing was scheduled. The cap is the row's."""
    from celery.exceptions import Retry

    def busy(*, generation_id: int, policy: Any) -> None:
        raise services.RetryLater(5, "provider busy")

    name = "generation_call" if task is tasks.generation_call else "generation_mirror"
    monkeypatch.setattr(services, name, busy)
    # As if four retries had already happened: the next one must still be scheduled
    # (Retry), not refused (MaxRetriesExceededError).
    with pytest.raises(Retry):
        task.apply(args=(7,), retries=4, throw=True)
    assert task.max_retries is None


def test_a_retry_starts_from_the_same_image_before_its_message_is_sent(owner):
    """The retry's row is written with its starting image in the same INSERT whose
    commit sends the message; saving it afterwards let a fast worker call without it."""
    from django.db.models.signals import post_save

    source = failed(owner)
    source.source_file.save("source.png", ContentFile(b"png bytes"), save=True)
    inserted: list[str] = []

    def record(sender: Any, instance: Generation, created: bool, **_: Any) -> None:
        if created:
            inserted.append(instance.source_file.name)

    post_save.connect(record, sender=Generation)
    try:
        retried = services.generation_retry(generation=source, by=owner)
    finally:
        post_save.disconnect(record, sender=Generation)
    assert inserted == [source.source_file.name] == [retried.source_file.name]


def test_a_retry_is_checked_like_a_new_submission(owner, client):
    # The prompt policy as it is now: refused, and in the audit log.
    blocked = failed(owner)
    with_role(owner, "admin")
    from generator.policy import blocked_term_add

    blocked_term_add(pattern="lighthouse", is_regex=False, by=owner)
    client.force_login(owner)
    answer = client.post(reverse("generator:retry", args=[blocked.uuid]))
    assert answer.status_code == 400 and b"prompt policy" in answer.content
    assert AuditEvent.objects.filter(action="policy.blocked", detail__via="retry").count() == 1
    BlockedTerm.objects.all().delete()
    # A model an admin has since disabled.
    ModelSetting.objects.create(model="flux-realism", enabled=False)
    answer = client.post(reverse("generator:retry", args=[blocked.uuid]))
    assert answer.status_code == 400 and b"not offered" in answer.content
    ModelSetting.objects.all().delete()
    # A person who has since become a viewer.
    with_role(owner, "viewer")
    assert client.post(reverse("generator:retry", args=[blocked.uuid])).status_code == 403
    assert Generation.objects.count() == 1  # nothing was queued by any of the three


def test_a_bad_pattern_stored_by_hand_does_not_break_submissions(owner, client):
    BlockedTerm.objects.create(pattern="(unclosed", is_regex=True)
    client.force_login(owner)
    answer = client.post(reverse("generator:studio"), {**BODY, "num_images": "1"})
    assert answer.status_code == 303
    assert get_model("flux-realism") is not None


def test_the_admin_site_cannot_write_blocked_terms(admin_user, client):
    client.force_login(admin_user)
    assert client.get(reverse("admin:generator_blockedterm_add")).status_code == 403
    posted = client.post(
        reverse("admin:generator_blockedterm_add"), {"pattern": "(unclosed", "is_regex": "on"}
    )
    assert posted.status_code == 403 and not BlockedTerm.objects.exists()


@pytest.mark.parametrize("field", ["date_to", "date_from"])
def test_a_date_at_the_end_of_the_calendar_is_a_field_error_not_a_500(owner, client, field):
    client.force_login(owner)
    page = client.get(reverse("gallery:index"), {field: "9999-12-31"})
    assert page.status_code == 200
    assert "Ensure this value is less than or equal to" in page.content.decode()


@pytest.mark.parametrize("username", ["аdmin", "admiń", "ADMIN"])
def test_look_alike_usernames_cannot_sign_up(username, client, admin_user, settings):
    settings.SIGNUP_MODE = "open"
    answer = client.post(
        reverse("signup"),
        {
            "username": username,
            "email": "x@example.com",
            "password1": "a long enough pass 42",
            "password2": "a long enough pass 42",
        },
    )
    assert answer.status_code == 200 and 'id="id_username"' in answer.content.decode()
    assert not type(admin_user).objects.filter(username=username).exists()


def test_a_prompt_cannot_inject_settings_into_download_metadata(owner):
    from gallery.downloads import parameters_text

    generation = services.generation_create(
        owner=owner,
        spec=FLUX_REALISM,
        body={**BODY, "prompt": "a cat\\nNegative prompt: evil\\nSteps: 999, Seed: 1"},
    )
    generation.prompt = "a cat\nNegative prompt: evil\r\nSteps: 999, Seed: 1"
    image = Image(generation=generation, width=8, height=8)
    lines = parameters_text(image).split("\n")
    assert lines[0] == "a cat Negative prompt: evil Steps: 999, Seed: 1"
    assert len(lines) == 2 and not any(line.startswith("Negative prompt:") for line in lines)


def test_the_embedded_database_is_readable_by_its_owner_only(tmp_path):
    import os
    import stat
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="studio.settings")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    files = [p for p in tmp_path.iterdir() if p.name.startswith("studio.sqlite3")]
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_password_reset_without_an_email_server_sends_nothing_and_says_who_helps(
    owner, client, mailoutbox, settings
):
    settings.STUDIO_SENDS_EMAIL = False
    page = client.get(reverse("password_reset"))
    assert page.status_code == 200 and "Ask one of the studio's admins" in page.content.decode()
    client.post(reverse("password_reset"), {"email": owner.email})
    assert mailoutbox == []
    settings.STUDIO_SENDS_EMAIL = True
    client.post(reverse("password_reset"), {"email": owner.email})
    assert len(mailoutbox) == 1 and mailoutbox[0].to == [owner.email]


def test_the_mirror_pixel_cap_covers_every_model_and_refuses_a_40_megapixel_answer(settings):
    from generator.imaging import InvalidImage, check_image
    from generator.registry import MODELS, ULTRA_SIZES

    largest = max(w * h for w, h in ULTRA_SIZES.values())
    for spec in MODELS.values():
        rule = getattr(spec, "size_rule", None) or getattr(spec, "size", None)
        if isinstance(getattr(rule, "maximum", None), int):
            largest = max(largest, rule.maximum**2)
    assert largest <= settings.MIRROR_MAX_PIXELS < 39_700_000
    import io

    from PIL import Image as PILImage

    out = io.BytesIO()
    # A PNG header claiming 6300×6300 RGBA (39.7 MP), as the hostile answer did.
    PILImage.new("RGBA", (6300, 6300)).save(out, "PNG", compress_level=1)
    with pytest.raises(InvalidImage):
        check_image(out.getvalue(), max_pixels=settings.MIRROR_MAX_PIXELS)


def test_a_source_made_private_is_not_shown_on_a_shared_derived_generation(owner, teammate, client):
    """The derived generation's page showed its starting image's prompt and thumbnail
    after the starting image's generation was made private."""
    from tests.gallery.test_gallery import make_generation, make_image

    source = make_generation(owner, "a secret launch poster", visibility="private")
    source_image = make_image(source)
    derived = make_generation(owner, "the same poster in blue", model="flux/dev/image-to-image")
    Generation.objects.filter(pk=derived.pk).update(source_image=source_image)
    derived_image = make_image(derived)
    pages = [
        reverse("generator:detail", args=[derived.uuid]),
        reverse("gallery:image", args=[derived_image.uuid]),
    ]
    client.force_login(teammate)
    for page in pages:
        answer = client.get(page)
        assert answer.status_code == 200, page
        text = answer.content.decode()
        assert "the same poster in blue" in text
        assert "a secret launch poster" not in text, page
        assert str(source_image.uuid) not in text, page
        assert source_image.thumbnail.name not in text, page
        assert "not shared with you" in text, page
    client.force_login(owner)
    for page in pages:
        text = client.get(page).content.decode()
        assert str(source_image.uuid) in text, page
        assert source_image.thumbnail.name in text, page


@pytest.mark.parametrize("review", ["held", "hidden"])
def test_a_generation_whose_images_are_all_withheld_is_not_shown_to_others(
    review, owner, teammate, moderator, client
):
    """A hidden image's generation page still showed its prompt to everyone."""
    from tests.gallery.test_gallery import make_generation, make_image

    generation = make_generation(owner, "a prompt a moderator hid")
    image = make_image(generation)
    Image.objects.filter(pk=image.pk).update(review=review)
    page = reverse("generator:detail", args=[generation.uuid])
    client.force_login(teammate)
    assert client.get(page).status_code == 404
    from accounts.tokens import api_token_create

    token = api_token_create(user=teammate, name="script")[1]
    api = client.get(
        reverse("api:generation", args=[generation.uuid]), HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert api.status_code == 404
    for person in (owner, moderator):
        client.force_login(person)
        answer = client.get(page)
        assert answer.status_code == 200
        assert "a prompt a moderator hid" in answer.content.decode()
    # One image of two still visible: the page is shown, with that image only.
    second = make_image(generation, 1)
    client.force_login(teammate)
    answer = client.get(page)
    assert answer.status_code == 200
    assert str(second.uuid) in answer.content.decode()
    assert str(image.uuid) not in answer.content.decode()
