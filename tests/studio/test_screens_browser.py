"""Every page as a designer and a phone user see it, in Chromium at 1440×900 and 390×844,
light and dark: nothing wider than the screen, Generate in reach for every model with a
long history, the error pages inside the layout, no console errors. The screenshots
are written under var/screenshots/ to be looked at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from generator import services
from generator.models import Generation
from generator.registry import FLUX_REALISM, MODELS
from tests.conftest import run_steps, settle, wait_for, with_role

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SCREENS = {"wide": (1440, 900), "phone": (390, 844)}
THEMES = ("light", "dark")
SHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"


def history(owner: Any, count: int) -> list[Generation]:
    """`count` generations; the newest two with images, the rest finished cards."""
    made = []
    for i in range(count):
        body = {"model": "flux-realism", "prompt": f"A lighthouse, study {i}", "num_images": 2}
        generation = services.generation_create(owner=owner, spec=FLUX_REALISM, body=body)
        if i >= count - 2:
            generation = run_steps(generation)
            # A running worker (started by an earlier test) may have taken the mirror step.
            wait_for(lambda g=generation: g.images.count() == 2, timeout=60)
        else:
            Generation.objects.filter(pk=generation.pk).update(status="failed", error="Test card")
        made.append(generation)
    return made


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def width_of(page: Any) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def reachable(page: Any, selector: str) -> bool:
    """In the viewport and not covered: the element is what a tap at its centre hits."""
    return page.evaluate(
        """(selector) => {
            const el = document.querySelector(selector);
            if (!el) return false;
            const r = el.getBoundingClientRect();
            const inside = r.top >= 0 && r.left >= 0
                && r.bottom <= window.innerHeight && r.right <= window.innerWidth;
            if (!inside) return false;
            const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
            return hit === el || el.contains(hit);
        }""",
        selector,
    )


def test_no_page_is_wider_than_the_screen_in_either_theme(
    browser_as, owner, provider, django_user_model
):
    admin = with_role(owner, "admin")
    generations = history(admin, 3)
    image = generations[-1].images.first()
    pages = {
        "studio": "/",
        "gallery": "/gallery/",
        "image": f"/images/{image.uuid}/",
        "generation": f"/generations/{generations[-1].uuid}/",
        "collections": "/gallery/collections/",
        "models": "/models/",
        "usage": "/usage/",
        "tokens": "/account/tokens/",
        "settings": "/account/settings/",
        "notifications": "/notifications/",
        "members": "/members/",
        "audit": "/audit/",
        "moderation": "/moderation/",
        "policy": "/policy/",
        "not-found": "/no-such-page/",
    }
    for screen, (width, height) in SCREENS.items():
        for theme in THEMES:
            page = browser_as(admin, viewport=(width, height), color_scheme=theme)
            for name, path in pages.items():
                response = page.goto(path)
                assert response.status == (404 if name == "not-found" else 200), path
                settle(page)
                assert width_of(page) <= width, f"{path} is wider than {width} px"
                shot(page, f"{name}-{screen}-{theme}")
            assert page.js_errors == [] and page.console_errors == [], (screen, theme)
            page.context.close()


def test_the_theme_follows_the_system_and_the_switch_is_kept(browser_as, owner):
    page = browser_as(owner, color_scheme="dark")
    page.goto("/")
    background = "getComputedStyle(document.body).backgroundColor"
    dark = page.evaluate(background)
    page.click("#account-menu summary")
    page.click("#theme-toggle")
    assert page.get_attribute("html", "data-theme") == "light"
    light = page.evaluate(background)
    assert dark != light
    page.reload()
    assert page.get_attribute("html", "data-theme") == "light"
    assert page.evaluate(background) == light


@pytest.mark.parametrize("screen", list(SCREENS))
def test_generate_is_in_reach_for_every_model_with_a_long_history(
    browser_as, owner, provider, screen
):
    history(owner, 30)
    width, height = SCREENS[screen]
    page = browser_as(owner, viewport=(width, height))
    page.goto("/")
    assert page.input_value("textarea[name=prompt]") == ""  # a fresh visit starts empty
    generate = "#generation-form button[type=submit].primary"
    for spec in MODELS.values():
        if page.locator(f"select[name=model] option[value='{spec.id}']").is_disabled():
            continue
        with page.expect_response(lambda r: "model=" in r.url):
            page.select_option("select[name=model]", spec.id)
        page.wait_for_function(
            "(id) => document.querySelector('select[name=model]').value === id", arg=spec.id
        )
        page.evaluate("window.scrollTo(0, 0)")
        assert reachable(page, generate), f"Generate out of reach for {spec.id} ({screen})"
        # Scrolled to the form's last field, Generate is still there.
        page.locator("#generation-form .field").last.scroll_into_view_if_needed()
        assert reachable(page, generate), f"Generate hidden below {spec.id}'s form ({screen})"
    shot(page, f"studio-long-history-{screen}")
    assert page.js_errors == [] and page.console_errors == []


def test_the_error_pages_keep_the_navigation(browser_as, owner, viewer):
    page = browser_as(viewer)
    response = page.goto("/no-such-page/")
    assert response.status == 404
    assert page.locator("nav[aria-label=Main] a", has_text="Gallery").count() == 1
    assert page.locator("#error-page h1").inner_text() == "This page is not here"
    response = page.goto("/members/")
    assert response.status in (403, 404)
    assert page.locator("nav[aria-label=Main]").count() == 1


def test_pending_and_suspended_people_can_sign_out(browser_as, suspended):
    page = browser_as(suspended)
    page.goto("/")
    page.click("nav button:has-text('Sign out')")
    page.goto("/")
    assert "/accounts/login/" in page.url
