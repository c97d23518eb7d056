"""Shared benchmark helpers: side-by-side timing, peak memory, machine facts."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

# `run.py --full` points this at results/full/ so the largest inputs do not
# overwrite the default suite's results.
RESULTS = Path(os.environ.get("FERROMINE_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))


def data_dir() -> Path:
    """The shared benchmark data (env FERROMINE_DATA, default ../shared/data)."""
    root = Path(__file__).resolve().parent.parent
    return Path(os.environ.get("FERROMINE_DATA", root.parent / "shared" / "data"))


# OpenBLAS and OpenMP worker threads spin-wait for a while after a call (OpenBLAS
# about 0.1 s); a library timed right after one that used them loses a core to
# that spinning (measured: ferromine's k-means++ 41 ms alone, 105 ms right after
# sklearn's). Every timed call starts after this pause, whoever ran before.
SETTLE_S = 0.15


def settle() -> None:
    """Let the previous library's worker threads go idle before a timed call."""
    time.sleep(SETTLE_S)


def alternate(runs: dict, repeat: int, budget_s: float | None = None) -> dict:
    """Time each callable in ``runs`` ``repeat`` times, alternating between them
    (ours, ref, ours, ref, ...) so load on a shared machine hits all alike.

    A callable whose first run exceeds ``budget_s`` is not repeated.
    Returns name -> {"median": s, "times": [...], "result": last result}.
    """
    out = {name: {"times": [], "result": None} for name in runs}
    for rep in range(repeat):
        for name, fn in runs.items():
            rec = out[name]
            if rep > 0 and budget_s is not None and rec["times"] and rec["times"][0] > budget_s:
                continue
            settle()
            t0 = time.perf_counter()
            rec["result"] = fn()
            rec["times"].append(time.perf_counter() - t0)
    for rec in out.values():
        rec["median"] = statistics.median(rec["times"])
    return out


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def peak_rss_child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it must print one JSON line."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


def versions(*modules: str) -> dict:
    from importlib import metadata

    found = {}
    for m in modules:
        try:
            found[m] = metadata.version(m)
        except metadata.PackageNotFoundError:
            found[m] = None
    return found
