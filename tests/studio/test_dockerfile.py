"""The image: static files built into it stay visible under the runtime data volume, and it
installs the locked runtime dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_static_files_are_collected_outside_the_data_volume():
    dockerfile = (ROOT / "Dockerfile").read_text()
    env = dict(
        re.findall(
            r"\b([A-Z_]+)=(\S+)",
            " ".join(re.findall(r"^ENV (.+?)$", dockerfile.replace("\\\n", " "), re.M)),
        )
    )
    assert env["DATA_DIR"] == "/data"
    assert not env["STATIC_ROOT"].startswith(env["DATA_DIR"])
    # collectstatic runs after the ENV line, so it writes where the server will read.
    assert dockerfile.index("STATIC_ROOT=") < dockerfile.index("collectstatic")


def _pins(requirements: str) -> dict[str, str]:
    """name -> version of each requirement line of a `uv export` file."""
    return dict(re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", requirements, re.M))


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_installs_the_locked_runtime_dependencies_with_hashes():
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    install = re.search(r"^RUN pip install (.+)$", dockerfile, re.M).group(1).split()
    assert {"--require-hashes", "--no-deps"} <= set(install)
    assert install[install.index("-r") + 1] == "requirements.txt"
    assert re.search(r"^COPY requirements\.txt ", dockerfile, re.M)

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lock = {
        package["name"]: package["version"]
        for package in tomllib.loads((ROOT / "uv.lock").read_text())["package"]
        if "version" in package and package["source"].get("registry")
    }
    requirements = (ROOT / "requirements.txt").read_text()
    pins = _pins(requirements)
    # Every line is pinned to the lock's version and carries its hashes.
    assert pins and all(lock[_normalized(name)] == version for name, version in pins.items())
    assert len(re.findall(r"^\S+==", requirements, re.M)) == len(pins)
    for block in re.split(r"\n(?=\S)", requirements):
        if not block.startswith("#"):
            assert "--hash=sha256:" in block, block
    # Every runtime pin of pyproject.toml, and not the test and lint tools.
    for requirement in project["project"]["dependencies"]:
        name, version = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[.*\])?==(\S+)", requirement).groups()
        assert pins[_normalized(name)] == version
    assert not {"pytest", "ruff", "import-linter", "playwright"} & set(pins)
