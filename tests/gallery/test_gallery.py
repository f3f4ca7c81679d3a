"""The gallery: keyset pages, filters and search, the image page, NSFW preferences,
favourites, collections, bulk actions and downloads with their parameters."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from PIL import Image as PILImage

from gallery import selectors, services
from gallery.downloads import parameters_text
from gallery.models import Collection, Favourite, Preferences
from generator.imaging import check_image
from generator.models import Generation, Image
from offline_provider import render_image

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def make_generation(
    owner: Any,
    prompt: str = "a lighthouse at dusk",
    *,
    visibility: str = "shared",
    model: str = "flux-realism",
    seed: str = "1234",
    at: dt.datetime | None = None,
    **params: Any,
) -> Generation:
    body = {
        "model": model,
        "prompt": prompt,
        "image_size": "square",
        "num_inference_steps": 28,
        "guidance_scale": 3.5,
        "output_format": "png",
        **params,
    }
    generation = Generation.objects.create(
        owner=owner,
        model=model,
        prompt=prompt,
        params=body,
        status=Generation.Status.SUCCEEDED,
        visibility=visibility,
        seed=seed,
        timings={"inference": 1.25},
        sweep_after=timezone.now(),
    )
    if at is not None:
        Generation.objects.filter(pk=generation.pk).update(created_at=at)
        generation.created_at = at
    return generation


_RENDERED: dict[tuple, Any] = {}


def make_image(
    generation: Generation,
    index: int = 0,
    *,
    nsfw: bool = False,
    fmt: str = "png",
    size: tuple[int, int] = (128, 128),
    at: dt.datetime | None = None,
) -> Image:
    key = (fmt, size, generation.prompt[:20])
    if key not in _RENDERED:
        data = render_image(generation.model, generation.prompt[:40], "d", 7, *size, fmt)
        _RENDERED[key] = check_image(data, max_pixels=10**8)
    checked = _RENDERED[key]
    base = f"generations/{generation.uuid}/{index}"
    original = default_storage.save(f"{base}.{checked.extension}", ContentFile(checked.content))
    thumbnail = default_storage.save(f"{base}_thumb.webp", ContentFile(checked.thumbnail))
    image = Image.objects.create(
        generation=generation,
        index=index,
        file=original,
        thumbnail=thumbnail,
        width=checked.width,
        height=checked.height,
        format=checked.format,
        bytes=len(checked.content),
        sha256=checked.sha256,
        nsfw=nsfw,
    )
    at = at or generation.created_at
    Image.objects.filter(pk=image.pk).update(created_at=at)
    image.created_at = at
    return image


def make_series(owner: Any, count: int, *, prompt: str = "a lighthouse", **kwargs: Any) -> list:
    """`count` one-image generations, a minute apart, oldest first."""
    images = []
    for i in range(count):
        at = START + dt.timedelta(minutes=i)
        generation = make_generation(owner, f"{prompt} number {i}", at=at, **kwargs)
        images.append(make_image(generation, at=at))
    return images


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


def grid_uuids(response) -> list[str]:
    return [str(image.uuid) for image in response.context["page"].images]


# --- Keyset pagination -------------------------------------------------------------------


def test_the_gallery_pages_newest_first_by_keyset(owner, settings):
    images = make_series(owner, 7)
    first = selectors.image_page(viewer=owner, filters=selectors.Filters(), size=3)
    assert [i.pk for i in first.images] == [images[6].pk, images[5].pk, images[4].pk]
    assert first.newer is None and first.older is not None
    second = selectors.image_page(
        viewer=owner, filters=selectors.Filters(), before=first.older, size=3
    )
    assert [i.pk for i in second.images] == [images[3].pk, images[2].pk, images[1].pk]
    last = selectors.image_page(
        viewer=owner, filters=selectors.Filters(), before=second.older, size=3
    )
    assert [i.pk for i in last.images] == [images[0].pk]
    assert last.older is None and last.newer is not None
    back = selectors.image_page(viewer=owner, filters=selectors.Filters(), after=last.newer, size=3)
    assert [i.pk for i in back.images] == [i.pk for i in second.images]


def test_a_new_image_does_not_shift_the_page_being_read(owner):
    images = make_series(owner, 6)
    first = selectors.image_page(viewer=owner, filters=selectors.Filters(), size=3)
    later = START + dt.timedelta(days=1)
    make_image(make_generation(owner, "brand new", at=later), at=later)
    second = selectors.image_page(
        viewer=owner, filters=selectors.Filters(), before=first.older, size=3
    )
    assert [i.pk for i in second.images] == [images[2].pk, images[1].pk, images[0].pk]


def test_images_with_the_same_time_are_ordered_by_id(owner):
    generation = make_generation(owner, at=START)
    images = [make_image(generation, index, at=START) for index in range(5)]
    seen = []
    cursor = None
    while True:
        page = selectors.image_page(
            viewer=owner, filters=selectors.Filters(), before=cursor, size=2
        )
        seen += [i.pk for i in page.images]
        if page.older is None:
            break
        cursor = page.older
    assert seen == [i.pk for i in reversed(images)]


def test_the_cursor_round_trips_and_bad_ones_are_ignored():
    cursor = selectors.Cursor(START + dt.timedelta(microseconds=123457), 42)
    assert selectors.Cursor.decode(cursor.encode()) == cursor
    for raw in ("", "abc", "1.2.3", "x.1", None):
        assert selectors.Cursor.decode(raw) is None


def search_queries() -> int:
    # On PostgreSQL a search first counts its matching generations (see _text_match).
    return 1 if connection.vendor == "postgresql" else 0


@pytest.mark.parametrize("size", [3, 48, 200])
def test_a_page_is_one_query_whatever_its_size(owner, django_assert_num_queries, size):
    make_series(owner, 10)
    # The access rule may look the viewer's roles up once; that is not the page's cost.
    selectors.image_page(viewer=owner, filters=selectors.Filters(), size=1)
    with django_assert_num_queries(1):
        page = selectors.image_page(viewer=owner, filters=selectors.Filters(), size=size)
        for image in page.images:
            # What a card reads: none of it may cost a query.
            assert image.thumbnail.name and image.generation.prompt
            assert image.generation.owner.username and image.is_favourite is False


def test_a_filtered_searched_deep_page_is_still_one_query(owner, django_assert_num_queries):
    images = make_series(owner, 10)
    collection = services.collection_create(owner=owner, name="Boats")
    services.collection_add(collection=collection, images=images)
    services.favourite_set(user=owner, images=images, starred=True)
    filters = selectors.Filters(
        q="lighthouse",
        model="flux-realism",
        author=owner.username,
        size="square",
        date_from=START.date(),
        date_to=START.date(),
        nsfw="hide",
        favourites=True,
        collection=collection,
    )
    before = selectors.Cursor.of(images[8])
    selectors.image_page(viewer=owner, filters=selectors.Filters(), size=1)
    with django_assert_num_queries(1 + search_queries()):
        page = selectors.image_page(viewer=owner, filters=filters, before=before, size=4)
    assert [i.pk for i in page.images] == [images[7].pk, images[6].pk, images[5].pk, images[4].pk]


def test_the_gallery_page_has_a_fixed_query_count(owner_client, owner):
    def queries(count: int) -> list[str]:
        Image.objects.all().delete()
        make_series(owner, count)
        with CaptureQueriesContext(connection) as captured:
            response = owner_client.get(reverse("gallery:index"), {"q": "lighthouse"})
        assert len(grid_uuids(response)) == min(count, selectors.PAGE_SIZE)
        return [q["sql"] for q in captured.captured_queries]

    few, many = queries(5), queries(selectors.PAGE_SIZE + 12)
    assert len(few) == len(many)
    # The images themselves: one query (plus the search's count on PostgreSQL).
    assert sum('FROM "generator_image"' in sql for sql in many) == 1
    assert len(many) <= 8 + search_queries()


def test_older_and_newer_links_walk_the_gallery_without_javascript(owner_client, owner):
    images = make_series(owner, selectors.PAGE_SIZE + 5)
    response = owner_client.get(reverse("gallery:index"))
    html = response.content.decode()
    assert 'rel="next"' in html and 'rel="prev"' not in html
    older = response.context["page"].older.encode()
    response = owner_client.get(reverse("gallery:index"), {"before": older})
    assert grid_uuids(response) == [str(i.uuid) for i in reversed(images[:5])]
    assert 'rel="prev"' in response.content.decode()
    newer = response.context["page"].newer.encode()
    response = owner_client.get(reverse("gallery:index"), {"after": newer})
    assert len(grid_uuids(response)) == selectors.PAGE_SIZE
    assert grid_uuids(response)[0] == str(images[-1].uuid)


def test_infinite_scroll_returns_only_the_next_cards(owner_client, owner):
    make_series(owner, selectors.PAGE_SIZE + 2)
    first = owner_client.get(reverse("gallery:index"))
    older = first.context["page"].older.encode()
    response = owner_client.get(
        reverse("gallery:index"),
        {"before": older},
        headers={"HX-Request": "true", "HX-Target": f"older-{older}"},
    )
    html = response.content.decode()
    assert "<html" not in html and 'id="gallery-filters"' not in html
    assert html.count('<li id="image-') == 2
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_the_filter_form_swaps_the_results_in_place(owner_client, owner):
    make_series(owner, 3, prompt="a red fox")
    make_series(owner, 2, prompt="a blue whale")
    response = owner_client.get(
        reverse("gallery:index"),
        {"q": "whale"},
        headers={"HX-Request": "true", "HX-Target": "gallery-results"},
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="gallery-results"')
    assert html.count('<li id="image-') == 2


# --- Filters and search ------------------------------------------------------------------


def test_search_finds_prompt_words_and_seeds(owner_client, owner):
    fox = make_image(make_generation(owner, "A red fox jumping over snow", seed="987654321"))
    make_image(make_generation(owner, "A blue whale in the deep sea", seed="5"))
    for q in ("fox", "FOX snow", "jumping"):
        assert grid_uuids(owner_client.get(reverse("gallery:index"), {"q": q})) == [
            str(fox.uuid)
        ], q
    assert grid_uuids(owner_client.get(reverse("gallery:index"), {"q": "987654321"})) == [
        str(fox.uuid)
    ]
    assert grid_uuids(owner_client.get(reverse("gallery:index"), {"q": "giraffe"})) == []


def test_filters_by_model_author_size_and_dates(owner_client, owner, teammate):
    mine = make_image(make_generation(owner, "mine", at=START), size=(128, 96), at=START)
    later = START + dt.timedelta(days=3)
    theirs = make_image(
        make_generation(teammate, "theirs", model="flux/schnell", at=later),
        size=(96, 128),
        at=later,
    )
    url = reverse("gallery:index")

    def uuids(**params: str) -> set[str]:
        return set(grid_uuids(owner_client.get(url, params)))

    assert uuids(model="flux/schnell") == {str(theirs.uuid)}
    assert uuids(author=teammate.username) == {str(theirs.uuid)}
    assert uuids(size="landscape") == {str(mine.uuid)}
    assert uuids(size="portrait") == {str(theirs.uuid)}
    assert uuids(size="96x128") == {str(theirs.uuid)}
    assert uuids(date_from=str(later.date())) == {str(theirs.uuid)}
    assert uuids(date_to=str(START.date())) == {str(mine.uuid)}
    # A bad value is ignored rather than failing the page (stale bookmarks).
    assert uuids(model="no-such-model", date_from="yesterday") == {
        str(mine.uuid),
        str(theirs.uuid),
    }


def test_favourites_only_and_collection_filters(owner_client, owner, teammate):
    a, b, c = make_series(owner, 3)
    services.favourite_set(user=owner, images=[a, c], starred=True)
    services.favourite_set(user=teammate, images=[b], starred=True)
    boats = services.collection_create(owner=owner, name="Boats")
    services.collection_add(collection=boats, images=[b])
    url = reverse("gallery:index")
    assert grid_uuids(owner_client.get(url, {"fav": "on"})) == [str(c.uuid), str(a.uuid)]
    assert grid_uuids(owner_client.get(url, {"collection": str(boats.uuid)})) == [str(b.uuid)]


def test_someone_elses_collection_in_the_url_is_ignored(client, owner, teammate):
    images = make_series(owner, 2)
    boats = services.collection_create(owner=owner, name="Boats")
    services.collection_add(collection=boats, images=images[:1])
    client.force_login(teammate)
    response = client.get(reverse("gallery:index"), {"collection": str(boats.uuid)})
    assert len(grid_uuids(response)) == 2
    assert "Boats" not in response.content.decode()


def test_filters_are_kept_in_card_links_and_page_links(owner_client, owner):
    make_series(owner, selectors.PAGE_SIZE + 1)
    response = owner_client.get(reverse("gallery:index"), {"q": "lighthouse", "size": "square"})
    html = response.content.decode()
    assert "?q=lighthouse&amp;size=square" in html
    older = response.context["page"].older.encode()
    assert f"?q=lighthouse&amp;size=square&amp;before={older}" in html


# --- Access -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "sees_private"),
    [("owner", True), ("teammate", False), ("outsider", False), ("moderator", True)],
)
def test_the_grid_shows_what_the_access_rule_allows(client, request, owner, persona, sees_private):
    private = make_image(make_generation(owner, "private one", visibility="private"))
    shared = make_image(make_generation(owner, "shared one", visibility="shared"))
    client.force_login(request.getfixturevalue(persona))
    uuids = set(grid_uuids(client.get(reverse("gallery:index"))))
    assert str(shared.uuid) in uuids
    assert (str(private.uuid) in uuids) is sees_private


@pytest.mark.parametrize(
    ("persona", "status"),
    [("owner", 200), ("teammate", 404), ("outsider", 404), ("moderator", 200)],
)
def test_a_private_image_page_and_download_edges(client, request, owner, persona, status):
    image = make_image(make_generation(owner, visibility="private"))
    client.force_login(request.getfixturevalue(persona))
    assert client.get(reverse("gallery:image", args=[image.uuid])).status_code == status
    assert client.get(reverse("gallery:download", args=[image.uuid])).status_code == status
    response = client.post(reverse("gallery:star", args=[image.uuid]))
    assert response.status_code == (303 if status == 200 else 404)


def test_a_shared_image_page_is_seen_by_the_team(client, owner, teammate):
    image = make_image(make_generation(owner, visibility="shared"))
    client.force_login(teammate)
    assert client.get(reverse("gallery:image", args=[image.uuid])).status_code == 200


def test_every_gallery_page_requires_sign_in(client, owner):
    image = make_image(make_generation(owner))
    collection = services.collection_create(owner=owner, name="Boats")
    for method, url in [
        ("get", reverse("gallery:index")),
        ("get", reverse("gallery:image", args=[image.uuid])),
        ("get", reverse("gallery:download", args=[image.uuid])),
        ("post", reverse("gallery:star", args=[image.uuid])),
        ("post", reverse("gallery:bulk")),
        ("get", reverse("gallery:collections")),
        ("post", reverse("gallery:collection_delete", args=[collection.uuid])),
        ("get", reverse("gallery:settings")),
    ]:
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_mutating_views_refuse_get(owner_client, owner):
    image = make_image(make_generation(owner))
    collection = services.collection_create(owner=owner, name="Boats")
    for url in (
        reverse("gallery:star", args=[image.uuid]),
        reverse("gallery:bulk"),
        reverse("gallery:collection_delete", args=[collection.uuid]),
    ):
        assert owner_client.get(url).status_code == 405


def test_an_unknown_image_is_404(owner_client):
    url = reverse("gallery:image", args=["00000000-0000-0000-0000-000000000000"])
    assert owner_client.get(url).status_code == 404


# --- The image page -------------------------------------------------------------------------


def test_the_image_page_shows_everything_about_the_image(owner_client, owner):
    generation = make_generation(owner, "A koi pond in the rain", seed="18446744073709551615")
    image = make_image(generation, nsfw=True)
    response = owner_client.get(reverse("gallery:image", args=[image.uuid]))
    html = response.content.decode()
    assert "A koi pond in the rain" in html
    assert "18446744073709551615" in html
    assert "num_inference_steps" in html and "guidance_scale" in html
    assert "inference 1.25 s" in html
    assert owner.username in html
    assert 'id="nsfw-flag"' in html
    assert reverse("generator:media", args=[image.file.name]) in html
    studio = reverse("generator:studio")
    assert f'href="{studio}?reuse={generation.uuid}&amp;seed=0"' in html
    assert f'href="{studio}?reuse={generation.uuid}"' in html
    assert f'href="{studio}?model=flux/dev/image-to-image&amp;source={image.uuid}"' in html.replace(
        "%2F", "/"
    )
    assert "Use as starting image" in html
    assert reverse("gallery:download", args=[image.uuid]) in html


def test_previous_and_next_stay_within_the_filter(owner_client, owner):
    fox_old = make_image(make_generation(owner, "old fox", at=START), at=START)
    make_image(
        make_generation(owner, "whale", at=START + dt.timedelta(minutes=1)),
        at=START + dt.timedelta(minutes=1),
    )
    fox_new = make_image(
        make_generation(owner, "new fox", at=START + dt.timedelta(minutes=2)),
        at=START + dt.timedelta(minutes=2),
    )
    response = owner_client.get(reverse("gallery:image", args=[fox_new.uuid]), {"q": "fox"})
    assert response.context["newer"] is None
    assert response.context["older"].uuid == fox_old.uuid
    assert f"{reverse('gallery:image', args=[fox_old.uuid])}?q=fox" in response.content.decode()
    response = owner_client.get(reverse("gallery:image", args=[fox_new.uuid]))
    assert response.context["older"].uuid != fox_old.uuid


def test_the_image_page_has_a_fixed_query_count(owner_client, owner):
    images = make_series(owner, 30)
    counts = []
    for image in (images[1], images[15]):
        with CaptureQueriesContext(connection) as captured:
            response = owner_client.get(reverse("gallery:image", args=[image.uuid]))
        assert response.status_code == 200
        counts.append(len(captured.captured_queries))
    # The image, its newer and older neighbours (and session, user, form choices, settings).
    assert counts[0] == counts[1] <= 10


# --- NSFW -----------------------------------------------------------------------------------


def test_nsfw_images_are_blurred_by_default_and_the_file_is_untouched(owner_client, owner):
    image = make_image(make_generation(owner), nsfw=True)
    before = default_storage.open(image.file.name).read()
    html = owner_client.get(reverse("gallery:index")).content.decode()
    assert f'id="image-{image.uuid}" class="tile nsfw"' in html
    page = owner_client.get(reverse("gallery:image", args=[image.uuid])).content.decode()
    assert 'class="image-full nsfw"' in page and "reveal=1" in page
    revealed = owner_client.get(reverse("gallery:image", args=[image.uuid]), {"reveal": "1"})
    assert 'class="image-full nsfw"' not in revealed.content.decode()
    assert default_storage.open(image.file.name).read() == before


@pytest.mark.parametrize(
    ("preference", "in_grid", "blurred"),
    [("blur", True, True), ("show", True, False), ("hide", False, False)],
)
def test_the_nsfw_preference_applies_to_the_grid(owner_client, owner, preference, in_grid, blurred):
    image = make_image(make_generation(owner), nsfw=True)
    response = owner_client.post(reverse("gallery:settings"), {"nsfw": preference})
    assert response.status_code == 303
    assert Preferences.objects.get(user=owner).nsfw == preference
    html = owner_client.get(reverse("gallery:index")).content.decode()
    assert (f'id="image-{image.uuid}"' in html) is in_grid
    assert (f'id="image-{image.uuid}" class="tile nsfw"' in html) is blurred


def test_the_nsfw_filter_overrides_the_preference(owner_client, owner):
    flagged = make_image(make_generation(owner), nsfw=True)
    services.preferences_update(user=owner, nsfw="hide")
    url = reverse("gallery:index")
    assert grid_uuids(owner_client.get(url, {"nsfw": "show"})) == [str(flagged.uuid)]
    services.preferences_update(user=owner, nsfw="show")
    assert grid_uuids(owner_client.get(url, {"nsfw": "hide"})) == []


def test_the_settings_page_rejects_unknown_values(owner_client, owner):
    response = owner_client.post(reverse("gallery:settings"), {"nsfw": "explode"})
    assert response.status_code == 400
    assert not Preferences.objects.filter(user=owner).exists()


# --- Favourites and collections --------------------------------------------------------------


def test_starring_toggles_with_htmx_and_without(owner_client, owner):
    image = make_image(make_generation(owner))
    url = reverse("gallery:star", args=[image.uuid])
    response = owner_client.post(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'aria-pressed="true"' in response.content.decode()
    assert Favourite.objects.filter(user=owner, image=image).exists()
    response = owner_client.post(url, {"next": "/gallery/?fav=on"})
    assert response.status_code == 303 and response["Location"] == "/gallery/?fav=on"
    assert not Favourite.objects.filter(user=owner, image=image).exists()


def test_star_refuses_to_redirect_off_site(owner_client, owner):
    image = make_image(make_generation(owner))
    response = owner_client.post(
        reverse("gallery:star", args=[image.uuid]), {"next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("gallery:image", args=[image.uuid])


def test_collections_are_created_listed_and_deleted_by_their_owner(client, owner, teammate):
    client.force_login(owner)
    response = client.post(reverse("gallery:collections"), {"name": "Boats"})
    assert response.status_code == 303
    assert client.post(reverse("gallery:collections"), {"name": "Boats"}).status_code == 400
    collection = Collection.objects.get(owner=owner)
    assert "Boats" in client.get(reverse("gallery:collections")).content.decode()
    client.force_login(teammate)
    assert "Boats" not in client.get(reverse("gallery:collections")).content.decode()
    url = reverse("gallery:collection_delete", args=[collection.uuid])
    assert client.post(url).status_code == 404
    client.force_login(owner)
    assert client.post(url).status_code == 303
    assert not Collection.objects.exists()


# --- Bulk actions ----------------------------------------------------------------------------


def bulk(client: Any, action: str, images: list, **extra: str) -> Any:
    data = {"action": action, "image": [str(i.uuid) for i in images], "next": "/gallery/"}
    return client.post(reverse("gallery:bulk"), {**data, **extra})


def test_bulk_star_unstar_and_collect(owner_client, owner):
    images = make_series(owner, 3)
    assert bulk(owner_client, "star", images).status_code == 303
    assert Favourite.objects.filter(user=owner).count() == 3
    bulk(owner_client, "unstar", images[:1])
    assert Favourite.objects.filter(user=owner).count() == 2
    boats = services.collection_create(owner=owner, name="Boats")
    bulk(owner_client, "collect", images[1:], collection=str(boats.uuid))
    assert set(boats.images.all()) == set(images[1:])
    bulk(owner_client, "uncollect", images[2:], collection=str(boats.uuid))
    assert list(boats.images.all()) == [images[1]]


def test_bulk_cannot_use_someone_elses_collection(client, owner, teammate):
    images = make_series(owner, 1)
    boats = services.collection_create(owner=owner, name="Boats")
    client.force_login(teammate)
    response = bulk(client, "collect", images, collection=str(boats.uuid))
    assert response.status_code == 303
    assert not boats.images.exists()


def test_bulk_delete_removes_only_own_images_and_their_files(client, owner, teammate, moderator):
    mine = make_image(make_generation(owner, "mine"))
    theirs = make_image(make_generation(teammate, "theirs"))
    client.force_login(moderator)
    bulk(client, "delete", [mine, theirs])
    assert Image.objects.count() == 2
    client.force_login(owner)
    with pytest.MonkeyPatch.context():
        response = bulk(client, "delete", [mine, theirs])
    assert response.status_code == 303
    assert list(Image.objects.all()) == [theirs]
    assert Generation.objects.filter(pk=mine.generation_id).exists()


def test_bulk_delete_deletes_files_after_commit(
    owner_client, owner, django_capture_on_commit_callbacks
):
    image = make_image(make_generation(owner))
    with django_capture_on_commit_callbacks(execute=True):
        bulk(owner_client, "delete", [image])
    assert not default_storage.exists(image.file.name)
    assert not default_storage.exists(image.thumbnail.name)


def test_bulk_never_touches_images_the_viewer_cannot_see(client, owner, outsider):
    private = make_image(make_generation(owner, visibility="private"))
    client.force_login(outsider)
    bulk(client, "star", [private])
    assert not Favourite.objects.exists()
    response = bulk(client, "zip", [private])
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        assert archive.namelist() == []


def test_bulk_without_a_selection_says_so(owner_client):
    response = owner_client.post(reverse("gallery:bulk"), {"action": "star", "next": "/gallery/"})
    assert response.status_code == 303
    messages = [str(m) for m in owner_client.get("/gallery/").context["messages"]]
    assert "Select at least one image." in messages


# --- Downloads with parameters ---------------------------------------------------------------


def test_a_zips_pngs_carry_a1111_parameters(owner_client, owner):
    png = make_image(
        make_generation(owner, "A koi pond, in the rain", seed="42", negative_prompt="blurry")
    )
    jpeg = make_image(make_generation(owner, "A paper boat", seed="7"), fmt="jpeg")
    response = bulk(owner_client, "zip", [png, jpeg])
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert "attachment" in response["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        names = archive.namelist()
        assert len(names) == 2
        png_name = next(n for n in names if n.endswith(".png"))
        with PILImage.open(io.BytesIO(archive.read(png_name))) as im:
            parameters = im.text["parameters"]
            assert im.size == (png.width, png.height)
        jpeg_name = next(n for n in names if n.endswith(".jpg"))
        with PILImage.open(io.BytesIO(archive.read(jpeg_name))) as im:
            comment = im.getexif().get_ifd(0x8769)[0x9286]
    assert parameters.splitlines() == [
        "A koi pond, in the rain",
        "Negative prompt: blurry",
        "Steps: 28, CFG scale: 3.5, Seed: 42, Size: 128x128, Model: flux-realism, "
        "output_format: png",
    ]
    assert comment.startswith(b"UNICODE\x00")
    assert comment[8:].decode("utf-16-be").startswith("A paper boat\nSteps: 28")


def test_a_single_download_carries_the_parameters_and_keeps_the_stored_file(owner_client, owner):
    image = make_image(make_generation(owner, "Un étang de koïs 鯉", seed="9"))
    stored = default_storage.open(image.file.name).read()
    response = owner_client.get(reverse("gallery:download", args=[image.uuid]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith('attachment; filename="un-tang-de-ko')
    with PILImage.open(io.BytesIO(response.content)) as im:
        assert im.text["parameters"].startswith("Un étang de koïs 鯉\nSteps: 28")
        with PILImage.open(io.BytesIO(stored)) as original:
            assert im.tobytes() == original.tobytes()
    assert default_storage.open(image.file.name).read() == stored


def test_parameters_quote_values_that_would_break_parsing(owner):
    image = make_image(make_generation(owner, "x", seed="1", style="a, b: c"))
    assert 'style: "a, b: c"' in parameters_text(image)
