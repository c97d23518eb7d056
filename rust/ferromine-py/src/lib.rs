//! `ferromine._core`: the compiled half of ferromine.
//!
//! This crate only converts Python objects to borrowed Rust views, releases
//! the GIL around the kernels of `ferromine-core`, and maps their errors to
//! Python exceptions. No algorithm lives here.

use std::os::raw::c_int;

use ferromine_core::parallel;
use pyo3::prelude::*;

mod errors;
mod fpgrowth;
mod iforest;
mod intake;
mod kmeans;
mod psi;
mod run;

/// threadpoolctl reads the thread count through this symbol.
#[no_mangle]
pub extern "C" fn ferromine_get_num_threads() -> c_int {
    parallel::thread_cap().min(c_int::MAX as usize) as c_int
}

/// threadpoolctl's `threadpool_limits` caps every later call through this one.
#[no_mangle]
pub extern "C" fn ferromine_set_num_threads(n: c_int) {
    parallel::set_thread_cap(n.max(0) as usize);
}

/// The thread cap in force (threadpoolctl's limit, else the CPU count).
#[pyfunction]
fn get_num_threads() -> usize {
    parallel::thread_cap()
}

/// Forget the thread pools; for `os.register_at_fork(after_in_child=...)`.
#[pyfunction]
fn _reset_pools() {
    parallel::reset_pools_after_fork();
}

/// Panic inside a kernel on purpose, to test the error boundary.
#[pyfunction]
fn _panic_in_kernel(py: Python<'_>) -> PyResult<()> {
    run::run(py, 1, |_| -> Result<(), ferromine_core::CoreError> {
        panic!("deliberate test panic")
    })
}

#[pymodule]
mod _core {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::{_panic_in_kernel, _reset_pools, get_num_threads};
    #[pymodule_export]
    use crate::fpgrowth::fp_count_itemsets;
    #[pymodule_export]
    use crate::fpgrowth::fp_csr_of_dense;
    #[pymodule_export]
    use crate::fpgrowth::{fp_frozensets, fp_make_transactions, fp_mine, fp_rules};
    #[pymodule_export]
    use crate::iforest::{
        iforest_contributions, iforest_grow, iforest_grow_extended, iforest_score,
        iforest_score_extended, PackedForest,
    };
    #[pymodule_export]
    use crate::intake::arrow_columns;
    #[pymodule_export]
    use crate::kmeans::{
        kmeans_assign, kmeans_column_stats, kmeans_lloyd, kmeans_parallel, kmeans_plusplus,
        kmeans_transform,
    };
    #[pymodule_export]
    use crate::kmeans::{kmeans_label_distances, kmeans_lloyd_step};
    #[pymodule_export]
    use crate::psi::{psi_extents, psi_histograms, psi_quantiles};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        Ok(())
    }
}
