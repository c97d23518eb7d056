//! Frequent itemsets and association rules for Python: convert, release the
//! GIL, call the core; and build frozenset columns directly from the ids.

use ferromine_core::datasets;
use ferromine_core::fpgrowth::{self, Kind, MineParams, RuleParams};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyList};

use crate::run::{run, threads};

/// An index array as NumPy hands it over (scipy uses int32 or int64).
#[derive(FromPyObject)]
pub enum Ids<'py> {
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
    U32(PyReadonlyArray1<'py, u32>),
    U64(PyReadonlyArray1<'py, u64>),
}

enum IdsView<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
    U32(&'a [u32]),
    U64(&'a [u64]),
}

impl Ids<'_> {
    fn view(&self, name: &str) -> PyResult<IdsView<'_>> {
        let err =
            |_| PyValueError::new_err(format!("{name} must be a contiguous 1-D integer array"));
        Ok(match self {
            Ids::I32(a) => IdsView::I32(a.as_slice().map_err(err)?),
            Ids::I64(a) => IdsView::I64(a.as_slice().map_err(err)?),
            Ids::U32(a) => IdsView::U32(a.as_slice().map_err(err)?),
            Ids::U64(a) => IdsView::U64(a.as_slice().map_err(err)?),
        })
    }
}

macro_rules! with_ids {
    ($v:expr, $s:ident => $body:expr) => {
        match $v {
            IdsView::I32($s) => $body,
            IdsView::I64($s) => $body,
            IdsView::U32($s) => $body,
            IdsView::U64($s) => $body,
        }
    };
}

type Mined<'py> = (
    Bound<'py, PyArray1<u64>>,
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray1<u64>>,
    u64,
);

/// Mines itemsets from CSR transactions: `(offsets, items, counts,
/// n_itemsets)`; items are column ids, ascending within an itemset.
#[pyfunction]
#[pyo3(signature = (indptr, indices, n_items, min_count, kind="all", max_len=None, max_itemsets=None, count_only=false, n_threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn fp_mine<'py>(
    py: Python<'py>,
    indptr: Ids<'py>,
    indices: Ids<'py>,
    n_items: usize,
    min_count: u64,
    kind: &str,
    max_len: Option<usize>,
    max_itemsets: Option<u64>,
    count_only: bool,
    n_threads: Option<usize>,
) -> PyResult<Mined<'py>> {
    let kind = match kind {
        "all" => Kind::All,
        "closed" => Kind::Closed,
        "maximal" => Kind::Maximal,
        other => {
            return Err(PyValueError::new_err(format!(
                "kind must be 'all', 'closed' or 'maximal', got {other:?}"
            )))
        }
    };
    let params = MineParams {
        min_count,
        max_len,
        kind,
        max_itemsets,
        count_only,
    };
    let p = indptr.view("indptr")?;
    let i = indices.view("indices")?;
    let out = run(
        py,
        threads(n_threads),
        |cancel| with_ids!(&p, p => with_ids!(&i, i => fpgrowth::mine(p, i, n_items, params, cancel))),
    )?;
    Ok((
        out.offsets.into_pyarray(py),
        out.items.into_pyarray(py),
        out.counts.into_pyarray(py),
        out.n_itemsets,
    ))
}

type Csr<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<u32>>);

/// CSR `(indptr, indices)` of a dense one-hot matrix: `data` is a
/// C-contiguous 2-D uint8 view of the bool matrix, or of its transpose when
/// `transposed` (a pandas frame's column-major values, without a copy).
#[pyfunction]
#[pyo3(signature = (data, transposed=false))]
pub fn fp_csr_of_dense<'py>(
    py: Python<'py>,
    data: PyReadonlyArray2<'py, u8>,
    transposed: bool,
) -> PyResult<Csr<'py>> {
    let (rows, cols) = data.as_array().dim();
    let (n, m) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let cells = data
        .as_slice()
        .map_err(|_| PyValueError::new_err("data must be a C-contiguous 2-D uint8 array"))?;
    let (indptr, indices) = run(py, 1, |cancel| {
        fpgrowth::csr_of_dense(cells, n, m, transposed, cancel)
    })?;
    Ok((indptr.into_pyarray(py), indices.into_pyarray(py)))
}

/// Pauses Python's cyclic GC while alive (restoring its previous state):
/// without it, the allocations of the new sets trigger collections that walk
/// every tracked object of the process, whatever a caller set up before.
struct GcPause(bool);

impl GcPause {
    fn new() -> Self {
        // SAFETY: called with the GIL held (we hold a `Python` token).
        GcPause(unsafe { ffi::PyGC_Disable() } != 0)
    }
}

impl Drop for GcPause {
    fn drop(&mut self) {
        if self.0 {
            // SAFETY: as above; dropped before the GIL-holding function returns.
            unsafe { ffi::PyGC_Enable() };
        }
    }
}

/// Support count of each candidate itemset `items[offsets[k]:offsets[k+1]]`
/// (item ids) over CSR transactions; for the global pass of distributed mining.
#[pyfunction]
#[pyo3(signature = (indptr, indices, n_items, offsets, items, n_threads=None))]
pub fn fp_count_itemsets<'py>(
    py: Python<'py>,
    indptr: Ids<'py>,
    indices: Ids<'py>,
    n_items: usize,
    offsets: PyReadonlyArray1<'py, u64>,
    items: PyReadonlyArray1<'py, u32>,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let p = indptr.view("indptr")?;
    let i = indices.view("indices")?;
    let contiguous =
        |what: &str| PyValueError::new_err(format!("{what} must be a contiguous 1-D array"));
    let off = offsets.as_slice().map_err(|_| contiguous("offsets"))?;
    let its = items.as_slice().map_err(|_| contiguous("items"))?;
    let counts = run(
        py,
        threads(n_threads),
        |cancel| with_ids!(&p, p => with_ids!(&i, i => fpgrowth::count_itemsets(p, i, n_items, off, its, cancel))),
    )?;
    Ok(counts.into_pyarray(py))
}

/// One frozenset per list entry `items[offsets[k]:offsets[k+1]]`, whose
/// elements are `labels[id]` (or the int `id` without labels), as a NumPy
/// object array (a DataFrame column without conversion). Each label object
/// is shared, not copied.
///
/// Built with the C API directly (`PyFrozenSet_New` + `PySet_Add`, as
/// `frozenset(tuple)` does, without the tuples). When no element is tracked
/// by the cyclic GC (ints, strings, floats: CPython's own rule for untracking
/// tuples), no frozenset can be part of a reference cycle, so each is
/// untracked: later collections have nothing of them to walk. The GC is
/// paused meanwhile (see [`GcPause`]).
#[pyfunction]
#[pyo3(signature = (offsets, items, labels=None))]
pub fn fp_frozensets<'py>(
    py: Python<'py>,
    offsets: PyReadonlyArray1<'py, u64>,
    items: PyReadonlyArray1<'py, u32>,
    labels: Option<Bound<'py, PyList>>,
) -> PyResult<Bound<'py, PyArray1<Py<PyAny>>>> {
    let err = |_| PyValueError::new_err("offsets and items must be contiguous 1-D arrays");
    let offsets = offsets.as_slice().map_err(err)?;
    let items = items.as_slice().map_err(err)?;
    let n_ids = items.iter().map(|&i| i as usize + 1).max().unwrap_or(0);
    if let Some(l) = &labels {
        if l.len() < n_ids {
            return Err(PyValueError::new_err("fewer labels than item ids"));
        }
    }
    // One element object per item id that occurs, in a compact list indexed
    // through `slot` (a vocabulary of 16k items with 100 frequent ones should
    // not cost 16k objects or 16k-entry tables of objects).
    let mut slot = vec![u32::MAX; n_ids];
    let mut objects: Vec<Bound<'py, PyAny>> = Vec::new();
    for &i in items {
        let s = &mut slot[i as usize];
        if *s == u32::MAX {
            *s = objects.len() as u32;
            objects.push(match &labels {
                Some(l) => l.get_item(i as usize)?,
                None => PyInt::new(py, i as u64).into_any(),
            });
        }
    }
    // SAFETY: a plain query on live objects.
    let untrack = objects
        .iter()
        .all(|o| unsafe { ffi::PyObject_GC_IsTracked(o.as_ptr()) } == 0);
    let n = offsets.len().saturating_sub(1);
    let _paused = GcPause::new();
    let mut sets: Vec<Py<PyAny>> = Vec::with_capacity(n);
    // Earlier itemsets that may be the parent (one item fewer) of the next:
    // mined output comes in depth-first order, so a set's parent, when
    // present, is on this stack. Copying the parent's table (set_merge: no
    // hashing, no probing, sized for the copy) and adding one item is
    // cheaper than adding every item, and from 6 items on gives half the
    // table memory (16 slots, not 32), i.e. fewer page faults.
    let mut stack: Vec<usize> = Vec::new();
    let bounds = |k: usize| -> PyResult<(usize, usize)> {
        let (a, b) = (offsets[k] as usize, offsets[k + 1] as usize);
        if a > b || b > items.len() {
            return Err(PyValueError::new_err("offsets out of range"));
        }
        Ok((a, b))
    };
    for k in 0..n {
        let (a, b) = bounds(k)?;
        let cur = &items[a..b];
        // The parent on the stack and the one item it lacks.
        let mut from: Option<(usize, u32)> = None;
        while let Some(&t) = stack.last() {
            let (pa, pb) = bounds(t)?;
            let prev = &items[pa..pb];
            if prev.len() + 1 == cur.len() {
                if let Some(extra) = one_more(prev, cur) {
                    from = Some((t, extra));
                    break;
                }
            } else if prev.len() + 1 < cur.len() {
                break;
            }
            stack.pop();
        }
        let set = match from {
            Some((t, extra)) => {
                // Every id of `items` has its object (filled above).
                let obj = &objects[slot[extra as usize] as usize];
                if cur.len() == 5 {
                    // A 4-item copy sits in the inline table and the 5th add
                    // resizes to 32 slots; via a scratch set, the final copy
                    // is sized for 5 items (16 slots: 256 bytes less).
                    // SAFETY: `sets[t]` is a live frozenset; `tmp` is a new set.
                    let tmp = unsafe {
                        Bound::from_owned_ptr_or_err(py, ffi::PySet_New(sets[t].as_ptr()))?
                    };
                    if unsafe { ffi::PySet_Add(tmp.as_ptr(), obj.as_ptr()) } != 0 {
                        return Err(PyErr::fetch(py));
                    }
                    // SAFETY: `tmp` is a live set.
                    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyFrozenSet_New(tmp.as_ptr()))? }
                } else {
                    // SAFETY: `sets[t]` is a live frozenset; the copy is new
                    // and seen by no other code, so PySet_Add may fill it.
                    let set = unsafe {
                        Bound::from_owned_ptr_or_err(py, ffi::PyFrozenSet_New(sets[t].as_ptr()))?
                    };
                    if unsafe { ffi::PySet_Add(set.as_ptr(), obj.as_ptr()) } != 0 {
                        return Err(PyErr::fetch(py));
                    }
                    set
                }
            }
            None => {
                // SAFETY: a new frozenset that no other code has seen yet may
                // be filled with PySet_Add (documented C-API use); every
                // element is a live object of `objects`, and PySet_Add takes
                // its own reference. The set is owned by `set` (dropped on error).
                let set = unsafe {
                    Bound::from_owned_ptr_or_err(py, ffi::PyFrozenSet_New(std::ptr::null_mut()))?
                };
                for &id in cur {
                    // Every id of `items` has its object (filled above).
                    let obj = &objects[slot[id as usize] as usize];
                    if unsafe { ffi::PySet_Add(set.as_ptr(), obj.as_ptr()) } != 0 {
                        return Err(PyErr::fetch(py));
                    }
                }
                set
            }
        };
        if untrack {
            // SAFETY: `set` is a tracked GC object that holds only untracked
            // (cycle-free) elements and is never mutated again.
            unsafe { ffi::PyObject_GC_UnTrack(set.as_ptr().cast()) };
        }
        sets.push(set.unbind());
        stack.push(k);
    }
    Ok(PyArray1::from_vec(py, sets))
}

/// `Some(x)` when `cur` is `prev` with the one item `x` inserted somewhere
/// (same order otherwise), so that `set(cur) == set(prev) | {x}`.
fn one_more(prev: &[u32], cur: &[u32]) -> Option<u32> {
    if cur.len() != prev.len() + 1 {
        return None;
    }
    let skip = prev.iter().zip(cur).take_while(|(a, b)| a == b).count();
    (prev[skip..] == cur[skip + 1..]).then(|| cur[skip])
}

type RuleArrays<'py> = (
    Bound<'py, PyArray1<u64>>,
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray1<u64>>,
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray2<f64>>,
    u64,
);

/// Association rules of itemsets given as a list column of item ids with
/// supports: `(ant_offsets, ant_items, con_offsets, con_items, metrics,
/// n_rules)`, `metrics` of shape (n_rules, 12) in mlxtend's metric order.
/// A missing antecedent/consequent support raises KeyError (as mlxtend).
#[pyfunction]
#[pyo3(signature = (offsets, items, supports, metric, min_threshold, support_only=false, max_antecedent_len=None, max_consequent_len=None, num_itemsets=1.0, max_rules=None, count_only=false, n_threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn fp_rules<'py>(
    py: Python<'py>,
    offsets: PyReadonlyArray1<'py, u64>,
    items: PyReadonlyArray1<'py, u32>,
    supports: PyReadonlyArray1<'py, f64>,
    metric: usize,
    min_threshold: f64,
    support_only: bool,
    max_antecedent_len: Option<usize>,
    max_consequent_len: Option<usize>,
    num_itemsets: f64,
    max_rules: Option<u64>,
    count_only: bool,
    n_threads: Option<usize>,
) -> PyResult<RuleArrays<'py>> {
    let err =
        |_| PyValueError::new_err("offsets, items and supports must be contiguous 1-D arrays");
    let o = offsets.as_slice().map_err(err)?;
    let i = items.as_slice().map_err(err)?;
    let s = supports.as_slice().map_err(err)?;
    let p = RuleParams {
        metric,
        min_threshold,
        support_only,
        max_antecedent_len,
        max_consequent_len,
        num_itemsets,
        max_rules,
        count_only,
    };
    let r = run(py, threads(n_threads), |cancel| {
        fpgrowth::association_rules(o, i, s, p, cancel)
    })?;
    let r = match r {
        Ok(r) => r,
        Err(fpgrowth::MissingSupport(ids)) => {
            return Err(PyKeyError::new_err(format!(
                "no support for the itemset of item ids {ids:?}: the itemsets lack antecedent and/or \
                 consequent information (e.g. maximal itemsets); mine all itemsets or use support_only=True"
            )))
        }
    };
    let n = if count_only { 0 } else { r.n_rules as usize };
    let mut m = Array2::<f64>::zeros((n, fpgrowth::METRICS.len()));
    for (j, col) in r.metrics.iter().enumerate() {
        for (row, &v) in col.iter().enumerate().take(n) {
            m[[row, j]] = v;
        }
    }
    Ok((
        r.ant_offsets.into_pyarray(py),
        r.ant_items.into_pyarray(py),
        r.con_offsets.into_pyarray(py),
        r.con_items.into_pyarray(py),
        m.into_pyarray(py),
        r.n_rules,
    ))
}

type Generated<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
);

/// Synthetic market-basket transactions (`ferromine.datasets`):
/// `(offsets, items, pattern_offsets, pattern_items, pattern_weights,
/// pattern_corruption)`; the arrays move to NumPy without a copy.
#[pyfunction]
#[pyo3(signature = (n_transactions, n_items, avg_len, n_patterns, avg_pattern_len, correlation, corruption, seed, n_threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn fp_make_transactions<'py>(
    py: Python<'py>,
    n_transactions: usize,
    n_items: usize,
    avg_len: f64,
    n_patterns: usize,
    avg_pattern_len: f64,
    correlation: f64,
    corruption: f64,
    seed: u64,
    n_threads: Option<usize>,
) -> PyResult<Generated<'py>> {
    let p = datasets::BasketParams {
        n_transactions,
        n_items,
        avg_len,
        n_patterns,
        avg_pattern_len,
        correlation,
        corruption,
        seed,
    };
    let b = run(py, threads(n_threads), |cancel| {
        datasets::make_transactions(&p, cancel)
    })?;
    Ok((
        b.offsets.into_pyarray(py),
        b.items.into_pyarray(py),
        b.patterns.offsets.into_pyarray(py),
        b.patterns.items.into_pyarray(py),
        b.patterns.weights.into_pyarray(py),
        b.patterns.corruption.into_pyarray(py),
    ))
}
