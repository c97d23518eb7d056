"""FP-Growth benchmark: ferromine vs mlxtend, pyfim and rusket.

    python benches/bench_fpgrowth.py [--quick | --full] [--reps N] [--timeout S]

Every library gets one long-lived worker process per dataset and level: it
builds the same input there once, before the clock starts, and serves every
repetition. The libraries alternate within each repetition (the order reversed
every other one), and the table reports the median wall time of the mining
call, the peak RSS growth during the first call in that fresh process, and
whether the itemset counts agree. A library that is not installed is reported
as missing; a call that exceeds the timeout is stopped and shown as "timeout".
Writes ``benches/results/fpgrowth.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FERROMINE_DATA", REPO.parent / "shared" / "data")) / "fimi"
FILES = {
    "chess": "chess.dat",
    "mushroom": "mushroom.dat",
    "retail": "retail.dat.gz",
    "T10I4D100K": "T10I4D100K.dat.gz",
}
QUICK = [("chess", 0.8), ("mushroom", 0.2), ("T10I4D100K", 0.01), ("retail", 0.01)]
DEFAULT = QUICK + [("chess", 0.6), ("mushroom", 0.1), ("T10I4D100K", 0.001), ("retail", 0.001)]
FULL = QUICK + [
    ("chess", 0.6),
    ("chess", 0.5),
    ("chess", 0.4),
    ("mushroom", 0.1),
    ("mushroom", 0.05),
    ("mushroom", 0.01),
    ("T10I4D100K", 0.001),
    ("T10I4D100K", 0.0002),
    ("retail", 0.001),
    ("retail", 0.0002),
    ("generated-1M", 0.001),
]
DENSIFY_TOO_BIG = {"retail", "generated-1M"}
# Outputs made of one Python object (or more) per itemset: mlxtend's and our
# frozenset frames, pyfim's tuples, rusket's frame, the frozenset floor. At
# about 0.7 kB an itemset, beyond this count they would not fit in this
# machine's memory beside the other workers (mushroom 1 %: 91 M itemsets).
OBJECT_OUTPUT_MAX_ITEMSETS = 5_000_000
OBJECT_OUTPUTS = {"ferromine-pandas", "mlxtend", "pyfim-fpgrowth", "pyfim-eclat", "pyfim-relim", "rusket",
                  "frozenset-floor"}
LIBS = [
    "ferromine-arrow",
    "ferromine-pandas",
    "ferromine-count",
    "mlxtend",
    "pyfim-fpgrowth",
    "pyfim-eclat",
    "pyfim-relim",
    "pyfim-count",
    "rusket",
    "frozenset-floor",
    "ferromine-closed",
    "pyfim-closed",
    "ferromine-maximal",
    "pyfim-maximal",
]
# Closed and maximal itemsets (count output): their own table, not in the "agree" column.
CLOSED_LIBS = {"ferromine-closed", "pyfim-closed", "ferromine-maximal", "pyfim-maximal"}
# relim is pyfim's slowest miner on these sets: measured in --full only.
DEFAULT_LIBS = [lib for lib in LIBS if lib != "pyfim-relim"]


CACHE = Path(os.environ.get("FERROMINE_BENCH_CACHE", "/tmp/ferromine-bench-cache"))


def _csr(name: str):
    """The dataset as a one-hot CSR matrix over its sorted distinct items,
    parsed once and cached (every measurement runs in a fresh process)."""
    import numpy as np
    import scipy.sparse as sp

    path = CACHE / f"{name}.npz"
    if path.exists():
        z = np.load(path)
        return sp.csr_matrix((np.ones(len(z["indices"]), bool), z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    if name == "generated-1M":
        rng = np.random.default_rng(0)
        n, m = 1_000_000, 1000
        patterns = [rng.choice(m, size=rng.integers(2, 6), replace=False) for _ in range(200)]
        lengths = rng.poisson(8, n)
        popularity = rng.zipf(1.3, m * 10) % m
        rows = []
        for t in range(n):
            items = set(popularity[rng.integers(0, len(popularity), lengths[t])].tolist())
            if t % 3 == 0:
                items.update(patterns[t % 200].tolist())
            rows.append(sorted(items))
    else:
        from ferromine.frequent_patterns import read_transactions

        rows = read_transactions(DATA / FILES[name]).to_pylist()
    vocab = sorted({i for r in rows for i in r})
    index = {v: k for k, v in enumerate(vocab)}
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.fromiter((index[i] for r in rows for i in r), dtype=np.int64, count=int(indptr[-1]))
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:  # written aside, then renamed: a reader never sees half a file
        np.savez(f, indptr=indptr, indices=indices, shape=np.array([len(rows), len(vocab)]))
    tmp.replace(path)
    return sp.csr_matrix((np.ones(len(indices), bool), indices, indptr), shape=(len(rows), len(vocab)))


def load(name: str, need_frame: bool = True):
    """(transactions as lists of item ids, one-hot pandas frame or None)."""
    import pandas as pd

    X = _csr(name)
    rows = [X.indices[X.indptr[i]:X.indptr[i + 1]].tolist() for i in range(X.shape[0])]
    if not need_frame:
        return rows, None
    if X.shape[1] <= 200:
        df = pd.DataFrame(X.toarray(), columns=list(range(X.shape[1])))
    else:  # a dense frame would not fit: SparseDtype columns, mlxtend's sparse input
        df = pd.DataFrame.sparse.from_spmatrix(X, columns=list(range(X.shape[1])))
        df = df.astype(pd.SparseDtype(bool, False))
    return rows, df


def min_count(ms: float, n: int) -> int:
    c = min(int(-(-ms * n // 1)), n)
    while c > 0 and (c - 1) / n >= ms:
        c -= 1
    while c < n and c / n < ms:
        c += 1
    return max(c, 1)


def warm_up(lib: str) -> None:
    """One untimed call on a tiny input: lazy imports, thread pools, core detection."""
    import pandas as pd

    tiny = pd.DataFrame({"a": [True, True, False], "b": [True, False, True]})
    if lib.startswith("ferromine") or lib == "frozenset-floor":
        from ferromine.frequent_patterns import fpgrowth

        for out in ("arrow", "pandas", "count"):
            fpgrowth(tiny, 0.3, output=out)
    elif lib == "mlxtend":
        from mlxtend.frequent_patterns import fpgrowth

        fpgrowth(tiny, 0.3)
    elif lib.startswith("pyfim"):
        import fim

        fim.fpgrowth([[1, 2], [1]], supp=-1)
    elif lib == "rusket":
        import rusket

        rusket.fpgrowth(tiny, 0.3, use_colnames=False)


def prepare(lib: str, dataset: str, ms: float):
    """Load the input for ``lib`` once; return a callable that runs one timed
    mining call on it and returns {"time", "count", ...}, and the loaded
    objects, which the caller keeps alive so that the call cannot reuse their
    freed pages and hide its own memory."""
    rows, df = load(dataset, need_frame=lib in ("ferromine-pandas", "mlxtend"))
    n = len(rows)
    warm_up(lib)
    c = min_count(ms, n)
    if lib in ("ferromine-closed", "ferromine-maximal"):
        from ferromine.frequent_patterns import fpclosed, fpmax

        miner = fpclosed if lib == "ferromine-closed" else fpmax
        data = _csr(dataset)

        def run() -> dict:
            t = time.perf_counter()
            res = miner(data, ms, output="count", max_itemsets=None)
            dt = time.perf_counter() - t
            return {"time": dt, "count": int(res)}

    elif lib.startswith("ferromine"):
        from ferromine.frequent_patterns import fpgrowth

        out = {"ferromine-arrow": "arrow", "ferromine-pandas": "pandas", "ferromine-count": "count"}[lib]
        # The frozenset frame is measured on mlxtend's input (the drop-in case);
        # the columnar and count outputs on our fastest input, a CSR matrix,
        # as pyfim gets its fastest (lists) and rusket its own.
        data = df if out == "pandas" else _csr(dataset)

        def run() -> dict:
            t = time.perf_counter()
            res = fpgrowth(data, ms, output=out, max_itemsets=None)
            dt = time.perf_counter() - t
            return {"time": dt, "count": int(res if out == "count" else len(res))}

    elif lib == "mlxtend":
        from mlxtend.frequent_patterns import fpgrowth

        def run() -> dict:
            t = time.perf_counter()
            res = fpgrowth(df, ms)
            dt = time.perf_counter() - t
            return {"time": dt, "count": len(res)}

    elif lib.startswith("pyfim"):
        import fim

        algo = {"pyfim-fpgrowth": fim.fpgrowth, "pyfim-eclat": fim.eclat, "pyfim-relim": fim.relim,
                "pyfim-count": fim.fpgrowth, "pyfim-closed": fim.fpgrowth, "pyfim-maximal": fim.fpgrowth}[lib]
        report = "#" if lib in ("pyfim-count", "pyfim-closed", "pyfim-maximal") else "a"
        target = {"pyfim-closed": "c", "pyfim-maximal": "m"}.get(lib, "s")
        # pyfim omits an item present in every transaction (and its supersets' class).
        X = _csr(dataset)
        full = int((X.getnnz(axis=0) == n).sum())
        del X

        def run() -> dict:
            t = time.perf_counter()
            res = algo(rows, target=target, supp=-c, report=report)
            dt = time.perf_counter() - t
            count = int(sum(res.values())) if report == "#" else len(res)
            return {"time": dt, "count": count, "omits_full_items": full}

    elif lib == "rusket":
        import rusket

        X = _csr(dataset)  # rusket's fastest input (measured: 2.8x its pandas path on retail)

        def run() -> dict:
            t = time.perf_counter()
            res = rusket.fpgrowth(X, ms, use_colnames=False)
            dt = time.perf_counter() - t
            return {"time": dt, "count": len(res)}

    elif lib == "frozenset-floor":
        import numpy as np

        from ferromine import _core
        from ferromine.frequent_patterns import fpgrowth

        table = fpgrowth(_csr(dataset), ms, output="arrow", max_itemsets=None)
        lists = table["itemsets"].combine_chunks()
        tuples = [tuple(x) for x in lists.to_pylist()]
        offsets = np.asarray(lists.offsets).astype(np.uint64)
        items = np.asarray(lists.values).astype(np.uint32)

        def run() -> dict:
            t = time.perf_counter()
            floor = [frozenset(x) for x in tuples]
            dt = time.perf_counter() - t
            t = time.perf_counter()
            ours = _core.fp_frozensets(offsets, items)
            ours_s = time.perf_counter() - t
            if len(ours) != len(floor):
                raise AssertionError(f"fp_frozensets built {len(ours)} sets for {len(floor)} itemsets")
            return {"time": dt, "count": len(floor), "ours_frozensets_s": ours_s}

    else:
        raise ValueError(lib)
    return run, (rows, df)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(field)


def peak_start() -> tuple[float, bool]:
    """Start measuring peak RSS: on Linux reset the high-water mark to the
    current RSS (``clear_refs`` 5), so a transient peak while the input was
    built does not mask the call's; elsewhere fall back to ``ru_maxrss``."""
    import ctypes
    import gc

    gc.collect()
    try:  # hand pages freed while the input was built back to the OS, so the call cannot reuse them unseen
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_mb("VmRSS"), True
    except OSError:
        return _maxrss_mb(), False


def peak_growth(start: tuple[float, bool]) -> float:
    base, reset = start
    return max(0.0, (_status_mb("VmHWM") if reset else _maxrss_mb()) - base)


def serve(conn, lib: str, dataset: str, ms: float) -> None:
    """Worker loop: build the input once, say ready, then one timed call per
    "run" message, until the parent closes the pipe.

    The first call in this fresh process also gives the peak RSS growth of the
    call (later calls reuse pages the first one freed, so only the first is a
    clean measurement)."""
    import warnings

    warnings.simplefilter("ignore")
    try:
        run, keep = prepare(lib, dataset, ms)  # noqa: F841 (kept alive on purpose)
        conn.send({"ready": True})
        first = True
        while conn.recv() == "run":
            start = peak_start()
            res = run()
            if first:
                res["peak_mb"] = peak_growth(start)
                first = False
            conn.send(res)
    except EOFError:
        return
    except BaseException as exc:  # reported in the table, not lost in a traceback
        conn.send({"error": f"{type(exc).__name__}: {exc}"[:300]})


def installed(lib: str) -> bool:
    mod = {"mlxtend": "mlxtend", "rusket": "rusket"}.get(lib, "fim" if lib.startswith("pyfim") else "ferromine")
    import importlib.util

    return importlib.util.find_spec(mod) is not None


# Imported once in a fork server; every worker is forked from it, so a worker
# starts in a fraction of a second instead of re-importing pandas, scikit-learn
# (through ferromine) and the references. Nothing here starts a thread pool
# that a fork would break: rayon's and Arrow's pools start lazily in the worker.
PRELOAD = ["numpy", "scipy.sparse", "pandas", "pyarrow", "ferromine.frequent_patterns",
           "mlxtend.frequent_patterns", "fim", "rusket"]
_CONTEXT = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        import multiprocessing

        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)  # a missing module is skipped, reported by installed()
    return _CONTEXT


class Worker:
    """A child process for one (library, dataset, level): it builds the input
    once and serves every repetition, so start-up and input building are paid
    once per library and level, not once per measurement."""

    def __init__(self, lib: str, dataset: str, ms: float) -> None:
        ctx = _context()
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child, lib, dataset, ms), daemon=True)
        self.proc.start()
        child.close()

    def _reply(self, timeout: float) -> dict:
        if not self.conn.poll(timeout):
            self.close(kill=True)
            return {"status": "timeout"}
        try:
            msg = self.conn.recv()
        except EOFError:
            self.proc.join(10)
            msg = {"error": f"worker died (exit {self.proc.exitcode})"}
        if "error" in msg:
            self.close(kill=True)
            return {"status": "error", "error": [msg["error"]]}
        return {"status": "ok", **msg}

    def ready(self, timeout: float) -> dict:
        return self._reply(timeout)

    def run(self, timeout: float) -> dict:
        self.conn.send("run")
        return self._reply(timeout)

    def close(self, kill: bool = False) -> None:
        if kill and self.proc.is_alive():
            self.proc.kill()
        self.conn.close()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def measure(dataset: str, ms: float, libs: list[str], reps: int, timeout: float, budget: float) -> dict:
    """Every library on one (dataset, level): one worker each, started
    together (input building is not timed), then the repetitions, one call at
    a time, alternating libraries and reversing their order every other
    repetition so drifting load on a shared machine hits all alike."""
    X = _csr(dataset)  # build the shared cache once, before the workers read it
    n_itemsets = 0
    if OBJECT_OUTPUTS & set(libs):  # untimed: sizes the object outputs
        from ferromine.frequent_patterns import fpgrowth

        n_itemsets = fpgrowth(X, ms, output="count", max_itemsets=None)
    del X
    runs: dict[str, list[dict]] = {lib: [] for lib in libs}
    workers: dict[str, Worker] = {}
    for lib in libs:
        if not installed(lib):
            runs[lib].append({"status": "missing"})
        elif lib in OBJECT_OUTPUTS and n_itemsets > OBJECT_OUTPUT_MAX_ITEMSETS:
            runs[lib].append({"status": f"skipped ({n_itemsets / 1e6:.0f} M Python objects)"})
        elif lib == "mlxtend" and dataset in DENSIFY_TOO_BIG:
            # mlxtend densifies sparse frames (df.values): 88 k x 16 k objects for retail.
            runs[lib].append({"status": "skipped (densifies)"})
        else:
            workers[lib] = Worker(lib, dataset, ms)
    for lib, w in list(workers.items()):
        r = w.ready(timeout=max(timeout, 600))
        if r["status"] != "ok":
            runs[lib].append(r)
            del workers[lib]
    try:
        for rep in range(reps):
            order = libs if rep % 2 == 0 else libs[::-1]
            for lib in order:
                w = workers.get(lib)
                if w is None:
                    continue
                r = w.run(timeout)
                runs[lib].append(r)
                if r["status"] != "ok" or r["time"] > budget:
                    w.close()
                    del workers[lib]
    finally:
        for w in workers.values():
            w.close()
    row = {"dataset": dataset, "min_support": ms, "libs": {}}
    for lib, rs in runs.items():
        ok = [r for r in rs if r["status"] == "ok"]
        if ok:
            row["libs"][lib] = {
                "status": "ok",
                "time": statistics.median(r["time"] for r in ok),
                "times": [r["time"] for r in ok],
                "peak_mb": ok[0]["peak_mb"],
                "count": ok[0]["count"],
                "counts_stable": all(r["count"] == ok[0]["count"] for r in ok),
                **{k: statistics.median(r[k] for r in ok) for k in ok[0] if k.endswith("_s")},
                **{k: ok[0][k] for k in ok[0] if k == "omits_full_items"},
            }
            bad = [r for r in rs if r["status"] != "ok"]
            if bad:  # e.g. a later repetition timed out: say so next to the medians
                row["libs"][lib]["later"] = bad[-1]["status"]
        else:
            row["libs"][lib] = rs[-1] if rs else {"status": "skipped"}
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the four easiest ground-truth levels")
    mode.add_argument("--full", action="store_true", help="down to chess 40 %%, mushroom 1 %%, 1M generated")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3, quick 1)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds one mining call may take")
    ap.add_argument("--budget", type=float, default=30, help="a library whose first run takes longer is not repeated")
    ap.add_argument("--only", nargs="*", help="dataset:min_support configs")
    ap.add_argument("--libs", nargs="*", default=None)
    args = ap.parse_args()
    configs = QUICK if args.quick else (FULL if args.full else DEFAULT)
    args.reps = args.reps or (1 if args.quick else 3)
    args.libs = args.libs or (LIBS if args.full else DEFAULT_LIBS)
    if args.only:
        configs = [(c.split(":")[0], float(c.split(":")[1])) for c in args.only]
    results = []
    for dataset, ms in configs:
        row = measure(dataset, ms, args.libs, args.reps, args.timeout, args.budget)
        results.append(row)
        print_row(row, header=len(results) == 1)
    if CLOSED_LIBS & set(args.libs):
        print_closed(results)
    print(
        f"\nMedian of {args.reps} calls per library (one worker process per library and level, input built "
        f"before the clock starts; a library slower than {args.budget:g} s is not repeated; a call over "
        f"{args.timeout:g} s is stopped and shown as timeout). Peak = RSS growth during the first call in "
        "that fresh process. pyfim omits an item present in every transaction, so its count may be lower "
        "there without disagreeing."
    )
    # run.py --full sends the results to benches/results/full/.
    out = Path(os.environ.get("FERROMINE_BENCH_RESULTS", REPO / "benches" / "results"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "fpgrowth.json").write_text(json.dumps(
        {"reps": args.reps, "timeout_s": args.timeout, "budget_s": args.budget, "results": results,
         "rows": _rows(results), "scaling": _scaling(results)}, indent=1))


# (ours, reference) pairs shown as speed-up bars: columnar output against the
# fastest miners, mlxtend's frozenset frame against mlxtend, counts against counts.
PAIRS = [
    ("ferromine-arrow", "pyfim best"),
    ("ferromine-arrow", "rusket"),
    ("ferromine-arrow", "mlxtend"),
    ("ferromine-pandas", "mlxtend"),
    ("ferromine-count", "pyfim-count"),
]


def _best_pyfim(libs: dict) -> dict | None:
    ok = [libs[k] for k in ("pyfim-fpgrowth", "pyfim-eclat", "pyfim-relim") if libs.get(k, {}).get("status") == "ok"]
    return min(ok, key=lambda p: p["time"]) if ok else None


def _rows(results: list[dict]) -> list[dict]:
    rows = []
    for res in results:
        libs = dict(res["libs"])
        libs["pyfim best"] = _best_pyfim(libs)
        ours_n = libs.get("ferromine-arrow", {}).get("count")
        for ours, ref in PAIRS:
            a, b = libs.get(ours), libs.get(ref)
            if not a or not b or a.get("status") != "ok" or b.get("status") != "ok":
                continue
            agree = (b["count"] == ours_n or (ref.startswith("pyfim") and b.get("omits_full_items", 0) > 0)) and (
                a["count"] == ours_n and a.get("counts_stable", True) and b.get("counts_stable", True))
            rows.append({
                "case": f"{res['dataset']} {res['min_support']:g} ({ours_n:,} itemsets)", "ours": ours,
                "reference": ref, "ours_s": a["time"], "reference_s": b["time"],
                "speedup": b["time"] / a["time"], "agree": bool(agree),
                "ours_peak_mb": a["peak_mb"], "reference_peak_mb": b["peak_mb"],
            })
    return rows


def _scaling(results: list[dict]) -> list[dict]:
    """Time against the number of itemsets found, per dataset, for every library."""
    series = []
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        pts = sorted((r for r in results if r["dataset"] == dataset),
                     key=lambda r: r["libs"].get("ferromine-arrow", {}).get("count", 0))
        if len(pts) < 2:
            continue
        names = ["ferromine-arrow", "ferromine-pandas", "mlxtend", "pyfim-fpgrowth", "rusket"]
        series.append({
            "title": f"FP-Growth on {dataset}: time against output size", "x_label": "frequent itemsets",
            "x": [r["libs"].get("ferromine-arrow", {}).get("count", 0) for r in pts],
            "lines": {n: [r["libs"].get(n, {}).get("time") for r in pts] for n in names},
        })
    return series


def fmt(r: dict | None) -> str:
    if not r:
        return "-"
    if r.get("status") != "ok":
        return f"**{r['status']}**" if r.get("status") in ("timeout", "error") else r.get("status", "-")
    later = f" (then **{r['later']}**)" if r.get("later") else ""
    return f"{r['time']:.3f}s/{r['peak_mb']:.0f}MB{later}"


def ratio(a: dict | None, b: dict | None) -> str:
    if not a or not b or a.get("status") != "ok" or b.get("status") != "ok" or a["time"] <= 0:
        return "-"
    return f"{b['time'] / a['time']:.1f}x"


def print_row(row: dict, header: bool) -> None:
    L = row["libs"]
    pyfim = [L.get(k) for k in ("pyfim-fpgrowth", "pyfim-eclat", "pyfim-relim")]
    pyfim = [p for p in pyfim if p and p.get("status") == "ok"]
    best = min(pyfim, key=lambda p: p["time"]) if pyfim else None
    ours = L.get("ferromine-arrow")
    counts = {k: v["count"] for k, v in L.items()
              if v.get("status") == "ok" and k != "frozenset-floor" and k not in CLOSED_LIBS}
    fim_full = max((v.get("omits_full_items", 0) for v in L.values() if v.get("status") == "ok"), default=0)
    ours_n = counts.get("ferromine-arrow")
    agree = all(
        c == ours_n or (k.startswith("pyfim") and fim_full and c < ours_n) for k, c in counts.items()
    ) and all(v.get("counts_stable", True) for k, v in L.items() if v.get("status") == "ok")
    floor = L.get("frozenset-floor")
    fs = (
        f"{floor['ours_frozensets_s']:.3f}s vs {floor['time']:.3f}s"
        if floor and floor.get("status") == "ok"
        else "-"
    )
    if header:
        print(
            "| config | itemsets | ours arrow | ours pandas | ours count | mlxtend | pyfim best | pyfim count"
            " | rusket | vs mlxtend (arrow/pandas) | vs pyfim best | vs rusket | count vs pyfim count"
            " | frozensets ours vs floor | agree |"
        )
        print("|" + "---|" * 15)
    print(
        f"| {row['dataset']} {row['min_support']} | {ours_n} | {fmt(ours)} | {fmt(L.get('ferromine-pandas'))}"
        f" | {fmt(L.get('ferromine-count'))} | {fmt(L.get('mlxtend'))} | {fmt(best)}"
        f" | {fmt(L.get('pyfim-count'))} | {fmt(L.get('rusket'))}"
        f" | {ratio(ours, L.get('mlxtend'))}/{ratio(L.get('ferromine-pandas'), L.get('mlxtend'))}"
        f" | {ratio(ours, best)} | {ratio(ours, L.get('rusket'))}"
        f" | {ratio(L.get('ferromine-count'), L.get('pyfim-count'))} | {fs} | {'yes' if agree else 'NO'} |",
        flush=True,
    )


def print_closed(results: list[dict]) -> None:
    """Closed and maximal itemsets, count output, against pyfim's fpgrowth
    (target "c" / "m", pattern spectrum): times, ratio, counts equal."""
    print("\nClosed and maximal itemsets (count output; ratio = pyfim / ours)\n")
    print("| config | closed | ours | pyfim | ratio | maximal | ours | pyfim | ratio | agree |")
    print("|" + "---|" * 10)
    for row in results:
        L = row["libs"]
        cells, agree = [], True
        for ours, ref in (("ferromine-closed", "pyfim-closed"), ("ferromine-maximal", "pyfim-maximal")):
            a, b = L.get(ours), L.get(ref)
            ok = bool(a and b and a.get("status") == "ok" and b.get("status") == "ok")
            # pyfim omits an item present in every transaction: then its counts may differ.
            agree &= not ok or a["count"] == b["count"] or b.get("omits_full_items", 0) > 0
            cells += [str(a["count"]) if a and a.get("status") == "ok" else "-", fmt(a), fmt(b), ratio(a, b)]
        print(f"| {row['dataset']} {row['min_support']} | " + " | ".join(cells) + f" | {'yes' if agree else 'NO'} |")


if __name__ == "__main__":
    main()
