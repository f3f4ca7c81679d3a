"""The studio in headless Chromium: what a user sees and clicks, with and without JS."""

from __future__ import annotations

from pathlib import Path

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
    # Loaded, not just in the page: a busy machine may take a moment to send it.
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 0", arg=thumb.element_handle(), timeout=20_000
    )
    assert page.js_errors == []


def test_the_studio_works_without_javascript(browser_as, owner, provider, workers):
    page = browser_as(owner, javascript=False)
    page.goto("/")
    page.fill("textarea[name=prompt]", "A red bicycle against a white wall")
    page.click("button[type=submit].primary")
    generation = Generation.objects.get()
    assert page.url.endswith(f"/generations/{generation.uuid}/")
    assert "A red bicycle" in page.content()


def test_image_to_image_from_a_gallery_image_links_back(browser_as, owner, provider, workers):
    page = browser_as(owner)
    page.goto("/")
    page.fill("textarea[name=prompt]", "A red door in a white wall")
    page.select_option("select[name=image_size]", "square")
    page.click("button[type=submit].primary")
    page.locator("#generation-list .badge-succeeded").first.wait_for(timeout=40_000)
    source = Generation.objects.get()

    # From the shared gallery: the image's page offers it as a starting image.
    image = source.images.get()
    page.goto("/gallery/")
    page.click(f"a[href='/images/{image.uuid}/']")
    page.click("#use-as-source")
    page.locator("#source-preview img").wait_for()
    assert page.locator("select[name=model]").input_value() == "flux/dev/image-to-image"
    assert page.locator("input[name=guidance_scale]").count() == 1
    page.fill("textarea[name=prompt]", "The same door, painted blue")
    page.click("button[type=submit].primary")
    # The new card arrives first in the list (a locator wait: the CSP forbids eval).
    page.locator("#generation-list li.card").nth(1).wait_for()
    page.locator("#generation-list li.card").first.locator(".badge-succeeded").wait_for(
        timeout=40_000
    )
    result = Generation.objects.exclude(pk=source.pk).get()
    assert result.source_image.generation == source

    page.goto(f"/generations/{result.uuid}/")
    link = page.locator(".source-link a")
    assert link.get_attribute("href") == f"/images/{image.uuid}/"
    assert page.locator(".images img").first.evaluate("img => img.naturalWidth") == 512
    page.goto(f"/images/{result.images.get().uuid}/")
    page.click("#image-source a")
    assert page.url.endswith(f"/images/{image.uuid}/")
    assert page.js_errors == []


def test_switching_models_swaps_the_fields(browser_as, owner):
    page = browser_as(owner)
    page.goto("/")
    page.select_option("select[name=model]", "recraft-v3")
    page.locator("select[name=style]").wait_for()
    assert page.locator("input[name=guidance_scale]").count() == 0
    assert "per image" in page.locator("#model-price").inner_text()
    assert page.locator("option[value=dall-e-3]").get_attribute("disabled") is not None
    page.screenshot(path=str(Path(__file__).parents[2] / "var" / "studio-recraft.png"))
    assert page.js_errors == []
