"""Mirroring one image, against the bare Pillow floor measured in the same run.

The studio's mirror path for a 1024×768 JPEG (the offline provider's art): download
over HTTP with every URL and address check (fetch.fetch_image), verify, decode and
thumbnail (imaging.check_image), and store the original and the WebP thumbnail
(default_storage, the filesystem here). The floor is Pillow alone on the same bytes in
memory: open, decode at the scale the thumbnail needs, thumbnail, encode the WebP, the
least work any mirror must do. A second reference decodes at full size first (Pillow's
plain thumbnail(), as the studio did before JPEG draft mode). Runs alternate so that
noise from other work on the machine falls on both sides alike.

    python bench/mirroring.py [--runs 60]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, emit, figure, free_port, stop, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="mirror-bench-"))
    os.environ.update(
        DATA_DIR=str(data_dir),
        MIRROR_ALLOWED_HOSTS="127.0.0.1",
        MIRROR_ALLOW_PRIVATE_ADDRESSES="true",
        DJANGO_SETTINGS_MODULE="studio.settings",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from PIL import Image

    from generator import fetch
    from generator.imaging import THUMBNAIL_SIZE, THUMBNAIL_WEBP, _fitted, check_image
    from offline_provider import render_image

    data = render_image(
        "flux-realism", "a lighthouse on a cliff at dusk", "bench", 7, 1024, 768, "jpeg"
    )
    served = data_dir / "www"
    served.mkdir()
    (served / "image.jpg").write_bytes(data)
    port = free_port()
    # A separate process, as the provider's CDN is: serving must not share our GIL.
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(served)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/image.jpg"
    procs = [server]
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                fetch.fetch_image(url)
                break
            except fetch.MirrorError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

        def mirror(i: int) -> None:
            raw = fetch.fetch_image(url)
            checked = check_image(raw, max_pixels=40_000_000)
            base = f"generations/bench/{i % 4}"
            default_storage.save(f"{base}.{checked.extension}", ContentFile(checked.content))
            default_storage.save(f"{base}_thumb.webp", ContentFile(checked.thumbnail))

        def floor(_: int) -> None:
            with Image.open(io.BytesIO(data)) as img:
                img.draft(img.mode, _fitted(img.size, THUMBNAIL_SIZE))
                img.thumbnail(THUMBNAIL_SIZE)
                img.save(io.BytesIO(), "WEBP", **THUMBNAIL_WEBP)

        def full_decode(_: int) -> None:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                img.thumbnail(THUMBNAIL_SIZE)
                img.save(io.BytesIO(), "WEBP", **THUMBNAIL_WEBP)

        cases = {"mirror": mirror, "floor": floor, "full_decode": full_decode}
        times: dict[str, list[float]] = {name: [] for name in cases}
        for i in range(5):
            for fn in cases.values():
                fn(i)
        for i in range(args.runs):
            for name, fn in cases.items():
                started = time.perf_counter()
                fn(i)
                times[name].append((time.perf_counter() - started) * 1000)
    finally:
        stop(procs)

    ms = {name: statistics.median(values) for name, values in times.items()}
    print(f"\nMirroring a 1024×768 JPEG ({len(data) // 1024} KiB), median of {args.runs} runs\n")
    print(
        table(
            [
                ["path", "median", "vs floor"],
                *[
                    [name, f"{value:.1f} ms", f"{value / ms['floor']:.2f}×"]
                    for name, value in ms.items()
                ],
            ]
        )
    )
    print()
    emit(
        [
            figure("mirror_jpeg_1024x768_ms", ms["mirror"], "ms", ms["floor"]),
            figure("mirror_full_decode_reference_ms", ms["full_decode"], "ms", ms["floor"]),
        ]
    )


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
