"""The live event stream served as in production, by gunicorn's ASGI worker: it
streams (an async body, not one collected to the end) and replays from Last-Event-ID."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
import requests
from django.conf import settings
from django.test import Client

from generator import events
from tests.studio.test_server_log import web  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def signed_in(user) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


def next_event(lines, kind: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if fields.get("event") == kind:
                return fields
            fields = {}
        elif not line.startswith(":") and ": " in line:
            name, value = line.split(": ", 1)
            fields[name] = value
    raise AssertionError(f"the stream ended without a {kind} event")


def test_gunicorn_streams_events_as_they_are_published(web, owner):  # noqa: F811
    cookies = signed_in(owner)
    audience = events.for_user(owner.pk)
    with requests.get(
        f"{web.base}/live/events", cookies=cookies, stream=True, timeout=(5, 30)
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        lines = response.iter_lines(decode_unicode=True)
        # The stream is open (its first bytes arrived) before the event exists.
        assert next(lines).startswith("retry: ")
        marker = str(uuid.uuid4())
        threading.Timer(0.5, events.publish, ("generation", audience, {"uuid": marker})).start()
        got = next_event(lines, "generation")
    assert json.loads(got["data"]) == {"uuid": marker}

    # Reconnecting after that event: what came since is replayed, the event itself not.
    missed = str(uuid.uuid4())
    events.publish("generation", audience, {"uuid": missed})
    with requests.get(
        f"{web.base}/live/events",
        cookies=cookies,
        headers={"Last-Event-ID": got["id"]},
        stream=True,
        timeout=(5, 30),
    ) as response:
        replayed = next_event(response.iter_lines(decode_unicode=True), "generation")
    assert json.loads(replayed["data"]) == {"uuid": missed}
