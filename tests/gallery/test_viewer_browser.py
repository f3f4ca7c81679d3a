"""The in-app viewer in Chromium: a gallery tile opens its image in a dialog, arrow
keys step through the list in its order, Esc and Back close it, the address bar names
the open image; without JavaScript the tile is a link to the image page."""

from __future__ import annotations

from typing import Any

import pytest

from generator import services
from generator.models import Image
from generator.registry import FLUX_REALISM
from tests.conftest import run_steps, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def gallery_of(owner: Any, generations: int = 2) -> list[Image]:
    for i in range(generations):
        body = {"model": "flux-realism", "prompt": f"A harbour at dawn, take {i}", "num_images": 2}
        generation = run_steps(
            services.generation_create(owner=owner, spec=FLUX_REALISM, body=body)
        )
        # A running worker (started by an earlier test) may have taken the mirror step.
        wait_for(lambda g=generation: g.images.count() == 2, timeout=60)
    # The gallery's order: newest first.
    return list(Image.objects.order_by("-created_at", "-id"))


def test_a_tile_opens_the_viewer_and_the_keys_step_and_close(browser_as, owner, provider):
    images = gallery_of(owner)
    page = browser_as(owner)
    page.goto("/gallery/")
    first = page.locator("#image-grid .tile-link").first
    first.click()
    viewer = page.locator("#viewer")
    page.wait_for_selector(f"#viewer #viewer-{images[0].uuid}")
    assert page.evaluate("document.getElementById('viewer').open")
    assert page.url.endswith(f"/images/{images[0].uuid}/")
    assert viewer.locator(".viewer-position").inner_text() == f"1 of {len(images)}"
    assert viewer.locator("#image-seed").inner_text()  # the facts come with it

    page.keyboard.press("ArrowRight")
    page.wait_for_selector(f"#viewer #viewer-{images[1].uuid}")
    assert page.url.endswith(f"/images/{images[1].uuid}/")
    page.keyboard.press("ArrowLeft")
    page.wait_for_selector(f"#viewer #viewer-{images[0].uuid}")

    page.keyboard.press("Escape")
    page.wait_for_function("!document.getElementById('viewer').open")
    page.wait_for_url("**/gallery/")
    # Focus goes back to the tile it came from.
    assert page.evaluate("document.activeElement.classList.contains('tile-link')")
    assert page.js_errors == [] and page.console_errors == []


def test_back_closes_the_viewer_and_a_shared_address_opens_the_image(browser_as, owner, provider):
    images = gallery_of(owner, 1)
    page = browser_as(owner)
    page.goto("/gallery/")
    page.locator("#image-grid .tile-link").nth(1).click()
    page.wait_for_selector(f"#viewer #viewer-{images[1].uuid}")
    shared = page.url
    page.go_back()
    page.wait_for_function("!document.getElementById('viewer').open")
    assert page.url.endswith("/gallery/")
    # The address the viewer showed is the image's own page.
    page.goto(shared)
    assert page.locator(f"article#image-{images[1].uuid}").count() == 1


def test_without_javascript_a_tile_is_a_link_to_the_image_page(browser_as, owner, provider):
    images = gallery_of(owner, 1)
    page = browser_as(owner, javascript=False)
    page.goto("/gallery/")
    page.locator("#image-grid .tile-link").first.click()
    page.wait_for_url(f"**/images/{images[0].uuid}/")
    assert page.locator(f"article#image-{images[0].uuid}").count() == 1
