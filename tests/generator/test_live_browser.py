"""Live updates in headless Chromium: an idle studio makes no request but its event
stream, the tabs of one browser share that stream, and badges follow the queue."""

from __future__ import annotations

import time
from typing import Any

import pytest

from generator import live_views
from generator.models import Generation
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

# Records the moment a thumbnail in the generation list has its pixels (answer→pixel).
PIXEL_WATCH = """() => {
  document.addEventListener("load", (event) => {
    const img = event.target;
    if (img.tagName === "IMG" && img.closest("#generation-list .thumbs") && !window.pixelAt) {
      window.pixelAt = Date.now();
    }
  }, true);
}"""


@pytest.fixture(autouse=True)
def no_streams_left(settings: Any) -> None:
    """Short heartbeats, so a stream whose browser left in an earlier test notices it
    (its next write fails) and frees its place; each test starts with none open."""
    settings.SSE_HEARTBEAT_SECONDS = 0.5
    wait_for(lambda: live_views.open_streams() == 0, timeout=30)


def wait_live(page: Any) -> None:
    page.locator("html[data-live=open]").wait_for(state="attached", timeout=20_000)


def generate(page: Any, prompt: str) -> None:
    page.fill("textarea[name=prompt]", prompt)
    page.select_option("select[name=image_size]", "square")
    page.click("button[type=submit].primary")


def print_latency(label: str, page: Any, generation: Generation) -> None:
    pixel_at = page.evaluate("() => window.pixelAt || 0") / 1000
    answered = generation.provider_finished_at.timestamp()
    mirrored = generation.finished_at.timestamp()
    print(
        f"\n[live] {label}: answer→pixel {pixel_at - answered:.2f} s, "
        f"stored→pixel {pixel_at - mirrored:.2f} s"
    )


def test_an_idle_studio_requests_nothing_but_its_event_stream(browser_as, owner, provider, workers):
    # The provider takes long enough for the job to be queued and running for the
    # whole observation window.
    provider.latency = 9.0
    page = browser_as(owner)
    page.goto("/")
    wait_live(page)
    page.evaluate(PIXEL_WATCH)
    generate(page, "A lighthouse at dusk, photographed from the sea")
    page.locator("#generation-list li.card").first.wait_for()
    generation = wait_for(lambda: Generation.objects.first())
    card = page.locator(f"#generation-{generation.uuid}")
    # Claimed by a worker and shown so: nothing changes now until the provider answers.
    card.locator(".badge-running").wait_for(timeout=30_000)

    requests: list[str] = []
    page.context.on("request", lambda request: requests.append(request.url))
    # An observation window, not a wait for a condition: nothing may happen in it.
    page.wait_for_timeout(6000)
    generation.refresh_from_db()
    assert not generation.is_finished, "the job finished before the window closed"
    stream_only = [url for url in requests if "/live/events" not in url]
    assert stream_only == []
    assert live_views.open_streams() == 1

    card.locator(".badge-succeeded").wait_for(timeout=60_000)
    thumb = card.locator(".thumbs img").first
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 0", arg=thumb.element_handle(), timeout=20_000
    )
    generation.refresh_from_db()
    card_url = f"/generations/{generation.uuid}/?part=card"
    rerenders = [url for url in requests if url.endswith(card_url)]
    others = [
        url
        for url in requests
        if not url.endswith(card_url) and "/live/events" not in url and "/media/" not in url
    ]
    # One re-render per change the stream announced (copying, then done), not per interval.
    assert 1 <= len(rerenders) <= 3
    assert others == []
    print_latency("one tab", page, generation)
    assert page.js_errors == []
    assert page.console_errors == []


def test_ten_tabs_share_one_stream_and_all_show_the_finished_image(
    browser_as, owner, provider, workers
):
    first = browser_as(owner)
    pages = [first] + [first.context.new_page() for _ in range(9)]
    for page in pages:
        page.set_default_timeout(30_000)
        # Each tab's document loads: none waits behind the others' streams.
        page.goto("/")
        wait_live(page)
        page.evaluate(PIXEL_WATCH)
    assert live_views.open_streams() == 1

    started = time.monotonic()
    generate(pages[3], "Ten windows onto one harbour")
    generation = wait_for(lambda: Generation.objects.first())
    for page in pages:
        card = page.locator(f"#generation-{generation.uuid}")
        card.locator(".badge-succeeded").wait_for(timeout=60_000)
        # Looked at, as a person would: a background tab defers its lazy thumbnails.
        page.bring_to_front()
        thumb = card.locator(".thumbs img").first
        page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0",
            arg=thumb.element_handle(),
            timeout=20_000,
        )
        assert page.locator(f"#generation-{generation.uuid}").count() == 1
    generation.refresh_from_db()
    print(
        f"\n[live] ten tabs: all showed the image {time.monotonic() - started:.2f} s after submit"
    )
    print_latency(
        "ten tabs, slowest",
        max(pages, key=lambda p: p.evaluate("() => window.pixelAt")),
        generation,
    )
    assert live_views.open_streams() == 1
    assert first.js_errors == []


def test_the_moderation_badge_updates_when_a_report_arrives(
    browser_as, owner, teammate, moderator, provider, monkeypatch
):
    import generator.services.claims as claims
    from gallery import services as gallery_services
    from generator import services
    from generator.registry import get_model
    from tests.conftest import run_steps

    # The steps run here: no worker of the session may take them.
    monkeypatch.setattr(claims, "send", lambda *args, **kwargs: None)
    spec = get_model("flux-realism")
    generation = run_steps(
        services.generation_create(
            owner=owner, spec=spec, body={"model": spec.id, "prompt": "A quiet street at noon"}
        )
    )
    image = generation.images.get()
    page = browser_as(moderator)
    page.goto("/gallery/")
    wait_live(page)
    assert page.locator("#admin-menu summary .badge-count").count() == 0

    gallery_services.image_report(image=image, reporter=teammate, reason="other", text="odd")

    badge = page.locator("#admin-menu summary .badge-count")
    badge.wait_for(timeout=20_000)
    assert badge.inner_text() == "1"
    assert badge.get_attribute("aria-label") == "1 waiting for review"
    page.click("#admin-menu summary")
    assert page.locator("a[data-live-badge=moderation] .badge-count").inner_text() == "1"
    assert page.js_errors == []


def test_a_browser_refused_a_stream_falls_back_to_polling(
    browser_as, owner, teammate, provider, workers, settings
):
    settings.SSE_MAX_CONNECTIONS = 1
    holder = browser_as(teammate)
    holder.goto("/")
    wait_live(holder)

    page = browser_as(owner)
    polls: list[str] = []
    page.context.on(
        "request", lambda request: polls.append(request.url) if "part=card" in request.url else None
    )
    page.goto("/")
    # Answered 503 with Retry-After: the page says so and its cards poll again.
    page.locator("html[data-live=down]").wait_for(state="attached", timeout=20_000)
    provider.latency = 3.0
    generate(page, "A paper boat on a puddle")
    generation = wait_for(lambda: Generation.objects.filter(owner=owner).first())
    card = page.locator(f"#generation-{generation.uuid}")
    card.locator(".badge-succeeded").wait_for(timeout=60_000)
    assert len(polls) >= 2
    assert live_views.open_streams() == 1
    assert page.js_errors == []
