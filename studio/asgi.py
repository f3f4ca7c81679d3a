from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

from studio.serverlog import track_disconnects  # noqa: E402

# The access log tells a client that hung up from a server error (studio.serverlog).
application = track_disconnects(get_asgi_application())
