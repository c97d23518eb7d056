//! The one error boundary: every `CoreError` becomes one Python exception type.

use ferromine_core::CoreError;
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::PyErr;

pub fn to_pyerr(err: CoreError) -> PyErr {
    match err {
        CoreError::InvalidInput(msg) => PyValueError::new_err(msg),
        CoreError::Cancelled => PyKeyboardInterrupt::new_err("interrupted"),
        e @ CoreError::Internal(_) => PyRuntimeError::new_err(e.to_string()),
    }
}

/// The text of a caught panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
