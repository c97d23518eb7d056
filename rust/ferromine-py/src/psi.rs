//! PSI kernels for Python: convert, release the GIL, call the core.

use ferromine_core::psi::{self, Closed};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::intake::{Numeric, NumericView};
use crate::run::{run, threads};

macro_rules! with_view {
    ($view:expr, $cols:ident => $body:expr) => {
        match $view {
            NumericView::F64($cols) => $body,
            NumericView::F32($cols) => $body,
        }
    };
}

type Counts<'py> = Bound<'py, PyArray1<u64>>;
type Floats<'py> = Bound<'py, PyArray1<f64>>;
/// (values, n_le, n_valid, n_missing)
type QuantileResult<'py> = (
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray2<u64>>,
    Counts<'py>,
    Counts<'py>,
);

/// Quantiles of every feature (NaN ignored): `(values, n_le, n_valid,
/// n_missing)`; `values` and `n_le` (how many values are <= each quantile)
/// of shape (n_features, len(probabilities)), NaN/0 rows for features
/// without a valid value.
#[pyfunction]
#[pyo3(signature = (data, probabilities, n_threads=None))]
pub fn psi_quantiles<'py>(
    py: Python<'py>,
    data: Numeric<'py>,
    probabilities: Vec<f64>,
    n_threads: Option<usize>,
) -> PyResult<QuantileResult<'py>> {
    let view = data.view()?;
    let probs = &probabilities;
    let q = run(
        py,
        threads(n_threads),
        |cancel| with_view!(&view, cols => psi::quantiles(cols, probs, cancel)),
    )?;
    let mut values = Array2::from_elem((q.len(), probs.len()), f64::NAN);
    let mut n_le = Array2::<u64>::zeros((q.len(), probs.len()));
    for ((mut row, mut le), f) in values.rows_mut().into_iter().zip(n_le.rows_mut()).zip(&q) {
        for (dst, &v) in row.iter_mut().zip(&f.values) {
            *dst = v;
        }
        for (dst, &v) in le.iter_mut().zip(&f.n_le) {
            *dst = v;
        }
    }
    let n_valid: Vec<u64> = q.iter().map(|f| f.n_valid).collect();
    let n_missing: Vec<u64> = q.iter().map(|f| f.n_missing).collect();
    Ok((
        values.into_pyarray(py),
        n_le.into_pyarray(py),
        n_valid.into_pyarray(py),
        n_missing.into_pyarray(py),
    ))
}

/// `(min, max, n_valid, n_missing)` per feature, NaN ignored.
#[pyfunction]
#[pyo3(signature = (data, n_threads=None))]
pub fn psi_extents<'py>(
    py: Python<'py>,
    data: Numeric<'py>,
    n_threads: Option<usize>,
) -> PyResult<(Floats<'py>, Floats<'py>, Counts<'py>, Counts<'py>)> {
    let view = data.view()?;
    let e = run(
        py,
        threads(n_threads),
        |cancel| with_view!(&view, cols => psi::extents(cols, cancel)),
    )?;
    let col = |f: &dyn Fn(&psi::Extent) -> f64| e.iter().map(f).collect::<Vec<f64>>();
    let min = col(&|x| x.min);
    let max = col(&|x| x.max);
    let n_valid: Vec<u64> = e.iter().map(|x| x.n_valid).collect();
    let n_missing: Vec<u64> = e.iter().map(|x| x.n_missing).collect();
    Ok((
        min.into_pyarray(py),
        max.into_pyarray(py),
        n_valid.into_pyarray(py),
        n_missing.into_pyarray(py),
    ))
}

/// Per-feature bin counts for the given sorted cut points: a list of count
/// arrays (len(cuts[j]) + 1 each) and the missing count per feature.
#[pyfunction]
#[pyo3(signature = (data, cuts, right=true, n_threads=None))]
pub fn psi_histograms<'py>(
    py: Python<'py>,
    data: Numeric<'py>,
    cuts: Vec<PyReadonlyArray1<'py, f64>>,
    right: bool,
    n_threads: Option<usize>,
) -> PyResult<(Vec<Counts<'py>>, Counts<'py>)> {
    let view = data.view()?;
    let cuts: Vec<Vec<f64>> = cuts.iter().map(|c| c.as_array().to_vec()).collect();
    let closed = if right { Closed::Right } else { Closed::Left };
    let h = run(
        py,
        threads(n_threads),
        |cancel| with_view!(&view, cols => psi::histograms(cols, &cuts, closed, cancel)),
    )?;
    let missing: Vec<u64> = h.iter().map(|x| x.missing).collect();
    let counts = h.into_iter().map(|x| x.counts.into_pyarray(py)).collect();
    Ok((counts, missing.into_pyarray(py)))
}
