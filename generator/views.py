from __future__ import annotations

import mimetypes
import re
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
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
from accounts.errors import Conflict, StudioError
from accounts.services import member_studio_defaults_set, studio_defaults_of
from accounts.tokens import api_token_authenticate, api_token_owner, bearer_token
from generator import media_links, parameters, policy, selectors, services
from generator.forms import (
    DEFAULTS_LEFT_OUT,
    GenerationForm,
    fit_to_model,
    generation_form,
)
from generator.models import Generation, Image
from generator.registry import DEFAULT_MODEL
from studio.http import (
    HtmxHttpRequest,
    flat_error,
    private_file_headers,
    see_other,
    unauthorized,
)


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
            response = _form_partial(request, form)
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
            if initial is None:
                initial, notes = _fresh_initial(request)
        form = generation_form(initial=initial, viewer=request.user)
        form.switch_notes = notes
        status = 200
        if switched and request.htmx:
            return _form_partial(request, form)
    return _studio_page(request, form, status=status)


def _with_extras(form: GenerationForm, user: Any) -> GenerationForm:
    """What the form partial shows besides the fields: the History list and whether
    the user has saved defaults. Set here so every view that renders it agrees."""
    form.prompt_history = selectors.prompt_history_for(owner=user)
    form.has_saved_defaults = bool(studio_defaults_of(user))
    return form


def _form_partial(request: HtmxHttpRequest, form: GenerationForm) -> HttpResponse:
    context = {"form": _with_extras(form, request.user)}
    return render(request, "generator/studio.html#generation-form", context)


def _studio_page(request: HtmxHttpRequest, form: GenerationForm, *, status: int) -> HttpResponse:
    context: dict[str, Any] = {
        "form": _with_extras(form, request.user),
        "generations": selectors.generation_list_for_owner(owner=request.user),
    }
    return render(request, "generator/studio.html", context, status=status)


def _fresh_initial(request: HttpRequest) -> tuple[dict[str, Any], list[str]]:
    """A fresh visit: the user's saved defaults (fitted to the model as the registry
    has it now), or the registry's; the prompt empty unless a History link names one."""
    initial: dict[str, Any] = {}
    notes: list[str] = []
    saved = studio_defaults_of(request.user)
    if saved.get("model") in selectors.enabled_model_ids():
        initial, notes = fit_to_model(saved)
    # A History link without JavaScript: ?prompt_of=<uuid> takes that generation's prompt.
    uuid = _uuid_or_none(request.GET.get("prompt_of", ""))
    if uuid is not None:
        earlier = selectors.generations_visible_to(request.user).filter(uuid=uuid).first()
        if earlier is not None:
            initial["prompt"] = earlier.prompt
    return initial, notes


def _switch_initial(request: HttpRequest) -> dict[str, Any]:
    """Form values after the model select changed: what the user typed, for the fields
    the new model still has (the form ignores the rest)."""
    initial = {k: v for k, v in request.GET.items() if k not in ("switch", "csrfmiddlewaretoken")}
    # "Use as starting image" links here with ?model=<image-to-image model>&source=<uuid>;
    # the prompt comes along, since the new image usually varies on the old one.
    if "source" in initial:
        initial["source_image"] = initial.pop("source")
        if not initial.get("prompt"):
            image = (
                selectors.images_visible_to(request.user)
                .select_related("generation")
                .filter(uuid=_uuid_or_none(initial["source_image"]))
                .first()
            )
            if image is not None:
                initial["prompt"] = image.generation.prompt
    return initial


def _uuid_or_none(raw: Any) -> UUID | None:
    try:
        return UUID(str(raw))
    except ValueError:
        return None


def _reuse_initial(request: HttpRequest) -> dict[str, Any] | None:
    """Form values from `?reuse=<uuid>` (and `&seed=0` to drop the seed). Without it the
    form opens empty with the registry's defaults: the last job (perhaps an API script's
    four flux-pro images) is not what the next one should start from."""
    raw = request.GET.get("reuse")
    if not raw:
        return None
    uuid = _uuid_or_none(raw)
    if uuid is None:
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


@require_POST
@login_required
def studio_defaults(request: HtmxHttpRequest) -> HttpResponse:
    """The form's "Save as my defaults" (`defaults=save`: the model and its settings,
    never the prompt, seed or starting image) and "Reset to model defaults"
    (`defaults=reset`: forget them and show the model's own). Answers the form again,
    keeping what was typed; without JavaScript, the whole studio page."""
    if not rules.may_generate(request.user):
        raise PermissionDenied("Viewers can browse but not generate")
    posted = generation_form(request.POST, viewer=request.user)
    kept = {n: request.POST[n] for n in DEFAULTS_LEFT_OUT if request.POST.get(n)}
    status = 200
    if request.POST.get("defaults") == "reset":
        member_studio_defaults_set(user=request.user, values={})
        form = generation_form(initial={"model": posted.spec.id, **kept}, viewer=request.user)
        form.switch_notes = [f"Saved defaults cleared: this is {posted.spec.label} as it comes."]
    else:
        posted.is_valid()
        names = posted.defaults_names()
        if any(name in posted.errors for name in names):
            # Only the settings' own errors: an empty prompt does not stop a save.
            for name in list(posted.errors):
                if name not in names:
                    del posted.errors[name]
            posted.switch_notes = ["Not saved: correct the marked settings first."]
            form, status = posted, 400
        else:
            values = posted.defaults_values()
            member_studio_defaults_set(user=request.user, values=values)
            form = generation_form(initial={**values, **kept}, viewer=request.user)
            form.switch_notes = [
                f"Saved: a fresh visit now starts from {posted.spec.label} with these settings."
            ]
    if request.htmx:
        # 200 even when refused: htmx swaps only 2xx answers (see the studio view).
        return _form_partial(request, form)
    return _studio_page(request, form, status=status)


@require_POST
@login_required
def studio_form(request: HtmxHttpRequest) -> HttpResponse:
    """The form rebuilt from posted values (fitted to their model, with notes): how the
    settings read from a dropped image fill it. Posted rather than in a query string,
    because a 4,000-character prompt does not fit in a request line."""
    values = {k: v for k, v in request.POST.items() if k != "csrfmiddlewaretoken"}
    initial, notes = fit_to_model(values)
    form = generation_form(initial=initial, viewer=request.user)
    form.switch_notes = notes
    if request.htmx:
        return _form_partial(request, form)
    return _studio_page(request, form, status=200)


@require_POST
@login_required
def parameters_read(request: HttpRequest) -> JsonResponse:
    """The generation parameters a PNG or JPEG carries (A1111 `parameters`, as the
    studio's downloads write them), as form values for the form to offer.

    {"found": false} for an image without them; 400 with an error for anything else.
    """
    upload = request.FILES.get("image")
    if upload is None:
        return JsonResponse({"error": "Send the image as the `image` field."}, status=400)
    if upload.size > settings.REFERENCE_MAX_BYTES:
        return JsonResponse({"error": "The file is larger than allowed."}, status=400)
    try:
        text = parameters.parameters_text(upload.read())
    except parameters.NotAnImage:
        return JsonResponse({"error": "That file is not a PNG, JPEG or WebP image."}, status=400)
    if not text:
        return JsonResponse({"found": False})
    model = request.POST.get("model", "")
    if model not in selectors.enabled_model_ids():
        model = DEFAULT_MODEL
    values = parameters.form_values(parameters.parse(text), model=model)
    if values["model"] not in selectors.enabled_model_ids():
        values["model"] = model
    return JsonResponse({"found": True, "fields": values, "summary": parameters.summary(values)})


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
    # API clients fetch the URLs they were given with the same bearer token, or with no
    # token at all through the signed link the API put in them (generator.media_links).
    raw = bearer_token(request.headers.get("Authorization"))
    grant = None
    if raw:
        user = api_token_authenticate(raw)
        if user is None:
            return unauthorized(request.path)
    else:
        grant, user, refusal = _media_link_user(request, name)
        if user is None and request.user.is_authenticated:
            grant, user = None, request.user
        elif user is None:
            return refusal or redirect_to_login(request.get_full_path())
    match = MEDIA_NAME.match(name)
    image = None
    if match:
        image = (
            selectors.images_visible_to(user)
            .select_related("generation")
            .filter(generation__uuid=match["uuid"], index=int(match["index"]))
            .first()
        )
    stored = (image.thumbnail.name if match["thumb"] else image.file.name) if image else None
    if (
        image is None
        or stored != name
        or (grant and not grant.still_holds(image, image.generation))
    ):
        if grant is not None:
            return flat_error(404, "No such image, or it is no longer shared", request.path)
        raise Http404("No such file")
    generation = image.generation
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
    # A signed link is checked on every GET, so nothing may keep its bytes for later.
    cache = "private, no-cache" if grant else "private, max-age=31536000, immutable"
    return private_file_headers(response, download_name=download, cache=cache)


def _media_link_user(
    request: HttpRequest, name: str
) -> tuple[media_links.MediaGrant | None, Any, HttpResponse | None]:
    """The grant and user of the request's signed link, if it has a valid one; else the
    answer to give when there is no session to fall back on (None: sign in)."""
    sig = request.GET.get(media_links.MEDIA_LINK_PARAM)
    if sig is None:
        return None, None, None
    try:
        grant = media_links.media_link_check(name, sig)
    except media_links.MediaLinkExpired:
        return (
            None,
            None,
            flat_error(
                403,
                "This image link has expired; GET /v1/generations/<id> answers with fresh ones",
                request.path,
            ),
        )
    user = None
    if grant is not None:
        if grant.token_id is not None:
            user = api_token_owner(grant.token_id)
        else:
            user = get_user_model().objects.filter(pk=grant.user_id).first()
            user = user if user is not None and rules.is_active(user) else None
    if user is None or user.pk != grant.user_id:
        return None, None, flat_error(404, "No such image, or it is no longer shared", request.path)
    return grant, user, None


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


@require_POST
@login_required
def generation_cancel(request: HtmxHttpRequest, uuid: UUID) -> HttpResponse:
    """Owner or admin: stop a queued or running generation; its card says Cancelled."""
    generation = _get_generation_for_user(request, uuid)
    try:
        generation = services.generation_cancel(generation=generation, by=request.user)
    except Conflict:
        if not request.htmx:
            raise  # the 409 with its message, from accounts.middleware.domain_errors
        # It finished while the button was being pressed: the card shows how it ended.
        generation.refresh_from_db()
    if request.htmx:
        return render(request, "generator/studio.html#generation-card", {"generation": generation})
    return see_other("generator:detail", uuid=generation.uuid)


def _new_cards(request: HtmxHttpRequest, generations: list[Generation]) -> HttpResponse:
    """New generations on top of the studio's list (htmx), or the first one's page."""
    if request.htmx:
        response = render(
            request, "generator/studio.html#new-generation-cards", {"new_generations": generations}
        )
        return reswap(retarget(response, "#generation-list"), "afterbegin")
    if len(generations) == 1:
        return see_other("generator:detail", uuid=generations[0].uuid)
    return see_other("generator:studio")


@require_POST
@login_required
def generation_regenerate(request: HtmxHttpRequest, uuid: UUID) -> HttpResponse:
    """The same settings again with a new seed, as a new generation."""
    finished = _get_generation_for_user(request, uuid)
    # Refused (not the owner), InvalidRequest and limits map in accounts.middleware.
    generation = services.generation_regenerate(generation=finished, by=request.user)
    return _new_cards(request, [generation])


@require_POST
@login_required
def generation_variations(request: HtmxHttpRequest, uuid: UUID) -> HttpResponse:
    """A few new generations with the same settings and the seeds next to its own."""
    finished = _get_generation_for_user(request, uuid)
    generations = services.generation_variations(generation=finished, by=request.user)
    return _new_cards(request, generations)


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
