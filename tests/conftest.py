"""Shared fixtures: named personas, the offline provider over real HTTP, and real
Celery worker processes for the pipeline tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

from offline_provider import OfflineProvider

TEST_PROVIDER_KEY = "test-provider-key-not-secret"
PASSWORD = "correct horse battery staple"
ROOT = Path(__file__).resolve().parent.parent


# --- The database between transactional tests --------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _flush_that_survives_busy_workers() -> Iterator[None]:
    """Every transactional test's flush waits for, or ends, other connections' open
    transactions and retries on lock conflicts; see tests/db_flush.py for why."""
    from tests import db_flush

    uninstall = db_flush.install()
    yield
    uninstall()


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
    from accounts.models import Member
    from accounts.services import role_apply

    Member.objects.update_or_create(user=user, defaults={"status": status, "status_reason": reason})
    role_apply(user, role)
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
        for queue in ("provider", "images", "sweep"):
            try:
                channel.queue_purge(queue)
            except Exception:  # the queue may not exist yet
                pass


def broker_pending() -> int:
    """Messages the workers have not finished with: waiting in the two queues, or
    delivered and not yet acknowledged (running, or waiting out a retry's countdown:
    tasks are acknowledged late)."""
    from studio.celery import app

    with app.connection_for_read() as conn:
        channel = conn.default_channel
        # Declaring, not a passive check: see generator.services.claims.queue_backlog.
        pending = sum(channel.queue_declare(queue=q).message_count for q in ("provider", "images"))
        unacked_key = getattr(channel, "unacked_key", None)  # the Redis transport's
        if unacked_key:
            pending += int(channel.client.hlen(unacked_key))
        return pending


def settle_workers(timeout: float = 30) -> bool:
    """Wait until the workers have nothing of the test's in hand: no generation under a
    live lease and no message pending. Then drop what is still queued, so none of it
    runs into the next test. False if `timeout` ran out first (the flush copes anyway).
    """
    from django.utils import timezone

    from generator.models import Generation

    def idle() -> bool:
        leased = Generation.objects.filter(
            status__in=(Generation.Status.QUEUED, Generation.Status.RUNNING),
            lease_until__gt=timezone.now(),
        ).exists()
        return not leased and broker_pending() == 0

    try:
        wait_for(idle, timeout=timeout, interval=0.1)
        settled = True
    except AssertionError:
        settled = False
    purge_queues()
    return settled


@pytest.fixture(scope="session")
def worker_pool(
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


@pytest.fixture
def workers(worker_pool: Workers) -> Iterator[Workers]:
    """The session's workers, left idle when the test ends.

    This fixture is set up after pytest-django's database fixture, so its teardown runs
    before that one's flush: the flush (tests/db_flush.py) then does not start while a
    worker is still in the middle of the test's last generation, writing rows the
    TRUNCATE is about to lock.
    """
    yield worker_pool
    settle_workers()


def run_steps(generation: Any) -> Any:
    """Run a generation's provider call and mirror in this process (no worker)."""
    from generator import services
    from generator.models import Generation

    services.generation_call(generation_id=generation.pk)
    generation.refresh_from_db()
    if generation.step == Generation.Step.MIRROR and not generation.is_finished:
        services.generation_mirror(generation_id=generation.pk)
    # The generation's message went to the broker on commit, so a worker an earlier test
    # left running may hold either step; the claims let only one of us run it, and the
    # caller wants it finished whoever did.
    wait_for(lambda: Generation.objects.get(pk=generation.pk).is_finished, timeout=90)
    generation.refresh_from_db()
    return generation


def settle(page: Any) -> None:
    """The page has loaded with every image decoded. (Playwright's "networkidle" never
    comes while the page holds its live event stream open.)"""
    page.wait_for_load_state("load")
    page.wait_for_function(
        "() => [...document.images].every(i => i.complete"
        " || (i.loading === 'lazy' && i.getBoundingClientRect().top > innerHeight))"
    )


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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright (the system Chromium; .ci/run installs it).

    Per module, not per session: while Playwright's sync API runs, this thread has an
    event loop, and Django's test client cannot call async views (the API) from it.
    """
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
def browser_as(browser: Any, live_server: Any) -> Iterator[Callable[..., Any]]:
    """`browser_as(user, javascript=True)` opens a page signed in as `user` on the live
    server; the session cookie comes from Django's test client."""
    contexts: list[Any] = []

    def open_page(
        user: Any,
        *,
        javascript: bool = True,
        viewport: tuple[int, int] | None = None,
        color_scheme: str | None = None,
    ) -> Any:
        # A client of its own per page: logging a second user in on a shared client
        # would end the first one's session.
        from django.test import Client

        client = Client()
        client.force_login(user)
        options: dict[str, Any] = {}
        if viewport:
            options["viewport"] = {"width": viewport[0], "height": viewport[1]}
        if color_scheme:
            options["color_scheme"] = color_scheme
        context = browser.new_context(
            base_url=live_server.url,
            java_script_enabled=javascript,
            accept_downloads=True,
            **options,
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
        # Console errors too (htmx logs its failures there), except the one Chromium
        # logs for a document that answers 4xx on purpose (the 404 page).
        console: list[str] = []

        def on_console(message: Any) -> None:
            own_status = message.location.get("url") == page.url and "status of 4" in message.text
            if message.type == "error" and not own_status:
                console.append(f"{message.text} ({message.location.get('url')})")

        page.on("console", on_console)
        page.console_errors = console  # type: ignore[attr-defined]
        return page

    yield open_page
    for context in contexts:
        context.close()


# --- Chaos: a private Redis, a slow CDN, the whole node with beat ------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own, configured like docker-compose's (append-only,
    noeviction), so it can be stopped, frozen and paused without touching anyone else's."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.paused_until = 0.0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed; the chaos tests need their own Redis")
        self.proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--maxmemory-policy", "noeviction", "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self.ping, timeout=20, interval=0.05)
        return self

    def ping(self) -> bool:
        try:
            return bool(self.client(timeout=1).ping())
        except Exception:
            return False

    def client(self, timeout: float = 5) -> Any:
        import redis

        return redis.Redis(
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            single_connection_client=True,
        )

    def pause(self, milliseconds: int) -> None:
        self.client().execute_command("CLIENT", "PAUSE", milliseconds, "ALL")
        self.paused_until = time.monotonic() + milliseconds / 1000

    def wait_unpaused(self) -> None:
        # No UNPAUSE: a paused server answers nothing, not even a new connection's
        # handshake, so the pause is simply sized to outlast what the test does.
        assert time.monotonic() < self.paused_until, "the pause ended before the test did"
        wait_for(self.ping, timeout=self.paused_until - time.monotonic() + 10)

    def stop(self) -> None:
        """A clean shutdown: the append-only file keeps every queued message."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def freeze(self) -> None:
        # The TCP connections stay open and nothing answers: what a hung host looks like.
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def queue_keys(self, queue: str) -> list[bytes]:
        # One list per priority step: "<queue>" and "<queue>\x06\x16<priority>".
        client = self.client()
        return [
            key for key in client.scan_iter(f"studio-test:{queue}*") if client.type(key) == b"list"
        ]

    def queued(self, queue: str) -> int:
        client = self.client()
        return sum(int(client.llen(key)) for key in self.queue_keys(queue))

    def unacked(self) -> int:
        return int(self.client().hlen("studio-test:unacked"))


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder).start()
    yield server
    server.stop()


def celery_settings(env: dict[str, str]) -> dict[str, Any]:
    """The Celery settings a process started with `env` has (read in a fresh interpreter)."""
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({k: getattr(s, k) for k in dir(s) if k.startswith('CELERY_')},"
        " default=str))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@contextmanager
def studio_broker(env: dict[str, str]) -> Iterator[None]:
    """Point this process's Celery app (the web side: form, API) at the broker `env`
    names, with exactly the settings a studio process started with `env` would have."""
    from studio.celery import app

    loaded = celery_settings(env)
    keys = ("broker_url", "broker_transport_options", "broker_connection_timeout",
            "task_publish_retry_policy")  # fmt: skip
    saved = {key: app.conf[key] for key in keys}

    def reset_pools() -> None:
        # Dropped, not closed: kombu keeps the producer pool of each broker in a global
        # registry, and the studio's own broker's must still work afterwards.
        app._pool = None
        app.amqp._producer_pool = None

    for key in keys:
        app.conf[key] = loaded[f"CELERY_{key.upper()}"]
    # Celery reads this variable before its own setting.
    saved_env = os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = loaded["CELERY_BROKER_URL"]
    reset_pools()
    try:
        yield
    finally:
        if saved_env is None:
            del os.environ["CELERY_BROKER_URL"]
        else:
            os.environ["CELERY_BROKER_URL"] = saved_env
        reset_pools()
        app.conf.update(saved)


def pool_children(pid: int) -> list[int]:
    """The prefork pool processes of a worker's main process."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    alive = []
    for child in text.split():
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
        except FileNotFoundError:
            continue
        # A killed child stays listed as a zombie until the worker reaps it.
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            alive.append(int(child))
    return alive


class ChaosNode(Workers):
    """Both workers and beat, as docker-compose runs them, for the fault tests."""

    def start(
        self, names: tuple[str, ...] = ("worker-provider", "worker-images", "beat")
    ) -> ChaosNode:
        from studio.processes import beat_command

        workers = tuple(name for name in names if name != "beat")
        if workers:
            super().start(workers)
        if "beat" in names:
            command = beat_command(sys.executable, loglevel="INFO")
            command[-1] = str(self.logdir / "celerybeat-schedule")
            log = self.logdir / f"beat-{time.monotonic_ns()}.log"
            self.logs["beat"] = log
            self.procs["beat"] = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log.open("w"),
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            # Generous: on a machine busy with other test runs beat took over 30 s to start.
            wait_for(lambda: "Sending due task" in log.read_text(errors="replace"), timeout=120)
        return self


def chaos_env(server: OfflineProvider, redis_url: str, **overrides: str) -> dict[str, str]:
    """Short timeouts so that a lost lease, a retry and a sweep take seconds, not minutes;
    the same relations between them as in production (tests/test_settings.py)."""
    short = {
        "CELERY_BROKER_URL": redis_url,
        "AIMLAPI_READ_TIMEOUT": "5",
        "AIMLAPI_TOTAL_TIMEOUT": "6",
        "MIRROR_TIMEOUT": "6",
        "GENERATION_LEASE_SECONDS": "8",
        "GENERATION_QUEUE_GRACE_SECONDS": "2",
        "GENERATION_SWEEP_INTERVAL": "1",
        "CELERY_VISIBILITY_TIMEOUT": "20",
        "CELERY_TASK_SOFT_TIME_LIMIT": "10",
        "CELERY_TASK_TIME_LIMIT": "12",
        "WORKER_PROVIDER_CONCURRENCY": "4",
    }
    return worker_env(server, **{**short, **overrides})


class SlowCdn:
    """A reverse proxy in front of the offline provider. The provider names its image
    URLs after the Host it was called on, so calling it through here routes the
    mirror's downloads here too, where they can be held for `delay` seconds."""

    def __init__(self, upstream: OfflineProvider) -> None:
        self.upstream = upstream.base_url.split("/v1")[0]
        self.delay = 0.0
        self.downloads = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def forward(self) -> None:
                import requests

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/files/"):
                    proxy.downloads += 1
                    time.sleep(proxy.delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "content-length"}
                answer = requests.request(
                    self.command, proxy.upstream + self.path, headers=headers, data=body,
                    timeout=60, stream=True,
                )  # fmt: skip
                content = answer.raw.read()
                self.send_response(answer.status_code)
                for name in ("Content-Type", "Retry-After"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = forward

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def slow_cdn(provider: OfflineProvider) -> Iterator[SlowCdn]:
    proxy = SlowCdn(provider)
    yield proxy
    proxy.stop()
