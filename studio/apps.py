from __future__ import annotations

from django.apps import AppConfig


class StudioConfig(AppConfig):
    """The project itself, as an app only so that `manage.py runstudio` (which starts the
    web server, the workers and beat from studio.processes) lives beside them. It has
    no models."""

    name = "studio"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        connection_created.connect(_private_sqlite_files, dispatch_uid="studio.private_sqlite")


def _private_sqlite_files(sender: object, connection: object, **_: object) -> None:
    """The embedded database holds sessions and password hashes: owner-only, like the
    secret key beside it, whatever the umask made of the file and its WAL."""
    import os

    if getattr(connection, "vendor", "") != "sqlite":
        return
    name = str(connection.settings_dict["NAME"])
    for path in (name, name + "-wal", name + "-shm"):
        if os.path.exists(path):
            os.chmod(path, 0o600)
