use thiserror::Error;

/// Every failure a kernel can report. The Python binding maps each variant to
/// one exception type, so the variant says *what kind* of failure it is and
/// the message says what was wrong and what to do.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    /// Bad input data or parameter value (Python `ValueError`).
    #[error("{0}")]
    InvalidInput(String),
    /// The call was cancelled (Ctrl-C); Python `KeyboardInterrupt`.
    #[error("cancelled")]
    Cancelled,
    /// A broken internal invariant (Python `RuntimeError`). Never the user's fault.
    #[error("internal error: {0}; please report this at the ferromine issue tracker")]
    Internal(String),
}

impl CoreError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        CoreError::InvalidInput(msg.into())
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;
