"""Test settings: the production settings with fast, isolated overrides.

Worker processes started by the tests load this module too (DJANGO_SETTINGS_MODULE),
so everything here must also hold in a subprocess.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("DATA_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))

from studio.settings import *  # noqa: E402,F403
from studio.settings import CELERY_BROKER_URL, DATA_DIR, DATABASES  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"allow_overwrite": True},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Django's live test server serves MEDIA_URL straight from disk, which would shadow
# the permission-checked media view the tests must exercise.
MEDIA_URL = "/unserved-media/"

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so worker processes started by the tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}

if CELERY_BROKER_URL.startswith("redis"):
    # Keeps the tests' queues apart from a studio running on the same Redis.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
        "global_keyprefix": "studio-test:",
    }

# The live event stream's key, apart from a studio's on the same Redis.
LIVE_EVENTS_KEY = "studio-test:live-events"

# A stream whose page has gone notices at its next heartbeat, so the streams of pages an
# earlier browser test closed free their places within seconds.
SSE_HEARTBEAT_SECONDS = 2.0
