"""Collections: the collection page in the owner's order, moving images up and down,
renaming, the cover on the collections list, and the migration that numbered the
items already there."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from gallery import services
from gallery.models import Collection, CollectionItem
from generator.models import Generation
from tests.gallery.test_gallery import make_generation, make_image, make_series

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


def page_order(response: Any) -> list[str]:
    return re.findall(r'id="item-([0-9a-f-]{36})"', response.content.decode())


def board(owner: Any, images: list) -> Collection:
    collection = services.collection_create(owner=owner, name="Boats")
    services.collection_add(collection=collection, images=images)
    return collection


def test_the_collection_page_keeps_the_order_images_were_added_in(owner_client, owner):
    a, b, c = make_series(owner, 3)
    collection = board(owner, [b, c])
    services.collection_add(collection=collection, images=[a, b])  # b is already in
    response = owner_client.get(reverse("gallery:collection", args=[collection.uuid]))
    assert response.status_code == 200
    assert page_order(response) == [str(b.uuid), str(c.uuid), str(a.uuid)]
    # Each tile opens the viewer on its image page, which keeps to the collection.
    body = response.content.decode()
    assert f'href="/images/{b.uuid}/?collection={collection.uuid}" data-viewer' in body
    assert '<dialog id="viewer"' in body


def test_moving_images_up_and_down_without_javascript_and_with_htmx(owner_client, owner):
    a, b, c = make_series(owner, 3)
    collection = board(owner, [a, b, c])
    url = reverse("gallery:collection_move", args=[collection.uuid])
    page = reverse("gallery:collection", args=[collection.uuid])
    response = owner_client.post(url, {"image": str(c.uuid), "direction": "up"})
    assert response.status_code == 303 and response["Location"] == page
    assert page_order(owner_client.get(page)) == [str(a.uuid), str(c.uuid), str(b.uuid)]
    response = owner_client.post(
        url, {"image": str(a.uuid), "direction": "down"}, headers={"HX-Request": "true"}
    )
    # htmx gets only the grid, whose buttons keep their ids (htmx gives focus back).
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<ol id="collection-items"')
    assert f'id="down-{a.uuid}"' in body
    assert page_order(response) == [str(c.uuid), str(a.uuid), str(b.uuid)]
    positions = list(collection.items.order_by("position").values_list("position", flat=True))
    assert positions == [1, 2, 3]


def test_a_move_past_either_end_or_of_a_stranger_changes_nothing(owner_client, owner, teammate):
    a, b = make_series(owner, 2)
    stranger = make_image(make_generation(teammate, "not in the board"))
    collection = board(owner, [a, b])
    url = reverse("gallery:collection_move", args=[collection.uuid])
    for data in (
        {"image": str(a.uuid), "direction": "up"},
        {"image": str(b.uuid), "direction": "down"},
        {"image": str(stranger.uuid), "direction": "up"},
        {"image": str(a.uuid), "direction": "sideways"},
        {"image": "not-a-uuid", "direction": "up"},
    ):
        assert owner_client.post(url, data).status_code == 303
    page = owner_client.get(reverse("gallery:collection", args=[collection.uuid]))
    assert page_order(page) == [str(a.uuid), str(b.uuid)]
    assert "That image is not in this collection." in page.content.decode()


def test_renaming_checks_the_name_at_the_field(owner_client, owner):
    collection = board(owner, [])
    services.collection_create(owner=owner, name="Birds")
    url = reverse("gallery:collection_rename", args=[collection.uuid])
    response = owner_client.post(url, {"name": "Birds"})
    assert response.status_code == 400
    assert re.search(r'id="rename-name-error" role="alert">You already have', response.text)
    assert owner_client.post(url, {"name": "  "}).status_code == 400
    # Its own name is no clash.
    assert owner_client.post(url, {"name": "Boats"}).status_code == 303
    response = owner_client.post(url, {"name": " Harbour boats "})
    assert response.status_code == 303
    collection.refresh_from_db()
    assert collection.name == "Harbour boats"


def cover_of(client: Any, collection: Collection) -> str | None:
    body = client.get(reverse("gallery:collections")).content.decode()
    row = body.split(f'id="collection-{collection.uuid}"', 1)[1].split("</li>", 1)[0]
    found = re.search(r'<img src="/media/([^"]+)"', row)
    return found.group(1) if found else None


def test_the_collections_list_shows_the_chosen_cover_or_the_first_image(
    owner_client, owner, teammate
):
    a, b = make_series(owner, 2)
    theirs = make_image(make_generation(teammate, "a shared harbour"))
    collection = board(owner, [theirs, a, b])
    empty = services.collection_create(owner=owner, name="Empty")
    assert cover_of(owner_client, empty) is None
    assert cover_of(owner_client, collection) == theirs.thumbnail.name
    url = reverse("gallery:collection_cover", args=[collection.uuid])
    assert owner_client.post(url, {"image": str(b.uuid)}).status_code == 303
    assert cover_of(owner_client, collection) == b.thumbnail.name
    # An image the owner may no longer see is neither shown nor counted.
    Generation.objects.filter(pk=theirs.generation_id).update(visibility="private")
    services.collection_cover_set(collection=collection, image=theirs)
    assert cover_of(owner_client, collection) == a.thumbnail.name
    assert "2 images" in owner_client.get(reverse("gallery:collections")).content.decode()
    # Taken out of the collection, the cover stops being one; an empty post resets it.
    services.collection_cover_set(collection=collection, image=b)
    services.collection_remove(collection=collection, images=[b])
    assert Collection.objects.get(pk=collection.pk).cover is None
    services.collection_cover_set(collection=collection, image=a)
    assert owner_client.post(url, {"image": ""}).status_code == 303
    assert Collection.objects.get(pk=collection.pk).cover is None


def test_the_viewer_article_offers_the_collections_and_its_own_star_ids(owner_client, owner):
    image = make_image(make_generation(owner))
    collection = board(owner, [])
    url = reverse("gallery:image", args=[image.uuid])
    body = owner_client.get(url, {"part": "viewer"}).content.decode()
    assert f'id="viewer-{image.uuid}"' in body
    assert f'id="viewer-star-{image.uuid}"' in body and "star/?in=viewer" in body
    assert f'<option value="{collection.uuid}">Boats</option>' in body
    owner_client.post(
        reverse("gallery:bulk"),
        {"action": "collect", "image": [str(image.uuid)], "collection": str(collection.uuid)},
    )
    assert list(collection.images.all()) == [image]
    star = reverse("gallery:star", args=[image.uuid])
    answer = owner_client.post(f"{star}?in=viewer", headers={"HX-Request": "true"})
    assert f'id="viewer-star-{image.uuid}"' in answer.text
    answer = owner_client.post(star, headers={"HX-Request": "true"})
    assert f'id="star-{image.uuid}"' in answer.text


@pytest.mark.django_db(transaction=True)
def test_the_migration_numbers_existing_items_in_the_order_they_were_added(owner):
    executor = MigrationExecutor(connection)
    executor.migrate([("gallery", "0002_report")])
    old = executor.loader.project_state([("gallery", "0002_report")]).apps
    images = make_series(owner, 3)
    OldCollection = old.get_model("gallery", "Collection")
    OldItem = old.get_model("gallery", "CollectionItem")
    first = OldCollection.objects.create(owner_id=owner.pk, name="First")
    second = OldCollection.objects.create(owner_id=owner.pk, name="Second")
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for minutes, (collection, image) in enumerate(
        [(first, images[2]), (second, images[0]), (first, images[0]), (first, images[1])]
    ):
        item = OldItem.objects.create(collection_id=collection.pk, image_id=image.pk)
        OldItem.objects.filter(pk=item.pk).update(added_at=start + dt.timedelta(minutes=minutes))
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    rows = CollectionItem.objects.order_by("collection_id", "position")
    assert [(r.collection.name, r.image_id, r.position) for r in rows] == [
        ("First", images[2].pk, 1),
        ("First", images[0].pk, 2),
        ("First", images[1].pk, 3),
        ("Second", images[0].pk, 1),
    ]
