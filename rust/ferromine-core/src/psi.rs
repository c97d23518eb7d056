//! Population Stability Index: the counting kernels.
//!
//! PSI itself is a sum over a handful of bins; the cost is in finding the bin
//! edges (quantiles of the reference) and counting values per bin, once per
//! feature, on millions of rows. Both are here. Turning counts into shares and
//! PSI (epsilon for empty bins, the presets of other libraries) is cheap and
//! lives with the caller, which also owns the fitted state.

use rayon::prelude::*;

use crate::columns::{Columns, Value, Visitor};
use crate::error::{CoreError, Result};
use crate::parallel::Cancel;

/// Which side of a bin is closed. `Right`: (a, b], as `pandas.cut`;
/// `Left`: [a, b), as `numpy.histogram`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    Right,
    Left,
}

/// Counts of one feature over `cuts.len() + 1` bins: (-inf, c0], (c0, c1], ...,
/// (c_last, +inf) for `Closed::Right`. NaN is counted apart, never binned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    pub counts: Vec<u64>,
    pub missing: u64,
}

/// Quantiles of the non-missing values of one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantiles {
    /// One value per requested probability; empty when `n_valid == 0`.
    pub values: Vec<f64>,
    /// Per quantile, how many values are `<=` it: the reference counts of
    /// right-closed bins cut at the quantiles, without another pass.
    pub n_le: Vec<u64>,
    pub n_valid: u64,
    pub n_missing: u64,
}

/// Smallest and largest finite value of one feature (infinities are extreme
/// values, not part of the range).
#[derive(Debug, Clone, PartialEq)]
pub struct Extent {
    pub min: f64,
    pub max: f64,
    pub n_finite: u64,
    pub n_valid: u64,
    pub n_missing: u64,
}

/// `numpy.quantile(..., method="linear")`'s interpolation, operation for
/// operation, except that equal neighbours or a zero weight return the lower
/// value exactly (numpy yields NaN there when a neighbour is infinite).
#[inline]
pub fn lerp(a: f64, b: f64, t: f64) -> f64 {
    if a == b || t == 0.0 {
        return a;
    }
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// The ranks (0-based, into the sorted values) that quantile `p` of `n` values
/// interpolates between, and the weight of the upper one.
fn ranks_for(n: usize, p: f64) -> (usize, usize, f64) {
    let last = n - 1;
    let virt = last as f64 * p;
    if virt >= last as f64 {
        return (last, last, 0.0);
    }
    if virt <= 0.0 {
        return (0, 0, 0.0);
    }
    let prev = virt.floor() as usize;
    (prev, prev + 1, virt - prev as f64)
}

/// Put the values of the sorted order at `ranks` (sorted, distinct, each
/// relative to `values`) into `out[rank]` positions, by recursive selection.
fn multi_select(values: &mut [f64], ranks: &[usize], base: usize, out: &mut Vec<(usize, f64)>) {
    if ranks.is_empty() || values.is_empty() {
        return;
    }
    let mid = ranks.len() / 2;
    let r = ranks[mid] - base;
    let (left, nth, right) = values.select_nth_unstable_by(r, |a, b| a.total_cmp(b));
    out.push((ranks[mid], *nth));
    multi_select(left, &ranks[..mid], base, out);
    multi_select(right, &ranks[mid + 1..], base + r + 1, out);
}

fn count_le(values: &[f64], v: f64) -> u64 {
    values.iter().map(|&x| (x <= v) as u64).sum()
}

/// Quantiles of `values` (no NaN) with, per quantile, how many values are
/// `<=` it. Reorders `values`.
fn quantiles_with_counts(values: &mut [f64], probs: &[f64]) -> Quantiles {
    let q = quantiles_of(values, probs);
    let n_le = q.iter().map(|&v| count_le(values, v)).collect();
    Quantiles {
        values: q,
        n_le,
        n_valid: values.len() as u64,
        n_missing: 0,
    }
}

/// Linear-interpolated quantiles of `values` (no NaN), as `numpy.quantile`.
/// Reorders `values`. Selection, not a sort: O(n log(#probabilities)).
pub fn quantiles_of(values: &mut [f64], probs: &[f64]) -> Vec<f64> {
    let n = values.len();
    if n == 0 {
        return Vec::new();
    }
    let plan: Vec<(usize, usize, f64)> = probs.iter().map(|&p| ranks_for(n, p)).collect();
    let mut ranks: Vec<usize> = plan.iter().flat_map(|&(a, b, _)| [a, b]).collect();
    ranks.sort_unstable();
    ranks.dedup();
    let mut found = Vec::with_capacity(ranks.len());
    multi_select(values, &ranks, 0, &mut found);
    found.sort_unstable_by_key(|&(r, _)| r);
    let at = |rank: usize| -> f64 {
        // Every rank in `plan` was selected above.
        match found.binary_search_by_key(&rank, |&(r, _)| r) {
            Ok(i) => found[i].1,
            Err(_) => f64::NAN,
        }
    };
    plan.iter()
        .map(|&(a, b, t)| if a == b { at(a) } else { lerp(at(a), at(b), t) })
        .collect()
}

struct Gather {
    values: Vec<f64>,
    missing: u64,
    /// False for the other features of a block when only one is wanted.
    keep: bool,
}

impl Gather {
    fn new(capacity: usize, keep: bool) -> Self {
        Gather {
            values: Vec::with_capacity(if keep { capacity } else { 0 }),
            missing: 0,
            keep,
        }
    }
}

impl Visitor for Gather {
    fn push_slice(&mut self, xs: &[f64]) {
        if self.keep {
            for &x in xs {
                self.push(x);
            }
        }
    }

    #[inline(always)]
    fn push(&mut self, x: f64) {
        if x.is_nan() {
            self.missing += 1;
        } else {
            self.values.push(x);
        }
    }
    fn merge(&mut self, mut other: Self) {
        self.values.append(&mut other.values);
        self.missing += other.missing;
    }
}

fn check_probabilities(probs: &[f64]) -> Result<()> {
    match probs.iter().find(|p| !(0.0..=1.0).contains(*p)) {
        Some(p) => Err(CoreError::invalid(format!(
            "quantile probabilities must lie in [0, 1], got {p}"
        ))),
        None => Ok(()),
    }
}

/// Below this many rows a feature is simply gathered and selected.
const SMALL: usize = 1 << 16;
/// Sample size used to bracket each quantile, read as runs of consecutive rows.
const SAMPLE: usize = 1 << 14;
const SAMPLE_RUN: usize = 16;
/// Bracket half-width in standard deviations of the sample rank; a miss
/// (rare) costs a fallback to plain selection, never a wrong answer.
const BRACKET_SIGMAS: f64 = 3.5;

/// Values whose bin or region indices are computed in one go.
const LANES: usize = 256;

/// `out[i]` = how many `le` bounds are `<= xs[i]` plus how many `lt` bounds
/// are `< xs[i]`: the index of the bin or region of `xs[i]` when the bounds
/// are sorted. NaN compares false everywhere and gets 0.
///
/// The portable version; x86-64 with AVX2 (checked at run time, so the wheel
/// runs on any x86-64) takes [`count_bounds_below_avx2`]. Counters wrap on
/// purpose: they cannot overflow, and checked adds (the CI profile) would
/// keep the loop from vectorising.
fn count_bounds_below_impl(xs: &[f64], le: &[f64], lt: &[f64], out: &mut [u64]) {
    for (&x, o) in xs.iter().zip(out) {
        let mut acc = 0u64;
        for &b in le {
            acc = acc.wrapping_add((b <= x) as u64);
        }
        for &b in lt {
            acc = acc.wrapping_add((b < x) as u64);
        }
        *o = acc;
    }
}

/// [`count_bounds_below_impl`] with explicit AVX2: sixteen values a step in
/// four vectors, one broadcast bound at a time, comparison masks (all ones =
/// -1) subtracted from the counters. Written with intrinsics because the
/// compiler vectorised the plain loop across bounds instead of values.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn count_bounds_below_avx2(xs: &[f64], le: &[f64], lt: &[f64], out: &mut [u64]) {
    use std::arch::x86_64::*;
    let n = xs.len().min(out.len());
    let (src, dst) = (xs.as_ptr(), out.as_mut_ptr() as *mut __m256i);
    let mut i = 0;
    while i + 16 <= n {
        let v = [
            _mm256_loadu_pd(src.add(i)),
            _mm256_loadu_pd(src.add(i + 4)),
            _mm256_loadu_pd(src.add(i + 8)),
            _mm256_loadu_pd(src.add(i + 12)),
        ];
        let mut acc = [_mm256_setzero_si256(); 4];
        for b in le {
            let b = _mm256_broadcast_sd(b);
            for k in 0..4 {
                let m = _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_GE_OQ>(v[k], b));
                acc[k] = _mm256_sub_epi64(acc[k], m);
            }
        }
        for b in lt {
            let b = _mm256_broadcast_sd(b);
            for k in 0..4 {
                let m = _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_GT_OQ>(v[k], b));
                acc[k] = _mm256_sub_epi64(acc[k], m);
            }
        }
        for (k, a) in acc.iter().enumerate() {
            _mm256_storeu_si256(dst.add(i / 4 + k), *a);
        }
        i += 16;
    }
    count_bounds_below_impl(&xs[i..n], le, lt, &mut out[i..n]);
}

fn count_bounds_below(xs: &[f64], le: &[f64], lt: &[f64], out: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 support was just checked at run time.
        unsafe { count_bounds_below_avx2(xs, le, lt, out) };
        return;
    }
    count_bounds_below_impl(xs, le, lt, out)
}

/// Adds to `cum[b]` how many values are `<= bounds[b]` (`< bounds[b]` when
/// `strict`), and returns how many values are not NaN. With sorted bounds
/// these are cumulative bin counts: a histogram with no per-value index and
/// no scatter, just a comparison and a subtraction per value and bound.
fn cumulative_counts(xs: &[f64], bounds: &[f64], strict: bool, cum: &mut [u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        let mut valid = 0;
        for (g, (b, c)) in bounds.chunks(8).zip(cum.chunks_mut(8)).enumerate() {
            // SAFETY: AVX2 support was just checked at run time.
            let v = unsafe {
                match (b.len(), strict) {
                    (1, false) => cumulative_avx2::<1, false>(xs, b, c),
                    (2, false) => cumulative_avx2::<2, false>(xs, b, c),
                    (3, false) => cumulative_avx2::<3, false>(xs, b, c),
                    (4, false) => cumulative_avx2::<4, false>(xs, b, c),
                    (5, false) => cumulative_avx2::<5, false>(xs, b, c),
                    (6, false) => cumulative_avx2::<6, false>(xs, b, c),
                    (7, false) => cumulative_avx2::<7, false>(xs, b, c),
                    (_, false) => cumulative_avx2::<8, false>(xs, b, c),
                    (1, true) => cumulative_avx2::<1, true>(xs, b, c),
                    (2, true) => cumulative_avx2::<2, true>(xs, b, c),
                    (3, true) => cumulative_avx2::<3, true>(xs, b, c),
                    (4, true) => cumulative_avx2::<4, true>(xs, b, c),
                    (5, true) => cumulative_avx2::<5, true>(xs, b, c),
                    (6, true) => cumulative_avx2::<6, true>(xs, b, c),
                    (7, true) => cumulative_avx2::<7, true>(xs, b, c),
                    (_, true) => cumulative_avx2::<8, true>(xs, b, c),
                }
            };
            if g == 0 {
                valid = v;
            }
        }
        if bounds.is_empty() {
            return xs.len() as u64 - count_nan(xs);
        }
        return valid;
    }
    cumulative_counts_impl(xs, bounds, strict, cum)
}

fn cumulative_counts_impl(xs: &[f64], bounds: &[f64], strict: bool, cum: &mut [u64]) -> u64 {
    for &x in xs {
        for (c, &b) in cum.iter_mut().zip(bounds) {
            let hit = if strict { x < b } else { x <= b };
            *c = c.wrapping_add(hit as u64);
        }
    }
    xs.len() as u64 - count_nan(xs)
}

/// [`cumulative_counts`] for a group of `G <= 8` bounds: the bounds and the
/// `G` counters stay in registers for the whole slice.
///
/// # Safety
/// The CPU must support AVX2; `bounds` and `cum` have `G` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn cumulative_avx2<const G: usize, const STRICT: bool>(
    xs: &[f64],
    bounds: &[f64],
    cum: &mut [u64],
) -> u64 {
    use std::arch::x86_64::*;
    let b: [__m256d; G] = std::array::from_fn(|g| _mm256_set1_pd(bounds[g]));
    let mut acc = [_mm256_setzero_si256(); G];
    let mut ord = _mm256_setzero_si256();
    let n4 = xs.len() / 4 * 4;
    let src = xs.as_ptr();
    let mut i = 0;
    while i < n4 {
        let v = _mm256_loadu_pd(src.add(i));
        for g in 0..G {
            let m = if STRICT {
                _mm256_cmp_pd::<_CMP_LT_OQ>(v, b[g])
            } else {
                _mm256_cmp_pd::<_CMP_LE_OQ>(v, b[g])
            };
            acc[g] = _mm256_sub_epi64(acc[g], _mm256_castpd_si256(m));
        }
        ord = _mm256_sub_epi64(ord, _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_ORD_Q>(v, v)));
        i += 4;
    }
    let sum = |a: __m256i| -> u64 {
        let mut lanes = [0u64; 4];
        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, a);
        lanes.iter().fold(0u64, |s, &l| s.wrapping_add(l))
    };
    for g in 0..G {
        cum[g] = cum[g].wrapping_add(sum(acc[g]));
    }
    sum(ord) + cumulative_counts_impl(&xs[n4..], &bounds[..G], STRICT, &mut cum[..G])
}

#[inline(always)]
fn count_nan(xs: &[f64]) -> u64 {
    xs.iter()
        .fold(0u64, |n, x| n.wrapping_add(x.is_nan() as u64))
}

/// Counts over `m` bins kept as four interleaved copies, so that runs of one
/// bin do not wait on each other's stores; summed when read.
#[derive(Clone)]
struct Tally {
    m: usize,
    four: Vec<u64>,
    /// Taken off bin 0 when read (NaN lands there while indexing).
    minus0: u64,
}

impl Tally {
    fn new(m: usize) -> Self {
        Tally {
            m,
            four: vec![0; 4 * m],
            minus0: 0,
        }
    }
    #[inline(always)]
    fn add(&mut self, indices: &[u64]) {
        let m = self.m;
        for (i, &k) in indices.iter().enumerate() {
            if let Some(slot) = self.four.get_mut((i & 3) * m + k as usize) {
                *slot += 1;
            }
        }
    }
    /// Remove `n` values from bin 0 (they were NaN, not values of that bin).
    fn sub0(&mut self, n: u64) {
        self.minus0 += n;
    }
    fn merge(&mut self, o: &Tally) {
        for (a, b) in self.four.iter_mut().zip(&o.four) {
            *a += b;
        }
        self.minus0 += o.minus0;
    }
    fn counts(&self) -> Vec<u64> {
        let m = self.m;
        let mut out: Vec<u64> = (0..m)
            .map(|k| self.four[k] + self.four[m + k] + self.four[2 * m + k] + self.four[3 * m + k])
            .collect();
        if let Some(first) = out.first_mut() {
            *first = first.saturating_sub(self.minus0);
        }
        out
    }
}

/// Most intervals a feature's brackets may have (their regions fit in a byte).
const MAX_BRACKETS: usize = 120;

/// The one pass over a feature: how many values fall in each region, and a
/// copy of the values inside the brackets (odd regions), each bracket into
/// its own buffer sized from the sample (reserved, not zeroed: untouched
/// room costs nothing). A buffer that fills up marks the feature for the
/// exact fallback.
struct Collect<'b> {
    lo: &'b [f64],
    hi: &'b [f64],
    tally: Tally,
    missing: u64,
    /// Per bracket, its values; never grown past the reserved capacity.
    buckets: Vec<Vec<f64>>,
    overflow: bool,
    /// Scratch for one run of `LANES` values, kept here because a
    /// row-major walk calls `push_slice` with short slices (zeroing it per
    /// call showed up in profiles).
    scratch: Box<Scratch>,
}

struct Scratch {
    idx: [u64; LANES],
    // Slack: the vector version writes whole vectors past the last kept.
    kept_x: [f64; LANES + 4],
    kept_r: [u64; LANES + 4],
}

impl Visitor for Collect<'_> {
    fn push(&mut self, x: f64) {
        self.push_slice(&[x]);
    }
    fn push_slice(&mut self, xs: &[f64]) {
        let Scratch {
            idx,
            kept_x,
            kept_r,
        } = &mut *self.scratch;
        for block in xs.chunks(LANES) {
            let idx = &mut idx[..block.len()];
            count_bounds_below(block, self.lo, self.hi, idx);
            self.tally.add(idx);
            let (n, nan) = keep_bracketed(block, idx, kept_x, kept_r);
            self.tally.sub0(nan);
            self.missing += nan;
            // Scatter only the kept values to their brackets.
            for (&r, &x) in kept_r[..n].iter().zip(&kept_x[..n]) {
                let b = (r >> 1) as usize;
                let bucket = &mut self.buckets[b];
                if bucket.len() < bucket.capacity() {
                    bucket.push(x);
                } else {
                    self.overflow = true;
                }
            }
        }
    }
    fn merge(&mut self, _: Self) {}
}

/// Copy the values of `xs` whose region `idx` is odd (inside a bracket), and
/// their regions, to the front of `kept_x` / `kept_r` (which hold at least
/// `xs.len() + 4` elements); returns how many, and how many values are NaN.
fn keep_bracketed(xs: &[f64], idx: &[u64], kept_x: &mut [f64], kept_r: &mut [u64]) -> (usize, u64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && kept_x.len() >= xs.len() + 4
        && kept_r.len() >= xs.len() + 4
    {
        // SAFETY: AVX2 support and the buffer sizes were just checked.
        return unsafe { keep_bracketed_avx2(xs, idx, kept_x, kept_r) };
    }
    keep_bracketed_impl(xs, idx, kept_x, kept_r)
}

fn keep_bracketed_impl(
    xs: &[f64],
    idx: &[u64],
    kept_x: &mut [f64],
    kept_r: &mut [u64],
) -> (usize, u64) {
    // A branch-free cursor: every value is written, only kept ones advance.
    let mut n = 0;
    for (&r, &x) in idx.iter().zip(xs) {
        if let (Some(kx), Some(kr)) = (kept_x.get_mut(n), kept_r.get_mut(n)) {
            *kx = x;
            *kr = r;
        }
        n += (r & 1) as usize;
    }
    (n, count_nan(xs))
}

/// Per 4-bit lane mask, the 32-bit lane indices that move the selected
/// 64-bit lanes to the front (a left-pack).
#[cfg(target_arch = "x86_64")]
const PACK: [[i32; 8]; 16] = {
    let mut t = [[0i32; 8]; 16];
    let mut m = 0;
    while m < 16 {
        let mut k = 0;
        let mut lane: i32 = 0;
        while lane < 4 {
            if m & (1 << lane) != 0 {
                t[m][2 * k] = 2 * lane;
                t[m][2 * k + 1] = 2 * lane + 1;
                k += 1;
            }
            lane += 1;
        }
        m += 1;
    }
    t
};

/// [`keep_bracketed_impl`] four values at a time: the odd-region mask picks
/// a permutation that packs the kept lanes to the front of a whole-vector
/// store; the cursor advances by the mask's population count.
///
/// # Safety
/// The CPU must support AVX2; `kept_x` and `kept_r` hold `xs.len() + 4`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn keep_bracketed_avx2(
    xs: &[f64],
    idx: &[u64],
    kept_x: &mut [f64],
    kept_r: &mut [u64],
) -> (usize, u64) {
    use std::arch::x86_64::*;
    let len = xs.len().min(idx.len());
    let n4 = len / 4 * 4;
    let (px, pr) = (kept_x.as_mut_ptr(), kept_r.as_mut_ptr());
    let mut n = 0usize;
    let mut nan = _mm256_setzero_si256();
    let mut i = 0;
    while i < n4 {
        let x = _mm256_loadu_pd(xs.as_ptr().add(i));
        let r = _mm256_loadu_si256(idx.as_ptr().add(i) as *const __m256i);
        nan = _mm256_sub_epi64(
            nan,
            _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_UNORD_Q>(x, x)),
        );
        let mask = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_slli_epi64::<63>(r))) as usize;
        let perm = _mm256_loadu_si256(PACK[mask & 15].as_ptr() as *const __m256i);
        let x = _mm256_castps_pd(_mm256_permutevar8x32_ps(_mm256_castpd_ps(x), perm));
        let r = _mm256_permutevar8x32_epi32(r, perm);
        _mm256_storeu_pd(px.add(n), x);
        _mm256_storeu_si256(pr.add(n) as *mut __m256i, r);
        n += (mask & 15).count_ones() as usize;
        i += 4;
    }
    let mut lanes = [0u64; 4];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, nan);
    let (m, tail_nan) = keep_bracketed_impl(
        &xs[n4..len],
        &idx[n4..len],
        &mut kept_x[n..],
        &mut kept_r[n..],
    );
    let nan = lanes.iter().fold(tail_nan, |s, &l| s.wrapping_add(l));
    (n + m, nan)
}

/// How to read one quantile: the (bracket, rank within it) of its two
/// neighbours in sorted order and the interpolation weight.
type Step = ((usize, usize), (usize, usize), f64);

/// Quantiles of one feature of a block: exact, by selection inside brackets.
///
/// 1. A fixed sample of the feature places a bracket around each wanted rank.
/// 2. One pass counts the values below, inside and between the brackets, so
///    each wanted rank's exact position is known, and copies out the values
///    inside the brackets (about a quarter of them);
/// 3. selection among those few values gives the answer.
///
/// When a wanted rank falls outside every bracket (an unlucky sample) the
/// feature falls back to gathering all its values: slower, equally exact.
fn quantiles_bracketed<T: Value>(
    block: &crate::columns::Block<'_, '_, T>,
    probs: &[f64],
    cancel: &Cancel,
) -> Result<Vec<Quantiles>> {
    let n = block.n_rows();
    let gather = |j: usize| -> Result<Quantiles> {
        let mut g = block.visit(|i| Gather::new(n, i == j), cancel)?;
        let g = g
            .get_mut(j - block.cols.start)
            .ok_or_else(|| CoreError::Internal("feature out of block".into()))?;
        Ok(Quantiles {
            n_missing: g.missing,
            ..quantiles_with_counts(&mut g.values, probs)
        })
    };
    if n <= SMALL || probs.is_empty() || probs.len() > MAX_BRACKETS {
        let states = block.visit(|_| Gather::new(n, true), cancel)?;
        return Ok(states
            .into_iter()
            .map(|mut g| Quantiles {
                n_missing: g.missing,
                ..quantiles_with_counts(&mut g.values, probs)
            })
            .collect());
    }

    // 1. Brackets from a fixed, evenly spaced sample.
    // Short runs of consecutive rows, evenly spread: cache-friendly reads (a
    // run is one or two cache lines per feature), and every feature of the
    // block sampled in the same sweep, so a row-major block reads each
    // sampled row once instead of once per feature.
    let mut samples: Vec<Vec<f64>> = block
        .cols
        .clone()
        .map(|_| Vec::with_capacity(SAMPLE))
        .collect();
    for k in 0..SAMPLE / SAMPLE_RUN {
        let first = (k * n) / (SAMPLE / SAMPLE_RUN);
        for i in first..(first + SAMPLE_RUN).min(n) {
            for (sample, j) in samples.iter_mut().zip(block.cols.clone()) {
                let x = block.value(i, j);
                if !x.is_nan() {
                    sample.push(x);
                }
            }
        }
    }
    let brackets: Vec<(Vec<f64>, Vec<f64>, Vec<usize>)> = samples
        .into_iter()
        .map(|mut sample| {
            let (lo, hi) = sample_brackets(&mut sample, probs);
            // Expected values per bracket: its share of the sample, scaled.
            // Values in [l, h] = (<= h) - (< l), both counted in one sweep.
            let mut below = vec![0u64; lo.len()];
            let mut upto = vec![0u64; hi.len()];
            cumulative_counts(&sample, &lo, true, &mut below);
            cumulative_counts(&sample, &hi, false, &mut upto);
            let expect = below
                .iter()
                .zip(&upto)
                .map(|(&b, &u)| {
                    let inside = u.saturating_sub(b);
                    (inside as f64 / sample.len().max(1) as f64 * n as f64).ceil() as usize
                })
                .collect::<Vec<usize>>();
            (lo, hi, expect)
        })
        .collect();

    // 2. One pass: exact counts per region, and the bracketed values.
    let collected = block.visit(
        |j| {
            let (lo, hi, expect) = &brackets[j - block.cols.start];
            // Room for the sample's estimate with a wide margin; running out
            // only costs the fallback.
            let buckets = expect
                .iter()
                .map(|&e| Vec::with_capacity(e + e / 4 + 1024))
                .collect();
            Collect {
                lo,
                hi,
                tally: Tally::new(2 * lo.len() + 1),
                missing: 0,
                buckets,
                overflow: false,
                scratch: Box::new(Scratch {
                    idx: [0; LANES],
                    kept_x: [0.0; LANES + 4],
                    kept_r: [0; LANES + 4],
                }),
            }
        },
        cancel,
    )?;

    // 3. Locate each wanted rank and select it inside its bracket.
    let mut out = Vec::with_capacity(collected.len());
    for (k, mut c) in collected.into_iter().enumerate() {
        let counts = c.tally.counts();
        let n_valid = n as u64 - c.missing;
        if n_valid == 0 {
            out.push(Quantiles {
                values: Vec::new(),
                n_le: Vec::new(),
                n_valid: 0,
                n_missing: c.missing,
            });
            continue;
        }
        // The pass must have kept exactly what it counted in each bracket.
        for (b, bucket) in c.buckets.iter().enumerate() {
            if !c.overflow && bucket.len() as u64 != counts[2 * b + 1] {
                return Err(CoreError::invalid(
                    "the input changed while it was being read; do not modify arrays during a call",
                ));
            }
        }
        let mut starts = Vec::with_capacity(counts.len());
        let mut acc = 0u64;
        for &count in &counts {
            starts.push(acc);
            acc += count;
        }
        // (bracket, rank within it) of a rank of the sorted valid values.
        let locate = |rank: usize| -> Option<(usize, usize)> {
            let rank = rank as u64;
            let region = starts.partition_point(|&s| s <= rank).checked_sub(1)?;
            (region % 2 == 1 && rank < starts[region] + counts[region])
                .then(|| (region / 2, (rank - starts[region]) as usize))
        };
        let plan: Option<Vec<Step>> = if c.overflow {
            None
        } else {
            probs
                .iter()
                .map(|&p| {
                    let (a, b, t) = ranks_for(n_valid as usize, p);
                    Some((locate(a)?, locate(b)?, t))
                })
                .collect()
        };
        let Some(plan) = plan else {
            out.push(gather(block.cols.start + k)?);
            continue;
        };
        let buckets = &mut c.buckets;
        let mut value_at =
            |(bracket, rank): (usize, usize), next_of: Option<(usize, usize)>| -> f64 {
                let part = &mut buckets[bracket][..];
                if next_of == Some((bracket, rank.wrapping_sub(1))) {
                    // The rank after one just selected in this bracket: the
                    // selection left everything after it no smaller, so this is
                    // their minimum (a scan instead of a second selection).
                    return part[rank..]
                        .iter()
                        .copied()
                        .min_by(|x, y| x.total_cmp(y))
                        .unwrap_or(f64::NAN);
                }
                *part.select_nth_unstable_by(rank, |a, b| a.total_cmp(b)).1
            };
        let values: Vec<f64> = plan
            .iter()
            .map(|&(a, b, t)| {
                let va = value_at(a, None);
                if a == b {
                    va
                } else {
                    lerp(va, value_at(b, Some(a)), t)
                }
            })
            .collect();
        // Values <= a quantile: everything before its bracket, plus those in
        // the bracket that are <= it (both its neighbours share the bracket,
        // and everything after the bracket is larger).
        let n_le = plan
            .iter()
            .zip(&values)
            .map(|(&((bracket, _), _, _), &v)| {
                starts[2 * bracket + 1] + count_le(&c.buckets[bracket], v)
            })
            .collect();
        out.push(Quantiles {
            values,
            n_le,
            n_valid,
            n_missing: c.missing,
        });
    }
    Ok(out)
}

/// Disjoint, sorted closed intervals that very likely hold each wanted
/// quantile, from a sample of the feature (NaN removed).
fn sample_brackets(sample: &mut [f64], probs: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let s = sample.len();
    if s == 0 {
        return (vec![f64::NEG_INFINITY], vec![f64::INFINITY]);
    }
    // Sample ranks bounding each quantile, with a margin of a few standard
    // deviations of the sample rank (binomial: sqrt(s p (1 - p))).
    let mut bounds: Vec<(i64, i64)> = probs
        .iter()
        .map(|&p| {
            let pos = p * (s - 1) as f64;
            let margin = (BRACKET_SIGMAS * (s as f64 * p * (1.0 - p)).sqrt()).ceil() as i64 + 4;
            (pos.floor() as i64 - margin, pos.ceil() as i64 + margin)
        })
        .collect();
    bounds.sort_unstable();
    let last = s as i64 - 1;
    let mut ranks: Vec<usize> = bounds
        .iter()
        .flat_map(|&(a, b)| [a, b])
        .filter(|&r| (0..=last).contains(&r))
        .map(|r| r as usize)
        .collect();
    ranks.sort_unstable();
    ranks.dedup();
    let mut found = Vec::with_capacity(ranks.len());
    multi_select(sample, &ranks, 0, &mut found);
    found.sort_unstable_by_key(|&(r, _)| r);
    let at = |r: i64| -> f64 {
        if r < 0 {
            f64::NEG_INFINITY
        } else if r > last {
            f64::INFINITY
        } else {
            found
                .binary_search_by_key(&(r as usize), |&(k, _)| k)
                .map_or(f64::NAN, |i| found[i].1)
        }
    };
    let mut lo: Vec<f64> = Vec::new();
    let mut hi: Vec<f64> = Vec::new();
    for &(a, b) in &bounds {
        let (l, h) = (at(a), at(b));
        match hi.last_mut() {
            // Overlapping or touching intervals merge, keeping them disjoint.
            Some(prev) if l <= *prev => *prev = prev.max(h),
            _ => {
                lo.push(l);
                hi.push(h);
            }
        }
    }
    (lo, hi)
}

/// Quantiles of every feature, NaN ignored; exact, equal to
/// `numpy.quantile(x[~isnan(x)], probs)` (see [`lerp`] for the one deviation).
/// Whole features per task, a few at a time, so memory stays bounded.
pub fn quantiles<T: Value>(
    data: &Columns<'_, T>,
    probs: &[f64],
    cancel: &Cancel,
) -> Result<Vec<Quantiles>> {
    check_probabilities(probs)?;
    data.map_blocks(|block| quantiles_bracketed(block, probs, cancel))
}

struct MinMax {
    min: f64,
    max: f64,
    n_finite: u64,
    n_valid: u64,
    n_missing: u64,
}

impl Visitor for MinMax {
    #[inline(always)]
    fn push(&mut self, x: f64) {
        if x.is_nan() {
            self.n_missing += 1;
        } else {
            self.n_valid += 1;
            if x.is_finite() {
                self.min = self.min.min(x);
                self.max = self.max.max(x);
                self.n_finite += 1;
            }
        }
    }
    fn merge(&mut self, o: Self) {
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.n_finite += o.n_finite;
        self.n_valid += o.n_valid;
        self.n_missing += o.n_missing;
    }
}

/// Finite minimum, maximum and counts of every feature, NaN ignored. A
/// feature with no finite value has `min = +inf`, `max = -inf`.
pub fn extents<T: Value>(data: &Columns<'_, T>, cancel: &Cancel) -> Result<Vec<Extent>> {
    let states = data.visit(
        |_| MinMax {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            n_finite: 0,
            n_valid: 0,
            n_missing: 0,
        },
        cancel,
    )?;
    Ok(states
        .into_iter()
        .map(|s| Extent {
            min: s.min,
            max: s.max,
            n_finite: s.n_finite,
            n_valid: s.n_valid,
            n_missing: s.n_missing,
        })
        .collect())
}

/// Above this many cut points a binary search beats a branch-free scan.
const LINEAR_SCAN_CUTS: usize = 32;

struct Binner<'c> {
    cuts: &'c [f64],
    closed: Closed,
    /// Bins of values indexed one at a time (many cuts, or single pushes).
    tally: Tally,
    /// Values `<=` (`<` when left-closed) each cut, and the non-NaN values,
    /// of the slices counted by [`cumulative_counts`].
    cum: Vec<u64>,
    cum_valid: u64,
    missing: u64,
}

impl Binner<'_> {
    /// Index of the bin of `x` (not NaN): how many cuts lie left of it.
    #[inline(always)]
    fn bin(&self, x: f64) -> usize {
        match self.closed {
            Closed::Right => self.cuts.partition_point(|&c| c < x),
            Closed::Left => self.cuts.partition_point(|&c| c <= x),
        }
    }

    fn counts(&self) -> Vec<u64> {
        let mut out = self.tally.counts();
        // Cumulative counts back to per-bin counts.
        let mut below = 0u64;
        for (k, slot) in out.iter_mut().enumerate() {
            let upto = self.cum.get(k).copied().unwrap_or(self.cum_valid);
            *slot += upto - below;
            below = upto;
        }
        out
    }
}

impl Visitor for Binner<'_> {
    fn push_slice(&mut self, xs: &[f64]) {
        if self.cuts.len() > LINEAR_SCAN_CUTS {
            for &x in xs {
                self.push(x);
            }
            return;
        }
        let valid = cumulative_counts(xs, self.cuts, self.closed == Closed::Left, &mut self.cum);
        self.cum_valid += valid;
        self.missing += xs.len() as u64 - valid;
    }

    #[inline(always)]
    fn push(&mut self, x: f64) {
        if x.is_nan() {
            self.missing += 1;
        } else {
            self.tally.add(&[self.bin(x) as u64]);
        }
    }
    fn merge(&mut self, o: Self) {
        self.tally.merge(&o.tally);
        for (a, b) in self.cum.iter_mut().zip(&o.cum) {
            *a += b;
        }
        self.cum_valid += o.cum_valid;
        self.missing += o.missing;
    }
}

/// Count every feature's values into the bins that its sorted `cuts` define.
/// Counts are integers, so the result is exact whatever the thread count.
pub fn histograms<T: Value>(
    data: &Columns<'_, T>,
    cuts: &[Vec<f64>],
    closed: Closed,
    cancel: &Cancel,
) -> Result<Vec<Histogram>> {
    if cuts.len() != data.n_features() {
        return Err(CoreError::invalid(format!(
            "got bin edges for {} features but the data has {} features",
            cuts.len(),
            data.n_features()
        )));
    }
    for (j, c) in cuts.iter().enumerate() {
        if c.iter().any(|v| v.is_nan()) || c.windows(2).any(|w| w[0] > w[1]) {
            return Err(CoreError::invalid(format!(
                "bin edges of feature {j} must be sorted and free of NaN"
            )));
        }
    }
    let states = data.visit(
        |j| Binner {
            cuts: &cuts[j],
            closed,
            tally: Tally::new(cuts[j].len() + 1),
            cum: vec![0; cuts[j].len()],
            cum_valid: 0,
            missing: 0,
        },
        cancel,
    )?;
    Ok(states
        .into_par_iter()
        .map(|b| Histogram {
            counts: b.counts(),
            missing: b.missing,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2};

    fn sorted_quantile(v: &[f64], p: f64) -> f64 {
        let mut s = v.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let (a, b, t) = ranks_for(s.len(), p);
        if a == b {
            s[a]
        } else {
            lerp(s[a], s[b], t)
        }
    }

    /// A small deterministic generator for test data.
    fn lcg(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 100.0).floor() / 7.0
            })
            .collect()
    }

    fn deciles() -> Vec<f64> {
        (0..=10).map(|i| i as f64 / 10.0).collect()
    }

    /// Quantiles the slow way: sort everything.
    fn sorted_quantiles(v: &[f64], probs: &[f64]) -> Vec<f64> {
        let valid: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        probs.iter().map(|&p| sorted_quantile(&valid, p)).collect()
    }

    fn column_quantiles(v: Vec<f64>, probs: &[f64]) -> Quantiles {
        let x = Array1::from(v);
        let data = Columns::chunked(vec![vec![x.view()]]).unwrap();
        quantiles(&data, probs, &Cancel::new()).unwrap().remove(0)
    }

    #[test]
    fn bracketed_selection_is_exact() {
        // Large enough for the sampled brackets, with ties, NaN and infinities.
        let n = 300_001;
        let mut v = lcg(11, n);
        for (i, x) in v.iter_mut().enumerate() {
            if i % 97 == 0 {
                *x = f64::NAN;
            }
            if i % 1013 == 0 {
                *x = f64::INFINITY;
            }
        }
        let probs: Vec<f64> = (0..=20).map(|i| i as f64 / 20.0).collect();
        let q = column_quantiles(v.clone(), &probs);
        assert_eq!(q.values, sorted_quantiles(&v, &probs));
        let want_le: Vec<u64> = q
            .values
            .iter()
            .map(|&c| v.iter().filter(|&&x| x <= c).count() as u64)
            .collect();
        assert_eq!(q.n_le, want_le);
        assert_eq!(
            q.n_missing as usize,
            v.iter().filter(|x| x.is_nan()).count()
        );
    }

    #[test]
    fn adversarial_order_falls_back_exactly() {
        // Sorted data whose evenly spaced sample sees only one value of a long
        // run: brackets can miss, the fallback must still be exact.
        let n = 200_000;
        let v: Vec<f64> = (0..n)
            .map(|i| {
                if i % 16384 < 8 {
                    i as f64
                } else {
                    (i / 50_000) as f64
                }
            })
            .collect();
        let probs = deciles();
        assert_eq!(
            column_quantiles(v.clone(), &probs).values,
            sorted_quantiles(&v, &probs)
        );
        let mostly_zero: Vec<f64> = (0..n)
            .map(|i| if i % 3 == 0 { i as f64 } else { 0.0 })
            .collect();
        assert_eq!(
            column_quantiles(mostly_zero.clone(), &probs).values,
            sorted_quantiles(&mostly_zero, &probs)
        );
    }

    #[test]
    fn selection_equals_sorting() {
        for (seed, n) in [(1, 1), (2, 2), (3, 10), (4, 1001), (5, 5000)] {
            let v = lcg(seed, n);
            let probs = deciles();
            let mut w = v.clone();
            let got = quantiles_of(&mut w, &probs);
            let want: Vec<f64> = probs.iter().map(|&p| sorted_quantile(&v, p)).collect();
            assert_eq!(got, want, "n = {n}");
        }
    }

    #[test]
    fn lerp_never_invents_nan() {
        assert_eq!(lerp(1.0, f64::INFINITY, 0.0), 1.0);
        assert_eq!(lerp(f64::INFINITY, f64::INFINITY, 0.5), f64::INFINITY);
        assert_eq!(lerp(0.0, 10.0, 0.25), 2.5);
        assert_eq!(lerp(0.0, 10.0, 0.75), 7.5);
    }

    #[test]
    fn quantiles_skip_nan_and_count_it() {
        let x = Array2::from_shape_vec((5, 1), vec![3.0, f64::NAN, 1.0, 2.0, f64::NAN]).unwrap();
        let q = quantiles(&Columns::Matrix(x.view()), &[0.0, 0.5, 1.0], &Cancel::new()).unwrap();
        assert_eq!(q[0].values, vec![1.0, 2.0, 3.0]);
        assert_eq!((q[0].n_valid, q[0].n_missing), (3, 2));
        let all_nan = Array2::from_elem((3, 1), f64::NAN);
        let q = quantiles(&Columns::Matrix(all_nan.view()), &[0.5], &Cancel::new()).unwrap();
        assert!(q[0].values.is_empty());
    }

    #[test]
    fn histogram_sides() {
        let x = Array1::from(vec![
            0.0,
            1.0,
            1.5,
            2.0,
            3.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ]);
        let data = Columns::chunked(vec![vec![x.view()]]).unwrap();
        let cuts = vec![vec![1.0, 2.0]];
        let right = histograms(&data, &cuts, Closed::Right, &Cancel::new()).unwrap();
        assert_eq!(right[0].counts, vec![3, 2, 2]); // -inf,0,1 | 1.5,2 | 3,inf
        assert_eq!(right[0].missing, 1);
        let left = histograms(&data, &cuts, Closed::Left, &Cancel::new()).unwrap();
        assert_eq!(left[0].counts, vec![2, 2, 3]); // -inf,0 | 1,1.5 | 2,3,inf
    }

    #[test]
    fn vector_counts_agree_with_brute_force() {
        // Lengths off the vector widths, more cuts than one group of eight,
        // tied cuts, NaN and infinities: both sides of the bins.
        let mut v = lcg(21, 10_007);
        for (i, x) in v.iter_mut().enumerate() {
            match i % 101 {
                0 => *x = f64::NAN,
                1 => *x = f64::INFINITY,
                2 => *x = f64::NEG_INFINITY,
                _ => {}
            }
        }
        let mut cuts: Vec<f64> = (0..13).map(|i| i as f64).collect();
        cuts.insert(5, 4.0);
        for len in [3, 17, 1001, 10_007] {
            let x = Array1::from(v[..len].to_vec());
            let data = Columns::chunked(vec![vec![x.view()]]).unwrap();
            for closed in [Closed::Right, Closed::Left] {
                let h = histograms(&data, &[cuts.clone()], closed, &Cancel::new()).unwrap();
                let mut want = vec![0u64; cuts.len() + 1];
                for &x in v[..len].iter().filter(|x| !x.is_nan()) {
                    let k = match closed {
                        Closed::Right => cuts.iter().filter(|&&c| c < x).count(),
                        Closed::Left => cuts.iter().filter(|&&c| c <= x).count(),
                    };
                    want[k] += 1;
                }
                assert_eq!(h[0].counts, want, "len {len}, {closed:?}");
                let nan = v[..len].iter().filter(|x| x.is_nan()).count() as u64;
                assert_eq!(h[0].missing, nan);
            }
        }
    }

    #[test]
    fn histogram_binary_search_agrees_with_scan() {
        let v = lcg(9, 20_000);
        let x = Array1::from(v.clone());
        let data = Columns::chunked(vec![vec![x.view()], vec![x.view()]]).unwrap();
        let many: Vec<f64> = (0..100).map(|i| i as f64 / 7.0).collect();
        let few: Vec<f64> = many.iter().step_by(5).copied().collect();
        let h = histograms(
            &data,
            &[many.clone(), few.clone()],
            Closed::Right,
            &Cancel::new(),
        )
        .unwrap();
        for (hist, cuts) in h.iter().zip([&many, &few]) {
            let mut want = vec![0u64; cuts.len() + 1];
            for &x in &v {
                want[cuts.iter().filter(|&&c| c < x).count()] += 1;
            }
            assert_eq!(hist.counts, want);
        }
    }

    #[test]
    fn thread_count_does_not_change_results() {
        let v = lcg(3, 600_000);
        let x = Array2::from_shape_vec((200_000, 3), v).unwrap();
        let data = Columns::Matrix(x.view());
        let probs = deciles();
        let one = crate::parallel::run_in_pool(1, || quantiles(&data, &probs, &Cancel::new()))
            .unwrap()
            .unwrap();
        let two = crate::parallel::run_in_pool(2, || quantiles(&data, &probs, &Cancel::new()))
            .unwrap()
            .unwrap();
        assert_eq!(one, two);
        let cuts: Vec<Vec<f64>> = one.iter().map(|q| q.values[1..10].to_vec()).collect();
        let h1 = crate::parallel::run_in_pool(1, || {
            histograms(&data, &cuts, Closed::Right, &Cancel::new())
        })
        .unwrap()
        .unwrap();
        let h2 = crate::parallel::run_in_pool(2, || {
            histograms(&data, &cuts, Closed::Right, &Cancel::new())
        })
        .unwrap()
        .unwrap();
        assert_eq!(h1, h2);
        assert_eq!(h1[0].counts.iter().sum::<u64>(), 200_000);
        let f = x.t().to_owned();
        let fq = quantiles(&Columns::Matrix(f.t()), &probs, &Cancel::new()).unwrap();
        assert_eq!(fq, one);
    }

    #[test]
    fn cancelled_calls_stop() {
        let x = Array2::<f64>::zeros((10, 2));
        let c = Cancel::new();
        c.cancel();
        let err = extents(&Columns::Matrix(x.view()), &c).err();
        assert_eq!(err, Some(CoreError::Cancelled));
    }

    #[test]
    fn extents_ignore_nan() {
        let x = Array2::from_shape_vec((3, 1), vec![f64::NAN, -2.0, 5.0]).unwrap();
        let e = extents(&Columns::Matrix(x.view()), &Cancel::new()).unwrap();
        assert_eq!(
            (e[0].min, e[0].max, e[0].n_valid, e[0].n_missing),
            (-2.0, 5.0, 2, 1)
        );
    }
}
