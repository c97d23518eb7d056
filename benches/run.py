"""Run the benchmark suite and write the report (`make bench`).

Each `benches/bench_<kernel>.py` runs ferromine and the reference
implementations side by side, prints a Markdown table and writes
`benches/results/<kernel>.json`. This driver runs them one after the other in
fresh interpreters, shows progress, and writes `docs/benchmarks.md` with the
tables, the machine, the package versions and a speed-up plot per kernel.

    python benches/run.py            # default suite
    python benches/run.py --quick    # small inputs, a few minutes
    python benches/run.py --full     # largest inputs
    python benches/run.py --only psi
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _harness import RESULTS, machine, versions  # noqa: E402

DOCS = ROOT / "docs"
PLOTS = DOCS / "img"
REFERENCES = (
    "numpy", "pandas", "scikit-learn", "feature-engine", "evidently", "mlxtend",
    "pyfim", "rusket", "faiss-cpu", "scikit-learn-intelex", "isotree", "coniferest",
)


def discover(only: list[str] | None) -> list[str]:
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    return [n for n in names if not only or n in only]


def plot(kernel: str, rows: list[dict]) -> Path | None:
    rows = [r for r in rows if r.get("speedup")]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.get('case', '')}\n{r.get('ours', '')} vs {r.get('reference', '')}" for r in rows]
    speedups = [r["speedup"] for r in rows]
    colours = ["#2a7ab0" if r.get("agree", True) else "#c0392b" for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.4))
    bars = ax.barh(range(len(rows)), speedups, color=colours)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("speed-up over the reference (log scale; > 1 means ferromine is faster)")
    ax.set_title(f"{kernel}: ferromine vs reference implementations (red: answers disagree)")
    for bar, s in zip(bars, speedups):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {s:.1f}x", va="center", fontsize=8)
    fig.tight_layout()
    PLOTS.mkdir(parents=True, exist_ok=True)
    path = PLOTS / f"bench_{kernel}.png"
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
    kernels = discover(args.only)
    sections, failed = [], []
    started = time.perf_counter()
    for i, kernel in enumerate(kernels, 1):
        print(f"[{i}/{len(kernels)}] {kernel} ... (left: {', '.join(kernels[i:]) or 'none'})", flush=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, str(HERE / f"bench_{kernel}.py"), *flag]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        took = time.perf_counter() - t0
        print(f"      done in {took:.0f} s (exit {proc.returncode})", flush=True)
        table = "\n".join(line for line in proc.stdout.splitlines() if not line.startswith("wrote "))
        if proc.returncode != 0:
            failed.append(kernel)
            table += f"\n\n**This benchmark failed** (exit {proc.returncode}):\n\n```\n{proc.stderr[-3000:]}\n```"
        result_file = RESULTS / f"{kernel}.json"
        img = None
        if result_file.exists() and proc.returncode == 0:
            rows = json.loads(result_file.read_text()).get("rows", [])
            img = plot(kernel, rows)
        section = f"## {kernel}\n\nCommand: `python benches/bench_{kernel}.py {' '.join(flag)}`".rstrip()
        section += f" ({took:.0f} s)\n\n{table.strip()}\n"
        if img is not None:
            section += f"\n![{kernel} speed-ups](img/{img.name})\n"
        sections.append(section)
    info = machine()
    vers = versions("ferromine", *REFERENCES)
    missing = [k for k, v in vers.items() if v is None]
    command = "make bench" + (f" BENCH_ARGS='{' '.join(flag)}'" if flag else "")
    header = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in "
        f"{time.perf_counter() - started:.0f} s. Every comparison runs ferromine and the reference on the same "
        "input in one process, alternating, and reports medians; it also checks that the answers agree.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} logical cores, Python {info['python']}, "
        f"{info['platform']}; load average at the end {tuple(round(x, 1) for x in info['load_average'] or ())}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items() if v) + ".",
        "",
        ("Not installed, so not compared: " + ", ".join(missing) + ".") if missing else "",
        "",
    ]
    DOCS.mkdir(exist_ok=True)
    (DOCS / "benchmarks.md").write_text("\n".join(header) + "\n" + "\n".join(sections))
    print(f"wrote {DOCS / 'benchmarks.md'}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
