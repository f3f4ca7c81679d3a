"""Report → hide → owner told → restore, in Chromium, each step in the audit log."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from generator import services
from generator.models import Generation
from generator.registry import FLUX_REALISM
from tests.conftest import run_steps

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def shared_image(owner):
    body = {"model": "flux-realism", "prompt": "a lighthouse at dusk", "image_size": "square"}
    generation = run_steps(services.generation_create(owner=owner, spec=FLUX_REALISM, body=body))
    assert generation.status == Generation.Status.SUCCEEDED, generation.error
    return generation.images.get()


def test_report_hide_notify_restore(browser_as, owner, teammate, moderator, provider):
    image = shared_image(owner)

    reporter = browser_as(teammate)
    reporter.goto(f"/images/{image.uuid}/")
    reporter.click("#report")
    reporter.check("input[name=reason][value=person]")
    reporter.fill("#report-text", "This is my neighbour")
    reporter.click("#report-form button[type=submit]")
    reporter.wait_for_url("**/gallery/")
    assert reporter.locator(f"#image-{image.uuid}").count() == 0  # held from the gallery

    mod = browser_as(moderator)
    mod.goto("/moderation/")
    item = mod.locator(f"#moderation-{image.uuid}")
    assert "This is my neighbour" in item.inner_text()
    assert item.locator(".report-count").text_content() == "1 report"
    # Keyboard: j focuses the first item; h without a reason asks for one first.
    mod.keyboard.press("j")
    mod.keyboard.press("h")
    assert mod.evaluate("document.activeElement.id") == "moderation-reason"
    mod.fill("#moderation-reason", "A real person without consent")
    item.focus()
    with mod.expect_navigation():
        mod.keyboard.press("h")
    assert mod.locator(f"#moderation-{image.uuid}").count() == 0

    own = browser_as(owner)
    own.goto("/gallery/")
    badge = own.locator("#notifications-link .badge")
    assert badge.inner_text() == "1"
    own.click("#notifications-link")
    assert "A real person without consent" in own.locator(".notifications").inner_text()
    own.goto(f"/images/{image.uuid}/")
    assert "Hidden by a moderator" in own.locator("#review-state").text_content()

    mod.goto("/moderation/?state=hidden")
    with mod.expect_navigation():
        mod.locator(f"#moderation-{image.uuid} button[data-shortcut=a]").click()
    reporter.goto("/gallery/")
    assert reporter.locator(f"#image-{image.uuid}").count() == 1

    mod.goto("/audit/")
    log = mod.locator("table.audit").inner_text()
    for action in ("moderation.report", "moderation.hide", "moderation.approve"):
        assert action in log
    assert AuditEvent.objects.filter(action="moderation.hide", actor=moderator).exists()
    for page in (reporter, mod, own):
        assert page.js_errors == []
