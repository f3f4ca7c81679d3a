"""The studio's pages: form validation, HTMX and plain-form paths, permission edges."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.urls import reverse

from generator import services
from generator.models import Generation
from generator.registry import DEFAULT_MODEL, FLUX_REALISM, MODELS

pytestmark = pytest.mark.django_db

TREX = "A T-Rex relaxing on a beach, lying on a sun lounger and wearing sunglasses."
VALID = {
    "model": "flux-realism",
    "prompt": TREX,
    "image_size": "custom",
    "width": "1472",
    "height": "512",
    "num_images": "1",
    "num_inference_steps": "28",
    "guidance_scale": "3.5",
    "output_format": "jpeg",
    "enable_safety_checker": "on",
    "seed": "",
}


def make(owner: Any, visibility: str = "private", **params: Any) -> Generation:
    body = {"model": "flux-realism", "prompt": "a lighthouse", "image_size": "square", **params}
    return services.generation_create(
        owner=owner, spec=FLUX_REALISM, body=body, visibility=visibility
    )


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


# --- Validation: each bad value gets an error at its field and reaches nobody -----------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"width": "480"}, "width"),
        ({"width": "1600"}, "width"),
        ({"width": "1000"}, "width"),  # not a multiple of 32
        ({"height": "2048"}, "height"),
        ({"width": ""}, "width"),  # custom size without a width
        ({"guidance_scale": "0.5"}, "guidance_scale"),
        ({"guidance_scale": "21"}, "guidance_scale"),
        ({"num_inference_steps": "0"}, "num_inference_steps"),
        ({"num_inference_steps": "51"}, "num_inference_steps"),
        ({"num_images": "0"}, "num_images"),
        ({"num_images": "5"}, "num_images"),
        ({"seed": "0"}, "seed"),
        ({"seed": "-4"}, "seed"),
        ({"seed": "abc"}, "seed"),
        ({"seed": str(2**64)}, "seed"),
        ({"prompt": "x" * 4001}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"model": "flux-imaginary"}, "model"),
        ({"output_format": "gif"}, "output_format"),
        ({"image_size": "poster"}, "image_size"),
    ],
)
def test_bad_input_gets_a_field_error_and_no_provider_call(
    owner_client, provider, changes, field, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = owner_client.post(reverse("generator:studio"), {**VALID, **changes})
    assert response.status_code == 400
    form = response.context["form"]
    assert field in form.errors, form.errors
    assert f'id="id_{field}_error"' in response.text
    assert Generation.objects.count() == 0
    assert callbacks == []
    assert provider.generation_calls() == 0


def test_a_4000_character_prompt_is_accepted(owner_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = owner_client.post(reverse("generator:studio"), {**VALID, "prompt": "y" * 4000})
    assert response.status_code == 303
    assert len(callbacks) == 1


def test_the_request_body_is_exactly_the_documented_one(owner_client):
    owner_client.post(reverse("generator:studio"), {**VALID, "seed": "42"})
    generation = Generation.objects.get()
    assert generation.params == {
        "model": "flux-realism",
        "prompt": TREX,
        "image_size": {"width": 1472, "height": 512},
        "num_images": 1,
        "guidance_scale": 3.5,
        "num_inference_steps": 28,
        "seed": 42,
        "output_format": "jpeg",
        "enable_safety_checker": True,
    }


def test_defaults_fill_what_the_user_left_blank(owner_client):
    owner_client.post(
        reverse("generator:studio"),
        {"model": "flux-realism", "prompt": "a fox", "image_size": "landscape_4_3"},
    )
    params = Generation.objects.get().params
    assert params["image_size"] == "landscape_4_3"
    assert params["num_images"] == 1
    assert params["output_format"] == "jpeg"
    assert "seed" not in params and "guidance_scale" not in params


def test_a_plain_post_answers_303_to_the_generation(owner_client):
    response = owner_client.post(reverse("generator:studio"), VALID)
    generation = Generation.objects.get()
    assert response.status_code == 303
    assert response["Location"] == f"/generations/{generation.uuid}/"


def test_an_htmx_post_swaps_in_the_new_card(owner_client):
    response = owner_client.post(reverse("generator:studio"), VALID, headers={"HX-Request": "true"})
    generation = Generation.objects.get()
    assert response.status_code == 200
    assert response.text.lstrip().startswith(f'<li id="generation-{generation.uuid}"')
    assert 'hx-trigger="every 2s"' in response.text
    assert "<html" not in response.text


def test_an_htmx_post_with_errors_replaces_the_form(owner_client):
    response = owner_client.post(
        reverse("generator:studio"), {**VALID, "width": "7"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#generation-form"
    assert response["HX-Reswap"] == "outerHTML"
    assert response.text.lstrip().startswith('<form id="generation-form"')
    assert "id_width_error" in response.text


def test_the_studio_lists_only_the_users_generations(owner_client, owner, outsider):
    mine = make(owner, prompt="mine")
    theirs = make(outsider, prompt="theirs")
    response = owner_client.get(reverse("generator:studio"))
    assert f"generation-{mine.uuid}" in response.text
    assert f"generation-{theirs.uuid}" not in response.text


def test_a_finished_card_stops_polling(owner_client, owner):
    generation = make(owner)
    url = reverse("generator:detail", args=[generation.uuid]) + "?part=card"
    running = owner_client.get(url, headers={"HX-Request": "true"})
    assert "hx-trigger" in running.text
    Generation.objects.filter(pk=generation.pk).update(status="failed", error="Boom <b>x</b>")
    done = owner_client.get(url, headers={"HX-Request": "true"})
    assert "hx-trigger" not in done.text
    assert "Boom &lt;b&gt;x&lt;/b&gt;" in done.text


def test_reuse_settings_fills_the_form_with_the_seed(owner_client, owner):
    generation = make(owner, image_size={"width": 1472, "height": 512}, num_images=2)
    Generation.objects.filter(pk=generation.pk).update(seed="3082066483")
    form = owner_client.get(f"/?reuse={generation.uuid}").context["form"]
    assert form["seed"].value() == "3082066483"
    assert form["width"].value() == 1472 and form["image_size"].value() == "custom"
    assert form["num_images"].value() == 2
    without_seed = owner_client.get(f"/?reuse={generation.uuid}&seed=0").context["form"]
    assert without_seed["seed"].value() is None


def test_reuse_of_someone_elses_generation_is_ignored(owner_client, outsider):
    generation = make(outsider, prompt="secret")
    response = owner_client.get(f"/?reuse={generation.uuid}")
    assert "secret" not in response.text


# --- Permission edges -----------------------------------------------------------------------


def test_pages_require_sign_in(client, owner):
    generation = make(owner)
    for url in ("/", f"/generations/{generation.uuid}/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    assert client.post("/", VALID).status_code == 302
    assert Generation.objects.count() == 1


@pytest.mark.parametrize(
    ("persona", "status"), [("owner", 200), ("moderator", 200), ("outsider", 404)]
)
def test_generation_page_edges(client, request, owner, persona, status):
    generation = make(owner)
    client.force_login(request.getfixturevalue(persona))
    assert client.get(f"/generations/{generation.uuid}/").status_code == status
    part = client.get(f"/generations/{generation.uuid}/?part=card", headers={"HX-Request": "true"})
    assert part.status_code == status


@pytest.mark.parametrize("persona", ["owner", "teammate", "moderator"])
def test_a_shared_generation_is_seen_by_the_team(client, request, owner, persona):
    generation = make(owner, visibility="shared")
    client.force_login(request.getfixturevalue(persona))
    assert client.get(f"/generations/{generation.uuid}/").status_code == 200


def test_an_unknown_generation_is_404(owner_client):
    assert owner_client.get("/generations/00000000-0000-0000-0000-000000000000/").status_code == 404


def test_mutating_views_reject_other_methods(owner_client, owner):
    generation = make(owner)
    assert owner_client.put("/").status_code == 405
    assert owner_client.post(f"/generations/{generation.uuid}/").status_code == 405


# --- Accounts ----------------------------------------------------------------------------------


# --- Page hygiene -------------------------------------------------------------------------------


class ScriptCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_styles = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
        if "style" in attributes or tag == "style":
            self.inline_styles += 1
        if any(name.startswith("hx-on") for name in attributes):
            self.inline_styles += 1


def test_pages_carry_a_strict_csp_with_nonced_scripts(owner_client):
    response = owner_client.get("/")
    csp = response["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    parser = ScriptCollector()
    parser.feed(response.text)
    assert parser.scripts and all(s.get("src") and s.get("nonce") == nonce for s in parser.scripts)
    assert parser.inline_styles == 0
    assert '"allowEval": false' in response.text
    assert owner_client.get("/")["Content-Security-Policy"] != csp  # a fresh nonce


def test_the_offline_banner_shows_on_every_page_when_on(client, owner_client, settings):
    settings.OFFLINE_PROVIDER = True
    assert "Offline demo provider" in owner_client.get("/").text
    client.logout()
    assert "Offline demo provider" in client.get("/accounts/login/").text
    settings.OFFLINE_PROVIDER = False
    assert "Offline demo provider" not in client.get("/accounts/login/").text


def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_healthz_fails_when_the_broker_is_unreachable(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 1}
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"].startswith("error")


def test_changing_the_model_swaps_in_its_fields_keeping_values(owner_client):
    query = {"model": "flux-realism", "prompt": "a kept prompt", "seed": "7", "unknown": "x"}
    response = owner_client.get("/", query, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<form id="generation-form"')
    form = response.context["form"]
    assert form["prompt"].value() == "a kept prompt" and form["seed"].value() == "7"
    assert 'hx-get="/"' in response.text and 'hx-include="closest form"' in response.text
    # Without JavaScript the same switch is a GET of the whole page.
    page = owner_client.get("/", {**query, "switch": "1"})
    assert "<html" in page.text and "a kept prompt" in page.text
    assert Generation.objects.count() == 0


def test_the_models_page_lists_every_model_with_its_limits(owner_client, owner, outsider, client):
    from generator.models import Image
    from generator.registry import MODELS

    mine = make(owner, prompt="my lighthouse")
    Image.objects.create(generation=mine, index=0, file=f"generations/{mine.uuid}/0.jpg",
                         thumbnail=f"generations/{mine.uuid}/0_thumb.webp", width=512,
                         height=512, format="jpeg", bytes=1, sha256="x")  # fmt: skip
    Generation.objects.filter(pk=mine.pk).update(status="succeeded")
    theirs = make(outsider, prompt="not yours")
    Generation.objects.filter(pk=theirs.pk).update(status="succeeded")
    response = owner_client.get("/models/")
    assert response.status_code == 200
    for spec in MODELS.values():
        assert f"<code>{spec.id}</code>" in response.text
    assert "512–1536" in response.text and "up to 4000 characters" in response.text
    assert f"/media/generations/{mine.uuid}/0_thumb.webp" in response.text
    assert "not yours" not in response.text
    client.logout()
    assert client.get("/models/").status_code == 302


# --- Studio polish -------------------------------------------------------------------------


def test_a_fresh_visit_opens_an_empty_form_with_the_defaults_not_the_last_job(owner_client, owner):
    make(owner, image_size={"width": 1472, "height": 512}, num_inference_steps=12, seed=77)
    form = owner_client.get("/").context["form"]
    assert form.spec.id == DEFAULT_MODEL
    assert not form["prompt"].value()
    assert form["num_inference_steps"].value() == FLUX_REALISM.param("num_inference_steps").default
    assert form["seed"].value() in (None, "")
    assert form["image_size"].value() == FLUX_REALISM.size.default


def test_switching_model_clamps_what_the_new_model_refuses_with_a_note(owner_client):
    spec = next(
        m for m in MODELS.values() if m.param("num_images") and m.param("num_images").maximum == 4
    )
    one = next(m for m in MODELS.values() if m.max_images == 1 and m.param("num_images") is None)
    response = owner_client.get("/", {"model": spec.id, "prompt": "a fox", "num_images": "9"})
    form = response.context["form"]
    assert form["num_images"].value() == 4
    assert any("Images set to 4" in note for note in form.switch_notes)
    assert form["prompt"].value() == "a fox"
    # A model without the field simply drops it.
    assert (
        "num_images"
        not in owner_client.get("/", {"model": one.id, "num_images": "4"}).context["form"].fields
    )


def test_a_size_off_the_step_names_the_nearest_valid_values(owner_client):
    response = owner_client.post(
        "/",
        {
            "model": "flux-realism",
            "prompt": "a fox",
            "image_size": "custom",
            "width": "1000",
            "height": "1024",
        },
    )
    assert response.status_code == 400
    assert (
        "the nearest valid values are 992 or 1024." in response.context["form"].errors["width"][0]
    )


def _failed(owner: Any, visibility: str = "shared") -> Generation:
    generation = make(owner, visibility=visibility)
    Generation.objects.filter(pk=generation.pk).update(status="failed", error="Provider said no")
    generation.refresh_from_db()
    return generation


def test_a_failed_generation_shows_its_reason_and_retries_as_a_new_one(owner_client, owner):
    failed = _failed(owner)
    page = owner_client.get("/").content.decode()
    assert "Provider said no" in page and reverse("generator:retry", args=[failed.uuid]) in page
    response = owner_client.post(reverse("generator:retry", args=[failed.uuid]))
    assert response.status_code == 303
    retried = Generation.objects.exclude(pk=failed.pk).get()
    assert response["Location"] == reverse("generator:detail", args=[retried.uuid])
    assert retried.params == failed.params and retried.status == "queued"
    failed.refresh_from_db()
    assert failed.status == "failed"  # the history keeps the failure

    htmx = owner_client.post(
        reverse("generator:retry", args=[failed.uuid]), headers={"HX-Request": "true"}
    )
    assert htmx.status_code == 200 and htmx["HX-Reswap"] == "afterbegin"
    assert 'class="card status-queued"' in htmx.content.decode()


@pytest.mark.parametrize(
    ("persona", "visibility", "status"),
    [("teammate", "shared", 403), ("outsider", "private", 404), ("moderator", "shared", 403)],
)
def test_only_the_owner_retries(client, request, owner, persona, visibility, status):
    failed = _failed(owner, visibility)
    client.force_login(request.getfixturevalue(persona))
    assert client.post(reverse("generator:retry", args=[failed.uuid])).status_code == status
    assert Generation.objects.count() == 1


def test_retry_needs_sign_in_and_post(client, owner):
    failed = _failed(owner)
    url = reverse("generator:retry", args=[failed.uuid])
    assert client.post(url).status_code == 302
    client.force_login(owner)
    assert client.get(url).status_code == 405
    queued = make(owner)
    assert client.post(reverse("generator:retry", args=[queued.uuid])).status_code == 403


def assert_strict_csp(response: Any) -> None:
    csp = response["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src 'self' 'nonce-" in csp and "style-src 'self'" in csp
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    parser = ScriptCollector()
    parser.feed(response.text)
    # Every script is a nonced file, never inline code; no style attributes, <style>
    # blocks, hx-on handlers or on* event attributes, which the policy would block.
    assert all(s.get("src") and s.get("nonce") == nonce for s in parser.scripts)
    assert parser.inline_styles == 0
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", response.text)


def test_every_page_has_a_strict_csp_and_no_inline_code(client, owner):
    from accounts.tokens import api_token_create
    from gallery.services import collection_create
    from tests.conftest import with_role
    from tests.gallery.test_gallery import make_generation, make_image

    admin = with_role(owner, "admin")
    generation = make_generation(admin)
    image = make_image(generation)
    collection_create(owner=admin, name="Moodboard")
    api_token_create(user=admin, name="notebook")
    anonymous = ["/accounts/login/", "/accounts/signup/", "/accounts/password_reset/"]
    for path in anonymous:
        assert_strict_csp(client.get(path))
    client.force_login(admin)
    pages = [
        "/", f"/generations/{generation.uuid}/", "/gallery/", f"/images/{image.uuid}/",
        f"/images/{image.uuid}/report/", "/gallery/collections/", "/gallery/settings/",
        "/moderation/", "/audit/", "/members/", "/usage/", "/notifications/",
        "/account/settings/", "/account/tokens/", "/policy/", "/models/",
        "/accounts/password_change/",
    ]  # fmt: skip
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        assert_strict_csp(response)
        partial = client.get(path, headers={"HX-Request": "true"})
        assert "Content-Security-Policy" in partial, path


# --- The studio form: saved defaults, History, reuse links, parameters back in -------------


SD35 = {
    "model": "stable-diffusion-v35-large",
    "prompt": "a prompt that is not saved",
    "negative_prompt": "blurry",
    "image_size": "portrait_16_9",
    "num_images": "2",
    "num_inference_steps": "40",
    "guidance_scale": "7",
    "output_format": "png",
    "seed": "99",
}


def test_saved_defaults_are_what_a_fresh_visit_starts_from(owner_client, owner):
    make(owner, num_inference_steps=12, seed=77)  # the last job is not the default
    response = owner_client.post(reverse("generator:defaults"), {**SD35, "defaults": "save"})
    assert response.status_code == 200
    assert "Saved: a fresh visit now starts from" in response.text
    owner.member.refresh_from_db()
    saved = owner.member.studio_defaults
    assert saved["model"] == "stable-diffusion-v35-large"
    assert not {"prompt", "seed", "image_file", "image_url", "source_image"} & set(saved)

    form = owner_client.get("/").context["form"]
    assert form.spec.id == "stable-diffusion-v35-large"
    assert not form["prompt"].value()
    assert form["seed"].value() in (None, "")
    assert form["image_size"].value() == "portrait_16_9"
    assert form["num_inference_steps"].value() == 40
    assert form["guidance_scale"].value() == 7
    assert form["num_images"].value() == 2
    assert form["negative_prompt"].value() == "blurry"
    assert form["enable_safety_checker"].value() is False  # unticked when saved
    assert form.has_saved_defaults


def test_saving_defaults_keeps_what_was_typed_and_needs_no_prompt(owner_client, owner):
    body = {**SD35, "prompt": "", "defaults": "save"}
    response = owner_client.post(
        reverse("generator:defaults"), body, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<form id="generation-form"')
    assert 'class="field-error"' not in response.text
    typed = owner_client.post(reverse("generator:defaults"), {**SD35, "defaults": "save"})
    assert typed.context["form"]["prompt"].value() == "a prompt that is not saved"
    assert typed.context["form"]["seed"].value() == "99"


def test_a_bad_setting_is_not_saved_and_gets_its_field_error(owner_client, owner):
    body = {**SD35, "num_inference_steps": "99", "prompt": "", "defaults": "save"}
    response = owner_client.post(reverse("generator:defaults"), body)
    assert response.status_code == 400
    form = response.context["form"]
    assert list(form.errors) == ["num_inference_steps"]  # not the empty prompt
    assert "Not saved" in response.text
    owner.refresh_from_db()
    assert not getattr(owner, "member", None) or owner.member.studio_defaults == {}
    htmx = owner_client.post(reverse("generator:defaults"), body, headers={"HX-Request": "true"})
    assert htmx.status_code == 200
    assert 'id="id_num_inference_steps_error"' in htmx.text


def test_reset_forgets_the_saved_defaults(owner_client, owner):
    owner_client.post(reverse("generator:defaults"), {**SD35, "defaults": "save"})
    response = owner_client.post(
        reverse("generator:defaults"), {**SD35, "defaults": "reset"}, headers={"HX-Request": "true"}
    )
    assert "Saved defaults cleared" in response.text
    form = response.context["form"]
    assert form.spec.id == "stable-diffusion-v35-large"
    assert (
        form["num_inference_steps"].value()
        == MODELS[SD35["model"]].param("num_inference_steps").default
    )
    assert form["prompt"].value() == SD35["prompt"]  # the prompt stays
    owner.member.refresh_from_db()
    assert owner.member.studio_defaults == {}
    fresh = owner_client.get("/").context["form"]
    assert fresh.spec.id == DEFAULT_MODEL and not fresh.has_saved_defaults


def test_saved_defaults_of_a_model_now_disabled_fall_back_to_the_registry(owner_client, owner):
    from accounts.services import member_studio_defaults_set

    member_studio_defaults_set(user=owner, values={"model": "flux-imaginary", "seed": 4})
    form = owner_client.get("/").context["form"]
    assert form.spec.id == DEFAULT_MODEL


def test_saved_defaults_are_clamped_to_the_model_as_it_is_now(owner_client, owner):
    from accounts.services import member_studio_defaults_set

    member_studio_defaults_set(
        user=owner, values={"model": "flux-realism", "num_inference_steps": 500}
    )
    response = owner_client.get("/")
    assert response.context["form"]["num_inference_steps"].value() == 50
    assert "Steps set to 50: FLUX Realism takes 1–50." in response.text


def test_defaults_need_a_member_who_may_generate_and_post(client, viewer, owner):
    url = reverse("generator:defaults")
    assert client.post(url, {"defaults": "save"}).status_code == 302  # sign in first
    client.force_login(viewer)
    assert client.post(url, {**SD35, "defaults": "save"}).status_code == 403
    client.force_login(owner)
    assert client.get(url).status_code == 405
    assert client.get(reverse("generator:parameters")).status_code == 405
    assert client.get(reverse("generator:form")).status_code == 405


def test_the_form_offers_buttons_for_defaults_that_work_without_javascript(owner_client):
    page = owner_client.get("/").text
    assert re.search(
        r'<button type="submit" name="defaults" value="save" formaction="/studio/defaults"', page
    )
    assert 'value="reset" formaction="/studio/defaults"' in page
    assert ">Save as my defaults<" in page and ">Reset to model defaults<" in page


def test_history_lists_the_last_twenty_distinct_prompts_of_the_user(owner_client, owner, outsider):
    from tests.gallery.test_gallery import make_generation

    for n in range(25):
        make_generation(owner, f"prompt number {n}")
    make_generation(owner, "prompt number 3")  # used again: now the most recent
    make_generation(outsider, "somebody else's idea")
    form = owner_client.get("/").context["form"]
    prompts = [text for text, _ in form.prompt_history]
    assert len(prompts) == 20 and len(set(prompts)) == 20
    assert prompts[:3] == ["prompt number 3", "prompt number 24", "prompt number 23"]
    assert "somebody else's idea" not in prompts
    page = owner_client.get("/").text
    assert 'id="prompt-history"' in page and 'data-prompt="prompt number 3"' in page


def test_a_history_link_fills_the_prompt_without_javascript(owner_client, owner, outsider):
    mine = make(owner, prompt="a quiet harbour at dawn")
    form = owner_client.get(f"/?prompt_of={mine.uuid}").context["form"]
    assert form["prompt"].value() == "a quiet harbour at dawn"
    theirs = make(outsider, prompt="a secret plan")
    assert "a secret plan" not in owner_client.get(f"/?prompt_of={theirs.uuid}").text
    assert owner_client.get("/?prompt_of=nonsense").status_code == 200


def test_use_as_starting_image_keeps_the_images_prompt(owner_client, owner):
    from tests.gallery.test_gallery import make_generation, make_image

    image = make_image(make_generation(owner, "a red door in a white wall"))
    response = owner_client.get(f"/?model=flux%2Fdev%2Fimage-to-image&source={image.uuid}")
    form = response.context["form"]
    assert form["prompt"].value() == "a red door in a white wall"
    assert str(form["source_image"].value()) == str(image.uuid)


class LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str]] = []
        self._open: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open = {k: v or "" for k, v in attrs} | {"text": ""}

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.links.append(self._open)
            self._open = None


def reuse_links(html: str) -> list[tuple[str, str]]:
    parser = LinkParser()
    parser.feed(html)
    return sorted(
        (link["text"].strip(), link["href"].replace("&amp;", "&"))
        for link in parser.links
        if "reuse" in link.get("class", "").split(" ")
    )


def test_reuse_is_offered_and_labelled_the_same_on_every_page(owner_client, owner):
    from tests.gallery.test_gallery import make_generation, make_image

    generation = make_generation(owner, seed="4242")
    image = make_image(generation)
    expected = [
        ("Reuse settings, new seed", f"/?reuse={generation.uuid}&seed=0"),
        ("Reuse with seed 4242", f"/?reuse={generation.uuid}"),
    ]
    htmx = {"HX-Request": "true"}
    pages = {
        "studio card": owner_client.get("/").text,
        "card partial": owner_client.get(
            f"/generations/{generation.uuid}/?part=card", headers=htmx
        ).text,
        "generation page": owner_client.get(f"/generations/{generation.uuid}/").text,
        "image page": owner_client.get(f"/images/{image.uuid}/").text,
        "gallery viewer": owner_client.get(f"/images/{image.uuid}/?part=viewer", headers=htmx).text,
    }
    for name, html in pages.items():
        assert reuse_links(html) == expected, name
    # Without a seed (a provider that does not say) only the one that makes sense.
    unseeded = make_generation(owner, seed="")
    assert reuse_links(owner_client.get(f"/generations/{unseeded.uuid}/").text) == [
        ("Reuse settings, new seed", f"/?reuse={unseeded.uuid}&seed=0")
    ]


def downloaded(client: Any, image: Any) -> bytes:
    """The bytes of the image's Download button, as a user saves them."""
    response = client.get(reverse("gallery:download", args=[image.uuid]))
    assert response.status_code == 200
    return response.content


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_parameters_are_read_back_from_a_downloaded_image(owner_client, owner, fmt):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.gallery.test_gallery import make_generation, make_image

    generation = make_generation(
        owner,
        "A koi pond in the rain, “ukiyo-e”, seen from above",
        model="stable-diffusion-v35-large",
        seed="4242",
        negative_prompt="blurry, text",
        num_inference_steps=33,
        guidance_scale=6.5,
        output_format=fmt,
    )
    image = make_image(generation, fmt=fmt, size=(576, 1024))
    upload = SimpleUploadedFile(f"koi.{fmt}", downloaded(owner_client, image))
    response = owner_client.post(
        reverse("generator:parameters"), {"image": upload, "model": "flux-realism"}
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["found"] is True
    assert answer["fields"] == {
        "model": "stable-diffusion-v35-large",
        "prompt": "A koi pond in the rain, “ukiyo-e”, seen from above",
        "negative_prompt": "blurry, text",
        "num_inference_steps": "33",
        "guidance_scale": "6.5",
        "seed": "4242",
        "image_size": "portrait_16_9",
        "output_format": fmt,
    }
    assert "Stable Diffusion 3.5 Large" in answer["summary"] and "seed 4242" in answer["summary"]


def test_an_image_without_parameters_or_a_file_that_is_no_image(owner_client):
    import io

    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.new("RGB", (40, 30), "teal").save(buffer, "PNG")
    plain = SimpleUploadedFile("plain.png", buffer.getvalue())
    url = reverse("generator:parameters")
    assert owner_client.post(url, {"image": plain}).json() == {"found": False}
    text = SimpleUploadedFile("notes.txt", b"Steps: 20, Seed: 1, Size: 512x512")
    refused = owner_client.post(url, {"image": text})
    assert refused.status_code == 400 and "not a PNG, JPEG or WebP" in refused.json()["error"]
    assert owner_client.post(url, {}).status_code == 400


def test_a1111_parameters_from_another_tool_fill_what_the_model_has():
    from generator import parameters

    text = (
        "masterpiece, a castle on a hill,\nat sunset\n"
        "Negative prompt: lowres, bad anatomy\n"
        "Steps: 25, Sampler: DPM++ 2M, CFG scale: 7, Seed: 123456789, Size: 1000x600, "
        'Model: sd_xl_base_1.0, Lora hashes: "a: 1, b: 2"'
    )
    parsed = parameters.parse(text)
    assert parsed["prompt"] == "masterpiece, a castle on a hill,\nat sunset"
    assert parsed["negative_prompt"] == "lowres, bad anatomy"
    assert parsed["Lora hashes"] == "a: 1, b: 2"
    # An unknown model keeps the one chosen; a size off every preset is a custom one.
    values = parameters.form_values(parsed, model="flux-realism")
    assert values == {
        "model": "flux-realism",
        "prompt": "masterpiece, a castle on a hill,\nat sunset",
        "num_inference_steps": "25",
        "guidance_scale": "7",
        "seed": "123456789",
        "image_size": "custom",
        "width": "1000",
        "height": "600",
    }
    assert parameters.parse("just a prompt") == {"prompt": "just a prompt"}


def test_filled_values_are_fitted_to_their_model(owner_client):
    values = {"model": "flux-realism", "prompt": "x" * 3000, "num_inference_steps": "80"}
    response = owner_client.post(reverse("generator:form"), values, headers={"HX-Request": "true"})
    assert response.status_code == 200
    form = response.context["form"]
    assert form["prompt"].value() == "x" * 3000
    assert form["num_inference_steps"].value() == 50
    assert "set to 50" in response.text
