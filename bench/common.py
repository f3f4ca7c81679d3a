"""Helpers shared by the benchmarks: figures, process trees, ports and databases.

Every benchmark prints a table for people and then one JSON line per figure,
`{"name", "value", "unit", "baseline", "ratio"}`, which bench/run.py collects.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def figure(
    name: str, value: float, unit: str, baseline: float | None, ratio: float | None = None
) -> dict:
    """One figure; the ratio is value / baseline unless given (None without a baseline)."""
    if ratio is None and baseline:
        ratio = value / baseline
    return {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "baseline": None if baseline is None else round(baseline, 3),
        "ratio": None if ratio is None else round(ratio, 3),
    }


def emit(figures: list[dict]) -> None:
    for item in figures:
        print(json.dumps(item), flush=True)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(p) - 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid: int) -> list[int]:
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True
    ).stdout.split()
    return [pid] + [p for c in children for p in tree(int(c))]


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` and all its descendants (a worker and its pool)."""
    total = 0
    for p in tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return total / 1024


def stop(procs: list[subprocess.Popen]) -> None:
    """End the process groups this benchmark started, newest first."""
    for proc in reversed(procs):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def with_database(database_url: str, name: str) -> str:
    return urlunsplit(urlsplit(database_url)._replace(path=f"/{name}", query=""))


def database_name(database_url: str) -> str:
    return urlsplit(database_url).path.lstrip("/")


def fresh_database(database_url: str, suffix: str) -> str:
    """A new empty database named after DATABASE_URL's plus `suffix`, so runs that use
    different databases never drop each other's."""
    import psycopg

    name = f"{database_name(database_url)}_{suffix}"
    with psycopg.connect(with_database(database_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(database_url, name)


def drop_database(database_url: str) -> None:
    import psycopg

    name = database_name(database_url)
    with psycopg.connect(with_database(database_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
