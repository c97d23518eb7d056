//! k-means kernels for Python: convert, release the GIL, call the core.

use ferromine_core::kmeans::{self, Csr, Float, Rows};
use ferromine_core::CoreError;
use numpy::ndarray::{Array2, ArrayView2};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::run::{run, threads};

/// A 2-D float32 or float64 array, any strides (dtype-exact extraction).
#[derive(FromPyObject)]
pub enum Dense<'py> {
    F64(PyReadonlyArray2<'py, f64>),
    F32(PyReadonlyArray2<'py, f32>),
}

fn f64_slice<'a>(a: &'a PyReadonlyArray1<'_, f64>, what: &str) -> PyResult<&'a [f64]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{what} must be a contiguous float64 array")))
}

fn weights_slice<'a>(w: &'a Option<PyReadonlyArray1<'_, f64>>) -> PyResult<Option<&'a [f64]>> {
    w.as_ref()
        .map(|w| f64_slice(w, "sample_weight"))
        .transpose()
}

/// X: a dense 2-D array (any strides) or a CSR matrix passed as
/// `(data, indices (int64), indptr (int64), n_features)`.
#[derive(FromPyObject)]
pub enum Data<'py> {
    F64(PyReadonlyArray2<'py, f64>),
    F32(PyReadonlyArray2<'py, f32>),
    CsrF64(
        PyReadonlyArray1<'py, f64>,
        PyReadonlyArray1<'py, i64>,
        PyReadonlyArray1<'py, i64>,
        usize,
    ),
    CsrF32(
        PyReadonlyArray1<'py, f32>,
        PyReadonlyArray1<'py, i64>,
        PyReadonlyArray1<'py, i64>,
        usize,
    ),
}

fn csr<'a, T: Float + numpy::Element>(
    data: &'a PyReadonlyArray1<'_, T>,
    indices: &'a PyReadonlyArray1<'_, i64>,
    indptr: &'a PyReadonlyArray1<'_, i64>,
    n_cols: usize,
) -> PyResult<Csr<'a, T>> {
    let sl = |r: Result<&'a [i64], _>, what: &str| {
        r.map_err(|_| PyValueError::new_err(format!("CSR {what} must be a contiguous int64 array")))
    };
    let d = data
        .as_slice()
        .map_err(|_| PyValueError::new_err("CSR data must be a contiguous array"))?;
    let i = sl(indices.as_slice(), "indices")?;
    let p = sl(indptr.as_slice(), "indptr")?;
    Csr::new(d, i, p, n_cols).map_err(crate::errors::to_pyerr)
}

/// Row-major copy of a (small) centre array.
fn centers_vec<T: Float>(c: ArrayView2<'_, T>) -> (Vec<T>, usize) {
    (c.iter().copied().collect(), c.nrows())
}

fn dtype_mismatch() -> PyErr {
    PyTypeError::new_err("centers must have the same dtype as X (float32 or float64)")
}

fn to_array2<'py, T: Float + numpy::Element>(
    py: Python<'py>,
    v: Vec<T>,
    k: usize,
    d: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let a = Array2::from_shape_vec((k, d), v)
        .map_err(|e| crate::errors::to_pyerr(CoreError::Internal(e.to_string())))?;
    Ok(a.into_pyarray(py).into_any())
}

/// `(centers, labels, inertia, n_iter, strict)`.
type LloydOut<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyArray1<i32>>,
    f64,
    usize,
    bool,
);

/// One Lloyd run from `init`: `(centers, labels, inertia, n_iter, strict)`.
/// `shift` (the column means of X) only steers the accuracy of distances.
/// `bounded` runs Hamerly's bounds (same results, fewer distances).
#[pyfunction]
#[pyo3(signature = (x, sample_weight, init, shift, max_iter, tol, n_threads=None, bounded=false))]
#[allow(clippy::too_many_arguments)]
pub fn kmeans_lloyd<'py>(
    py: Python<'py>,
    x: Data<'py>,
    sample_weight: Option<PyReadonlyArray1<'py, f64>>,
    init: Dense<'py>,
    shift: PyReadonlyArray1<'py, f64>,
    max_iter: usize,
    tol: f64,
    n_threads: Option<usize>,
    bounded: bool,
) -> PyResult<LloydOut<'py>> {
    let w = weights_slice(&sample_weight)?;
    let s = f64_slice(&shift, "shift")?;
    macro_rules! go {
        ($x:expr, $c:expr) => {{
            let xv = $x;
            let d = xv.ncols();
            let (c, k) = centers_vec($c.as_array());
            let r = run(py, threads(n_threads), |cancel| {
                if bounded {
                    kmeans::hamerly(&xv, w, &c, k, s, max_iter, tol, cancel)
                } else {
                    kmeans::lloyd(&xv, w, &c, k, s, max_iter, tol, cancel)
                }
            })?;
            (
                to_array2(py, r.centers, k, d)?,
                r.labels.into_pyarray(py),
                r.inertia,
                r.n_iter,
                r.strict,
            )
        }};
    }
    Ok(match (&x, &init) {
        (Data::F64(x), Dense::F64(c)) => go!(x.as_array(), c),
        (Data::F32(x), Dense::F32(c)) => go!(x.as_array(), c),
        (Data::CsrF64(v, i, p, m), Dense::F64(c)) => go!(csr(v, i, p, *m)?, c),
        (Data::CsrF32(v, i, p, m), Dense::F32(c)) => go!(csr(v, i, p, *m)?, c),
        _ => return Err(dtype_mismatch()),
    })
}

/// Greedy k-means++ seeding: the chosen row indices (int64).
#[pyfunction]
#[pyo3(signature = (x, sample_weight, n_clusters, n_trials, shift, seed, stream=0, n_threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn kmeans_plusplus<'py>(
    py: Python<'py>,
    x: Data<'py>,
    sample_weight: Option<PyReadonlyArray1<'py, f64>>,
    n_clusters: usize,
    n_trials: usize,
    shift: PyReadonlyArray1<'py, f64>,
    seed: u64,
    stream: u64,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let w = weights_slice(&sample_weight)?;
    let s = f64_slice(&shift, "shift")?;
    macro_rules! go {
        ($x:expr) => {{
            let xv = $x;
            run(py, threads(n_threads), |cancel| {
                kmeans::kmeans_plusplus(&xv, w, n_clusters, n_trials, s, seed, stream, cancel)
            })?
        }};
    }
    let idx = match &x {
        Data::F64(x) => go!(x.as_array()),
        Data::F32(x) => go!(x.as_array()),
        Data::CsrF64(v, i, p, m) => go!(csr(v, i, p, *m)?),
        Data::CsrF32(v, i, p, m) => go!(csr(v, i, p, *m)?),
    };
    let idx: Vec<i64> = idx.into_iter().map(|i| i as i64).collect();
    Ok(idx.into_pyarray(py))
}

/// k-means|| candidates: `(row indices (int64), weights (float64))`.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, n_clusters, rounds, oversampling, shift, seed, stream=0, n_threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn kmeans_parallel<'py>(
    py: Python<'py>,
    x: Data<'py>,
    sample_weight: Option<PyReadonlyArray1<'py, f64>>,
    n_clusters: usize,
    rounds: usize,
    oversampling: f64,
    shift: PyReadonlyArray1<'py, f64>,
    seed: u64,
    stream: u64,
    n_threads: Option<usize>,
) -> PyResult<(Bound<'py, PyArray1<i64>>, F64Array<'py>)> {
    let w = weights_slice(&sample_weight)?;
    let s = f64_slice(&shift, "shift")?;
    macro_rules! go {
        ($x:expr) => {{
            let xv = $x;
            run(py, threads(n_threads), |cancel| {
                kmeans::kmeans_parallel(
                    &xv,
                    w,
                    n_clusters,
                    rounds,
                    oversampling,
                    s,
                    seed,
                    stream,
                    cancel,
                )
            })?
        }};
    }
    let (idx, wts) = match &x {
        Data::F64(x) => go!(x.as_array()),
        Data::F32(x) => go!(x.as_array()),
        Data::CsrF64(v, i, p, m) => go!(csr(v, i, p, *m)?),
        Data::CsrF32(v, i, p, m) => go!(csr(v, i, p, *m)?),
    };
    let idx: Vec<i64> = idx.into_iter().map(|i| i as i64).collect();
    Ok((idx.into_pyarray(py), wts.into_pyarray(py)))
}

/// Closest centre of every row and the weighted inertia: `(labels, inertia)`.
#[pyfunction]
#[pyo3(signature = (x, centers, sample_weight=None, with_inertia=true, n_threads=None))]
pub fn kmeans_assign<'py>(
    py: Python<'py>,
    x: Data<'py>,
    centers: Dense<'py>,
    sample_weight: Option<PyReadonlyArray1<'py, f64>>,
    with_inertia: bool,
    n_threads: Option<usize>,
) -> PyResult<(Bound<'py, PyArray1<i32>>, f64)> {
    let w = weights_slice(&sample_weight)?;
    macro_rules! go {
        ($x:expr, $c:expr) => {{
            let xv = $x;
            let d = xv.ncols();
            let (c, k) = centers_vec($c.as_array());
            let shift = kmeans::centers_mean(&c, k, d);
            run(py, threads(n_threads), |cancel| {
                kmeans::assign(&xv, w, &c, k, &shift, with_inertia, cancel)
            })?
        }};
    }
    let (labels, inertia) = match (&x, &centers) {
        (Data::F64(x), Dense::F64(c)) => go!(x.as_array(), c),
        (Data::F32(x), Dense::F32(c)) => go!(x.as_array(), c),
        (Data::CsrF64(v, i, p, m), Dense::F64(c)) => go!(csr(v, i, p, *m)?, c),
        (Data::CsrF32(v, i, p, m), Dense::F32(c)) => go!(csr(v, i, p, *m)?, c),
        _ => return Err(dtype_mismatch()),
    };
    Ok((labels.into_pyarray(py), inertia))
}

/// Euclidean distances of every row to every centre, (n, k) in X's dtype.
#[pyfunction]
#[pyo3(signature = (x, centers, n_threads=None))]
pub fn kmeans_transform<'py>(
    py: Python<'py>,
    x: Data<'py>,
    centers: Dense<'py>,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    macro_rules! go {
        ($x:expr, $c:expr) => {{
            let xv = $x;
            let n = xv.nrows();
            let (c, k) = centers_vec($c.as_array());
            let out = run(py, threads(n_threads), |cancel| {
                kmeans::transform(&xv, &c, k, cancel)
            })?;
            to_array2(py, out, n, k)?
        }};
    }
    Ok(match (&x, &centers) {
        (Data::F64(x), Dense::F64(c)) => go!(x.as_array(), c),
        (Data::F32(x), Dense::F32(c)) => go!(x.as_array(), c),
        (Data::CsrF64(v, i, p, m), Dense::F64(c)) => go!(csr(v, i, p, *m)?, c),
        (Data::CsrF32(v, i, p, m), Dense::F32(c)) => go!(csr(v, i, p, *m)?, c),
        _ => return Err(dtype_mismatch()),
    })
}

type F64Array<'py> = Bound<'py, PyArray1<f64>>;

/// Column means and population variances of X, float64: `(mean, var)`;
/// `var` is empty when `with_var` is false (one pass over X fewer).
#[pyfunction]
#[pyo3(signature = (x, n_threads=None, with_var=true))]
pub fn kmeans_column_stats<'py>(
    py: Python<'py>,
    x: Data<'py>,
    n_threads: Option<usize>,
    with_var: bool,
) -> PyResult<(F64Array<'py>, F64Array<'py>)> {
    macro_rules! go {
        ($x:expr) => {{
            let xv = $x;
            run(py, threads(n_threads), |cancel| {
                if with_var {
                    kmeans::column_stats(&xv, cancel)
                } else {
                    kmeans::column_means(&xv, cancel).map(|m| (m, Vec::new()))
                }
            })?
        }};
    }
    let (m, v) = match &x {
        Data::F64(x) => go!(x.as_array()),
        Data::F32(x) => go!(x.as_array()),
        Data::CsrF64(v, i, p, m) => go!(csr(v, i, p, *m)?),
        Data::CsrF32(v, i, p, m) => go!(csr(v, i, p, *m)?),
    };
    Ok((m.into_pyarray(py), v.into_pyarray(py)))
}

/// Shifted centres (f64, k x d row-major) as the Lloyd kernels take them.
fn shifted_centers(c: &PyReadonlyArray2<'_, f64>, d: usize) -> PyResult<(Vec<f64>, usize)> {
    let c = c.as_array();
    if c.ncols() != d {
        return Err(PyValueError::new_err(format!(
            "centers have {} features but X has {d}",
            c.ncols()
        )));
    }
    Ok((c.iter().copied().collect(), c.nrows()))
}

/// `(labels, sums, weights)` of [`kmeans_lloyd_step`].
type StepOut<'py> = (
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyAny>,
    Bound<'py, PyArray1<f64>>,
);

/// `(labels, sums, weights)` of one Lloyd E-step and M-step sums over the
/// rows of `x` (one partition of a distributed fit), for shifted float64
/// `centers` (k x d, `c - shift`): the mergeable state of a Lloyd iteration.
/// Sums are of the shifted rows, weighted, in f64.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, centers, shift, n_threads=None))]
pub fn kmeans_lloyd_step<'py>(
    py: Python<'py>,
    x: Data<'py>,
    sample_weight: Option<PyReadonlyArray1<'py, f64>>,
    centers: PyReadonlyArray2<'py, f64>,
    shift: PyReadonlyArray1<'py, f64>,
    n_threads: Option<usize>,
) -> PyResult<StepOut<'py>> {
    let w = weights_slice(&sample_weight)?;
    let s = f64_slice(&shift, "shift")?;
    macro_rules! go {
        ($x:expr) => {{
            let xv = $x;
            let d = xv.ncols();
            let (c, k) = shifted_centers(&centers, d)?;
            let mut labels = vec![0i32; xv.nrows()];
            let stats = run(py, threads(n_threads), |cancel| {
                kmeans::lloyd_pass(&xv, w, s, &c, k, &mut labels, true, cancel)
            })?;
            (labels, stats, k, d)
        }};
    }
    let (labels, stats, k, d) = match &x {
        Data::F64(x) => go!(x.as_array()),
        Data::F32(x) => go!(x.as_array()),
        Data::CsrF64(v, i, p, m) => go!(csr(v, i, p, *m)?),
        Data::CsrF32(v, i, p, m) => go!(csr(v, i, p, *m)?),
    };
    Ok((
        labels.into_pyarray(py),
        to_array2(py, stats.sums, k, d)?,
        stats.weights.into_pyarray(py),
    ))
}

/// Squared distance (f64) of every row of `x` to the shifted centre of its
/// label: what empty-cluster relocation ranks rows by.
#[pyfunction]
#[pyo3(signature = (x, centers, shift, labels, n_threads=None))]
pub fn kmeans_label_distances<'py>(
    py: Python<'py>,
    x: Data<'py>,
    centers: PyReadonlyArray2<'py, f64>,
    shift: PyReadonlyArray1<'py, f64>,
    labels: PyReadonlyArray1<'py, i32>,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let s = f64_slice(&shift, "shift")?;
    let l = labels
        .as_slice()
        .map_err(|_| PyValueError::new_err("labels must be a contiguous int32 array"))?;
    macro_rules! go {
        ($x:expr) => {{
            let xv = $x;
            let d = xv.ncols();
            if l.len() != xv.nrows() {
                return Err(PyValueError::new_err(format!(
                    "labels has {} entries but X has {} rows",
                    l.len(),
                    xv.nrows()
                )));
            }
            if s.len() != d {
                return Err(PyValueError::new_err(format!(
                    "shift has {} values but X has {d} features",
                    s.len()
                )));
            }
            let (c, k) = shifted_centers(&centers, d)?;
            if let Some(&bad) = l.iter().find(|&&v| v < 0 || v as usize >= k) {
                return Err(PyValueError::new_err(format!(
                    "label {bad} is outside [0, {k})"
                )));
            }
            run(py, threads(n_threads), |cancel| {
                kmeans::label_distances(&xv, s, &c, l, cancel)
            })?
        }};
    }
    let out = match &x {
        Data::F64(x) => go!(x.as_array()),
        Data::F32(x) => go!(x.as_array()),
        Data::CsrF64(v, i, p, m) => go!(csr(v, i, p, *m)?),
        Data::CsrF32(v, i, p, m) => go!(csr(v, i, p, *m)?),
    };
    Ok(out.into_pyarray(py))
}
