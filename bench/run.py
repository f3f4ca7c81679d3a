"""Every benchmark in one go (`make bench`): each script's own table as it runs, then
one table of every figure, then the figures again as JSON lines, one per line.

Uses DATABASE_URL and CELERY_BROKER_URL as the tests do; each script makes and drops
databases named after DATABASE_URL's, except the gallery's seeded data, which is kept
in DATABASE_URL's own database so a second run need not seed again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, table  # noqa: E402

SCRIPTS = [
    "mirroring.py",
    "pipeline.py",
    "memory.py",
    "gallery.py",
    "http_load.py",
    "api_concurrency.py",
    "load.py",
]


def main() -> None:
    figures: list[dict] = []
    failed = []
    for script in SCRIPTS:
        print(f"\n=== bench/{script}", flush=True)
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / script)], cwd=ROOT, stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.startswith('{"name"'):
                figures.append(json.loads(line))
        if proc.wait() != 0:
            failed.append(script)
    print("\n=== every figure\n")

    def cell(value: object) -> str:
        return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    rows = [[f["name"], cell(f["value"]), f["unit"], cell(f["baseline"]), cell(f["ratio"])]
            for f in figures]  # fmt: skip
    print(table([["figure", "value", "unit", "baseline", "ratio"], *rows]))
    print()
    for item in figures:
        print(json.dumps(item))
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
