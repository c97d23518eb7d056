//! Running a kernel: off the GIL, on our own pool, interruptible, panic-safe.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

use ferromine_core::parallel::{pool, thread_cap};
use ferromine_core::{Cancel, CoreError};
use pyo3::prelude::*;

use crate::errors::{panic_message, to_pyerr};

/// `kernel()`, with a panic turned into `CoreError::Internal` (never an
/// unwind across the FFI boundary, never an abort).
fn no_panic<T>(kernel: impl FnOnce() -> Result<T, CoreError>) -> Result<T, CoreError> {
    catch_unwind(AssertUnwindSafe(kernel)).unwrap_or_else(|p| {
        Err(CoreError::Internal(format!(
            "panic: {}",
            panic_message(&*p)
        )))
    })
}

/// Run a short `kernel` on the calling thread, GIL held: for work smaller
/// than the pool's hand-off (a few rows). Panic-safe like [`run`]; not
/// interruptible, so keep it to calls of well under a millisecond.
pub fn run_here<T>(kernel: impl FnOnce() -> Result<T, CoreError>) -> PyResult<T> {
    no_panic(kernel).map_err(to_pyerr)
}

/// How often the waiting caller checks for Ctrl-C.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Run `kernel` on the pool of `n_threads` workers with the GIL released.
///
/// The calling thread does not work: it waits for the result and, every
/// 50 ms, takes the GIL to run Python's signal handlers. On Ctrl-C it raises
/// the cancel flag that kernels poll between chunks, waits for them to stop
/// (so nothing outlives the borrowed input) and returns the KeyboardInterrupt.
/// A panic anywhere in the kernel becomes a RuntimeError, never an abort.
pub fn run<T, F>(py: Python<'_>, n_threads: usize, kernel: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce(&Cancel) -> Result<T, CoreError> + Send,
{
    let outcome: Result<Result<T, CoreError>, PyErr> = py.detach(|| {
        let pool = pool(n_threads).map_err(to_pyerr)?;
        let cancel = Cancel::new();
        let (tx, rx) = mpsc::channel();
        let mut interrupt: Option<PyErr> = None;
        let result = pool.in_place_scope(|scope| {
            let cancel = &cancel;
            scope.spawn(move |_| {
                let out = no_panic(|| kernel(cancel));
                // The receiver lives until the scope ends; a failed send means
                // nobody is waiting any more.
                let _ = tx.send(out);
            });
            loop {
                match rx.recv_timeout(SIGNAL_POLL) {
                    Ok(out) => break out,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if interrupt.is_none() {
                            if let Err(e) = Python::attach(|py| py.check_signals()) {
                                interrupt = Some(e);
                                cancel.cancel();
                            }
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        break Err(CoreError::Internal("worker ended without a result".into()))
                    }
                }
            }
        });
        match interrupt {
            Some(e) => Err(e),
            None => Ok(result),
        }
    });
    outcome?.map_err(to_pyerr)
}

/// Threads for a call: the caller's resolved `n_jobs`, capped by threadpoolctl.
pub fn threads(n_threads: Option<usize>) -> usize {
    n_threads.unwrap_or_else(thread_cap).max(1)
}
