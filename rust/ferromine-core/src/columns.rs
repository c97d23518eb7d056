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
/// Most features per whole-feature block of a row-major matrix: such a block
/// reads a run of up to 256 bytes of every row (not one cache line of each,
/// which the prefetcher follows poorly), and its kernels keep per-feature
/// buffers, so memory grows with the features in flight.
const WHOLE_COLS: usize = 32;
/// Values of a row-major block transposed at a time (256 KiB of scratch, in
/// L2): as many rows as fit, so each state takes long runs of its feature.
const GROUP_VALUES: usize = 1 << 15;
/// Features transposed together: their scratch columns (about 270 KiB) stay
/// in L2 while the states read them.
const WIDE_COLS: usize = 128;
/// Rows transposed at a time for `w` features, and the distance between
/// their scratch columns: the rows plus a cache line, so that columns are not
/// a multiple of 4 KiB apart (same L1 sets).
fn row_group(w: usize) -> (usize, usize) {
    let rows = (GROUP_VALUES / w.max(1)).clamp(64, 1024) / 8 * 8;
    (rows, rows + 8)
}
/// How far ahead, in rows, a row-major transpose prefetches.
const PREFETCH_ROWS: usize = 16;
/// Values handed to `push_slice` at a time when a column must be converted
/// first.
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
                let width = self.cols.len().min(WIDE_COLS);
                let (group_rows, pitch) = row_group(width);
                let mut scratch = if row_major {
                    vec![0.0f64; pitch * width]
                } else {
                    Vec::new()
                };
                // Sub-ranges keep the cancel flag polled in whole-column tasks.
                for r0 in self.rows.clone().step_by(step) {
                    cancel.check()?;
                    let tile = x.slice(s![r0..(r0 + step).min(self.rows.end), self.cols.clone()]);
                    if row_major {
                        // Transpose a few hundred rows at a time, reading
                        // each row front to back (sequential memory, which
                        // the prefetcher streams), into per-feature scratch
                        // columns that the states then read from cache.
                        let n = tile.nrows();
                        for r1 in (0..n).step_by(group_rows) {
                            let rows = tile.slice(s![r1..(r1 + group_rows).min(n), ..]);
                            let m = rows.nrows();
                            for (g, group) in states.chunks_mut(WIDE_COLS).enumerate() {
                                let c0 = g * WIDE_COLS;
                                let part = rows.slice(s![.., c0..c0 + group.len()]);
                                transpose(part, &mut scratch, pitch);
                                for (state, col) in group.iter_mut().zip(scratch.chunks(pitch)) {
                                    state.push_slice(&col[..m]);
                                }
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
                    (true, false) => (whole_feature_width(d), TILE_ROWS),
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

/// Width of the whole-feature blocks of a row-major matrix with `d`
/// features: at most [`WHOLE_COLS`], an even number of equal blocks (so two
/// threads share them evenly), from the shape alone.
fn whole_feature_width(d: usize) -> usize {
    let blocks = d
        .div_ceil(WHOLE_COLS)
        .next_multiple_of(2)
        .clamp(1, d.max(1));
    d.div_ceil(blocks).max(1)
}

/// Transpose `part` (at most `pitch` rows) into `scratch`: feature `k` of
/// row `i` goes to `scratch[k * pitch + i]`. Rows are read front to
/// back; contiguous `f64` rows go four at a time through 4x4 AVX transposes.
fn transpose<T: Value>(part: ArrayView2<'_, T>, scratch: &mut [f64], pitch: usize) {
    let (m, w) = part.dim();
    if m > pitch || scratch.len() < w * pitch {
        // Not reached (callers size both); keeps the indexing below in range.
        return;
    }
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        let (base, stride) = (part.as_ptr() as *const i8, part.strides()[0]);
        let run = w * std::mem::size_of::<T>();
        while i + 4 <= m {
            // Strided runs defeat the hardware prefetcher (it stops at page
            // boundaries): ask for the rows a few steps ahead. A prefetch
            // never faults, even past the end of the data.
            for r in i + PREFETCH_ROWS..i + PREFETCH_ROWS + 4 {
                let row = base.wrapping_offset(
                    (r as isize)
                        .wrapping_mul(stride)
                        .wrapping_mul(std::mem::size_of::<T>() as isize),
                );
                for b in (0..run).step_by(64).chain([run.saturating_sub(1)]) {
                    // SAFETY: SSE is part of x86-64; prefetching does not access memory.
                    unsafe {
                        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                            row.wrapping_add(b),
                        )
                    };
                }
            }
            let row = |r: usize| part.row(i + r).to_slice().and_then(T::as_f64_slice);
            let (Some(r0), Some(r1), Some(r2), Some(r3)) = (row(0), row(1), row(2), row(3)) else {
                break;
            };
            // SAFETY: AVX was just checked; the rows have `w` values each and
            // `i + 4 <= m <= pitch`, `scratch.len() >= w * pitch`.
            unsafe { transpose4_avx([r0, r1, r2, r3], i, scratch, pitch) };
            i += 4;
        }
    }
    for (i, row) in part.rows().into_iter().enumerate().skip(i) {
        for (col, &v) in scratch.chunks_mut(pitch).zip(row.iter()) {
            col[i] = v.to_f64();
        }
    }
}

/// Four rows of `w` values into `scratch` columns at rows `i..i + 4`.
///
/// # Safety
/// The CPU must support AVX; every row has the same length `w`,
/// `i + 4 <= pitch` and `scratch.len() >= w * pitch`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose4_avx(rows: [&[f64]; 4], i: usize, scratch: &mut [f64], pitch: usize) {
    use std::arch::x86_64::*;
    let w = rows.iter().map(|r| r.len()).min().unwrap_or(0);
    let dst = scratch.as_mut_ptr().add(i);
    let mut k = 0;
    while k + 4 <= w {
        let a = _mm256_loadu_pd(rows[0].as_ptr().add(k));
        let b = _mm256_loadu_pd(rows[1].as_ptr().add(k));
        let c = _mm256_loadu_pd(rows[2].as_ptr().add(k));
        let d = _mm256_loadu_pd(rows[3].as_ptr().add(k));
        // [a0 b0 a2 b2], [a1 b1 a3 b3], [c0 d0 c2 d2], [c1 d1 c3 d3]
        let ab02 = _mm256_unpacklo_pd(a, b);
        let ab13 = _mm256_unpackhi_pd(a, b);
        let cd02 = _mm256_unpacklo_pd(c, d);
        let cd13 = _mm256_unpackhi_pd(c, d);
        _mm256_storeu_pd(
            dst.add(k * pitch),
            _mm256_permute2f128_pd::<0x20>(ab02, cd02),
        );
        _mm256_storeu_pd(
            dst.add((k + 1) * pitch),
            _mm256_permute2f128_pd::<0x20>(ab13, cd13),
        );
        _mm256_storeu_pd(
            dst.add((k + 2) * pitch),
            _mm256_permute2f128_pd::<0x31>(ab02, cd02),
        );
        _mm256_storeu_pd(
            dst.add((k + 3) * pitch),
            _mm256_permute2f128_pd::<0x31>(ab13, cd13),
        );
        k += 4;
    }
    while k < w {
        for (r, row) in rows.iter().enumerate() {
            *dst.add(k * pitch + r) = row[k];
        }
        k += 1;
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

    /// Every value of a feature, in the order visited.
    struct Record(Vec<f64>);
    impl Visitor for Record {
        fn push(&mut self, x: f64) {
            self.0.push(x);
        }
        fn merge(&mut self, mut o: Self) {
            self.0.append(&mut o.0);
        }
    }

    fn recorded<T: Value>(c: &Columns<'_, T>) -> Vec<Vec<f64>> {
        c.visit(|_| Record(Vec::new()), &Cancel::new())
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect()
    }

    #[test]
    fn row_major_transpose_keeps_every_value_in_place() {
        // More features than one transposed group (and not a multiple of
        // four), rows off the group sizes; f64 (vector path) and f32.
        for (n, d) in [(70_001, 133), (1_001, 7), (3, 5), (300, 2)] {
            let c = Array2::from_shape_fn((n, d), |(i, j)| (i * 1000 + j) as f64);
            let want: Vec<Vec<f64>> = (0..d).map(|j| c.column(j).to_vec()).collect();
            assert!(recorded(&Columns::Matrix(c.view())) == want, "{n} x {d}");
            let c32 = c.mapv(|v| v as f32);
            let want32: Vec<Vec<f64>> = (0..d)
                .map(|j| c32.column(j).iter().map(|&v| v as f64).collect())
                .collect();
            assert!(
                recorded(&Columns::Matrix(c32.view())) == want32,
                "{n} x {d} f32"
            );
            // Whole-feature blocks (the quantile walk) see the same values.
            let data = Columns::Matrix(c.view());
            let whole = data
                .map_blocks(|b| b.visit(|_| Record(Vec::new()), &Cancel::new()))
                .unwrap();
            let whole: Vec<Vec<f64>> = whole.into_iter().map(|r| r.0).collect();
            assert!(whole == want, "{n} x {d} whole features");
            // Reversed rows and features (negative strides, still row-major).
            let rev = c.slice(s![..;-1, ..;-1]);
            let want_rev: Vec<Vec<f64>> = rev.columns().into_iter().map(|c| c.to_vec()).collect();
            assert!(
                recorded(&Columns::Matrix(rev)) == want_rev,
                "{n} x {d} reversed"
            );
        }
    }

    #[test]
    fn whole_feature_blocks_split_evenly() {
        assert_eq!(whole_feature_width(0), 1);
        assert_eq!(whole_feature_width(1), 1);
        assert_eq!(whole_feature_width(20), 10);
        assert_eq!(whole_feature_width(100), 25);
        assert_eq!(whole_feature_width(1000), 32);
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
