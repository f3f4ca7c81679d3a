"""`make run` as a new user meets it: no key, no services, one command."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from offline_provider import OfflineProvider
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.worker

PASSWORD = "a long enough pass 42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Studio:
    def __init__(self, data_dir: Path, extra_env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "DATABASE_", "CELERY_", "AIMLAPI_", "MIRROR_"))
        }
        env.update(DATA_DIR=str(data_dir), PORT=str(self.port), OFFLINE_PROVIDER_LATENCY="0.5")
        env.update(extra_env)
        self.env = env
        self.data_dir = data_dir
        self.log = data_dir / "make-run.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.session = requests.Session()

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            assert self.proc.poll() is None, self.log.read_text()[-4000:]
            try:
                return requests.get(self.base + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:  # not listening yet, or still booting
                return False

        wait_for(healthy, timeout=120, interval=0.5)

    def wait_serving(self) -> None:
        """Until make run says it serves; by then /healthz must answer at once."""

        def said() -> bool:
            assert self.proc.poll() is None, self.log.read_text()[-4000:]
            return "serving on" in self.log.read_text()

        wait_for(said, timeout=180, interval=0.3)
        assert requests.get(self.base + "/healthz", timeout=5).status_code == 200

    def csrf(self, path: str) -> str:
        page = self.session.get(self.base + path)
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)

    def sign_up(self) -> requests.Response:
        return self.session.post(
            self.base + "/accounts/signup/",
            {
                "csrfmiddlewaretoken": self.csrf("/accounts/signup/"),
                "username": "first",
                "password1": PASSWORD,
                "password2": PASSWORD,
            },
        )

    def generate(self, **fields: str) -> str:
        response = self.session.post(
            self.base + "/",
            {
                "csrfmiddlewaretoken": self.csrf("/"),
                "model": "flux-realism",
                "prompt": "a lighthouse at dusk",
                "image_size": "square",
                "output_format": "png",
                "enable_safety_checker": "on",
                **fields,
            },
            allow_redirects=False,
        )
        assert response.status_code == 303, response.text[:3000]
        detail = self.base + response.headers["Location"]

        def done() -> str | None:
            text = self.session.get(detail).text
            return text if ("badge-succeeded" in text or "badge-failed" in text) else None

        return wait_for(done, timeout=90, interval=0.5)

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise


@pytest.fixture
def studio_factory(tmp_path: Path) -> Iterator:
    started: list[Studio] = []

    def start(**env: str) -> Studio:
        studio = Studio(tmp_path / f"data{len(started)}", env)
        started.append(studio)
        return studio

    yield start
    for studio in started:
        if studio.proc.poll() is None:
            studio.stop()


def test_make_run_serves_the_studio_with_the_offline_provider(studio_factory):
    studio = studio_factory()
    studio.wait_serving()
    assert "Offline demo provider" in studio.session.get(studio.base + "/accounts/login/").text

    assert "New image" in studio.sign_up().text
    page = studio.generate()
    assert "badge-succeeded" in page, page[-3000:]
    assert "Offline demo provider" in page
    image = re.search(r'<img src="(/media/generations/[^"]+\.png)"', page).group(1)
    response = studio.session.get(studio.base + image)
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")

    # The API through the same served stack (ASGI), with a token made by the command.
    token = subprocess.run(
        [sys.executable, "manage.py", "create_api_token", "first", "--name", "script"],
        cwd=ROOT, env=studio.env, capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    answer = requests.post(
        studio.base + "/v1/images/generations",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "model": "flux-realism",
            "prompt": "a T-Rex",
            "image_size": {"width": 1472, "height": 512},
        },
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    image = answer.json()["images"][0]
    assert (image["width"], image["height"]) == (1472, 512)
    fetched = requests.get(image["url"], headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert fetched.status_code == 200 and fetched.headers["Content-Type"] == "image/jpeg"

    started = time.monotonic()
    # Ctrl-C reaches make too, which then reports the interrupt as its exit status.
    assert studio.stop() in (0, -signal.SIGINT, 130), studio.log.read_text()[-3000:]
    assert time.monotonic() - started < 40
    with pytest.raises(requests.ConnectionError):
        requests.get(studio.base + "/healthz", timeout=2)
    # The terminal: one line per process, "serving on" (naming the log) once, "stopped".
    # (make itself may add that it was interrupted.)
    lines = [line for line in studio.log.read_text().splitlines() if not line.startswith("make")]
    logfile = studio.data_dir / "logs" / "studio.log"
    names = ["offline-provider", "worker-provider", "worker-images", "beat", "web"]
    assert [line.split(" started ")[0] for line in lines[: len(names)]] == [
        f"studio: {name}" for name in names
    ], lines
    assert "the offline demo provider at http://127.0.0.1:" in lines[0]
    assert lines[len(names)] == (
        f"studio: serving on {studio.base}/ (Ctrl-C to stop; logs in {logfile})"
    )
    assert lines[len(names) + 1 :] == ["studio: stopped"], lines
    # Everything else is in the log, line by line under each process's name: Celery's
    # banners and warnings, gunicorn's and the access log, the provider's last word.
    log = logfile.read_text()
    for expected in (
        "worker-provider | ",
        "worker-images | ",
        " ready.",
        "beat | celery beat v",
        "web | ",
        '"GET /healthz HTTP/1.1" 200',
        "offline-provider | offline provider stopped",
    ):
        assert expected in log, expected


def test_make_run_with_a_key_uses_the_configured_provider(studio_factory):
    """Configuration alone points the studio at any AI/ML-API-compatible server."""
    upstream = OfflineProvider(api_key="a-real-looking-key").start()
    try:
        # Only the two names: the provider's own origin is trusted for its images.
        studio = studio_factory(
            AIMLAPI_KEY="a-real-looking-key", AIMLAPI_BASE_URL=upstream.base_url
        )
        studio.wait_healthy()
        assert (
            "Offline demo provider" not in studio.session.get(studio.base + "/accounts/login/").text
        )
        studio.sign_up()
        page = studio.generate(seed="77")
        assert "badge-succeeded" in page, page[-3000:]
        assert '<dd id="generation-seed">77</dd>' in page
        assert upstream.generation_calls() == 1
        assert upstream.calls[0]["headers"]["Authorization"] == "Bearer a-real-looking-key"
        studio.stop()
        output = studio.log.read_text()
        assert "offline" not in output and "serving on" in output
    finally:
        upstream.stop()
