"""PSI benchmark: ferromine against a plain NumPy reference and feature-engine.

Side by side in one process, alternating, medians of several repetitions;
every comparison also checks that the answers agree. Scaling series: time
against rows and against columns (ours on both cores and on one, and the NumPy
reference) and against threads. Peak memory is measured in a fresh interpreter.

    python benches/bench_psi.py            # 1M rows x 100 float64 columns
    python benches/bench_psi.py --quick    # 200k x 20
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _harness import alternate, machine, peak_rss_child, versions, write_json  # noqa: E402

from ferromine.drift import PSIDrift  # noqa: E402


def numpy_psi(ref: np.ndarray, cur: np.ndarray, n_bins: int = 10, eps: float = 1e-4) -> np.ndarray:
    """The textbook recipe, column by column: decile cut points of the
    reference, right-closed bins via searchsorted, NaN dropped."""
    probs = np.linspace(0, 1, n_bins + 1)[1:-1]
    out = np.empty(ref.shape[1])
    for j in range(ref.shape[1]):
        r, c = ref[:, j], cur[:, j]
        r, c = r[~np.isnan(r)], c[~np.isnan(c)]
        cuts = np.unique(np.quantile(r, probs))
        rs = np.bincount(np.searchsorted(cuts, r), minlength=cuts.size + 1) / r.size
        cs = np.bincount(np.searchsorted(cuts, c), minlength=cuts.size + 1) / c.size
        seen = (rs > 0) | (cs > 0)
        rs, cs = np.where(rs == 0, eps, rs)[seen], np.where(cs == 0, eps, cs)[seen]
        out[j] = np.sum((cs - rs) * np.log(cs / rs))
    return out


def ours(ref, cur, **kw) -> np.ndarray:
    return np.asarray(PSIDrift(**kw).fit(ref).psi(cur))


def feature_engine_psi(frame, n_ref: int):
    from feature_engine.selection import DropHighPSIFeatures

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = DropHighPSIFeatures(
            split_frac=n_ref / len(frame), bins=10, strategy="equal_frequency",
            threshold=0.25, missing_values="ignore",
        )
        sel.fit(frame)
    return np.array([sel.psi_values_[c] for c in frame.columns])


MEMORY_CHILD = """
import json, resource, numpy as np
from ferromine.drift import PSIDrift
n, d = {n}, {d}
rng = np.random.default_rng(0)
ref = rng.standard_normal((n, d)); cur = rng.standard_normal((n, d)); cur += 0.1
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
PSIDrift(n_jobs={jobs}).fit(ref).psi(cur)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"input_bytes": ref.nbytes + cur.nbytes, "rss_before": before, "rss_peak": after}}))
"""


def scaling(quick: bool, full: bool, repeat: int) -> list[dict]:
    """Time of fit + score against rows and against columns, ours (both
    cores and one) and the NumPy reference, same data, alternating."""
    if quick:
        ns, n_fixed, ds, d_fixed = [10_000, 50_000, 200_000], 50_000, [5, 20, 80], 10
    else:
        ns, n_fixed, ds, d_fixed = [10_000, 100_000, 1_000_000], 100_000, [10, 100, 300], 10
    if full:
        ds = ds + [1000]
    names = ("ferromine (2 threads)", "ferromine (1 thread)", "numpy")
    rng = np.random.default_rng(1)
    series = []
    for axis, points in (("n", ns), ("d", ds)):
        lines: dict[str, list[float]] = {k: [] for k in names}
        worst = 0.0
        for x in points:
            n, d = (x, d_fixed) if axis == "n" else (n_fixed, x)
            r = rng.standard_normal((n, d))
            c = rng.standard_normal((n, d)) + 0.1
            res = alternate(
                {
                    names[0]: lambda: ours(r, c, n_jobs=2),
                    names[1]: lambda: ours(r, c, n_jobs=1),
                    names[2]: lambda: numpy_psi(r, c),
                },
                repeat=repeat,
                budget_s=20,
            )
            worst = max(worst, float(np.max(np.abs(res[names[0]]["result"] - res[names[2]]["result"]))),
                        float(np.max(np.abs(res[names[1]]["result"] - res[names[2]]["result"]))))
            for k in names:
                lines[k].append(res[k]["median"])
            del r, c
        if axis == "n":
            title, label = f"PSI fit + score against rows ({d_fixed} float64 columns)", "rows (reference = current)"
        else:
            title, label = f"PSI fit + score against columns ({n_fixed:,} rows)", "columns (features)"
        series.append({"title": title, "x_label": label, "x": points, "lines": lines,
                       "max_abs_diff": worst, "agree": worst <= 1e-12})
    return series


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="200k x 20")
    ap.add_argument("--full", action="store_true", help="also 100k x 1000 (many columns)")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--cols", type=int)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-fe", action="store_true", help="skip feature-engine")
    args = ap.parse_args()
    n = args.rows or (200_000 if args.quick else 1_000_000)
    d = args.cols or (20 if args.quick else 100)
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((n, d))
    cur = rng.standard_normal((n, d))
    cur += np.linspace(0, 0.5, d)
    rows = []

    # 1. Against NumPy, C- and F-ordered input, both cores and one.
    for order in ("C", "F"):
        r, c = np.asarray(ref, order=order), np.asarray(cur, order=order)
        res = alternate(
            {
                "ferromine (2 threads)": lambda: ours(r, c, n_jobs=2),
                "ferromine (1 thread)": lambda: ours(r, c, n_jobs=1),
                "numpy": lambda: numpy_psi(r, c),
            },
            repeat=args.repeat,
            budget_s=60,
        )
        agree = float(np.max(np.abs(res["ferromine (2 threads)"]["result"] - res["numpy"]["result"])))
        base = res["numpy"]["median"]
        for name in ("ferromine (2 threads)", "ferromine (1 thread)"):
            rows.append({
                "case": f"{n:,} x {d} float64, {order} order", "ours": name, "reference": "numpy",
                "ours_s": res[name]["median"], "reference_s": base,
                "speedup": base / res[name]["median"], "max_abs_diff": agree, "agree": agree <= 1e-12,
            })
        del r, c

    if args.full:
        wide_r = rng.standard_normal((100_000, 1000))
        wide_c = rng.standard_normal((100_000, 1000)) + 0.05
        res = alternate(
            {"ferromine (2 threads)": lambda: ours(wide_r, wide_c, n_jobs=2),
             "numpy": lambda: numpy_psi(wide_r, wide_c)},
            repeat=3,
        )
        diff = float(np.max(np.abs(res["ferromine (2 threads)"]["result"] - res["numpy"]["result"])))
        rows.append({
            "case": "100,000 x 1000 float64, C order", "ours": "ferromine (2 threads)", "reference": "numpy",
            "ours_s": res["ferromine (2 threads)"]["median"], "reference_s": res["numpy"]["median"],
            "speedup": res["numpy"]["median"] / res["ferromine (2 threads)"]["median"],
            "max_abs_diff": diff, "agree": diff <= 1e-12,
        })
        del wide_r, wide_c

    # 2. Against feature-engine (its own preset), pandas input.
    fe_version = versions("feature-engine")["feature-engine"]
    if not args.no_fe and fe_version:
        import pandas as pd

        cols = [f"f{j}" for j in range(d)]
        frame = pd.DataFrame(np.vstack([ref, cur]), columns=cols)
        ref_df, cur_df = frame.iloc[:n], frame.iloc[n:]
        res = alternate(
            {
                "ferromine": lambda: ours(ref_df, cur_df, compat="feature_engine", n_jobs=2),
                "feature-engine": lambda: feature_engine_psi(frame, n),
            },
            repeat=max(2, args.repeat // 2),
            budget_s=30,
        )
        diff = float(np.max(np.abs(res["ferromine"]["result"] - res["feature-engine"]["result"])))
        rows.append({
            "case": f"{n:,} x {d} float64, pandas", "ours": "ferromine compat='feature_engine'",
            "reference": f"feature-engine {fe_version}", "ours_s": res["ferromine"]["median"],
            "reference_s": res["feature-engine"]["median"],
            "speedup": res["feature-engine"]["median"] / res["ferromine"]["median"],
            "max_abs_diff": diff, "agree": diff <= 1e-9,
        })
    elif not args.no_fe:
        rows.append({"case": "feature-engine", "reference": "feature-engine (missing)", "agree": None})

    # 3. Scaling: against rows, columns and threads (the last from the C-order runs above).
    series = scaling(args.quick, args.full, args.repeat)
    c_rows = {r["ours"]: r for r in rows if r.get("case") == f"{n:,} x {d} float64, C order"}
    # NumPy has no threads knob here: its time goes in the title, not as a flat
    # line that would squash ours on a linear axis.
    series.append({
        "title": f"PSI fit + score against threads ({n:,} x {d} float64, C order; "
                 f"numpy reference {c_rows['ferromine (1 thread)']['reference_s']:.2f} s)",
        "x_label": "threads (n_jobs)", "x": [1, 2],
        "lines": {"ferromine": [c_rows["ferromine (1 thread)"]["ours_s"], c_rows["ferromine (2 threads)"]["ours_s"]]},
    })

    # 4. Peak memory of fit + score, in a fresh interpreter.
    mem = peak_rss_child(MEMORY_CHILD.format(n=n, d=d, jobs=2))
    extra = max(0, mem["rss_peak"] - mem["rss_before"])
    mem["extra_bytes"] = extra
    mem["peak_over_input"] = (mem["input_bytes"] + extra) / mem["input_bytes"]

    print(f"\nPSI, {n:,} rows x {d} columns, machine: {machine()['cpu']}\n")
    print("| case | ours | reference | ours (s) | reference (s) | speed-up | answers agree |")
    print("|---|---|---|---:|---:|---:|---|")
    for r in rows:
        if r.get("ours_s") is None:
            print(f"| {r['case']} | | {r['reference']} | | | | not run |")
            continue
        ok = "yes" if r["agree"] else f"**NO** (max diff {r['max_abs_diff']:.2e})"
        print(f"| {r['case']} | {r['ours']} | {r['reference']} | {r['ours_s']:.3f} | "
              f"{r['reference_s']:.3f} | {r['speedup']:.1f}x | {ok} |")
    print("\nScaling (fit + score, median seconds; ratio = numpy / ferromine with 2 threads):\n")
    print("| series | x | ferromine (2 threads) | ferromine (1 thread) | numpy | ratio | answers agree |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for s in series[:-1]:
        ok = "yes" if s["agree"] else f"**NO** (max diff {s['max_abs_diff']:.2e})"
        for i, x in enumerate(s["x"]):
            t2, t1, tn = (s["lines"][k][i] for k in ("ferromine (2 threads)", "ferromine (1 thread)", "numpy"))
            print(f"| {s['title']} | {x:,} | {t2:.4f} | {t1:.4f} | {tn:.4f} | {tn / t2:.1f}x | {ok} |")
    print(f"\nPeak memory of fit + score: input {mem['input_bytes'] / 2**20:.0f} MiB, "
          f"extra {extra / 2**20:.0f} MiB, peak/input {mem['peak_over_input']:.3f}")
    path = write_json("psi", {"rows": rows, "scaling": series, "memory": mem, "n_rows": n, "n_cols": d,
                              "machine": machine(), "versions": versions("ferromine", "numpy", "pandas", "feature-engine")})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
