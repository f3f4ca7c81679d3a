"""Configuration: helpers that fail loudly, reliability invariants, and the files that
spell the same names (.env.example, docker-compose.yml, .ci/run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import ImproperlyConfigured

from studio import settings as studio_settings
from studio.settings import database_from_url, envbool, envint, envlist, envsecret

ROOT = Path(__file__).resolve().parents[2]
ISSUE_NAMES = {
    "DATA_DIR", "DATABASE_URL", "CELERY_BROKER_URL", "AIMLAPI_KEY", "AIMLAPI_BASE_URL",
    "MIRROR_ALLOWED_HOSTS", "MIRROR_ALLOW_PRIVATE_ADDRESSES", "SECRET_KEY", "DEBUG",
    "ALLOWED_HOSTS", "PORT",
}  # fmt: skip


def env_names_read_by_settings() -> set[str]:
    source = (ROOT / "studio" / "settings.py").read_text()
    return set(re.findall(r'env(?:str|bool|int|float|list|secret)\(\s*"([A-Z0-9_]+)"', source))


def test_every_setting_read_from_the_environment_is_in_env_example():
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.M))
    read = env_names_read_by_settings()
    assert ISSUE_NAMES <= read
    assert read <= listed, read - listed
    assert ISSUE_NAMES <= set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, re.M))


@pytest.mark.parametrize("value", ["maybe", "2", "yes please"])
def test_envbool_rejects_garbage(monkeypatch, value):
    monkeypatch.setenv("SOME_FLAG", value)
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG"):
        envbool("SOME_FLAG", False)


def test_env_helpers_parse_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("A_FLAG", "TRUE")
    assert envbool("A_FLAG", False) is True
    assert envbool("UNSET_FLAG", True) is True
    monkeypatch.setenv("AN_INT", "12")
    assert envint("AN_INT", 3) == 12
    monkeypatch.setenv("AN_INT", "twelve")
    with pytest.raises(ImproperlyConfigured, match="AN_INT"):
        envint("AN_INT", 3)
    monkeypatch.setenv("AN_INT", "0")
    with pytest.raises(ImproperlyConfigured):
        envint("AN_INT", 3, minimum=1)
    monkeypatch.setenv("A_LIST", " a.example , .b.example ,,")
    assert envlist("A_LIST", []) == ["a.example", ".b.example"]
    secret = tmp_path / "key"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("A_SECRET_FILE", str(secret))
    assert envsecret("A_SECRET") == "from-a-file"
    monkeypatch.setenv("A_SECRET", "also-set")
    with pytest.raises(ImproperlyConfigured):
        envsecret("A_SECRET")


def test_database_url_forms(tmp_path):
    pg = database_from_url("postgres://me:p%40ss@db.internal:5433/studio?sslmode=require", tmp_path)
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == (
        "studio", "me", "p@ss", "db.internal", "5433"
    )  # fmt: skip
    assert pg["OPTIONS"]["sslmode"] == "require"
    assert database_from_url("", tmp_path)["NAME"] == tmp_path / "studio.sqlite3"
    assert database_from_url("sqlite:////srv/x.db", tmp_path)["NAME"] == "/srv/x.db"
    with pytest.raises(ImproperlyConfigured):
        database_from_url("mysql://x/y", tmp_path)
    with pytest.raises(ImproperlyConfigured):
        database_from_url("postgres://host/", tmp_path)


def load_production_settings(extra: dict[str, str]) -> dict[str, object]:
    """Import studio.settings in a clean interpreter with only `extra` set."""
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
    env.update(extra)
    code = (
        "import json, studio.settings as s; print(json.dumps({k: getattr(s, k) for k in dir(s)"
        " if k.isupper()}, default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode:
        raise ImproperlyConfigured(result.stderr.strip().splitlines()[-1])
    import json

    return json.loads(result.stdout)


def test_production_defaults_are_safe(tmp_path):
    values = load_production_settings({"DATA_DIR": str(tmp_path)})
    assert values["MIRROR_ALLOW_PRIVATE_ADDRESSES"] is False
    assert values["MIRROR_ALLOWED_HOSTS"] and "127.0.0.1" not in values["MIRROR_ALLOWED_HOSTS"]
    assert "cdn.aimlapi.com" in values["MIRROR_ALLOWED_HOSTS"]
    assert values["AIMLAPI_BASE_URL"] == "https://api.aimlapi.com/v1"
    assert values["DEBUG"] is False
    assert values["CELERY_BROKER_URL"] == "filesystem://"
    assert values["PORT"] == 8000


def test_bad_values_stop_the_process(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="DEBUG"):
        load_production_settings({"DATA_DIR": str(tmp_path), "DEBUG": "sometimes"})
    with pytest.raises(ImproperlyConfigured, match="AIMLAPI_BASE_URL"):
        load_production_settings({"DATA_DIR": str(tmp_path), "AIMLAPI_BASE_URL": "ftp://x"})


def test_celery_is_configured_for_at_least_once_delivery():
    from studio.celery import app

    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_always_eager is False
    assert conf.task_ignore_result is True
    assert conf.task_routes["generator.tasks.generation_call"] == {"queue": "provider"}
    assert conf.task_routes["generator.tasks.generation_mirror"] == {"queue": "images"}


def test_the_sweep_has_a_queue_of_its_own_that_every_worker_takes():
    from studio.celery import app
    from studio.processes import worker_commands

    # Not the image queue: the sweep kept stopping with the image worker, and its own
    # messages counted as mirror backlog.
    assert app.conf.task_routes["generator.tasks.generation_sweep"] == {"queue": "sweep"}
    assert "options" not in app.conf.beat_schedule["generation-sweep"]  # no other queue
    for name, argv in worker_commands("python").items():
        assert "sweep" in argv[argv.index("-Q") + 1].split(","), name


def test_visibility_timeout_outlasts_a_task_and_its_longest_retry(tmp_path):
    s = load_production_settings(
        {"DATA_DIR": str(tmp_path), "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"}
    )
    options = s["CELERY_BROKER_TRANSPORT_OPTIONS"]
    longest = max(
        s["CELERY_TASK_TIME_LIMIT"], s["AIMLAPI_TOTAL_TIMEOUT"] + s["AIMLAPI_CONNECT_TIMEOUT"]
    )
    assert options["visibility_timeout"] > longest + s["GENERATION_RETRY_MAX"]
    # kombu waits forever on a paused Redis without these.
    assert options["socket_timeout"] and options["socket_connect_timeout"]


def test_a_lease_outlasts_the_longest_provider_call():
    s = studio_settings
    assert s.GENERATION_LEASE_SECONDS > s.AIMLAPI_TOTAL_TIMEOUT + s.AIMLAPI_CONNECT_TIMEOUT


def test_docker_compose_runs_the_same_stack_with_the_same_names():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker-provider", "worker-images", "beat"} <= set(services)
    web_env = services["web"]["environment"]
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "AIMLAPI_KEY", "AIMLAPI_BASE_URL",
                 "SECRET_KEY", "MIRROR_ALLOWED_HOSTS", "MIRROR_ALLOW_PRIVATE_ADDRESSES",
                 "DATA_DIR", "ALLOWED_HOSTS", "DEBUG", "PORT"):  # fmt: skip
        assert name in web_env, name
    assert (
        web_env["DATABASE_URL"].startswith("postgres://")
        and "@postgres:" in web_env["DATABASE_URL"]
    )
    assert web_env["CELERY_BROKER_URL"].startswith("redis://redis:")
    assert web_env["MIRROR_ALLOW_PRIVATE_ADDRESSES"] == "false"
    for name in ("web", "worker-provider", "worker-images", "beat"):
        assert "media:/data" in services[name]["volumes"]
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "--maxmemory-policy noeviction" in redis_cmd

    from studio.processes import worker_commands

    expected = worker_commands("python", provider_concurrency=32, image_concurrency=2)
    for name, argv in expected.items():
        assert services[name]["command"] == ["celery", *argv[3:]], name
    assert services["beat"]["command"][:4] == ["celery", "-A", "studio", "beat"]


STUDIO_SERVICES = ("web", "worker-provider", "worker-images", "beat")


def test_the_compose_stack_is_healthy_scalable_and_on_s3():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"minio", "minio-bucket"} <= set(services)
    for name, service in services.items():
        # Every service says when it is healthy; `depends_on` waits on that.
        assert "test" in service.get("healthcheck", {}), name
        # --scale needs services without fixed container names.
        assert "container_name" not in service, name
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            assert condition["condition"] in (
                "service_healthy",
                "service_completed_successfully",
            ), (name, dependency)
    for name in ("worker-provider", "worker-images"):
        # Scaled replicas would fight over a published port; each names its node by host.
        assert "ports" not in services[name], name
        assert any(arg.endswith("@%h") for arg in services[name]["command"]), name
    declared = set(compose.get("volumes", {}))
    for name, service in services.items():
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in declared, (name, volume)
    env = services["web"]["environment"]
    assert env["MEDIA_STORAGE"] == "s3"
    assert env["S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "minio-bucket" in services["web"]["depends_on"]


def test_every_env_name_compose_gives_the_studio_is_read_by_the_settings():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    read = env_names_read_by_settings()
    for name in STUDIO_SERVICES:
        given = set(compose["services"][name]["environment"])
        assert given <= read, (name, given - read)


def test_ci_uses_the_real_servers_and_make_test():
    script = (ROOT / ".ci" / "run").read_text()
    assert "postgres://postgres@127.0.0.1:5432/" in script
    assert "redis://127.0.0.1:6379/" in script
    assert re.search(r"^make test$", script, re.M)
    assert "set -euo pipefail" in script
