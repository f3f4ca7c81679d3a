"""The web server as `make run` and the image start it (gunicorn's ASGI worker): a client
that hangs up before its answer is logged as 499, not as a server error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from accounts.tokens import api_token_create
from studio.processes import web_command
from studio.serverlog import client_hung_up, track_disconnects
from tests.conftest import ROOT, free_port, purge_queues, wait_for, worker_env


class WebServer:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        argv = web_command(sys.executable, bind=f"127.0.0.1:{self.port}", workers=1)
        # Its control socket is one per machine by default; the tests' server needs none.
        self.proc = subprocess.Popen(
            [*argv, "--no-control-socket"],
            cwd=ROOT,
            env=env,
            stdout=log.open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, self.log.read_text()[-4000:]
            try:
                return requests.get(self.base + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, timeout=60, interval=0.3)

    def access_lines(self, path: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if f" {path} HTTP/1.1" in line]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def web(
    offline_provider_server, django_db_setup, django_db_blocker, tmp_path_factory
) -> Iterator[WebServer]:
    # No workers: a generation stays queued, so the API call waits as long as it may.
    with django_db_blocker.unblock():
        env = worker_env(offline_provider_server, API_WAIT_TIMEOUT="60")
    server = WebServer(env, tmp_path_factory.mktemp("web") / "web.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        purge_queues()  # the queued generation's message must reach no later worker


@pytest.mark.django_db(transaction=True)
def test_a_client_that_hangs_up_during_a_long_wait_is_logged_as_499(web, owner, provider):
    # Workers other tests started may still run: a slow provider keeps the wait long.
    provider.latency = 15.0
    token = api_token_create(user=owner, name="script")[1]
    body = json.dumps({"model": "flux-realism", "prompt": "an impatient script"}).encode()
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        # The request is in: the generation exists and the API is waiting for it.
        wait_for(lambda: owner.generations.exists(), timeout=20)
        time.sleep(0.5)
    # Interrupted mid-wait: the socket is closed with no answer read.

    lines = wait_for(lambda: web.access_lines("/v1/images/generations"), timeout=20)
    assert len(lines) == 1 and '" 499 0 ' in lines[0], lines
    log = web.log.read_text()
    assert '" 500 ' not in log and "Traceback" not in log, log[-4000:]
    web.log.write_text("")  # the next test reads only its own lines
    web.log.write_text("")  # the next test reads only its own lines


@pytest.mark.django_db(transaction=True)
def test_an_answered_request_keeps_its_status_in_the_log(web, owner):
    token = api_token_create(user=owner, name="script")[1]
    response = requests.get(
        web.base + "/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200
    refused = requests.get(web.base + "/v1/models", timeout=10)
    assert refused.status_code == 401
    lines = wait_for(
        lambda: len(web.access_lines("/v1/models")) == 2 and web.access_lines("/v1/models")
    )
    assert '" 200 ' in lines[0] and '" 401 ' in lines[1], lines


def run_wrapped(app_body, message: dict) -> bool:
    """Run an ASGI application under track_disconnects as gunicorn does (the access log
    is read in the same task) and say whether it would be logged as a hang-up."""

    async def receive() -> dict:
        return message

    async def call() -> bool:
        with contextlib.suppress(RuntimeError):
            await track_disconnects(app_body)({"type": "http"}, receive, None)
        return client_hung_up(0)

    return asyncio.run(call())


def test_a_failure_stays_a_server_error_though_the_client_left():
    async def left(scope, receive, send):
        await receive()

    async def crashed(scope, receive, send):
        await receive()
        raise RuntimeError("a bug")

    assert run_wrapped(left, {"type": "http.disconnect"}) is True
    assert run_wrapped(crashed, {"type": "http.disconnect"}) is False
    assert run_wrapped(left, {"type": "http.request", "body": b""}) is False
