"""The live event stream over HTTP: replay after a reconnect, who receives what, the
connection limit, and the events the services publish."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from generator import events, live_views
from generator.models import LiveEvent
from tests.conftest import free_port

STREAM = "/live/events"


@pytest.fixture(params=["redis", "table"])
def store(request: Any, settings: Any) -> str:
    """Each test runs on both stores: the Redis stream (a key of its own) and the
    change-log table of the embedded setup."""
    if request.param == "redis":
        if not settings.CELERY_BROKER_URL.startswith("redis"):
            pytest.skip("the Redis store needs CELERY_BROKER_URL=redis://")
        settings.LIVE_EVENTS_REDIS_URL = settings.CELERY_BROKER_URL
        settings.LIVE_EVENTS_KEY = f"studio-test:live-{uuid.uuid4()}"
    else:
        settings.LIVE_EVENTS_REDIS_URL = ""
    # Short streams, so a test reads one to its end.
    settings.SSE_STREAM_SECONDS = 1
    settings.SSE_HEARTBEAT_SECONDS = 0.3
    yield request.param
    if request.param == "redis":
        events._redis_client().delete(settings.LIVE_EVENTS_KEY)


def frames(body: bytes, kinds: tuple[str, ...] = ("generation", "moderators")) -> list[dict]:
    """The events of an SSE body of `kinds`, as {"id", "event", "data"}; comments and
    the unread count every stream starts with left out unless asked for."""
    found = []
    for block in body.decode().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if fields.get("event") in kinds:
            found.append(fields)
    return found


def read_stream(client: Any, **headers: str) -> tuple[Any, bytes]:
    response = client.get(STREAM, headers=headers)
    # Read to its end (SSE_STREAM_SECONDS); the test client then closes it.
    return response, b"".join(response.streaming_content)


@pytest.mark.django_db
def test_a_reconnecting_browser_is_sent_what_it_missed(client, owner, store):
    client.force_login(owner)
    audience = events.for_user(owner.pk)
    events.publish("generation", audience, {"uuid": "seen", "status": "queued"})
    seen = events.latest_id()
    events.publish("generation", audience, {"uuid": "missed-1", "status": "running"})
    events.publish("generation", audience, {"uuid": "missed-2", "status": "succeeded"})

    response, body = read_stream(client, last_event_id=seen)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    got = frames(body)
    assert [f["data"] for f in got] == [
        '{"uuid": "missed-1", "status": "running"}',
        '{"uuid": "missed-2", "status": "succeeded"}',
    ]
    assert all(f["event"] == "generation" for f in got)
    # Each carries its id, so the next reconnect resumes after the last one.
    assert got[-1]["id"] == events.latest_id()
    assert b": heartbeat" in body


@pytest.mark.django_db
def test_the_first_connection_resumes_from_the_rendered_page(client, owner, store):
    client.force_login(owner)
    audience = events.for_user(owner.pk)
    events.publish("generation", audience, {"uuid": "before-render"})
    page_since = events.latest_id()
    events.publish("generation", audience, {"uuid": "after-render"})

    response = client.get(STREAM, {"since": page_since})
    got = frames(b"".join(response.streaming_content))

    assert [f["data"] for f in got] == ['{"uuid": "after-render"}']


@pytest.mark.django_db
def test_without_an_id_the_stream_starts_at_the_newest_event(client, owner, store):
    client.force_login(owner)
    events.publish("generation", events.for_user(owner.pk), {"uuid": "old"})

    _, body = read_stream(client, last_event_id="not-an-id")

    assert frames(body) == []
    assert body.startswith(b"retry: ")


@pytest.mark.django_db
def test_a_stream_carries_only_what_its_reader_may_see(client, owner, teammate, moderator, store):
    start = events.latest_id()
    events.publish("generation", events.for_user(owner.pk), {"uuid": "olivias"})
    events.publish("generation", events.for_user(teammate.pk), {"uuid": "theos"})
    events.publish(events.MODERATORS, events.MODERATORS, {"waiting": 3})

    client.force_login(owner)
    _, body = read_stream(client, last_event_id=start)
    assert [f["data"] for f in frames(body)] == ['{"uuid": "olivias"}']

    client.force_login(moderator)
    _, body = read_stream(client, last_event_id=start)
    assert [(f["event"], f["data"]) for f in frames(body)] == [("moderators", '{"waiting": 3}')]


@pytest.mark.django_db
def test_the_stream_refuses_anonymous_and_suspended_people(client, suspended):
    assert client.get(STREAM).status_code == 403
    client.force_login(suspended)
    assert client.get(STREAM).status_code in (302, 403)


@pytest.mark.django_db
def test_sse_max_connections_is_enforced_with_retry_after(client, owner, settings, store):
    settings.SSE_MAX_CONNECTIONS = 2
    settings.SSE_RETRY_AFTER = 17
    client.force_login(owner)
    before = live_views.open_streams()
    first = client.get(STREAM)
    second = client.get(STREAM)
    assert first.status_code == second.status_code == 200
    assert live_views.open_streams() == before + 2

    refused = client.get(STREAM)

    assert refused.status_code == 503
    assert refused["Retry-After"] == "17"
    assert "polling" in refused.content.decode()
    # A stream that ends gives its place back.
    b"".join(first.streaming_content)
    third = client.get(STREAM)
    assert third.status_code == 200
    b"".join(second.streaming_content)
    b"".join(third.streaming_content)
    assert live_views.open_streams() == before


@pytest.mark.django_db(transaction=True)
def test_the_asgi_stream_replays_and_ends(owner, store):
    """Under ASGI (gunicorn in production) the body is an async iterator."""
    client = AsyncClient()
    client.force_login(owner)
    # Streams of pages an earlier browser test left may still be open in this process.
    before = live_views.open_streams()
    audience = events.for_user(owner.pk)
    start = events.latest_id()
    events.publish("generation", audience, {"uuid": "async-1"})

    async def read() -> tuple[int, bytes]:
        response = await client.get(STREAM, headers={"last-event-id": start})
        chunks = [chunk async for chunk in response.streaming_content]
        return response.status_code, b"".join(chunks)

    status, body = async_to_sync(read)()

    assert status == 200
    assert [f["data"] for f in frames(body)] == ['{"uuid": "async-1"}']
    assert live_views.open_streams() <= before  # its own place was given back


@pytest.mark.django_db
def test_the_table_keeps_events_for_the_retention_only(settings):
    settings.LIVE_EVENTS_REDIS_URL = ""
    settings.SSE_EVENT_RETENTION = 60
    events.publish("generation", "user:1", {"uuid": "old"})
    LiveEvent.objects.update(created_at="2000-01-01T00:00:00Z")
    events._last_trim = 0.0

    events.publish("generation", "user:1", {"uuid": "new"})

    assert list(LiveEvent.objects.values_list("data__uuid", flat=True)) == ["new"]


@pytest.fixture
def no_broker(monkeypatch: Any) -> None:
    """The steps run here (run_steps), not in the session's workers, which would
    publish to the store of their own settings."""
    import generator.services.claims as claims

    monkeypatch.setattr(claims, "send", lambda *args, **kwargs: None)


@pytest.mark.django_db(transaction=True)
def test_services_publish_each_state_change_after_commit(owner, provider, store, no_broker):
    from generator import services
    from generator.registry import get_model
    from tests.conftest import run_steps

    start = events.latest_id()
    spec = get_model("flux-realism")
    generation = services.generation_create(
        owner=owner, spec=spec, body={"model": spec.id, "prompt": "a lighthouse at dusk"}
    )
    run_steps(generation)

    published = [
        e for e in events.Reader().read(start, 0.1) if e.data.get("uuid") == str(generation.uuid)
    ]
    assert {e.audience for e in published} == {events.for_user(owner.pk)}
    states = [(e.data["status"], e.data["step"]) for e in published]
    assert states[0] == ("queued", "call")
    assert ("running", "call") in states
    assert ("running", "mirror") in states
    assert states[-1] == ("succeeded", "mirror")


@pytest.mark.django_db
def test_the_unread_count_follows_new_notifications(client, owner, store):
    from accounts.services import notification_send

    client.force_login(owner)
    response = client.get(STREAM)
    body = iter(response.streaming_content)
    opening = next(body)
    # Sent by code that publishes nothing (accounts): seen at the next quiet moment.
    notification_send(user=owner, text="Your account was approved.")
    got = frames(opening + b"".join(body), kinds=("notifications",))

    # The count the stream starts with, then the new one.
    assert [f["data"] for f in got] == ['{"unread": 0}', '{"unread": 1}']


@pytest.mark.django_db
def test_a_moderation_decision_recounts_the_owners_unread_notifications(
    client,
    owner,
    teammate,
    moderator,
    provider,
    store,
    django_capture_on_commit_callbacks,
    no_broker,
):
    from gallery import services as gallery_services
    from generator import services
    from generator.registry import get_model
    from tests.conftest import run_steps

    spec = get_model("flux-realism")
    with django_capture_on_commit_callbacks(execute=True):
        generation = services.generation_create(
            owner=owner, spec=spec, body={"model": spec.id, "prompt": "A quiet street"}
        )
    run_steps(generation)
    image = generation.images.get()
    start = events.latest_id()
    with django_capture_on_commit_callbacks(execute=True):
        gallery_services.image_report(image=image, reporter=teammate, reason="other")
    with django_capture_on_commit_callbacks(execute=True):
        gallery_services.moderation_decide(
            images=[image], decision="hide", by=moderator, reason="Off-topic"
        )

    kinds = [(e.kind, e.audience, e.data) for e in events.Reader().read(start, 0.1)]
    assert (events.MODERATORS, events.MODERATORS, {"waiting": 1}) in kinds
    assert (events.NOTIFICATIONS, events.for_user(owner.pk), {}) in kinds
    assert kinds[-1] == (events.MODERATORS, events.MODERATORS, {"waiting": 0})

    client.force_login(owner)
    _, body = read_stream(client, last_event_id=start)
    got = frames(body, kinds=("notifications",))
    assert [f["data"] for f in got] == ['{"unread": 1}']


@pytest.mark.django_db
def test_an_unreachable_store_fails_neither_the_change_nor_the_stream(client, owner, settings):
    events._clients.clear()
    settings.LIVE_EVENTS_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.SSE_STREAM_SECONDS = 1
    client.force_login(owner)
    before = live_views.open_streams()

    events.publish("generation", events.for_user(owner.pk), {"uuid": "lost"})
    assert events.latest_id() == ""
    response = client.get(STREAM)
    body = b"".join(response.streaming_content)

    # It ends at once, and the browser reconnects (or polls) instead of hanging.
    assert response.status_code == 200
    assert body.startswith(b"retry: ")
    assert frames(body) == []
    assert live_views.open_streams() <= before
    events._clients.clear()
