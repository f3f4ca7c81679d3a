"""Keyboard and screen-reader use in Chromium: axe-core on every page in both themes
(no serious or critical violation), the skip link, a visible focus ring, arrow keys
between gallery tiles, and focus kept on a star button that htmx swaps."""

from __future__ import annotations

from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe

from gallery import services as gallery_services
from generator import services
from generator.registry import FLUX_REALISM
from tests.conftest import run_steps, settle, wait_for, with_role

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

THEMES = ("light", "dark")
AXE = Axe()


def images_of(owner: Any, generations: int = 2) -> list[Any]:
    made = []
    for i in range(generations):
        body = {"model": "flux-realism", "prompt": f"A quiet harbour, study {i}", "num_images": 2}
        generation = run_steps(
            services.generation_create(owner=owner, spec=FLUX_REALISM, body=body)
        )
        # A running worker (started by an earlier test) may have taken the mirror step.
        wait_for(lambda g=generation: g.images.count() == 2, timeout=60)
        made += list(generation.images.order_by("index"))
    return made


def serious(page: Any, where: str) -> list[str]:
    """The serious and critical axe violations on the page as it is now, one line each
    (rule, impact, the first few offending elements)."""
    results = AXE.run(page)
    assert results.response["passes"], f"axe checked nothing on {where}"
    found = []
    for violation in results.response["violations"]:
        if violation["impact"] not in ("serious", "critical"):
            continue
        targets = [" ".join(map(str, node["target"])) for node in violation["nodes"][:4]]
        found.append(f"{where}: {violation['id']} ({violation['impact']}) at {targets}")
    return found


def test_axe_finds_nothing_serious_on_any_page_in_either_theme(
    browser, browser_as, live_server, owner, teammate, provider
):
    admin = with_role(owner, "admin")
    images = images_of(admin)
    collection = gallery_services.collection_create(owner=admin, name="Harbours")
    gallery_services.collection_add(collection=collection, images=images[:3])
    gallery_services.image_report(image=images[0], reporter=teammate, reason="spam")
    pages = {
        "studio": "/",
        "gallery": "/gallery/",
        "image": f"/images/{images[1].uuid}/",
        "generation": f"/generations/{images[1].generation.uuid}/",
        "collections": "/gallery/collections/",
        "collection": f"/gallery/collections/{collection.uuid}/",
        "moderation": "/moderation/",
        "members": "/members/",
        "audit": "/audit/",
        "usage": "/usage/",
        "tokens": "/account/tokens/",
        "account": "/account/settings/",
        "notifications": "/notifications/",
        "models": "/models/",
        "policy": "/policy/",
        "gallery-settings": "/gallery/settings/",
        "not-found": "/no-such-page/",
    }
    problems: list[str] = []
    for theme in THEMES:
        page = browser_as(admin, color_scheme=theme)
        for name, path in pages.items():
            response = page.goto(path)
            assert response.status == (404 if name == "not-found" else 200), path
            settle(page)
            problems += serious(page, f"{name} ({theme})")
        # The viewer, open over the gallery.
        page.goto("/gallery/")
        page.locator("#image-grid a[data-viewer]").first.click()
        page.wait_for_selector(f"#viewer #viewer-{images[-1].uuid}")
        problems += serious(page, f"viewer ({theme})")
        page.context.close()
        # Signed out: the sign-in and sign-up pages.
        context = browser.new_context(base_url=live_server.url, color_scheme=theme)
        anonymous = context.new_page()
        for name, path in {"login": "/accounts/login/", "signup": "/accounts/signup/"}.items():
            anonymous.goto(path)
            problems += serious(anonymous, f"{name} ({theme})")
        context.close()
    assert problems == [], "\n".join(problems)


def test_the_axe_check_catches_a_planted_violation(browser_as, owner):
    page = browser_as(owner)
    page.goto("/account/settings/")
    page.evaluate(
        "document.querySelector('main').insertAdjacentHTML('beforeend', "
        "'<button type=button></button><p class=planted>faint</p>');"
        "document.querySelector('.planted').style.color = '#eee'"
    )
    found = serious(page, "planted")
    assert any("button-name (critical)" in line for line in found), found
    assert any("color-contrast (serious)" in line for line in found), found


def focused(page: Any) -> str:
    return page.evaluate("document.activeElement.id || document.activeElement.className")


def test_the_skip_link_comes_first_and_leads_to_the_content(browser_as, owner):
    page = browser_as(owner)
    page.goto("/gallery/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    # Shown while focused, with the focus ring of the design tokens.
    box = page.locator(".skip-link").bounding_box()
    assert box is not None and box["y"] >= 0
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert ring == "solid"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "content"


def test_every_focusable_control_shows_a_focus_ring(browser_as, owner, provider):
    images_of(owner, 1)
    page = browser_as(owner)
    page.goto("/gallery/")
    # Tab through the first controls of the page: each focused one draws an outline.
    ring = (
        "() => { const s = getComputedStyle(document.activeElement);"
        " return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2; }"
    )
    seen: set[str] = set()
    # Through the navigation, the filters and the bulk bar to the first tile's controls.
    for _ in range(60):
        if any(s.startswith("star-") for s in seen):
            break
        page.keyboard.press("Tab")
        try:
            page.wait_for_function(ring, timeout=3000)
        except Exception:
            raise AssertionError(f"no focus ring on {focused(page)}") from None
        seen.add(focused(page))
    assert {"id_q", "id_date_from"} <= seen and any(s.startswith("tile-") for s in seen), seen
    assert any(s.startswith("star-") for s in seen), seen


def test_arrow_keys_move_between_gallery_tiles(browser_as, owner, provider):
    images = images_of(owner, 2)
    newest_first = sorted(images, key=lambda i: (i.created_at, i.pk), reverse=True)
    page = browser_as(owner, viewport=(1440, 900))
    page.goto("/gallery/")
    page.locator(f"#tile-{newest_first[0].uuid}").focus()
    page.keyboard.press("ArrowRight")
    assert focused(page) == f"tile-{newest_first[1].uuid}"
    page.keyboard.press("ArrowLeft")
    assert focused(page) == f"tile-{newest_first[0].uuid}"
    # At 390 px the grid has fewer columns: ↓ goes to the tile below, not the next one.
    page.set_viewport_size({"width": 390, "height": 844})
    columns = page.evaluate(
        "getComputedStyle(document.getElementById('image-grid'))"
        ".gridTemplateColumns.split(' ').length"
    )
    page.keyboard.press("ArrowDown")
    assert focused(page) == f"tile-{newest_first[columns].uuid}"
    page.keyboard.press("ArrowUp")
    assert focused(page) == f"tile-{newest_first[0].uuid}"
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#viewer #viewer-{newest_first[0].uuid}")


def test_starring_keeps_focus_on_the_star_in_the_grid_and_in_the_viewer(
    browser_as, owner, provider
):
    images = images_of(owner, 1)
    newest = max(images, key=lambda i: (i.created_at, i.pk))
    page = browser_as(owner)
    page.goto("/gallery/")
    page.locator(f"#star-{newest.uuid}").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#star-{newest.uuid}[aria-pressed=true]")
    assert focused(page) == f"star-{newest.uuid}"
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#star-{newest.uuid}[aria-pressed=false]")
    assert focused(page) == f"star-{newest.uuid}"
    # A selection box keeps focus too (nothing is swapped).
    box = page.locator(f"#image-{newest.uuid} input[type=checkbox]")
    box.focus()
    page.keyboard.press("Space")
    assert box.is_checked() and page.evaluate("document.activeElement.type") == "checkbox"
    page.locator(f"#tile-{newest.uuid}").click()
    star = f"#viewer-star-{newest.uuid}"
    page.wait_for_selector(star)
    page.locator(star).focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(f"{star}[aria-pressed=true]")
    assert focused(page) == f"viewer-star-{newest.uuid}"
    assert page.evaluate("document.getElementById('viewer').open")
    assert page.js_errors == [] and page.console_errors == []
