"""POST /v1/images/edits: OpenAI's image edit, as an image-to-image generation.

OpenAI's SDKs send a multipart form: the starting image as `image` (or `image[]`), the
`prompt`, and optionally `model`, `n`, `size`, `response_format`, `user`. The studio runs
an image-to-image model of the registry with the upload as the starting image, checked
like an upload on the web form, and answers like POST /v1/images/generations, so
`client.images.edit(...)` gets studio images back.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError

from accounts.errors import InvalidRequest, StudioError
from accounts.tokens import bearer_token
from api.compat import with_ignored_header
from api.schema import model_schema
from api.views import (
    HeaderError,
    _bounded_authenticate,
    _submit,
    allow_methods,
    api_error,
    error_response,
    generation_answer,
    idempotency_key,
    is_sdk_retry,
    prefers_async,
)
from generator.models import Generation
from generator.registry import FLUX_DEV_I2I, MODELS, get_model
from studio.http import unauthorized

EDITS_PATH = "/v1/images/edits"
DEFAULT_EDIT_MODEL = FLUX_DEV_I2I.id
IMAGE_FIELDS = ("image", "image[]")
# Besides the starting image, a few short text fields: what the form's fields may take.
FIELDS_ALLOWANCE = 1024 * 1024
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_NUMBER = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?")


@allow_methods("POST")
async def images_edits(request: HttpRequest) -> HttpResponse:
    path = EDITS_PATH
    # A token only, as for generations: a browser session on a cross-site POST must not.
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
    if not request.content_type == "multipart/form-data":
        return api_error(
            400,
            "Body validation error! Expected a multipart/form-data body with the starting "
            "image as `image`",
            path,
        )
    limit = settings.REFERENCE_MAX_BYTES + FIELDS_ALLOWANCE
    length = request.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > limit:
        return api_error(413, f"Request body too large: the limit is {limit} bytes", path)
    try:
        generation, replayed = await sync_to_async(_create_edit)(
            request, token, key, is_sdk_retry(request)
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


def _create_edit(
    request: HttpRequest, token: Any, key: str, sdk_retry: bool
) -> tuple[Generation, bool]:
    """Read the form and create the generation, or find the one this request repeats
    (True). Runs in a thread: parsing the upload reads a temporary file."""
    try:
        fields, files = request.POST, request.FILES
    except RequestDataTooBig:
        raise InvalidRequest("The form has more fields or text than allowed") from None
    except (MultiPartParserError, SuspiciousOperation) as exc:
        raise InvalidRequest(f"The multipart body could not be read: {exc}") from None
    body = edit_body(fields, files)
    images = [upload for name in IMAGE_FIELDS for upload in files.getlist(name)]
    if not images:
        raise InvalidRequest("image: Required (the starting image, as a file)")
    if len(images) > 1:
        raise InvalidRequest(
            f"image: {body['model']} starts from one image; {len(images)} were sent"
        )
    digest = edit_digest(fields, images[0])
    return _submit(
        token, body, digest, key, sdk_retry, {"image_file": images[0]}, image_field="image"
    )


def edit_digest(fields: Any, upload: Any) -> str:
    """What makes two edit requests the same one: their text fields and the starting
    image's bytes (a multipart body's boundary differs between an SDK's retries, so the
    raw body cannot be compared)."""
    digest = hashlib.sha256()
    for name in sorted(fields):
        for value in fields.getlist(name):
            digest.update(f"{name}={value}\n".encode("utf-8", "surrogatepass"))
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


def edit_body(fields: Any, files: Any) -> dict[str, Any]:
    """The JSON body the form's text fields stand for: each value typed as the model's
    schema says (a multipart form sends only text). Raises InvalidRequest for a model
    that takes no starting image, or a mask no model takes."""
    texts: dict[str, Any] = {}
    for name in fields:
        if name in IMAGE_FIELDS:
            raise InvalidRequest(f"{name}: Expected a file, received text")
        values = fields.getlist(name)
        if len(values) > 1:
            raise InvalidRequest(f"{name}: give one value, not {len(values)}")
        texts[name] = values[0]
    model_id = texts.get("model") or DEFAULT_EDIT_MODEL
    spec = get_model(model_id)
    if spec is None or not spec.reference_image:
        takes = " | ".join(f"'{m.id}'" for m in MODELS.values() if m.reference_image)
        raise InvalidRequest(
            f"model: Invalid enum value. Expected {takes} (the models that start from an "
            f"image), received '{model_id}'"
        )
    if "mask" in texts or "mask" in files:
        # OpenAI's mask marks the area to repaint; no image-to-image model here takes one.
        if spec.param("mask") is None:
            raise InvalidRequest(f"mask: {spec.id} does not take a mask")
    properties = model_schema(spec)["properties"]
    body: dict[str, Any] = {"model": spec.id}
    for name, text in texts.items():
        if name == "model":
            continue
        # `n` is num_images under OpenAI's name.
        schema = properties.get("num_images" if name == "n" else name, {})
        body[name] = typed(text, schema.get("type"))
    return body


def typed(text: str, expected: Any) -> Any:
    """A form field's text as the JSON value a JSON body would carry; text that is not
    of the type stays text, so the body check names the field."""
    if expected == "integer" and _INTEGER.fullmatch(text):
        return int(text)
    if expected == "number" and _NUMBER.fullmatch(text):
        return float(text) if "." in text else int(text)
    if expected == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text
