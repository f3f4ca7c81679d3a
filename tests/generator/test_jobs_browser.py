"""Cancel, progress, Regenerate and Variations in headless Chromium, with real workers
and the offline provider over HTTP. Screenshots of each card state go to
var/screenshots/ (jobs-*.png) to be looked at."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import Error as PlaywrightError

from generator import services
from generator.models import CostEntry, Generation, Image
from generator.registry import FLUX_REALISM
from tests.conftest import run_steps, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SCREENS = {"wide": (1440, 900), "phone": (390, 844)}
SHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"


def shot(target: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    # A live update may swap the card in while it is being taken: take it again.
    for attempt in range(3):
        try:
            target.screenshot(path=str(SHOTS / f"jobs-{name}.png"))
            return
        except PlaywrightError:
            if attempt == 2:
                raise


def past_runs(owner: Any, seconds: float, count: int = 3) -> None:
    """Finished flux-realism generations that took `seconds` each: the ETA's median."""
    now = timezone.now()
    for i in range(count):
        body = {"model": "flux-realism", "prompt": f"An earlier study {i}"}
        done = services.generation_create(owner=owner, spec=FLUX_REALISM, body=body)
        Generation.objects.filter(pk=done.pk).update(
            status="succeeded",
            started_at=now - timedelta(seconds=seconds + 60),
            finished_at=now - timedelta(seconds=60),
        )


def test_a_running_job_shows_its_progress_and_is_cancelled_but_charged(
    browser_as, owner, provider, workers
):
    past_runs(owner, seconds=30)
    # Slow enough to be seen running and cancelled before the provider answers, and
    # within the workers' read timeout (10 s), so the answer does arrive.
    provider.latency = 8.0
    try:
        page = browser_as(owner, viewport=SCREENS["wide"])
        page.goto("/")
        page.fill("textarea[name=prompt]", "A glass greenhouse in the snow, warm light inside")
        page.click("button[type=submit].primary")
        card = page.locator("#generation-list li.card").first
        card.locator(".badge-running").wait_for(timeout=40_000)
        wait_for(lambda: provider.in_flight == 1, timeout=30)
        generation = Generation.objects.get(prompt__startswith="A glass greenhouse")
        assert card.get_attribute("id") == f"generation-{generation.uuid}"

        eta = card.locator(".job-eta time")
        eta.wait_for()
        assert eta.inner_text().startswith("about ")
        assert card.locator(".job-elapsed time").inner_text().endswith(" s")
        shot(card, "running-wide")

        card.locator("button.cancel-button").click()
        card.locator(".badge-cancelled").wait_for()
        assert card.locator("button.cancel-button").count() == 0
        assert Generation.objects.get(pk=generation.pk).status == "cancelled"

        # The call was already out: the provider answers and bills it all the same.
        entry = wait_for(
            lambda: CostEntry.objects.filter(generation=generation).first(), timeout=40
        )
        assert entry.estimated_usd == FLUX_REALISM.price
        assert provider.generation_calls() == 1
    finally:
        provider.latency = 0.0
    generation.refresh_from_db()
    assert generation.status == "cancelled"
    assert not Image.objects.filter(generation=generation).exists()
    # The three earlier runs and the cancelled call's charge.
    assert services.month_spend(owner=owner) == 4 * FLUX_REALISM.price
    page.reload()
    card = page.locator(f"#generation-{generation.uuid}")
    assert "it billed the call" in card.inner_text()
    shot(card, "cancelled-charged-wide")
    # The clocks tick in the page itself (static/js/jobs.js), with no request: a clock
    # put on this page, where nothing polls any more, counts on.
    page.evaluate(
        """() => {
            const clock = document.createElement("time");
            clock.id = "test-clock";
            clock.dataset.clock = "up";
            clock.dataset.seconds = "5";
            document.body.append(clock);
        }"""
    )
    page.wait_for_function(
        "() => /^([6-9]|\\d\\d) s$/.test(document.getElementById('test-clock').textContent)"
    )
    assert page.js_errors == [] and page.console_errors == []


def test_a_queued_job_cancelled_is_never_sent_and_costs_nothing(
    browser_as, owner, provider, monkeypatch
):
    # No worker gets the message: as if every worker were busy or stopped.
    monkeypatch.setattr("generator.services.claims.send", lambda *args, **kwargs: None)
    page = browser_as(owner, viewport=SCREENS["phone"])
    page.goto("/")
    page.fill("textarea[name=prompt]", "A lantern festival over a river, long exposure")
    page.click("button[type=submit].primary")
    card = page.locator("#generation-list li.card").first
    card.locator(".badge-queued").wait_for()
    assert "Queue position 1" in card.locator(".job-position").inner_text()
    shot(card, "queued-phone")

    card.locator("button.cancel-button").click()
    card.locator(".badge-cancelled").wait_for()
    assert "it cost nothing" in card.inner_text()
    shot(card, "cancelled-free-phone")
    generation = Generation.objects.get()
    assert generation.status == "cancelled"

    # The sweep leaves it alone, and a message delivered late sends nothing.
    Generation.objects.filter(pk=generation.pk).update(
        sweep_after=timezone.now() - timedelta(hours=1)
    )
    assert services.generation_sweep() == 0
    services.generation_call(generation_id=generation.pk)
    assert provider.generation_calls() == 0
    assert not CostEntry.objects.exists() and services.month_spend(owner=owner) == 0

    # Regenerate from the cancelled card: a new queued card on top, same settings.
    card.locator(".regenerate-form button").click()
    page.locator("#generation-list li.card").nth(1).wait_for()
    again = Generation.objects.exclude(pk=generation.pk).get()
    assert page.locator("#generation-list li.card").first.get_attribute("id") == (
        f"generation-{again.uuid}"
    )
    assert again.prompt == generation.prompt and again.status == "queued"
    assert page.js_errors == [] and page.console_errors == []


def test_variations_from_a_finished_card(browser_as, owner, provider, monkeypatch):
    body = {"model": "flux-realism", "prompt": "A fox in tall grass", "image_size": "square"}
    original = run_steps(services.generation_create(owner=owner, spec=FLUX_REALISM, body=body))
    wait_for(lambda: original.images.count() == 1, timeout=60)
    monkeypatch.setattr("generator.services.claims.send", lambda *args, **kwargs: None)
    page = browser_as(owner)
    page.goto("/")
    card = page.locator(f"#generation-{original.uuid}")
    card.locator(".variations-form button").click()
    page.locator("#generation-list li.card").nth(4).wait_for()
    made = Generation.objects.exclude(pk=original.pk)
    seed = int(Generation.objects.get(pk=original.pk).seed)
    assert sorted(g.params["seed"] for g in made) == [
        (seed + i - 1) % (2**32 - 1) + 1 for i in range(1, 5)
    ]
    assert page.js_errors == [] and page.console_errors == []


def card_states(owner: Any, provider: Any) -> None:
    """One card in each state, made directly (no workers), newest first on the page."""
    body = {"model": "flux-realism", "prompt": "A fox in tall grass at dawn", "num_images": 2}
    done = run_steps(services.generation_create(owner=owner, spec=FLUX_REALISM, body=body))
    wait_for(lambda: done.images.count() == 2, timeout=60)
    past_runs(owner, seconds=24)
    now = timezone.now()

    def make(prompt: str, **fields: Any) -> Generation:
        generation = services.generation_create(
            owner=owner, spec=FLUX_REALISM, body={"model": "flux-realism", "prompt": prompt}
        )
        Generation.objects.filter(pk=generation.pk).update(**fields)
        return generation

    Generation.objects.filter(prompt__startswith="An earlier").update(
        created_at=now - timedelta(days=1)
    )
    charged = make(
        "A red umbrella on a grey street, cancelled while running",
        status="cancelled",
        started_at=now,
        finished_at=now,
    )
    services.cost_entry_record(generation=charged, images=1, usage=None)
    make("A tea cup on a windowsill, cancelled while queued", status="cancelled", finished_at=now)
    make(
        "A mountain hut under the stars, long exposure",
        status="running",
        started_at=now - timedelta(seconds=9),
    )
    make("A harbour in fog with three fishing boats")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_card_state_screenshots(browser_as, owner, provider, monkeypatch, theme):
    monkeypatch.setattr("generator.services.claims.send", lambda *args, **kwargs: None)
    card_states(owner, provider)
    for screen, size in SCREENS.items():
        page = browser_as(owner, viewport=size, color_scheme=theme)
        page.goto("/")
        page.locator(".badge-running").first.wait_for()
        page.locator(".job-eta time").first.wait_for()
        history = page.locator(".history")
        history.scroll_into_view_if_needed()
        assert page.evaluate("document.documentElement.scrollWidth") <= size[0]
        shot(history, f"cards-{screen}-{theme}")
        running = Generation.objects.get(status="running")
        page.goto(f"/generations/{running.uuid}/")
        page.locator(".job-eta time").wait_for()
        assert page.locator("#generation-status button.cancel-button").count() == 1
        shot(page, f"detail-running-{screen}-{theme}")
        page.goto(
            f"/generations/{Generation.objects.get(prompt='A fox in tall grass at dawn').uuid}/"
        )
        assert page.locator(".rerun-actions .variations-form").count() == 1
        shot(page, f"detail-succeeded-{screen}-{theme}")
        assert page.js_errors == [] and page.console_errors == []
        page.context.close()
