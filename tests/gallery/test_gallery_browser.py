"""The gallery in headless Chromium: scrolling, filters, NSFW reveal, stars, bulk ZIP,
the image page, and the same paths without JavaScript."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from PIL import Image as PILImage
from playwright.sync_api import expect

from gallery import selectors
from gallery.models import Favourite
from tests.conftest import wait_for
from tests.gallery.test_gallery import make_generation, make_image, make_series

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_the_grid_scrolls_filters_stars_and_reveals(browser_as, owner):
    images = make_series(owner, selectors.PAGE_SIZE + 4)
    flagged = images[-1]
    type(flagged).objects.filter(pk=flagged.pk).update(nsfw=True)
    page = browser_as(owner)
    page.goto("/gallery/")
    tiles = page.locator("#image-grid li.tile")
    assert tiles.count() == selectors.PAGE_SIZE
    # Thumbnails are lazy and sized, so the grid does not jump while they load.
    first = tiles.first.locator("img")
    assert first.get_attribute("loading") == "lazy" and first.get_attribute("width")
    # Infinite scroll: the "Older" sentinel loads the rest in place.
    page.locator(".pager-older a").scroll_into_view_if_needed()
    expect(tiles).to_have_count(len(images))
    # NSFW: blurred until clicked, then revealed without leaving the page.
    tile = page.locator(f"#image-{flagged.uuid}")
    assert "nsfw" in tile.get_attribute("class")
    tile.locator("a.tile-link").click()
    assert "revealed" in tile.get_attribute("class")
    assert page.url.endswith("/gallery/")
    # Star with htmx: the button swaps in place.
    tile.locator("button.star").click()
    page.wait_for_selector(f"#image-{flagged.uuid} button.star.starred")
    assert Favourite.objects.filter(user=owner, image=flagged).exists()
    # Filters update the results in place and land in the URL.
    page.fill("input[name=q]", "number 3")
    page.wait_for_url("**/gallery/?q=number*3*")
    wait_for(lambda: 0 < tiles.count() < selectors.PAGE_SIZE)
    assert page.js_errors == []


def test_bulk_zip_download_carries_parameters(browser_as, owner):
    images = make_series(owner, 3)
    page = browser_as(owner)
    page.goto("/gallery/")
    for image in images[:2]:
        page.check(f"#image-{image.uuid} input[name=image]")
    assert page.inner_text("#bulk-count") == "2 selected:"
    with page.expect_download() as info:
        page.click("button[value=zip]")
    data = open(info.value.path(), "rb").read()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert len(names) == 2
        with PILImage.open(io.BytesIO(archive.read(names[0]))) as im:
            assert "Steps: 28" in im.text["parameters"]
    assert page.js_errors == []


def test_the_image_page_links_and_copies(browser_as, owner):
    generation = make_generation(owner, "A koi pond in the rain", seed="77")
    image = make_image(generation, nsfw=True)
    page = browser_as(owner)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(f"/images/{image.uuid}/")
    figure = page.locator("figure.image-full")
    assert "nsfw" in figure.get_attribute("class")
    figure.locator(".reveal-hint").click()
    assert "revealed" in figure.get_attribute("class")
    page.click(".copy-button")
    expect(page.locator(".copy-button")).to_have_text("Copied")
    assert page.get_attribute(".image-actions .reuse-seed", "href") == f"/?reuse={generation.uuid}"
    assert "source=" + str(image.uuid) in page.get_attribute("#use-as-source", "href")
    with page.expect_download() as info:
        page.click("#download")
    with PILImage.open(info.value.path()) as im:
        assert im.text["parameters"].startswith("A koi pond in the rain\n")
    assert page.js_errors == []


def test_the_gallery_works_without_javascript(browser_as, owner):
    images = make_series(owner, selectors.PAGE_SIZE + 2)
    page = browser_as(owner, javascript=False)
    page.goto("/gallery/")
    # A click waits only for the next page to start loading, so every check after one
    # retries (expect, wait_for) until the page or the row is there: on a busy machine
    # the old page was still being read.
    tiles = page.locator("#image-grid li.tile")
    page.click(".pager-older a")
    expect(page).to_have_url(re.compile(r"before="))
    expect(tiles).to_have_count(2)
    page.click("a[rel=prev]")
    expect(tiles).to_have_count(selectors.PAGE_SIZE)
    # Filters are a plain GET form.
    page.goto("/gallery/")
    page.fill("input[name=q]", "number 7")
    page.click("#gallery-filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"q=number\+7"))
    # Star and bulk actions are plain POST forms that come back to the same page.
    target = images[-1]
    page.goto("/gallery/")
    page.click(f"#image-{target.uuid} button.star")
    wait_for(lambda: Favourite.objects.filter(user=owner, image=target).exists(), timeout=20)
    page.wait_for_load_state()
    expect(page).to_have_url(re.compile(r"/gallery/$"))
    page.check(f"#image-{target.uuid} input[name=image]")
    page.click("button[value=unstar]")
    wait_for(lambda: not Favourite.objects.filter(user=owner, image=target).exists(), timeout=20)
    # Settings: a radio form.
    page.goto("/gallery/settings/")
    page.check("input[value=hide]")
    page.click("#preferences-form button[type=submit]")
    expect(page.locator("body")).to_contain_text("Settings saved.")


def test_the_first_page_of_48_thumbnails_weighs_under_1_5_mb(browser_as, owner):
    make_series(owner, selectors.PAGE_SIZE, prompt="A lighthouse on a cliff at dusk")
    page = browser_as(owner)
    sizes: dict[str, int] = {}

    def count(response) -> None:
        try:
            sizes[response.url] = len(response.body())
        except Exception:  # redirects carry no body
            sizes[response.url] = 0

    page.on("response", count)
    # Tall enough that every lazy thumbnail of the page is in view (and none of the next).
    page.set_viewport_size({"width": 1280, "height": 9000})
    page.goto("/gallery/")
    wait_for(
        lambda: page.evaluate(
            "() => [...document.querySelectorAll('#image-grid img')]"
            ".every(i => i.complete && i.naturalWidth)"
        )
    )
    # Playwright delivers response events only while it runs, hence the short waits.
    wait_for(
        lambda: (
            page.wait_for_timeout(50)
            or sum("_thumb.webp" in url for url in sizes) == selectors.PAGE_SIZE
        )
    )
    assert sum(sizes.values()) < 1.5 * 1024 * 1024, sum(sizes.values())
