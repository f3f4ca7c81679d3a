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


def open_and_step(page: Any, order: list[str], list_url: str) -> None:
    """Click the first image of the list on `page`: the viewer opens it, → steps to the
    second, Esc closes and puts the address back; the second time Back closes it."""
    page.locator("a[data-viewer]").first.click()
    page.wait_for_selector(f"#viewer #viewer-{order[0]}")
    assert page.evaluate("document.getElementById('viewer').open")
    assert page.url.endswith(f"/images/{order[0]}/") or f"/images/{order[0]}/?" in page.url
    viewer = page.locator("#viewer")
    assert viewer.locator(".viewer-position").inner_text() == f"1 of {len(order)}"
    for fact in ("#image-seed", "#image-author", "#use-as-source", "#download"):
        assert viewer.locator(fact).count() == 1, fact
    page.keyboard.press("ArrowRight")
    page.wait_for_selector(f"#viewer #viewer-{order[1]}")
    assert f"/images/{order[1]}/" in page.url
    page.keyboard.press("Escape")
    page.wait_for_function("!document.getElementById('viewer').open")
    page.wait_for_function("path => location.pathname + location.search === path", arg=list_url)
    assert page.evaluate("document.activeElement.matches('a[data-viewer]')")
    page.locator("a[data-viewer]").nth(1).click()
    page.wait_for_selector(f"#viewer #viewer-{order[1]}")
    page.go_back()
    page.wait_for_function("!document.getElementById('viewer').open")
    page.wait_for_function("path => location.pathname + location.search === path", arg=list_url)
    assert page.js_errors == [] and page.console_errors == []


def test_the_studio_opens_its_thumbnails_in_the_viewer(browser_as, owner, provider):
    gallery_of(owner)
    page = browser_as(owner)
    page.goto("/")
    links = page.locator("#generation-list a[data-viewer]")
    wait_for(lambda: links.count() == 4)
    order = [link.split("/")[2] for link in links.evaluate_all("l => l.map(a => a.dataset.viewer)")]
    open_and_step(page, order, "/")
    # The viewer's actions work over the studio too: the star, for one.
    links.first.click()
    star = page.locator(f"#viewer-star-{order[0]}")
    star.click()
    page.wait_for_selector(f"#viewer-star-{order[0]}[aria-pressed=true]")
    assert Image.objects.get(uuid=order[0]).favourites.filter(user=owner).exists()
    assert page.js_errors == [] and page.console_errors == []


def test_a_collection_opens_its_images_in_the_viewer_in_its_own_order(browser_as, owner, provider):
    from gallery import services as gallery_services

    images = gallery_of(owner)
    collection = gallery_services.collection_create(owner=owner, name="Harbours")
    # Oldest first: not the gallery's order, so the viewer must follow the collection's.
    chosen = [images[3], images[0], images[2]]
    gallery_services.collection_add(collection=collection, images=chosen)
    page = browser_as(owner)
    url = f"/gallery/collections/{collection.uuid}/"
    page.goto(url)
    open_and_step(page, [str(image.uuid) for image in chosen], url)


def test_without_javascript_a_studio_thumbnail_opens_the_generation(browser_as, owner, provider):
    images = gallery_of(owner, 1)
    page = browser_as(owner, javascript=False)
    page.goto("/")
    page.locator("#generation-list a[data-viewer]").first.click()
    page.wait_for_url(f"**/generations/{images[0].generation.uuid}/")
