"""The foundation every kernel shares: threads, fork, errors, GIL, Ctrl-C, zero copy, stubs."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import threadpoolctl

import ferromine
from ferromine import _core
from ferromine._intake import read_features
from ferromine._threads import resolve_n_jobs
from ferromine.drift import PSIDrift


def run_python(code: str, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


# ---------------------------------------------------------------- threads
def test_n_jobs_resolution(monkeypatch):
    monkeypatch.delenv("FERROMINE_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3,2")
    assert resolve_n_jobs(None) == 3
    monkeypatch.setenv("FERROMINE_NUM_THREADS", "5")
    assert resolve_n_jobs(None) == 5
    assert resolve_n_jobs(4) == 4
    import joblib

    cores = joblib.cpu_count(only_physical_cores=True)
    assert resolve_n_jobs(-1) == cores
    assert resolve_n_jobs(-cores - 5) == 1
    with pytest.raises(ValueError, match="n_jobs=0"):
        resolve_n_jobs(0)
    with pytest.raises(TypeError, match="n_jobs must be None or an int"):
        resolve_n_jobs(1.5)


def test_threadpoolctl_sees_and_caps_ferromine():
    infos = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "ferromine"]
    assert len(infos) == 1
    assert infos[0]["version"] == ferromine.__version__
    before = ferromine.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=1, user_api="ferromine"):
        assert ferromine.get_num_threads() == 1
        # Capped calls still give the same answer.
        x = np.random.default_rng(0).standard_normal((100_000, 4))
        capped = PSIDrift(n_jobs=2).fit(x).psi(x[::-1] * 1.1)
    assert ferromine.get_num_threads() == before
    np.testing.assert_array_equal(capped, PSIDrift(n_jobs=2).fit(x).psi(x[::-1] * 1.1))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_pools_survive_fork():
    # Use the pool, fork, use it again in the child: no deadlock, same answer.
    out = run_python(
        """
        import os, numpy as np
        from ferromine.drift import PSIDrift
        x = np.random.default_rng(0).standard_normal((200_000, 4))
        parent = PSIDrift(n_jobs=2).fit(x).psi(x * 1.2)
        pid = os.fork()
        if pid == 0:
            child = PSIDrift(n_jobs=2).fit(x).psi(x * 1.2)
            os._exit(0 if np.array_equal(child, parent) else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        """,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "child 0" in out.stdout


# ----------------------------------------------------------------- errors
def test_panic_becomes_runtime_error():
    with pytest.raises(RuntimeError, match="internal error: panic: deliberate test panic"):
        _core._panic_in_kernel()
    # The interpreter and the pool are still fine afterwards.
    x = np.arange(100.0).reshape(-1, 1)
    np.testing.assert_array_equal(PSIDrift().fit(x).psi(x), 0.0)


def test_core_rejects_bad_calls_with_python_exceptions():
    with pytest.raises(TypeError):
        _core.psi_quantiles(np.ones((3, 2), dtype=np.int64), [0.5])
    with pytest.raises(ValueError, match="quantile probabilities must lie in"):
        _core.psi_quantiles(np.ones((3, 2)), [1.5])
    with pytest.raises(ValueError, match="bin edges of feature 0 must be sorted"):
        _core.psi_histograms(np.ones((3, 1)), [np.array([2.0, 1.0])])
    with pytest.raises(ValueError, match="got bin edges for 2 features"):
        _core.psi_histograms(np.ones((3, 1)), [np.array([1.0]), np.array([1.0])])
    with pytest.raises(ValueError, match="same number of rows"):
        _core.psi_extents([[np.ones(3)], [np.ones(4)]])
    with pytest.raises(TypeError, match="expected Arrow data"):
        _core.arrow_columns(object())


# -------------------------------------------------------------------- GIL
def test_gil_is_released_during_kernels():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3_000_000, 4))
    est = PSIDrift(n_jobs=1).fit(x[:100_000])

    def spin(seconds):
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            n += 1
        return n

    alone = spin(0.3)
    done = threading.Event()
    counts = []

    def other():
        while not done.is_set():
            counts.append(spin(0.05))

    t = threading.Thread(target=other)
    t.start()
    start = time.perf_counter()
    for _ in range(3):
        est.psi(x)
    elapsed = time.perf_counter() - start
    done.set()
    t.join()
    # Had the kernel held the GIL, the other thread would barely have run.
    rate_during = sum(counts) / max(elapsed, 1e-9)
    assert rate_during > 0.2 * alone / 0.3, (rate_during, alone)


def test_two_threads_score_at_once():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((400_000, 3))
    curs = [rng.standard_normal((400_000, 3)) + s for s in (0.1, 0.4)]
    est = PSIDrift(n_jobs=1).fit(ref)
    expected = [est.psi(c) for c in curs]
    results = [None, None]

    def score(i):
        results[i] = est.psi(curs[i])

    threads = [threading.Thread(target=score, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------- Ctrl-C
def test_ctrl_c_interrupts_a_long_call():
    # 20M rows x 100 features (broadcast, no memory) is far more than a second
    # of work; a SIGINT from a timer thread must stop it promptly.
    column = np.random.default_rng(0).standard_normal(20_000_000)
    x = np.broadcast_to(column[:, None], (column.size, 100))
    sent = []

    def interrupt():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(0.3, interrupt)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        PSIDrift(n_jobs=2).fit(x)
    latency = time.perf_counter() - sent[0]
    timer.join()
    assert latency < 2.0, f"took {latency:.2f} s to stop after SIGINT"
    # Still usable afterwards.
    small = column[:1000, None]
    np.testing.assert_array_equal(PSIDrift().fit(small).psi(small), 0.0)


# -------------------------------------------------------------- zero copy
def test_arrow_float_columns_are_not_copied():
    values = np.random.default_rng(0).standard_normal(1000)
    table = pa.table({"x": values, "y": values.astype(np.float32)})
    (_, kind_x, chunks_x), (_, kind_y, chunks_y) = _core.arrow_columns(table)
    assert (kind_x, kind_y) == ("float", "float")
    buf = table.column("x").chunk(0).buffers()[1]
    assert chunks_x[0].ctypes.data == buf.address
    assert not chunks_x[0].flags.writeable
    frame = pl.DataFrame({"x": values})
    (_, _, chunks), = _core.arrow_columns(frame)
    assert np.shares_memory(chunks[0], frame["x"].to_numpy())


def test_numpy_and_pandas_columns_are_not_copied():
    x = np.random.default_rng(0).standard_normal((100, 3))
    assert read_features(x).numeric is x
    frame = pd.DataFrame(x, columns=list("abc"))
    feats = read_features(frame)
    assert all(np.shares_memory(chunks[0], frame.to_numpy()) for chunks in feats.numeric)


def test_arrow_nulls_strings_and_dictionaries():
    table = pa.table({
        "f": pa.array([1.0, None, 3.0]),
        "i": pa.array([1, 2, None], type=pa.int32()),
        "s": pa.array(["a", None, "b"]),
        "d": pa.array(["x", "y", "x"]).dictionary_encode(),
        "b": pa.array([True, None, False]),
    })
    cols = {name: (kind, payload) for name, kind, payload in _core.arrow_columns(table)}
    assert cols["f"][0] == "float-converted"
    np.testing.assert_array_equal(cols["f"][1][0], [1.0, np.nan, 3.0])
    np.testing.assert_array_equal(cols["i"][1][0], [1.0, 2.0, np.nan])
    codes, cats = cols["s"][1]
    assert list(codes) == [0, -1, 1] and cats == ["a", "b"]
    codes, cats = cols["d"][1]
    assert [cats[c] for c in codes] == ["x", "y", "x"]
    assert cols["b"][0] == "bool" and list(cols["b"][1][0]) == [1, -1, 0]
    polars_strings = pl.DataFrame({"s": ["u", "v", None]})  # large_string / string_view
    (_, kind, (codes, cats)), = _core.arrow_columns(polars_strings)
    assert kind == "category" and list(codes) == [0, 1, -1] and cats == ["u", "v"]
    with pytest.raises(TypeError, match="column 'l' has Arrow type"):
        _core.arrow_columns(pa.table({"l": pa.array([[1], [2]])}))


def test_scoring_a_large_float32_array_does_not_copy_it():
    # Peak RSS while scoring stays far below the input plus a copy.
    out = run_python(
        """
        import json, resource, numpy as np
        from ferromine.drift import PSIDrift
        rng = np.random.default_rng(0)
        x = rng.standard_normal((4_000_000, 10), dtype=np.float32)
        est = PSIDrift(n_jobs=2).fit(x[:200_000])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        est.psi(x)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"input": x.nbytes, "extra": after - before}))
        """
    )
    assert out.returncode == 0, out.stderr
    import json

    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["extra"] < 0.1 * m["input"], m


# ------------------------------------------------------------------ stubs
def test_stubs_match_the_extension():
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "ferromine._core", "--ignore-disjoint-bases"],
        capture_output=True, text=True, timeout=300,
    )
    if "unrecognized arguments: --ignore-disjoint-bases" in out.stderr:
        out = subprocess.run(
            [sys.executable, "-m", "mypy.stubtest", "ferromine._core"],
            capture_output=True, text=True, timeout=300,
        )
    assert out.returncode == 0, out.stdout + out.stderr
