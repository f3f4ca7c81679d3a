"""The offline provider over real HTTP: auth, validation, shapes, files, failures, and
its command line (`python -m offline_provider`) as a separate process.

No database: the server is plain standard library, started in a thread per test.
"""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

import offline_provider.__main__ as offline_provider_cli
from offline_provider import ULTRA_SIZES, OfflineProvider, render_image

AUTH = {"Authorization": "Bearer test-key"}
TREX = (
    "A T-Rex relaxing on a beach, lying on a sun lounger and wearing sunglasses. "
    "The ocean is visible in the background."
)
REALISM = {"model": "flux-realism", "prompt": TREX, "image_size": {"width": 1472, "height": 512}}
PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def provider() -> Iterator[OfflineProvider]:
    server = OfflineProvider().start()
    yield server
    server.stop()


def generate(
    provider: OfflineProvider, body: Any, headers: dict[str, str] | None = None, **kwargs: Any
) -> requests.Response:
    return requests.post(
        f"{provider.base_url}/images/generations",
        json=body,
        headers=AUTH if headers is None else headers,
        timeout=kwargs.pop("timeout", 30),
        **kwargs,
    )


def download(url: str) -> requests.Response:
    return requests.get(url, timeout=30)


def assert_flat_error(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"message", "path", "requestId", "statusCode", "timestamp"}
    assert body["statusCode"] == status
    assert body["path"] == "/v1/images/generations"
    uuid.UUID(body["requestId"])
    assert body["timestamp"].endswith("Z")
    datetime.fromisoformat(body["timestamp"])
    return body


def test_it_rejects_a_request_without_a_key(provider: OfflineProvider) -> None:
    response = generate(provider, REALISM, headers={})

    body = assert_flat_error(response, 401)
    assert body["message"].startswith("This request requires a valid API key.")


def test_it_rejects_an_empty_bearer_token(provider: OfflineProvider) -> None:
    assert_flat_error(generate(provider, REALISM, headers={"Authorization": "Bearer "}), 401)


def test_it_rejects_a_wrong_key_when_one_is_configured(provider: OfflineProvider) -> None:
    provider.api_key = "right"

    assert_flat_error(generate(provider, REALISM, headers={"Authorization": "Bearer wrong"}), 401)
    assert generate(provider, REALISM, headers={"Authorization": "Bearer right"}).ok


def test_flux_realism_doc_example_answers_shape_a_with_a_real_jpeg(
    provider: OfflineProvider,
) -> None:
    response = generate(provider, REALISM)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"images", "timings", "seed", "has_nsfw_concepts", "prompt"}
    assert body["prompt"] == TREX
    assert body["has_nsfw_concepts"] == [False]
    assert isinstance(body["timings"]["inference"], float)
    [image] = body["images"]
    assert image["width"] == 1472
    assert image["height"] == 512
    assert image["content_type"] == "image/jpeg"
    assert image["url"].startswith(f"{provider.origin}/files/")
    assert image["url"].endswith(".jpg")

    file = download(image["url"])
    assert file.status_code == 200
    assert file.headers["Content-Type"] == "image/jpeg"
    assert int(file.headers["Content-Length"]) == len(file.content)
    with Image.open(io.BytesIO(file.content)) as img:
        assert img.format == "JPEG"
        assert img.size == (1472, 512)


def test_it_accepts_a_trailing_slash(provider: OfflineProvider) -> None:
    response = requests.post(
        f"{provider.base_url}/images/generations/", json=REALISM, headers=AUTH, timeout=30
    )

    assert response.status_code == 200


def test_a_given_seed_is_returned_and_renders_identical_bytes(provider: OfflineProvider) -> None:
    first = generate(provider, {**REALISM, "seed": 1234}).json()
    second = generate(provider, {**REALISM, "seed": 1234}).json()
    other = generate(provider, {**REALISM, "seed": 1235}).json()

    assert first["seed"] == second["seed"] == 1234
    same = download(first["images"][0]["url"]).content
    assert same == download(second["images"][0]["url"]).content
    assert same != download(other["images"][0]["url"]).content


def test_without_a_seed_it_picks_a_random_one_in_range(provider: OfflineProvider) -> None:
    seeds = {generate(provider, REALISM).json()["seed"] for _ in range(3)}

    assert all(isinstance(s, int) and 1 <= s <= 2**32 - 1 for s in seeds)
    assert len(seeds) > 1


def test_each_of_num_images_gets_its_own_seed(provider: OfflineProvider) -> None:
    body = generate(provider, {**REALISM, "seed": 7, "num_images": 2}).json()
    single = generate(provider, {**REALISM, "seed": 8}).json()

    assert len(body["images"]) == 2
    assert body["has_nsfw_concepts"] == [False, False]
    second = download(body["images"][1]["url"]).content
    assert second == download(single["images"][0]["url"]).content


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"image_size": {"width": 480, "height": 512}}, "image_size.width: Number must be greater"),
        ({"image_size": {"width": 1600, "height": 512}}, "image_size.width: Number must be less"),
        ({"image_size": {"width": 1000, "height": 512}}, "image_size.width: Number must be a mult"),
        ({"image_size": "huge"}, "image_size: Invalid enum value"),
        ({"guidance_scale": 21}, "guidance_scale: Number must be less than or equal to 20"),
        ({"num_inference_steps": 0}, "num_inference_steps: Number must be greater"),
        ({"num_inference_steps": 2.5}, "num_inference_steps: Expected integer, received float"),
        ({"num_images": 5}, "num_images: Number must be less than or equal to 4"),
        ({"seed": 0}, "seed: Number must be greater than or equal to 1"),
        ({"prompt": "x" * 4001}, "prompt: String must contain at most 4000 character(s)"),
        ({"model": "flux-ultimate"}, "model: Invalid enum value"),
        (
            {"output_format": "gif"},
            "output_format: Invalid enum value. Expected 'jpeg' | 'png', received 'gif'",
        ),
        ({"enable_safety_checker": "true"}, "enable_safety_checker: Expected boolean"),
        ({"steps": 20}, "Unrecognized key(s) in object: 'steps'"),
        ({"aspect_ratio": "16:9"}, "Unrecognized key(s) in object: 'aspect_ratio'"),
    ],
)
def test_invalid_bodies_get_a_400_naming_the_field(
    provider: OfflineProvider, change: dict[str, Any], expected: str
) -> None:
    response = generate(provider, {**REALISM, **change})

    body = assert_flat_error(response, 400)
    assert body["message"].startswith("Body validation error! ")
    assert expected in body["message"]


def test_limits_differ_per_model(provider: OfflineProvider) -> None:
    imagen = generate(provider, {"model": "imagen-3.0-generate-002", "prompt": "x" * 401})
    dalle = generate(provider, {"model": "dall-e-2", "prompt": "x" * 1001})
    schnell = generate(
        provider,
        {"model": "flux/schnell", "prompt": "x", "image_size": {"width": 64, "height": 64}},
    )

    assert "prompt: String must contain at most 400 " in imagen.json()["message"]
    assert "prompt: String must contain at most 1000 " in dalle.json()["message"]
    assert schnell.status_code == 200


def test_a_body_that_is_not_json_gets_a_400(provider: OfflineProvider) -> None:
    response = requests.post(
        f"{provider.base_url}/images/generations", data=b"model=flux", headers=AUTH, timeout=30
    )

    assert_flat_error(response, 400)
    assert provider.calls[-1]["body"] is None


def test_an_nsfw_word_sets_has_nsfw_concepts(provider: OfflineProvider) -> None:
    flagged = generate(provider, {**REALISM, "prompt": "A NUDE statue", "num_images": 2})
    substring = generate(provider, {**REALISM, "prompt": "the tree was denuded"})

    assert flagged.json()["has_nsfw_concepts"] == [True, True]
    assert substring.json()["has_nsfw_concepts"] == [False]


def test_a_queued_500_fails_once_then_it_succeeds(provider: OfflineProvider) -> None:
    provider.fail_next(500)

    failed = generate(provider, REALISM)
    succeeded = generate(provider, REALISM)

    assert assert_flat_error(failed, 500)["message"] == "Internal server error"
    assert succeeded.status_code == 200
    assert provider.generation_calls() == 2
    assert [c["status"] for c in provider.calls] == [500, 200]


def test_a_queued_429_carries_retry_after(provider: OfflineProvider) -> None:
    provider.fail_next(429, retry_after="3")

    response = generate(provider, REALISM)

    assert assert_flat_error(response, 429)["message"] == "Too Many Requests"
    assert response.headers["Retry-After"] == "3"


def test_a_wrong_key_stays_401_while_failures_are_queued(provider: OfflineProvider) -> None:
    provider.fail_next(503)

    assert_flat_error(generate(provider, REALISM, headers={}), 401)
    assert_flat_error(generate(provider, REALISM), 503)


def test_timeout_mode_hangs_past_the_client_read_timeout(provider: OfflineProvider) -> None:
    provider.hang_seconds = 6
    provider.fail_next("timeout")

    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        generate(provider, REALISM, timeout=(5, 0.3))

    assert time.monotonic() - started < 4  # the client gave up, the server still hangs
    assert provider.generation_calls() == 1
    assert generate(provider, REALISM).status_code == 200


def test_disconnect_mode_closes_without_an_answer(provider: OfflineProvider) -> None:
    provider.fail_next("disconnect")

    with pytest.raises(requests.ConnectionError):
        generate(provider, REALISM)

    assert provider.calls[0]["status"] is None
    assert generate(provider, REALISM).status_code == 200


def test_fail_rate_answers_the_configured_status() -> None:
    with OfflineProvider(fail_rate=1.0, fail_status=503) as server:
        assert_flat_error(generate(server, REALISM), 503)


def test_expired_file_urls_answer_404(provider: OfflineProvider) -> None:
    url = generate(provider, REALISM).json()["images"][0]["url"]
    assert download(url).status_code == 200

    provider.url_ttl = 0.2
    time.sleep(0.3)

    assert download(url).status_code == 404


def test_unknown_file_tokens_answer_404(provider: OfflineProvider) -> None:
    assert download(f"{provider.origin}/files/nonsense.jpg").status_code == 404
    assert download(f"{provider.origin}/files/").status_code == 404


def test_files_survive_a_restart_on_the_same_port() -> None:
    first = OfflineProvider().start()
    port = first.port
    url = generate(first, {**REALISM, "seed": 99}).json()["images"][0]["url"]
    original = download(url).content
    first.stop()

    with OfflineProvider(port=port):
        assert download(url).content == original


def test_stop_frees_the_port() -> None:
    server = OfflineProvider().start()
    port = server.port
    server.stop()

    # Binding the same port again succeeds only if stop() released it.
    with socket.create_server(("127.0.0.1", port)) as again:
        assert again.getsockname()[1] == port


def test_cdn_requests_record_what_clients_send(provider: OfflineProvider) -> None:
    url = generate(provider, REALISM).json()["images"][0]["url"]
    download(url)

    [request] = provider.cdn_requests
    assert request["path"].startswith("/files/")
    assert "Authorization" not in request["headers"]
    assert "Authorization" in provider.calls[0]["headers"]
    assert provider.calls[0]["body"] == REALISM


def test_success_status_can_be_201(provider: OfflineProvider) -> None:
    provider.success_status = 201

    assert generate(provider, REALISM).status_code == 201


def test_recraft_answers_the_fal_file_shape(provider: OfflineProvider) -> None:
    body = generate(provider, {"model": "recraft-v3", "prompt": "a lighthouse"}).json()

    assert set(body) == {"images"}
    [image] = body["images"]
    assert image["content_type"] == "image/webp"
    assert image["file_name"].endswith(".webp")
    file = download(image["url"])
    assert len(file.content) == image["file_size"]
    with Image.open(io.BytesIO(file.content)) as img:
        assert (img.format, img.size) == ("WEBP", (1024, 1024))


def test_imagen4_alias_answers_the_file_shape_with_a_seed(provider: OfflineProvider) -> None:
    body = generate(
        provider, {"model": "imagen4/preview", "prompt": "a fox", "seed": 0, "aspect_ratio": "16:9"}
    ).json()

    assert body["seed"] == 0
    with Image.open(io.BytesIO(download(body["images"][0]["url"]).content)) as img:
        assert (img.format, img.size) == ("PNG", (1024, 576))


def test_imagen3_answers_shape_c_with_an_enhanced_prompt(provider: OfflineProvider) -> None:
    body = generate(
        provider, {"model": "imagen-3.0-generate-002", "prompt": "a fox", "num_images": 2}
    ).json()

    assert set(body) == {"data"}
    assert len(body["data"]) == 2
    item = body["data"][0]
    assert item["mime_type"] == "image/png"
    assert item["prompt"].startswith("a fox") and item["prompt"] != "a fox"
    assert download(item["url"]).headers["Content-Type"] == "image/png"


def test_dalle3_answers_shape_d_with_b64_json(provider: OfflineProvider) -> None:
    body = generate(
        provider,
        {
            "model": "dall-e-3",
            "prompt": "a fox",
            "size": "1792x1024",
            "response_format": "b64_json",
        },
    ).json()

    assert isinstance(body["created"], int)
    [item] = body["data"]
    assert "url" not in item
    assert item["revised_prompt"]
    with Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))) as img:
        assert (img.format, img.size) == ("PNG", (1792, 1024))


def test_shape_b_can_be_forced_for_any_model(provider: OfflineProvider) -> None:
    provider.shape = "b"

    body = generate(provider, {**REALISM, "num_images": 2}).json()

    assert set(body) == {"data", "meta"}
    assert len(body["data"]) == 2
    assert body["data"][0]["b64_json"] is None
    assert body["meta"]["usage"]["credits_used"] > 0
    assert download(body["data"][0]["url"]).status_code == 200


def test_ultra_sizes_follow_the_aspect_ratio(provider: OfflineProvider) -> None:
    default = generate(provider, {"model": "flux-pro/v1.1-ultra", "prompt": "a fox"}).json()

    assert (default["images"][0]["width"], default["images"][0]["height"]) == (2752, 1536)
    for width, height in ULTRA_SIZES.values():
        assert width % 32 == 0 and height % 32 == 0
        assert 4.0e6 < width * height < 4.5e6


def test_image_to_image_takes_the_size_of_a_data_uri(provider: OfflineProvider) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), "red").save(buffer, "PNG")
    data_uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    base = {"model": "flux/dev/image-to-image", "prompt": "make it blue"}

    inline = generate(provider, {**base, "image_url": data_uri}).json()
    remote = generate(provider, {**base, "image_url": "https://example.com/cat.png"}).json()
    missing = generate(provider, base)

    assert (inline["images"][0]["width"], inline["images"][0]["height"]) == (640, 480)
    assert (remote["images"][0]["width"], remote["images"][0]["height"]) == (1024, 768)
    assert "image_url: Required" in missing.json()["message"]


def test_renders_have_realistic_sizes() -> None:
    big = render_image("flux/dev", "speed", "d", 1, 1536, 1536, "png")
    photo = render_image("flux-realism", TREX, "e", 1, 1024, 768, "jpeg")

    assert big.startswith(b"\x89PNG")
    assert 100_000 < len(photo) < 500_000


def test_forty_concurrent_requests_overlap(provider: OfflineProvider) -> None:
    provider.latency = 3.0

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(lambda _: generate(provider, REALISM).status_code, range(40)))

    assert statuses == [200] * 40
    assert provider.generation_calls() == 40
    assert provider.max_in_flight == 40  # all were generating at once, none queued behind


def test_control_endpoints_script_a_separate_process(provider: OfflineProvider) -> None:
    control = f"{provider.origin}/_control"
    queued = requests.post(f"{control}/fail", json={"status": 502, "times": 2}, timeout=10)

    assert queued.status_code == 200
    assert generate(provider, REALISM).status_code == 502
    assert generate(provider, REALISM).status_code == 502
    assert generate(provider, REALISM).status_code == 200
    stats = requests.get(f"{control}/stats", timeout=10).json()
    assert stats == {"generation_calls": 3, "cdn_requests": 0, "in_flight": 0, "max_in_flight": 1}

    requests.post(f"{control}/fail", json={"status": 500}, timeout=10)
    requests.post(f"{control}/reset", timeout=10)
    assert requests.get(f"{control}/stats", timeout=10).json()["generation_calls"] == 0
    assert generate(provider, REALISM).status_code == 200
    assert requests.post(f"{control}/fail", json={"status": "x"}, timeout=10).status_code == 400


def test_models_lists_the_model_ids(provider: OfflineProvider) -> None:
    ids = {m["id"] for m in requests.get(f"{provider.base_url}/models", timeout=10).json()["data"]}

    assert {"flux-realism", "recraft-v3", "dall-e-3"} <= ids
    assert len(ids) == 14


def _read_line(stream: Any, timeout: float) -> str:
    # A reader thread, so a command that never prints fails the test instead of hanging it.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


@contextmanager
def command_line(*flags: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`python -m offline_provider --port 0 *flags` from the repository root, as runstudio
    and the benchmarks start it; yields the process and the base URL it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "offline_provider", "--port", "0", *flags],
        cwd=PROJECT_DIR,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _read_line(process.stdout, timeout=60)
        # The format runstudio and the benchmarks parse: the URL is the last word.
        match = re.fullmatch(
            r"offline provider listening on (http://127\.0\.0\.1:(\d+)/v1)\n", line
        )
        assert match, line
        assert int(match.group(2)) > 0
        yield process, match.group(1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_python_m_offline_provider_serves_until_sigterm() -> None:
    with command_line("--key", "k") as (process, base_url):
        response = requests.post(
            f"{base_url}/images/generations",
            json=REALISM,
            headers={"Authorization": "Bearer k"},
            timeout=30,
        )
        assert response.status_code == 200
        image = download(response.json()["images"][0]["url"])
        assert image.status_code == 200
        assert Image.open(io.BytesIO(image.content)).format == "JPEG"

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    stdout, stderr = process.communicate()
    assert stdout == "offline provider stopped\n"
    # One access-log line per request, on stderr only.
    assert "POST /v1/images/generations" in stderr
    assert "Traceback" not in stderr


def test_the_command_line_flags_reach_the_server() -> None:
    flags = ("--key", "k", "--status", "201", "--nsfw-words", "lounger, ", "--latency", "0.2")
    with command_line(*flags) as (process, base_url):
        response = requests.post(
            f"{base_url}/images/generations",
            json=REALISM,
            headers={"Authorization": "Bearer k"},
            timeout=30,
        )
        wrong_key = requests.post(
            f"{base_url}/images/generations",
            json=REALISM,
            headers={"Authorization": "Bearer other"},
            timeout=30,
        )
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0

    assert response.status_code == 201
    assert response.json()["has_nsfw_concepts"] == [True]
    assert response.json()["timings"]["inference"] >= 0.2
    assert wrong_key.status_code == 401


def test_the_command_line_injects_failures_at_the_given_rate() -> None:
    with command_line("--fail-rate", "1", "--fail-status", "503") as (process, base_url):
        response = requests.post(
            f"{base_url}/images/generations", json=REALISM, headers=AUTH, timeout=30
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0

    assert assert_flat_error(response, 503)["message"] == "Service unavailable"


@pytest.mark.parametrize(
    "flags", [["--fail-rate", "1.5"], ["--status", "202"], ["--latency", "soon"]]
)
def test_the_command_line_refuses_bad_values(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        offline_provider_cli.main(flags)

    assert exit_info.value.code == 2
    assert flags[0] in capsys.readouterr().err


def test_the_command_line_reports_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert offline_provider_cli.main(["--port", str(port)]) == 1

    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_importing_the_package_loads_no_django() -> None:
    # It must run where the studio's settings and apps are not installed.
    script = (
        "import sys, offline_provider, offline_provider.__main__; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert result.stdout == "[]\n"


# --- What a call cost, and the client's request id ---------------------------------------


def test_one_image_with_seed_s_plus_i_is_image_i_of_a_batch_from_s(
    provider: OfflineProvider,
) -> None:
    batch = generate(provider, {**REALISM, "seed": 40, "num_images": 4}).json()
    # The batch answers with the seed it was asked for, as the real API does.
    assert batch["seed"] == 40
    for i, image in enumerate(batch["images"]):
        alone = generate(provider, {**REALISM, "seed": 40 + i}).json()
        assert alone["seed"] == 40 + i
        assert download(alone["images"][0]["url"]).content == download(image["url"]).content


def test_every_answer_says_what_it_cost_from_the_price_table(provider: OfflineProvider) -> None:
    one = generate(provider, REALISM)
    four = generate(provider, {**REALISM, "num_images": 4})
    schnell = generate(provider, {"model": "flux/schnell", "prompt": "a fox"})

    assert one.headers["x-aimlapi-usd-spent"] == "0.0368"
    assert four.headers["x-aimlapi-usd-spent"] == "0.1472"
    assert schnell.headers["x-aimlapi-usd-spent"] == "0.003"
    assert one.headers["x-aimlapi-credits-used"] == "2100"
    assert four.headers["x-aimlapi-credits-used"] == "8400"


def test_a_price_override_sets_the_figure_and_reset_restores_the_table(
    provider: OfflineProvider,
) -> None:
    provider.prices["flux-realism"] = "0.0421"
    assert generate(provider, REALISM).headers["x-aimlapi-usd-spent"] == "0.0421"
    provider.reset()
    assert generate(provider, REALISM).headers["x-aimlapi-usd-spent"] == "0.0368"


def test_the_client_request_id_is_echoed_on_answers_and_errors(provider: OfflineProvider) -> None:
    headers = {**AUTH, "X-Client-Request-Id": "9f0c-3"}
    answer = generate(provider, REALISM, headers=headers)
    provider.fail_next(503)
    failed = generate(provider, REALISM, headers=headers)
    plain = generate(provider, REALISM)

    assert answer.headers["X-Client-Request-Id"] == "9f0c-3"
    assert failed.status_code == 503 and failed.headers["X-Client-Request-Id"] == "9f0c-3"
    assert "x-aimlapi-usd-spent" not in failed.headers  # a refusal costs nothing
    assert "X-Client-Request-Id" not in plain.headers
    assert provider.calls[0]["headers"]["X-Client-Request-Id"] == "9f0c-3"


def test_the_command_line_takes_prices_and_its_help_says_what_it_reports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with command_line("--price", "flux-realism=0.05") as (process, base_url):
        response = requests.post(
            f"{base_url}/images/generations", json=REALISM, headers=AUTH, timeout=30
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert response.headers["x-aimlapi-usd-spent"] == "0.05"

    with pytest.raises(SystemExit):
        offline_provider_cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "x-aimlapi-usd-spent" in text and "x-aimlapi-credits-used" in text
    assert "X-Client-Request-Id" in text and "--price MODEL=USD" in text


@pytest.mark.parametrize("value", ["flux-realism", "nope=0.1", "flux-realism=-1", "flux-realism=x"])
def test_the_command_line_refuses_bad_prices(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        offline_provider_cli.main(["--price", value])
    assert exit_info.value.code == 2
    assert "--price" in capsys.readouterr().err
