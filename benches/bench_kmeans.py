"""k-means benchmark: ferromine vs scikit-learn (lloyd, elkan), faiss-cpu, scikit-learn-intelex.

Same data, same initial centres, 20 iterations with tol=0 for everyone; each
configuration alternates the implementations and reports the median of
``--reps`` runs. Also times k-means++ seeding alone against sklearn's
``kmeans_plusplus``. Prints a Markdown table and writes
``benches/results/kmeans.json``. A reference that is not installed is
reported as missing.

    python benches/bench_kmeans.py            # n = 100k, d = 16 and 64, float32 and float64
    python benches/bench_kmeans.py --quick    # n = 20k, d = 16, float32
    python benches/bench_kmeans.py --full     # also n = 1M
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans as SKKMeans
from sklearn.cluster import kmeans_plusplus as sk_kmeans_plusplus
from sklearn.datasets import make_blobs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import settle  # noqa: E402

from ferromine import _core
from ferromine._threads import resolve_n_jobs
from ferromine.cluster import KMeans, kmeans_plusplus

N_ITER = 20
PEAK_F32_GFLOPS = 256.0  # the figure for 2 AVX-512 cores; see the note printed below


def _faiss():
    try:
        import faiss

        return faiss
    except ImportError:
        return None


def _sklearnex():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from sklearnex.cluster import KMeans as XKMeans
        return XKMeans
    except ImportError:
        return None


def _cpu_isa() -> str:
    """Model and vector ISA of this CPU, from /proc/cpuinfo (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "unknown")
    flags = next((set(ln.split(":", 1)[1].split()) for ln in text.splitlines() if ln.startswith("flags")), set())
    isa = "AVX-512F (the kernels use it)" if "avx512f" in flags else ("AVX2+FMA" if "avx2" in flags else "no AVX2")
    return f"{model}, {isa}"


def _inertia(X, centers) -> float:
    _, inertia = _core.kmeans_assign(X, np.ascontiguousarray(centers, dtype=X.dtype), None, True)
    return float(inertia)


def _runners(X, init, k):
    """name -> callable returning final centres (or None when missing)."""
    out = {}
    common = dict(n_clusters=k, init=init, n_init=1, tol=0.0, max_iter=N_ITER)
    out["ferromine"] = lambda: KMeans(**common).fit(X)
    out["ferromine elkan"] = lambda: KMeans(**common, algorithm="elkan").fit(X)
    out["sklearn lloyd"] = lambda: SKKMeans(**common, algorithm="lloyd").fit(X)
    out["sklearn elkan"] = lambda: SKKMeans(**common, algorithm="elkan").fit(X)
    faiss = _faiss()
    if faiss is not None:
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        init32 = np.ascontiguousarray(init, dtype=np.float32)

        def run_faiss():
            # max_points_per_centroid=n: no silent subsampling (faiss#789).
            km = faiss.Kmeans(X.shape[1], k, niter=N_ITER, verbose=False, max_points_per_centroid=X.shape[0], seed=1)
            km.train(X32, init_centroids=init32)
            return km

        out["faiss"] = run_faiss
    else:
        out["faiss"] = None
    XK = _sklearnex()
    out["sklearnex"] = (lambda: XK(**common).fit(X)) if XK is not None else None
    return out


def _centers(name, model):
    return model.centroids if name == "faiss" else model.cluster_centers_


def bench_fit(n, d, k, dtype, reps):
    X, _ = make_blobs(n, n_features=d, centers=max(k, 8), cluster_std=4.0, random_state=0)
    X = X.astype(dtype)
    init = X[np.random.RandomState(0).choice(n, k, replace=False)].copy()
    runners = _runners(X, init, k)
    times = {name: [] for name, fn in runners.items() if fn is not None}
    models = {}
    for _ in range(reps):
        for name, fn in runners.items():
            if fn is None:
                continue
            settle()
            t = time.perf_counter()
            models[name] = fn()
            times[name].append(time.perf_counter() - t)
    ours = models["ferromine"]
    ref = models["sklearn lloyd"]
    row = {
        "n": n,
        "d": d,
        "k": k,
        "dtype": np.dtype(dtype).name,
        "n_iter": {"ferromine": int(ours.n_iter_), "sklearn lloyd": int(ref.n_iter_)},
        "seconds": {name: statistics.median(v) for name, v in times.items()},
        "missing": [name for name, fn in runners.items() if fn is None],
    }
    t_ours = row["seconds"]["ferromine"]
    row["ratio"] = {name: t / t_ours for name, t in row["seconds"].items() if name != "ferromine"}
    row["gflops_ferromine"] = 2.0 * n * k * d * ours.n_iter_ / t_ours / 1e9
    row["labels_equal_sklearn"] = bool(np.array_equal(ours.labels_, ref.labels_))
    rel = {}
    base = _inertia(X, ours.cluster_centers_)
    for name, m in models.items():
        if name != "ferromine":
            rel[name] = abs(_inertia(X, _centers(name, m)) - base) / base
    row["inertia_rel_diff"] = rel
    return row


def bench_init(n, d, k, dtype, reps):
    X, _ = make_blobs(n, n_features=d, centers=max(k, 8), cluster_std=4.0, random_state=0)
    X = X.astype(dtype)
    t_ours, t_ref = [], []
    for r in range(reps):
        settle()
        t = time.perf_counter()
        c_ours, _ = kmeans_plusplus(X, k, random_state=r)
        t_ours.append(time.perf_counter() - t)
        settle()
        t = time.perf_counter()
        c_ref, _ = sk_kmeans_plusplus(X, k, random_state=r)
        t_ref.append(time.perf_counter() - t)
    a, b = statistics.median(t_ours), statistics.median(t_ref)
    return {
        "n": n,
        "d": d,
        "k": k,
        "dtype": np.dtype(dtype).name,
        "seconds": {"ferromine": a, "sklearn kmeans_plusplus": b},
        "ratio": b / a,
        "potential_ratio": _inertia(X, c_ours) / _inertia(X, c_ref),
    }


def _rows(fits, inits):
    """The common result rows (one per configuration and reference) that
    ``benches/run.py`` tabulates and plots."""
    rows = []
    for f in fits:
        case = f"n={f['n']:,} d={f['d']} k={f['k']} {f['dtype']}"
        for name, ratio in f["ratio"].items():
            if name.startswith("ferromine"):
                continue
            # Same init, tol=0, 20 iterations: sklearn must agree to round-off;
            # faiss and oneDAL accumulate in float32 and may drift a little.
            tol = 1e-6 if name.startswith("sklearn") else 1e-3
            diff = f["inertia_rel_diff"][name]
            rows.append({
                "case": case, "ours": "ferromine", "reference": name,
                "ours_s": f["seconds"]["ferromine"], "reference_s": f["seconds"][name],
                "speedup": ratio, "agree": bool(diff <= tol), "inertia_rel_diff": diff,
                "gflops_ours": f["gflops_ferromine"],
            })
        if "ferromine elkan" in f["seconds"] and "sklearn elkan" in f["seconds"]:
            rows.append({
                "case": case, "ours": "ferromine elkan", "reference": "sklearn elkan",
                "ours_s": f["seconds"]["ferromine elkan"], "reference_s": f["seconds"]["sklearn elkan"],
                "speedup": f["seconds"]["sklearn elkan"] / f["seconds"]["ferromine elkan"],
                "agree": bool(f["inertia_rel_diff"]["sklearn elkan"] <= 1e-6),
            })
    for r in inits:
        rows.append({
            "case": f"k-means++ init n={r['n']:,} d={r['d']} k={r['k']} {r['dtype']}", "ours": "ferromine",
            "reference": "sklearn kmeans_plusplus", "ours_s": r["seconds"]["ferromine"],
            "reference_s": r["seconds"]["sklearn kmeans_plusplus"], "speedup": r["ratio"],
            # Different random streams: the seeding potential must be comparable, not equal.
            "agree": bool(0.8 <= r["potential_ratio"] <= 1.25), "potential_ratio": r["potential_ratio"],
        })
    return rows


def _scaling(fits, threads):
    """Time against k (per n, d, dtype) for ferromine and sklearn lloyd, and
    ferromine against the thread count."""
    series = []
    keys = sorted({(f["n"], f["d"], f["dtype"]) for f in fits})
    for n, d, dtype in keys:
        pts = sorted((f for f in fits if (f["n"], f["d"], f["dtype"]) == (n, d, dtype)), key=lambda f: f["k"])
        if len(pts) < 2:
            continue
        series.append({
            "title": f"k-means fit (20 iterations), n={n:,} d={d} {dtype}", "x_label": "k (clusters)",
            "x": [f["k"] for f in pts],
            "lines": {name: [f["seconds"].get(name) for f in pts] for name in pts[0]["seconds"]},
        })
    if threads:
        series.append({
            "title": threads["title"], "x_label": "threads (n_jobs)", "x": threads["x"],
            "lines": {"ferromine": threads["seconds"]},
        })
    return series


def bench_threads(n, d, k, dtype, reps):
    """Wall time against n_jobs, with the CPU time of each run: CPU / wall is
    the number of cores the run actually got. A 2-thread run that got much
    less than 2 cores shared the machine with another process (the series
    then says nothing about our scaling), so it is reported, not hidden."""
    X, _ = make_blobs(n, n_features=d, centers=max(k, 8), cluster_std=4.0, random_state=0)
    X = X.astype(dtype)
    init = X[np.random.RandomState(0).choice(n, k, replace=False)].copy()
    jobs = [1, 2]
    times = {j: [] for j in jobs}
    cores = {j: [] for j in jobs}
    for _ in range(reps):
        for j in jobs:
            t, c = time.perf_counter(), time.process_time()
            KMeans(n_clusters=k, init=init, n_init=1, tol=0.0, max_iter=N_ITER, n_jobs=j).fit(X)
            wall = time.perf_counter() - t
            times[j].append(wall)
            cores[j].append((time.process_time() - c) / wall)
    return {"title": f"ferromine k-means fit against threads, n={n:,} d={d} k={k} {np.dtype(dtype).name}",
            "x": jobs, "seconds": [statistics.median(times[j]) for j in jobs],
            "cores_used": [statistics.median(cores[j]) for j in jobs]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 20k, float32, d = 16, 2 repetitions")
    ap.add_argument("--full", action="store_true", help="n = 100k and 1M, every d, k and dtype")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--n", type=int, nargs="*", default=None)
    ap.add_argument("--d", type=int, nargs="*", default=None)
    ap.add_argument("--k", type=int, nargs="*", default=[8, 64, 256])
    ap.add_argument("--dtype", nargs="*", default=None)
    ap.add_argument("--no-init", action="store_true", help="skip the k-means++ seeding benchmark")
    args = ap.parse_args()
    if args.quick:
        ns, ds, dtypes, reps = [20_000], [16], ["float32"], 2
    elif args.full:
        ns, ds, dtypes, reps = [100_000, 1_000_000], [16, 64], ["float32", "float64"], 3
    else:
        ns, ds, dtypes, reps = [100_000], [16, 64], ["float32", "float64"], 3
    ns, ds, dtypes = args.n or ns, args.d or ds, args.dtype or dtypes
    reps = args.reps or reps

    fits, inits = [], []
    print(f"threads: ferromine {resolve_n_jobs(None)}, cpu_count {os.cpu_count()}; {N_ITER} iterations, tol=0, same init\n")
    print("| n | d | k | dtype | ferromine s | GFLOP/s | ferromine elkan | sklearn lloyd | sklearn elkan | faiss | sklearnex | labels = sklearn | max rel inertia diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in ns:
        for dtype in dtypes:
            for d in ds:
                for k in args.k:
                    row = bench_fit(n, d, k, np.dtype(dtype), reps)
                    fits.append(row)

                    def cell(name, row=row):
                        if name in row["missing"]:
                            return "missing"
                        return f"{row['seconds'][name]:.3f}s ({row['ratio'][name]:.2f}x)"

                    diffs = row["inertia_rel_diff"]
                    print(
                        f"| {n} | {d} | {k} | {dtype} | {row['seconds']['ferromine']:.3f} | {row['gflops_ferromine']:.1f} | "
                        f"{cell('ferromine elkan')} | {cell('sklearn lloyd')} | {cell('sklearn elkan')} | {cell('faiss')} | {cell('sklearnex')} | "
                        f"{row['labels_equal_sklearn']} | {max(diffs.values()):.1e} |",
                        flush=True,
                    )
    if not args.no_init:
        print("\nk-means++ seeding alone (ratio = sklearn time / ferromine time; potential ratio = ours / sklearn's)\n")
        print("| n | d | k | dtype | ferromine s | sklearn s | ratio | potential ratio |")
        print("|---|---|---|---|---|---|---|---|")
        # Seeding costs the same per flop at every d: d = 16 only, except in --full.
        for n in ns:
            for dtype in dtypes:
                for d in (ds if args.full else ds[:1]):
                    for k in args.k:
                        r = bench_init(n, d, k, np.dtype(dtype), reps)
                        inits.append(r)
                        s = r["seconds"]
                        print(
                            f"| {n} | {d} | {k} | {dtype} | {s['ferromine']:.3f} | {s['sklearn kmeans_plusplus']:.3f} | "
                            f"{r['ratio']:.2f}x | {r['potential_ratio']:.3f} |",
                            flush=True,
                        )
    print(
        f"\nRatios are reference time / ferromine time (> 1: ferromine faster). GFLOP/s counts 2nkd per iteration; "
        f"the issue's float32 peak figure is {PEAK_F32_GFLOPS:.0f} GFLOP/s (2 AVX-512 cores). This CPU: {_cpu_isa()}. "
        "Each timed call starts after a 0.15 s pause, so the previous library's spinning "
        "OpenBLAS/OpenMP threads do not take a core from the next. "
        "Timings on a shared machine are noisy: compare ratios, not seconds."
    )
    threads = None
    if not args.quick:
        threads = bench_threads(ns[0], ds[0], 64, np.float32, reps)
        print(f"\n{threads['title']}: " + ", ".join(
            f"{j} -> {t:.3f}s ({c:.2f} cores used)" for j, t, c in zip(threads["x"], threads["seconds"], threads["cores_used"])))
        if threads["cores_used"][-1] < 0.8 * threads["x"][-1]:
            print(f"note: the {threads['x'][-1]}-thread runs got {threads['cores_used'][-1]:.2f} cores (machine shared): "
                  "their wall time does not measure scaling")
    # run.py --full sends the results to benches/results/full/.
    out = Path(os.environ.get("FERROMINE_BENCH_RESULTS", Path(__file__).resolve().parent / "results")) / "kmeans.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "load_avg": os.getloadavg()},
        "n_iter": N_ITER,
        "reps": reps,
        "fit": fits,
        "init": inits,
        "rows": _rows(fits, inits),
        "scaling": _scaling(fits, threads),
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
