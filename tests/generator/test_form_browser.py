"""The studio form in headless Chromium: keyboard, History, saved defaults, starting
images dropped, pasted or chosen, and the settings a downloaded image carries."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image as PILImage

from generator.models import Generation
from generator.registry import MODELS
from tests.conftest import ROOT, wait_for
from tests.gallery.test_gallery import make_generation, make_image

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SCREENSHOTS = ROOT / "var" / "screenshots"
I2I = "flux/dev/image-to-image"
SD35 = "stable-diffusion-v35-large"

# Builds a File in the page from base64 and hands it over as a drop or a paste would.
MAKE_TRANSFER = """([name, mime, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type: mime }));
  return transfer;
}"""
PASTE = """([name, mime, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type: mime }));
  const target = document.querySelector("#generation-form textarea[name=prompt]");
  target.focus();
  const init = { clipboardData: transfer, bubbles: true, cancelable: true };
  target.dispatchEvent(new ClipboardEvent("paste", init));
}"""


def png(width: int, height: int, colour: str = "teal") -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def drop(page: Any, name: str, mime: str, data: bytes) -> None:
    encoded = base64.b64encode(data).decode()
    transfer = page.evaluate_handle(MAKE_TRANSFER, [name, mime, encoded])
    page.dispatch_event("#generation-form", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("#generation-form", "drop", {"dataTransfer": transfer})


def downloaded_with_parameters(owner: Any, fmt: str) -> tuple[Generation, bytes]:
    """A stable-diffusion generation's image, saved with its Download button."""
    generation = make_generation(
        owner,
        "A koi pond in the rain, seen from above",
        model=SD35,
        seed="4242",
        negative_prompt="blurry, text",
        num_inference_steps=33,
        guidance_scale=6.5,
        output_format=fmt,
    )
    image = make_image(generation, fmt=fmt, size=(576, 1024))
    client = Client()
    client.force_login(owner)
    response = client.get(reverse("gallery:download", args=[image.uuid]))
    assert response.status_code == 200
    return generation, response.content


def test_ctrl_enter_submits_and_the_new_card_comes_into_view(browser_as, owner):
    for n in range(12):
        make_generation(owner, f"an older picture {n}", visibility="private")
    page = browser_as(owner, viewport=(1440, 900))
    page.goto("/")
    page.locator("#generation-list li.card").last.scroll_into_view_if_needed()
    page.fill("textarea[name=prompt]", "A paper boat on a puddle")
    page.press("textarea[name=prompt]", "Control+Enter")
    card = page.locator("#generation-list li.card").first
    card.locator(".prompt", has_text="A paper boat on a puddle").wait_for()
    assert Generation.objects.filter(prompt="A paper boat on a puddle").count() == 1
    in_view = (
        "el => { const r = el.getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight; }"
    )
    wait_for(lambda: card.evaluate(in_view), timeout=10)
    assert page.js_errors == [] and page.console_errors == []


def test_history_opens_from_the_keyboard_and_filters(browser_as, owner, outsider):
    make_generation(owner, "A quiet harbour at dawn")
    make_generation(owner, "A lighthouse in a storm")
    make_generation(owner, "A harbour market at noon")
    make_generation(outsider, "Somebody else's harbour")
    page = browser_as(owner)
    page.goto("/")
    prompt = page.locator("textarea[name=prompt]")
    search = page.locator("#prompt-history-search")
    prompt.focus()
    page.keyboard.press("ArrowUp")  # in an empty prompt
    search.wait_for()
    assert search.evaluate("el => el === document.activeElement")
    items = page.locator("#prompt-history-list li:not([hidden])")
    assert items.count() == 3
    search.fill("harbour")
    assert items.all_inner_texts() == ["A harbour market at noon", "A quiet harbour at dawn"]
    search.fill("nothing like it")
    page.locator(".prompt-history-none").wait_for()
    search.fill("quiet")
    page.keyboard.press("Enter")
    assert prompt.input_value() == "A quiet harbour at dawn"
    assert page.locator("#prompt-history").get_attribute("open") is None
    assert page.locator("#prompt-count").inner_text() == "23 / 4000"

    # Alt+H opens it from anywhere; ↓ walks the list, Enter picks, Esc closes.
    page.locator("select[name=image_size]").focus()
    page.keyboard.press("Alt+KeyH")
    search.wait_for()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    assert prompt.input_value() == "A lighthouse in a storm"
    page.click("#prompt-history summary")
    search.wait_for()
    page.keyboard.press("Escape")
    assert page.locator("#prompt-history").get_attribute("open") is None
    assert prompt.evaluate("el => el === document.activeElement")
    assert page.js_errors == [] and page.console_errors == []


def test_history_links_fill_the_prompt_without_javascript(browser_as, owner):
    make_generation(owner, "A quiet harbour at dawn")
    page = browser_as(owner, javascript=False)
    page.goto("/")
    page.click("#prompt-history summary")
    page.click("#prompt-history-list a")
    page.wait_for_url("**/?prompt_of=*")
    assert page.locator("textarea[name=prompt]").input_value() == "A quiet harbour at dawn"


def test_saved_defaults_are_used_on_the_next_visit_and_reset(browser_as, owner):
    page = browser_as(owner)
    page.goto("/")
    page.select_option("select[name=model]", SD35)
    page.locator("textarea[name=negative_prompt]").wait_for()
    page.fill("input[name=num_inference_steps]", "40")
    page.select_option("select[name=image_size]", "portrait_16_9")
    page.fill("textarea[name=prompt]", "not part of the defaults")
    page.click("button[value=save]")
    page.locator(".switch-notes", has_text="Saved").wait_for()
    assert Generation.objects.count() == 0  # saving generates nothing

    page.goto("/")
    assert page.locator("select[name=model]").input_value() == SD35
    assert page.locator("input[name=num_inference_steps]").input_value() == "40"
    assert page.locator("select[name=image_size]").input_value() == "portrait_16_9"
    assert page.locator("textarea[name=prompt]").input_value() == ""

    page.click("button[value=reset]")
    page.locator(".switch-notes", has_text="Saved defaults cleared").wait_for()
    steps = MODELS[SD35].param("num_inference_steps").default
    assert page.locator("input[name=num_inference_steps]").input_value() == str(steps)
    page.goto("/")
    assert page.locator("select[name=model]").input_value() == "flux-realism"
    assert page.js_errors == [] and page.console_errors == []


def test_saving_defaults_works_without_javascript(browser_as, owner):
    page = browser_as(owner, javascript=False)
    page.goto("/")
    page.fill("input[name=num_inference_steps]", "12")
    page.click("button[value=save]")
    page.locator(".switch-notes", has_text="Saved").wait_for()
    page.goto("/")
    assert page.locator("input[name=num_inference_steps]").input_value() == "12"


def test_a_pasted_image_becomes_the_starting_image_with_its_own_aspect(browser_as, owner):
    page = browser_as(owner)
    page.goto("/")
    page.fill("textarea[name=prompt]", "The same scene in winter")
    encoded = base64.b64encode(png(300, 150)).decode()
    page.evaluate(PASTE, ["pasted.png", "image/png", encoded])
    # The studio's default model takes no image: the form switches to one that does.
    page.locator("input[name=image_file]").wait_for()
    assert page.locator("select[name=model]").input_value() == I2I
    preview = page.locator("#drop-preview img")
    preview.wait_for()
    wait_for(lambda: preview.evaluate("img => img.naturalWidth") == 300, timeout=10)
    box = preview.bounding_box()
    assert box and abs(box["width"] / box["height"] - 2) < 0.05  # not cropped to a square
    assert page.locator("input[name=image_file]").evaluate("el => el.files.length") == 1
    assert page.locator("textarea[name=prompt]").input_value() == "The same scene in winter"
    page.click("button[type=submit].primary")
    page.locator("#generation-list li.card").first.wait_for()
    generation = wait_for(lambda: Generation.objects.filter(model=I2I).first())
    assert generation.source_file and generation.prompt == "The same scene in winter"
    assert page.js_errors == [] and page.console_errors == []


def test_a_dropped_image_without_parameters_is_the_starting_image(browser_as, owner):
    page = browser_as(owner)
    page.goto(f"/?model={I2I}")
    drop(page, "plain.png", "image/png", png(120, 200))
    page.locator("#drop-preview img").wait_for()
    assert page.locator("#drop-choice").is_hidden()  # nothing to ask
    assert page.locator("input[name=image_file]").evaluate("el => el.files[0].name") == "plain.png"
    drop(page, "notes.txt", "text/plain", b"not an image")
    page.locator("#drop-error", has_text="not a PNG, JPEG or WebP").wait_for()
    # Chosen with the upload field itself: previewed the same way.
    page.set_input_files(
        "input[name=image_file]",
        files=[{"name": "wide.png", "mimeType": "image/png", "buffer": png(400, 100)}],
    )
    page.locator("#drop-preview figcaption", has_text="wide.png · 400×100").wait_for()
    assert page.locator("#drop-error").is_hidden()
    assert page.js_errors == [] and page.console_errors == []


def test_a_dropped_png_download_fills_the_form(browser_as, owner):
    generation, data = downloaded_with_parameters(owner, "png")
    page = browser_as(owner)
    page.goto("/")
    drop(page, "koi.png", "image/png", data)
    choice = page.locator("#drop-choice")
    choice.wait_for()
    assert "Stable Diffusion 3.5 Large" in choice.inner_text()
    choice.locator("[data-drop=fill]").click()
    page.locator("textarea[name=negative_prompt]").wait_for()
    assert page.locator("select[name=model]").input_value() == SD35
    assert page.locator("textarea[name=prompt]").input_value() == generation.prompt
    assert page.locator("textarea[name=negative_prompt]").input_value() == "blurry, text"
    assert page.locator("select[name=image_size]").input_value() == "portrait_16_9"
    assert page.locator("input[name=num_inference_steps]").input_value() == "33"
    assert page.locator("input[name=guidance_scale]").input_value() == "6.5"
    assert page.locator("input[name=seed]").input_value() == "4242"
    assert page.js_errors == [] and page.console_errors == []


def test_a_chosen_jpeg_download_fills_the_form_and_starts_from_it(browser_as, owner):
    generation, data = downloaded_with_parameters(owner, "jpeg")
    path = Path(SCREENSHOTS.parent / "test" / f"koi-{generation.uuid}.jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    page = browser_as(owner)
    page.goto("/")
    page.set_input_files("#image-pick", str(path))
    choice = page.locator("#drop-choice")
    choice.wait_for()
    choice.locator("[data-drop=both]").click()
    # Both: the settings the image-to-image model has, and the file as its start.
    page.locator("#drop-preview img").wait_for()
    assert page.locator("select[name=model]").input_value() == I2I
    assert page.locator("textarea[name=prompt]").input_value() == generation.prompt
    assert page.locator("input[name=num_inference_steps]").input_value() == "33"
    assert page.locator("input[name=guidance_scale]").input_value() == "6.5"
    assert page.locator("input[name=seed]").input_value() == "4242"
    file_input = page.locator("input[name=image_file]")
    wait_for(lambda: file_input.evaluate("el => el.files.length") == 1, timeout=10)
    assert file_input.evaluate("el => el.files[0].type") == "image/jpeg"
    path.unlink()
    assert page.js_errors == [] and page.console_errors == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [(1440, 900), (390, 844)])
def test_screenshots_of_the_form(browser_as, owner, scheme, viewport):
    generation = make_generation(owner, "A koi pond in the rain, seen from above", seed="4242")
    make_image(generation)
    make_generation(owner, "A quiet harbour at dawn, fishing boats, soft mist")
    page = browser_as(owner, viewport=viewport, color_scheme=scheme)
    page.goto("/")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = f"form-{viewport[0]}x{viewport[1]}-{scheme}"
    page.screenshot(path=str(SCREENSHOTS / f"{name}-studio.png"))
    page.locator("textarea[name=prompt]").focus()
    page.keyboard.press("ArrowUp")
    page.locator("#prompt-history-search").fill("a")
    page.screenshot(path=str(SCREENSHOTS / f"{name}-history.png"))
    page.keyboard.press("Escape")
    _, data = downloaded_with_parameters(owner, "png")
    drop(page, "koi.png", "image/png", data)
    page.locator("#drop-choice").wait_for()
    page.locator("#drop-choice").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / f"{name}-choice.png"))
    page.locator("[data-drop=both]").click()
    page.locator("#drop-preview img").wait_for()
    page.locator("#drop-preview").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / f"{name}-preview.png"))
    assert page.js_errors == [] and page.console_errors == []
