//! ferromine-core: the data-mining kernels of ferromine, in pure Rust.
//!
//! Every kernel is a small stateless function over borrowed data that returns
//! partial state (counts, sums) plus a way to merge it, so that one call, a
//! batch-by-batch stream and a distributed run all use the same code. Fitted
//! state lives with the caller. Nothing here knows about Python.

pub mod columns;
pub mod datasets;
pub mod error;
pub mod fpgrowth;
pub mod iforest;
pub mod kmeans;
pub mod parallel;
pub mod psi;

pub use columns::Columns;
pub use error::CoreError;
pub use parallel::Cancel;
