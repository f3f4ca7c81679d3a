from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from accounts import rules
from gallery import selectors, services
from gallery.downloads import download_name, image_download_bytes, images_zip
from gallery.forms import (
    BulkForm,
    CollectionForm,
    CollectionItemForm,
    FilterForm,
    PreferencesForm,
)
from gallery.models import Collection
from generator.models import Image
from generator.services import generation_visibility_set
from studio.http import HtmxHttpRequest, private_file_headers, see_other

# The generation form's image-to-image model; the studio reads `source` to prefill it.
IMAGE_TO_IMAGE_MODEL = "flux/dev/image-to-image"


def _safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return fallback


def _filter_form(request: HttpRequest) -> FilterForm:
    # Two small queries whatever the page size: who can be picked as author, and the
    # viewer's collections (the collection filter resolves against these, no lookup).
    authors = list(
        get_user_model()
        .objects.filter(is_active=True)
        .order_by("username")
        .values_list("username", flat=True)
    )
    collections = list(selectors.collections_of(owner=request.user))
    return FilterForm(request.GET, authors=authors, collections=collections)


def _filters_key(request: HttpRequest, form: FilterForm) -> str:
    """Everything the rendered filter form shows: the raw values (an invalid one is
    shown as typed) and every choice list (authors, the viewer's collections, models).
    index.html caches the form's HTML under it, so the same filters render once."""
    values = [(name, request.GET.getlist(name)) for name in form.fields]
    choices = [getattr(field, "choices", None) for field in form.fields.values()]
    return repr((values, choices))


def _get_image(request: HttpRequest, uuid: UUID) -> Image:
    """The image if the viewer may see it; 404 otherwise, so existence never leaks."""
    image = selectors.image_for_viewer(viewer=request.user, uuid=uuid)
    if image is None:
        raise Http404("No such image")
    return image


def _card_urls() -> dict[str, str]:
    """URL prefixes for the grid's cards. Reversing per card (twice for each of 48) cost
    more server time than the page's SQL; the media names and UUIDs need no quoting."""
    sample = "00000000-0000-0000-0000-000000000000"
    star_before, _, star_after = reverse("gallery:star", args=[sample]).partition(sample)
    return {
        "image": reverse("gallery:image", args=[sample]).removesuffix(f"{sample}/"),
        "media": reverse("generator:media", args=["x"]).removesuffix("x"),
        # The star button (index.html#star-button) is rendered by three views.
        "star_before": star_before,
        "star_after": star_after,
    }


@require_GET
@login_required
@vary_on_headers("HX-Request")
def gallery(request: HtmxHttpRequest) -> HttpResponse:
    form = _filter_form(request)
    filters = form.filters()
    preferences = selectors.preferences_get(user=request.user)
    page = selectors.image_page(
        viewer=request.user,
        filters=filters,
        nsfw_preference=preferences.nsfw,
        before=selectors.Cursor.decode(request.GET.get("before")),
        after=selectors.Cursor.decode(request.GET.get("after")),
    )
    context: dict[str, Any] = {
        "urls": _card_urls(),
        "form": form,
        "filters_key": _filters_key(request, form),
        "filters": filters,
        "page": page,
        "filter_query": form.querystring(),
        "collections": form.collections.values(),
        "bulk_actions": BulkForm.ACTIONS,
    }
    template = "gallery/index.html"
    if request.htmx and not request.htmx.history_restore_request:
        # The filter form swaps the whole result area; the infinite-scroll sentinel
        # swaps itself for the next page of cards.
        template += "#gallery-results" if request.htmx.target == "gallery-results" else "#grid-page"
    return render(request, template, context)


@require_GET
@login_required
def image_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    image = _get_image(request, uuid)
    form = _filter_form(request)
    filters = form.filters()
    preferences = selectors.preferences_get(user=request.user)
    newer, older = selectors.image_neighbours(
        viewer=request.user, image=image, filters=filters, nsfw_preference=preferences.nsfw
    )
    generation = image.generation
    context = {
        "image": image,
        "generation": generation,
        "can_change_visibility": rules.may_change_visibility(request.user, generation),
        "source_visible": rules.may_see_source(request.user, generation),
        "form": form,
        "filter_query": form.querystring(),
        "newer": newer,
        "older": older,
        # Without JavaScript, "reveal" is a link back to this page with ?reveal=1.
        "blurred": image.nsfw and preferences.nsfw != "show" and not request.GET.get("reveal"),
        "image_to_image_model": IMAGE_TO_IMAGE_MODEL,
        "params": sorted(generation.params.items()),
        "urls": _card_urls(),
        "collections": form.collections.values(),
    }
    if request.GET.get("part") == "viewer":
        context["viewer"] = True
        return render(request, "gallery/image.html#image-article", context)
    return render(request, "gallery/image.html", context)


@require_GET
@login_required
def image_download(request: HttpRequest, uuid: UUID) -> HttpResponse:
    """The original pixels with the generation parameters embedded (see downloads)."""
    image = _get_image(request, uuid)
    try:
        data = image_download_bytes(image)
    except FileNotFoundError:
        raise Http404("The file is missing from storage") from None
    response = HttpResponse(data, content_type=image.content_type)
    return private_file_headers(response, download_name=download_name(image))


@require_POST
@login_required
def image_star(request: HtmxHttpRequest, uuid: UUID) -> HttpResponse:
    image = _get_image(request, uuid)
    starred = not image.is_favourite
    services.favourite_set(user=request.user, images=[image], starred=starred)
    if request.htmx:
        # The viewer's star button has ids of its own (the grid's twin is on the page).
        context = {"image": image, "starred": starred, "urls": _card_urls()}
        context["viewer"] = request.GET.get("in") == "viewer"
        return render(request, "gallery/index.html#star-button", context)
    return see_other(_safe_next(request, reverse("gallery:image", args=[image.uuid])))


@require_POST
@login_required
def bulk(request: HttpRequest) -> HttpResponse:
    """Multi-select actions from the gallery's selection form; each ends back on the
    gallery page it came from (`next`), except the ZIP, which is the answer."""
    back = _safe_next(request, reverse("gallery:index"))
    form = BulkForm(request.POST, collections=list(selectors.collections_of(owner=request.user)))
    if not form.is_valid():
        for error in form.non_field_errors() or ["That action is not available."]:
            messages.error(request, error)
        return see_other(back)
    action = form.cleaned_data["action"]
    images = list(selectors.images_by_uuid(viewer=request.user, uuids=form.cleaned_data["uuids"]))
    if action == "zip":
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return FileResponse(images_zip(images), as_attachment=True, filename=f"images-{stamp}.zip")
    if action in ("star", "unstar"):
        count = services.favourite_set(user=request.user, images=images, starred=action == "star")
        messages.success(request, f"{'Starred' if action == 'star' else 'Unstarred'} {count}.")
    elif action == "collect":
        collection = form.cleaned_data["collection_obj"]
        count = services.collection_add(collection=collection, images=images)
        messages.success(request, f"Added {count} to {collection.name}.")
    elif action == "uncollect":
        collection = form.cleaned_data["collection_obj"]
        count = services.collection_remove(collection=collection, images=images)
        messages.success(request, f"Removed {count} from {collection.name}.")
    elif action in ("share", "private"):
        # Visibility belongs to the generation: every image of it follows. Others'
        # generations are skipped unless the viewer moderates.
        generations = {image.generation_id: image.generation for image in images}
        allowed = [g for g in generations.values() if rules.may_change_visibility(request.user, g)]
        count = generation_visibility_set(
            generations=allowed,
            visibility="shared" if action == "share" else "private",
            by=request.user,
        )
        messages.success(
            request, f"Changed who sees {count} generation{'s' if count != 1 else ''}."
        )
    elif action == "delete":
        count = services.image_delete_many(user=request.user, images=images)
        skipped = len(images) - count
        note = f" ({skipped} not yours, kept)" if skipped else ""
        messages.success(request, f"Deleted {count} image{'s' if count != 1 else ''}{note}.")
    return see_other(back)


@require_http_methods(["GET", "POST"])
@login_required
def collections(request: HttpRequest) -> HttpResponse:
    form = CollectionForm(request.POST or None, owner=request.user)
    if request.method == "POST" and form.is_valid():
        collection = services.collection_create(owner=request.user, name=form.cleaned_data["name"])
        messages.success(request, f"Created {collection.name}.")
        return see_other(reverse("gallery:collections"))
    context = {
        "form": form,
        "collections": selectors.collections_with_covers(owner=request.user),
    }
    return render(request, "gallery/collections.html", context, status=400 if form.errors else 200)


def _get_collection(request: HttpRequest, uuid: UUID) -> Collection:
    """One of the viewer's own collections; 404 for anyone else's, which stay private."""
    collection = selectors.collection_of(owner=request.user, uuid=uuid)
    if collection is None:
        raise Http404("No such collection")
    return collection


def _collection_context(
    request: HttpRequest, collection: Collection, rename_form: CollectionForm | None = None
) -> dict[str, Any]:
    images = list(selectors.collection_images(viewer=request.user, collection=collection))
    return {
        "collection": collection,
        "images": images,
        "cover": next((i for i in images if i.pk == collection.cover_id), None),
        "rename_form": rename_form
        or CollectionForm(initial={"name": collection.name}, owner=request.user),
        "urls": _card_urls(),
        # The image pages the viewer opens keep to this collection (their ←/→ links).
        "filter_query": f"?collection={collection.uuid}",
    }


@require_GET
@login_required
def collection_detail(request: HtmxHttpRequest, uuid: UUID) -> HttpResponse:
    collection = _get_collection(request, uuid)
    return render(request, "gallery/collection.html", _collection_context(request, collection))


@require_POST
@login_required
def collection_rename(request: HttpRequest, uuid: UUID) -> HttpResponse:
    collection = _get_collection(request, uuid)
    form = CollectionForm(request.POST, owner=request.user, renaming=collection)
    if not form.is_valid():
        context = _collection_context(request, collection, rename_form=form)
        return render(request, "gallery/collection.html", context, status=400)
    services.collection_rename(collection=collection, name=form.cleaned_data["name"])
    messages.success(request, f"Renamed to {collection.name}.")
    return see_other(reverse("gallery:collection", args=[collection.uuid]))


def _posted_item(request: HttpRequest, collection: Collection) -> Image | None:
    """The image named by the post's `image`, if it is in the collection and visible."""
    form = CollectionItemForm(request.POST)
    if not form.is_valid():
        return None
    images = selectors.collection_images(viewer=request.user, collection=collection)
    return images.filter(uuid=form.cleaned_data["image"]).first()


@require_POST
@login_required
def collection_move(request: HtmxHttpRequest, uuid: UUID) -> HttpResponse:
    """Move one image up or down the collection's order; with htmx the grid is swapped
    in place (the pressed button keeps focus: its id follows the image)."""
    collection = _get_collection(request, uuid)
    image = _posted_item(request, collection)
    direction = request.POST.get("direction")
    if image is None or direction not in ("up", "down"):
        # With htmx the unchanged grid is the answer; a message would wait for the next page.
        if not request.htmx:
            messages.error(request, "That image is not in this collection.")
    else:
        services.collection_move(
            collection=collection, image=image, by=-1 if direction == "up" else 1
        )
    if request.htmx:
        context = _collection_context(request, collection)
        return render(request, "gallery/collection.html#collection-items", context)
    return see_other(reverse("gallery:collection", args=[collection.uuid]))


@require_POST
@login_required
def collection_cover(request: HttpRequest, uuid: UUID) -> HttpResponse:
    """Make one image the collection's cover; an empty `image` goes back to the first."""
    collection = _get_collection(request, uuid)
    if not request.POST.get("image"):
        services.collection_cover_set(collection=collection, image=None)
        messages.success(request, "The cover is the first image again.")
    elif (image := _posted_item(request, collection)) is None:
        messages.error(request, "That image is not in this collection.")
    else:
        services.collection_cover_set(collection=collection, image=image)
        messages.success(request, "Cover chosen.")
    return see_other(reverse("gallery:collection", args=[collection.uuid]))


@require_POST
@login_required
def collection_delete(request: HttpRequest, uuid: UUID) -> HttpResponse:
    collection = _get_collection(request, uuid)
    services.collection_delete(collection=collection)
    messages.success(request, f"Deleted the collection {collection.name}.")
    return see_other(reverse("gallery:collections"))


@require_http_methods(["GET", "POST"])
@login_required
def settings_page(request: HttpRequest) -> HttpResponse:
    preferences = selectors.preferences_get(user=request.user)
    form = PreferencesForm(request.POST or None, instance=preferences)
    if request.method == "POST" and form.is_valid():
        services.preferences_update(user=request.user, nsfw=form.cleaned_data["nsfw"])
        messages.success(request, "Settings saved.")
        return see_other(reverse("gallery:settings"))
    status = 400 if form.errors else 200
    return render(request, "gallery/settings.html", {"form": form}, status=status)
