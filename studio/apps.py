from __future__ import annotations

from django.apps import AppConfig


class StudioConfig(AppConfig):
    """The project itself, as an app only so that `manage.py runstudio` (which starts the
    web server, the workers and beat from studio.processes) lives beside them. It has
    no models."""

    name = "studio"
