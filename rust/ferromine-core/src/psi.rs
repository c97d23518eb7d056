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
    pub n_valid: u64,
    pub n_missing: u64,
}

/// Smallest and largest non-missing value of one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Extent {
    pub min: f64,
    pub max: f64,
    pub n_valid: u64,
    pub n_missing: u64,
}

/// The probabilities `pandas.qcut(x, q=n_bins)` asks for: `linspace(0, 1,
/// n_bins + 1)`, each nudged up one ulp where `n_bins * p` is not exactly `i`,
/// so that quantile i lands on rank i of data with `n_bins + 1` values.
pub fn qcut_probabilities(n_bins: usize) -> Vec<f64> {
    let step = 1.0 / n_bins as f64;
    (0..=n_bins)
        .map(|i| {
            let p = if i == n_bins { 1.0 } else { i as f64 * step };
            if n_bins as f64 * p != i as f64 && p > 0.0 && p.is_finite() {
                f64::from_bits(p.to_bits() + 1)
            } else {
                p
            }
        })
        .collect()
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
}

impl Visitor for Gather {
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

/// Quantiles of every feature, NaN ignored. A feature's values are gathered
/// once into a scratch buffer (a few features at a time, so memory stays at a
/// few columns) and the requested ranks are selected.
pub fn quantiles<T: Value>(data: &Columns<'_, T>, probs: &[f64], cancel: &Cancel) -> Result<Vec<Quantiles>> {
    check_probabilities(probs)?;
    let n = data.n_rows();
    data.map_features(
        |_| Gather {
            values: Vec::with_capacity(n),
            missing: 0,
        },
        |_, mut g| {
            cancel.check()?;
            let values = quantiles_of(&mut g.values, probs);
            Ok(Quantiles {
                values,
                n_valid: g.values.len() as u64,
                n_missing: g.missing,
            })
        },
        cancel,
    )
}

struct MinMax {
    min: f64,
    max: f64,
    n_valid: u64,
    n_missing: u64,
}

impl Visitor for MinMax {
    #[inline(always)]
    fn push(&mut self, x: f64) {
        if x.is_nan() {
            self.n_missing += 1;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
            self.n_valid += 1;
        }
    }
    fn merge(&mut self, o: Self) {
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.n_valid += o.n_valid;
        self.n_missing += o.n_missing;
    }
}

/// Minimum, maximum and counts of every feature, NaN ignored. A feature with
/// no valid value has `min = +inf`, `max = -inf`.
pub fn extents<T: Value>(data: &Columns<'_, T>, cancel: &Cancel) -> Result<Vec<Extent>> {
    let states = data.visit(
        |_| MinMax {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
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
    counts: Vec<u64>,
    missing: u64,
}

impl Binner<'_> {
    /// Index of the bin of `x` (not NaN): how many cuts lie left of it.
    #[inline(always)]
    fn bin(&self, x: f64) -> usize {
        let cuts = self.cuts;
        if cuts.len() <= LINEAR_SCAN_CUTS {
            let mut k = 0usize;
            match self.closed {
                Closed::Right => {
                    for &c in cuts {
                        k += (c < x) as usize;
                    }
                }
                Closed::Left => {
                    for &c in cuts {
                        k += (c <= x) as usize;
                    }
                }
            }
            k
        } else {
            match self.closed {
                Closed::Right => cuts.partition_point(|&c| c < x),
                Closed::Left => cuts.partition_point(|&c| c <= x),
            }
        }
    }
}

impl Visitor for Binner<'_> {
    #[inline(always)]
    fn push(&mut self, x: f64) {
        if x.is_nan() {
            self.missing += 1;
        } else {
            let k = self.bin(x);
            // k <= cuts.len() < counts.len() by construction.
            if let Some(c) = self.counts.get_mut(k) {
                *c += 1;
            }
        }
    }
    fn merge(&mut self, o: Self) {
        for (a, b) in self.counts.iter_mut().zip(o.counts) {
            *a += b;
        }
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
            counts: vec![0; cuts[j].len() + 1],
            missing: 0,
        },
        cancel,
    )?;
    Ok(states
        .into_par_iter()
        .map(|b| Histogram {
            counts: b.counts,
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
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 100.0).floor() / 7.0
            })
            .collect()
    }

    #[test]
    fn qcut_probabilities_match_pandas() {
        let p = qcut_probabilities(10);
        assert_eq!(p.len(), 11);
        assert_eq!(p[0], 0.0);
        assert_eq!(p[10], 1.0);
        assert_eq!(p[5], 0.5);
        // 10 * 0.30000000000000004 != 3, so pandas rounds it up one ulp.
        assert_eq!(p[3], 0.3000000000000001);
        assert_eq!(p[2], 0.2);
    }

    #[test]
    fn selection_equals_sorting() {
        for (seed, n) in [(1, 1), (2, 2), (3, 10), (4, 1001), (5, 5000)] {
            let v = lcg(seed, n);
            let probs = qcut_probabilities(10);
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
        let x = Array1::from(vec![0.0, 1.0, 1.5, 2.0, 3.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
        let data = Columns::chunked(vec![vec![x.view()]]).unwrap();
        let cuts = vec![vec![1.0, 2.0]];
        let right = histograms(&data, &cuts, Closed::Right, &Cancel::new()).unwrap();
        assert_eq!(right[0].counts, vec![3, 2, 2]); // -inf,0,1 | 1.5,2 | 3,inf
        assert_eq!(right[0].missing, 1);
        let left = histograms(&data, &cuts, Closed::Left, &Cancel::new()).unwrap();
        assert_eq!(left[0].counts, vec![2, 2, 3]); // -inf,0 | 1,1.5 | 2,3,inf
    }

    #[test]
    fn histogram_binary_search_agrees_with_scan() {
        let v = lcg(9, 20_000);
        let x = Array1::from(v.clone());
        let data = Columns::chunked(vec![vec![x.view()], vec![x.view()]]).unwrap();
        let many: Vec<f64> = (0..100).map(|i| i as f64 / 7.0).collect();
        let few: Vec<f64> = many.iter().step_by(5).copied().collect();
        let h = histograms(&data, &[many.clone(), few.clone()], Closed::Right, &Cancel::new()).unwrap();
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
        let v = lcg(3, 300_000);
        let x = Array2::from_shape_vec((100_000, 3), v).unwrap();
        let data = Columns::Matrix(x.view());
        let probs = qcut_probabilities(10);
        let one = crate::parallel::run_in_pool(1, || quantiles(&data, &probs, &Cancel::new())).unwrap().unwrap();
        let two = crate::parallel::run_in_pool(2, || quantiles(&data, &probs, &Cancel::new())).unwrap().unwrap();
        assert_eq!(one, two);
        let cuts: Vec<Vec<f64>> = one.iter().map(|q| q.values[1..10].to_vec()).collect();
        let h1 = crate::parallel::run_in_pool(1, || histograms(&data, &cuts, Closed::Right, &Cancel::new())).unwrap().unwrap();
        let h2 = crate::parallel::run_in_pool(2, || histograms(&data, &cuts, Closed::Right, &Cancel::new())).unwrap().unwrap();
        assert_eq!(h1, h2);
        assert_eq!(h1[0].counts.iter().sum::<u64>(), 100_000);
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
        assert_eq!((e[0].min, e[0].max, e[0].n_valid, e[0].n_missing), (-2.0, 5.0, 2, 1));
    }
}
