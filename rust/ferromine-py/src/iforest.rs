//! Isolation forest kernels for Python: convert, release the GIL, call the core.

use ferromine_core::iforest::{self, ForestArrays, GrowParams};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::errors::to_pyerr;
use crate::run::{run, run_here, threads};

/// Rows x trees below which scoring runs on the calling thread (about a
/// millisecond of work).
const SMALL_BATCH: usize = 100_000;

/// A 2-D float32/float64 NumPy array, borrowed with its own strides.
#[derive(FromPyObject)]
pub enum Matrix<'py> {
    F64(PyReadonlyArray2<'py, f64>),
    F32(PyReadonlyArray2<'py, f32>),
}

/// Stored values of a CSR matrix.
#[derive(FromPyObject)]
pub enum CsrValues<'py> {
    F64(PyReadonlyArray1<'py, f64>),
    F32(PyReadonlyArray1<'py, f32>),
}

/// Column indices and row pointers of a CSR matrix, of one dtype.
#[derive(FromPyObject)]
pub enum CsrIndex<'py> {
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
}

/// `(data, indices, indptr, n_cols)` of a scipy CSR matrix.
#[derive(FromPyObject)]
pub struct CsrTuple<'py>(CsrValues<'py>, CsrIndex<'py>, CsrIndex<'py>, usize);

/// What the kernels read rows from: a dense array or a CSR tuple.
#[derive(FromPyObject)]
pub enum Input<'py> {
    Dense(Matrix<'py>),
    Csr(CsrTuple<'py>),
}

impl Input<'_> {
    fn shape(&self) -> (usize, usize) {
        match self {
            Input::Dense(Matrix::F64(a)) => a.as_array().dim(),
            Input::Dense(Matrix::F32(a)) => a.as_array().dim(),
            Input::Csr(CsrTuple(_, _, indptr, n_cols)) => {
                let len = match indptr {
                    CsrIndex::I32(p) => p.len().unwrap_or(0),
                    CsrIndex::I64(p) => p.len().unwrap_or(0),
                };
                (len.saturating_sub(1), *n_cols)
            }
        }
    }
}

/// Bind `$x` to a `Rows` view of the input (dense view or checked CSR) and
/// evaluate `$body`, in a function returning `PyResult`.
macro_rules! with_rows {
    ($input:expr, $x:ident => $body:expr) => {{
        macro_rules! csr {
            ($d:expr, $i:expr, $p:expr, $n:expr) => {{
                let (d, i, p) = (
                    contiguous($d, "data")?,
                    contiguous($i, "indices")?,
                    contiguous($p, "indptr")?,
                );
                let $x =
                    iforest::Csr::new(p.len().saturating_sub(1), *$n, d, i, p).map_err(to_pyerr)?;
                $body
            }};
        }
        match $input {
            Input::Dense(Matrix::F64(a)) => {
                let $x = a.as_array();
                $body
            }
            Input::Dense(Matrix::F32(a)) => {
                let $x = a.as_array();
                $body
            }
            Input::Csr(CsrTuple(CsrValues::F64(d), CsrIndex::I32(i), CsrIndex::I32(p), n)) => {
                csr!(d, i, p, n)
            }
            Input::Csr(CsrTuple(CsrValues::F32(d), CsrIndex::I32(i), CsrIndex::I32(p), n)) => {
                csr!(d, i, p, n)
            }
            Input::Csr(CsrTuple(CsrValues::F64(d), CsrIndex::I64(i), CsrIndex::I64(p), n)) => {
                csr!(d, i, p, n)
            }
            Input::Csr(CsrTuple(CsrValues::F32(d), CsrIndex::I64(i), CsrIndex::I64(p), n)) => {
                csr!(d, i, p, n)
            }
            Input::Csr(_) => {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "CSR indices and indptr must have the same dtype (int32 or int64)",
                ))
            }
        }
    }};
}

type Arr<'py, T> = Bound<'py, PyArray1<T>>;
/// (offsets, features per tree (concatenated) with their offsets, feature,
/// threshold, children_left, children_right, missing_go_to_left,
/// n_node_samples, value)
type GrownArrays<'py> = (
    Arr<'py, i64>,
    Arr<'py, i64>,
    Arr<'py, i64>,
    Arr<'py, i32>,
    Arr<'py, f64>,
    Arr<'py, i32>,
    Arr<'py, i32>,
    Arr<'py, u8>,
    Arr<'py, i64>,
    Arr<'py, f64>,
);

/// Grow `n_trees` isolation trees (trees `first_tree..first_tree + n_trees`
/// of the stream `seed`) and return them as flat, concatenated arrays.
#[pyfunction]
#[pyo3(signature = (x, seed, first_tree, n_trees, max_samples, max_features, bootstrap, max_depth, sample_weight=None, n_threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn iforest_grow<'py>(
    py: Python<'py>,
    x: Input<'py>,
    seed: u64,
    first_tree: usize,
    n_trees: usize,
    max_samples: usize,
    max_features: usize,
    bootstrap: bool,
    max_depth: usize,
    sample_weight: Option<PyReadonlyArray1<'py, f64>>,
    n_threads: Option<usize>,
) -> PyResult<GrownArrays<'py>> {
    let params = GrowParams {
        seed,
        first_tree,
        n_trees,
        max_samples,
        max_features,
        bootstrap,
        max_depth,
    };
    let weights = match &sample_weight {
        Some(w) => Some(contiguous(w, "sample_weight")?),
        None => None,
    };
    let trees = with_rows!(&x, view => run(py, threads(n_threads), |cancel| {
        iforest::grow_forest(view, weights, &params, cancel)
    }))?;
    Ok(flatten(py, trees))
}

/// A fitted forest checked and laid out for scoring, built once per fit so
/// a call on a few rows does not repack every tree (a millisecond or two).
#[pyclass(frozen, module = "ferromine._core")]
pub struct PackedForest {
    packed: iforest::Packed,
}

#[pymethods]
impl PackedForest {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        offsets: PyReadonlyArray1<'_, i64>,
        feature: PyReadonlyArray1<'_, i32>,
        threshold: PyReadonlyArray1<'_, f64>,
        children_left: PyReadonlyArray1<'_, i32>,
        children_right: PyReadonlyArray1<'_, i32>,
        missing_go_to_left: PyReadonlyArray1<'_, u8>,
        value: PyReadonlyArray1<'_, f64>,
        n_features: usize,
    ) -> PyResult<Self> {
        // `pack` checks every index before the walk trusts it.
        let arrays = forest_arrays(
            &offsets,
            &feature,
            &threshold,
            &children_left,
            &children_right,
            &missing_go_to_left,
            &value,
        )?;
        // Packing takes a millisecond or two on a default forest: off the GIL,
        // behind the same panic boundary as every kernel.
        let packed = run(py, 1, |_| iforest::pack(&arrays, n_features))?;
        Ok(PackedForest { packed })
    }

    #[getter]
    fn n_trees(&self) -> usize {
        self.packed.n_trees()
    }

    #[getter]
    fn n_features(&self) -> usize {
        self.packed.n_features()
    }
}

/// `score_samples` of an isolation forest: `-2^(-mean path length / c(max_samples))`
/// per row, float64.
#[pyfunction]
#[pyo3(signature = (x, forest, max_samples, n_threads=None))]
pub fn iforest_score<'py>(
    py: Python<'py>,
    x: Input<'py>,
    forest: &PackedForest,
    max_samples: usize,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (n_rows, _) = x.shape();
    let packed = &forest.packed;
    let sums = if n_rows.saturating_mul(packed.n_trees()) <= SMALL_BATCH {
        // A small batch is done before a pool thread would wake up: score
        // it here (still panic-safe), without the pool's hand-off cost.
        with_rows!(&x, view => {
            run_here(|| {
                let mut sums = iforest::path_length_sums_serial(view, packed)?;
                iforest::scores_from_sums(&mut sums, packed.n_trees(), max_samples);
                Ok(sums)
            })?
        })
    } else {
        with_rows!(&x, view => run(py, threads(n_threads), |cancel| {
            let mut sums = iforest::path_length_sums(view, packed, cancel)?;
            iforest::scores_from_sums(&mut sums, packed.n_trees(), max_samples);
            Ok(sums)
        }))?
    };
    Ok(sums.into_pyarray(py))
}

/// Per-feature contributions to each row's mean path length (see
/// `ferromine_core::iforest::feature_contributions`), row-major (n_rows x n_features).
#[pyfunction]
#[pyo3(signature = (x, offsets, feature, threshold, children_left, children_right, missing_go_to_left, value, n_node_samples, n_threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn iforest_contributions<'py>(
    py: Python<'py>,
    x: Input<'py>,
    offsets: PyReadonlyArray1<'py, i64>,
    feature: PyReadonlyArray1<'py, i32>,
    threshold: PyReadonlyArray1<'py, f64>,
    children_left: PyReadonlyArray1<'py, i32>,
    children_right: PyReadonlyArray1<'py, i32>,
    missing_go_to_left: PyReadonlyArray1<'py, u8>,
    value: PyReadonlyArray1<'py, f64>,
    n_node_samples: PyReadonlyArray1<'py, i64>,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let arrays = forest_arrays(
        &offsets,
        &feature,
        &threshold,
        &children_left,
        &children_right,
        &missing_go_to_left,
        &value,
    )?;
    let sizes = contiguous(&n_node_samples, "n_node_samples")?;
    let flat = with_rows!(&x, view => run(py, threads(n_threads), |cancel| {
        iforest::feature_contributions(view, &arrays, sizes, cancel)
    }))?;
    Ok(flat.into_pyarray(py))
}

/// Concatenate trees into the flat arrays Python stores.
fn flatten(py: Python<'_>, trees: Vec<iforest::Tree>) -> GrownArrays<'_> {
    let mut offsets = Vec::with_capacity(trees.len() + 1);
    let mut feat_offsets = Vec::with_capacity(trees.len() + 1);
    offsets.push(0i64);
    feat_offsets.push(0i64);
    let total: usize = trees.iter().map(|t| t.feature.len()).sum();
    let mut all = iforest::Tree {
        features: Vec::new(),
        feature: Vec::with_capacity(total),
        threshold: Vec::with_capacity(total),
        children_left: Vec::with_capacity(total),
        children_right: Vec::with_capacity(total),
        missing_go_to_left: Vec::with_capacity(total),
        n_node_samples: Vec::with_capacity(total),
        value: Vec::with_capacity(total),
    };
    for t in trees {
        all.features.extend(t.features);
        all.feature.extend(t.feature);
        all.threshold.extend(t.threshold);
        all.children_left.extend(t.children_left);
        all.children_right.extend(t.children_right);
        all.missing_go_to_left.extend(t.missing_go_to_left);
        all.n_node_samples.extend(t.n_node_samples);
        all.value.extend(t.value);
        offsets.push(all.feature.len() as i64);
        feat_offsets.push(all.features.len() as i64);
    }
    (
        offsets.into_pyarray(py),
        feat_offsets.into_pyarray(py),
        all.features.into_pyarray(py),
        all.feature.into_pyarray(py),
        all.threshold.into_pyarray(py),
        all.children_left.into_pyarray(py),
        all.children_right.into_pyarray(py),
        all.missing_go_to_left.into_pyarray(py),
        all.n_node_samples.into_pyarray(py),
        all.value.into_pyarray(py),
    )
}

/// Grow `n_trees` extended isolation trees (hyperplane splits with
/// `extension_level + 1` non-zero normal components): the arrays of
/// [`iforest_grow`] plus the hyperplanes' slot features and coefficients
/// (`extension_level + 1` per node, concatenated).
#[pyfunction]
#[pyo3(signature = (x, seed, first_tree, n_trees, max_samples, max_features, bootstrap, max_depth, extension_level, sample_weight=None, n_threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn iforest_grow_extended<'py>(
    py: Python<'py>,
    x: Input<'py>,
    seed: u64,
    first_tree: usize,
    n_trees: usize,
    max_samples: usize,
    max_features: usize,
    bootstrap: bool,
    max_depth: usize,
    extension_level: usize,
    sample_weight: Option<PyReadonlyArray1<'py, f64>>,
    n_threads: Option<usize>,
) -> PyResult<(GrownArrays<'py>, Arr<'py, i32>, Arr<'py, f64>)> {
    let params = GrowParams {
        seed,
        first_tree,
        n_trees,
        max_samples,
        max_features,
        bootstrap,
        max_depth,
    };
    let weights = match &sample_weight {
        Some(w) => Some(contiguous(w, "sample_weight")?),
        None => None,
    };
    let k = extension_level.saturating_add(1);
    let trees = with_rows!(&x, view => run(py, threads(n_threads), |cancel| {
        iforest::grow_forest_extended(view, weights, &params, k, cancel)
    }))?;
    let mut features = Vec::new();
    let mut coefs = Vec::new();
    let mut plain = Vec::with_capacity(trees.len());
    for t in trees {
        features.extend(t.hyper_features);
        coefs.extend(t.hyper_coefs);
        plain.push(t.tree);
    }
    Ok((
        flatten(py, plain),
        features.into_pyarray(py),
        coefs.into_pyarray(py),
    ))
}

/// `score_samples` of an extended isolation forest, float64.
#[pyfunction]
#[pyo3(signature = (x, offsets, feature, threshold, children_left, children_right, missing_go_to_left, value, hyper_features, hyper_coefs, extension_level, max_samples, n_threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn iforest_score_extended<'py>(
    py: Python<'py>,
    x: Input<'py>,
    offsets: PyReadonlyArray1<'py, i64>,
    feature: PyReadonlyArray1<'py, i32>,
    threshold: PyReadonlyArray1<'py, f64>,
    children_left: PyReadonlyArray1<'py, i32>,
    children_right: PyReadonlyArray1<'py, i32>,
    missing_go_to_left: PyReadonlyArray1<'py, u8>,
    value: PyReadonlyArray1<'py, f64>,
    hyper_features: PyReadonlyArray1<'py, i32>,
    hyper_coefs: PyReadonlyArray1<'py, f64>,
    extension_level: usize,
    max_samples: usize,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let arrays = forest_arrays(
        &offsets,
        &feature,
        &threshold,
        &children_left,
        &children_right,
        &missing_go_to_left,
        &value,
    )?;
    let planes = iforest::Hyperplanes {
        k: extension_level.saturating_add(1),
        features: contiguous(&hyper_features, "hyper_features")?,
        coefs: contiguous(&hyper_coefs, "hyper_coefs")?,
    };
    let n_trees = arrays.offsets.len().saturating_sub(1);
    let sums = with_rows!(&x, view => run(py, threads(n_threads), |cancel| {
        let mut sums = iforest::path_length_sums_extended(view, &arrays, &planes, cancel)?;
        iforest::scores_from_sums(&mut sums, n_trees, max_samples);
        Ok(sums)
    }))?;
    Ok(sums.into_pyarray(py))
}

/// The node arrays of a fitted forest as the core reads them (each checked
/// contiguous; `pack` checks the indices).
#[allow(clippy::too_many_arguments)]
fn forest_arrays<'a>(
    offsets: &'a PyReadonlyArray1<'_, i64>,
    feature: &'a PyReadonlyArray1<'_, i32>,
    threshold: &'a PyReadonlyArray1<'_, f64>,
    children_left: &'a PyReadonlyArray1<'_, i32>,
    children_right: &'a PyReadonlyArray1<'_, i32>,
    missing_go_to_left: &'a PyReadonlyArray1<'_, u8>,
    value: &'a PyReadonlyArray1<'_, f64>,
) -> PyResult<ForestArrays<'a>> {
    Ok(ForestArrays {
        offsets: contiguous(offsets, "offsets")?,
        feature: contiguous(feature, "feature")?,
        threshold: contiguous(threshold, "threshold")?,
        children_left: contiguous(children_left, "children_left")?,
        children_right: contiguous(children_right, "children_right")?,
        missing_go_to_left: contiguous(missing_go_to_left, "missing_go_to_left")?,
        value: contiguous(value, "value")?,
    })
}

fn contiguous<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray1<'_, T>,
    name: &str,
) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| {
        pyo3::exceptions::PyValueError::new_err(format!("{name} must be a C-contiguous array"))
    })
}
