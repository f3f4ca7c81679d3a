"""The studio's AI/ML-API-compatible endpoints under /v1.

Scripts and SDKs written for the AI/ML API work here by changing only the base URL
and the key: the body is the provider's, validated by the same form as the web page,
and the answer carries both the AI/ML API fields (`images[]`, `seed`, ...) and the
OpenAI ones (`created`, `data[]`). Errors use the provider's flat error body.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable
from functools import wraps
from inspect import iscoroutinefunction
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.storage import default_storage
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from accounts import rules
from accounts.errors import BudgetExhausted, InvalidRequest, LimitReached, StudioError
from accounts.tokens import api_token_authenticate, bearer_token
from api.schema import STUDIO_FIELDS, model_schema, type_error
from generator import services
from generator.forms import generation_form
from generator.models import Generation, ProviderCall, usd_text
from generator.policy import prompt_blocked_record
from generator.registry import CUSTOM_SIZE, MODELS, ModelSpec, get_model
from generator.selectors import (
    generation_cost,
    generation_images_for,
    generations_visible_to,
)
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


# --- POST /v1/images/generations -----------------------------------------------------


class BodyError(Exception):
    pass


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
    model_id = body.get("model")
    if not model_id:
        raise BodyError("model: Required")
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
    # OpenAI clients say `n` and `size`; translate them where the model has the
    # AI/ML API equivalents, as the provider's own OpenAI-compatible examples do.
    if "n" in data and "n" not in known and "num_images" in known:
        if "num_images" in data:
            raise BodyError("n: give either n or num_images, not both")
        data["num_images"] = data.pop("n")
    if "size" in data and "size" not in known and spec.size is not None:
        if "image_size" in data:
            raise BodyError("size: give either size or image_size, not both")
        size = str(data.pop("size"))
        width, _, height = size.partition("x")
        if not (width.isdigit() and height.isdigit()):
            raise BodyError(f"size: Expected 'WIDTHxHEIGHT', received '{size}'")
        data["image_size"] = {"width": int(width), "height": int(height)}
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


def _form_errors(form: Any) -> str:
    parts = []
    for field, errors in form.errors.items():
        name = field if field not in ("width", "height") else f"image_size.{field}"
        if field in ("image_file", "source_image"):
            name = "image_url"
        parts.append(f"{name}: {' '.join(str(e) for e in errors)}")
    return "; ".join(parts)


# Waiting API calls run their short database steps through these slots, so however
# many are waiting, one web process holds at most this many connections for them.
_DB_SLOTS = threading.BoundedSemaphore(settings.API_DB_CONCURRENCY)


def error_response(exc: StudioError, path: str) -> JsonResponse:
    """The one place a domain error becomes an API answer (the flat error body)."""
    if isinstance(exc, LimitReached | BudgetExhausted):
        return api_error(
            exc.status, exc.message, path, Retry_After=str(settings.GENERATION_LIMIT_RETRY_AFTER)
        )
    if isinstance(exc, InvalidRequest):
        return api_error(400, f"Body validation error! {exc.message}", path)
    return api_error(exc.status, exc.message, path)


def _validate_and_create(user: Any, body: Any) -> Generation:
    """Create the generation (raising a StudioError if it may not be). Runs in a thread."""
    with _DB_SLOTS:
        return _validate_and_create_unbounded(user, body)


def _validate_and_create_unbounded(user: Any, body: Any) -> Generation:
    try:
        spec, data, options = form_data_from_body(body)
    except BodyError as exc:
        raise InvalidRequest(str(exc)) from None
    form = generation_form(data, viewer=user)
    valid = form.is_valid()
    if form.blocked_term:
        prompt_blocked_record(
            user=user, prompt=str(data.get("prompt")), term=form.blocked_term, via="api"
        )
    if not valid:
        raise InvalidRequest(_form_errors(form))
    try:
        return services.generation_create(
            owner=user,
            spec=form.spec,
            body=form.request_body(),
            options=options,
            reference=form.reference,
        )
    finally:
        _release_connection()


def _current(generation_id: int) -> Generation:
    with _DB_SLOTS:
        try:
            return Generation.objects.prefetch_related("images").get(pk=generation_id)
        finally:
            _release_connection()


def _bounded_authenticate(raw: str) -> tuple[Any, bool]:
    """The token's user and whether they may generate (asking reads their groups, so it
    runs here, in the thread, not in the waiting coroutine)."""
    with _DB_SLOTS:
        try:
            user = api_token_authenticate(raw)
            return user, user is not None and rules.may_generate(user)
        finally:
            _release_connection()


def _bounded_generation_json(
    request: HttpRequest, generation_id: int, viewer: Any
) -> dict[str, Any]:
    with _DB_SLOTS:
        try:
            return generation_json(request, generation_id, viewer)
        finally:
            _release_connection()


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
    user, may_generate = await sync_to_async(_bounded_authenticate)(raw) if raw else (None, False)
    if user is None:
        return unauthorized(path)
    if not may_generate:
        return api_error(403, "Your role in this studio (viewer) cannot generate images", path)
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

    try:
        generation = await sync_to_async(_validate_and_create)(user, body)
    except StudioError as exc:
        return error_response(exc, path)
    location = request.build_absolute_uri(reverse("api:generation", args=[generation.uuid]))

    if "respond-async" in request.headers.get("Prefer", ""):
        data = await sync_to_async(_bounded_generation_json)(request, generation.pk, user)
        response = JsonResponse(data, status=202)
        response["Location"] = location
        response["Preference-Applied"] = "respond-async"
        return response

    deadline = time.monotonic() + settings.API_WAIT_TIMEOUT
    delay = 0.25
    while True:
        current = await sync_to_async(_current)(generation.pk)
        if current.is_finished:
            break
        if time.monotonic() >= deadline:
            return api_error(
                504,
                f"Generation timeout: generation {generation.uuid} is still "
                f"{current.status}; poll {location}",
                path,
                Location=location,
            )
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 1.0)

    if current.status == Generation.Status.FAILED:
        # Rows failed before the store clamped statuses may hold a 1xx or 3xx.
        status = gateway_status(current.error_status)
        headers = {"Location": location}
        if status == 429:
            headers["Retry_After"] = str(int(settings.GENERATION_RETRY_MAX) or 1)
        return api_error(status, current.error or "The generation failed", path, **headers)
    data = await sync_to_async(answer_json)(request, current)
    response = JsonResponse(data, status=200)
    response["Location"] = location
    await sync_to_async(_bounded_usd_spent_header)(response, current)
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


def _media_url(request: HttpRequest, name: str) -> str:
    return request.build_absolute_uri(reverse("generator:media", args=[name]))


def answer_json(request: HttpRequest, generation: Generation) -> dict[str, Any]:
    """The finished generation as AI/ML API clients and OpenAI clients both read it."""
    images = list(generation.images.all())
    inline = generation.options.get("response_format") == "b64_json" or (
        generation.params.get("response_format") == "b64_json"
    )
    data = []
    for image in images:
        entry: dict[str, Any] = {"url": _media_url(request, image.file.name)}
        if inline:
            with default_storage.open(image.file.name, "rb") as fh:
                entry["b64_json"] = base64.b64encode(fh.read()).decode()
        if generation.provider_prompt:
            entry["revised_prompt"] = generation.provider_prompt
        data.append(entry)
    answer: dict[str, Any] = {
        "id": str(generation.uuid),
        "object": "image.generation",
        "created": int(generation.created_at.timestamp()),
        "model": generation.model,
        "status": generation.status,
        "images": [
            {
                "url": _media_url(request, image.file.name),
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
    return answer


# --- GET /v1/generations/<uuid> ------------------------------------------------------


def _cost_json(generation: Generation) -> dict[str, Any]:
    usd, source = generation_cost(generation)
    return {"usd": float(usd), "source": source}


def generation_json(request: HttpRequest, generation_id: int, viewer: Any) -> dict[str, Any]:
    generation = Generation.objects.prefetch_related("images").get(pk=generation_id)
    return {
        "id": str(generation.uuid),
        "object": "image.generation",
        "model": generation.model,
        "status": generation.status,
        "error": generation.error or None,
        "parameters": generation.params,
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
                "url": _media_url(request, image.file.name),
                "thumbnail_url": _media_url(request, image.thumbnail.name),
                "width": image.width,
                "height": image.height,
                "content_type": image.content_type,
                "nsfw": image.nsfw,
                "sha256": image.sha256,
            }
            for image in generation_images_for(generation, viewer)
        ],
    }


@allow_methods("GET")
def generation_detail(request: HttpRequest, ident: str) -> HttpResponse:
    path = request.path
    user = request_user(request, allow_session=True)
    if user is None:
        return unauthorized(path)
    try:
        uuid = UUID(ident)
    except ValueError:
        # Not an id the studio ever gives out: the same 404 as one that is not there.
        return api_error(404, f"Generation {ident} not found", path)
    generation = generations_visible_to(user).filter(uuid=uuid).only("pk").first()
    if generation is None:
        return api_error(404, f"Generation {uuid} not found", path)
    response = JsonResponse(generation_json(request, generation.pk, user))
    _usd_spent_header(response, generation)
    return response
