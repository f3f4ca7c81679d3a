"""The studio's AI/ML-API-compatible endpoints under /v1.

Scripts and SDKs written for the AI/ML API work here by changing only the base URL
and the key: the body is the provider's, validated by the same form as the web page,
and the answer carries both the AI/ML API fields (`images[]`, `seed`, ...) and the
OpenAI ones (`created`, `data[]`). Errors use the provider's flat error body.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from functools import wraps
from inspect import iscoroutinefunction
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.storage import default_storage
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from accounts import rules
from accounts.errors import BudgetExhausted, InvalidRequest, LimitReached, StudioError
from accounts.models import ApiToken
from accounts.tokens import api_token_authenticate, api_token_find, bearer_token
from api import services as api_services
from api.compat import (
    BodyError,
    openai_translate,
    user_check,
    with_ignored_header,
    with_provider_fields,
)
from api.openapi import IDEMPOTENCY_KEY_PATTERN
from api.schema import STUDIO_FIELDS, model_schema, type_error
from generator import services
from generator.forms import generation_form
from generator.media_links import MEDIA_LINK_PARAM, media_link_sign
from generator.models import Generation, Image, ProviderCall, usd_text
from generator.policy import prompt_blocked_record
from generator.registry import CUSTOM_SIZE, DEFAULT_MODEL, MODELS, ModelSpec, get_model
from generator.selectors import (
    generation_cost,
    generation_images_for,
    generations_visible_to,
)
from generator.services.key_refused import KEY_REFUSED_STATUSES, KEY_REFUSED_TEXT
from studio.http import flat_error, gateway_status, unauthorized

GENERATIONS_PATH = "/v1/images/generations"

api_error = flat_error


def allow_methods(*methods: str) -> Callable[[Any], Any]:
    """Django's require_http_methods for the API: any other method is the flat 405,
    with Allow (a GET view also takes HEAD).

    The view is CSRF-exempt, so the method is refused before Django's CSRF check
    answers a DELETE or a POST with its HTML 403 page. That exempts nothing: the
    methods CSRF guards reach only images_generations, which accepts a token and never
    a session cookie."""
    allowed = [*methods, "HEAD"] if "GET" in methods and "HEAD" not in methods else [*methods]

    def refused(request: HttpRequest) -> HttpResponse:
        return api_error(
            405,
            f"Method {request.method} is not allowed; use {' or '.join(methods)}",
            request.path,
            Allow=", ".join(allowed),
        )

    def decorator(view: Any) -> Any:
        if iscoroutinefunction(view):

            async def checked_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if request.method not in allowed:
                    return refused(request)
                return await view(request, *args, **kwargs)

            return csrf_exempt(wraps(view)(checked_async))

        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if request.method not in allowed:
                return refused(request)
            return view(request, *args, **kwargs)

        return csrf_exempt(wraps(view)(checked))

    return decorator


@csrf_exempt
def not_found(request: HttpRequest, unknown: str = "") -> HttpResponse:
    """Any /v1 path the API does not have, whatever the method: the flat 404, not the
    site's HTML page."""
    return api_error(404, f"Cannot {request.method} {request.path}: no such endpoint", request.path)


def request_user(request: HttpRequest, *, allow_session: bool) -> Any:
    """The token's user, or the signed-in user where a session is accepted (reads only)."""
    raw = bearer_token(request.headers.get("Authorization"))
    if raw:
        return api_token_authenticate(raw)
    if allow_session and request.user.is_authenticated:
        return request.user
    return None


def request_token(request: HttpRequest) -> ApiToken | None:
    raw = bearer_token(request.headers.get("Authorization"))
    return api_token_find(raw) if raw else None


# --- Request headers: Prefer, Idempotency-Key, an SDK's retry count ------------------

PREFERENCES = ("respond-async",)
# Visible ASCII with inner spaces, as the OpenAPI document states it.
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
IDEMPOTENCY_KEY_MAX_LENGTH = 255


class HeaderError(Exception):
    pass


def prefers_async(request: HttpRequest) -> bool:
    """Whether `Prefer` asks for respond-async; HeaderError for any other preference, so a
    misspelt one is not silently ignored into a ten-minute wait."""
    value = request.headers.get("Prefer")
    if value is None:
        return False
    asked = [part.split(";", 1)[0].strip() for part in value.split(",")]
    unknown = [p for p in asked if p.lower() not in PREFERENCES]
    if unknown or not asked:
        raise HeaderError(
            f"Prefer: unsupported preference {unknown[0] if unknown else value!r}; "
            "the studio understands respond-async"
        )
    return True


def idempotency_key(request: HttpRequest) -> str:
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return ""
    if len(value) > IDEMPOTENCY_KEY_MAX_LENGTH or not IDEMPOTENCY_KEY.fullmatch(value):
        raise HeaderError(
            "Idempotency-Key: expected 1 to 255 visible ASCII characters (a UUID, say)"
        )
    return value


def is_sdk_retry(request: HttpRequest) -> bool:
    """OpenAI's SDK (and the AI/ML API's fork) counts its automatic retries here."""
    count = request.headers.get("X-Stainless-Retry-Count", "")
    return count.isdigit() and int(count) > 0


# --- POST /v1/images/generations -----------------------------------------------------


def form_data_from_body(body: Any) -> tuple[ModelSpec, dict[str, Any], dict[str, Any]]:
    """Turn an AI/ML API request body into the web form's data.

    Returns the model, the form data, and the studio-level options (response_format
    for models that do not take it). Raises BodyError naming the field.
    """
    if not isinstance(body, dict):
        raise BodyError("Expected a JSON object body")
    where = lone_surrogate(body)
    if where is not None:
        # JSON's \ud800 escapes decode to text no database or encoder accepts.
        raise BodyError(f"{where}: Invalid string: a lone surrogate is not Unicode text")
    # OpenAI's SDKs leave `model` out unless it is given: the studio's default then
    # (null too, like any other parameter; "" is a model name nobody offers).
    model_id = body.get("model")
    if model_id is None:
        model_id = DEFAULT_MODEL
    spec = get_model(str(model_id))
    if spec is None:
        choices = " | ".join(f"'{m}'" for m in MODELS)
        raise BodyError(f"model: Invalid enum value. Expected {choices}, received '{model_id}'")
    if "prompt" not in body:
        raise BodyError("prompt: Required")

    data = dict(body)
    options: dict[str, Any] = {}
    properties = model_schema(spec)["properties"]
    # The schema lists the studio's own fields too; they are the model's when it
    # documents one of the same name, and the studio's (options) otherwise.
    studio = set(STUDIO_FIELDS) - {p.name for p in spec.params}
    known = set(properties) - studio
    for name in studio:
        if name in data:
            options[name] = data.pop(name)
    ignored = openai_translate(spec, data, known)
    if ignored:
        options["ignored_params"] = ignored
    if "user" in options:
        options["user"] = user_check(options["user"])
    unknown = sorted(set(data) - known)
    if unknown:
        names = ", ".join(f"'{k}'" for k in unknown)
        raise BodyError(f"Unrecognized key(s) in object: {names}")
    if options.get("response_format", "url") not in ("url", "b64_json"):
        raise BodyError(
            "response_format: Invalid enum value. Expected 'url' | 'b64_json', "
            f"received '{options['response_format']}'"
        )

    size = data.pop("image_size", None)
    if isinstance(size, dict):
        extra = sorted(set(size) - {"width", "height"})
        if extra:
            raise BodyError(f"image_size: Unrecognized key(s) in object: {extra}")
        data.update(image_size=CUSTOM_SIZE, width=size.get("width"), height=size.get("height"))
    elif size is not None:
        if not isinstance(size, str) or size == CUSTOM_SIZE:
            raise BodyError("image_size: Expected a preset name or {width, height}")
        data["image_size"] = size
    elif spec.size is not None:
        data["image_size"] = spec.size.default
    for param in spec.params:
        value = data.get(param.name)
        schema = properties[param.name]
        if value is None:
            # null is the same as leaving the parameter out. A checkbox reads absence
            # as false, so a boolean the form shows takes its default instead.
            if schema["type"] == "boolean" and param.in_form:
                data[param.name] = schema.get("default")
            continue
        problem = type_error(value, schema)
        if problem:
            raise BodyError(f"{param.name}: {problem}")
    for name in ("prompt", "image_url", *spec.fixed):
        problem = type_error(data[name], properties[name]) if name in data else None
        if problem:
            raise BodyError(f"{name}: {problem}")
    data["model"] = spec.id
    return spec, data, options


def lone_surrogate(body: dict[str, Any]) -> str | None:
    """The first field (`prompt`, `image_size.width`, `colors[2].r`) whose name or text
    holds a lone surrogate, or None. Iterative: the body may nest as deep as json.loads
    allows."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if not _is_unicode(value):
                return where or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{where}.{key}" if where else str(key)
                if not _is_unicode(str(key)):
                    return where or "body"
                stack.append((name, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _form_errors(form: Any, image_field: str = "image_url") -> str:
    parts = []
    for field, errors in form.errors.items():
        name = field if field not in ("width", "height") else f"image_size.{field}"
        if field in ("image_file", "source_image", "image_url"):
            name = image_field
        parts.append(f"{name}: {' '.join(str(e) for e in errors)}")
    return "; ".join(parts)


# Waiting API calls run their short database steps through these slots, so however
# many are waiting, one web process holds at most this many connections for them.
_DB_SLOTS = threading.BoundedSemaphore(settings.API_DB_CONCURRENCY)


def error_response(exc: StudioError, path: str) -> JsonResponse:
    """The one place a domain error becomes an API answer (the flat error body)."""
    if isinstance(exc, BudgetExhausted):
        # Waiting does not help until the month turns or an admin raises the budget, so
        # no Retry-After, and 403 as the provider says for its own "out of credits":
        # SDKs retry a 429 and give up on a 403.
        return api_error(403, exc.message, path)
    if isinstance(exc, LimitReached):
        return api_error(429, exc.message, path, Retry_After=str(exc.retry_after))
    if isinstance(exc, InvalidRequest):
        return api_error(400, f"Body validation error! {exc.message}", path)
    return api_error(exc.status, exc.message, path)


def _submit(
    token: ApiToken,
    body: Any,
    digest: str,
    key: str,
    sdk_retry: bool,
    files: Any = None,
    image_field: str = "image_url",
) -> tuple[Generation, bool]:
    """The request's generation, new or reattached (True); raises a StudioError if it may
    not be created. Runs in a thread.

    `files` holds an uploaded starting image as the form's `image_file`; errors about
    the starting image name `image_field`, the field the client sent it in."""
    with _DB_SLOTS:
        try:
            return _submit_unbounded(token, body, digest, key, sdk_retry, files, image_field)
        finally:
            _release_connection()


def _submit_unbounded(
    token: ApiToken,
    body: Any,
    digest: str,
    key: str,
    sdk_retry: bool,
    files: Any,
    image_field: str,
) -> tuple[Generation, bool]:
    replay = {"token": token, "body_sha256": digest, "idempotency_key": key, "sdk_retry": sdk_retry}
    # A repeat reattaches before anything is checked again: the model may have been
    # switched off or the limit reached since, and neither makes the first one undone.
    earlier = api_services.generation_replay(**replay)
    if earlier is not None:
        return earlier, True
    form, options = _validated_form(token.user, body, files, image_field)
    return api_services.generation_submit(
        spec=form.spec,
        body=form.request_body(),
        options=options,
        reference=form.reference,
        **replay,
    )


def _validated_form(
    user: Any, body: Any, files: Any = None, image_field: str = "image_url"
) -> tuple[Any, dict[str, Any]]:
    """The valid generation form for an API body, and the studio's options; raises
    InvalidRequest naming the field. A blocked prompt is in the audit log."""
    try:
        spec, data, options = form_data_from_body(body)
    except BodyError as exc:
        raise InvalidRequest(str(exc)) from None
    form = generation_form(data, files, viewer=user)
    valid = form.is_valid()
    if form.blocked_term:
        prompt_blocked_record(
            user=user, prompt=str(data.get("prompt")), term=form.blocked_term, via="api"
        )
    if not valid:
        raise InvalidRequest(_form_errors(form, image_field))
    return form, options


def _validate_and_create_unbounded(user: Any, body: Any) -> Generation:
    """A new generation for an API body, as a request without a key or retry makes one
    (the benchmarks call this to skip only the HTTP hop)."""
    form, options = _validated_form(user, body)
    return services.generation_create(
        owner=user,
        spec=form.spec,
        body=form.request_body(),
        options=options,
        reference=form.reference,
    )


def _current(generation_id: int) -> Generation:
    with _DB_SLOTS:
        try:
            return Generation.objects.prefetch_related("images").get(pk=generation_id)
        finally:
            _release_connection()


def _bounded_authenticate(raw: str) -> tuple[ApiToken | None, bool]:
    """The token (with its user) and whether they may generate (asking reads their
    groups, so it runs here, in the thread, not in the waiting coroutine)."""
    with _DB_SLOTS:
        try:
            token = api_token_find(raw)
            return token, token is not None and rules.may_generate(token.user)
        finally:
            _release_connection()


def _bounded_generation_json(
    request: HttpRequest, generation_id: int, viewer: Any, token_id: int | None
) -> dict[str, Any]:
    with _DB_SLOTS:
        try:
            return generation_json(request, generation_id, viewer, token_id)
        finally:
            _release_connection()


def _accepted(data: dict[str, Any], location: str, **headers: str) -> JsonResponse:
    """202 with the generation as it is now and where to poll it."""
    response = JsonResponse(data, status=202)
    response["Location"] = location
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def failure_response(generation: Generation, path: str, location: str) -> JsonResponse:
    """A failed generation as the API answers it, saying whose fault it was: a status
    the caller could take for its own verdict on its request (401, 403, 404, 429) is
    never passed on from the provider."""
    # Rows failed before the store clamped statuses may hold a 1xx or 3xx.
    status = gateway_status(generation.error_status)
    message = generation.error or "The generation failed"
    headers = {"Location": location}
    if status in KEY_REFUSED_STATUSES:
        # The studio's key, not the caller's token: the caller cannot fix it, an admin can.
        status = 502
        message = (
            f"{KEY_REFUSED_TEXT} (the provider said: {message}). This is not about your "
            "token; a studio admin has been told and must fix AIMLAPI_KEY."
        )
    elif status == 429:
        # The provider kept rate-limiting the studio past its patience.
        status = 503
        message = f"The AI/ML API is rate-limiting the studio: {message}"
        headers["Retry_After"] = str(int(settings.GENERATION_RETRY_MAX) or 1)
    elif status in (408, 504):
        status = 504
    elif status not in (400, 422):
        # Another refusal or failure upstream (404 for a model it no longer has, a 5xx):
        # the gateway's, with the provider's message.
        status = 502
    return api_error(status, message, path, **headers)


def _release_connection() -> None:
    # The request waits for up to minutes between reads; between them it holds no
    # database connection. (Inside a transaction, i.e. in tests, the connection stays.)
    if not connection.in_atomic_block:
        connection.close()


@allow_methods("POST")
async def images_generations(request: HttpRequest) -> HttpResponse:
    path = GENERATIONS_PATH
    # Only a token may create: a browser session on a cross-site POST must not.
    raw = bearer_token(request.headers.get("Authorization"))
    token, may_generate = await sync_to_async(_bounded_authenticate)(raw) if raw else (None, False)
    if token is None:
        return unauthorized(path)
    user = token.user
    if not may_generate:
        return api_error(403, "Your role in this studio (viewer) cannot generate images", path)
    try:
        respond_async = prefers_async(request)
        key = idempotency_key(request)
    except HeaderError as exc:
        return api_error(400, str(exc), path)
    try:
        raw_body = request.body
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return api_error(413, f"Request body too large: the limit is {limit} bytes", path)
    try:
        body = json.loads(raw_body or b"null")
    except (ValueError, UnicodeDecodeError):
        return api_error(400, "Body validation error! Expected a JSON object body", path)
    except RecursionError:
        return api_error(400, "Body validation error! The JSON body nests too deeply", path)

    digest = hashlib.sha256(raw_body).hexdigest()
    try:
        generation, replayed = await sync_to_async(_submit)(
            token, body, digest, key, is_sdk_retry(request)
        )
    except StudioError as exc:
        return error_response(exc, path)
    response = await generation_answer(
        request,
        generation,
        user,
        path,
        token_id=token.pk,
        respond_async=respond_async,
        replayed=replayed,
    )
    return with_ignored_header(response, generation)


async def generation_answer(
    request: HttpRequest,
    generation: Generation,
    user: Any,
    path: str,
    *,
    token_id: int,
    respond_async: bool,
    replayed: bool,
) -> HttpResponse:
    """The answer to a created generation: 202 at once with Prefer: respond-async,
    else the finished generation once it is (or the error it failed with, or 504)."""
    location = request.build_absolute_uri(reverse("api:generation", args=[generation.uuid]))
    # Told to the client, as Stripe does, so a script can see it got the first answer.
    replay_headers = {"Idempotent_Replayed": "true"} if replayed else {}

    if respond_async:
        data = await sync_to_async(_bounded_generation_json)(request, generation.pk, user, token_id)
        return _accepted(data, location, Preference_Applied="respond-async", **replay_headers)

    # A client that hangs up stops this wait (the ASGI server cancels it); the
    # generation goes on, and the client's retry reattaches to it.
    deadline = time.monotonic() + settings.API_WAIT_TIMEOUT
    delay = 0.25
    while True:
        current = await sync_to_async(_current)(generation.pk)
        if current.is_finished:
            break
        if time.monotonic() >= deadline:
            # Still running is not a failure: a 5xx here would make an SDK retry, and
            # answer as respond-async would have, so the client polls instead.
            data = await sync_to_async(_bounded_generation_json)(
                request, generation.pk, user, token_id
            )
            return _accepted(data, location, **replay_headers)
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 1.0)

    if current.status == Generation.Status.CANCELLED:
        return api_error(
            409, f"Generation {generation.uuid} was cancelled", path, Location=location
        )
    if current.status == Generation.Status.FAILED:
        response = failure_response(current, path, location)
    else:
        data = await sync_to_async(answer_json)(request, current, user, token_id)
        response = JsonResponse(data, status=200)
        response["Location"] = location
        await sync_to_async(_bounded_usd_spent_header)(response, current)
    for name, value in replay_headers.items():
        response[name.replace("_", "-")] = value
    return response


def _bounded_usd_spent_header(response: HttpResponse, generation: Generation) -> None:
    with _DB_SLOTS:
        try:
            _usd_spent_header(response, generation)
        finally:
            _release_connection()


def _usd_spent_header(response: HttpResponse, generation: Generation) -> None:
    # What the provider charged, passed on as it reports it, when it did.
    usd, source = generation_cost(generation)
    if source == "provider":
        response["x-aimlapi-usd-spent"] = usd_text(usd)


def _media_url(
    request: HttpRequest,
    name: str,
    image: Image,
    generation: Generation,
    viewer: Any,
    token_id: int | None,
) -> str:
    """The studio's URL of a stored file, signed so that it opens without a token for
    API_IMAGE_URL_TTL seconds while the image stays as visible as it is now."""
    sig = media_link_sign(
        name=name, image=image, generation=generation, user_id=viewer.pk, token_id=token_id
    )
    url = reverse("generator:media", args=[name]) + "?" + urlencode({MEDIA_LINK_PARAM: sig})
    return request.build_absolute_uri(url)


def answer_json(
    request: HttpRequest, generation: Generation, viewer: Any, token_id: int | None
) -> dict[str, Any]:
    """The finished generation as AI/ML API clients and OpenAI clients both read it."""
    images = list(generation.images.all())
    urls = {
        image.pk: _media_url(request, image.file.name, image, generation, viewer, token_id)
        for image in images
    }
    inline = generation.options.get("response_format") == "b64_json" or (
        generation.params.get("response_format") == "b64_json"
    )
    data = []
    for image in images:
        entry: dict[str, Any] = {"url": urls[image.pk]}
        if inline:
            with default_storage.open(image.file.name, "rb") as fh:
                entry["b64_json"] = base64.b64encode(fh.read()).decode()
        data.append(entry)
    answer: dict[str, Any] = {
        "id": str(generation.uuid),
        "object": "image.generation",
        "created": int(generation.created_at.timestamp()),
        "model": generation.model,
        "status": generation.status,
        "images": [
            {
                "url": urls[image.pk],
                "width": image.width,
                "height": image.height,
                "content_type": image.content_type,
            }
            for image in images
        ],
        "seed": int(generation.seed) if generation.seed.isdigit() else None,
        "has_nsfw_concepts": [image.nsfw for image in images],
        "timings": generation.timings or {},
        "prompt": generation.provider_prompt or generation.prompt,
        "data": data,
    }
    return with_provider_fields(answer, generation, images)


# --- GET /v1/generations/<uuid> ------------------------------------------------------


def _cost_json(generation: Generation) -> dict[str, Any]:
    usd, source = generation_cost(generation)
    return {"usd": float(usd), "source": source}


def generation_json(
    request: HttpRequest, generation_id: int, viewer: Any, token_id: int | None
) -> dict[str, Any]:
    """The generation's state; its image URLs are signed afresh for `viewer` (and the
    token they used, None for a session) on every call."""
    generation = Generation.objects.prefetch_related("images").get(pk=generation_id)

    def url(image: Image, name: str) -> str:
        return _media_url(request, name, image, generation, viewer, token_id)

    return {
        "id": str(generation.uuid),
        "object": "image.generation",
        "model": generation.model,
        "status": generation.status,
        "error": generation.error or None,
        "parameters": generation.params,
        "user": generation.options.get("user"),
        "ignored_params": generation.options.get("ignored_params", []),
        "seed": int(generation.seed) if generation.seed.isdigit() else None,
        "timings": generation.timings or {},
        "attempts": generation.attempts,
        "cost": _cost_json(generation),
        # The images of a batch that did not come back (each is its own call).
        "failures": [
            {
                "index": call.index,
                "seed": int(call.seed) if call.seed.isdigit() else None,
                "error": call.error,
            }
            for call in generation.calls.filter(status=ProviderCall.Status.FAILED)
        ],
        "created_at": generation.created_at.isoformat(),
        "finished_at": generation.finished_at.isoformat() if generation.finished_at else None,
        "url": request.build_absolute_uri(reverse("generator:detail", args=[generation.uuid])),
        "images": [
            {
                "url": url(image, image.file.name),
                "thumbnail_url": url(image, image.thumbnail.name),
                "width": image.width,
                "height": image.height,
                "content_type": image.content_type,
                "nsfw": image.nsfw,
                "sha256": image.sha256,
            }
            for image in generation_images_for(generation, viewer)
        ],
    }


def _token_or_session(request: HttpRequest) -> tuple[Any, ApiToken | None]:
    """Who reads: a valid token's owner (and the token), else the signed-in user;
    (None, None) for a token that does not work, so it never falls back to a session."""
    token = request_token(request)
    if token is not None:
        return token.user, token
    if bearer_token(request.headers.get("Authorization")):
        return None, None
    return request_user(request, allow_session=True), None


@allow_methods("GET")
def generation_detail(request: HttpRequest, ident: str) -> HttpResponse:
    path = request.path
    user, token = _token_or_session(request)
    if user is None:
        return unauthorized(path)
    token_id = token.pk if token is not None else None
    try:
        uuid = UUID(ident)
    except ValueError:
        # Not an id the studio ever gives out: the same 404 as one that is not there.
        return api_error(404, f"Generation {ident} not found", path)
    generation = generations_visible_to(user).filter(uuid=uuid).only("pk").first()
    if generation is None:
        return api_error(404, f"Generation {uuid} not found", path)
    response = JsonResponse(generation_json(request, generation.pk, user, token_id))
    _usd_spent_header(response, generation)
    return response


# --- POST /v1/generations/<uuid>/cancel ----------------------------------------------


def _session_csrf_refusal(request: HttpRequest) -> str | None:
    """Why a cookie-authenticated POST fails Django's CSRF check, or None. The API
    views are CSRF-exempt (so a wrong method gets the flat 405 first); a session may
    still cancel from the page's own scripts, so the check is made here instead."""
    refused = CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, None, (), {})
    return None if refused is None else "CSRF verification failed for this signed-in request"


@allow_methods("POST")
def generation_cancel(request: HttpRequest, ident: str) -> HttpResponse:
    """Cancel a queued or running generation: owner or admin. Answers the generation
    as GET /v1/generations/<uuid> does, now `cancelled`; 409 once it has finished."""
    path = request.path
    user, token = _token_or_session(request)
    if user is None:
        return unauthorized(path)
    token_id = token.pk if token is not None else None
    if token is None:
        reason = _session_csrf_refusal(request)
        if reason:
            return api_error(403, reason, path)
    try:
        uuid = UUID(ident)
    except ValueError:
        return api_error(404, f"Generation {ident} not found", path)
    generation = generations_visible_to(user).filter(uuid=uuid).first()
    if generation is None:
        return api_error(404, f"Generation {uuid} not found", path)
    try:
        services.generation_cancel(generation=generation, by=user)
    except StudioError as exc:
        return error_response(exc, path)
    return JsonResponse(generation_json(request, generation.pk, user, token_id))
