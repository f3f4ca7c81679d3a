from __future__ import annotations

import mimetypes
import re
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db import connection
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import reswap, retarget
from kombu import Connection

from accounts import rules
from accounts.errors import StudioError
from accounts.tokens import api_token_authenticate, bearer_token
from generator import policy, selectors, services
from generator.forms import fit_to_model, generation_form
from generator.models import Generation, Image
from studio.http import HtmxHttpRequest, private_file_headers, see_other, unauthorized


def _get_generation_for_user(request: HttpRequest, uuid: UUID, user: Any = None) -> Generation:
    """The generation if this user may see it; 404 otherwise, so existence never leaks."""
    user = user or request.user
    return get_object_or_404(
        selectors.generations_visible_to(user)
        .select_related("owner", "source_image__generation")
        .prefetch_related("images"),
        uuid=uuid,
    )


@require_http_methods(["GET", "POST"])
@login_required
@vary_on_headers("HX-Request")
def studio(request: HtmxHttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not rules.may_generate(request.user):
            raise PermissionDenied("Viewers can browse but not generate")
        form = generation_form(request.POST, request.FILES, viewer=request.user)
        generation = None
        valid = form.is_valid()
        if form.blocked_term:
            policy.prompt_blocked_record(
                user=request.user,
                prompt=request.POST.get("prompt", ""),
                term=form.blocked_term,
                via="form",
            )
        if valid:
            try:
                generation = services.generation_create(
                    owner=request.user,
                    spec=form.spec,
                    body=form.request_body(),
                    reference=form.reference,
                )
            except StudioError as exc:
                form.add_error(None, str(exc))
        if generation is not None:
            if request.htmx:
                return render(
                    request,
                    "generator/studio.html#generation-card",
                    {"generation": generation},
                )
            # 303 so a browser without JavaScript lands on the generation with a GET.
            return see_other("generator:detail", uuid=generation.uuid)
        if request.htmx:
            response = render(request, "generator/studio.html#generation-form", {"form": form})
            # htmx does not swap 4xx answers by default, so errors come back as 200
            # and replace the form in place.
            return reswap(retarget(response, "#generation-form"), "outerHTML")
        status = 429 if form.non_field_errors() else 400
    else:
        switched = "model" in request.GET
        notes: list[str] = []
        if switched:
            initial, notes = fit_to_model(_switch_initial(request))
        else:
            initial = _reuse_initial(request)
        form = generation_form(initial=initial, viewer=request.user)
        form.switch_notes = notes
        status = 200
        if switched and request.htmx:
            return render(request, "generator/studio.html#generation-form", {"form": form})
    context: dict[str, Any] = {
        "form": form,
        "generations": selectors.generation_list_for_owner(owner=request.user),
    }
    return render(request, "generator/studio.html", context, status=status)


def _switch_initial(request: HttpRequest) -> dict[str, Any]:
    """Form values after the model select changed: what the user typed, for the fields
    the new model still has (the form ignores the rest)."""
    initial = {k: v for k, v in request.GET.items() if k not in ("switch", "csrfmiddlewaretoken")}
    # "Use as starting image" links here with ?model=<image-to-image model>&source=<uuid>.
    if "source" in initial:
        initial["source_image"] = initial.pop("source")
    return initial


def _reuse_initial(request: HttpRequest) -> dict[str, Any] | None:
    """Form values from `?reuse=<uuid>` (and `&seed=0` to drop the seed). Without it the
    form opens empty with the registry's defaults: the last job (perhaps an API script's
    four flux-pro images) is not what the next one should start from."""
    raw = request.GET.get("reuse")
    if not raw:
        return None
    try:
        uuid = UUID(raw)
    except ValueError:
        return None
    generation = selectors.generations_visible_to(request.user).filter(uuid=uuid).first()
    if generation is None:
        return None
    initial = _settings_of(generation, with_seed=request.GET.get("seed") != "0")
    image = _reuse_image(request, generation)
    if image is not None and image.seed:
        # One image of a batch, from its own seed: this image again, alone.
        initial.update(seed=image.seed, num_images=1)
    return initial


def _reuse_image(request: HttpRequest, generation: Generation) -> Image | None:
    try:
        uuid = UUID(request.GET.get("image") or "")
    except ValueError:
        return None
    return (
        selectors.images_visible_to(request.user).filter(generation=generation, uuid=uuid).first()
    )


def _settings_of(generation: Generation, *, with_seed: bool) -> dict[str, Any]:
    initial = {k: v for k, v in generation.params.items() if k != "image_size"}
    initial.pop("seed", None)
    size = generation.params.get("image_size")
    if isinstance(size, dict):
        initial.update(image_size="custom", width=size.get("width"), height=size.get("height"))
    elif size:
        initial["image_size"] = size
    if with_seed and generation.seed:
        initial["seed"] = generation.seed
    if generation.source_image_id:
        initial["source_image"] = generation.source_image.uuid
    return initial


@require_GET
@login_required
@vary_on_headers("HX-Request")
def generation_detail(request: HtmxHttpRequest, uuid: UUID) -> HttpResponse:
    generation = _get_generation_for_user(request, uuid)
    context = {
        "generation": generation,
        "can_retry": rules.may_retry(request.user, generation),
        "can_change_visibility": rules.may_change_visibility(request.user, generation),
        "source_visible": rules.may_see_source(request.user, generation),
        "images": selectors.generation_images_for(generation, request.user),
        # Image-to-image results that started from this one, as far as the viewer may see.
        "derived": selectors.generations_visible_to(request.user)
        .filter(source_image__generation=generation)
        .only("uuid", "prompt")[:20],
    }
    if request.htmx and request.GET.get("part") == "card":
        return render(request, "generator/studio.html#generation-card", context)
    template = "generator/detail.html"
    if request.htmx:
        template += "#generation-status"
    return render(request, template, context)


# Media names are generations/<uuid>/<index>[_thumb].<ext>; nothing else is served.
MEDIA_NAME = re.compile(
    r"^generations/(?P<uuid>[0-9a-f-]{36})/(?P<index>\d{1,3})(?P<thumb>_thumb)?\.(?:png|jpg|webp)$"
)


def _signed_media_url(name: str, filename: str, content_type: str, request: HttpRequest) -> str:
    """A signed GET URL for `name` in the bucket, expiring after S3_URL_TTL seconds.
    The bucket answers with our content type, nosniff-safe disposition and no caching
    beyond the URL's life; signed for S3_PUBLIC_ENDPOINT_URL when browsers reach the
    bucket at another address than the services do."""
    storage = _public_media_storage()
    disposition = "attachment" if request.GET.get("download") else "inline"
    return storage.url(
        name,
        parameters={
            "ResponseContentType": content_type,
            "ResponseContentDisposition": f'{disposition}; filename="{filename}"',
        },
    )


# Made once per configuration: a boto3 client takes longer to build than the request.
_SIGNING_STORAGES: dict[str, Any] = {}


def _public_media_storage() -> Any:
    from storages.backends.s3 import S3Storage

    options = dict(settings.STORAGES["default"].get("OPTIONS", {}))
    if settings.S3_PUBLIC_ENDPOINT_URL:
        options["endpoint_url"] = settings.S3_PUBLIC_ENDPOINT_URL
    key = repr(sorted(options.items()))
    if key not in _SIGNING_STORAGES:
        _SIGNING_STORAGES[key] = S3Storage(**options)
    return _SIGNING_STORAGES[key]


@require_GET
def media(request: HttpRequest, name: str) -> HttpResponse:
    # API clients fetch the URLs they were given with the same bearer token.
    raw = bearer_token(request.headers.get("Authorization"))
    if raw:
        user = api_token_authenticate(raw)
        if user is None:
            return unauthorized(request.path)
    elif request.user.is_authenticated:
        user = request.user
    else:
        return redirect_to_login(request.get_full_path())
    match = MEDIA_NAME.match(name)
    if not match:
        raise Http404("No such file")
    image = get_object_or_404(
        selectors.images_visible_to(user).select_related("generation"),
        generation__uuid=match["uuid"],
        index=int(match["index"]),
    )
    generation = image.generation
    stored = image.thumbnail.name if match["thumb"] else image.file.name
    if stored != name:
        raise Http404("No such file")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if settings.MEDIA_STORAGE == "s3":
        # The bytes come from the bucket, not through this process: a short-lived
        # signed URL, made only after the permission check above.
        filename = f"{generation.uuid}-{name.rsplit('/', 1)[1]}"
        response = HttpResponseRedirect(_signed_media_url(name, filename, content_type, request))
        response["Cache-Control"] = "private, no-store"
        return response
    if settings.MEDIA_ACCEL_REDIRECT_PREFIX:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = settings.MEDIA_ACCEL_REDIRECT_PREFIX.rstrip("/") + "/" + name
    else:
        try:
            handle = default_storage.open(name, "rb")
        except FileNotFoundError:
            raise Http404("No such file") from None
        response = FileResponse(handle, content_type=content_type)
    download = (
        f"{generation.uuid}-{name.rsplit('/', 1)[1]}" if request.GET.get("download") else None
    )
    return private_file_headers(
        response, download_name=download, cache="private, max-age=31536000, immutable"
    )


@require_POST
@login_required
def generation_visibility(request: HttpRequest, uuid: UUID) -> HttpResponse:
    """Owner or moderator: make a generation private or shared, then go back."""
    generation = _get_generation_for_user(request, uuid)
    # Refused and InvalidRequest become 403 and 400 in accounts.middleware.domain_errors.
    services.generation_visibility_set(
        generations=[generation], visibility=request.POST.get("visibility", ""), by=request.user
    )
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        target = reverse("generator:detail", args=[generation.uuid])
    return see_other(target)


@require_POST
@login_required
def generation_retry(request: HtmxHttpRequest, uuid: UUID) -> HttpResponse:
    """Run a failed generation again as a new one (the failure stays in the history)."""
    failed = _get_generation_for_user(request, uuid)
    # Refused (not the owner, not failed) and limits map in accounts.middleware.
    generation = services.generation_retry(generation=failed, by=request.user)
    if request.htmx:
        response = render(
            request, "generator/studio.html#generation-card", {"generation": generation}
        )
        return reswap(retarget(response, "#generation-list"), "afterbegin")
    return see_other("generator:detail", uuid=generation.uuid)


@require_GET
def reference(request: HttpRequest, token: str) -> HttpResponse:
    """A generation's starting image for the provider to fetch: no session, only a signed
    token that expires (STUDIO_PUBLIC_URL mode of image-to-image)."""
    uuid = services.reference_unsign(token)
    generation = Generation.objects.filter(uuid=uuid).first() if uuid else None
    name = services.reference_file_name(generation) if generation else None
    if name is None:
        raise Http404("No such reference")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse(default_storage.open(name, "rb"), content_type=content_type)
    return private_file_headers(response, cache="private, no-store")


@require_GET
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        # Built from settings at call time, with a short timeout: a health check must
        # answer quickly even when the broker is the thing that is down.
        with Connection(
            settings.CELERY_BROKER_URL,
            transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            connect_timeout=3,
        ) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"error: {exc.__class__.__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "error", **checks}, status=200 if healthy else 503
    )
