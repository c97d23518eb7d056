//! Numeric input as the kernels see it, and one tiled, parallel walk over it.
//!
//! Two shapes cover every source without copying: a 2-D matrix with arbitrary
//! strides (NumPy, C or F order, slices, read-only memmaps) and, per feature,
//! a list of contiguous chunks (Arrow record batches). Kernels implement
//! [`Visitor`] for one feature and never see the layout.

use std::ops::Range;

use ndarray::{s, ArrayView1, ArrayView2};
use rayon::prelude::*;

use crate::error::{CoreError, Result};
use crate::parallel::Cancel;

/// A float type the kernels read. Values are widened to `f64` on the fly
/// (exact for `f32`).
pub trait Value: Copy + Send + Sync + 'static {
    fn to_f64(self) -> f64;
}
impl Value for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}
impl Value for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
}

/// Per-feature state fed one value at a time (NaN stands for missing).
pub trait Visitor: Send {
    fn push(&mut self, x: f64);
    /// Fold in the state of a later row range of the same feature.
    fn merge(&mut self, other: Self);
}

/// Numeric features, borrowed.
pub enum Columns<'a, T> {
    /// rows x features, any strides.
    Matrix(ArrayView2<'a, T>),
    /// Per feature, its chunks in row order; every feature has `n_rows` values.
    Chunked {
        n_rows: usize,
        columns: Vec<Vec<ArrayView1<'a, T>>>,
    },
}

/// Rows per task when a feature is walked down a column.
const COLUMN_ROWS: usize = 1 << 16;
/// Rows per task when a row-major matrix is walked across rows.
const TILE_ROWS: usize = 1 << 13;
/// Features per task for a row-major matrix: one or two cache lines a row.
const TILE_COLS: usize = 8;

enum Part {
    /// A row range of the matrix.
    Rows(Range<usize>),
    /// A row range of one chunk of a chunked feature.
    Chunk(usize, Range<usize>),
}

struct Task {
    cols: Range<usize>,
    part: Part,
}

impl<'a, T: Value> Columns<'a, T> {
    /// Chunked columns; checks that every feature has the same number of rows.
    pub fn chunked(columns: Vec<Vec<ArrayView1<'a, T>>>) -> Result<Self> {
        let lens: Vec<usize> = columns
            .iter()
            .map(|c| c.iter().map(|a| a.len()).sum())
            .collect();
        let n_rows = lens.first().copied().unwrap_or(0);
        if let Some(j) = lens.iter().position(|&l| l != n_rows) {
            return Err(CoreError::invalid(format!(
                "column {j} has {} rows but column 0 has {n_rows}; every column must have the same number of rows",
                lens[j]
            )));
        }
        Ok(Columns::Chunked { n_rows, columns })
    }

    pub fn n_features(&self) -> usize {
        match self {
            Columns::Matrix(x) => x.ncols(),
            Columns::Chunked { columns, .. } => columns.len(),
        }
    }

    pub fn n_rows(&self) -> usize {
        match self {
            Columns::Matrix(x) => x.nrows(),
            Columns::Chunked { n_rows, .. } => *n_rows,
        }
    }

    /// Adjacent features sit next to each other in memory (C order).
    fn row_major(&self) -> bool {
        match self {
            Columns::Matrix(x) => x.ncols() > 1 && x.strides()[1].unsigned_abs() == 1,
            Columns::Chunked { .. } => false,
        }
    }

    /// Cut the work into tasks whose boundaries depend only on the shape.
    /// With `split_rows == false` every task holds whole features.
    fn tasks(&self, split_rows: bool, block: usize) -> Vec<Task> {
        let d = self.n_features();
        let mut tasks = Vec::new();
        match self {
            Columns::Matrix(x) => {
                let n = x.nrows();
                let (width, rows) = if self.row_major() {
                    (block, TILE_ROWS)
                } else {
                    (1, COLUMN_ROWS)
                };
                let rows = if split_rows { rows } else { n.max(1) };
                for c0 in (0..d).step_by(width) {
                    let cols = c0..(c0 + width).min(d);
                    let mut r0 = 0;
                    loop {
                        let r1 = (r0 + rows).min(n);
                        tasks.push(Task {
                            cols: cols.clone(),
                            part: Part::Rows(r0..r1),
                        });
                        r0 = r1;
                        if r0 >= n {
                            break;
                        }
                    }
                }
            }
            Columns::Chunked { columns, .. } => {
                for (j, chunks) in columns.iter().enumerate() {
                    if !split_rows || chunks.is_empty() {
                        tasks.push(Task {
                            cols: j..j + 1,
                            part: Part::Chunk(usize::MAX, 0..0),
                        });
                        continue;
                    }
                    for (k, chunk) in chunks.iter().enumerate() {
                        let n = chunk.len();
                        for r0 in (0..n).step_by(COLUMN_ROWS) {
                            tasks.push(Task {
                                cols: j..j + 1,
                                part: Part::Chunk(k, r0..(r0 + COLUMN_ROWS).min(n)),
                            });
                        }
                    }
                }
            }
        }
        tasks
    }

    fn run_task<S: Visitor>(&self, task: &Task, states: &mut [S], cancel: &Cancel) -> Result<()> {
        match (self, &task.part) {
            (Columns::Matrix(x), Part::Rows(rows)) => {
                let row_major = self.row_major();
                let step = if row_major { TILE_ROWS } else { COLUMN_ROWS };
                // Sub-ranges keep the cancel flag polled even in whole-column tasks.
                for r0 in rows.clone().step_by(step) {
                    cancel.check()?;
                    let tile = x.slice(s![r0..(r0 + step).min(rows.end), task.cols.clone()]);
                    if row_major {
                        for row in tile.rows() {
                            for (state, &v) in states.iter_mut().zip(row.iter()) {
                                state.push(v.to_f64());
                            }
                        }
                    } else {
                        for (state, col) in states.iter_mut().zip(tile.columns()) {
                            push_all(state, col);
                        }
                    }
                }
            }
            (Columns::Chunked { columns, .. }, Part::Chunk(k, rows)) => {
                let chunks = &columns[task.cols.start];
                let Some(state) = states.first_mut() else {
                    return Ok(());
                };
                let pieces: Vec<ArrayView1<'_, T>> = if *k == usize::MAX {
                    chunks.iter().map(|c| c.view()).collect()
                } else {
                    vec![chunks[*k].slice(s![rows.clone()])]
                };
                for piece in pieces {
                    for r0 in (0..piece.len()).step_by(COLUMN_ROWS) {
                        cancel.check()?;
                        push_all(state, piece.slice(s![r0..(r0 + COLUMN_ROWS).min(piece.len())]));
                    }
                }
            }
            _ => {
                return Err(CoreError::Internal("task does not match its data".into()));
            }
        }
        Ok(())
    }

    /// Walk every value once, in parallel over fixed tiles, and return one
    /// merged state per feature. Merging follows tile order, so the result
    /// does not depend on the number of threads.
    pub fn visit<S: Visitor>(
        &self,
        make: impl Fn(usize) -> S + Sync,
        cancel: &Cancel,
    ) -> Result<Vec<S>> {
        let tasks = self.tasks(true, TILE_COLS);
        let parts: Vec<(usize, Vec<S>)> = tasks
            .par_iter()
            .map(|task| {
                let mut states: Vec<S> = task.cols.clone().map(&make).collect();
                self.run_task(task, &mut states, cancel)?;
                Ok((task.cols.start, states))
            })
            .collect::<Result<_>>()?;
        let mut merged: Vec<Option<S>> = (0..self.n_features()).map(|_| None).collect();
        for (c0, states) in parts {
            for (j, state) in (c0..).zip(states) {
                match &mut merged[j] {
                    Some(m) => m.merge(state),
                    slot @ None => *slot = Some(state),
                }
            }
        }
        merged
            .into_iter()
            .enumerate()
            .map(|(j, s)| s.ok_or_else(|| CoreError::Internal(format!("feature {j} was not visited"))))
            .collect()
    }

    /// Like [`visit`](Self::visit) but each task holds whole features and turns
    /// each feature's state into its result at once, so only a few features'
    /// states are alive at a time (bounded memory for states that hold values).
    pub fn map_features<S: Visitor, R: Send>(
        &self,
        make: impl Fn(usize) -> S + Sync,
        finish: impl Fn(usize, S) -> Result<R> + Sync,
        cancel: &Cancel,
    ) -> Result<Vec<R>> {
        let tasks = self.tasks(false, TILE_COLS);
        let parts: Vec<Vec<R>> = tasks
            .par_iter()
            .map(|task| {
                let mut states: Vec<S> = task.cols.clone().map(&make).collect();
                self.run_task(task, &mut states, cancel)?;
                (task.cols.start..)
                    .zip(states)
                    .map(|(j, s)| finish(j, s))
                    .collect::<Result<Vec<R>>>()
            })
            .collect::<Result<_>>()?;
        Ok(parts.into_iter().flatten().collect())
    }
}

#[inline]
fn push_all<T: Value, S: Visitor>(state: &mut S, col: ArrayView1<'_, T>) {
    match col.as_slice() {
        Some(values) => {
            for &v in values {
                state.push(v.to_f64());
            }
        }
        None => {
            for &v in col.iter() {
                state.push(v.to_f64());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    struct Sum(f64, usize);
    impl Visitor for Sum {
        fn push(&mut self, x: f64) {
            self.0 += x;
            self.1 += 1;
        }
        fn merge(&mut self, o: Self) {
            self.0 += o.0;
            self.1 += o.1;
        }
    }

    fn sums(c: &Columns<'_, f64>) -> Vec<(f64, usize)> {
        c.visit(|_| Sum(0.0, 0), &Cancel::new())
            .unwrap()
            .into_iter()
            .map(|s| (s.0, s.1))
            .collect()
    }

    #[test]
    fn every_layout_visits_every_value_once() {
        let n = 70_000;
        let d = 11;
        let c = Array2::from_shape_fn((n, d), |(i, j)| (i % 7 + j) as f64);
        let f = c.t().to_owned();
        let f = f.t();
        let expect: Vec<(f64, usize)> = (0..d)
            .map(|j| (c.column(j).sum(), n))
            .collect();
        assert_eq!(sums(&Columns::Matrix(c.view())), expect);
        assert_eq!(sums(&Columns::Matrix(f)), expect);
        let chunked = Columns::chunked(
            (0..d)
                .map(|j| vec![c.slice(s![..100, j]), c.slice(s![100.., j])])
                .collect(),
        )
        .unwrap();
        assert_eq!(sums(&chunked), expect);
        // Strided: every other row.
        let half = c.slice(s![..;2, ..]);
        let got = sums(&Columns::Matrix(half));
        assert_eq!(got[3].1, n / 2);
    }

    #[test]
    fn ragged_chunks_are_rejected() {
        let a = ndarray::Array1::<f64>::zeros(3);
        let b = ndarray::Array1::<f64>::zeros(4);
        let err = Columns::chunked(vec![vec![a.view()], vec![b.view()]]).err().unwrap();
        assert!(err.to_string().contains("same number of rows"));
    }

    #[test]
    fn empty_input() {
        let c = Array2::<f64>::zeros((0, 3));
        assert_eq!(sums(&Columns::Matrix(c.view())), vec![(0.0, 0); 3]);
    }
}
