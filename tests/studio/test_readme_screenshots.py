"""The README's screenshots are there, small, and of the screens they claim."""

from __future__ import annotations

import re

from PIL import Image as PILImage

from tests.conftest import ROOT

SIZES = {"studio.png": (1440, 900), "gallery-viewer.png": (1440, 900), "phone.png": (390, 844)}


def test_the_readme_shows_the_three_committed_screenshots():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Screenshots", 1)[1].split("\n## ", 1)[0]
    shown = re.findall(r"!\[[^\]]+\]\(docs/screenshots/([^)]+)\)", section)
    assert shown == list(SIZES)
    for name, size in SIZES.items():
        path = ROOT / "docs" / "screenshots" / name
        assert path.stat().st_size < 300_000, name
        with PILImage.open(path) as image:
            assert image.format == "PNG" and image.size == size, name
