"""Shared fixtures: named personas, the offline provider over real HTTP, and real
Celery worker processes for the pipeline tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

from generator.offline_provider import OfflineProvider

TEST_PROVIDER_KEY = "test-provider-key-not-secret"
PASSWORD = "correct horse battery staple"
ROOT = Path(__file__).resolve().parent.parent


# --- Personas ---------------------------------------------------------------------------


@pytest.fixture
def owner(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("olivia", "olivia@example.com", PASSWORD)


@pytest.fixture
def teammate(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("theo", "theo@example.com", PASSWORD)


@pytest.fixture
def outsider(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("oscar", "oscar@example.com", PASSWORD)


def with_role(user: Any, role: str, status: str = "active", reason: str = "") -> Any:
    """Give `user` a role (and status) the way the members page does, minus the audit."""
    from generator.members import _apply_role
    from generator.models import Member

    Member.objects.update_or_create(
        user=user, defaults={"role": role, "status": status, "status_reason": reason}
    )
    _apply_role(user, role)
    user.refresh_from_db()
    return user


@pytest.fixture
def moderator(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("mona", "mona@example.com", PASSWORD)
    return with_role(user, "moderator")


@pytest.fixture
def viewer(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("vera", "vera@example.com", PASSWORD)
    return with_role(user, "viewer")


@pytest.fixture
def suspended(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("sam", "sam@example.com", PASSWORD)
    return with_role(user, "member", status="suspended", reason="Spamming the gallery")


# --- The provider -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def offline_provider_server() -> Iterator[OfflineProvider]:
    server = OfflineProvider(api_key=TEST_PROVIDER_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def provider(offline_provider_server: OfflineProvider, settings: Any) -> Iterator[OfflineProvider]:
    """The offline provider, reset, with the studio (this process) pointed at it."""
    server = offline_provider_server
    server.reset()
    server.latency = 0.0
    server.success_status = 200
    server.url_ttl = None
    server.shape = "auto"
    server.api_key = TEST_PROVIDER_KEY
    settings.AIMLAPI_KEY = TEST_PROVIDER_KEY
    settings.AIMLAPI_BASE_URL = server.base_url
    settings.MIRROR_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.MIRROR_ALLOW_PRIVATE_ADDRESSES = True
    settings.GENERATION_RETRY_BASE = 0.05
    settings.GENERATION_RETRY_MAX = 0.2
    yield server
    server.reset()


# --- Real workers -----------------------------------------------------------------------


def database_url() -> str:
    """The URL of the database the tests are using right now (the test database)."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def worker_env(server: OfflineProvider, **overrides: str) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATA_DIR=str(django_settings.DATA_DIR),
        DATABASE_URL=database_url(),
        AIMLAPI_KEY=TEST_PROVIDER_KEY,
        AIMLAPI_BASE_URL=server.base_url,
        AIMLAPI_READ_TIMEOUT="10",
        AIMLAPI_TOTAL_TIMEOUT="15",
        MIRROR_ALLOWED_HOSTS="127.0.0.1",
        MIRROR_ALLOW_PRIVATE_ADDRESSES="true",
        GENERATION_MAX_ATTEMPTS="3",
        GENERATION_RETRY_BASE="0.2",
        GENERATION_RETRY_MAX="1",
        GENERATION_LEASE_SECONDS="20",
        GENERATION_QUEUE_GRACE_SECONDS="5",
        CELERY_VISIBILITY_TIMEOUT="60",
        CELERY_TASK_SOFT_TIME_LIMIT="30",
        CELERY_TASK_TIME_LIMIT="40",
        WORKER_PROVIDER_CONCURRENCY="8",
        WORKER_IMAGE_CONCURRENCY="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


class Workers:
    """The studio's worker processes, started with the same command lines as `make run`."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def start(self, names: tuple[str, ...] = ("worker-provider", "worker-images")) -> Workers:
        from studio.processes import worker_commands

        # Concurrency as the env given to the workers says (default: production's).
        commands = worker_commands(
            sys.executable,
            loglevel="INFO",
            provider_concurrency=int(self.env.get("WORKER_PROVIDER_CONCURRENCY") or 32),
            image_concurrency=int(self.env.get("WORKER_IMAGE_CONCURRENCY") or 2),
        )
        for name in names:
            log = self.logdir / f"{name}-{time.monotonic_ns()}.log"
            self.logs[name] = log
            self.procs[name] = subprocess.Popen(
                commands[name],
                cwd=ROOT,
                env=self.env,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for name in names:
            self.wait_ready(name)
        return self

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.logs[name].read_text(errors="replace"):
                return
            if self.procs[name].poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{name} did not start:\n{self.log(name)}")

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")[-6000:]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def purge_queues() -> None:
    from studio.celery import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in ("provider", "images"):
            try:
                channel.queue_purge(queue)
            except Exception:  # the queue may not exist yet
                pass


@pytest.fixture(scope="session")
def workers(
    django_db_setup: Any,
    django_db_blocker: Any,
    offline_provider_server: OfflineProvider,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Workers]:
    with django_db_blocker.unblock():
        env = worker_env(offline_provider_server)
    purge_queues()
    group = Workers(env, tmp_path_factory.mktemp("workers")).start()
    yield group
    group.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


# --- A real browser ---------------------------------------------------------------------

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-gpu",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright (the system Chromium; .ci/run installs it)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}; install it (see .ci/run) or set CHROMIUM_PATH"
        )
    # Playwright's sync API runs an event loop in this thread; the tests' own ORM calls
    # between browser steps are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def browser_as(browser: Any, live_server: Any, client: Any) -> Iterator[Callable[..., Any]]:
    """`browser_as(user, javascript=True)` opens a page signed in as `user` on the live
    server; the session cookie comes from Django's test client."""
    contexts: list[Any] = []

    def open_page(user: Any, *, javascript: bool = True) -> Any:
        client.force_login(user)
        context = browser.new_context(
            base_url=live_server.url, java_script_enabled=javascript, accept_downloads=True
        )
        context.add_cookies(
            [
                {
                    "name": django_settings.SESSION_COOKIE_NAME,
                    "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
                    "url": live_server.url,
                }
            ]
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.js_errors = errors  # type: ignore[attr-defined]
        return page

    yield open_page
    for context in contexts:
        context.close()
