//! k-means: Lloyd iterations over a fused distance / argmin / centre-sum pass,
//! greedy k-means++ seeding, and the helpers `predict`, `score` and
//! `transform` need.
//!
//! Accuracy: distances use `||c||^2 - 2 x.c` (the argmin does not need
//! `||x||^2`), which cancels badly far from the origin. As scikit-learn does,
//! every kernel works on shifted coordinates `x - s` (the caller passes `s`,
//! the column means of X during fit), so the expansion is as accurate as
//! sklearn's. Centre sums, weights, potentials and inertia are f64; the
//! distance micro-kernel runs in X's dtype.
//!
//! Determinism: rows are cut into chunks of [`CHUNK`] rows and chunks into
//! groups whose size depends only on (n, k, d). Each group is reduced
//! sequentially by one task; group partials are summed in group order. So the
//! result is bit-identical for any thread count.

// The micro-kernels index fixed-size register tiles on purpose: LLVM keeps
// them in vector registers.
#![allow(clippy::needless_range_loop)]

use std::ops::{Add, Mul, Sub};

use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::error::{CoreError, Result};
use crate::parallel::Cancel;

/// Rows per chunk: the unit of packing and cancellation (sklearn's Lloyd uses 256 too).
pub const CHUNK: usize = 256;
/// Rows per micro-kernel block.
const MR: usize = 4;
/// Upper bound on the memory held by per-group centre sums.
const GROUP_SUMS_BYTES: usize = 256 << 20;
/// At most this many groups: enough to balance a few dozen threads.
const MAX_GROUPS: usize = 64;

/// The float types X may have. Arithmetic of the micro-kernel runs in `Self`.
pub trait Float:
    Copy
    + Send
    + Sync
    + PartialOrd
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
{
    const ZERO: Self;
    const INFINITY: Self;
    /// Unit roundoff (half an ulp of 1): bounds the kernel's rounding error.
    const EPS: f64;
    /// Centre panel width of the micro-kernel (two AVX2 registers).
    const NR: usize;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// The micro-kernel with AVX2+FMA intrinsics (same result as [`micro`]
    /// with FMA).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    unsafe fn micro_avx2<const NR: usize>(
        xs: &[Self],
        d: usize,
        panel: &[Self],
        acc: &mut [[Self; NR]; MR],
    );
    /// Fold `norms - 2 * acc` of one panel into the per-lane running argmin
    /// (strict `<`), with AVX2 compares and blends.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    unsafe fn argmin_update_avx2<const NR: usize>(
        acc: &[[Self; NR]; MR],
        norms: &[Self],
        panel_no: Self,
        best: &mut [[Self; NR]; MR],
        bpanel: &mut [[Self; NR]; MR],
    );
    /// Rows per block of the rows-in-lanes layout (two AVX2 registers).
    const RBT: usize;
    /// [`transpose_rows`] into blocks of [`Float::RBT`] rows.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    unsafe fn transpose_avx2(xs: &[Self], rows: usize, d: usize, out: &mut [Self]);
    /// k-means++ candidate distances of one chunk in the rows-in-lanes layout
    /// (see [`sqdist_cols`]).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    unsafe fn sqdist_cols_avx2(
        xt: &[Self],
        rows: usize,
        xn: &[f64],
        cands: &Cands<Self>,
        out: &mut [f64],
    ) -> bool;
    /// The slice as f64 values when `Self` is f64 (the screened f64 pass).
    fn as_f64s(_s: &[Self]) -> Option<&[f64]> {
        None
    }
    /// The rows-in-lanes argmin kernel ([`argmin_cols_f32`]); `false` when the
    /// type has none (then the caller takes the panel kernel).
    fn argmin_cols(
        _simd: bool,
        _xs: &[Self],
        _panels: &Panels<Self>,
        _labels: &mut [i32],
        _xt: &mut Vec<Self>,
    ) -> bool {
        false
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const INFINITY: Self = f64::INFINITY;
    const EPS: f64 = f64::EPSILON / 2.0;
    const NR: usize = 8;
    const RBT: usize = RB64;
    fn as_f64s(s: &[f64]) -> Option<&[f64]> {
        Some(s)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn transpose_avx2(xs: &[f64], rows: usize, d: usize, out: &mut [f64]) {
        transpose_rows_f64_avx2(xs, rows, d, out)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn sqdist_cols_avx2(
        xt: &[f64],
        rows: usize,
        xn: &[f64],
        cands: &Cands<f64>,
        out: &mut [f64],
    ) -> bool {
        sqdist_cols_f64(xt, rows, xn, cands, out)
    }
    fn argmin_cols(
        simd: bool,
        xs: &[f64],
        panels: &Panels<f64>,
        labels: &mut [i32],
        xt: &mut Vec<f64>,
    ) -> bool {
        // Measured against the panel kernel (CPU time, vs sklearn): faster at
        // d = 16 (k = 8: 1.12x -> 1.56x sklearn), slower at d = 64 (k = 256:
        // 1.18x -> 1.02x), so only for narrow rows.
        #[cfg(target_arch = "x86_64")]
        if simd && panels.d <= F64_COLS_MAX_D && panels.k <= 1 << 52 {
            xt.resize(labels.len().div_ceil(RB64) * panels.d * RB64, 0.0);
            // SAFETY: `simd` is true only when AVX2 and FMA were detected at run time.
            unsafe { transpose_rows_f64_avx2(xs, labels.len(), panels.d, xt) };
            // SAFETY: as above.
            return unsafe { argmin_cols_f64(xt, panels, labels) };
        }
        let _ = (simd, xs, panels, labels, xt);
        false
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn micro_avx2<const NR: usize>(
        xs: &[f64],
        d: usize,
        panel: &[f64],
        acc: &mut [[f64; NR]; MR],
    ) {
        use std::arch::x86_64::*;
        // Two registers of 4 lanes per row; anything else takes the portable path.
        if NR != 2 * 4 || xs.len() < MR * d || panel.len() < d * NR {
            *acc = micro::<f64, NR, true>(xs, d, panel);
            return;
        }
        let mut a = [[_mm256_setzero_pd(); 2]; MR];
        let (x, c) = (xs.as_ptr(), panel.as_ptr());
        for p in 0..d {
            // SAFETY: p < d, i < MR and the lengths were checked above.
            let c0 = _mm256_loadu_pd(c.add(p * NR));
            let c1 = _mm256_loadu_pd(c.add(p * NR + 4));
            for i in 0..MR {
                let b = _mm256_set1_pd(*x.add(i * d + p));
                a[i][0] = _mm256_fmadd_pd(b, c0, a[i][0]);
                a[i][1] = _mm256_fmadd_pd(b, c1, a[i][1]);
            }
        }
        for i in 0..MR {
            _mm256_storeu_pd(acc[i].as_mut_ptr(), a[i][0]);
            _mm256_storeu_pd(acc[i].as_mut_ptr().add(4), a[i][1]);
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn argmin_update_avx2<const NR: usize>(
        acc: &[[f64; NR]; MR],
        norms: &[f64],
        panel_no: f64,
        best: &mut [[f64; NR]; MR],
        bpanel: &mut [[f64; NR]; MR],
    ) {
        use std::arch::x86_64::*;
        if NR != 2 * 4 || norms.len() < NR {
            argmin_update_scalar(acc, norms, panel_no, best, bpanel);
            return;
        }
        let two = _mm256_set1_pd(2.0);
        let pt = _mm256_set1_pd(panel_no);
        for h in 0..2 {
            // SAFETY: h * 4 + 4 <= NR, and norms.len() >= NR was checked.
            let nv = _mm256_loadu_pd(norms.as_ptr().add(h * 4));
            for i in 0..MR {
                let av = _mm256_loadu_pd(acc[i].as_ptr().add(h * 4));
                // norms - 2 * acc: 2 * acc is exact, so fusing does not change the rounding.
                let dist = _mm256_fnmadd_pd(two, av, nv);
                let bv = _mm256_loadu_pd(best[i].as_ptr().add(h * 4));
                let pv = _mm256_loadu_pd(bpanel[i].as_ptr().add(h * 4));
                let lt = _mm256_cmp_pd::<_CMP_LT_OQ>(dist, bv);
                _mm256_storeu_pd(
                    best[i].as_mut_ptr().add(h * 4),
                    _mm256_blendv_pd(bv, dist, lt),
                );
                _mm256_storeu_pd(
                    bpanel[i].as_mut_ptr().add(h * 4),
                    _mm256_blendv_pd(pv, pt, lt),
                );
            }
        }
    }
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const INFINITY: Self = f32::INFINITY;
    const EPS: f64 = f32::EPSILON as f64 / 2.0;
    const NR: usize = 16;
    const RBT: usize = RB;
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn transpose_avx2(xs: &[f32], rows: usize, d: usize, out: &mut [f32]) {
        transpose_rows_avx2(xs, rows, d, out)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn sqdist_cols_avx2(
        xt: &[f32],
        rows: usize,
        xn: &[f64],
        cands: &Cands<f32>,
        out: &mut [f64],
    ) -> bool {
        sqdist_cols_f32(xt, rows, xn, cands, out)
    }
    fn argmin_cols(
        simd: bool,
        xs: &[f32],
        panels: &Panels<f32>,
        labels: &mut [i32],
        xt: &mut Vec<f32>,
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if simd && panels.k <= 1 << 24 {
            xt.resize(labels.len().div_ceil(RB) * panels.d * RB, 0.0);
            // SAFETY: `simd` is true only when AVX2 and FMA were detected at run time.
            unsafe { transpose_rows_avx2(xs, labels.len(), panels.d, xt) };
            // SAFETY: as above.
            return unsafe { argmin_cols_f32(xt, panels, labels) };
        }
        let _ = (simd, xs, panels, labels, xt);
        false
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn micro_avx2<const NR: usize>(
        xs: &[f32],
        d: usize,
        panel: &[f32],
        acc: &mut [[f32; NR]; MR],
    ) {
        use std::arch::x86_64::*;
        // Two registers of 8 lanes per row; anything else takes the portable path.
        if NR != 2 * 8 || xs.len() < MR * d || panel.len() < d * NR {
            *acc = micro::<f32, NR, true>(xs, d, panel);
            return;
        }
        let mut a = [[_mm256_setzero_ps(); 2]; MR];
        let (x, c) = (xs.as_ptr(), panel.as_ptr());
        for p in 0..d {
            // SAFETY: p < d, i < MR and the lengths were checked above.
            let c0 = _mm256_loadu_ps(c.add(p * NR));
            let c1 = _mm256_loadu_ps(c.add(p * NR + 8));
            for i in 0..MR {
                let b = _mm256_set1_ps(*x.add(i * d + p));
                a[i][0] = _mm256_fmadd_ps(b, c0, a[i][0]);
                a[i][1] = _mm256_fmadd_ps(b, c1, a[i][1]);
            }
        }
        for i in 0..MR {
            _mm256_storeu_ps(acc[i].as_mut_ptr(), a[i][0]);
            _mm256_storeu_ps(acc[i].as_mut_ptr().add(8), a[i][1]);
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn argmin_update_avx2<const NR: usize>(
        acc: &[[f32; NR]; MR],
        norms: &[f32],
        panel_no: f32,
        best: &mut [[f32; NR]; MR],
        bpanel: &mut [[f32; NR]; MR],
    ) {
        use std::arch::x86_64::*;
        if NR != 2 * 8 || norms.len() < NR {
            argmin_update_scalar(acc, norms, panel_no, best, bpanel);
            return;
        }
        let two = _mm256_set1_ps(2.0);
        let pt = _mm256_set1_ps(panel_no);
        for h in 0..2 {
            // SAFETY: h * 8 + 8 <= NR, and norms.len() >= NR was checked.
            let nv = _mm256_loadu_ps(norms.as_ptr().add(h * 8));
            for i in 0..MR {
                let av = _mm256_loadu_ps(acc[i].as_ptr().add(h * 8));
                // norms - 2 * acc: 2 * acc is exact, so fusing does not change the rounding.
                let dist = _mm256_fnmadd_ps(two, av, nv);
                let bv = _mm256_loadu_ps(best[i].as_ptr().add(h * 8));
                let pv = _mm256_loadu_ps(bpanel[i].as_ptr().add(h * 8));
                let lt = _mm256_cmp_ps::<_CMP_LT_OQ>(dist, bv);
                _mm256_storeu_ps(
                    best[i].as_mut_ptr().add(h * 8),
                    _mm256_blendv_ps(bv, dist, lt),
                );
                _mm256_storeu_ps(
                    bpanel[i].as_mut_ptr().add(h * 8),
                    _mm256_blendv_ps(pv, pt, lt),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Row access: a dense 2-D view (any strides) or a CSR matrix. Kernels read X
// only row by row into dense buffers of at most one chunk, so CSR input is
// never densified as a whole.

/// Read access to the rows of X.
pub trait Rows<T: Float>: Sync {
    fn nrows(&self) -> usize;
    fn ncols(&self) -> usize;
    fn dim(&self) -> (usize, usize) {
        (self.nrows(), self.ncols())
    }
    /// Row `i`, dense, into `out` (length `ncols`).
    fn read_row(&self, i: usize, out: &mut [T]);
    /// Rows `r0..r1` as one row-major slice, when X is stored that way.
    fn contiguous(&self, _r0: usize, _r1: usize) -> Option<&[T]> {
        None
    }
    /// Whether a dense shifted copy of X is worth its memory (not for CSR).
    fn dense(&self) -> bool {
        true
    }
}

impl<T: Float> Rows<T> for ArrayView2<'_, T> {
    fn nrows(&self) -> usize {
        ArrayView2::nrows(self)
    }
    fn ncols(&self) -> usize {
        ArrayView2::ncols(self)
    }
    fn contiguous(&self, r0: usize, r1: usize) -> Option<&[T]> {
        let d = ArrayView2::ncols(self);
        self.as_slice()?.get(r0 * d..r1 * d)
    }
    #[inline]
    fn read_row(&self, i: usize, out: &mut [T]) {
        let row = self.row(i);
        match row.as_slice() {
            Some(src) => out.copy_from_slice(src),
            None => out.iter_mut().zip(row.iter()).for_each(|(o, &v)| *o = v),
        }
    }
}

/// A CSR matrix (scipy's `data`, `indices`, `indptr`), checked on creation.
#[derive(Debug, Clone, Copy)]
pub struct Csr<'a, T> {
    data: &'a [T],
    indices: &'a [i64],
    indptr: &'a [i64],
    n_cols: usize,
}

impl<'a, T: Float> Csr<'a, T> {
    pub fn new(
        data: &'a [T],
        indices: &'a [i64],
        indptr: &'a [i64],
        n_cols: usize,
    ) -> Result<Self> {
        let bad = |m: &str| Err(CoreError::invalid(format!("invalid CSR matrix: {m}")));
        if indptr.is_empty() || indptr[0] != 0 {
            return bad("indptr must start at 0");
        }
        if indptr.windows(2).any(|w| w[1] < w[0]) {
            return bad("indptr must be non-decreasing");
        }
        let nnz = indptr[indptr.len() - 1];
        if usize::try_from(nnz).ok() != Some(data.len()) || data.len() != indices.len() {
            return bad("data, indices and indptr[-1] must have the same length");
        }
        if indices.iter().any(|&j| j < 0 || j as u64 >= n_cols as u64) {
            return bad("column indices must be in [0, n_features)");
        }
        Ok(Csr {
            data,
            indices,
            indptr,
            n_cols,
        })
    }
}

impl<T: Float> Rows<T> for Csr<'_, T> {
    fn dense(&self) -> bool {
        false
    }
    fn nrows(&self) -> usize {
        self.indptr.len() - 1
    }
    fn ncols(&self) -> usize {
        self.n_cols
    }
    #[inline]
    fn read_row(&self, i: usize, out: &mut [T]) {
        out.iter_mut().for_each(|o| *o = T::ZERO);
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        // Duplicate entries add up, as in scipy.
        for (&j, &v) in self.indices[a..b].iter().zip(&self.data[a..b]) {
            out[j as usize] = out[j as usize] + v;
        }
    }
}

/// Row `i` as a new vector (for the few rows picked as centres).
fn row_vec<T: Float>(x: &impl Rows<T>, i: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; x.ncols()];
    x.read_row(i, &mut out);
    out
}

// ---------------------------------------------------------------------------
// Small deterministic RNG (SplitMix64): one stream per (seed, run).

/// SplitMix64: tiny, fast and good enough to draw seeding candidates.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut s = SplitMix64(seed ^ stream.wrapping_mul(0xD134_2543_DE82_EF95));
        s.next_u64();
        s
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

// ---------------------------------------------------------------------------
// Input checks shared by every entry point.

fn check_dims<T: Float>(
    x: &impl Rows<T>,
    shift: &[f64],
    weights: Option<&[f64]>,
) -> Result<(usize, usize)> {
    let (n, d) = x.dim();
    if n == 0 {
        return Err(CoreError::invalid(
            "Found array with 0 sample(s) (shape=(0, d)) while a minimum of 1 is required",
        ));
    }
    if d == 0 {
        return Err(CoreError::invalid(
            "Found array with 0 feature(s) while a minimum of 1 is required",
        ));
    }
    if shift.len() != d {
        return Err(CoreError::invalid(format!(
            "shift has {} values but X has {d} features",
            shift.len()
        )));
    }
    if let Some(w) = weights {
        if w.len() != n {
            return Err(CoreError::invalid(format!(
                "sample_weight has {} values but X has {n} samples",
                w.len()
            )));
        }
    }
    Ok((n, d))
}

fn check_centers(len: usize, k: usize, d: usize) -> Result<()> {
    if k == 0 {
        return Err(CoreError::invalid("n_clusters must be >= 1"));
    }
    if len != k * d {
        return Err(CoreError::invalid(format!(
            "centers hold {len} values, expected n_clusters * n_features = {k} * {d}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Packing.

/// Centres (shifted, in X's dtype) packed for the micro-kernel: panels of
/// `NR` centres, each stored feature-major (`d` rows of `NR` values), plus
/// their squared norms; padding centres have norm +inf so they never win.
pub struct Panels<T> {
    pub k: usize,
    pub d: usize,
    nr: usize,
    data: Vec<T>,
    norms: Vec<T>,
    /// The same centres in groups of [`CB`], feature-major within a group
    /// (`rowmaj[(j / CB * d + p) * CB + j % CB]`, so the kernels broadcast a
    /// group's values from one pointer), padded with zero centres to a
    /// multiple of [`CB`] (their norm is infinite, so they never win).
    rowmaj: Vec<T>,
    rnorms: Vec<T>,
}

impl<T: Float> Panels<T> {
    /// `centers`: k x d row-major, already shifted, f64.
    pub fn new(centers: &[f64], k: usize, d: usize) -> Self {
        let nr = T::NR;
        let n_panels = k.div_ceil(nr);
        let mut data = vec![T::ZERO; n_panels * d * nr];
        let mut norms = vec![T::INFINITY; n_panels * nr];
        for (j, c) in centers.chunks_exact(d).enumerate().take(k) {
            let (p, jj) = (j / nr, j % nr);
            let mut norm = 0.0f64;
            for (f, &v) in c.iter().enumerate() {
                let t = T::from_f64(v);
                data[(p * d + f) * nr + jj] = t;
                norm += t.to_f64() * t.to_f64();
            }
            norms[p * nr + jj] = T::from_f64(norm);
        }
        let kp = k.div_ceil(CB) * CB;
        let mut rowmaj = vec![T::ZERO; kp * d];
        let mut rnorms = vec![T::INFINITY; kp];
        for j in 0..k {
            let (p, jj) = (j / nr, j % nr);
            for f in 0..d {
                rowmaj[(j / CB * d + f) * CB + j % CB] = data[(p * d + f) * nr + jj];
            }
            rnorms[j] = norms[p * nr + jj];
        }
        Panels {
            k,
            d,
            nr,
            data,
            norms,
            rowmaj,
            rnorms,
        }
    }
}

/// Rows `r0..r1` ready for the kernels (as [`pack_rows`] leaves them):
/// borrowed from X when it is row-major, needs no shift (`unshifted`) and
/// the rows fill whole `MR` blocks; else packed into `buf`.
fn chunk_rows<'a, T: Float>(
    x: &'a impl Rows<T>,
    r0: usize,
    r1: usize,
    shift: &[f64],
    unshifted: bool,
    buf: &'a mut Vec<T>,
) -> &'a [T] {
    if unshifted && (r1 - r0).is_multiple_of(MR) {
        if let Some(s) = x.contiguous(r0, r1) {
            return s;
        }
    }
    pack_rows(x, r0, r1, shift, buf);
    buf
}

/// X shifted once into a row-major copy (the values [`pack_rows`] makes), so
/// the passes of a fit read it in place instead of re-packing every chunk
/// (sklearn likewise centres a copy of X). `None` for CSR input.
fn shifted_copy<T: Float>(
    x: &impl Rows<T>,
    shift: &[f64],
    cancel: &Cancel,
) -> Result<Option<Vec<T>>> {
    if !x.dense() {
        return Ok(None);
    }
    let (n, d) = x.dim();
    let mut out = vec![T::ZERO; n * d];
    out.par_chunks_mut(CHUNK * d)
        .enumerate()
        .try_for_each(|(c, o)| {
            cancel.check()?;
            let r0 = c * CHUNK;
            for (i, dst) in o.chunks_exact_mut(d).enumerate() {
                x.read_row(r0 + i, dst);
                for (v, &s) in dst.iter_mut().zip(shift) {
                    *v = T::from_f64(v.to_f64() - s);
                }
            }
            Ok::<(), CoreError>(())
        })?;
    Ok(Some(out))
}

/// Rows `r0..r1` of X, shifted and converted to the compute type, row-major,
/// zero-padded to a multiple of `MR` rows.
fn pack_rows<T: Float>(x: &impl Rows<T>, r0: usize, r1: usize, shift: &[f64], buf: &mut Vec<T>) {
    #[cfg(target_arch = "x86_64")]
    if simd_available() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { pack_rows_avx2(x, r0, r1, shift, buf) };
    }
    pack_rows_generic(x, r0, r1, shift, buf)
}

/// [`pack_rows_generic`] compiled for AVX2 (the same IEEE operations, wider).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn pack_rows_avx2<T: Float>(
    x: &impl Rows<T>,
    r0: usize,
    r1: usize,
    shift: &[f64],
    buf: &mut Vec<T>,
) {
    pack_rows_generic(x, r0, r1, shift, buf)
}

#[inline(always)]
fn pack_rows_generic<T: Float>(
    x: &impl Rows<T>,
    r0: usize,
    r1: usize,
    shift: &[f64],
    buf: &mut Vec<T>,
) {
    let d = shift.len();
    let rows = r1 - r0;
    let padded = rows.div_ceil(MR) * MR;
    buf.clear();
    buf.resize(padded * d, T::ZERO);
    for (i, dst) in buf.chunks_exact_mut(d).take(rows).enumerate() {
        x.read_row(r0 + i, dst);
        for (o, &s) in dst.iter_mut().zip(shift) {
            *o = T::from_f64(o.to_f64() - s);
        }
    }
}

// ---------------------------------------------------------------------------
// The distance micro-kernel, compiled twice: baseline x86-64 and AVX2+FMA.

/// `acc[i][j] = sum_p x[i][p] * panel[p][j]` for `MR` packed rows.
#[inline(always)]
fn micro<T: Float, const NR: usize, const FMA: bool>(
    xs: &[T],
    d: usize,
    panel: &[T],
) -> [[T; NR]; MR] {
    let mut acc = [[T::ZERO; NR]; MR];
    let rows: [&[T]; MR] = std::array::from_fn(|i| &xs[i * d..(i + 1) * d]);
    for (p, c) in panel.chunks_exact(NR).enumerate().take(d) {
        let c: &[T; NR] = match c.try_into() {
            Ok(c) => c,
            Err(_) => return acc,
        };
        for i in 0..MR {
            let a = rows[i][p];
            for j in 0..NR {
                acc[i][j] = if FMA {
                    a.mul_add(c[j], acc[i][j])
                } else {
                    a * c[j] + acc[i][j]
                };
            }
        }
    }
    acc
}

/// Portable version of [`Float::argmin_update_avx2`].
#[inline(always)]
fn argmin_update_scalar<T: Float, const NR: usize>(
    acc: &[[T; NR]; MR],
    norms: &[T],
    pt: T,
    best: &mut [[T; NR]; MR],
    bpanel: &mut [[T; NR]; MR],
) {
    let two = T::from_f64(2.0);
    for i in 0..MR {
        for (j, &nj) in norms.iter().enumerate().take(NR) {
            let dist = nj - two * acc[i][j];
            if dist < best[i][j] {
                best[i][j] = dist;
                bpanel[i][j] = pt;
            }
        }
    }
}

/// The micro-kernel: intrinsics when compiled for AVX2+FMA, else portable.
#[inline(always)]
fn micro_any<T: Float, const NR: usize, const FMA: bool>(
    xs: &[T],
    d: usize,
    panel: &[T],
) -> [[T; NR]; MR] {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        let mut acc = [[T::ZERO; NR]; MR];
        // SAFETY: FMA = true only inside functions compiled with AVX2+FMA,
        // which run only after the features were detected.
        unsafe { T::micro_avx2::<NR>(xs, d, panel, &mut acc) };
        return acc;
    }
    micro::<T, NR, FMA>(xs, d, panel)
}

/// For each packed row, the closest centre (lowest index on ties) by the
/// `||c||^2 - 2 x.c` score. `xs` holds `labels.len()` rows padded to `MR`.
///
/// The argmin is kept per lane (lane `j` sees centres `j, j + NR, ...` in
/// order, strict `<`), branch-free so it stays in vector registers; lanes are
/// merged at the end by (score, index), which equals a sequential scan.
#[inline(always)]
fn argmin_rows<T: Float, const NR: usize, const FMA: bool>(
    xs: &[T],
    panels: &Panels<T>,
    labels: &mut [i32],
) {
    let d = panels.d;
    let rows = labels.len();
    for (b, block) in xs.chunks_exact(MR * d).enumerate() {
        let mut best = [[T::INFINITY; NR]; MR];
        // Panel number per lane, as T so the select vectorises with the scores.
        let mut bpanel = [[T::ZERO; NR]; MR];
        for (p, (panel, norms)) in panels
            .data
            .chunks_exact(d * NR)
            .zip(panels.norms.chunks_exact(NR))
            .enumerate()
        {
            let acc = micro_any::<T, NR, FMA>(block, d, panel);
            let pt = T::from_f64(p as f64);
            #[cfg(target_arch = "x86_64")]
            if FMA {
                // SAFETY: FMA = true only in code compiled for (and run on) AVX2+FMA.
                unsafe { T::argmin_update_avx2(&acc, norms, pt, &mut best, &mut bpanel) };
                continue;
            }
            argmin_update_scalar(&acc, norms, pt, &mut best, &mut bpanel);
        }
        for i in 0..MR {
            // Branch-free lane merge (random data makes branches mispredict):
            // the smallest score, then the lowest centre index holding it.
            let bd = best[i]
                .iter()
                .fold(T::INFINITY, |m, &v| if v < m { v } else { m });
            let mut bi = usize::MAX;
            for j in 0..NR {
                let idx = bpanel[i][j].to_f64() as u32 as usize * NR + j;
                let cand = if best[i][j] == bd { idx } else { usize::MAX };
                bi = bi.min(cand);
            }
            // All scores infinite (cannot happen for finite input): centre 0.
            let bi = if bd == T::INFINITY { 0 } else { bi };
            if let Some(l) = labels.get_mut(b * MR + i) {
                *l = bi.min(panels.k.saturating_sub(1)) as i32;
            }
        }
        if (b + 1) * MR >= rows {
            break;
        }
    }
}

/// The closest centre of a row (as [`argmin_rows`] picks it) and the two
/// smallest scores `||c||^2 - 2 x.c`, for the bounds of [`hamerly_pass`].
#[derive(Debug, Clone, Copy)]
pub struct Top2<T> {
    pub label: i32,
    pub best: T,
    pub second: T,
}

/// [`argmin_rows`] that also keeps the second smallest score. Same scores
/// and same per-lane strict-`<` scan with the same lane merge, so the label
/// is exactly the one [`argmin_rows`] returns. Each lane also keeps its
/// second best (branch-free, so it vectorises); the row's second score is
/// the winning lane's second or another lane's best.
#[inline(always)]
fn top2_rows<T: Float, const NR: usize, const FMA: bool>(
    xs: &[T],
    panels: &Panels<T>,
    out: &mut [Top2<T>],
) {
    let d = panels.d;
    let two = T::from_f64(2.0);
    for (b, block) in xs.chunks_exact(MR * d).enumerate() {
        let mut best = [[T::INFINITY; NR]; MR];
        let mut second = [[T::INFINITY; NR]; MR];
        let mut bpanel = [[T::ZERO; NR]; MR];
        for (p, (panel, norms)) in panels
            .data
            .chunks_exact(d * NR)
            .zip(panels.norms.chunks_exact(NR))
            .enumerate()
        {
            let acc = micro_any::<T, NR, FMA>(block, d, panel);
            let pt = T::from_f64(p as f64);
            for i in 0..MR {
                for (j, &nj) in norms.iter().enumerate().take(NR) {
                    let sc = nj - two * acc[i][j];
                    let lt = sc < best[i][j];
                    let sec = if sc < second[i][j] { sc } else { second[i][j] };
                    second[i][j] = if lt { best[i][j] } else { sec };
                    best[i][j] = if lt { sc } else { best[i][j] };
                    bpanel[i][j] = if lt { pt } else { bpanel[i][j] };
                }
            }
        }
        for i in 0..MR {
            let bd = best[i]
                .iter()
                .fold(T::INFINITY, |m, &v| if v < m { v } else { m });
            let mut bi = usize::MAX;
            for j in 0..NR {
                let idx = bpanel[i][j].to_f64() as u32 as usize * NR + j;
                if best[i][j] == bd {
                    bi = bi.min(idx);
                }
            }
            let bi = if bd == T::INFINITY { 0 } else { bi };
            let lane = bi % NR;
            let mut sec = second[i][lane];
            for j in 0..NR {
                if j != lane && best[i][j] < sec {
                    sec = best[i][j];
                }
            }
            if let Some(o) = out.get_mut(b * MR + i) {
                *o = Top2 {
                    label: bi.min(panels.k.saturating_sub(1)) as i32,
                    best: bd,
                    second: sec,
                };
            }
        }
        if (b + 1) * MR >= out.len() {
            break;
        }
    }
}

/// For each packed row and each centre of the (single) panel, the squared
/// distance `||x||^2 + ||c||^2 - 2 x.c` (clamped at 0), in f64.
#[inline(always)]
fn sqdist_rows<T: Float, const NR: usize, const FMA: bool>(
    xs: &[T],
    xnorms: &[f64],
    panels: &Panels<T>,
    out: &mut [[f64; NR]],
) {
    let d = panels.d;
    let (panel, norms) = (&panels.data[..d * NR], &panels.norms[..NR]);
    for (b, block) in xs.chunks_exact(MR * d).enumerate() {
        let acc = micro_any::<T, NR, FMA>(block, d, panel);
        for i in 0..MR {
            let r = b * MR + i;
            if let (Some(o), Some(&xn)) = (out.get_mut(r), xnorms.get(r)) {
                for j in 0..NR {
                    o[j] = (xn + norms[j].to_f64() - 2.0 * acc[i][j].to_f64()).max(0.0);
                }
            }
        }
    }
}

macro_rules! dispatch {
    ($name:ident, $avx:ident, $generic:ident, ($($arg:ident : $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn $avx<T: Float, const NR: usize>($($arg: $ty),*) {
            $generic::<T, NR, true>($($arg),*)
        }
        fn $name<T: Float, const NR: usize>(simd: bool, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: `simd` is true only when AVX2 and FMA were detected at run time.
                return unsafe { $avx::<T, NR>($($arg),*) };
            }
            let _ = simd;
            $generic::<T, NR, false>($($arg),*)
        }
    };
}

dispatch!(argmin_dispatch, argmin_avx2, argmin_rows, (xs: &[T], panels: &Panels<T>, labels: &mut [i32]));
dispatch!(sqdist_dispatch, sqdist_avx2, sqdist_rows,
    (xs: &[T], xnorms: &[f64], panels: &Panels<T>, out: &mut [[f64; NR]]));

dispatch!(top2_dispatch, top2_avx2, top2_rows, (xs: &[T], panels: &Panels<T>, out: &mut [Top2<T>]));

/// Whether the AVX2+FMA kernels can run on this CPU.
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Rows per block of the rows-in-lanes kernel (two AVX2 registers of f32).
const RB: usize = 16;
/// Centres per step of the rows-in-lanes kernel.
const CB: usize = 4;

/// Rows per block of the f64 rows-in-lanes kernel (two AVX2 registers of f64).
const RB64: usize = 8;
/// The f64 argmin takes the rows-in-lanes kernel up to this many features.
const F64_COLS_MAX_D: usize = 32;

/// `rows` packed rows (row-major) into blocks of `rb` rows stored
/// feature-major (`out[(b * d + p) * rb + r]`), zero-padded: the oracle of
/// [`transpose_rows_avx2`] (`rb` = [`RB`]) and [`transpose_rows_f64_avx2`]
/// (`rb` = [`RB64`]).
#[cfg(test)]
fn transpose_rows<T: Float>(xs: &[T], rows: usize, d: usize, rb: usize, out: &mut Vec<T>) {
    out.clear();
    out.resize(rows.div_ceil(rb) * d * rb, T::ZERO);
    for (blk, src) in out.chunks_exact_mut(d * rb).zip(xs.chunks(d * rb)) {
        for (i, xr) in src.chunks_exact(d).enumerate() {
            for (o, &v) in blk[i..].iter_mut().step_by(rb).zip(xr) {
                *o = v;
            }
        }
    }
}

/// [`transpose_rows`] for f32 with 8 x 8 AVX2 register transposes (full
/// blocks; the last partial block and any `d % 8` tail go element by
/// element). Moves values only, so the result is the same. `out` (at least
/// the blocks' length, else nothing is written) is reused between calls
/// without clearing: every value of the blocks is written.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose_rows_avx2(xs: &[f32], rows: usize, d: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let n_blk = rows.div_ceil(RB);
    if d == 0 || out.len() < n_blk * d * RB {
        return;
    }
    for (b, blk) in out.chunks_exact_mut(d * RB).take(n_blk).enumerate() {
        let src = &xs[(b * RB * d).min(xs.len())..];
        if (b + 1) * RB > rows || src.len() < RB * d {
            blk.iter_mut().for_each(|v| *v = 0.0);
            for (i, xr) in src.chunks_exact(d).take(rows - b * RB).enumerate() {
                for (o, &v) in blk[i..].iter_mut().step_by(RB).zip(xr) {
                    *o = v;
                }
            }
            continue;
        }
        let (x, o) = (src.as_ptr(), blk.as_mut_ptr());
        let p8 = d / 8 * 8;
        for half in 0..2 {
            for p in (0..p8).step_by(8) {
                // SAFETY: rows half*8..half*8+8 < RB and p + 8 <= d lie inside
                // src (RB * d values, checked); outputs (p + q) * RB + half * 8
                // + 8 <= d * RB lie inside blk.
                let r: [__m256; 8] =
                    std::array::from_fn(|i| _mm256_loadu_ps(x.add((half * 8 + i) * d + p)));
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let cols = [
                    _mm256_permute2f128_ps::<0x20>(s0, s4),
                    _mm256_permute2f128_ps::<0x20>(s1, s5),
                    _mm256_permute2f128_ps::<0x20>(s2, s6),
                    _mm256_permute2f128_ps::<0x20>(s3, s7),
                    _mm256_permute2f128_ps::<0x31>(s0, s4),
                    _mm256_permute2f128_ps::<0x31>(s1, s5),
                    _mm256_permute2f128_ps::<0x31>(s2, s6),
                    _mm256_permute2f128_ps::<0x31>(s3, s7),
                ];
                for (q, &c) in cols.iter().enumerate() {
                    _mm256_storeu_ps(o.add((p + q) * RB + half * 8), c);
                }
            }
        }
        for p in p8..d {
            for r in 0..RB {
                // SAFETY: r < RB, p < d: inside src and blk (checked above).
                *o.add(p * RB + r) = *x.add(r * d + p);
            }
        }
    }
}

/// The argmin kernel with rows in the vector lanes: a block of 16 rows
/// against 4 centres at a time (8 accumulators), each centre value broadcast.
/// Every dot product is the same FMA chain over `p = 0..d` as in [`micro`],
/// and the scores are the same `||c||^2 - 2 x.c`, so they are bit-identical to
/// the panel kernel's; centres are scanned in index order with strict `<`, so
/// ties go to the lowest index, as a sequential scan. The running argmin
/// stays in registers. Returns `false` (nothing written) on unexpected shapes.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn argmin_cols_f32(xt: &[f32], panels: &Panels<f32>, labels: &mut [i32]) -> bool {
    argmin_cols_f32_top::<false>(xt, panels, labels, &mut [])
}

/// [`argmin_cols_f32`] that, with `TOP2`, also writes each row's smallest and
/// second smallest score to `top` (the screen of [`screen_chunk`]).
/// The labels are the same either way.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn argmin_cols_f32_top<const TOP2: bool>(
    xt: &[f32],
    panels: &Panels<f32>,
    labels: &mut [i32],
    top: &mut [[f32; 2]],
) -> bool {
    use std::arch::x86_64::*;
    let d = panels.d;
    let kp = panels.rnorms.len();
    let rows = labels.len();
    if d == 0
        || !kp.is_multiple_of(CB)
        || panels.rowmaj.len() < kp * d
        || xt.len() < rows.div_ceil(RB) * d * RB
        || (TOP2 && top.len() < rows)
    {
        return false;
    }
    if avx512_available() {
        // SAFETY: AVX-512F was detected at run time; shapes checked above.
        unsafe { argmin_cols_f32_avx512::<TOP2>(xt, panels, labels, top) };
        return true;
    }
    let kmax = panels.k.saturating_sub(1);
    let two = _mm256_set1_ps(2.0);
    let cm = panels.rowmaj.as_ptr();
    for (b, blk) in xt.chunks_exact(d * RB).enumerate() {
        if b * RB >= rows {
            break;
        }
        let x = blk.as_ptr();
        let mut best = [_mm256_set1_ps(f32::INFINITY); 2];
        let mut second = [_mm256_set1_ps(f32::INFINITY); 2];
        let mut bidx = [_mm256_setzero_ps(); 2];
        for j0 in (0..kp).step_by(CB) {
            // SAFETY: j0 + CB <= kp and rowmaj holds kp * d values; p < d and
            // blk holds d * RB values (lengths checked above).
            let c = cm.add(j0 * d);
            let mut a = [[_mm256_setzero_ps(); 2]; CB];
            for p in 0..d {
                let x0 = _mm256_loadu_ps(x.add(p * RB));
                let x1 = _mm256_loadu_ps(x.add(p * RB + 8));
                let cp = c.add(p * CB);
                for (jj, aj) in a.iter_mut().enumerate() {
                    let cb = _mm256_set1_ps(*cp.add(jj));
                    aj[0] = _mm256_fmadd_ps(x0, cb, aj[0]);
                    aj[1] = _mm256_fmadd_ps(x1, cb, aj[1]);
                }
            }
            for (jj, aj) in a.iter().enumerate() {
                let nv = _mm256_set1_ps(*panels.rnorms.as_ptr().add(j0 + jj));
                let jv = _mm256_set1_ps((j0 + jj) as f32);
                for h in 0..2 {
                    // norms - 2 * acc: 2 * acc is exact, so fusing does not change the rounding.
                    let dist = _mm256_fnmadd_ps(two, aj[h], nv);
                    let lt = _mm256_cmp_ps::<_CMP_LT_OQ>(dist, best[h]);
                    if TOP2 {
                        // A new best pushes the old one down to second.
                        let sec = _mm256_min_ps(second[h], dist);
                        second[h] = _mm256_blendv_ps(sec, best[h], lt);
                    }
                    best[h] = _mm256_blendv_ps(best[h], dist, lt);
                    bidx[h] = _mm256_blendv_ps(bidx[h], jv, lt);
                }
            }
        }
        let (mut idx, mut b1, mut b2) = ([0f32; RB], [0f32; RB], [0f32; RB]);
        for h in 0..2 {
            _mm256_storeu_ps(idx.as_mut_ptr().add(h * 8), bidx[h]);
            _mm256_storeu_ps(b1.as_mut_ptr().add(h * 8), best[h]);
            _mm256_storeu_ps(b2.as_mut_ptr().add(h * 8), second[h]);
        }
        store_block::<TOP2>(b * RB, kmax, &idx, &b1, &b2, labels, top);
    }
    true
}

/// The results of one block of [`RB`] rows starting at row `r0` (lanes past
/// the last row are dropped): the centre index of each lane as a label, and
/// with `TOP2` its best and second-best scores.
#[inline(always)]
fn store_block<const TOP2: bool>(
    r0: usize,
    kmax: usize,
    idx: &[f32; RB],
    best: &[f32; RB],
    second: &[f32; RB],
    labels: &mut [i32],
    top: &mut [[f32; 2]],
) {
    let rows = labels.len();
    for (l, &v) in labels[r0.min(rows)..].iter_mut().zip(idx) {
        *l = (v as usize).min(kmax) as i32;
    }
    if TOP2 {
        for (r, t) in top[r0.min(rows)..rows].iter_mut().take(RB).enumerate() {
            *t = [best[r], second[r]];
        }
    }
}

/// Whether the AVX-512 kernels can run (and are not switched off for a test).
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !NO_AVX512.with(|c| c.get()) && std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

thread_local! {
    /// Set by tests to run the AVX2 kernels on an AVX-512 machine.
    static NO_AVX512: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Blocks of [`RB`] rows the AVX-512 kernel takes at once: 4 blocks x [`CB`]
/// centres = 16 accumulators, so the FMA latency is hidden with room to spare.
const NB512: usize = 4;

/// [`argmin_cols_f32_top`] with one AVX-512 register per block of 16 rows and
/// [`NB512`] blocks at a time: per lane the same FMA chain over `p = 0..d`,
/// the same scores, the same strict-`<` scan in centre order and the same
/// runner-up update, so labels and top-2 scores are bit-identical to the
/// AVX2 kernel's. Shapes must have been checked by the caller.
///
/// # Safety
/// The CPU must support AVX-512F; `xt`, `panels`, `labels` and `top` (with
/// `TOP2`) as checked in [`argmin_cols_f32_top`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn argmin_cols_f32_avx512<const TOP2: bool>(
    xt: &[f32],
    panels: &Panels<f32>,
    labels: &mut [i32],
    top: &mut [[f32; 2]],
) {
    let n_blk = labels.len().div_ceil(RB);
    let mut b = 0;
    while b + NB512 <= n_blk {
        // SAFETY: blocks b..b + NB512 exist (n_blk blocks were checked).
        unsafe { blocks_avx512::<NB512, TOP2>(xt, b, panels, labels, top) };
        b += NB512;
    }
    while b < n_blk {
        // SAFETY: as above, one block.
        unsafe { blocks_avx512::<1, TOP2>(xt, b, panels, labels, top) };
        b += 1;
    }
}

/// Blocks `b0..b0 + NB` of [`argmin_cols_f32_avx512`].
///
/// # Safety
/// As [`argmin_cols_f32_avx512`], and the blocks must exist in `xt`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn blocks_avx512<const NB: usize, const TOP2: bool>(
    xt: &[f32],
    b0: usize,
    panels: &Panels<f32>,
    labels: &mut [i32],
    top: &mut [[f32; 2]],
) {
    use std::arch::x86_64::*;
    let (d, kp) = (panels.d, panels.rnorms.len());
    let kmax = panels.k.saturating_sub(1);
    let two = _mm512_set1_ps(2.0);
    let cm = panels.rowmaj.as_ptr();
    // SAFETY (all pointer reads): block q < NB of b0 holds d * RB values at
    // (b0 + q) * d * RB; centre group j0 holds CB * d values at j0 * d.
    let x = unsafe { xt.as_ptr().add(b0 * d * RB) };
    let mut best = [_mm512_set1_ps(f32::INFINITY); NB];
    let mut second = [_mm512_set1_ps(f32::INFINITY); NB];
    let mut bidx = [_mm512_setzero_ps(); NB];
    for j0 in (0..kp).step_by(CB) {
        let c = unsafe { cm.add(j0 * d) };
        let mut a = [[_mm512_setzero_ps(); NB]; CB];
        for p in 0..d {
            let xv: [__m512; NB] =
                std::array::from_fn(|q| unsafe { _mm512_loadu_ps(x.add((q * d + p) * RB)) });
            let cp = unsafe { c.add(p * CB) };
            for (jj, aj) in a.iter_mut().enumerate() {
                let cb = _mm512_set1_ps(unsafe { *cp.add(jj) });
                for q in 0..NB {
                    aj[q] = _mm512_fmadd_ps(xv[q], cb, aj[q]);
                }
            }
        }
        for (jj, aj) in a.iter().enumerate() {
            let nv = _mm512_set1_ps(unsafe { *panels.rnorms.as_ptr().add(j0 + jj) });
            let jv = _mm512_set1_ps((j0 + jj) as f32);
            for q in 0..NB {
                // norms - 2 * acc: 2 * acc is exact, so fusing does not change the rounding.
                let dist = _mm512_fnmadd_ps(two, aj[q], nv);
                let lt = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(dist, best[q]);
                if TOP2 {
                    let sec = _mm512_min_ps(second[q], dist);
                    second[q] = _mm512_mask_blend_ps(lt, sec, best[q]);
                }
                best[q] = _mm512_mask_blend_ps(lt, best[q], dist);
                bidx[q] = _mm512_mask_blend_ps(lt, bidx[q], jv);
            }
        }
    }
    for q in 0..NB {
        let (mut idx, mut b1, mut b2) = ([0f32; RB], [0f32; RB], [0f32; RB]);
        unsafe {
            _mm512_storeu_ps(idx.as_mut_ptr(), bidx[q]);
            _mm512_storeu_ps(b1.as_mut_ptr(), best[q]);
            _mm512_storeu_ps(b2.as_mut_ptr(), second[q]);
        }
        store_block::<TOP2>((b0 + q) * RB, kmax, &idx, &b1, &b2, labels, top);
    }
}

/// [`transpose_rows`] for f64 into blocks of [`RB64`] rows, with 4 x 4 AVX2
/// register transposes (full blocks; the last partial block and any `d % 4`
/// tail go element by element). Moves values only. `out` (at least the
/// blocks' length, else nothing is written) is reused between calls without
/// clearing: every value of the blocks is written.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose_rows_f64_avx2(xs: &[f64], rows: usize, d: usize, out: &mut [f64]) {
    use std::arch::x86_64::*;
    let n_blk = rows.div_ceil(RB64);
    if d == 0 || out.len() < n_blk * d * RB64 {
        return;
    }
    for (b, blk) in out.chunks_exact_mut(d * RB64).take(n_blk).enumerate() {
        let src = &xs[(b * RB64 * d).min(xs.len())..];
        if (b + 1) * RB64 > rows || src.len() < RB64 * d {
            blk.iter_mut().for_each(|v| *v = 0.0);
            for (i, xr) in src.chunks_exact(d).take(rows - b * RB64).enumerate() {
                for (o, &v) in blk[i..].iter_mut().step_by(RB64).zip(xr) {
                    *o = v;
                }
            }
            continue;
        }
        let (x, o) = (src.as_ptr(), blk.as_mut_ptr());
        let p4 = d / 4 * 4;
        for quarter in 0..RB64 / 4 {
            for p in (0..p4).step_by(4) {
                // SAFETY: rows quarter*4..quarter*4+4 < RB64 and p + 4 <= d lie
                // inside src (RB64 * d values, checked); outputs
                // (p + q) * RB64 + quarter * 4 + 4 <= d * RB64 lie inside blk.
                let r: [__m256d; 4] =
                    std::array::from_fn(|i| _mm256_loadu_pd(x.add((quarter * 4 + i) * d + p)));
                let t0 = _mm256_unpacklo_pd(r[0], r[1]);
                let t1 = _mm256_unpackhi_pd(r[0], r[1]);
                let t2 = _mm256_unpacklo_pd(r[2], r[3]);
                let t3 = _mm256_unpackhi_pd(r[2], r[3]);
                let cols = [
                    _mm256_permute2f128_pd::<0x20>(t0, t2),
                    _mm256_permute2f128_pd::<0x20>(t1, t3),
                    _mm256_permute2f128_pd::<0x31>(t0, t2),
                    _mm256_permute2f128_pd::<0x31>(t1, t3),
                ];
                for (q, &c) in cols.iter().enumerate() {
                    _mm256_storeu_pd(o.add((p + q) * RB64 + quarter * 4), c);
                }
            }
        }
        for p in p4..d {
            for r in 0..RB64 {
                // SAFETY: r < RB64, p < d: inside src and blk (checked above).
                *o.add(p * RB64 + r) = *x.add(r * d + p);
            }
        }
    }
}

/// [`argmin_cols_f32`] for f64: a block of [`RB64`] rows (two registers)
/// against [`CB`] centres at a time, each centre value broadcast. The same
/// FMA chain over `p = 0..d` and the same scores as the panel kernel
/// ([`Float::micro_avx2`] for f64), so labels are bit-identical to it;
/// centres in index order with strict `<` (ties to the lowest index).
/// Returns `false` (nothing written) on unexpected shapes.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn argmin_cols_f64(xt: &[f64], panels: &Panels<f64>, labels: &mut [i32]) -> bool {
    use std::arch::x86_64::*;
    let d = panels.d;
    let kp = panels.rnorms.len();
    let rows = labels.len();
    if d == 0
        || !kp.is_multiple_of(CB)
        || panels.rowmaj.len() < kp * d
        || xt.len() < rows.div_ceil(RB64) * d * RB64
    {
        return false;
    }
    let kmax = panels.k.saturating_sub(1);
    let two = _mm256_set1_pd(2.0);
    let cm = panels.rowmaj.as_ptr();
    for (b, blk) in xt.chunks_exact(d * RB64).enumerate() {
        if b * RB64 >= rows {
            break;
        }
        let x = blk.as_ptr();
        let mut best = [_mm256_set1_pd(f64::INFINITY); 2];
        let mut bidx = [_mm256_setzero_pd(); 2];
        for j0 in (0..kp).step_by(CB) {
            // SAFETY: j0 + CB <= kp and rowmaj holds kp * d values; p < d and
            // blk holds d * RB64 values (lengths checked above).
            let c = cm.add(j0 * d);
            let mut a = [[_mm256_setzero_pd(); 2]; CB];
            for p in 0..d {
                let x0 = _mm256_loadu_pd(x.add(p * RB64));
                let x1 = _mm256_loadu_pd(x.add(p * RB64 + 4));
                let cp = c.add(p * CB);
                for (jj, aj) in a.iter_mut().enumerate() {
                    let cb = _mm256_broadcast_sd(&*cp.add(jj));
                    aj[0] = _mm256_fmadd_pd(x0, cb, aj[0]);
                    aj[1] = _mm256_fmadd_pd(x1, cb, aj[1]);
                }
            }
            for (jj, aj) in a.iter().enumerate() {
                let nv = _mm256_broadcast_sd(&*panels.rnorms.as_ptr().add(j0 + jj));
                let jv = _mm256_set1_pd((j0 + jj) as f64);
                for h in 0..2 {
                    // norms - 2 * acc: 2 * acc is exact, so fusing does not change the rounding.
                    let dist = _mm256_fnmadd_pd(two, aj[h], nv);
                    let lt = _mm256_cmp_pd::<_CMP_LT_OQ>(dist, best[h]);
                    best[h] = _mm256_blendv_pd(best[h], dist, lt);
                    bidx[h] = _mm256_blendv_pd(bidx[h], jv, lt);
                }
            }
        }
        let mut idx = [0f64; RB64];
        _mm256_storeu_pd(idx.as_mut_ptr(), bidx[0]);
        _mm256_storeu_pd(idx.as_mut_ptr().add(4), bidx[1]);
        for (l, &v) in labels[b * RB64..].iter_mut().zip(&idx) {
            *l = (v as usize).min(kmax) as i32;
        }
    }
    true
}

/// k-means++ candidates for [`sqdist_cols`]: `t` shifted rows and their
/// squared norms, rounded to `T` and back as [`Panels`] stores them, so the
/// distances are the panel kernel's ([`sqdist_rows`]). The values go in
/// groups of [`PP_G`] candidates (the last one shorter), feature-major
/// within a group (`vals[j0 * d + p * g + jj]` for the group of `g`
/// starting at `j0`), so the kernel broadcasts them from one pointer.
pub struct Cands<T> {
    t: usize,
    d: usize,
    vals: Vec<T>,
    norms: Vec<f64>,
}

impl<T: Float> Cands<T> {
    fn new(x: &impl Rows<T>, shift: &[f64], rows: &[usize]) -> Self {
        let (t, d) = (rows.len(), shift.len());
        let mut vals = vec![T::ZERO; t * d];
        let mut norms = vec![0.0; t];
        for (j, &i) in rows.iter().enumerate() {
            let (j0, jj) = (j / PP_G * PP_G, j % PP_G);
            let g = (t - j0).min(PP_G);
            let r = row_vec(x, i);
            let mut norm = 0.0f64;
            for (f, (&v, &s)) in r.iter().zip(shift).enumerate() {
                let v = T::from_f64(v.to_f64() - s);
                vals[j0 * d + f * g + jj] = v;
                norm += v.to_f64() * v.to_f64();
            }
            norms[j] = T::from_f64(norm).to_f64();
        }
        Cands { t, d, vals, norms }
    }
}

/// Squared distances `max(0, (||x||^2 + ||c||^2) - 2 x.c)` of the rows of
/// one chunk to the `t` candidates, the same values as [`sqdist_rows`]: the
/// same FMA chain over `p = 0..d` in `T` per dot product (lanes are rows
/// here, centres there; each lane is computed alone either way), then the
/// same f64 operations in the same order. `xt`: the chunk's rows in
/// [`Float::RBT`]-row blocks ([`transpose_rows`]); `rows` (<= [`CHUNK`]) of
/// them are real; `xn`: their squared norms, zero-padded to whole blocks;
/// `out[j * CHUNK + i]`: distance of row `i` to candidate `j` (written for
/// the padding rows too). `false` (nothing written) on unexpected shapes or
/// without AVX2+FMA.
fn sqdist_cols<T: Float>(
    simd: bool,
    xt: &[T],
    rows: usize,
    xn: &[f64],
    cands: &Cands<T>,
    out: &mut [f64],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is true only when AVX2 and FMA were detected at run time.
        return unsafe { T::sqdist_cols_avx2(xt, rows, xn, cands, out) };
    }
    let _ = (simd, xt, rows, xn, cands, out);
    false
}

/// Whether [`sqdist_cols`] may read and write these lengths for `rows` rows
/// in blocks of `rb`.
fn sqdist_cols_fits<T>(
    xt: &[T],
    rows: usize,
    xn: &[f64],
    cands: &Cands<T>,
    out: &[f64],
    rb: usize,
) -> bool {
    let (t, d) = (cands.t, cands.d);
    let padded = rows.div_ceil(rb) * rb;
    d > 0
        && t > 0
        && padded <= CHUNK
        && cands.vals.len() >= t * d
        && cands.norms.len() >= t
        && xt.len() >= padded * d
        && xn.len() >= padded
        && out.len() >= t * CHUNK
}

/// Candidates per sweep of the k-means++ kernels (accumulators in registers).
const PP_G: usize = 8;

/// One half-block (4 rows, one register) of f64 rows against `G` candidates:
/// the dot products, each the FMA chain over `p = 0..d`.
///
/// # Safety
/// AVX2+FMA; `x` points at a block of `d * RB64` values (the half at `x + 4
/// * half`), `c` at `G * d` values (feature-major: `c[p * G + j]`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dots_f64<const G: usize>(
    x: *const f64,
    d: usize,
    c: *const f64,
) -> [std::arch::x86_64::__m256d; G] {
    use std::arch::x86_64::*;
    let mut a = [_mm256_setzero_pd(); G];
    for p in 0..d {
        let xv = _mm256_loadu_pd(x.add(p * RB64));
        let cp = c.add(p * G);
        for (j, aj) in a.iter_mut().enumerate() {
            *aj = _mm256_fmadd_pd(xv, _mm256_broadcast_sd(&*cp.add(j)), *aj);
        }
    }
    a
}

/// [`dots_f64`] for f32: half-blocks of 8 rows.
///
/// # Safety
/// As [`dots_f64`], with blocks of `d * RB` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dots_f32<const G: usize>(
    x: *const f32,
    d: usize,
    c: *const f32,
) -> [std::arch::x86_64::__m256; G] {
    use std::arch::x86_64::*;
    let mut a = [_mm256_setzero_ps(); G];
    for p in 0..d {
        let xv = _mm256_loadu_ps(x.add(p * RB));
        let cp = c.add(p * G);
        for (j, aj) in a.iter_mut().enumerate() {
            *aj = _mm256_fmadd_ps(xv, _mm256_broadcast_ss(&*cp.add(j)), *aj);
        }
    }
    a
}

/// `max(0, (xn + cn) - 2 * acc)` for 4 rows, stored at `dst`.
///
/// # Safety
/// AVX2; `xn` and `dst` point at 4 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store_sqdist(xn: *const f64, cn: f64, acc: std::arch::x86_64::__m256d, dst: *mut f64) {
    use std::arch::x86_64::*;
    let v = _mm256_sub_pd(
        _mm256_add_pd(_mm256_loadu_pd(xn), _mm256_set1_pd(cn)),
        _mm256_mul_pd(_mm256_set1_pd(2.0), acc),
    );
    _mm256_storeu_pd(dst, _mm256_max_pd(v, _mm256_setzero_pd()));
}

/// One group of `G` candidates starting at `j0` for every half-block.
///
/// # Safety
/// AVX2+FMA; the lengths were checked by [`sqdist_cols_fits`] and `j0 + G <= t`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sqdist_group_f64<const G: usize>(
    xt: &[f64],
    rows: usize,
    xn: &[f64],
    cands: &Cands<f64>,
    j0: usize,
    out: &mut [f64],
) {
    let d = cands.d;
    let c = cands.vals.as_ptr().add(j0 * d);
    let o = out.as_mut_ptr();
    for b in 0..rows.div_ceil(RB64) {
        for h in 0..RB64 / 4 {
            let r = b * RB64 + h * 4;
            let a = dots_f64::<G>(xt.as_ptr().add(b * RB64 * d + h * 4), d, c);
            for (g, &acc) in a.iter().enumerate() {
                let j = j0 + g;
                store_sqdist(
                    xn.as_ptr().add(r),
                    cands.norms[j],
                    acc,
                    o.add(j * CHUNK + r),
                );
            }
        }
    }
}

/// [`sqdist_group_f64`] for f32 (dot products in f32, the rest in f64).
///
/// # Safety
/// As [`sqdist_group_f64`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sqdist_group_f32<const G: usize>(
    xt: &[f32],
    rows: usize,
    xn: &[f64],
    cands: &Cands<f32>,
    j0: usize,
    out: &mut [f64],
) {
    use std::arch::x86_64::*;
    let d = cands.d;
    let c = cands.vals.as_ptr().add(j0 * d);
    let o = out.as_mut_ptr();
    for b in 0..rows.div_ceil(RB) {
        for h in 0..RB / 8 {
            let r = b * RB + h * 8;
            let a = dots_f32::<G>(xt.as_ptr().add(b * RB * d + h * 8), d, c);
            for (g, &acc) in a.iter().enumerate() {
                let j = j0 + g;
                let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(acc));
                let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(acc));
                let cn = cands.norms[j];
                store_sqdist(xn.as_ptr().add(r), cn, lo, o.add(j * CHUNK + r));
                store_sqdist(xn.as_ptr().add(r + 4), cn, hi, o.add(j * CHUNK + r + 4));
            }
        }
    }
}

macro_rules! sqdist_groups {
    ($name:ident, $group:ident, $t:ty, $rb:expr) => {
        /// [`sqdist_cols`] for this type: candidates in sweeps of up to
        /// [`PP_G`], each a monomorphised group.
        ///
        /// # Safety
        /// The CPU must support AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name(
            xt: &[$t],
            rows: usize,
            xn: &[f64],
            cands: &Cands<$t>,
            out: &mut [f64],
        ) -> bool {
            if !sqdist_cols_fits(xt, rows, xn, cands, out, $rb) {
                return false;
            }
            let mut j0 = 0;
            while j0 < cands.t {
                let g = (cands.t - j0).min(PP_G);
                match g {
                    1 => $group::<1>(xt, rows, xn, cands, j0, out),
                    2 => $group::<2>(xt, rows, xn, cands, j0, out),
                    3 => $group::<3>(xt, rows, xn, cands, j0, out),
                    4 => $group::<4>(xt, rows, xn, cands, j0, out),
                    5 => $group::<5>(xt, rows, xn, cands, j0, out),
                    6 => $group::<6>(xt, rows, xn, cands, j0, out),
                    7 => $group::<7>(xt, rows, xn, cands, j0, out),
                    _ => $group::<8>(xt, rows, xn, cands, j0, out),
                }
                j0 += g;
            }
            true
        }
    };
}

sqdist_groups!(sqdist_cols_f64, sqdist_group_f64, f64, RB64);
sqdist_groups!(sqdist_cols_f32, sqdist_group_f32, f32, RB);

fn argmin_packed<T: Float>(
    simd: bool,
    xs: &[T],
    panels: &Panels<T>,
    labels: &mut [i32],
    xt: &mut Vec<T>,
) {
    if T::argmin_cols(simd, xs, panels, labels, xt) {
        return;
    }
    match panels.nr {
        8 => argmin_dispatch::<T, 8>(simd, xs, panels, labels),
        _ => argmin_dispatch::<T, 16>(simd, xs, panels, labels),
    }
}

// ---------------------------------------------------------------------------
// Row partition.

/// Rows per group: a multiple of `CHUNK` that depends only on (n, k, d).
pub fn group_rows(n: usize, k: usize, d: usize) -> usize {
    let n_chunks = n.div_ceil(CHUNK).max(1);
    let per_group_bytes = (k * d + k).max(1) * 8;
    let max_by_mem = (GROUP_SUMS_BYTES / per_group_bytes).max(1);
    let groups = n_chunks.min(MAX_GROUPS).min(max_by_mem).max(1);
    n_chunks.div_ceil(groups) * CHUNK
}

// ---------------------------------------------------------------------------
// Lloyd.

/// Weighted centre sums and weights of one Lloyd pass (shifted coordinates).
#[derive(Debug, Clone, PartialEq)]
pub struct LloydStats {
    pub sums: Vec<f64>,
    pub weights: Vec<f64>,
}

/// One E-step (and, with `update`, the centre sums of the M-step) over all
/// rows: writes `labels`, returns the weighted sums per cluster.
/// `centers` are shifted (x - shift), k x d row-major.
#[allow(clippy::too_many_arguments)]
pub fn lloyd_pass<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    shift: &[f64],
    centers: &[f64],
    k: usize,
    labels: &mut [i32],
    update: bool,
    cancel: &Cancel,
) -> Result<LloydStats> {
    Ok(lloyd_pass_opt(x, weights, shift, centers, None, k, labels, update, cancel)?.0)
}

/// [`lloyd_pass`] that also returns the inertia (as [`inertia`] computes it)
/// when given the centres in original coordinates (`original`), while each
/// chunk's rows are in cache.
#[allow(clippy::too_many_arguments)]
fn lloyd_pass_opt<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    shift: &[f64],
    centers: &[f64],
    original: Option<&[T]>,
    k: usize,
    labels: &mut [i32],
    update: bool,
    cancel: &Cancel,
) -> Result<(LloydStats, f64)> {
    let (n, d) = check_dims(x, shift, weights)?;
    check_centers(centers.len(), k, d)?;
    if labels.len() != n {
        return Err(CoreError::Internal(
            "labels buffer has the wrong length".into(),
        ));
    }
    if let Some(c) = original {
        check_centers(c.len(), k, d)?;
    }
    let panels = Panels::<T>::new(centers, k, d);
    let simd = simd_available();
    let screen = if T::as_f64s(&[T::ZERO]).is_some() && screen_pays(simd, k) {
        ScreenPanels::new(centers, k, d)
    } else {
        None
    };
    let (stats, parts) = pass_chunks(
        x,
        weights,
        shift,
        k,
        labels,
        update,
        cancel,
        |r0, rows, clabels, s: &mut PassScratch<T>| {
            let screened = match (&screen, T::as_f64s(rows)) {
                (Some(sp), Some(rows64)) => screen_chunk(rows64, sp, clabels, s),
                _ => false,
            };
            if !screened {
                argmin_packed(simd, rows, &panels, clabels, &mut s.xt);
            }
            match original {
                Some(c) => chunk_inertia(x, weights, c, clabels, r0, &mut s.row),
                None => Ok(0.0),
            }
        },
    )?;
    Ok((stats, parts.iter().sum()))
}

/// The chunk loop of a Lloyd pass: `label(r0, rows, labels, scratch)` writes
/// the labels of the chunk starting at row `r0` (`rows` as [`chunk_rows`]
/// gives them), then the chunk's rows go into its group's centre sums (with
/// `update`). Groups are summed in group order: the same sums for any thread
/// count, whichever `label` is used.
#[allow(clippy::too_many_arguments)]
fn pass_chunks<T: Float, S: Default>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    shift: &[f64],
    k: usize,
    labels: &mut [i32],
    update: bool,
    cancel: &Cancel,
    label: impl Fn(usize, &[T], &mut [i32], &mut S) -> Result<f64> + Sync,
) -> Result<(LloydStats, Vec<f64>)> {
    let (n, d) = x.dim();
    let simd = simd_available();
    let unshifted = shift.iter().all(|&s| s == 0.0);
    let g_rows = group_rows(n, k, d);
    let partials: Vec<(LloydStats, Vec<f64>)> = labels
        .par_chunks_mut(g_rows)
        .enumerate()
        .map(|(g, glabels)| {
            let mut stats = LloydStats {
                sums: if update { vec![0.0; k * d] } else { Vec::new() },
                weights: if update { vec![0.0; k] } else { Vec::new() },
            };
            let mut values = Vec::with_capacity(glabels.len().div_ceil(CHUNK));
            let (mut buf, mut scratch) = (Vec::new(), S::default());
            let g0 = g * g_rows;
            for (c, clabels) in glabels.chunks_mut(CHUNK).enumerate() {
                cancel.check()?;
                let r0 = g0 + c * CHUNK;
                let r1 = r0 + clabels.len();
                let rows = chunk_rows(x, r0, r1, shift, unshifted, &mut buf);
                values.push(label(r0, rows, clabels, &mut scratch)?);
                if let (true, Some(w)) = (update, weights) {
                    for (i, (&l, xr)) in clabels.iter().zip(rows.chunks_exact(d)).enumerate() {
                        let w = w[r0 + i];
                        let l = l as usize;
                        stats.weights[l] += w;
                        for (s, &v) in stats.sums[l * d..(l + 1) * d].iter_mut().zip(xr) {
                            *s += v.to_f64() * w;
                        }
                    }
                } else if update {
                    add_rows(simd, clabels, rows, d, &mut stats);
                }
            }
            Ok((stats, values))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut total = LloydStats {
        sums: vec![0.0; if update { k * d } else { 0 }],
        weights: vec![0.0; if update { k } else { 0 }],
    };
    if update {
        // Fixed order: group 0, 1, 2, ... for every element.
        total
            .sums
            .par_chunks_mut(d)
            .zip(total.weights.par_iter_mut())
            .enumerate()
            .for_each(|(j, (s, w))| {
                for (p, _) in &partials {
                    for (a, &b) in s.iter_mut().zip(&p.sums[j * d..(j + 1) * d]) {
                        *a += b;
                    }
                    *w += p.weights[j];
                }
            });
    }
    let values = partials.into_iter().flat_map(|(_, v)| v).collect();
    Ok((total, values))
}

// ---------------------------------------------------------------------------
// float64 Lloyd with a float32 screen.
//
// At large k the f64 distances are compute-bound, and f32 runs twice the
// FMAs per cycle. A screened pass scores every row against every centre in
// f32 and keeps the f32 winner when its margin over the runner-up exceeds a
// rigorous bound on the f32 rounding error (plus the f64 one): then the f64
// kernel would pick the same centre, uniquely. Rows within the margin are
// scored again in f64. So the labels, and the f64 centre sums made from
// them, are exactly those of the plain f64 pass.

/// Values beyond this (in shifted coordinates) are not screened: their f32
/// rounding could overflow.
const SCREEN_MAX_ABS: f64 = 1e30;

/// Smallest k at which the screen pays: below, the pass is bound by reading
/// X, not by the distances.
const SCREEN_MIN_K: usize = 8;

fn screen_pays(simd: bool, k: usize) -> bool {
    simd && k >= SCREEN_MIN_K
}

/// The centres of a screened pass, in f32 for the screen and in f64 for the
/// rows it cannot decide, with the margin's coefficients.
struct ScreenPanels {
    p32: Panels<f32>,
    p64: Panels<f64>,
    per_xn: f64,
    fixed: f64,
}

impl ScreenPanels {
    /// `None` when a centre is too large for the f32 screen, or without AVX2
    /// and FMA (the screen's kernel needs them).
    fn new(centers: &[f64], k: usize, d: usize) -> Option<Self> {
        if !simd_available() {
            return None;
        }
        let p32 = Panels::<f32>::new(centers, k, d);
        // Largest norm of the f32 centres the screen uses.
        let cn2 = p32
            .rnorms
            .iter()
            .take(k)
            .fold(0.0f64, |m, &v| m.max(v as f64));
        let cn = cn2.sqrt();
        // (A NaN norm fails too.)
        if cn.is_nan() || cn > SCREEN_MAX_ABS {
            return None;
        }
        // |f32 score - exact score| <= u (2 (d + 4) ||x|| cn + 8 cn^2), u the
        // f32 unit roundoff: the FMA chain of the dot product, the rounding
        // of x, c and ||c||^2 to f32 and of `||c||^2 - 2 x.c` (docs/kmeans.md).
        // 1.125 covers the f64 scores' own error and this bound's rounding. A
        // winner stands when the runner-up is more than twice the bound
        // behind. 1e-30: margins that small (f32 underflow) go to f64.
        let u = f32::EPSILON as f64 / 2.0;
        Some(ScreenPanels {
            p32,
            p64: Panels::<f64>::new(centers, k, d),
            per_xn: 2.0 * 1.125 * u * 2.0 * (d as f64 + 4.0) * cn,
            fixed: 2.0 * (1.125 * u * 8.0 * cn2 + 1e-30),
        })
    }
}

/// Scratch of one group of a Lloyd pass.
struct PassScratch<T> {
    xt: Vec<T>,
    row: Vec<T>,
    x32: Vec<f32>,
    xnorm: Vec<f64>,
    xt32: Vec<f32>,
    top: Vec<[f32; 2]>,
    xt64: Vec<f64>,
    pick: Vec<usize>,
    rows: Vec<f64>,
    labels: Vec<i32>,
}

impl<T> Default for PassScratch<T> {
    fn default() -> Self {
        PassScratch {
            xt: Vec::new(),
            row: Vec::new(),
            x32: Vec::new(),
            xnorm: Vec::new(),
            xt32: Vec::new(),
            top: Vec::new(),
            xt64: Vec::new(),
            pick: Vec::new(),
            rows: Vec::new(),
            labels: Vec::new(),
        }
    }
}

/// `rows` (row-major, `d` wide) rounded to f32 into `x32` and their norms
/// into `xnorm` (any summation order: the margin only needs a bound);
/// `false` when a value exceeds [`SCREEN_MAX_ABS`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn round_rows_avx2(rows: &[f64], d: usize, x32: &mut [f32], xnorm: &mut [f64]) -> bool {
    use std::arch::x86_64::*;
    let d4 = d / 4 * 4;
    let mut top = _mm256_setzero_pd();
    let mut top_tail = 0.0f64;
    for ((r, o), nr) in rows.chunks_exact(d).zip(x32.chunks_exact_mut(d)).zip(xnorm) {
        let mut acc = _mm256_setzero_pd();
        for p in (0..d4).step_by(4) {
            // SAFETY: p + 4 <= d = r.len() = o.len().
            unsafe {
                let v = _mm256_loadu_pd(r.as_ptr().add(p));
                _mm_storeu_ps(o.as_mut_ptr().add(p), _mm256_cvtpd_ps(v));
                acc = _mm256_fmadd_pd(v, v, acc);
                top = _mm256_max_pd(top, _mm256_andnot_pd(_mm256_set1_pd(-0.0), v));
            }
        }
        let mut lanes = [0.0f64; 4];
        // SAFETY: lanes holds 4 values.
        unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), acc) };
        let mut nrm = lanes.iter().sum::<f64>();
        for p in d4..d {
            o[p] = r[p] as f32;
            nrm += r[p] * r[p];
            top_tail = if r[p].abs() > top_tail {
                r[p].abs()
            } else {
                top_tail
            };
        }
        *nr = nrm.sqrt();
    }
    let mut lanes = [0.0f64; 4];
    // SAFETY: lanes holds 4 values.
    unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), top) };
    // (Validated input has no NaN; one would make the margin NaN, and such
    // rows are rescored in f64.)
    lanes.iter().all(|&v| v <= SCREEN_MAX_ABS) && top_tail <= SCREEN_MAX_ABS
}

/// Labels of one chunk of f64 rows (`labels.len()` rows, row-major) by the
/// f32 screen, and in f64 for the rows it cannot decide: exactly the labels
/// of the f64 kernels. `false` (nothing decided) when a value is too large
/// for f32 or the kernel does not take the shape.
fn screen_chunk<T>(
    rows: &[f64],
    sp: &ScreenPanels,
    labels: &mut [i32],
    s: &mut PassScratch<T>,
) -> bool {
    let (m, d) = (labels.len(), sp.p64.d);
    if rows.len() < m * d {
        return false;
    }
    s.x32.resize(m * d, 0.0);
    s.xnorm.resize(m, 0.0);
    // SAFETY: a ScreenPanels exists only when AVX2 and FMA were detected.
    #[cfg(target_arch = "x86_64")]
    let fits = unsafe { round_rows_avx2(&rows[..m * d], d, &mut s.x32, &mut s.xnorm) };
    #[cfg(not(target_arch = "x86_64"))]
    let fits = false;
    if !fits {
        return false;
    }
    s.xt32.resize(m.div_ceil(RB) * d * RB, 0.0);
    s.top.resize(m, [0.0; 2]);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a ScreenPanels exists only when AVX2 and FMA were detected.
    let screened = unsafe {
        transpose_rows_avx2(&s.x32, m, d, &mut s.xt32);
        argmin_cols_f32_top::<true>(&s.xt32, &sp.p32, labels, &mut s.top)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let screened = false;
    if !screened {
        return false;
    }
    s.pick.clear();
    for (i, (t, &xn)) in s.top.iter().zip(&s.xnorm).enumerate() {
        let margin = t[1] as f64 - t[0] as f64;
        // A NaN margin is rescored too.
        let decided = margin > sp.per_xn * xn + sp.fixed;
        if !decided {
            s.pick.push(i);
        }
    }
    if s.pick.is_empty() {
        return true;
    }
    s.rows.clear();
    for &i in &s.pick {
        s.rows.extend_from_slice(&rows[i * d..(i + 1) * d]);
    }
    s.rows.resize(s.pick.len().div_ceil(MR) * MR * d, 0.0);
    s.labels.resize(s.pick.len(), 0);
    argmin_packed(true, &s.rows, &sp.p64, &mut s.labels, &mut s.xt64);
    for (&i, &l) in s.pick.iter().zip(&s.labels) {
        labels[i] = l;
    }
    true
}

/// Unit-weight centre sums of one chunk (`v * 1.0` is exact, so this is the
/// weighted sum); each sum gets its rows in row order whatever the ISA.
#[inline(always)]
fn add_rows_generic<T: Float>(labels: &[i32], xs: &[T], d: usize, stats: &mut LloydStats) {
    for (&l, xr) in labels.iter().zip(xs.chunks_exact(d)) {
        let l = l as usize;
        if let (Some(w), Some(s)) = (
            stats.weights.get_mut(l),
            stats.sums.get_mut(l * d..(l + 1) * d),
        ) {
            *w += 1.0;
            for (s, &v) in s.iter_mut().zip(xr) {
                *s += v.to_f64();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn add_rows_avx2<T: Float>(labels: &[i32], xs: &[T], d: usize, stats: &mut LloydStats) {
    add_rows_generic(labels, xs, d, stats)
}

/// [`add_rows_generic`] in AVX-512 registers (8 f64 sums per instruction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn add_rows_avx512<T: Float>(labels: &[i32], xs: &[T], d: usize, stats: &mut LloydStats) {
    add_rows_generic(labels, xs, d, stats)
}

fn add_rows<T: Float>(simd: bool, labels: &[i32], xs: &[T], d: usize, stats: &mut LloydStats) {
    #[cfg(target_arch = "x86_64")]
    if simd && avx512_available() {
        // SAFETY: AVX-512F was detected at run time.
        return unsafe { add_rows_avx512(labels, xs, d, stats) };
    }
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is true only when AVX2 and FMA were detected at run time.
        return unsafe { add_rows_avx2(labels, xs, d, stats) };
    }
    let _ = simd;
    add_rows_generic(labels, xs, d, stats)
}

/// Squared distance of each row (shifted) to the centre of its label, f64.
pub fn label_distances<T: Float>(
    x: &impl Rows<T>,
    shift: &[f64],
    centers: &[f64],
    labels: &[i32],
    cancel: &Cancel,
) -> Result<Vec<f64>> {
    let d = shift.len();
    let mut out = vec![0.0; labels.len()];
    out.par_chunks_mut(CHUNK)
        .zip(labels.par_chunks(CHUNK))
        .enumerate()
        .try_for_each(|(c, (o, l))| {
            cancel.check()?;
            let mut row = vec![T::ZERO; d];
            for (i, (o, &l)) in o.iter_mut().zip(l).enumerate() {
                x.read_row(c * CHUNK + i, &mut row);
                let cen = centers
                    .get(l as usize * d..(l as usize + 1) * d)
                    .ok_or_else(|| CoreError::Internal("label out of range".into()))?;
                *o = row
                    .iter()
                    .zip(shift)
                    .zip(cen)
                    .map(|((&v, &s), &m)| {
                        let t = v.to_f64() - s - m;
                        t * t
                    })
                    .sum();
            }
            Ok(())
        })?;
    Ok(out)
}

/// sklearn's empty-cluster relocation: each empty cluster takes one of the
/// points farthest from their current centre (farthest first, lower index on
/// ties); the point's weighted row moves from its old cluster's sum to the
/// empty one. Nothing happens when every point sits on its centre.
#[allow(clippy::too_many_arguments)]
pub fn relocate_empty<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    shift: &[f64],
    old_centers: &[f64],
    labels: &[i32],
    stats: &mut LloydStats,
    cancel: &Cancel,
) -> Result<usize> {
    let d = shift.len();
    let empty: Vec<usize> = (0..stats.weights.len())
        .filter(|&j| stats.weights[j] == 0.0)
        .collect();
    if empty.is_empty() {
        return Ok(0);
    }
    let dist = label_distances(x, shift, old_centers, labels, cancel)?;
    if dist.iter().all(|&v| v == 0.0) {
        return Ok(0);
    }
    let mut order: Vec<usize> = (0..dist.len()).collect();
    let m = empty.len().min(order.len());
    // Top-m by distance (descending), ties by index.
    let cmp = |a: &usize, b: &usize| dist[*b].total_cmp(&dist[*a]).then(a.cmp(b));
    if m < order.len() {
        order.select_nth_unstable_by(m, cmp);
        order.truncate(m);
    }
    order.sort_by(cmp);
    for (&new_id, &far) in empty.iter().zip(&order) {
        let w = weights.map_or(1.0, |w| w[far]);
        let old_id = labels[far] as usize;
        let row = row_vec(x, far);
        for (f, (&v, &s)) in row.iter().zip(shift).enumerate() {
            let val = T::from_f64(v.to_f64() - s).to_f64() * w;
            stats.sums[old_id * d + f] -= val;
            stats.sums[new_id * d + f] = val;
        }
        stats.weights[new_id] = w;
        stats.weights[old_id] -= w;
    }
    Ok(m)
}

/// Turn sums into means (sklearn multiplies by 1/w). Clusters still empty go
/// to the heaviest cluster's mean.
pub fn average_centers(stats: &LloydStats, d: usize) -> Vec<f64> {
    let k = stats.weights.len();
    let mut out = stats.sums.clone();
    for j in 0..k {
        let w = stats.weights[j];
        if w > 0.0 {
            let a = 1.0 / w;
            for v in &mut out[j * d..(j + 1) * d] {
                *v *= a;
            }
        }
    }
    let mut heaviest = 0;
    for j in 0..k {
        if stats.weights[j] > stats.weights[heaviest] {
            heaviest = j;
        }
    }
    for j in 0..k {
        if stats.weights[j] <= 0.0 && j != heaviest {
            let src: Vec<f64> = out[heaviest * d..(heaviest + 1) * d].to_vec();
            out[j * d..(j + 1) * d].copy_from_slice(&src);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Hamerly's bounds (the "elkan" algorithm): an exact acceleration of Lloyd.

/// Slack on bounds computed in f64 (far above their rounding error).
const BOUND_UP: f64 = 1.0 + 1e-10;
const BOUND_DOWN: f64 = 1.0 - 1e-10;

/// Per-row bounds kept between passes: `upper >= ||x - c_label||`,
/// `lower <= ||x - c_j||` for every other centre `j`.
#[derive(Debug, Clone)]
pub struct Bounds {
    upper: Vec<f64>,
    lower: Vec<f64>,
    /// The centres (rounded to X's dtype, shifted, f64) the bounds refer to.
    prev: Option<Vec<f64>>,
}

impl Bounds {
    pub fn new(n: usize) -> Self {
        Bounds {
            upper: vec![f64::INFINITY; n],
            lower: vec![0.0; n],
            prev: None,
        }
    }
}

fn dist_f64<T: Float>(xr: &[T], c: &[f64]) -> f64 {
    xr.iter()
        .zip(c)
        .map(|(&a, &b)| {
            let t = a.to_f64() - b;
            t * t
        })
        .sum::<f64>()
        .sqrt()
}

/// Half the distance of each centre to its closest other centre (Hamerly's `s`).
fn half_separation(ct: &[f64], k: usize, d: usize) -> Vec<f64> {
    let mut s = vec![f64::INFINITY; k];
    for a in 0..k {
        for b in a + 1..k {
            let v = 0.5 * dist_f64(&ct[a * d..(a + 1) * d], &ct[b * d..(b + 1) * d]) * BOUND_DOWN;
            s[a] = s[a].min(v);
            s[b] = s[b].min(v);
        }
    }
    s
}

/// [`lloyd_pass`] with Hamerly's bounds: a row whose bounds prove that the
/// kernel would pick its current label again keeps it without computing its
/// k distances. The proof leaves a margin for the kernel's rounding error
/// (`delta`), so the labels, and hence the sums (accumulated in the same
/// order from the same values), are bit-identical to [`lloyd_pass`]'s.
#[allow(clippy::too_many_arguments)]
pub fn hamerly_pass<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    shift: &[f64],
    centers: &[f64],
    k: usize,
    labels: &mut [i32],
    bounds: &mut Bounds,
    cancel: &Cancel,
) -> Result<LloydStats> {
    let (n, d) = check_dims(x, shift, weights)?;
    check_centers(centers.len(), k, d)?;
    if labels.len() != n || bounds.upper.len() != n || bounds.lower.len() != n {
        return Err(CoreError::Internal(
            "bounds buffers have the wrong length".into(),
        ));
    }
    let panels = Panels::<T>::new(centers, k, d);
    // The geometry the kernel sees: centres rounded to X's dtype.
    let ct: Vec<f64> = centers.iter().map(|&v| T::from_f64(v).to_f64()).collect();
    // How far each centre moved since the bounds were set; the largest two.
    let moves: Vec<f64> = match &bounds.prev {
        Some(prev) if prev.len() == ct.len() => prev
            .chunks_exact(d)
            .zip(ct.chunks_exact(d))
            .map(|(a, b)| dist_f64(b, a) * BOUND_UP)
            .collect(),
        _ => vec![f64::INFINITY; k],
    };
    let (mut m1, mut m2, mut am) = (0.0f64, 0.0f64, usize::MAX);
    for (j, &m) in moves.iter().enumerate() {
        if m > m1 {
            m2 = m1;
            m1 = m;
            am = j;
        } else if m > m2 {
            m2 = m;
        }
    }
    let half = half_separation(&ct, k, d);
    let cmax2 = ct
        .chunks_exact(d)
        .map(|c| c.iter().map(|v| v * v).sum::<f64>())
        .fold(0.0, f64::max);
    // Two kernel scores are each within (d + 3) eps (|x|^2 + |c|^2) of exact:
    // a gap in squared distance above `df * (|x|^2 + max|c|^2)` cannot flip.
    let df = 4.0 * (d as f64 + 4.0) * T::EPS;
    let simd = simd_available();
    let unshifted = shift.iter().all(|&s| s == 0.0);
    let g_rows = group_rows(n, k, d);
    let partials: Vec<LloydStats> = labels
        .par_chunks_mut(g_rows)
        .zip(bounds.upper.par_chunks_mut(g_rows))
        .zip(bounds.lower.par_chunks_mut(g_rows))
        .enumerate()
        .map(|(g, ((glabels, gup), glow))| {
            let mut stats = LloydStats {
                sums: vec![0.0; k * d],
                weights: vec![0.0; k],
            };
            let (mut buf, mut gbuf, mut redo, mut tops) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let g0 = g * g_rows;
            for (c, ((clabels, cup), clow)) in glabels
                .chunks_mut(CHUNK)
                .zip(gup.chunks_mut(CHUNK))
                .zip(glow.chunks_mut(CHUNK))
                .enumerate()
            {
                cancel.check()?;
                let r0 = g0 + c * CHUNK;
                let r1 = r0 + clabels.len();
                let rows = chunk_rows(x, r0, r1, shift, unshifted, &mut buf);
                redo.clear();
                for (i, xr) in rows.chunks_exact(d).take(clabels.len()).enumerate() {
                    let Ok(a) = usize::try_from(clabels[i]) else {
                        redo.push(i);
                        continue;
                    };
                    if a >= k {
                        redo.push(i);
                        continue;
                    }
                    let xn2: f64 = xr.iter().map(|&v| v.to_f64() * v.to_f64()).sum();
                    let delta = df * (xn2 + cmax2);
                    let mut u = cup[i] + moves[a];
                    let l = (clow[i] - if a == am { m2 } else { m1 }).max(0.0);
                    clow[i] = l;
                    let safe = |u: f64| {
                        let lb = l.max(2.0 * half[a] - u);
                        lb > 0.0 && lb * lb - u * u > delta
                    };
                    if !safe(u) {
                        u = dist_f64(xr, &ct[a * d..(a + 1) * d]) * BOUND_UP;
                        if !safe(u) {
                            redo.push(i);
                        }
                    }
                    cup[i] = u;
                }
                if !redo.is_empty() {
                    gbuf.clear();
                    for &i in &redo {
                        gbuf.extend_from_slice(&rows[i * d..(i + 1) * d]);
                    }
                    gbuf.resize(redo.len().div_ceil(MR) * MR * d, T::ZERO);
                    tops.clear();
                    tops.resize(
                        redo.len(),
                        Top2 {
                            label: 0,
                            best: T::INFINITY,
                            second: T::INFINITY,
                        },
                    );
                    match panels.nr {
                        8 => top2_dispatch::<T, 8>(simd, &gbuf, &panels, &mut tops),
                        _ => top2_dispatch::<T, 16>(simd, &gbuf, &panels, &mut tops),
                    }
                    for (&i, t) in redo.iter().zip(&tops) {
                        let xr = &rows[i * d..(i + 1) * d];
                        let a = (t.label as usize).min(k - 1);
                        clabels[i] = a as i32;
                        cup[i] = dist_f64(xr, &ct[a * d..(a + 1) * d]) * BOUND_UP;
                        let sec = t.second.to_f64();
                        clow[i] = if sec == f64::INFINITY {
                            f64::INFINITY
                        } else {
                            let xn2: f64 = xr.iter().map(|&v| v.to_f64() * v.to_f64()).sum();
                            (sec + xn2 - df * (xn2 + cmax2)).max(0.0).sqrt() * BOUND_DOWN
                        };
                    }
                }
                // Exactly lloyd_pass's accumulation (same order, same values).
                for (i, (&l, xr)) in clabels.iter().zip(rows.chunks_exact(d)).enumerate() {
                    let w = weights.map_or(1.0, |w| w[r0 + i]);
                    let l = l as usize;
                    stats.weights[l] += w;
                    for (s, &v) in stats.sums[l * d..(l + 1) * d].iter_mut().zip(xr) {
                        *s += v.to_f64() * w;
                    }
                }
            }
            Ok(stats)
        })
        .collect::<Result<Vec<_>>>()?;
    bounds.prev = Some(ct);
    let mut total = LloydStats {
        sums: vec![0.0; k * d],
        weights: vec![0.0; k],
    };
    total
        .sums
        .par_chunks_mut(d)
        .zip(total.weights.par_iter_mut())
        .enumerate()
        .for_each(|(j, (s, w))| {
            for p in &partials {
                for (a, &b) in s.iter_mut().zip(&p.sums[j * d..(j + 1) * d]) {
                    *a += b;
                }
                *w += p.weights[j];
            }
        });
    Ok(total)
}

/// The outcome of one k-means run.
#[derive(Debug, Clone)]
pub struct KMeansRun<T> {
    /// k x d, original coordinates, X's dtype.
    pub centers: Vec<T>,
    pub labels: Vec<i32>,
    pub inertia: f64,
    pub n_iter: usize,
    /// Labels stopped changing (sklearn's strict convergence).
    pub strict: bool,
}

/// Lloyd's algorithm from `init` (k x d, original coordinates) with
/// sklearn's stopping rules: stop when the labels repeat (strict
/// convergence) or when the squared centre shift is `<= tol` (absolute).
/// Then one more E-step with the final centres recomputes labels and inertia,
/// exactly as [`assign`] does, so `predict(X_train) == labels`.
#[allow(clippy::too_many_arguments)]
pub fn lloyd<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    init: &[T],
    k: usize,
    shift: &[f64],
    max_iter: usize,
    tol: f64,
    cancel: &Cancel,
) -> Result<KMeansRun<T>> {
    kmeans_run(x, weights, init, k, shift, max_iter, tol, false, cancel)
}

/// [`lloyd`] with Hamerly's bounds: the same labels, centres, inertia and
/// iteration count, fewer distance computations once centres settle.
#[allow(clippy::too_many_arguments)]
pub fn hamerly<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    init: &[T],
    k: usize,
    shift: &[f64],
    max_iter: usize,
    tol: f64,
    cancel: &Cancel,
) -> Result<KMeansRun<T>> {
    kmeans_run(x, weights, init, k, shift, max_iter, tol, true, cancel)
}

/// One Lloyd or Hamerly pass.
#[allow(clippy::too_many_arguments)]
fn one_pass<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    shift: &[f64],
    centers: &[f64],
    k: usize,
    labels: &mut [i32],
    bounds: Option<&mut Bounds>,
    cancel: &Cancel,
) -> Result<LloydStats> {
    match bounds {
        Some(b) => hamerly_pass(x, weights, shift, centers, k, labels, b, cancel),
        None => lloyd_pass(x, weights, shift, centers, k, labels, true, cancel),
    }
}

#[allow(clippy::too_many_arguments)]
fn kmeans_run<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    init: &[T],
    k: usize,
    shift: &[f64],
    max_iter: usize,
    tol: f64,
    bounded: bool,
    cancel: &Cancel,
) -> Result<KMeansRun<T>> {
    let (n, d) = check_dims(x, shift, weights)?;
    check_centers(init.len(), k, d)?;
    if max_iter == 0 {
        return Err(CoreError::invalid("max_iter must be >= 1"));
    }
    let mut centers: Vec<f64> = init
        .chunks_exact(d)
        .flat_map(|c| {
            c.iter()
                .zip(shift)
                .map(|(&v, &s)| T::from_f64(v.to_f64() - s).to_f64())
        })
        .collect();
    let copy = shifted_copy(x, shift, cancel)?;
    let zeros = vec![0.0; d];
    let copy_view = match &copy {
        Some(c) => Some(
            ArrayView2::from_shape((n, d), c.as_slice())
                .map_err(|e| CoreError::Internal(format!("shifted copy: {e}")))?,
        ),
        None => None,
    };
    let mut labels = vec![-1i32; n];
    let mut labels_old = vec![-1i32; n];
    let mut strict = false;
    let mut n_iter = 0;
    let mut bounds = if bounded { Some(Bounds::new(n)) } else { None };
    for it in 0..max_iter {
        n_iter = it + 1;
        // The shifted copy with a zero shift gives the values pack_rows makes from X.
        let mut stats = match &copy_view {
            Some(xc) => one_pass(
                xc,
                weights,
                &zeros,
                &centers,
                k,
                &mut labels,
                bounds.as_mut(),
                cancel,
            )?,
            None => one_pass(
                x,
                weights,
                shift,
                &centers,
                k,
                &mut labels,
                bounds.as_mut(),
                cancel,
            )?,
        };
        match &copy_view {
            Some(xc) => relocate_empty(xc, weights, &zeros, &centers, &labels, &mut stats, cancel)?,
            None => relocate_empty(x, weights, shift, &centers, &labels, &mut stats, cancel)?,
        };
        let new_centers = average_centers(&stats, d);
        let shift_tot: f64 = centers
            .iter()
            .zip(&new_centers)
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        centers = new_centers;
        if labels == labels_old {
            strict = true;
            break;
        }
        if shift_tot <= tol {
            break;
        }
        labels_old.copy_from_slice(&labels);
    }
    let out: Vec<T> = centers
        .chunks_exact(d)
        .flat_map(|c| c.iter().zip(shift).map(|(&v, &s)| T::from_f64(v + s)))
        .collect();
    let pshift = centers_mean(&out, k, d);
    let (labels, inertia) = assign(x, weights, &out, k, &pshift, true, cancel)?;
    Ok(KMeansRun {
        centers: out,
        labels,
        inertia,
        n_iter,
        strict,
    })
}

/// Column means of the centres: the shift [`assign`] uses after fitting.
pub fn centers_mean<T: Float>(centers: &[T], k: usize, d: usize) -> Vec<f64> {
    let mut m = vec![0.0; d];
    for c in centers.chunks_exact(d).take(k) {
        for (a, &v) in m.iter_mut().zip(c) {
            *a += v.to_f64();
        }
    }
    m.iter_mut().for_each(|v| *v /= k.max(1) as f64);
    m
}

/// Closest centre of every row and (if `with_inertia`) the weighted sum of
/// squared distances to it, computed exactly as `sum (x - c)^2` in f64.
/// `centers` in original coordinates; `shift` only steers accuracy.
pub fn assign<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    centers: &[T],
    k: usize,
    shift: &[f64],
    with_inertia: bool,
    cancel: &Cancel,
) -> Result<(Vec<i32>, f64)> {
    let (n, d) = check_dims(x, shift, weights)?;
    check_centers(centers.len(), k, d)?;
    let shifted: Vec<f64> = centers
        .chunks_exact(d)
        .flat_map(|c| c.iter().zip(shift).map(|(&v, &s)| v.to_f64() - s))
        .collect();
    let mut labels = vec![0i32; n];
    let original = with_inertia.then_some(centers);
    let (_, inertia) = lloyd_pass_opt(
        x,
        weights,
        shift,
        &shifted,
        original,
        k,
        &mut labels,
        false,
        cancel,
    )?;
    Ok((labels, inertia))
}

/// `sum_i w_i ||x_i - c_{label_i}||^2` in f64, fixed-order chunk reduction.
pub fn inertia<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    centers: &[T],
    labels: &[i32],
    cancel: &Cancel,
) -> Result<f64> {
    let parts: Vec<f64> = labels
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(c, l)| {
            cancel.check()?;
            chunk_inertia(x, weights, centers, l, c * CHUNK, &mut Vec::new())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(parts.iter().sum())
}

/// The inertia of rows `r0..r0 + labels.len()`, summed in row order.
fn chunk_inertia<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    centers: &[T],
    labels: &[i32],
    r0: usize,
    row: &mut Vec<T>,
) -> Result<f64> {
    let d = x.ncols();
    row.resize(d, T::ZERO);
    let mut acc = 0.0;
    for (i, &l) in labels.iter().enumerate() {
        let r = r0 + i;
        let cen = centers
            .get(l as usize * d..(l as usize + 1) * d)
            .ok_or_else(|| CoreError::Internal("label out of range".into()))?;
        x.read_row(r, row);
        acc += weights.map_or(1.0, |w| w[r]) * sqdist_exact(row, cen);
    }
    Ok(acc)
}

/// `sum (x - c)^2` in f64, in feature order: the exact distance of the
/// inertia and of `transform`.
fn sqdist_exact<T: Float>(x: &[T], c: &[T]) -> f64 {
    x.iter()
        .zip(c)
        .map(|(&a, &b)| {
            let t = a.to_f64() - b.to_f64();
            t * t
        })
        .sum()
}

/// Euclidean distance of every row to every centre (n x k, row-major),
/// computed as `sqrt(sum (x - c)^2)` in f64 and returned in X's dtype.
pub fn transform<T: Float>(
    x: &impl Rows<T>,
    centers: &[T],
    k: usize,
    cancel: &Cancel,
) -> Result<Vec<T>> {
    let (n, d) = x.dim();
    check_centers(centers.len(), k, d)?;
    let mut out = vec![T::ZERO; n * k];
    out.par_chunks_mut(CHUNK * k)
        .enumerate()
        .try_for_each(|(c, o)| {
            cancel.check()?;
            let mut row = vec![T::ZERO; d];
            for (i, orow) in o.chunks_exact_mut(k).enumerate() {
                x.read_row(c * CHUNK + i, &mut row);
                for (dst, cen) in orow.iter_mut().zip(centers.chunks_exact(d)) {
                    *dst = T::from_f64(sqdist_exact(&row, cen).sqrt());
                }
            }
            Ok(())
        })?;
    Ok(out)
}

/// Column means and (population) variances of X in f64, two passes with
/// fixed-order chunk reductions: independent of memory layout and threads.
/// The means are the shift of [`lloyd`]; the variances give sklearn's
/// tolerance (`tol * mean(var)`).
pub fn column_stats<T: Float>(x: &impl Rows<T>, cancel: &Cancel) -> Result<(Vec<f64>, Vec<f64>)> {
    column_stats_opt(x, true, cancel)
}

/// The means of [`column_stats`] alone (the same values), one pass fewer.
pub fn column_means<T: Float>(x: &impl Rows<T>, cancel: &Cancel) -> Result<Vec<f64>> {
    Ok(column_stats_opt(x, false, cancel)?.0)
}

fn column_stats_opt<T: Float>(
    x: &impl Rows<T>,
    with_var: bool,
    cancel: &Cancel,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (n, d) = x.dim();
    if n == 0 || d == 0 {
        return Err(CoreError::invalid(
            "X must have at least one sample and one feature",
        ));
    }
    let pass = |center: Option<&[f64]>| -> Result<Vec<f64>> {
        let parts: Vec<Vec<f64>> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                cancel.check()?;
                let mut acc = vec![0.0; d];
                let mut row = vec![T::ZERO; d];
                for r in c * CHUNK..((c + 1) * CHUNK).min(n) {
                    x.read_row(r, &mut row);
                    for (a, (f, &v)) in acc.iter_mut().zip(row.iter().enumerate()) {
                        let v = v.to_f64();
                        *a += match center {
                            Some(m) => (v - m[f]) * (v - m[f]),
                            None => v,
                        };
                    }
                }
                Ok(acc)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut tot = vec![0.0; d];
        for p in &parts {
            for (a, b) in tot.iter_mut().zip(p) {
                *a += b;
            }
        }
        tot.iter_mut().for_each(|v| *v /= n as f64);
        Ok(tot)
    };
    let mean = pass(None)?;
    if !with_var {
        return Ok((mean, Vec::new()));
    }
    let var = pass(Some(&mean))?;
    Ok((mean, var))
}

// ---------------------------------------------------------------------------
// k-means++.

/// Index `i` of the first row whose running sum of `mass` reaches `target`
/// (numpy's `searchsorted(cumsum(mass), target)`), using per-chunk totals to
/// skip whole chunks. Clipped to the last row.
fn search_mass(chunk_totals: &[f64], mass: &[f64], target: f64) -> usize {
    search_mass_by(chunk_totals, mass.len(), |i| mass[i], target)
}

/// [`search_mass`] with the row masses given by `mass(i)` (rows `0..n`).
fn search_mass_by(
    chunk_totals: &[f64],
    n: usize,
    mass: impl Fn(usize) -> f64,
    target: f64,
) -> usize {
    let mut acc = 0.0;
    for (c, &t) in chunk_totals.iter().enumerate() {
        if acc + t >= target {
            for i in c * CHUNK..((c + 1) * CHUNK).min(n) {
                acc += mass(i);
                if acc >= target {
                    return i;
                }
            }
            // Rounding between the chunk total and the row sums: keep walking.
            continue;
        }
        acc += t;
    }
    n.saturating_sub(1)
}

/// Greedy k-means++ (sklearn's `_kmeans_plusplus`): first centre drawn with
/// p ~ w; each next centre draws `n_trials` candidates with p ~ w * D^2 and
/// keeps the one minimising the potential `sum w * min D^2`. Returns the
/// chosen row indices. Distances use the expansion on shifted rows.
#[allow(clippy::too_many_arguments)]
pub fn kmeans_plusplus<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    k: usize,
    n_trials: usize,
    shift: &[f64],
    seed: u64,
    stream: u64,
    cancel: &Cancel,
) -> Result<Vec<usize>> {
    let (n, d) = check_dims(x, shift, weights)?;
    if k == 0 || k > n {
        return Err(CoreError::invalid(format!(
            "n_samples={n} should be >= n_clusters={k}."
        )));
    }
    let n_trials = n_trials.clamp(1, T::NR);
    let simd = simd_available();
    let mut rng = SplitMix64::new(seed, stream);
    if simd && x.dense() {
        return plusplus_cols(x, weights, k, n_trials, shift, &mut rng, cancel);
    }
    // One shifted copy of X, read in place by every pass (as in lloyd).
    let copy = shifted_copy(x, shift, cancel)?;
    match copy {
        Some(c) => {
            let xc = ArrayView2::from_shape((n, d), c.as_slice())
                .map_err(|e| CoreError::Internal(format!("shifted copy: {e}")))?;
            plusplus_on(
                &xc,
                weights,
                k,
                n_trials,
                &vec![0.0; d],
                &mut rng,
                simd,
                cancel,
            )
        }
        None => plusplus_on(x, weights, k, n_trials, shift, &mut rng, simd, cancel),
    }
}

/// The body of [`kmeans_plusplus`] on rows that [`chunk_rows`] can borrow
/// when `shift` is zero. Each new centre costs one distance pass: the pass
/// that scores the candidates keeps every row's distance to each of them, so
/// the winner is folded into `closest` from those (the same values a pass
/// over the winner alone would give: lanes are computed independently).
#[allow(clippy::too_many_arguments)]
fn plusplus_on<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    k: usize,
    n_trials: usize,
    shift: &[f64],
    rng: &mut SplitMix64,
    simd: bool,
    cancel: &Cancel,
) -> Result<Vec<usize>> {
    let (n, d) = x.dim();
    let unshifted = shift.iter().all(|&s| s == 0.0);
    let w_at = |i: usize| weights.map_or(1.0, |w| w[i]);
    let shifted_row = |i: usize| -> Vec<f64> {
        row_vec(x, i)
            .iter()
            .zip(shift)
            .map(|(&v, &s)| T::from_f64(v.to_f64() - s).to_f64())
            .collect()
    };

    // First centre: p ~ w.
    let first = first_pick(n, weights, rng);
    let mut chosen = vec![first];

    // `closest` (n) holds min D^2 to the chosen centres.
    let mut closest = vec![f64::INFINITY; n];
    let mut xnorms = vec![0.0f64; n];
    let n_chunks = n.div_ceil(CHUNK);
    // Squared norms of the shifted rows, once.
    xnorms
        .par_chunks_mut(CHUNK)
        .enumerate()
        .try_for_each(|(c, o)| {
            cancel.check()?;
            let mut buf = Vec::new();
            let rows = chunk_rows(
                x,
                c * CHUNK,
                c * CHUNK + o.len(),
                shift,
                unshifted,
                &mut buf,
            );
            for (v, r) in o.iter_mut().zip(rows.chunks_exact(d)) {
                *v = r.iter().map(|&a| a.to_f64() * a.to_f64()).sum();
            }
            Ok::<(), CoreError>(())
        })?;

    // Distances of every row to the candidates (`t` per row, into `dists`)
    // and the per-candidate potentials `sum w * min(D^2, closest)`.
    let eval = |cands: &[usize], closest: &[f64], dists: &mut [f64]| -> Result<Vec<f64>> {
        let cvals: Vec<f64> = cands.iter().flat_map(|&i| shifted_row(i)).collect();
        let panels = Panels::<T>::new(&cvals, cands.len(), d);
        let t = cands.len();
        let parts: Vec<Vec<f64>> = dists
            .par_chunks_mut(CHUNK * t)
            .zip(closest.par_chunks(CHUNK))
            .enumerate()
            .map(|(c, (dc, cl))| {
                cancel.check()?;
                let r0 = c * CHUNK;
                let mut buf = Vec::new();
                let rows = chunk_rows(x, r0, r0 + cl.len(), shift, unshifted, &mut buf);
                let xn = &xnorms[r0..r0 + cl.len()];
                let mut pots = vec![0.0; t];
                let mut handle = |dist: &[f64], i: usize, cl: f64, out: &mut [f64]| {
                    let w = w_at(r0 + i);
                    for (p, &dd) in pots.iter_mut().zip(dist) {
                        *p += w * dd.min(cl);
                    }
                    out.copy_from_slice(&dist[..t]);
                };
                if panels.nr == 8 {
                    let mut out = vec![[0.0f64; 8]; cl.len()];
                    sqdist_dispatch::<T, 8>(simd, rows, xn, &panels, &mut out);
                    for (i, ((o, &c), dd)) in
                        out.iter().zip(cl).zip(dc.chunks_exact_mut(t)).enumerate()
                    {
                        handle(&o[..t], i, c, dd);
                    }
                } else {
                    let mut out = vec![[0.0f64; 16]; cl.len()];
                    sqdist_dispatch::<T, 16>(simd, rows, xn, &panels, &mut out);
                    for (i, ((o, &c), dd)) in
                        out.iter().zip(cl).zip(dc.chunks_exact_mut(t)).enumerate()
                    {
                        handle(&o[..t], i, c, dd);
                    }
                }
                Ok(pots)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut pots = vec![0.0; t];
        for p in &parts {
            for (a, b) in pots.iter_mut().zip(p) {
                *a += b;
            }
        }
        Ok(pots)
    };
    // Fold candidate `j` of `t` into `closest` and `mass` (= w * closest);
    // returns the per-chunk masses.
    let commit =
        |dists: &[f64], t: usize, j: usize, closest: &mut [f64], mass: &mut [f64]| -> Vec<f64> {
            closest
                .par_chunks_mut(CHUNK)
                .zip(mass.par_chunks_mut(CHUNK))
                .zip(dists.par_chunks(CHUNK * t))
                .enumerate()
                .map(|(c, ((cl, ms), dc))| {
                    let mut tot = 0.0;
                    for (i, ((cv, m), dd)) in cl
                        .iter_mut()
                        .zip(ms.iter_mut())
                        .zip(dc.chunks_exact(t))
                        .enumerate()
                    {
                        *cv = dd[j].min(*cv);
                        *m = w_at(c * CHUNK + i) * *cv;
                        tot += *m;
                    }
                    tot
                })
                .collect()
        };

    let mut dists = vec![0.0f64; n];
    let mut mass = vec![0.0f64; n];
    eval(&[first], &closest, &mut dists)?;
    let mut chunk_mass = commit(&dists, 1, 0, &mut closest, &mut mass);
    debug_assert_eq!(chunk_mass.len(), n_chunks);
    let mut current_pot: f64 = chunk_mass.iter().sum();
    for _ in 1..k {
        cancel.check()?;
        let cands: Vec<usize> = (0..n_trials)
            .map(|_| search_mass(&chunk_mass, &mass, rng.uniform() * current_pot))
            .collect();
        let t = cands.len();
        dists.resize(n * t, 0.0);
        let pots = eval(&cands, &closest, &mut dists[..n * t])?;
        let mut best = 0;
        for (i, &p) in pots.iter().enumerate() {
            if p < pots[best] {
                best = i;
            }
        }
        chunk_mass = commit(&dists[..n * t], t, best, &mut closest, &mut mass);
        current_pot = chunk_mass.iter().sum();
        chosen.push(cands[best]);
    }
    Ok(chosen)
}

/// The first k-means++ centre: a row drawn with p ~ w.
fn first_pick(n: usize, weights: Option<&[f64]>, rng: &mut SplitMix64) -> usize {
    let w_at = |i: usize| weights.map_or(1.0, |w| w[i]);
    let total: f64 = (0..n).map(w_at).sum();
    let target = rng.uniform() * total;
    let mut acc = 0.0;
    for i in 0..n {
        acc += w_at(i);
        if acc > target {
            return i;
        }
    }
    n - 1
}

/// [`plusplus_on`] for dense X with AVX2+FMA, the same draws: X is shifted
/// once into the rows-in-lanes layout, and each step is one pass that
/// scores the `t` candidates with [`sqdist_cols`] (the distances
/// [`sqdist_rows`] gives, without the panel kernel's padding to `NR`
/// centres). No distance matrix is kept: the previous step's winner is
/// scored again in the same pass (an extra candidate; the same values) and
/// folded into `closest` there. Potentials and chunk masses are summed in
/// the same order as in [`plusplus_on`], so the picks are identical.
fn plusplus_cols<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    k: usize,
    n_trials: usize,
    shift: &[f64],
    rng: &mut SplitMix64,
    cancel: &Cancel,
) -> Result<Vec<usize>> {
    let (n, d) = x.dim();
    let n_chunks = n.div_ceil(CHUNK);
    let w_at = |i: usize| weights.map_or(1.0, |w| w[i]);
    let first = first_pick(n, weights, rng);
    let mut chosen = vec![first];

    // Shifted rows in RBT-row blocks (a chunk is a whole number of blocks)
    // and their squared norms (zero-padded per chunk), once.
    let mut xt = vec![T::ZERO; n_chunks * CHUNK * d];
    let mut xnorms = vec![0.0f64; n_chunks * CHUNK];
    xt.par_chunks_mut(CHUNK * d)
        .zip(xnorms.par_chunks_mut(CHUNK))
        .enumerate()
        .try_for_each(|(c, (o, xn))| {
            cancel.check()?;
            let r0 = c * CHUNK;
            let r1 = (r0 + CHUNK).min(n);
            let mut buf = Vec::new();
            pack_rows(x, r0, r1, shift, &mut buf);
            for (v, r) in xn.iter_mut().zip(buf.chunks_exact(d)).take(r1 - r0) {
                *v = r.iter().map(|&a| a.to_f64() * a.to_f64()).sum();
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the caller checked AVX2 and FMA at run time.
            unsafe {
                T::transpose_avx2(&buf, r1 - r0, d, o)
            };
            Ok::<(), CoreError>(())
        })?;
    let chunk_of = |c: usize| {
        let r0 = c * CHUNK;
        (
            r0,
            (r0 + CHUNK).min(n) - r0,
            &xt[r0 * d..(r0 + CHUNK) * d],
            &xnorms[r0..r0 + CHUNK],
        )
    };

    // min D^2 to the centres chosen before the last step.
    let mut closest = vec![f64::INFINITY; n];
    // One pass per step: candidate 0 is the last step's winner (`fold`),
    // folded into `closest` first; then per chunk the potentials
    // `sum w * min(D^2, closest)` of the others (rows in order, as
    // plusplus_on). The winner's per-chunk potential is the chunk's total
    // mass after its fold (the same sum plusplus_on's commit makes).
    let eval = |cands: &[usize], fold: bool, closest: &mut [f64]| -> Result<Vec<Vec<f64>>> {
        let cs = Cands::<T>::new(x, shift, cands);
        let t = cands.len();
        let s = usize::from(fold);
        closest
            .par_chunks_mut(CHUNK)
            .enumerate()
            .map_init(
                || vec![0.0f64; t * CHUNK],
                |dc, (c, cl)| {
                    cancel.check()?;
                    let (r0, rows, xc, xn) = chunk_of(c);
                    if !sqdist_cols(true, xc, rows, xn, &cs, dc) {
                        return Err(CoreError::Internal("k-means++ kernel shapes".into()));
                    }
                    if fold {
                        for (cv, &dd) in cl.iter_mut().zip(&dc[..rows]) {
                            *cv = dd.min(*cv);
                        }
                    }
                    // Four candidates at a time: four independent chains in registers.
                    let mut pots = vec![0.0; t - s];
                    for (j0, pg) in (s..t).step_by(4).zip(pots.chunks_mut(4)) {
                        let mut acc = [0.0f64; 4];
                        let col = |jj: usize| {
                            let j = (j0 + jj).min(t - 1);
                            &dc[j * CHUNK..j * CHUNK + rows]
                        };
                        let (c0, c1, c2, c3) = (col(0), col(1), col(2), col(3));
                        let rows4 = cl.iter().zip(c0).zip(c1).zip(c2).zip(c3);
                        match weights {
                            Some(w) => {
                                for (((((&cv, &a), &b), &c), &e), &w) in
                                    rows4.zip(&w[r0..r0 + rows])
                                {
                                    acc[0] += w * a.min(cv);
                                    acc[1] += w * b.min(cv);
                                    acc[2] += w * c.min(cv);
                                    acc[3] += w * e.min(cv);
                                }
                            }
                            // Unit weights: `1.0 * m == m`, the same sums without the products.
                            None => {
                                for ((((&cv, &a), &b), &c), &e) in rows4 {
                                    acc[0] += a.min(cv);
                                    acc[1] += b.min(cv);
                                    acc[2] += c.min(cv);
                                    acc[3] += e.min(cv);
                                }
                            }
                        }
                        pg.copy_from_slice(&acc[..pg.len()]);
                    }
                    Ok(pots)
                },
            )
            .collect::<Result<Vec<_>>>()
    };
    let pick = |parts: &[Vec<f64>], t: usize| -> (usize, Vec<f64>) {
        let mut pots = vec![0.0; t];
        for p in parts {
            for (a, b) in pots.iter_mut().zip(p) {
                *a += b;
            }
        }
        let mut best = 0;
        for (i, &p) in pots.iter().enumerate() {
            if p < pots[best] {
                best = i;
            }
        }
        (best, parts.iter().map(|p| p[best]).collect())
    };

    let parts = eval(&[first], false, &mut closest)?;
    let (_, mut chunk_mass) = pick(&parts, 1);
    let mut current_pot: f64 = chunk_mass.iter().sum();
    let mut winner = first;
    let one = |row: usize| Cands::<T>::new(x, shift, &[row]);
    for _ in 1..k {
        cancel.check()?;
        // Row masses after the pending fold of `winner` (plusplus_on's
        // `mass`), scored again for the few chunks the draws walk into.
        let pending = one(winner);
        let mut cache: Option<(usize, Vec<f64>)> = None;
        let mut cands = Vec::with_capacity(n_trials + 1);
        cands.push(winner);
        for _ in 0..n_trials {
            let target = rng.uniform() * current_pot;
            let mut acc = 0.0;
            let mut pick_row = n.saturating_sub(1);
            'walk: for (c, &tot) in chunk_mass.iter().enumerate() {
                if acc + tot >= target {
                    let (r0, rows, xc, xn) = chunk_of(c);
                    if cache.as_ref().map(|(cc, _)| *cc) != Some(c) {
                        let mut dd = vec![0.0; CHUNK];
                        if !sqdist_cols(true, xc, rows, xn, &pending, &mut dd) {
                            return Err(CoreError::Internal("k-means++ kernel shapes".into()));
                        }
                        for (v, &cv) in dd.iter_mut().zip(&closest[r0..r0 + rows]) {
                            *v = v.min(cv);
                        }
                        cache = Some((c, dd));
                    }
                    let dd = cache.as_ref().map(|(_, v)| v.as_slice()).unwrap_or(&[]);
                    for (i, &v) in dd.iter().enumerate().take(rows) {
                        acc += w_at(r0 + i) * v;
                        if acc >= target {
                            pick_row = r0 + i;
                            break 'walk;
                        }
                    }
                    // Rounding between the chunk total and the row sums: keep walking.
                    continue;
                }
                acc += tot;
            }
            cands.push(pick_row);
        }
        let parts = eval(&cands, true, &mut closest)?;
        let (best, cm) = pick(&parts, n_trials);
        winner = cands[best + 1];
        chunk_mass = cm;
        current_pot = chunk_mass.iter().sum();
        chosen.push(winner);
    }
    Ok(chosen)
}

/// Distance of each row to its closest centre among `cands` (rows of X),
/// folded into `closest` (`min`). The kernel picks the centre; the squared
/// distance to it is then computed exactly in f64.
fn fold_closest<T: Float>(
    x: &impl Rows<T>,
    shift: &[f64],
    cands: &[usize],
    closest: &mut [f64],
    cancel: &Cancel,
) -> Result<()> {
    let d = shift.len();
    let cvals: Vec<f64> = cands
        .iter()
        .flat_map(|&i| {
            row_vec(x, i)
                .iter()
                .zip(shift)
                .map(|(&v, &s)| T::from_f64(v.to_f64() - s).to_f64())
                .collect::<Vec<f64>>()
        })
        .collect();
    let panels = Panels::<T>::new(&cvals, cands.len(), d);
    let simd = simd_available();
    closest
        .par_chunks_mut(CHUNK)
        .enumerate()
        .try_for_each(|(c, cl)| {
            cancel.check()?;
            let r0 = c * CHUNK;
            let mut buf = Vec::new();
            pack_rows(x, r0, r0 + cl.len(), shift, &mut buf);
            let mut lab = vec![0i32; cl.len()];
            argmin_packed(simd, &buf, &panels, &mut lab, &mut Vec::new());
            for ((o, &l), xr) in cl.iter_mut().zip(&lab).zip(buf.chunks_exact(d)) {
                let cen = &cvals[l as usize * d..(l as usize + 1) * d];
                let dd: f64 = xr
                    .iter()
                    .zip(cen)
                    .map(|(&a, &b)| {
                        let t = a.to_f64() - b;
                        t * t
                    })
                    .sum();
                *o = o.min(dd);
            }
            Ok(())
        })
}

/// Candidates of scalable k-means++ ("k-means||", Bahmani et al., 2012):
/// a first row drawn with p ~ w, then `rounds` rounds in which every row is
/// drawn independently with probability `min(1, l * w * D^2 / psi)` (D = its
/// distance to the candidates so far, psi = sum w D^2). Returns the
/// candidate rows and their weights (total weight of the rows closest to
/// each); the caller reduces them to k centres with weighted k-means++.
///
/// Each chunk of [`CHUNK`] rows draws from its own (seed, stream, round,
/// chunk) stream and the potentials are summed in chunk order, so the result
/// does not depend on the thread count. At least `k` candidates are
/// returned (the first rows not drawn fill up when too few were).
#[allow(clippy::too_many_arguments)]
pub fn kmeans_parallel<T: Float>(
    x: &impl Rows<T>,
    weights: Option<&[f64]>,
    k: usize,
    rounds: usize,
    oversampling: f64,
    shift: &[f64],
    seed: u64,
    stream: u64,
    cancel: &Cancel,
) -> Result<(Vec<usize>, Vec<f64>)> {
    let (n, _) = check_dims(x, shift, weights)?;
    if k == 0 || k > n {
        return Err(CoreError::invalid(format!(
            "n_samples={n} should be >= n_clusters={k}."
        )));
    }
    if !(oversampling > 0.0 && oversampling.is_finite()) {
        return Err(CoreError::invalid("oversampling factor must be > 0"));
    }
    let w_at = |i: usize| weights.map_or(1.0, |w| w[i]);
    let mut rng = SplitMix64::new(seed, stream);
    let first = {
        let total: f64 = (0..n).map(w_at).sum();
        let target = rng.uniform() * total;
        let mut acc = 0.0;
        let mut pick = n - 1;
        for i in 0..n {
            acc += w_at(i);
            if acc > target {
                pick = i;
                break;
            }
        }
        pick
    };
    let mut chosen = vec![first];
    let mut is_chosen = vec![false; n];
    is_chosen[first] = true;
    let mut closest = vec![f64::INFINITY; n];
    let mut fresh = vec![first];
    for round in 0..rounds {
        cancel.check()?;
        fold_closest(x, shift, &fresh, &mut closest, cancel)?;
        let parts: Vec<f64> = closest
            .par_chunks(CHUNK)
            .enumerate()
            .map(|(c, o)| {
                o.iter()
                    .enumerate()
                    .map(|(i, &v)| w_at(c * CHUNK + i) * v)
                    .sum::<f64>()
            })
            .collect();
        let psi: f64 = parts.iter().sum();
        if psi.is_nan() || psi <= 0.0 {
            break; // every row sits on a candidate
        }
        let picks: Vec<Vec<usize>> = closest
            .par_chunks(CHUNK)
            .enumerate()
            .map(|(c, o)| {
                let sub = ((round as u64 + 1) << 40) ^ c as u64;
                let mut r = SplitMix64::new(
                    seed ^ 0x6B6D_6561_6E73_7C7C,
                    stream.wrapping_mul(0x1000_0000_01B3) ^ sub,
                );
                o.iter()
                    .enumerate()
                    .filter_map(|(i, &v)| {
                        let row = c * CHUNK + i;
                        (r.uniform() * psi < oversampling * w_at(row) * v).then_some(row)
                    })
                    .collect()
            })
            .collect();
        fresh = picks
            .into_iter()
            .flatten()
            .filter(|&i| !is_chosen[i])
            .collect();
        for &i in &fresh {
            is_chosen[i] = true;
        }
        chosen.extend_from_slice(&fresh);
        if fresh.is_empty() {
            break;
        }
    }
    for i in 0..n {
        if chosen.len() >= k {
            break;
        }
        if !is_chosen[i] {
            is_chosen[i] = true;
            chosen.push(i);
        }
    }
    // Weight of each candidate: the rows closest to it.
    let cvals: Vec<f64> = chosen
        .iter()
        .flat_map(|&i| {
            row_vec(x, i)
                .iter()
                .zip(shift)
                .map(|(&v, &s)| T::from_f64(v.to_f64() - s).to_f64())
                .collect::<Vec<f64>>()
        })
        .collect();
    let mut labels = vec![0i32; n];
    let stats = lloyd_pass(
        x,
        weights,
        shift,
        &cvals,
        chosen.len(),
        &mut labels,
        true,
        cancel,
    )?;
    Ok((chosen, stats.weights))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::run_in_pool;
    use ndarray::Array2;

    fn blobs(n: usize, d: usize, seed: u64) -> Array2<f64> {
        let mut r = SplitMix64::new(seed, 0);
        Array2::from_shape_fn((n, d), |(i, _)| {
            (i % 3) as f64 * 10.0 + r.uniform() + 1000.0
        })
    }

    fn brute_labels(x: &Array2<f64>, c: &[f64], k: usize) -> Vec<i32> {
        let d = x.ncols();
        x.rows()
            .into_iter()
            .map(|r| {
                let mut best = (f64::INFINITY, 0);
                for j in 0..k {
                    let s: f64 = r
                        .iter()
                        .zip(&c[j * d..(j + 1) * d])
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum();
                    if s < best.0 {
                        best = (s, j as i32);
                    }
                }
                best.1
            })
            .collect()
    }

    #[test]
    fn assign_matches_brute_force_for_every_kernel_shape() {
        let cancel = Cancel::new();
        for &(n, d, k) in &[
            (1, 1, 1),
            (7, 3, 5),
            (300, 17, 9),
            (513, 2, 20),
            (261, 40, 11),
        ] {
            let x = blobs(n, d, 3);
            let c: Vec<f64> = x
                .rows()
                .into_iter()
                .take(k)
                .flat_map(|r| r.to_vec())
                .collect();
            let shift = vec![1000.0; d];
            let (labels, inertia) = assign(&x.view(), None, &c, k, &shift, true, &cancel).unwrap();
            assert_eq!(labels, brute_labels(&x, &c, k));
            let want = inertia_oracle(&x, &c, &labels);
            assert!((inertia - want).abs() <= 1e-12 * want.max(1.0));
        }
    }

    /// The float32 kernels (16-row lanes, centres 4 at a time, padding)
    /// against brute force, on small integer data where every float32
    /// distance is exact, so ties are exact too and must go to the lowest
    /// index. Row and centre counts straddle the lane and step widths.
    #[test]
    fn f32_assign_matches_brute_force_with_exact_ties() {
        let cancel = Cancel::new();
        let mut state = 7u64;
        let mut small = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 9) as f64 - 4.0
        };
        for &(n, d, k) in &[
            (1, 1, 1),
            (15, 3, 5),
            (17, 4, 3),
            (33, 7, 9),
            (250, 16, 13),
            (513, 5, 66),
        ] {
            let x = Array2::from_shape_fn((n, d), |_| small());
            let c: Vec<f64> = (0..k * d).map(|_| small()).collect();
            let x32 = x.mapv(|v| v as f32);
            let c32: Vec<f32> = c.iter().map(|&v| v as f32).collect();
            for shift in [vec![0.0; d], vec![3.0; d]] {
                let (labels, _) =
                    assign(&x32.view(), None, &c32, k, &shift, false, &cancel).unwrap();
                assert_eq!(labels, brute_labels(&x, &c, k), "n={n} d={d} k={k}");
            }
        }
    }

    fn inertia_oracle(x: &Array2<f64>, c: &[f64], labels: &[i32]) -> f64 {
        let d = x.ncols();
        x.rows()
            .into_iter()
            .zip(labels)
            .map(|(r, &l)| {
                r.iter()
                    .zip(&c[l as usize * d..])
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
            })
            .sum()
    }

    #[test]
    fn column_means_are_column_stats_means() {
        let x = blobs(1000, 5, 4);
        let (m, v) = column_stats(&x.view(), &Cancel::new()).unwrap();
        assert_eq!(column_means(&x.view(), &Cancel::new()).unwrap(), m);
        assert_eq!(v.len(), 5);
    }

    #[test]
    fn simd_transpose_equals_the_scalar_one() {
        if !simd_available() {
            return;
        }
        let mut r = SplitMix64::new(5, 0);
        let mut out = vec![7.0f32; 3]; // reused dirty buffer, as in lloyd_pass
        for &(rows, d) in &[
            (1usize, 1usize),
            (4, 3),
            (16, 8),
            (20, 16),
            (256, 64),
            (255, 17),
            (33, 9),
        ] {
            let padded = rows.div_ceil(MR) * MR;
            let xs: Vec<f32> = (0..padded * d)
                .map(|i| {
                    if i < rows * d {
                        r.uniform() as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut want = Vec::new();
            transpose_rows(&xs, rows, d, RB, &mut want);
            // SAFETY: AVX2 was detected above.
            out.resize(rows.div_ceil(RB) * d * RB, 0.0);
            unsafe { transpose_rows_avx2(&xs, rows, d, &mut out) };
            assert_eq!(out, want, "rows={rows} d={d}");
            let xs64: Vec<f64> = xs.iter().map(|&v| v as f64).collect();
            let mut want64 = Vec::new();
            transpose_rows(&xs64, rows, d, RB64, &mut want64);
            let mut out64 = vec![7.0f64; rows.div_ceil(RB64) * d * RB64];
            // SAFETY: AVX2 was detected above.
            unsafe { transpose_rows_f64_avx2(&xs64, rows, d, &mut out64) };
            assert_eq!(out64, want64, "f64 rows={rows} d={d}");
        }
    }

    #[test]
    fn ties_go_to_the_lowest_index_across_lanes_and_panels() {
        // Centres 2 and 9 (and 18) coincide and are nearest: lane merge must pick 2.
        let d = 3;
        let k = 20;
        let mut c = vec![50.0; k * d];
        for &j in &[9usize, 2, 18] {
            c[j * d..(j + 1) * d].copy_from_slice(&[1.0, 1.0, 1.0]);
        }
        let x = Array2::from_shape_vec((5, d), vec![1.0; 15]).unwrap();
        let (labels, _) = assign(&x.view(), None, &c, k, &[0.0; 3], false, &Cancel::new()).unwrap();
        assert_eq!(labels, vec![2; 5]);
        let xf = x.mapv(|v| v as f32);
        let cf: Vec<f32> = c.iter().map(|&v| v as f32).collect();
        let (labels, _) =
            assign(&xf.view(), None, &cf, k, &[0.0; 3], false, &Cancel::new()).unwrap();
        assert_eq!(labels, vec![2; 5]);
    }

    #[test]
    fn lloyd_is_identical_for_any_thread_count() {
        let x = blobs(3000, 5, 1);
        let init: Vec<f64> = x
            .rows()
            .into_iter()
            .take(4)
            .flat_map(|r| r.to_vec())
            .collect();
        let shift = vec![1005.0; 5];
        let go = |t| {
            run_in_pool(t, || {
                lloyd(&x.view(), None, &init, 4, &shift, 50, 0.0, &Cancel::new()).unwrap()
            })
            .unwrap()
        };
        let (a, b) = (go(1), go(2));
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.centers, b.centers);
        assert_eq!(a.inertia.to_bits(), b.inertia.to_bits());
    }

    /// Rows on the bisector of two centres, nudged by a relative 1e-9 .. 1e-5
    /// either way: the f64 winner flips with the nudge, which f32 cannot see.
    fn near_ties(n: usize, c: &[f64], k: usize, d: usize, seed: u64) -> Array2<f64> {
        let mut r = SplitMix64::new(seed, 3);
        let mut x = Array2::zeros((n, d));
        for mut row in x.rows_mut() {
            let a = (r.uniform() * k as f64) as usize % k;
            let b = (a + 1 + (r.uniform() * (k - 1) as f64) as usize) % k;
            let t = 0.5 + (r.uniform() - 0.5) * 10f64.powf(-9.0 + 4.0 * r.uniform());
            for (p, v) in row.iter_mut().enumerate() {
                *v = c[a * d + p] + t * (c[b * d + p] - c[a * d + p]);
            }
        }
        x
    }

    fn check_screened(x: &Array2<f64>, c: &[f64], k: usize, weights: Option<&[f64]>) -> usize {
        let (n, d) = x.dim();
        let cancel = Cancel::new();
        let xs = x.as_standard_layout();
        let zeros = vec![0.0; d];
        assert!(ScreenPanels::new(c, k, d).is_some() && screen_pays(true, k));
        // The f64 kernels alone.
        let p64 = Panels::<f64>::new(c, k, d);
        let mut want = vec![0i32; n];
        let (a, _) = pass_chunks(
            &xs.view(),
            weights,
            &zeros,
            k,
            &mut want,
            true,
            &cancel,
            |_, rows, cl, xt: &mut Vec<f64>| {
                argmin_packed(true, rows, &p64, cl, xt);
                Ok(0.0)
            },
        )
        .unwrap();
        let mut got = vec![0i32; n];
        let b = lloyd_pass(&xs.view(), weights, &zeros, c, k, &mut got, true, &cancel).unwrap();
        assert_eq!(got, want, "n={n} d={d} k={k}");
        assert_eq!(a, b, "sums n={n} d={d} k={k}");
        // Rows the f32 winner alone would get wrong: what the margin guards.
        let p32 = Panels::<f32>::new(c, k, d);
        let (mut l32, mut xt) = (vec![0i32; n], Vec::new());
        let x32: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
        for (ch, lc) in l32.chunks_mut(CHUNK).enumerate() {
            let mut buf = x32[ch * CHUNK * d..(ch * CHUNK + lc.len()) * d].to_vec();
            buf.resize(lc.len().div_ceil(MR) * MR * d, 0.0);
            argmin_packed(true, &buf, &p32, lc, &mut xt);
        }
        l32.iter().zip(&want).filter(|(a, b)| a != b).count()
    }

    #[test]
    fn avx512_kernel_equals_the_avx2_kernel() {
        if !(simd_available() && std::is_x86_feature_detected!("avx512f")) {
            eprintln!("no AVX-512 here: only the AVX2 kernel runs");
            return;
        }
        let mut r = SplitMix64::new(11, 0);
        for &rows in &[1usize, 15, 16, 17, 63, 64, 65, 200, 256] {
            for &d in &[1usize, 3, 16, 64] {
                for &k in &[1usize, 3, 4, 5, 33] {
                    // Small integers: many exact ties, which must resolve alike.
                    let x: Vec<f32> = (0..rows * d)
                        .map(|_| (r.uniform() * 5.0).floor() as f32)
                        .collect();
                    let c: Vec<f64> = (0..k * d).map(|_| (r.uniform() * 5.0).floor()).collect();
                    let panels = Panels::<f32>::new(&c, k, d);
                    let mut xt = vec![0f32; rows.div_ceil(RB) * d * RB];
                    let run = |no512: bool, xt: &mut Vec<f32>| {
                        NO_AVX512.with(|f| f.set(no512));
                        let (mut l, mut t) = (vec![-1i32; rows], vec![[0f32; 2]; rows]);
                        // SAFETY: AVX2 and FMA were detected above.
                        let ok = unsafe {
                            transpose_rows_avx2(&x, rows, d, xt);
                            argmin_cols_f32_top::<true>(xt, &panels, &mut l, &mut t)
                        };
                        NO_AVX512.with(|f| f.set(false));
                        assert!(ok);
                        (
                            l,
                            t.iter()
                                .map(|v| [v[0].to_bits(), v[1].to_bits()])
                                .collect::<Vec<_>>(),
                        )
                    };
                    let (a, b) = (run(false, &mut xt), run(true, &mut xt));
                    assert_eq!(a, b, "rows={rows} d={d} k={k}");
                    let want = brute_labels(
                        &Array2::from_shape_vec((rows, d), x.iter().map(|&v| v as f64).collect())
                            .unwrap(),
                        &c,
                        k,
                    );
                    assert_eq!(a.0, want, "rows={rows} d={d} k={k}");
                }
            }
        }
    }

    #[test]
    fn screened_pass_equals_the_f64_pass() {
        if !simd_available() {
            return; // the screen runs on AVX2 only; elsewhere lloyd_pass is used
        }
        for &(n, d, k, seed) in &[(3000, 16, 40, 1), (1500, 64, 33, 2), (900, 5, 70, 3)] {
            // Centred (as the shifted copy is) and far from the origin (f32
            // alone is then wrong on most rows).
            for offset in [-20.0, 1000.0] {
                let x = many_blobs(n, d, k, seed, offset);
                let c: Vec<f64> = x
                    .rows()
                    .into_iter()
                    .step_by(7)
                    .take(k)
                    .flat_map(|r| r.to_vec())
                    .collect();
                check_screened(&x, &c, k, None);
                let w: Vec<f64> = (0..n).map(|i| 0.5 + (i % 3) as f64).collect();
                check_screened(&x, &c, k, Some(&w));
            }
            let x = many_blobs(n, d, k, seed, -20.0);
            let c: Vec<f64> = x
                .rows()
                .into_iter()
                .step_by(7)
                .take(k)
                .flat_map(|r| r.to_vec())
                .collect();
            // Duplicate centres (exact ties: the lowest index wins) and near ties.
            let mut cd = c.clone();
            cd.copy_within(0..d, 5 * d);
            let xt = near_ties(n, &cd, k, d, seed);
            let wrong_in_f32 = check_screened(&xt, &cd, k, None);
            assert!(
                wrong_in_f32 > 0,
                "the near ties do not test the margin (d={d})"
            );
            // Tiny and huge scales.
            for scale in [1e-20, 1e12] {
                let xs = xt.mapv(|v| v * scale);
                let cs: Vec<f64> = cd.iter().map(|v| v * scale).collect();
                check_screened(&xs, &cs, k, None);
            }
        }
    }

    /// `m` blobs with random centres in [0, 40)^d plus uniform noise, offset.
    fn many_blobs(n: usize, d: usize, m: usize, seed: u64, offset: f64) -> Array2<f64> {
        let mut r = SplitMix64::new(seed, 1);
        let cen: Vec<f64> = (0..m * d).map(|_| r.uniform() * 40.0).collect();
        Array2::from_shape_fn((n, d), |(i, f)| {
            cen[(i % m) * d + f] + 6.0 * r.uniform() + offset
        })
    }

    fn check_hamerly_equals_lloyd<T: Float + std::fmt::Debug>(
        x: &Array2<T>,
        k: usize,
        iters: usize,
    ) {
        let d = x.ncols();
        let init: Vec<T> = (0..k)
            .flat_map(|j| x.row((j * 7919) % x.nrows()).to_vec())
            .collect();
        let (shift, _) = column_stats(&x.view(), &Cancel::new()).unwrap();
        for t in [1, 2] {
            let (a, b) = run_in_pool(t, || {
                let c = Cancel::new();
                (
                    lloyd(&x.view(), None, &init, k, &shift, iters, 0.0, &c).unwrap(),
                    hamerly(&x.view(), None, &init, k, &shift, iters, 0.0, &c).unwrap(),
                )
            })
            .unwrap();
            assert_eq!(a.labels, b.labels, "k={k} d={d}");
            assert_eq!(a.centers, b.centers);
            assert_eq!(a.inertia.to_bits(), b.inertia.to_bits());
            assert_eq!((a.n_iter, a.strict), (b.n_iter, b.strict));
        }
    }

    #[test]
    fn hamerly_is_bit_identical_to_lloyd() {
        for &(n, d, m, k, off) in &[
            (4000, 7, 12, 25, 0.0),
            (3000, 2, 5, 9, 1e4),
            (2000, 33, 8, 8, -50.0),
            (500, 3, 4, 1, 0.0),
            (1200, 16, 40, 40, 0.0),
        ] {
            let x = many_blobs(n, d, m, 5, off);
            check_hamerly_equals_lloyd(&x, k, 60);
            check_hamerly_equals_lloyd(&x.mapv(|v| v as f32), k, 60);
        }
        // Integer grid: exact ties everywhere; centres repeat, clusters empty.
        let x = Array2::from_shape_fn((900, 2), |(i, f)| {
            if f == 0 {
                (i % 30) as f64
            } else {
                (i / 30 % 3) as f64
            }
        });
        check_hamerly_equals_lloyd(&x, 12, 30);
        check_hamerly_equals_lloyd(&x.mapv(|v| v as f32), 12, 30);
    }

    #[test]
    fn kmeans_parallel_is_deterministic_and_covers_the_blobs() {
        let x = many_blobs(5000, 4, 10, 3, 0.0);
        let (shift, _) = column_stats(&x.view(), &Cancel::new()).unwrap();
        let go = |t| {
            run_in_pool(t, || {
                kmeans_parallel(&x.view(), None, 10, 5, 20.0, &shift, 9, 0, &Cancel::new()).unwrap()
            })
            .unwrap()
        };
        let (a, b) = (go(1), go(2));
        assert_eq!(a.0, b.0);
        assert_eq!(
            a.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let (idx, w) = a;
        assert!(
            idx.len() >= 10 && idx.len() < 400,
            "{} candidates",
            idx.len()
        );
        assert_eq!(w.iter().sum::<f64>(), 5000.0);
        let blobs_hit: std::collections::HashSet<usize> = idx.iter().map(|i| i % 10).collect();
        assert_eq!(blobs_hit.len(), 10);
        // Too few distinct rows: filled up to k.
        let same = Array2::<f64>::zeros((20, 2));
        let (idx, _) = kmeans_parallel(
            &same.view(),
            None,
            5,
            5,
            10.0,
            &[0.0, 0.0],
            1,
            0,
            &Cancel::new(),
        )
        .unwrap();
        assert_eq!(idx.len(), 5);
    }

    #[test]
    fn csr_rows_give_the_dense_results() {
        let mut x = many_blobs(1500, 9, 6, 2, 0.0);
        x.mapv_inplace(|v| if v < 20.0 { 0.0 } else { v });
        let (mut data, mut indices, mut indptr) = (Vec::new(), Vec::new(), vec![0i64]);
        for r in x.rows() {
            for (j, &v) in r.iter().enumerate() {
                if v != 0.0 {
                    data.push(v);
                    indices.push(j as i64);
                }
            }
            indptr.push(data.len() as i64);
        }
        let csr = Csr::new(&data, &indices, &indptr, 9).unwrap();
        let c = Cancel::new();
        let (shift, var) = column_stats(&x.view(), &c).unwrap();
        assert_eq!(column_stats(&csr, &c).unwrap(), (shift.clone(), var));
        let init: Vec<f64> = (0..6).flat_map(|j| x.row(j * 97).to_vec()).collect();
        let a = hamerly(&x.view(), None, &init, 6, &shift, 40, 0.0, &c).unwrap();
        let b = hamerly(&csr, None, &init, 6, &shift, 40, 0.0, &c).unwrap();
        assert_eq!((a.labels, a.centers.clone()), (b.labels, b.centers));
        assert_eq!(
            transform(&x.view(), &a.centers, 6, &c).unwrap(),
            transform(&csr, &a.centers, 6, &c).unwrap()
        );
        // Malformed CSR: errors, not panics.
        assert!(Csr::new(&data, &indices, &indptr[1..], 9).is_err());
        assert!(Csr::new(&data, &indices, &indptr, 3).is_err());
        assert!(Csr::new(&data[1..], &indices[1..], &indptr, 9).is_err());
        assert!(Csr::<f64>::new(&[], &[], &[0, 1], 2).is_err());
        assert!(Csr::<f64>::new(&[1.0], &[-1], &[0, 1], 2).is_err());
    }

    #[test]
    fn empty_cluster_is_relocated_to_farthest_point() {
        // Two far centres on one side: the second gets no points at first.
        let x = Array2::from_shape_vec((4, 1), vec![0.0, 1.0, 2.0, 10.0]).unwrap();
        let init = vec![0.0, 100.0];
        let r = lloyd(&x.view(), None, &init, 2, &[0.0], 1, 0.0, &Cancel::new()).unwrap();
        // Point 10 moved to cluster 1; cluster 0 keeps the mean of 0, 1, 2.
        assert_eq!(r.centers, vec![1.0, 10.0]);
    }

    /// The rows-in-lanes k-means++ path against the panel kernel's
    /// (`plusplus_on`, the portable-layout path): the same picks, and per
    /// chunk the same distance bits.
    fn check_plusplus_cols<T: Float + std::fmt::Debug>() {
        if !simd_available() {
            return;
        }
        for &(n, d, k, trials, weighted) in &[
            (1037usize, 3usize, 20usize, 4usize, false),
            (600, 16, 40, 7, true),
            (50, 1, 9, 3, false),
            (777, 17, 12, 5, true),
            (300, 64, 8, 4, false),
            (513, 5, 30, 12, true),
        ] {
            let xf = many_blobs(n, d, 13, 5, 200.0);
            let x = xf.mapv(T::from_f64);
            let w: Vec<f64> = (0..n).map(|i| 0.5 + (i % 7) as f64).collect();
            let w = weighted.then_some(w.as_slice());
            let (shift, _) = column_stats(&x.view(), &Cancel::new()).unwrap();
            let c = Cancel::new();
            let trials = trials.min(T::NR);
            let new = kmeans_plusplus(&x.view(), w, k, trials, &shift, 11, 2, &c).unwrap();
            let mut rng = SplitMix64::new(11, 2);
            let old = plusplus_on(&x.view(), w, k, trials, &shift, &mut rng, true, &c).unwrap();
            assert_eq!(new, old, "n={n} d={d} k={k}");

            // Distances of the first chunk to `trials` rows, bit for bit.
            let rows = n.min(CHUNK);
            let cands: Vec<usize> = (0..trials).map(|j| (j * 31) % n).collect();
            let mut buf = Vec::new();
            pack_rows(&x.view(), 0, rows, &shift, &mut buf);
            let mut xn: Vec<f64> = buf
                .chunks_exact(d)
                .take(rows)
                .map(|r| r.iter().map(|&a| a.to_f64() * a.to_f64()).sum())
                .collect();
            xn.resize(CHUNK, 0.0);
            let mut xt = vec![T::ZERO; CHUNK * d];
            // SAFETY: AVX2 and FMA were detected above.
            unsafe { T::transpose_avx2(&buf, rows, d, &mut xt) };
            let cs = Cands::<T>::new(&x.view(), &shift, &cands);
            let mut got = vec![0.0; trials * CHUNK];
            assert!(sqdist_cols(true, &xt, rows, &xn, &cs, &mut got));
            let cvals: Vec<f64> = cands
                .iter()
                .flat_map(|&i| {
                    let r = row_vec(&x.view(), i);
                    let sh = &shift;
                    (0..d).map(move |f| T::from_f64(r[f].to_f64() - sh[f]).to_f64())
                })
                .collect();
            let panels = Panels::<T>::new(&cvals, trials, d);
            let want: Vec<Vec<f64>> = if T::NR == 8 {
                let mut o = vec![[0.0f64; 8]; rows];
                sqdist_dispatch::<T, 8>(true, &buf, &xn, &panels, &mut o);
                o.iter().map(|r| r.to_vec()).collect()
            } else {
                let mut o = vec![[0.0f64; 16]; rows];
                sqdist_dispatch::<T, 16>(true, &buf, &xn, &panels, &mut o);
                o.iter().map(|r| r.to_vec()).collect()
            };
            for i in 0..rows {
                for j in 0..trials {
                    assert_eq!(
                        got[j * CHUNK + i].to_bits(),
                        want[i][j].to_bits(),
                        "row {i} cand {j} n={n} d={d}"
                    );
                }
            }
        }
    }

    #[test]
    fn plusplus_cols_equals_the_panel_path() {
        check_plusplus_cols::<f64>();
        check_plusplus_cols::<f32>();
    }

    #[test]
    fn plusplus_picks_distinct_rows_and_is_deterministic() {
        let x = blobs(2000, 3, 9);
        let s = vec![1005.0; 3];
        let a = run_in_pool(1, || {
            kmeans_plusplus(&x.view(), None, 3, 3, &s, 42, 0, &Cancel::new()).unwrap()
        })
        .unwrap();
        let b = run_in_pool(2, || {
            kmeans_plusplus(&x.view(), None, 3, 3, &s, 42, 0, &Cancel::new()).unwrap()
        })
        .unwrap();
        assert_eq!(a, b);
        let groups: std::collections::HashSet<usize> = a.iter().map(|i| i % 3).collect();
        assert_eq!(
            groups.len(),
            3,
            "k-means++ should pick one row per blob: {a:?}"
        );
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = blobs(5, 2, 0);
        let c = Cancel::new();
        assert!(assign(&x.view(), None, &[0.0; 3], 2, &[0.0; 2], false, &c).is_err());
        assert!(kmeans_plusplus(&x.view(), None, 6, 2, &[0.0; 2], 0, 0, &c).is_err());
        assert!(lloyd(
            &x.view(),
            Some(&[1.0; 4]),
            &[0.0; 4],
            2,
            &[0.0; 2],
            3,
            0.0,
            &c
        )
        .is_err());
    }
}
