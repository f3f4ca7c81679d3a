"""The image: static files built into it stay visible under the runtime data volume."""

from __future__ import annotations

import re
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
