"""The studio in headless Chromium: what a user sees and clicks, with and without JS."""

from __future__ import annotations

import pytest

from generator.models import Generation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_a_user_generates_from_the_studio_with_htmx(browser_as, owner, provider, workers):
    page = browser_as(owner)
    page.goto("/")
    page.fill("textarea[name=prompt]", "A lighthouse at dusk, photographed from the sea")
    page.select_option("select[name=image_size]", "square")
    page.press("textarea[name=prompt]", "Control+Enter")
    card = page.locator("#generation-list li.card").first
    card.locator(".badge-succeeded").wait_for(timeout=40_000)
    generation = Generation.objects.get()
    assert card.get_attribute("id") == f"generation-{generation.uuid}"
    thumb = card.locator(".thumbs img").first
    thumb.wait_for()
    assert page.evaluate("(img) => img.complete && img.naturalWidth > 0", thumb.element_handle())
    assert page.js_errors == []


def test_the_studio_works_without_javascript(browser_as, owner, provider, workers):
    page = browser_as(owner, javascript=False)
    page.goto("/")
    page.fill("textarea[name=prompt]", "A red bicycle against a white wall")
    page.click("button[type=submit].primary")
    generation = Generation.objects.get()
    assert page.url.endswith(f"/generations/{generation.uuid}/")
    assert "A red bicycle" in page.content()
