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
    /// The same slice as `f64`, when it already is (no conversion needed).
    fn as_f64_slice(values: &[Self]) -> Option<&[f64]>;
}
impl Value for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    fn as_f64_slice(values: &[Self]) -> Option<&[f64]> {
        Some(values)
    }
}
impl Value for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn as_f64_slice(_: &[Self]) -> Option<&[f64]> {
        None
    }
}

/// Per-feature state fed one value at a time (NaN stands for missing).
pub trait Visitor: Send {
    fn push(&mut self, x: f64);
    /// Many values at once; kernels override this with a vectorised loop.
    fn push_slice(&mut self, xs: &[f64]) {
        for &x in xs {
            self.push(x);
        }
    }
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
/// Rows of a row-major block transposed while they are in cache.
const ROW_GROUP: usize = 256;
/// Values handed to `push_slice` at a time when they must be converted or
/// transposed first (fits in L1 with `TILE_COLS` features).
const SCRATCH: usize = 512;

/// A rectangle of the data that one task owns: some features, some rows.
pub struct Block<'d, 'a, T> {
    data: &'d Columns<'a, T>,
    /// Features of the block (global indices).
    pub cols: Range<usize>,
    /// Row range (for chunked data: within chunk `chunk`, or all rows when
    /// `chunk` is None).
    rows: Range<usize>,
    chunk: Option<usize>,
}

impl<'a, T: Value> Block<'_, 'a, T> {
    /// Rows in the block.
    pub fn n_rows(&self) -> usize {
        match (self.data, self.chunk) {
            (Columns::Chunked { n_rows, .. }, None) => *n_rows,
            _ => self.rows.len(),
        }
    }

    /// The value of block row `i` of feature `j` (global index), or NaN when
    /// out of range. For sampling; walks use [`visit`](Self::visit).
    pub fn value(&self, i: usize, j: usize) -> f64 {
        match self.data {
            Columns::Matrix(x) => x
                .get((self.rows.start + i, j))
                .map_or(f64::NAN, |v| v.to_f64()),
            Columns::Chunked { columns, .. } => {
                let Some(chunks) = columns.get(j) else {
                    return f64::NAN;
                };
                if let Some(k) = self.chunk {
                    return chunks
                        .get(k)
                        .and_then(|c| c.get(self.rows.start + i))
                        .map_or(f64::NAN, |v| v.to_f64());
                }
                let mut i = i;
                for c in chunks {
                    if i < c.len() {
                        return c[i].to_f64();
                    }
                    i -= c.len();
                }
                f64::NAN
            }
        }
    }

    /// Feed every value of the block to one new state per feature, as
    /// contiguous `f64` slices: borrowed when the data already is contiguous
    /// `f64`, else converted or transposed through a small scratch buffer.
    pub fn visit<S: Visitor>(&self, make: impl Fn(usize) -> S, cancel: &Cancel) -> Result<Vec<S>> {
        let mut states: Vec<S> = self.cols.clone().map(make).collect();
        match self.data {
            Columns::Matrix(x) => {
                let row_major = self.data.row_major();
                let step = if row_major { TILE_ROWS } else { COLUMN_ROWS };
                let mut scratch = if row_major {
                    vec![[0.0f64; SCRATCH + 8]; TILE_COLS]
                } else {
                    Vec::new()
                };
                // Sub-ranges keep the cancel flag polled in whole-column tasks.
                for r0 in self.rows.clone().step_by(step) {
                    cancel.check()?;
                    let tile = x.slice(s![r0..(r0 + step).min(self.rows.end), self.cols.clone()]);
                    if row_major {
                        // A block may span many features: take a few hundred
                        // whole rows (contiguous memory, read once from RAM)
                        // and transpose them group by group from cache.
                        let n = tile.nrows();
                        for r1 in (0..n).step_by(ROW_GROUP) {
                            let rows = tile.slice(s![r1..(r1 + ROW_GROUP).min(n), ..]);
                            for (g, group) in states.chunks_mut(TILE_COLS).enumerate() {
                                let c0 = g * TILE_COLS;
                                let part = rows.slice(s![.., c0..c0 + group.len()]);
                                push_rows(group, part, &mut scratch);
                            }
                        }
                    } else {
                        for (state, col) in states.iter_mut().zip(tile.columns()) {
                            push_column(state, col);
                        }
                    }
                }
            }
            Columns::Chunked { columns, .. } => {
                let chunks = &columns[self.cols.start];
                let Some(state) = states.first_mut() else {
                    return Ok(states);
                };
                let pieces: Vec<ArrayView1<'_, T>> = match self.chunk {
                    None => chunks.iter().map(|c| c.view()).collect(),
                    Some(k) => vec![chunks[k].slice(s![self.rows.clone()])],
                };
                for piece in pieces {
                    for r0 in (0..piece.len()).step_by(COLUMN_ROWS) {
                        cancel.check()?;
                        push_column(
                            state,
                            piece.slice(s![r0..(r0 + COLUMN_ROWS).min(piece.len())]),
                        );
                    }
                }
            }
        }
        Ok(states)
    }
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

    /// Cut the data into blocks whose boundaries depend only on its shape.
    /// With `split_rows == false` every block holds whole features.
    fn blocks(&self, split_rows: bool) -> Vec<Block<'_, 'a, T>> {
        let d = self.n_features();
        let mut blocks = Vec::new();
        match self {
            Columns::Matrix(x) => {
                let n = x.nrows();
                // A split row-major walk takes whole rows (all features): its
                // tiles are contiguous memory. Whole-feature blocks keep a
                // few features each, so memory stays bounded.
                let (width, rows) = match (self.row_major(), split_rows) {
                    (true, true) => (d.max(1), TILE_ROWS),
                    (true, false) => (TILE_COLS, TILE_ROWS),
                    (false, _) => (1, COLUMN_ROWS),
                };
                let rows = if split_rows { rows } else { n.max(1) };
                for c0 in (0..d).step_by(width) {
                    let cols = c0..(c0 + width).min(d);
                    let mut r0 = 0;
                    loop {
                        let r1 = (r0 + rows).min(n);
                        blocks.push(Block {
                            data: self,
                            cols: cols.clone(),
                            rows: r0..r1,
                            chunk: None,
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
                        blocks.push(Block {
                            data: self,
                            cols: j..j + 1,
                            rows: 0..0,
                            chunk: None,
                        });
                        continue;
                    }
                    for (k, chunk) in chunks.iter().enumerate() {
                        let n = chunk.len();
                        for r0 in (0..n).step_by(COLUMN_ROWS) {
                            blocks.push(Block {
                                data: self,
                                cols: j..j + 1,
                                rows: r0..(r0 + COLUMN_ROWS).min(n),
                                chunk: Some(k),
                            });
                        }
                    }
                }
            }
        }
        blocks
    }

    /// Walk every value once, in parallel over fixed tiles, and return one
    /// merged state per feature. Merging follows tile order, so the result
    /// does not depend on the number of threads.
    pub fn visit<S: Visitor>(
        &self,
        make: impl Fn(usize) -> S + Sync,
        cancel: &Cancel,
    ) -> Result<Vec<S>> {
        let parts: Vec<(usize, Vec<S>)> = self
            .blocks(true)
            .par_iter()
            .map(|block| Ok((block.cols.start, block.visit(&make, cancel)?)))
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
            .map(|(j, s)| {
                s.ok_or_else(|| CoreError::Internal(format!("feature {j} was not visited")))
            })
            .collect()
    }

    /// Run `work` on blocks of whole features, in parallel, and concatenate
    /// its per-feature results in feature order. For kernels that walk a
    /// feature more than once or keep its values: only a few features are
    /// in flight at a time, so memory stays bounded.
    pub fn map_blocks<R: Send>(
        &self,
        work: impl Fn(&Block<'_, 'a, T>) -> Result<Vec<R>> + Sync,
    ) -> Result<Vec<R>> {
        let parts: Vec<Vec<R>> = self
            .blocks(false)
            .par_iter()
            .map(&work)
            .collect::<Result<_>>()?;
        Ok(parts.into_iter().flatten().collect())
    }
}

/// Feed one column (any stride, any float type) as f64 slices.
fn push_column<T: Value, S: Visitor>(state: &mut S, col: ArrayView1<'_, T>) {
    if let Some(values) = col.as_slice().and_then(T::as_f64_slice) {
        state.push_slice(values);
        return;
    }
    let mut scratch = [0.0f64; SCRATCH];
    let mut n = 0;
    for &v in col.iter() {
        scratch[n] = v.to_f64();
        n += 1;
        if n == SCRATCH {
            state.push_slice(&scratch);
            n = 0;
        }
    }
    state.push_slice(&scratch[..n]);
}

/// Feed a row-major tile: transpose blocks of rows into per-feature scratch
/// columns, so every state still sees contiguous slices.
/// `scratch` has `TILE_COLS` columns, each padded by a cache line: columns
/// exactly 4 KiB apart would all map to the same L1 sets.
fn push_rows<T: Value, S: Visitor>(
    states: &mut [S],
    tile: ArrayView2<'_, T>,
    scratch: &mut [[f64; SCRATCH + 8]],
) {
    let w = states.len().min(TILE_COLS).min(scratch.len());
    let n = tile.nrows();
    let full_rows = w == TILE_COLS && tile.ncols() == TILE_COLS && tile.strides()[1] == 1;
    for r0 in (0..n).step_by(SCRATCH) {
        let rows = tile.slice(s![r0..(r0 + SCRATCH).min(n), ..]);
        let m = rows.nrows();
        if full_rows {
            // A row of the tile is TILE_COLS adjacent values: read it as a
            // fixed-size array, so the copy unrolls into plain moves.
            let (base, stride) = (rows.as_ptr(), rows.strides()[0]);
            for i in 0..m {
                // SAFETY: row i of `rows` exists and holds TILE_COLS values
                // at unit stride from its first (checked above).
                let row = unsafe { &*(base.offset(i as isize * stride) as *const [T; TILE_COLS]) };
                for (col, &v) in scratch.iter_mut().zip(row) {
                    col[i] = v.to_f64();
                }
            }
        } else {
            for (i, row) in rows.rows().into_iter().enumerate() {
                for (col, &v) in scratch.iter_mut().zip(row.iter()).take(w) {
                    col[i] = v.to_f64();
                }
            }
        }
        for (state, col) in states.iter_mut().zip(scratch.iter()) {
            state.push_slice(&col[..m]);
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
        let expect: Vec<(f64, usize)> = (0..d).map(|j| (c.column(j).sum(), n)).collect();
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
        let err = Columns::chunked(vec![vec![a.view()], vec![b.view()]])
            .err()
            .unwrap();
        assert!(err.to_string().contains("same number of rows"));
    }

    #[test]
    fn empty_input() {
        let c = Array2::<f64>::zeros((0, 3));
        assert_eq!(sums(&Columns::Matrix(c.view())), vec![(0.0, 0); 3]);
    }
}
