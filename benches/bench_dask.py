"""Dask scale-out benchmark: ferromine.dask on a LocalCluster (1 and 2 worker
processes, 2 to 32 partitions) against single-machine ferromine on the same
data, in one process, alternating, medians of several repetitions. Every
comparison also checks that the answers agree (the distributed result must
equal the single-machine one: PSI values, k-means centres from the same
initial centres, isolation-forest offset and scores, itemset supports).

    python benches/bench_dask.py            # default: 2, 8 and 32 partitions
    python benches/bench_dask.py --quick    # small inputs, 2 and 8 partitions
    python benches/bench_dask.py --full     # larger inputs, 2 to 32 partitions

"overhead" = distributed time / single-machine time (single machine on as
many threads as the cluster has workers); its inverse is the `speedup` key the
report driver plots.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _harness import alternate, data_dir, machine, versions, write_json  # noqa: E402


def chunks(n: int, parts: int) -> tuple[int, ...]:
    """Unequal row chunks: sizes grow linearly (1, 2, ..., parts)."""
    w = np.arange(1, parts + 1, dtype=np.float64)
    cuts = np.round(np.cumsum(np.r_[0, w]) / w.sum() * n).astype(int)
    return tuple(int(b - a) for a, b in zip(cuts[:-1], cuts[1:]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--repeat", type=int, default=None)
    args = ap.parse_args()

    import dask
    import dask.array as da
    import dask.bag as db
    import distributed

    import ferromine.dask as fd
    from ferromine.cluster import KMeans
    from ferromine.drift import psi
    from ferromine.ensemble import IsolationForest
    from ferromine.frequent_patterns import fpgrowth, read_transactions

    scale = 0.25 if args.quick else (4.0 if args.full else 1.0)
    # The default keeps the whole suite inside its 15 minutes; --full runs
    # every partition count from 2 to 32.
    repeat = args.repeat or (1 if args.quick else 2)
    partitions = (2, 8) if args.quick else ((2, 4, 8, 16, 32) if args.full else (2, 8, 32))
    rng = np.random.default_rng(0)
    n_psi, d_psi = int(400_000 * scale), 10
    ref = rng.standard_normal((n_psi, d_psi))
    cur = rng.standard_normal((n_psi, d_psi)) + np.linspace(0, 0.3, d_psi)
    n_km, d_km, k = int(200_000 * scale), 10, 8
    centers = rng.normal(0, 4, (k, d_km))
    Xk = centers[rng.integers(0, k, n_km)] + rng.standard_normal((n_km, d_km))
    init = Xk[:k].copy()
    n_if = int(200_000 * scale)
    Xi = rng.standard_normal((n_if, 8))
    fimi = data_dir() / "fimi" / "mushroom.dat"
    if fimi.exists():
        tx = [list(t) for t in read_transactions(fimi).to_pylist()]
        fp_name = "mushroom"
    else:
        tx = [list(rng.choice(60, rng.integers(1, 15), replace=False)) for _ in range(8000)]
        fp_name = "generated 8k"
    reps = max(1, int(round(4 * scale)))
    # Replicated and shuffled (fixed seed), in equal partitions: mushroom.dat is
    # sorted, and SON's local candidates explode on tiny skewed partitions
    # (see docs/scale-out.md); this measures the overhead, not that worst case.
    tx = tx * reps
    tx = [tx[i] for i in np.random.default_rng(1).permutation(len(tx))]
    fp_support = 0.4

    rows = []
    for workers in (1, 2):
        with warnings.catch_warnings():
            # distributed may warn about the port or process start on a busy host
            warnings.simplefilter("ignore")
            cluster = distributed.LocalCluster(
                n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=":0", silence_logs=40
            )
            client = distributed.Client(cluster)
        try:
            for parts in partitions:
                c_psi = chunks(n_psi, parts)
                dref = da.from_array(ref, chunks=(c_psi, d_psi)).persist()
                dcur = da.from_array(cur, chunks=(c_psi, d_psi)).persist()
                dxk = da.from_array(Xk, chunks=(chunks(n_km, parts), d_km)).persist()
                dxi = da.from_array(Xi, chunks=(chunks(n_if, parts), 8)).persist()
                tb = tuple(len(a) for a in np.array_split(np.arange(len(tx)), parts))
                bounds = np.cumsum((0,) + tb)
                bag = db.from_delayed([dask.delayed(tx[a:b], traverse=False) for a, b in zip(bounds[:-1], bounds[1:])]).persist()
                distributed.wait([dref, dcur, dxk, dxi, bag])
                cases = {
                    f"PSI {n_psi:,} x {d_psi}, exact edges": (
                        lambda: np.asarray(fd.psi(dref, dcur)),
                        lambda: np.asarray(psi(ref, cur, n_jobs=workers)),
                        lambda a, b: float(np.max(np.abs(a - b))),
                    ),
                    f"PSI {n_psi:,} x {d_psi}, sketch edges": (
                        lambda: np.asarray(fd.psi(dref, dcur, method="approx")),
                        lambda: np.asarray(psi(ref, cur, n_jobs=workers)),
                        lambda a, b: float(np.max(np.abs(a - b))),
                    ),
                    f"k-means {n_km:,} x {d_km}, k={k}, same init": (
                        lambda: fd.KMeans(k, init=init, max_iter=30, tol=0).fit(dxk).cluster_centers_,
                        lambda: KMeans(k, init=init, n_init=1, max_iter=30, tol=0, n_jobs=workers).fit(Xk).cluster_centers_,
                        lambda a, b: float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))),
                    ),
                    f"isolation forest {n_if:,} x 8, fit + score": (
                        lambda: (lambda m: (m.offset_, m.score_samples(dxi).compute()))(
                            fd.IsolationForest(n_estimators=100, contamination=0.05, random_state=0).fit(dxi)
                        ),
                        lambda: (lambda m: (m.offset_, m.score_samples(Xi)))(
                            IsolationForest(n_estimators=100, contamination=0.05, random_state=0, n_jobs=workers).fit(Xi)
                        ),
                        None,
                    ),
                    f"fpgrowth {fp_name} x{reps} shuffled ({len(tx):,} tx), min_support={fp_support}": (
                        lambda: fd.fpgrowth(bag, min_support=fp_support),
                        lambda: fpgrowth(tx, min_support=fp_support, n_jobs=workers),
                        None,
                    ),
                }
                for case, (dist_fn, single_fn, diff_fn) in cases.items():
                    res = alternate({"dask": dist_fn, "single": single_fn}, repeat=repeat, budget_s=60)
                    a, b = res["dask"]["result"], res["single"]["result"]
                    if diff_fn is not None:
                        diff = diff_fn(a, b)
                        # exact: equal; k-means: 1e-9 relative; sketch edges: 1e-3 absolute
                        agree = diff <= (1e-9 if "k-means" in case else 1e-3 if "sketch" in case else 0.0)
                    elif case.startswith("isolation"):
                        # Sampled fit: the forest differs from the single-machine
                        # one; check the offset is the exact percentile of its scores.
                        diff = abs(a[0] - float(np.percentile(a[1], 5.0)))
                        agree = diff == 0.0
                    else:
                        got = dict(zip(a["itemsets"], a["support"]))
                        want = dict(zip(b["itemsets"], b["support"]))
                        diff = 0.0 if got == want else 1.0
                        agree = got == want
                    rows.append({
                        "case": case, "ours": f"ferromine.dask, {workers} worker{'s' * (workers > 1)}, {parts} partitions",
                        "reference": f"ferromine, {workers} thread{'s' * (workers > 1)}",
                        "workers": workers, "partitions": parts,
                        "ours_s": res["dask"]["median"], "reference_s": res["single"]["median"],
                        "speedup": res["single"]["median"] / res["dask"]["median"],
                        "overhead": res["dask"]["median"] / res["single"]["median"],
                        "max_abs_diff": diff, "agree": bool(agree),
                    })
                    print(f"{case}: {workers}w {parts}p dask {res['dask']['median']:.3f}s single {res['single']['median']:.3f}s", file=sys.stderr)
                del dref, dcur, dxk, dxi, bag
        finally:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                client.close()
                cluster.close()

    print(f"\nferromine.dask vs single-machine ferromine, machine: {machine()['cpu']}\n")
    print("| case | ours | reference | ours (s) | reference (s) | overhead | answers agree |")
    print("|---|---|---|---:|---:|---:|---|")
    for r in rows:
        ok = "yes" if r["agree"] else f"**NO** (diff {r['max_abs_diff']:.2e})"
        print(f"| {r['case']} | {r['ours']} | {r['reference']} | {r['ours_s']:.3f} | "
              f"{r['reference_s']:.3f} | {r['overhead']:.2f}x | {ok} |")
    path = write_json("dask", {"rows": rows, "partitions": list(partitions), "scale": scale,
                               "machine": machine(), "versions": versions("ferromine", "numpy", "dask", "distributed")})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
