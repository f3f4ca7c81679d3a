"""Hostile users: arbitrary form data and API bodies never cause a 500 and never get
past validation with a value the registry forbids; prompts full of markup are shown
escaped on every page; production settings pass Django's deploy check."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.tokens import api_token_create
from api.views import BodyError, form_data_from_body
from generator.forms import CONTROL_CHARS, generation_form
from generator.models import ModelSetting
from generator.registry import CUSTOM_SIZE, MODELS, ModelSpec
from tests.conftest import ROOT, with_role
from tests.gallery.test_gallery import make_generation, make_image

pytestmark = pytest.mark.django_db

# Enough examples to find the usual holes (types, bounds, unicode) in CI time; no
# deadline, because the first example of a run pays for template and query warm-up.
settings.register_profile(
    "hostile",
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HOSTILE = settings.get_profile("hostile")

MODEL_IDS = sorted(MODELS)


@pytest.fixture
def every_model_enabled() -> None:
    # Deprecated models are off by default; an admin can enable them, so they are fuzzed too.
    for model_id in MODEL_IDS:
        ModelSetting.objects.update_or_create(model=model_id, defaults={"enabled": True})


# --- Strategies -----------------------------------------------------------------------

numbers_as_text = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " ", "1e309", "0x10", "١٢", "3.5", "-0", "nan", "32", "1472"]),
)
text = st.text(max_size=60)
form_value = st.one_of(numbers_as_text, text, st.sampled_from(["on", "true", CUSTOM_SIZE]))


def param_names(spec: ModelSpec) -> list[str]:
    names = ["prompt", "image_size", "width", "height", "image_url", "source_image"]
    return names + [p.name for p in spec.params] + list(spec.fixed)


@st.composite
def form_data(draw: Any) -> dict[str, str]:
    model_id = draw(st.sampled_from([*MODEL_IDS, "no-such-model", ""]))
    spec = MODELS.get(model_id) or MODELS[MODEL_IDS[0]]
    data = {"model": model_id}
    for name in param_names(spec):
        if draw(st.booleans()):
            choices = [c for c, _ in spec.param(name).choices] if spec.param(name) else []
            data[name] = draw(
                st.sampled_from(choices) if choices and draw(st.booleans()) else form_value
            )
    data["prompt"] = draw(st.one_of(text, st.text(min_size=1, max_size=5000)))
    return data


json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), text,
)  # fmt: skip
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def api_body(draw: Any) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_value)  # not even an object
    model_id = draw(st.sampled_from([*MODEL_IDS, "no-such-model"]))
    spec = MODELS.get(model_id) or MODELS[MODEL_IDS[0]]
    body: dict[str, Any] = {"model": model_id, "prompt": draw(st.one_of(text, json_value))}
    names = [*param_names(spec), "n", "size", "response_format", "extra"]
    for name in draw(st.lists(st.sampled_from(names), max_size=6, unique=True)):
        param = spec.param(name)
        if param is not None and param.choices and draw(st.booleans()):
            body[name] = draw(st.sampled_from([c for c, _ in param.choices]))
        elif name == "image_size" and spec.size is not None and draw(st.booleans()):
            body[name] = {"width": draw(st.integers(0, 3000)), "height": draw(st.integers(0, 3000))}
        else:
            body[name] = draw(json_value)
    return body


# --- The invariant: a valid form means every registry constraint holds ----------------


def assert_within_registry(spec: ModelSpec, body: dict[str, Any]) -> None:
    prompt = body["prompt"]
    assert prompt.strip() and len(prompt) <= spec.prompt_max_length
    assert not CONTROL_CHARS.search(prompt)
    if spec.size is not None:
        size = body["image_size"]
        if isinstance(size, dict):
            rule = spec.size
            for side in (size["width"], size["height"]):
                assert isinstance(side, int) and rule.minimum <= side <= rule.maximum
                assert side % rule.multiple == 0
        else:
            assert size in spec.size.presets
    for param in spec.params:
        if param.name not in body:
            continue
        value = body[param.name]
        if param.kind in ("int", "float"):
            assert isinstance(value, int if param.kind == "int" else float)
            assert not isinstance(value, bool) and value == value  # no NaN
            assert param.minimum is None or value >= param.minimum
            assert param.maximum is None or value <= param.maximum
        elif param.kind == "choice":
            assert value in {c for c, _ in param.choices}
        elif param.kind == "bool":
            assert isinstance(value, bool)
        elif param.kind == "text":
            assert isinstance(value, str)
            assert param.max_length is None or len(value) <= param.max_length
        elif param.kind == "colors":
            assert all(set(c) == {"r", "g", "b"} for c in value)
            assert all(0 <= c[k] <= 255 for c in value for k in "rgb")
    for name, fixed in spec.fixed.items():
        assert body.get(name, fixed) == fixed
    assert set(body) <= {"model", "prompt", "image_size", "image_url"} | set(param_names(spec))


@given(data=form_data())
@HOSTILE
def test_any_form_data_is_refused_or_within_the_registry(every_model_enabled, data):
    form = generation_form(data)
    if form.is_valid():
        assert form.spec.id == data["model"]
        assert_within_registry(form.spec, form.request_body())


@given(body=api_body())
@HOSTILE
def test_any_api_body_is_refused_or_within_the_registry(every_model_enabled, body):
    try:
        spec, data, _ = form_data_from_body(body)
    except BodyError as exc:
        assert str(exc)  # the client is told which field
        return
    form = generation_form(data)
    if form.is_valid():
        assert form.spec is spec
        assert_within_registry(spec, form.request_body())


@pytest.fixture
def api_client(owner) -> Client:
    raw = api_token_create(user=owner, name="fuzz")[1]
    return Client(headers={"Authorization": f"Bearer {raw}"})


def refused_before_any_work(body: Any) -> bool:
    try:
        _, data, _ = form_data_from_body(body)
    except BodyError:
        return True
    return not generation_form(data).is_valid()


@given(body=api_body())
@settings(HOSTILE, max_examples=25)
def test_the_api_view_answers_bad_bodies_with_a_400(every_model_enabled, api_client, body):
    # Only bodies validation refuses: a valid one would wait for a worker to run it.
    if not refused_before_any_work(body):
        return
    response = api_client.post(
        reverse("api:images-generations"), json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["message"]


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"\xff\xfe", b"[1, 2", b'{"model": "flux/schnell", "prompt": NaN}', b"null"]
)
def test_the_api_view_answers_broken_json_with_a_400(api_client, raw):
    response = api_client.post(
        reverse("api:images-generations"), raw, content_type="application/json"
    )
    assert response.status_code == 400


def test_the_api_refuses_a_signed_in_browser_session_without_a_token(client, owner):
    # The API is exempt from CSRF because it needs a bearer token; a cookie session
    # alone must therefore never be enough to spend money through it.
    client.force_login(owner)
    response = client.post(
        reverse("api:images-generations"),
        json.dumps({"model": "flux/schnell", "prompt": "a lighthouse"}),
        content_type="application/json",
    )
    assert response.status_code == 401


# --- Markup in prompts is text on every page -------------------------------------------

PROMPT = '{{ 7|add:7 }} {% now "Y" %} <script>alert(1)</script><img src=x onerror=alert(2)>'


def assert_escaped(response: Any, status: int = 200) -> None:
    assert response.status_code == status, response.status_code
    body = response.content.decode()
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(1)" in body or "&lt;img src=x" in body
    assert "{{ 7|add:7 }}" in body  # shown as typed, never evaluated as a template


def test_a_prompt_with_markup_is_escaped_everywhere_it_appears(client, owner, teammate, moderator):
    generation = make_generation(owner, PROMPT)
    image = make_image(generation)
    reporter = Client()
    reporter.force_login(teammate)
    reporter.post(reverse("gallery:report", args=[image.uuid]), {"reason": "other", "text": PROMPT})
    client.force_login(owner)
    for url in ("/", reverse("generator:detail", args=[generation.uuid])):
        assert_escaped(client.get(url))
        assert_escaped(client.get(url, headers={"HX-Request": "true"}))

    client.force_login(moderator)
    assert_escaped(client.get(reverse("gallery:moderation")))
    assert_escaped(client.get(reverse("accounts:audit")))
    # Approving notifies the owner with the prompt in the text.
    client.post(reverse("gallery:decide"), {"one": f"approve:{image.uuid}"})

    client.force_login(owner)
    assert_escaped(client.get(reverse("gallery:index")))
    assert_escaped(client.get(reverse("gallery:image", args=[image.uuid])))
    assert_escaped(client.get(reverse("accounts:notifications")))

    api = client.get(reverse("api:generation", args=[generation.uuid]))
    assert api["Content-Type"].startswith("application/json")
    assert api["X-Content-Type-Options"] == "nosniff"
    assert PROMPT in repr(api.json())  # the exact text, for the client to escape


def test_a_refused_prompt_with_markup_is_shown_back_escaped(client, owner):
    from generator.models import BlockedTerm

    BlockedTerm.objects.create(pattern="alert")
    client.force_login(owner)
    # The form comes back with the prompt in its textarea and the refusal beside it.
    assert_escaped(client.post("/", {"model": "flux/schnell", "prompt": PROMPT}), status=400)
    client.force_login(with_role(owner, "admin"))
    audit = client.get(reverse("accounts:audit"))
    assert audit.status_code == 200
    assert "<script>alert" not in audit.content.decode()


# --- Production settings ----------------------------------------------------------------


def test_the_deploy_check_is_clean_with_production_settings(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SETTINGS_MODULE", "DEBUG", "SECRET_KEY")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="studio.settings",
        DATA_DIR=str(tmp_path),
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="studio.example.com",
        CSRF_TRUSTED_ORIGINS="https://studio.example.com",
        BEHIND_TLS_PROXY="true",
        SESSION_COOKIE_SECURE="true",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_local_settings_serve_plain_http_without_redirects_or_hsts(client):
    # `make run` on localhost: no TLS in front, so neither may be on.
    from django.conf import settings as django_settings

    assert django_settings.SECURE_SSL_REDIRECT is False
    assert django_settings.SECURE_HSTS_SECONDS == 0
    assert client.get("/accounts/login/").status_code == 200
