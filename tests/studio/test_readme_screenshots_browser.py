"""The README's screenshots, taken from the offline provider's images: the studio, the
gallery with the viewer open, and the phone layout. They are written to
var/screenshots/readme/ (copy them to docs/screenshots/ to update the README), each
checked to fit its screen and to stay under 300 KB once reduced to a palette."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from PIL import Image as PILImage

from gallery import services as gallery_services
from generator import services
from generator.registry import FLUX_REALISM
from tests.conftest import run_steps, settle, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

OUT = Path(settings.BASE_DIR) / "var" / "screenshots" / "readme"
MAX_BYTES = 300_000
PROMPTS = [
    "A lighthouse on a basalt cliff at dusk, long exposure sea",
    "Paper lanterns over a night market in the rain",
    "A fox asleep in a field of blue flax, morning mist",
    "Brutalist library atrium with a single tree, soft light",
    "Tidal pools at low tide, starfish and kelp, overcast",
    "A red tram climbing a hill street in Lisbon",
]


def made(owner: Any) -> list[Any]:
    images = []
    for prompt in PROMPTS:
        body = {
            "model": "flux-realism",
            "prompt": prompt,
            "num_images": 2,
            "seed": 40 + len(images),
        }
        generation = run_steps(
            services.generation_create(owner=owner, spec=FLUX_REALISM, body=body)
        )
        # A running worker (started by an earlier test) may have taken the mirror step.
        wait_for(lambda g=generation: g.images.count() == 2, timeout=60)
        images += list(generation.images.order_by("index"))
    return images


def save(page: Any, name: str) -> Path:
    """A palette PNG of the page as shown: a tenth of the size of the full-colour one
    and indistinguishable at README scale."""
    OUT.mkdir(parents=True, exist_ok=True)
    shot = PILImage.open(io.BytesIO(page.screenshot())).convert("RGB")
    path = OUT / f"{name}.png"
    shot.quantize(colors=128, method=PILImage.Quantize.MEDIANCUT).save(path, optimize=True)
    assert path.stat().st_size < MAX_BYTES, (name, path.stat().st_size)
    return path


def fits(page: Any, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_the_readme_screenshots(browser_as, owner, provider):
    images = made(owner)
    collection = gallery_services.collection_create(owner=owner, name="Coasts")
    gallery_services.collection_add(collection=collection, images=images[:5])
    gallery_services.favourite_set(user=owner, images=images[2:4], starred=True)

    page = browser_as(owner, viewport=(1440, 900), color_scheme="light")
    page.goto("/")
    settle(page)
    fits(page, 1440)
    save(page, "studio")

    page = browser_as(owner, viewport=(1440, 900), color_scheme="dark")
    page.goto("/gallery/")
    settle(page)
    page.locator("#image-grid a[data-viewer]").nth(2).click()
    page.wait_for_selector("#viewer .image-page img")
    page.wait_for_function("document.querySelector('#viewer .image-full img').complete")
    fits(page, 1440)
    save(page, "gallery-viewer")

    # On a phone: a collection, images first, with their order buttons.
    page = browser_as(owner, viewport=(390, 844), color_scheme="light")
    page.goto(f"/gallery/collections/{collection.uuid}/")
    settle(page)
    fits(page, 390)
    save(page, "phone")
    assert page.js_errors == [] and page.console_errors == []

    # The collection pages as a designer sees them (not in the README).
    page = browser_as(owner, viewport=(1440, 900), color_scheme="dark")
    services_collections = [
        gallery_services.collection_create(owner=owner, name=name)
        for name in ("Night markets", "A much longer collection name for wrapping")
    ]
    gallery_services.collection_add(collection=services_collections[0], images=images[2:4])
    page.goto("/gallery/collections/")
    settle(page)
    save(page, "collections-wide-dark")
    phone = browser_as(owner, viewport=(390, 844), color_scheme="light")
    phone.goto("/gallery/collections/")
    settle(phone)
    fits(phone, 390)
    save(phone, "collections-phone-light")
    page.goto(f"/gallery/collections/{collection.uuid}/")
    settle(page)
    fits(page, 1440)
    save(page, "collection-wide-dark")
    page.goto("/")
    page.locator("#generation-list a[data-viewer]").first.click()
    page.wait_for_selector("#viewer .image-page img")
    save(page, "studio-viewer-wide-dark")
    page = browser_as(owner, viewport=(390, 844), color_scheme="dark")
    page.goto(f"/gallery/collections/{collection.uuid}/")
    page.locator("#collection-items a[data-viewer]").first.click()
    page.wait_for_selector("#viewer .image-page img")
    fits(page, 390)
    save(page, "collection-viewer-phone-dark")
