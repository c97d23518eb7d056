"""Run the benchmark suite and write the report (`make bench`).

Each `benches/bench_<kernel>.py` runs ferromine and the reference
implementations side by side, prints a Markdown table and writes
`benches/results/<kernel>.json`. This driver runs them one after the other in
fresh interpreters, shows progress, and writes `docs/benchmarks.md` with the
tables, the machine, the package versions and a speed-up plot per kernel.

    python benches/run.py            # default suite
    python benches/run.py --quick    # small inputs, a few minutes
    python benches/run.py --full     # largest inputs: docs/benchmarks-full.md
    python benches/run.py --only psi
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import _harness  # noqa: E402
from _harness import machine, versions  # noqa: E402

DOCS = ROOT / "docs"
PLOTS = DOCS / "img"
# The default suite's report; `--full` writes its own beside it.
REPORT, PREFIX, RESULTS = DOCS / "benchmarks.md", "", _harness.RESULTS
REFERENCES = (
    "numpy", "pandas", "scikit-learn", "feature-engine", "evidently", "mlxtend",
    "pyfim", "rusket", "faiss-cpu", "scikit-learn-intelex", "isotree", "coniferest",
)


IMPORT_NAMES = {"scikit-learn": "sklearn", "feature-engine": "feature_engine", "pyfim": "fim",
                "faiss-cpu": "faiss", "scikit-learn-intelex": "sklearnex"}


def import_errors(dists: list[str]) -> dict[str, str]:
    """Why each of ``dists`` cannot be imported (each in its own fresh
    interpreter, all started at once), for those that cannot."""
    procs = {
        d: subprocess.Popen([sys.executable, "-c", f"import {IMPORT_NAMES.get(d, d.replace('-', '_'))}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for d in dists
    }
    broken = {}
    for d, proc in procs.items():
        _, err = proc.communicate()
        if proc.returncode != 0:
            lines = err.strip().splitlines()
            broken[d] = lines[-1][:160] if lines else f"exit {proc.returncode}"
    return broken


def run_kernel(kernel: str, flag: list[str]) -> tuple[int, str, str]:
    """Run one benchmark script, echoing the first cell of each table row as
    it arrives (the progress display); returns (exit code, stdout, stderr)."""
    cmd = [sys.executable, str(HERE / f"bench_{kernel}.py"), *flag]
    env = {**os.environ, "FERROMINE_BENCH_RESULTS": str(RESULTS)}
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, env=env)
        out, in_table = [], False
        for line in proc.stdout:
            out.append(line)
            cells = [c.strip() for c in line.strip().split("|")]
            if len(cells) < 3:
                in_table = False
            elif all(c and set(c) <= set("-:") for c in cells[1:-1]):
                in_table = True  # the separator: data rows follow
            elif in_table:
                print(f"      {kernel}: {' | '.join(cells[1:3])[:90]} done", flush=True)
        proc.wait()
        err.seek(0)
        return proc.returncode, "".join(out), err.read()


def discover(only: list[str] | None) -> list[str]:
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    return [n for n in names if not only or n in only]


def plot(kernel: str, rows: list[dict]) -> Path | None:
    """Speed-up bars: one group per case, one bar per reference (log scale),
    hatched red where the answers disagree."""
    rows = [r for r in rows if r.get("speedup")]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(r["case"] for r in rows))
    key = lambda r: f"{r.get('ours', 'ferromine')} vs {r['reference']}"  # noqa: E731
    refs = list(dict.fromkeys(key(r) for r in rows))
    palette = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(rows) + 0.25 * len(cases) + 1.6))
    labelled: set[str] = set()
    for i, case in enumerate(cases):
        here = [r for r in rows if r["case"] == case]
        height = 0.8 / len(here)
        for j, r in enumerate(here):
            ref = key(r)
            y = i + (j - (len(here) - 1) / 2) * height
            bad = r.get("agree") is False
            ax.barh(y, r["speedup"], height=height * 0.92, color=palette(refs.index(ref) % 10),
                    hatch="xx" if bad else None, edgecolor="#c0392b" if bad else None,
                    label=None if ref in labelled else ref)
            labelled.add(ref)
            s = r["speedup"]
            ax.text(s, y, f" {s:.1f}x" if s >= 1 else f" {s:.2g}x", va="center", fontsize=7)
            if bad:
                ax.text(s, y, "  " + " " * len(f"{s:.2g}x") + " DISAGREE", va="center", fontsize=7, color="#c0392b")
    ax.set_yticks(range(len(cases)), cases, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("speed-up over the reference (log scale; > 1 means ferromine is faster)")
    ax.set_title(f"{kernel}: ferromine against the reference implementations", fontsize=10)
    # Below the axes, so it never covers a bar.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.6 / fig.get_size_inches()[1] - 0.02),
              ncol=2, frameon=False)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    PLOTS.mkdir(parents=True, exist_ok=True)
    path = PLOTS / f"{PREFIX}bench_{kernel}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_scaling(kernel: str, series: list[dict]) -> Path | None:
    """One line chart per series (time against n, k, d or threads), log-log
    where the x values span more than a factor of 4."""
    series = [s for s in series if len(s.get("x", [])) >= 2]
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(2, len(series))
    rows = (len(series) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.0 * rows), squeeze=False)
    for ax, s in zip(axes.flat, series):
        for name, ys in s["lines"].items():
            pts = [(x, y) for x, y in zip(s["x"], ys) if y is not None]
            if pts:
                style = "-o" if name.startswith("ferromine") else "--s"
                ax.plot(*zip(*pts), style, label=name, linewidth=2 if name.startswith("ferromine") else 1.2)
        if max(s["x"]) / max(min(s["x"]), 1e-12) > 4:
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:  # a linear axis from zero: a 4 % difference must not look like a doubling
            ax.set_ylim(bottom=0)
        ax.set_xticks(s["x"], [f"{x:,}" for x in s["x"]], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel(s["x_label"])
        ax.set_ylabel("seconds (median)")
        ax.set_title(s["title"], fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(series):]:
        ax.set_visible(False)
    fig.tight_layout()
    PLOTS.mkdir(parents=True, exist_ok=True)
    path = PLOTS / f"{PREFIX}scaling_{kernel}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    ap = argparse.ArgumentParser()
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small inputs (a few minutes)")
    mode.add_argument("--full", action="store_true", help="largest inputs")
    ap.add_argument("--only", nargs="*", help="kernels to run (default: all)")
    args = ap.parse_args()
    flag = ["--quick"] if args.quick else (["--full"] if args.full else [])
    global REPORT, PREFIX, RESULTS
    if args.full:
        REPORT, PREFIX, RESULTS = DOCS / "benchmarks-full.md", "full_", _harness.RESULTS / "full"
    kernels = discover(args.only)
    sections, failed = [], []
    timings: dict[str, float] = {}
    started = time.perf_counter()
    for i, kernel in enumerate(kernels, 1):
        print(f"[{i}/{len(kernels)}] {kernel} ... (left: {', '.join(kernels[i:]) or 'none'})", flush=True)
        t0 = time.perf_counter()
        returncode, stdout, stderr = run_kernel(kernel, flag)
        took = time.perf_counter() - t0
        timings[kernel] = round(took, 1)
        print(f"      done in {took:.0f} s (exit {returncode}; {time.perf_counter() - started:.0f} s so far)", flush=True)
        table = "\n".join(line for line in stdout.splitlines() if not line.startswith("wrote "))
        if returncode != 0:
            failed.append(kernel)
            table += f"\n\n**This benchmark failed** (exit {returncode}):\n\n```\n{stderr[-3000:]}\n```"
        result_file = RESULTS / f"{kernel}.json"
        img = scaling = None
        if result_file.exists() and returncode == 0:
            payload = json.loads(result_file.read_text())
            img = plot(kernel, payload.get("rows", []))
            scaling = plot_scaling(kernel, payload.get("scaling", []))
        section = f"## {kernel}\n\nCommand: `python benches/bench_{kernel}.py {' '.join(flag)}`".rstrip()
        section += f" ({took:.0f} s)\n\n{table.strip()}\n"
        if img is not None:
            section += f"\n![{kernel} speed-ups](img/{img.name})\n"
        if scaling is not None:
            section += f"\n![{kernel} scaling](img/{scaling.name})\n"
        sections.append(section)
    info = machine()
    vers = versions("ferromine", *REFERENCES)
    missing = [k for k, v in vers.items() if v is None]
    broken = import_errors([k for k in vers if vers[k] is not None])
    for k in broken:
        vers[k] = None
    command = "make bench" + (f" BENCH_ARGS='{' '.join(flag)}'" if flag else "")
    total = time.perf_counter() - started
    header = [
        "# Benchmarks" + (" (largest inputs)" if args.full else ""),
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in "
        f"{total:.0f} s. Every comparison runs ferromine and the reference on the same "
        "input in one process, alternating, and reports medians; it also checks that the answers agree.",
        "",
        "Wall time per kernel: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ".",
        "",
        f"Machine: {info['cpu']}, {info['cores']} logical cores, Python {info['python']}, "
        f"{info['platform']}; load average at the end {tuple(round(x, 1) for x in info['load_average'] or ())}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items() if v) + ".",
        "",
        ("Not installed, so not compared: " + ", ".join(missing) + ".") if missing else "",
        ("Installed but failing to import, so not compared: "
         + "; ".join(f"{k} ({why})" for k, why in broken.items()) + ".") if broken else "",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "suite.json").write_text(json.dumps(
        {"command": command, "mode": flag[0].lstrip("-") if flag else "default", "seconds": timings,
         "total_s": round(total, 1), "failed": failed, "machine": info}, indent=1) + "\n")
    DOCS.mkdir(exist_ok=True)
    REPORT.write_text("\n".join(header) + "\n" + "\n".join(sections))
    print(f"wrote {REPORT}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
