//! Isolation forest: growing random isolation trees and scoring rows.
//!
//! Semantics follow scikit-learn's `IsolationForest` (an `ExtraTreeRegressor`
//! with `max_features=1`, `splitter="random"` per tree):
//!
//! * per tree, `max_features` features drawn without replacement and
//!   `max_samples` rows drawn without replacement (with replacement under
//!   `bootstrap`; with probabilities proportional to `sample_weight` when
//!   given). Only the *distinct* drawn rows enter the tree;
//! * a node splits on a feature drawn uniformly among its non-constant
//!   features (constant: no value, or `max - min <= 1e-7` and no NaN), at a
//!   threshold uniform in `[min, max)` (a draw equal to `max` becomes `min`);
//!   `x <= threshold` goes left. NaN rows all go to one side by a fair coin;
//!   a split leaving a side empty makes the node a leaf;
//! * a node is a leaf at the depth limit, with one row, or when every feature
//!   is constant in it;
//! * a leaf's path value is `depth + c(n_rows_in_leaf)`.
//!
//! At scoring, NaN at a node that saw no NaN goes to the child with more
//! training rows (left iff `n_left > n_right`).
//!
//! Trees are returned as flat arrays (scikit-learn's layout: `feature`,
//! `threshold`, `children_left/right`, plus the missing-value direction,
//! the node sizes and the path values). The caller owns them; scoring takes
//! them back, checks them once and packs them into a compact node layout.
//!
//! Determinism: tree `i` is grown from the stream `(seed, i)` only, so the
//! forest does not depend on the thread count. Scores sum the trees in tree
//! order for every row, so they do not depend on it either.

use ndarray::ArrayView2;
use rayon::prelude::*;
use rustc_hash::FxHashSet;

use crate::error::{CoreError, Result};
use crate::parallel::Cancel;

/// scikit-learn's `FEATURE_THRESHOLD`: a feature whose range in a node is at
/// most this is treated as constant there.
pub const FEATURE_THRESHOLD: f64 = 1e-7;
/// scikit-learn's marker for "no feature / no threshold" at a leaf.
pub const TREE_UNDEFINED: i32 = -2;
/// scikit-learn's marker for "no child".
pub const TREE_LEAF: i32 = -1;

const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Average path length of an unsuccessful search in a binary search tree of
/// `n` items: `c(n) = 2 (ln(n - 1) + gamma) - 2 (n - 1) / n`, `c(2) = 1`,
/// `c(n <= 1) = 0`.
pub fn average_path_length(n: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else if n <= 2.0 {
        1.0
    } else {
        2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
    }
}

/// The depth limit scikit-learn uses: `ceil(log2(max(max_samples, 2)))`.
pub fn depth_limit(max_samples: usize) -> usize {
    let m = max_samples.max(2);
    // ceil(log2(m)) for integers, without floating point.
    (usize::BITS - (m - 1).leading_zeros()) as usize
}

// ---------------------------------------------------------------------------
// Random numbers: SplitMix64 to seed, xoshiro256++ to draw.

#[inline]
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++ (Blackman and Vigna), seeded per (seed, stream index).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The generator of stream `index` under `seed`: tree `i` of a forest
    /// uses `Rng::new(seed, i)`, whichever thread grows it.
    pub fn new(seed: u64, index: u64) -> Self {
        let mut mix = index.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut sm = seed ^ splitmix64(&mut mix);
        let mut s = [0u64; 4];
        for v in &mut s {
            *v = splitmix64(&mut sm);
        }
        if s == [0; 4] {
            s[0] = 1;
        }
        Rng { s }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (n >= 1), unbiased (Lemire's method).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let mut m = (self.next_u64() as u128) * (n as u128);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = (self.next_u64() as u128) * (n as u128);
            }
        }
        (m >> 64) as usize
    }

    #[inline]
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }
}

// ---------------------------------------------------------------------------
// Sampling rows and features.

/// `k` distinct indices from `0..n` (k <= n), uniformly, sorted.
pub fn sample_without_replacement(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let k = k.min(n);
    let mut out = if k.saturating_mul(4) >= n {
        // Partial Fisher-Yates: the first k slots are the sample.
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = i + rng.below(n - i);
            all.swap(i, j);
        }
        all.truncate(k);
        all
    } else {
        // Floyd's algorithm: k draws, memory O(k).
        let mut set: FxHashSet<usize> = FxHashSet::default();
        set.reserve(k);
        for j in (n - k)..n {
            let t = rng.below(j + 1);
            if !set.insert(t) {
                set.insert(j);
            }
        }
        set.into_iter().collect()
    };
    out.sort_unstable();
    out
}

/// How a tree draws its rows.
#[derive(Debug, Clone, Copy)]
pub enum RowSampler<'a> {
    /// Uniform over `0..n`.
    Uniform { n: usize },
    /// Proportional to the weights; `cdf` is their running sum (last > 0).
    Weighted { weights: &'a [f64], cdf: &'a [f64] },
}

/// The running sum of `weights`, checked: finite, >= 0, not all zero.
pub fn weights_cdf(weights: &[f64]) -> Result<Vec<f64>> {
    let mut cdf = Vec::with_capacity(weights.len());
    let mut total = 0.0f64;
    for (i, &w) in weights.iter().enumerate() {
        if !w.is_finite() || w < 0.0 {
            return Err(CoreError::invalid(format!(
                "sample_weight[{i}] = {w}: sample weights must be finite and non-negative"
            )));
        }
        total += w;
        cdf.push(total);
    }
    if total <= 0.0 || !total.is_finite() {
        return Err(CoreError::invalid(
            "Sample weights must contain at least one non-zero number (and sum to a finite value).",
        ));
    }
    Ok(cdf)
}

#[inline]
fn draw_weighted(rng: &mut Rng, weights: &[f64], cdf: &[f64]) -> usize {
    let total = cdf[cdf.len() - 1];
    loop {
        let u = rng.uniform() * total;
        // First index whose running sum exceeds u: P(i) = w_i / total.
        let i = cdf.partition_point(|&c| c <= u);
        if i < cdf.len() && weights[i] > 0.0 {
            return i;
        }
        // Only reachable through rounding at the top end; draw again.
    }
}

/// The distinct rows one tree is grown on, sorted.
///
/// Without replacement and with weights this is successive sampling (each
/// draw proportional to the weights of the rows not drawn yet), as
/// `numpy.random.choice(n, k, replace=False, p=w)`: rejection of repeats
/// while it is cheap, then exponential keys over the remaining rows.
pub fn sample_rows(
    rng: &mut Rng,
    sampler: RowSampler<'_>,
    k: usize,
    bootstrap: bool,
) -> Vec<usize> {
    match sampler {
        RowSampler::Uniform { n } => {
            if bootstrap {
                let mut rows: Vec<usize> = (0..k).map(|_| rng.below(n)).collect();
                rows.sort_unstable();
                rows.dedup();
                rows
            } else {
                sample_without_replacement(rng, n, k)
            }
        }
        RowSampler::Weighted { weights, cdf } => {
            let mut rows: Vec<usize> = Vec::with_capacity(k);
            if bootstrap {
                for _ in 0..k {
                    rows.push(draw_weighted(rng, weights, cdf));
                }
                rows.sort_unstable();
                rows.dedup();
                return rows;
            }
            let n_positive = weights.iter().filter(|&&w| w > 0.0).count();
            let k = k.min(n_positive);
            let mut taken: FxHashSet<usize> = FxHashSet::default();
            let mut tries = 0usize;
            let budget = 16 * k + 1024;
            while rows.len() < k && tries < budget {
                tries += 1;
                let i = draw_weighted(rng, weights, cdf);
                if taken.insert(i) {
                    rows.push(i);
                }
            }
            if rows.len() < k {
                // Heavy rows are taken: finish with Efraimidis-Spirakis keys
                // (smallest Exp(1) / w), which continues the same process.
                let mut keyed: Vec<(f64, usize)> = weights
                    .iter()
                    .enumerate()
                    .filter(|&(i, &w)| w > 0.0 && !taken.contains(&i))
                    .map(|(i, &w)| (-(1.0 - rng.uniform()).ln() / w, i))
                    .collect();
                let need = k - rows.len();
                if need < keyed.len() {
                    keyed.select_nth_unstable_by(need, |a, b| a.0.total_cmp(&b.0));
                }
                rows.extend(keyed.iter().take(need).map(|&(_, i)| i));
            }
            rows.sort_unstable();
            rows
        }
    }
}

// ---------------------------------------------------------------------------
// Growing trees.

/// One isolation tree in scikit-learn's flat layout. Children of a node are
/// always adjacent (`right == left + 1`) and come after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tree {
    /// The features this tree could use (sorted), as `estimators_features_`.
    pub features: Vec<i64>,
    /// Split feature (column of X), `TREE_UNDEFINED` at leaves.
    pub feature: Vec<i32>,
    /// Split threshold (`x <= threshold` goes left), -2 at leaves.
    pub threshold: Vec<f64>,
    pub children_left: Vec<i32>,
    pub children_right: Vec<i32>,
    /// 1 when NaN goes to the left child.
    pub missing_go_to_left: Vec<u8>,
    /// Distinct training rows that reached the node.
    pub n_node_samples: Vec<i64>,
    /// `depth + c(n_node_samples)`: the path length of a row ending here.
    pub value: Vec<f64>,
}

/// What the forest is grown with.
#[derive(Debug, Clone, Copy)]
pub struct GrowParams {
    pub seed: u64,
    /// Index of the first tree to grow (warm start continues the streams).
    pub first_tree: usize,
    pub n_trees: usize,
    pub max_samples: usize,
    pub max_features: usize,
    pub bootstrap: bool,
    pub max_depth: usize,
}

/// Numbers a tree can be grown from and scored on.
pub trait Value: Copy + Send + Sync + 'static {
    fn to_f64(self) -> f64;
    /// A slice of these, as the type it is.
    fn native(s: &[Self]) -> Native<'_>;
}
impl Value for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    fn native(s: &[f64]) -> Native<'_> {
        Native::F64(s)
    }
}
impl Value for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn native(s: &[f32]) -> Native<'_> {
        Native::F32(s)
    }
}

/// A row-major dense matrix in its own dtype (scored without converting).
#[derive(Debug, Clone, Copy)]
pub enum Native<'a> {
    F64(&'a [f64]),
    F32(&'a [f32]),
}

/// Index types of a sparse matrix (scipy uses int32 or int64).
pub trait SparseIndex: Copy + Send + Sync + 'static {
    /// The index as `usize`, or `None` when negative.
    fn to_usize(self) -> Option<usize>;
}
impl SparseIndex for i32 {
    #[inline(always)]
    fn to_usize(self) -> Option<usize> {
        usize::try_from(self).ok()
    }
}
impl SparseIndex for i64 {
    #[inline(always)]
    fn to_usize(self) -> Option<usize> {
        usize::try_from(self).ok()
    }
}

/// A matrix trees can be grown from and rows scored from: a dense array or
/// a CSR matrix. Both give the same `f64` values for the same matrix, so a
/// forest and its scores do not depend on the storage.
pub trait Rows: Sync {
    fn n_rows(&self) -> usize;
    fn n_cols(&self) -> usize;
    /// Append rows `r0..r1`, converted to f64, row-major, to `buf`.
    fn dense_rows(&self, r0: usize, r1: usize, buf: &mut Vec<f64>);
    /// The sample `rows` x `features`, converted to f64, column-major
    /// (`features.len()` columns of `rows.len()` values).
    fn gather(&self, rows: &[usize], features: &[usize]) -> Vec<f64>;
    /// All values, row-major, when stored that way.
    fn native(&self) -> Option<Native<'_>> {
        None
    }
}

impl<T: Value> Rows for ArrayView2<'_, T> {
    fn n_rows(&self) -> usize {
        self.nrows()
    }
    fn n_cols(&self) -> usize {
        self.ncols()
    }
    fn dense_rows(&self, r0: usize, r1: usize, buf: &mut Vec<f64>) {
        for r in r0..r1 {
            buf.extend(self.row(r).iter().map(|v| v.to_f64()));
        }
    }
    fn gather(&self, rows: &[usize], features: &[usize]) -> Vec<f64> {
        let mut cols = Vec::with_capacity(rows.len() * features.len());
        for &f in features {
            let col = self.column(f);
            cols.extend(rows.iter().map(|&r| col[r].to_f64()));
        }
        cols
    }
    fn native(&self) -> Option<Native<'_>> {
        self.as_slice().map(T::native)
    }
}

/// A CSR matrix (scipy's `csr_matrix`/`csr_array` arrays), checked once.
/// Entries absent are 0; duplicate entries of a cell add up (as scipy's
/// `toarray`); column indices need not be sorted.
#[derive(Debug, Clone, Copy)]
pub struct Csr<'a, T, I> {
    n_rows: usize,
    n_cols: usize,
    data: &'a [T],
    indices: &'a [I],
    indptr: &'a [I],
}

impl<'a, T: Value, I: SparseIndex> Csr<'a, T, I> {
    /// Check the arrays: `indptr` has `n_rows + 1` non-decreasing entries
    /// from 0 to `nnz`, every column index is in `0..n_cols`.
    pub fn new(
        n_rows: usize,
        n_cols: usize,
        data: &'a [T],
        indices: &'a [I],
        indptr: &'a [I],
    ) -> Result<Self> {
        let bad = |msg: String| CoreError::invalid(format!("invalid CSR matrix: {msg}"));
        let nnz = data.len();
        if indices.len() != nnz {
            return Err(bad(format!(
                "{} column indices for {nnz} stored values",
                indices.len()
            )));
        }
        if indptr.len() != n_rows + 1 {
            return Err(bad(format!(
                "indptr has {} entries for {n_rows} rows",
                indptr.len()
            )));
        }
        let mut prev = 0usize;
        for (r, p) in indptr.iter().enumerate() {
            let p = p.to_usize();
            match p {
                Some(p) if (r > 0 || p == 0) && p >= prev && p <= nnz => prev = p,
                _ => return Err(bad(format!("indptr[{r}] is out of order or range"))),
            }
        }
        if prev != nnz {
            return Err(bad(format!("indptr ends at {prev}, not at nnz={nnz}")));
        }
        if let Some(i) = indices
            .iter()
            .position(|&c| c.to_usize().is_none_or(|c| c >= n_cols))
        {
            return Err(bad(format!(
                "stored value {i} has a column index outside 0..{n_cols}"
            )));
        }
        Ok(Csr {
            n_rows,
            n_cols,
            data,
            indices,
            indptr,
        })
    }

    #[inline]
    fn span(&self, r: usize) -> std::ops::Range<usize> {
        // Checked in `new`: in range and ordered.
        self.indptr[r].to_usize().unwrap_or(0)..self.indptr[r + 1].to_usize().unwrap_or(0)
    }
}

impl<T: Value, I: SparseIndex> Rows for Csr<'_, T, I> {
    fn n_rows(&self) -> usize {
        self.n_rows
    }
    fn n_cols(&self) -> usize {
        self.n_cols
    }
    fn dense_rows(&self, r0: usize, r1: usize, buf: &mut Vec<f64>) {
        let d = self.n_cols;
        for r in r0..r1 {
            let base = buf.len();
            buf.resize(base + d, 0.0);
            let row = &mut buf[base..];
            for p in self.span(r) {
                let c = self.indices[p].to_usize().unwrap_or(0);
                row[c] += self.data[p].to_f64();
            }
        }
    }
    fn gather(&self, rows: &[usize], features: &[usize]) -> Vec<f64> {
        let k = rows.len();
        let mut cols = vec![0.0f64; k * features.len()];
        // Column of X -> column of the sample (u32::MAX: not in this tree).
        let mut local = vec![u32::MAX; self.n_cols];
        for (j, &f) in features.iter().enumerate() {
            local[f] = j as u32;
        }
        for (i, &r) in rows.iter().enumerate() {
            for p in self.span(r) {
                let c = self.indices[p].to_usize().unwrap_or(0);
                let j = local[c];
                if j != u32::MAX {
                    cols[j as usize * k + i] += self.data[p].to_f64();
                }
            }
        }
        cols
    }
}

struct Pending {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    /// Local features not known to be constant in this node.
    candidates: Vec<u32>,
}

/// Grow one tree on `rows` x `features` of `x`.
fn grow_one<S: Rows>(
    x: &S,
    rows: &[usize],
    features: &[usize],
    max_depth: usize,
    rng: &mut Rng,
) -> Tree {
    let k = rows.len();
    let mf = features.len();
    // Column-major copy of the sample, converted once: every node scans
    // whole columns of it.
    let cols = x.gather(rows, features);
    let mut tree = Tree {
        features: features.iter().map(|&f| f as i64).collect(),
        ..Tree::default()
    };
    let push_node = |tree: &mut Tree, n: usize, depth: usize| {
        tree.feature.push(TREE_UNDEFINED);
        tree.threshold.push(TREE_UNDEFINED as f64);
        tree.children_left.push(TREE_LEAF);
        tree.children_right.push(TREE_LEAF);
        tree.missing_go_to_left.push(0);
        tree.n_node_samples.push(n as i64);
        tree.value
            .push(depth as f64 + average_path_length(n as f64));
    };
    // Positions into the sample, permuted in place as nodes split.
    let mut order: Vec<u32> = (0..k as u32).collect();
    push_node(&mut tree, k, 0);
    let mut stack = vec![Pending {
        node: 0,
        start: 0,
        end: k,
        depth: 0,
        candidates: (0..mf as u32).collect(),
    }];
    while let Some(Pending {
        node,
        start,
        end,
        depth,
        mut candidates,
    }) = stack.pop()
    {
        let n = end - start;
        if depth >= max_depth || n <= 1 {
            continue;
        }
        let idx = &mut order[start..end];
        // Draw features until a non-constant one turns up.
        let mut chosen = None;
        while !candidates.is_empty() {
            let c = rng.below(candidates.len());
            let f = candidates[c] as usize;
            let col = &cols[f * k..(f + 1) * k];
            let (mut lo, mut hi, mut missing) = (f64::INFINITY, f64::NEG_INFINITY, 0usize);
            for &i in idx.iter() {
                let v = col[i as usize];
                if v.is_nan() {
                    missing += 1;
                } else {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
            if missing == n || (hi <= lo + FEATURE_THRESHOLD && missing == 0) {
                candidates.swap_remove(c);
                continue;
            }
            chosen = Some((f, lo, hi, missing));
            break;
        }
        let Some((f, lo, hi, missing)) = chosen else {
            continue; // every feature is constant here
        };
        let mut threshold = (hi - lo) * rng.uniform() + lo;
        let nan_left = missing > 0 && rng.coin();
        if threshold == hi {
            threshold = lo;
        }
        // Partition: rows going left first.
        let col = &cols[f * k..(f + 1) * k];
        let goes_left = |v: f64| if v.is_nan() { nan_left } else { v <= threshold };
        let mut split = 0;
        for j in 0..idx.len() {
            if goes_left(col[idx[j] as usize]) {
                idx.swap(split, j);
                split += 1;
            }
        }
        if split == 0 || split == n {
            continue; // rejected split: the node stays a leaf
        }
        let n_left = split;
        let n_right = n - split;
        let left = tree.feature.len();
        push_node(&mut tree, n_left, depth + 1);
        push_node(&mut tree, n_right, depth + 1);
        tree.feature[node] = features[f] as i32;
        tree.threshold[node] = threshold;
        tree.children_left[node] = left as i32;
        tree.children_right[node] = left as i32 + 1;
        tree.missing_go_to_left[node] = if missing > 0 {
            nan_left
        } else {
            n_left > n_right
        } as u8;
        // Right first on the stack so the left subtree is grown first.
        stack.push(Pending {
            node: left + 1,
            start: start + split,
            end,
            depth: depth + 1,
            candidates: candidates.clone(),
        });
        stack.push(Pending {
            node: left,
            start,
            end: start + split,
            depth: depth + 1,
            candidates,
        });
    }
    tree
}

/// Grow `params.n_trees` trees, tree `first_tree + t` from stream
/// `(seed, first_tree + t)`, in parallel over trees on the current pool.
pub fn grow_forest<S: Rows>(
    x: S,
    sample_weight: Option<&[f64]>,
    params: &GrowParams,
    cancel: &Cancel,
) -> Result<Vec<Tree>> {
    grow_trees(&x, sample_weight, params, cancel, |rows, features, rng| {
        grow_one(&x, rows, features, params.max_depth, rng)
    })
}

/// Check the inputs, draw each tree's features and rows from its stream and
/// grow it with `grow` (which continues the stream), in parallel over trees.
fn grow_trees<S: Rows, T: Send>(
    x: &S,
    sample_weight: Option<&[f64]>,
    params: &GrowParams,
    cancel: &Cancel,
    grow: impl Fn(&[usize], &[usize], &mut Rng) -> T + Sync,
) -> Result<Vec<T>> {
    let (n, d) = (x.n_rows(), x.n_cols());
    if n == 0 || d == 0 {
        return Err(CoreError::invalid(format!(
            "cannot fit an isolation forest on data of shape ({n}, {d}): need at least one row and one feature"
        )));
    }
    let p = params;
    if p.max_samples == 0 || (!p.bootstrap && p.max_samples > n) {
        return Err(CoreError::invalid(format!(
            "max_samples={} must be in [1, n_samples={n}] (or use bootstrap=True to draw more)",
            p.max_samples
        )));
    }
    if p.max_features == 0 || p.max_features > d {
        return Err(CoreError::invalid(format!(
            "max_features={} must be in [1, n_features={d}]",
            p.max_features
        )));
    }
    let cdf;
    let sampler = match sample_weight {
        None => RowSampler::Uniform { n },
        Some(w) => {
            if w.len() != n {
                return Err(CoreError::invalid(format!(
                    "sample_weight has {} entries but X has {n} rows",
                    w.len()
                )));
            }
            cdf = weights_cdf(w)?;
            if !p.bootstrap {
                let positive = w.iter().filter(|&&v| v > 0.0).count();
                if positive < p.max_samples {
                    return Err(CoreError::invalid(format!(
                        "only {positive} rows have a non-zero sample_weight but max_samples={} rows must \
                         be drawn without replacement; use a smaller max_samples or bootstrap=True",
                        p.max_samples
                    )));
                }
            }
            RowSampler::Weighted {
                weights: w,
                cdf: &cdf,
            }
        }
    };
    (0..p.n_trees)
        .into_par_iter()
        .map(|t| {
            cancel.check()?;
            let mut rng = Rng::new(p.seed, (p.first_tree + t) as u64);
            let features = sample_without_replacement(&mut rng, d, p.max_features);
            let rows = sample_rows(&mut rng, sampler, p.max_samples, p.bootstrap);
            Ok(grow(&rows, &features, &mut rng))
        })
        .collect()
}

/// A standard normal draw (Box-Muller, one of the pair).
fn normal(rng: &mut Rng) -> f64 {
    let u1 = 1.0 - rng.uniform(); // (0, 1]
    let u2 = rng.uniform();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// An extended isolation tree: a [`Tree`] whose internal node `i` splits on
/// the hyperplane `sum_s coefs[i*k + s] * x[features[i*k + s]] <= threshold[i]`
/// (slots with feature -1 are unused; NaN in the sum follows
/// `missing_go_to_left`). `tree.feature[i]` is the first slot's feature.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HyperTree {
    pub tree: Tree,
    pub hyper_features: Vec<i32>,
    pub hyper_coefs: Vec<f64>,
}

/// The projection of one row on a node's hyperplane, summed in slot order
/// (growing and scoring use this same function, so they agree exactly).
/// `value(slot, feature)` reads the row's value of a slot's feature.
#[inline]
fn project(features: &[i32], coefs: &[f64], value: impl Fn(usize, usize) -> f64) -> f64 {
    let mut acc = 0.0;
    for (s, (&f, &c)) in features.iter().zip(coefs).enumerate() {
        if f >= 0 {
            acc += c * value(s, f as usize);
        }
    }
    acc
}

/// Grow an extended isolation forest (Hariri et al.): every node splits on a
/// random hyperplane through a point drawn uniformly in the node's bounding
/// box, whose normal has `k` non-zero N(0, 1) components on distinct
/// features drawn among the node's non-constant ones (fewer when fewer are
/// non-constant). `k = extension_level + 1`. Sampling, depth limit, leaf
/// values and streams are those of [`grow_forest`].
pub fn grow_forest_extended<S: Rows>(
    x: S,
    sample_weight: Option<&[f64]>,
    params: &GrowParams,
    k: usize,
    cancel: &Cancel,
) -> Result<Vec<HyperTree>> {
    if k < 2 || k > x.n_cols() {
        return Err(CoreError::invalid(format!(
            "extension_level={} must be in [1, n_features - 1 = {}] for hyperplane splits",
            k.saturating_sub(1),
            x.n_cols().saturating_sub(1)
        )));
    }
    grow_trees(&x, sample_weight, params, cancel, |rows, features, rng| {
        grow_one_extended(&x, rows, features, params.max_depth, k, rng)
    })
}

fn grow_one_extended<S: Rows>(
    x: &S,
    rows: &[usize],
    features: &[usize],
    max_depth: usize,
    k: usize,
    rng: &mut Rng,
) -> HyperTree {
    let n_rows = rows.len();
    let mf = features.len();
    let cols = x.gather(rows, features);
    let mut out = HyperTree {
        tree: Tree {
            features: features.iter().map(|&f| f as i64).collect(),
            ..Tree::default()
        },
        ..HyperTree::default()
    };
    let push_node = |t: &mut HyperTree, n: usize, depth: usize| {
        t.tree.feature.push(TREE_UNDEFINED);
        t.tree.threshold.push(TREE_UNDEFINED as f64);
        t.tree.children_left.push(TREE_LEAF);
        t.tree.children_right.push(TREE_LEAF);
        t.tree.missing_go_to_left.push(0);
        t.tree.n_node_samples.push(n as i64);
        t.tree
            .value
            .push(depth as f64 + average_path_length(n as f64));
        t.hyper_features.extend(std::iter::repeat_n(-1, k));
        t.hyper_coefs.extend(std::iter::repeat_n(0.0, k));
    };
    let mut order: Vec<u32> = (0..n_rows as u32).collect();
    let mut proj: Vec<f64> = vec![0.0; n_rows];
    let mut live: Vec<(usize, f64, f64)> = Vec::with_capacity(mf);
    push_node(&mut out, n_rows, 0);
    let mut stack = vec![(0usize, 0usize, n_rows, 0usize)];
    while let Some((node, start, end, depth)) = stack.pop() {
        let n = end - start;
        if depth >= max_depth || n <= 1 {
            continue;
        }
        let idx = &mut order[start..end];
        // The node's non-constant features and their ranges.
        live.clear();
        for j in 0..mf {
            let col = &cols[j * n_rows..(j + 1) * n_rows];
            let (mut lo, mut hi, mut missing) = (f64::INFINITY, f64::NEG_INFINITY, 0usize);
            for &i in idx.iter() {
                let v = col[i as usize];
                if v.is_nan() {
                    missing += 1;
                } else {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
            if !(missing == n || (hi <= lo + FEATURE_THRESHOLD && missing == 0)) {
                live.push((j, lo, hi));
            }
        }
        if live.is_empty() {
            continue;
        }
        let m = k.min(live.len());
        let mut slot_features = vec![-1i32; k];
        let mut slot_local = vec![0usize; k];
        let mut slot_coefs = vec![0.0f64; k];
        let mut intercept = 0.0;
        for s in 0..m {
            let c = s + rng.below(live.len() - s);
            live.swap(s, c);
            let (j, lo, hi) = live[s];
            let coef = normal(rng);
            let point = (hi - lo) * rng.uniform() + lo;
            slot_features[s] = features[j] as i32;
            slot_local[s] = j;
            slot_coefs[s] = coef;
            intercept += coef * point;
        }
        if intercept.is_nan() {
            continue; // an infinite range: no usable hyperplane here
        }
        let mut any_nan = false;
        for &i in idx.iter() {
            let p = project(&slot_features, &slot_coefs, |s, _| {
                cols[slot_local[s] * n_rows + i as usize]
            });
            any_nan |= p.is_nan();
            proj[i as usize] = p;
        }
        let nan_left = any_nan && rng.coin();
        let mut split = 0;
        for j in 0..idx.len() {
            let p = proj[idx[j] as usize];
            let left = if p.is_nan() { nan_left } else { p <= intercept };
            if left {
                idx.swap(split, j);
                split += 1;
            }
        }
        if split == 0 || split == n {
            continue;
        }
        let (n_left, n_right) = (split, n - split);
        let left = out.tree.feature.len();
        push_node(&mut out, n_left, depth + 1);
        push_node(&mut out, n_right, depth + 1);
        let t = &mut out.tree;
        t.feature[node] = slot_features[0];
        t.threshold[node] = intercept;
        t.children_left[node] = left as i32;
        t.children_right[node] = left as i32 + 1;
        t.missing_go_to_left[node] = if any_nan { nan_left } else { n_left > n_right } as u8;
        out.hyper_features[node * k..(node + 1) * k].copy_from_slice(&slot_features);
        out.hyper_coefs[node * k..(node + 1) * k].copy_from_slice(&slot_coefs);
        stack.push((left + 1, start + split, end, depth + 1));
        stack.push((left, start, start + split, depth + 1));
    }
    out
}

// ---------------------------------------------------------------------------
// Scoring.

/// A forest's trees as the caller stores them: sklearn's per-node arrays,
/// all trees concatenated, tree `t` in `offsets[t]..offsets[t + 1]` with
/// child indices local to the tree.
#[derive(Debug, Clone, Copy)]
pub struct ForestArrays<'a> {
    pub offsets: &'a [i64],
    pub feature: &'a [i32],
    pub threshold: &'a [f64],
    pub children_left: &'a [i32],
    pub children_right: &'a [i32],
    pub missing_go_to_left: &'a [u8],
    pub value: &'a [f64],
}

/// One node in the scoring layout (16 bytes). A row at this node moves to
/// `next + step`, with step 1 when `x > threshold` (or x is NaN and NaN goes
/// right), else 0. A leaf points at itself with threshold +inf and NaN going
/// "left", so its step is always 0 and extra levels are harmless.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Node {
    threshold: f64,
    /// Feature in the low 31 bits; the top bit set means NaN goes right.
    feature: u32,
    next: u32,
}

const NAN_RIGHT: u32 = 1 << 31;

/// A checked, packed forest ready for scoring.
#[derive(Debug, Clone)]
pub struct Packed {
    nodes: Vec<Node>,
    values: Vec<f64>,
    /// Per tree: root index and the number of levels to walk.
    trees: Vec<(u32, u32)>,
    n_features: usize,
    /// The same trees as complete binary trees, when shallow enough.
    implicit: Option<Implicit>,
}

impl Packed {
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }
    pub fn n_features(&self) -> usize {
        self.n_features
    }
}

fn bad_forest(msg: String) -> CoreError {
    CoreError::invalid(format!(
        "the fitted trees are inconsistent ({msg}); refit the estimator instead of editing its tree arrays"
    ))
}

/// Check the arrays of a forest against each other and `n_features`, and
/// pack them. Every index the scoring loop follows is proven in range here.
///
/// Any node numbering is accepted (scikit-learn's depth-first one too): each
/// tree is renumbered breadth-first so that siblings are adjacent. Nodes not
/// reachable from the root are dropped; a node reached twice is an error.
pub fn pack(f: &ForestArrays<'_>, n_features: usize) -> Result<Packed> {
    let total = f.feature.len();
    for (name, len) in [
        ("threshold", f.threshold.len()),
        ("children_left", f.children_left.len()),
        ("children_right", f.children_right.len()),
        ("missing_go_to_left", f.missing_go_to_left.len()),
        ("value", f.value.len()),
    ] {
        if len != total {
            return Err(bad_forest(format!(
                "{name} has {len} nodes, feature has {total}"
            )));
        }
    }
    if total >= (NAN_RIGHT as usize) || n_features >= NAN_RIGHT as usize {
        return Err(CoreError::invalid(
            "the forest or the data is too large to score (2^31 nodes or features)",
        ));
    }
    if f.offsets.len() < 2 || f.offsets[0] != 0 || f.offsets[f.offsets.len() - 1] != total as i64 {
        return Err(bad_forest(
            "tree offsets do not cover the node arrays".into(),
        ));
    }
    let mut nodes = Vec::with_capacity(total);
    let mut values = Vec::with_capacity(total);
    let mut trees = Vec::with_capacity(f.offsets.len() - 1);
    let mut order: Vec<usize> = Vec::new();
    let mut new_index: Vec<u32> = Vec::new();
    let mut depth: Vec<u32> = Vec::new();
    for w in f.offsets.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a < 0 || b <= a || b as usize > total {
            return Err(bad_forest("tree offsets must increase".into()));
        }
        let (a, b) = (a as usize, b as usize);
        let m = b - a;
        let base = nodes.len();
        new_index.clear();
        new_index.resize(m, u32::MAX);
        order.clear();
        order.push(0);
        depth.clear();
        new_index[0] = base as u32;
        depth.push(0);
        // Breadth-first: children are appended side by side.
        let mut head = 0;
        let mut levels = 0u32;
        while head < order.len() {
            let i = order[head];
            let g = a + i;
            let (l, r) = (f.children_left[g], f.children_right[g]);
            let here = depth[head];
            head += 1;
            if l == TREE_LEAF && r == TREE_LEAF {
                levels = levels.max(here);
                continue;
            }
            for c in [l, r] {
                if c < 0 || c as usize >= m || new_index[c as usize] != u32::MAX {
                    return Err(bad_forest(format!("node {i} has children {l}, {r}")));
                }
                new_index[c as usize] = (base + order.len()) as u32;
                order.push(c as usize);
                depth.push(here + 1);
            }
        }
        for (k, &i) in order.iter().enumerate() {
            let g = a + i;
            let l = f.children_left[g];
            if l == TREE_LEAF {
                nodes.push(Node {
                    threshold: f64::INFINITY,
                    feature: 0,
                    next: (base + k) as u32,
                });
            } else {
                let feat = f.feature[g];
                if feat < 0 || feat as usize >= n_features {
                    return Err(bad_forest(format!(
                        "node {i} splits on feature {feat}, but X has {n_features} features"
                    )));
                }
                let th = f.threshold[g];
                if th.is_nan() {
                    return Err(bad_forest(format!("node {i} has a NaN threshold")));
                }
                let nan_right = if f.missing_go_to_left[g] != 0 {
                    0
                } else {
                    NAN_RIGHT
                };
                nodes.push(Node {
                    threshold: th,
                    feature: feat as u32 | nan_right,
                    // The right child was appended right after the left one.
                    next: new_index[l as usize],
                });
            }
            values.push(f.value[g]);
        }
        trees.push((base as u32, levels));
    }
    let mut packed = Packed {
        nodes,
        values,
        trees,
        n_features,
        implicit: None,
    };
    packed.implicit = Implicit::build(&packed);
    Ok(packed)
}

// ---------------------------------------------------------------------------
// Scoring shallow forests: implicit complete trees over integer keys.
//
// Every tree is stored as a complete binary tree of the forest's depth `D`,
// numbered from 1 (slot `i` has children `2i` and `2i + 1`). A leaf above
// depth `D` is continued by "always left" slots (threshold +inf), so every
// row takes exactly `D` steps with no loop exit and no child index to load;
// slot `i` reached after the last level is leaf `i - 2^D` in a table of the
// real leaves' values. It ends in the same leaf as the node walk, so the sums
// are bit-identical.
//
// Values and thresholds are compared as order-reversing unsigned integer
// keys ([`key32`], [`key64`]), so a step is four instructions: load the
// slot's feature, load the row's key of it, compare that with the slot's key
// (carry: the key is below, i.e. the value above the threshold) and take
// `i = 2i + carry`. Rows are walked in transposed blocks of [`BLOCK`]
// (feature-major), so a row's value sits at a fixed offset from its block
// and needs no register of its own: the block's 12 walks, its two pointers
// and one scratch register fill the 15 general registers, and 12 walks in
// flight hide most of a step's latency (two dependent loads).

/// Deepest forest scored this way: `2^D` slots per tree stay in L1.
const IMPLICIT_MAX_DEPTH: u32 = 10;

/// Rows per block of a transposed tile: walked side by side.
const BLOCK: usize = 12;

/// An order-reversing key of a float: for floats `a`, `b` not NaN, `a > b`
/// exactly when `key(a) < key(b)` (-0.0 and +0.0 share a key). NaN gets the
/// largest key, which is below no threshold's key, so it goes left at every
/// split, as in the node walk; that key also marks it for NaN-goes-right
/// slots.
fn key32(x: f32) -> u32 {
    if x.is_nan() {
        return u32::MAX;
    }
    let b = (x + 0.0).to_bits(); // -0.0 + 0.0 = +0.0
    if b >> 31 == 1 {
        b
    } else {
        !(b | 1 << 31)
    }
}

/// [`key32`] for f64.
fn key64(x: f64) -> u64 {
    if x.is_nan() {
        return u64::MAX;
    }
    let b = (x + 0.0).to_bits();
    if b >> 63 == 1 {
        b
    } else {
        !(b | 1 << 63)
    }
}

/// A key type the walk compares.
trait Key: Copy + Default + Ord + Send + Sync + Into<u64> {
    /// The key of NaN (the largest).
    const NAN: Self;
    #[inline(always)]
    fn is_nan_key(self) -> bool {
        self == Self::NAN
    }
    /// The feature offset stored in a slot word (below 2^32).
    #[inline(always)]
    fn feat(self) -> usize {
        Into::<u64>::into(self) as usize
    }
    /// Per tree `2N` words: the slots' feature offsets (feature times
    /// [`BLOCK`]), then their threshold keys.
    fn slots(im: &Implicit) -> &[Self];
    /// One level of the walk of a block's rows (NaN left).
    ///
    /// # Safety
    /// `slots` holds one tree's `2N` words; each `at` is below `N`; `blk`
    /// holds at least `feat + BLOCK` keys for each slot's `feat`.
    unsafe fn level<const N: usize>(slots: &[Self], blk: &[Self], at: &mut [u64; BLOCK]);
}

impl Key for u64 {
    const NAN: u64 = u64::MAX;
    fn slots(im: &Implicit) -> &[u64] {
        &im.slots64
    }
    #[inline(always)]
    unsafe fn level<const N: usize>(slots: &[u64], blk: &[u64], at: &mut [u64; BLOCK]) {
        #[cfg(target_arch = "x86_64")]
        {
            let (s, b) = (slots.as_ptr(), blk.as_ptr());
            lanes!(
                "mov {f:e}, dword ptr [{s} + {i}*8]",
                "mov {f}, qword ptr [{b} + {f}*8 + {off}]",
                "cmp {f}, qword ptr [{s} + {i}*8 + {thr}]",
                s,
                b,
                at,
                8,
                8 * N
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        level_rust::<u64, N>(slots, blk, at);
    }
}

impl Key for u32 {
    const NAN: u32 = u32::MAX;
    fn slots(im: &Implicit) -> &[u32] {
        &im.slots32
    }
    #[inline(always)]
    unsafe fn level<const N: usize>(slots: &[u32], blk: &[u32], at: &mut [u64; BLOCK]) {
        #[cfg(target_arch = "x86_64")]
        {
            let (s, b) = (slots.as_ptr(), blk.as_ptr());
            lanes!(
                "mov {f:e}, dword ptr [{s} + {i}*4]",
                "mov {f:e}, dword ptr [{b} + {f}*4 + {off}]",
                "cmp {f:e}, dword ptr [{s} + {i}*4 + {thr}]",
                s,
                b,
                at,
                4,
                4 * N
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        level_rust::<u32, N>(slots, blk, at);
    }
}

/// One level for each of a block's rows, as three instructions given and
/// `i = 2i + carry`. Written out because LLVM's SLP vectorizer otherwise
/// packs the rows' slots into vector registers and moves each one out and
/// back in at every level (three times the instructions).
#[cfg(target_arch = "x86_64")]
macro_rules! lanes {
    ($feat:literal, $key:literal, $cmp:literal, $s:expr, $b:expr, $at:expr, $size:literal, $thr:expr) => {
        lanes!(@ $feat, $key, $cmp, $s, $b, $at, $size, $thr, [0 1 2 3 4 5 6 7 8 9 10 11])
    };
    (@ $feat:literal, $key:literal, $cmp:literal, $s:expr, $b:expr, $at:expr, $size:literal, $thr:expr, [$($l:literal)*]) => {
        $(
            std::arch::asm!(
                $feat,
                $key,
                $cmp,
                "adc {i:e}, {i:e}",
                i = inout(reg) $at[$l],
                s = in(reg) $s,
                b = in(reg) $b,
                f = out(reg) _,
                off = const $size * $l,
                thr = const $thr,
                options(pure, readonly, nostack),
            );
        )*
    };
}
#[cfg(target_arch = "x86_64")]
use lanes;

/// [`Key::level`] in plain Rust (other targets).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn level_rust<K: Key, const N: usize>(slots: &[K], blk: &[K], at: &mut [u64; BLOCK]) {
    for (lane, a) in at.iter_mut().enumerate() {
        let i = *a as usize;
        *a = 2 * *a + (blk[slots[i].feat() + lane] < slots[N + i]) as u64;
    }
}

#[derive(Debug, Clone)]
struct Implicit {
    depth: u32,
    /// Per tree `2^depth` feature offsets then `2^depth` threshold keys
    /// (slot 0 unused), for f64 rows.
    slots64: Vec<u64>,
    /// The same for float32 rows (thresholds rounded down first, see
    /// [`round_down_f32`]).
    slots32: Vec<u32>,
    /// Per slot: 1 when NaN goes right.
    nan_right: Vec<u8>,
    any_nan_right: bool,
    /// `2^depth` leaf path values per tree.
    leaf: Vec<f64>,
    /// The largest feature any slot reads: scoring checks it against the
    /// row width once, so the walk can load without bounds checks.
    max_feat: u32,
}

/// The largest f32 at most `t`: for every f32 `x`, `x > round_down_f32(t)`
/// exactly when `x as f64 > t`, so float32 rows compare without converting.
fn round_down_f32(t: f64) -> f32 {
    let r = t as f32;
    if (r as f64) > t {
        // `t` lies between two f32 (or below -f32::MAX): step down one.
        if r == f32::INFINITY {
            f32::MAX
        } else if r == -f32::MAX {
            f32::NEG_INFINITY
        } else if r == 0.0 {
            -f32::from_bits(1)
        } else if r > 0.0 {
            f32::from_bits(r.to_bits() - 1)
        } else {
            f32::from_bits(r.to_bits() + 1)
        }
    } else {
        r
    }
}

impl Implicit {
    /// Lay the packed trees out as complete trees, or `None` when too deep.
    fn build(p: &Packed) -> Option<Implicit> {
        let depth = p.trees.iter().map(|t| t.1).max()?;
        // Feature offsets (feature times BLOCK) are stored in a u32.
        if depth > IMPLICIT_MAX_DEPTH || p.n_features > (u32::MAX as usize) / BLOCK {
            return None;
        }
        let n = 1usize << depth;
        let t = p.trees.len();
        let mut im = Implicit {
            depth,
            slots64: vec![0; 2 * n * t],
            slots32: vec![0; 2 * n * t],
            nan_right: vec![0; n * t],
            any_nan_right: false,
            leaf: vec![0.0; n * t],
            max_feat: 0,
        };
        // (node, slot, level); a leaf node fills its whole subtree.
        let mut stack: Vec<(usize, usize, u32)> = Vec::with_capacity(2 * depth as usize + 2);
        for (k, &(root, _)) in p.trees.iter().enumerate() {
            let base = k * n;
            stack.push((root as usize, 1, 0));
            while let Some((node, slot, level)) = stack.pop() {
                let nd = p.nodes.get(node)?;
                if level == depth {
                    // A node at the forest's depth is a leaf of its tree.
                    im.leaf[base + slot - n] = *p.values.get(node)?;
                    continue;
                }
                let is_leaf = nd.next as usize == node;
                let (thr, feat, nr, l, r) = if is_leaf {
                    (f64::INFINITY, 0u32, 0u8, node, node)
                } else {
                    let nr = (nd.feature & NAN_RIGHT != 0) as u8;
                    let l = nd.next as usize;
                    (nd.threshold, nd.feature & !NAN_RIGHT, nr, l, l + 1)
                };
                let off = feat * BLOCK as u32;
                im.slots64[2 * base + slot] = off as u64;
                im.slots64[2 * base + n + slot] = key64(thr);
                im.slots32[2 * base + slot] = off;
                im.slots32[2 * base + n + slot] = key32(round_down_f32(thr));
                im.nan_right[base + slot] = nr;
                im.max_feat = im.max_feat.max(feat);
                im.any_nan_right |= nr != 0;
                stack.push((r, 2 * slot + 1, level + 1));
                stack.push((l, 2 * slot, level + 1));
            }
        }
        Some(im)
    }
}

/// Copy rows `r0..r0 + rows` of the row-major `x` (`d` values a row) as keys
/// into blocks of [`BLOCK`] rows stored feature-major (`out[b][f][lane]`): a
/// walk reads lane `l`'s feature `f` at offset `f * BLOCK + l` of its block.
/// A short last block repeats its last row.
fn transpose_blocks<E: Copy, K: Copy + Default>(
    x: &[E],
    d: usize,
    r0: usize,
    rows: usize,
    key: impl Fn(E) -> K,
    out: &mut Vec<K>,
) -> Result<()> {
    if x.len() < (r0 + rows) * d {
        return Err(CoreError::Internal("tile outside the data".into()));
    }
    let nb = rows.div_ceil(BLOCK);
    out.clear();
    out.resize(nb * d * BLOCK, K::default());
    for (b, blk) in out.chunks_exact_mut(d * BLOCK).enumerate() {
        for l in 0..BLOCK {
            let r = r0 + (b * BLOCK + l).min(rows - 1);
            let row = &x[r * d..(r + 1) * d];
            for (dst, &v) in blk.chunks_exact_mut(BLOCK).zip(row) {
                dst[l] = key(v);
            }
        }
    }
    Ok(())
}

/// Walk a transposed block's rows through one tree's `N` slots (`2N`
/// words), honouring NaN-goes-right slots: the rare case, in plain Rust,
/// bounds-checked.
fn walk_block_nan<K: Key, const N: usize>(
    slots: &[K],
    nan_right: &[u8],
    blk: &[K],
    at: &mut [u64; BLOCK],
) {
    for _ in 0..N.trailing_zeros() {
        for (lane, a) in at.iter_mut().enumerate() {
            let i = *a as usize;
            let v = blk[slots[i].feat() + lane];
            let right = (v < slots[N + i]) | (v.is_nan_key() & (nan_right[i] != 0));
            *a = 2 * *a + right as u64;
        }
    }
}

/// Add the path length in every tree, in tree order, of the `acc.len()`
/// rows held as keys in the transposed blocks `t` (`d` features) to `acc`.
fn score_blocks<K: Key, const N: usize>(
    im: &Implicit,
    t: &[K],
    d: usize,
    acc: &mut [f64],
) -> Result<()> {
    let rows = acc.len();
    let bl = d * BLOCK;
    if rows == 0 || bl == 0 {
        return Ok(());
    }
    let slots = K::slots(im);
    // What makes the unchecked loads in `Key::level` sound.
    if im.max_feat as usize >= d
        || t.len() != rows.div_ceil(BLOCK) * bl
        || N != 1 << im.depth
        || slots.len() != 2 * im.leaf.len()
        || !im.leaf.len().is_multiple_of(N)
        || im.nan_right.len() != im.leaf.len()
    {
        return Err(CoreError::Internal("implicit forest layout".into()));
    }
    let nan = im.any_nan_right && t.iter().any(|v| v.is_nan_key());
    for ((s, nr), leaf) in slots
        .chunks_exact(2 * N)
        .zip(im.nan_right.chunks_exact(N))
        .zip(im.leaf.chunks_exact(N))
    {
        for (blk, acc) in t.chunks_exact(bl).zip(acc.chunks_mut(BLOCK)) {
            let mut at = [1u64; BLOCK];
            if nan {
                walk_block_nan::<K, N>(s, nr, blk, &mut at);
            } else {
                for _ in 0..N.trailing_zeros() {
                    // SAFETY: a walk starts at slot 1 and a level takes slot
                    // i to 2i or 2i + 1, so before each of the `depth` levels
                    // every slot is below 2^depth = N; `s` is one tree's 2N
                    // words; the checks above put every slot's column, plus
                    // BLOCK lanes, inside the block.
                    unsafe { K::level::<N>(s, blk, &mut at) };
                }
            }
            for (a, &pos) in acc.iter_mut().zip(&at) {
                *a += leaf[pos as usize & (N - 1)];
            }
        }
    }
    Ok(())
}

fn score_implicit<K: Key>(im: &Implicit, t: &[K], d: usize, acc: &mut [f64]) -> Result<()> {
    match im.depth {
        0 => score_blocks::<K, 1>(im, t, d, acc),
        1 => score_blocks::<K, 2>(im, t, d, acc),
        2 => score_blocks::<K, 4>(im, t, d, acc),
        3 => score_blocks::<K, 8>(im, t, d, acc),
        4 => score_blocks::<K, 16>(im, t, d, acc),
        5 => score_blocks::<K, 32>(im, t, d, acc),
        6 => score_blocks::<K, 64>(im, t, d, acc),
        7 => score_blocks::<K, 128>(im, t, d, acc),
        8 => score_blocks::<K, 256>(im, t, d, acc),
        9 => score_blocks::<K, 512>(im, t, d, acc),
        10 => score_blocks::<K, 1024>(im, t, d, acc),
        _ => Err(CoreError::Internal("implicit forest too deep".into())),
    }
}

/// Rows walked through a tree side by side: independent walks hide the
/// latency of each node load.
const LANES: usize = 16;

/// Rows per tile: the tile's rows (as f64 or keys) stay in L2 while every
/// tree walks all of them; a multiple of both walks' widths (`LANES`,
/// `BLOCK`), so no walk pads. Depends on the feature count only, so tile
/// boundaries (and the work split) do not depend on the thread count.
pub fn tile_rows(n_features: usize) -> usize {
    const STEP: usize = 48; // a multiple of LANES and BLOCK
    let budget = 16 * 1024; // 8-byte values: 128 KiB
    (budget / n_features.max(1)).clamp(STEP, 4096) / STEP * STEP
}

/// Walk `LANES` rows (row offsets into `tile`) through one tree; return the
/// node each ends in. Branch-free: the direction is arithmetic.
#[inline(always)]
fn walk_lanes(
    nodes: &[Node],
    tile: &[f64],
    offs: &[usize; LANES],
    root: u32,
    levels: u32,
) -> [u32; LANES] {
    let mut at = [root; LANES];
    for _ in 0..levels {
        for lane in 0..LANES {
            let node = nodes[at[lane] as usize];
            let feat = (node.feature & !NAN_RIGHT) as usize;
            let x = tile[offs[lane] + feat];
            let nan_right = node.feature >> 31;
            let right = (x > node.threshold) as u32 | (x.is_nan() as u32 & nan_right);
            at[lane] = node.next + right;
        }
    }
    at
}

/// Add every tile row's path length in each tree, in tree order, to `acc`.
/// `tile` holds `acc.len()` rows of `d` values, row-major.
fn score_tile(p: &Packed, tile: &[f64], d: usize, acc: &mut [f64]) {
    let rows = acc.len();
    if rows == 0 {
        return;
    }
    let nodes = &p.nodes[..];
    let values = &p.values[..];
    // Tree-major: one tree's nodes stay in L1 while the whole tile walks it.
    for &(root, levels) in &p.trees {
        let mut start = 0;
        while start < rows {
            let width = LANES.min(rows - start);
            // Short groups repeat their last row in the spare lanes.
            let offs: [usize; LANES] = std::array::from_fn(|l| (start + l.min(width - 1)) * d);
            let at = walk_lanes(nodes, tile, &offs, root, levels);
            for (a, &pos) in acc[start..start + width].iter_mut().zip(&at) {
                *a += values[pos as usize];
            }
            start += width;
        }
    }
}

fn check_width(d: usize, forest: &Packed) -> Result<()> {
    if d != forest.n_features {
        return Err(CoreError::invalid(format!(
            "X has {d} features, but the forest was fitted with {} features",
            forest.n_features
        )));
    }
    Ok(())
}

/// Per-thread buffers of the scoring loop.
#[derive(Default)]
struct ScoreBufs {
    rows: Vec<f64>,
    t32: Vec<u32>,
    t64: Vec<u64>,
}

/// Score the rows `r0..r0 + acc.len()` of `x` into `acc` (one tile).
fn score_rows<S: Rows>(
    x: &S,
    r0: usize,
    forest: &Packed,
    bufs: &mut ScoreBufs,
    acc: &mut [f64],
) -> Result<()> {
    let (d, rows) = (x.n_cols(), acc.len());
    if let Some(im) = &forest.implicit {
        match x.native() {
            Some(Native::F32(v)) => {
                transpose_blocks(v, d, r0, rows, key32, &mut bufs.t32)?;
                return score_implicit(im, &bufs.t32, d, acc);
            }
            Some(Native::F64(v)) => {
                transpose_blocks(v, d, r0, rows, key64, &mut bufs.t64)?;
                return score_implicit(im, &bufs.t64, d, acc);
            }
            None => {}
        }
    }
    bufs.rows.clear();
    x.dense_rows(r0, r0 + rows, &mut bufs.rows);
    if let Some(im) = &forest.implicit {
        transpose_blocks(&bufs.rows, d, 0, rows, key64, &mut bufs.t64)?;
        return score_implicit(im, &bufs.t64, d, acc);
    }
    score_tile(forest, &bufs.rows, d, acc);
    Ok(())
}

/// Sum over trees (in tree order) of the path length of every row of `x`.
/// Parallel over tiles of rows of fixed size on the current pool; the
/// result does not depend on the thread count.
pub fn path_length_sums<S: Rows>(x: S, forest: &Packed, cancel: &Cancel) -> Result<Vec<f64>> {
    let (n, d) = (x.n_rows(), x.n_cols());
    check_width(d, forest)?;
    let mut out = vec![0.0f64; n];
    let tile = tile_rows(d);
    out.par_chunks_mut(tile).enumerate().try_for_each_init(
        ScoreBufs::default,
        |bufs, (t, acc)| -> Result<()> {
            cancel.check()?;
            score_rows(&x, t * tile, forest, bufs, acc)
        },
    )?;
    Ok(out)
}

/// [`path_length_sums`] on the calling thread: for small batches, where
/// handing work to a pool costs more than the work.
pub fn path_length_sums_serial<S: Rows>(x: S, forest: &Packed) -> Result<Vec<f64>> {
    let (n, d) = (x.n_rows(), x.n_cols());
    check_width(d, forest)?;
    let mut out = vec![0.0f64; n];
    let tile = tile_rows(d);
    let mut bufs = ScoreBufs::default();
    for (t, acc) in out.chunks_mut(tile).enumerate() {
        score_rows(&x, t * tile, forest, &mut bufs, acc)?;
    }
    Ok(out)
}

/// `-s(x)` from path length sums: `-2^(-sum / (n_trees * c(max_samples)))`.
/// When `c(max_samples) = 0` (one training row) scikit-learn replaces the
/// ratio by 1, so every row scores `-2^-1 = -0.5`; so do we.
pub fn scores_from_sums(sums: &mut [f64], n_trees: usize, max_samples: usize) {
    let denom = n_trees as f64 * average_path_length(max_samples as f64);
    for s in sums.iter_mut() {
        *s = if denom == 0.0 {
            -0.5
        } else {
            -(-*s / denom).exp2()
        };
    }
}

/// An extended forest's hyperplanes, `k` slots per node, aligned with the
/// node arrays of a [`ForestArrays`].
#[derive(Debug, Clone, Copy)]
pub struct Hyperplanes<'a> {
    pub k: usize,
    pub features: &'a [i32],
    pub coefs: &'a [f64],
}

/// Sum over trees (in tree order) of the path length of every row of `x` in
/// an extended forest. Parallel over fixed tiles of rows; the result does
/// not depend on the thread count.
pub fn path_length_sums_extended<S: Rows>(
    x: S,
    f: &ForestArrays<'_>,
    h: &Hyperplanes<'_>,
    cancel: &Cancel,
) -> Result<Vec<f64>> {
    let (n, d) = (x.n_rows(), x.n_cols());
    // `pack` proves the tree structure (children in range, each node reached
    // once) and the first slot's features; the slots are checked here.
    pack(f, d)?;
    let total = f.feature.len();
    if h.k == 0
        || h.features.len() != total.saturating_mul(h.k)
        || h.coefs.len() != h.features.len()
    {
        return Err(bad_forest(format!(
            "hyperplanes have {} features and {} coefficients for {total} nodes of {} slots",
            h.features.len(),
            h.coefs.len(),
            h.k
        )));
    }
    if let Some(i) = h
        .features
        .iter()
        .position(|&g| g < -1 || g as i64 >= d as i64)
    {
        return Err(bad_forest(format!(
            "hyperplane slot {i} uses feature {}, but X has {d} features",
            h.features[i]
        )));
    }
    let k = h.k;
    let tile = tile_rows(d.max(1));
    let mut out = vec![0.0f64; n];
    out.par_chunks_mut(tile).enumerate().try_for_each_init(
        || Vec::<f64>::with_capacity(tile * d),
        |buf, (t, acc)| -> Result<()> {
            cancel.check()?;
            let r0 = t * tile;
            buf.clear();
            x.dense_rows(r0, r0 + acc.len(), buf);
            for w in f.offsets.windows(2) {
                let a = w[0] as usize;
                for (r, sum) in acc.iter_mut().enumerate() {
                    let row = &buf[r * d..(r + 1) * d];
                    let mut g = a;
                    while f.children_left[g] != TREE_LEAF {
                        let p = project(
                            &h.features[g * k..(g + 1) * k],
                            &h.coefs[g * k..(g + 1) * k],
                            |_, c| row[c],
                        );
                        let left = if p.is_nan() {
                            f.missing_go_to_left[g] != 0
                        } else {
                            p <= f.threshold[g]
                        };
                        let child = if left {
                            f.children_left[g]
                        } else {
                            f.children_right[g]
                        };
                        g = a + child as usize;
                    }
                    *sum += f.value[g];
                }
            }
            Ok(())
        },
    )?;
    Ok(out)
}

/// Per-feature contributions to each row's mean path length.
///
/// For a row walking an edge from a node with `n_p` training rows to a child
/// with `n_c`, the split feature is credited `c(n_p) - c(n_c) - 1`: how much
/// shorter the row's expected remaining path became than the one edge it
/// spent. Along a path these telescope: the credits of one tree sum to
/// `c(n_root) - h(x)`, with `h(x) = depth + c(n_leaf)` the tree's path
/// length. The result is the mean over trees, `n_rows x n_features`
/// row-major, so each row sums to `mean c(n_root) - mean h(x)` (positive
/// credits: the feature isolated the row faster than an average split).
///
/// `n_node_samples` are the trees' node sizes, aligned with `f`'s arrays.
pub fn feature_contributions<S: Rows>(
    x: S,
    f: &ForestArrays<'_>,
    n_node_samples: &[i64],
    cancel: &Cancel,
) -> Result<Vec<f64>> {
    let (n, d) = (x.n_rows(), x.n_cols());
    if d == 0 {
        return Err(CoreError::invalid(
            "X has 0 features; the forest needs at least one",
        ));
    }
    // `pack` proves every child index and feature along any path in range.
    let packed = pack(f, d)?;
    if n_node_samples.len() != f.feature.len() {
        return Err(bad_forest(format!(
            "n_node_samples has {} nodes, feature has {}",
            n_node_samples.len(),
            f.feature.len()
        )));
    }
    let n_trees = packed.n_trees();
    let c = |g: usize| average_path_length(n_node_samples[g] as f64);
    let tile = tile_rows(d);
    let mut out = vec![0.0f64; n * d];
    out.par_chunks_mut(tile * d).enumerate().try_for_each_init(
        || Vec::<f64>::with_capacity(tile * d),
        |buf, (t, acc)| -> Result<()> {
            cancel.check()?;
            let r0 = t * tile;
            let rows = acc.len() / d;
            buf.clear();
            x.dense_rows(r0, r0 + rows, buf);
            for (row, credit) in buf.chunks_exact(d).zip(acc.chunks_exact_mut(d)) {
                for w in f.offsets.windows(2) {
                    let a = w[0] as usize;
                    let mut g = a;
                    while f.children_left[g] != TREE_LEAF {
                        let feat = f.feature[g] as usize;
                        let v = row[feat];
                        let left = if v.is_nan() {
                            f.missing_go_to_left[g] != 0
                        } else {
                            v <= f.threshold[g]
                        };
                        let child = if left {
                            f.children_left[g]
                        } else {
                            f.children_right[g]
                        };
                        let next = a + child as usize;
                        credit[feat] += c(g) - c(next) - 1.0;
                        g = next;
                    }
                }
                for v in credit.iter_mut() {
                    *v /= n_trees as f64;
                }
            }
            Ok(())
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn c_of_n() {
        assert_eq!(average_path_length(0.0), 0.0);
        assert_eq!(average_path_length(1.0), 0.0);
        assert_eq!(average_path_length(2.0), 1.0);
        let c256 = 2.0 * (255f64.ln() + EULER_GAMMA) - 2.0 * 255.0 / 256.0;
        assert_eq!(average_path_length(256.0), c256);
    }

    #[test]
    fn depth_limit_is_ceil_log2() {
        for m in 1..5000usize {
            let want = (m.max(2) as f64).log2().ceil() as usize;
            assert_eq!(depth_limit(m), want, "m={m}");
        }
    }

    #[test]
    fn rng_streams_differ_and_repeat() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(7, 0).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::new(7, 0).next_u64(), Rng::new(7, 1).next_u64());
        let mut r = Rng::new(1, 2);
        for _ in 0..1000 {
            assert!(r.below(3) < 3);
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn sampling_is_distinct_and_uniformish() {
        let mut rng = Rng::new(3, 0);
        let mut hits = vec![0usize; 20];
        for _ in 0..2000 {
            let s = sample_without_replacement(&mut rng, 20, 3);
            assert_eq!(s.len(), 3);
            assert!(s.windows(2).all(|w| w[0] < w[1]));
            for i in s {
                hits[i] += 1;
            }
        }
        // Expected 300 per index.
        assert!(hits.iter().all(|&h| (200..400).contains(&h)), "{hits:?}");
        let big = sample_without_replacement(&mut rng, 1_000_000, 256);
        assert_eq!(big.len(), 256);
        assert!(big.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn weighted_sampling_skips_zero_weights() {
        let w = vec![0.0, 1.0, 0.0, 3.0, 1.0];
        let cdf = weights_cdf(&w).unwrap();
        let mut rng = Rng::new(5, 0);
        for _ in 0..200 {
            let s = sample_rows(
                &mut rng,
                RowSampler::Weighted {
                    weights: &w,
                    cdf: &cdf,
                },
                3,
                false,
            );
            assert_eq!(s, vec![1, 3, 4]);
            let b = sample_rows(
                &mut rng,
                RowSampler::Weighted {
                    weights: &w,
                    cdf: &cdf,
                },
                3,
                true,
            );
            assert!(b.iter().all(|i| w[*i] > 0.0));
        }
        assert!(weights_cdf(&[0.0, 0.0]).is_err());
        assert!(weights_cdf(&[1.0, -1.0]).is_err());
        // A very heavy row: rejection gives up, keys finish the job.
        let w = vec![1e300, 1.0, 1.0, 1.0];
        let cdf = weights_cdf(&w).unwrap();
        let s = sample_rows(
            &mut rng,
            RowSampler::Weighted {
                weights: &w,
                cdf: &cdf,
            },
            3,
            false,
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s[0], 0);
    }

    fn params(n_trees: usize, max_samples: usize, d: usize) -> GrowParams {
        GrowParams {
            seed: 42,
            first_tree: 0,
            n_trees,
            max_samples,
            max_features: d,
            bootstrap: false,
            max_depth: depth_limit(max_samples),
        }
    }

    fn data(n: usize, d: usize) -> Array2<f64> {
        let mut rng = Rng::new(99, 0);
        Array2::from_shape_fn((n, d), |_| rng.uniform())
    }

    fn arrays(trees: &[Tree]) -> (Vec<i64>, Tree) {
        let mut all = Tree::default();
        let mut offsets = vec![0i64];
        for t in trees {
            all.feature.extend(&t.feature);
            all.threshold.extend(&t.threshold);
            all.children_left.extend(&t.children_left);
            all.children_right.extend(&t.children_right);
            all.missing_go_to_left.extend(&t.missing_go_to_left);
            all.value.extend(&t.value);
            offsets.push(all.feature.len() as i64);
        }
        (offsets, all)
    }

    fn packed(trees: &[Tree], d: usize) -> Result<Packed> {
        let (offsets, all) = arrays(trees);
        pack(
            &ForestArrays {
                offsets: &offsets,
                feature: &all.feature,
                threshold: &all.threshold,
                children_left: &all.children_left,
                children_right: &all.children_right,
                missing_go_to_left: &all.missing_go_to_left,
                value: &all.value,
            },
            d,
        )
    }

    /// Walk a tree the slow, obvious way.
    fn walk(t: &Tree, row: &[f64]) -> f64 {
        let mut i = 0usize;
        while t.children_left[i] != TREE_LEAF {
            let x = row[t.feature[i] as usize];
            let left = if x.is_nan() {
                t.missing_go_to_left[i] == 1
            } else {
                x <= t.threshold[i]
            };
            i = if left {
                t.children_left[i]
            } else {
                t.children_right[i]
            } as usize;
        }
        t.value[i]
    }

    #[test]
    fn trees_are_valid_isolation_trees() {
        let x = data(300, 4);
        let c = Cancel::new();
        let trees = grow_forest(x.view(), None, &params(10, 256, 4), &c).unwrap();
        for t in &trees {
            assert_eq!(t.n_node_samples[0], 256);
            for i in 0..t.feature.len() {
                let l = t.children_left[i];
                if l == TREE_LEAF {
                    // leaf value = depth + c(n); depth <= 8
                    let n = t.n_node_samples[i] as f64;
                    let depth = t.value[i] - average_path_length(n);
                    assert!((0.0..=8.0 + 1e-9).contains(&depth));
                    assert!(
                        n == 1.0 || (depth - 8.0).abs() < 1e-9,
                        "leaf before the limit with {n} rows"
                    );
                } else {
                    let (l, r) = (l as usize, t.children_right[i] as usize);
                    assert_eq!(r, l + 1);
                    assert_eq!(
                        t.n_node_samples[l] + t.n_node_samples[r],
                        t.n_node_samples[i]
                    );
                }
            }
        }
    }

    #[test]
    fn keys_reverse_the_float_order() {
        let v = [
            f64::NEG_INFINITY,
            -f64::MAX,
            -f64::from(f32::MAX),
            -1.5,
            -f64::MIN_POSITIVE,
            -f64::from_bits(1),
            -0.0,
            0.0,
            f64::from_bits(1),
            f64::from(f32::MIN_POSITIVE),
            1.0,
            1.0 + f64::EPSILON,
            f64::MAX,
            f64::INFINITY,
        ];
        for &a in &v {
            assert!(key64(a) < key64(f64::NAN), "{a}");
            assert!(key32(a as f32) < key32(f32::NAN), "{a}");
            for &b in &v {
                assert_eq!(a > b, key64(a) < key64(b), "{a} {b}");
                let (a32, b32) = (a as f32, b as f32);
                assert_eq!(a32 > b32, key32(a32) < key32(b32), "{a32} {b32}");
            }
        }
        assert_eq!(key64(-f64::NAN), u64::MAX);
        assert_eq!(key32(-f32::NAN), u32::MAX);
    }

    #[test]
    fn fast_scoring_matches_plain_walk() {
        let mut x = data(1000, 5);
        // NaN in training and scoring rows.
        for i in (0..1000).step_by(7) {
            x[[i, i % 5]] = f64::NAN;
        }
        let c = Cancel::new();
        let trees = grow_forest(x.view(), None, &params(20, 128, 5), &c).unwrap();
        let p = packed(&trees, 5).unwrap();
        let sums = path_length_sums(x.view(), &p, &c).unwrap();
        for (i, s) in sums.iter().enumerate() {
            let row: Vec<f64> = x.row(i).to_vec();
            let want: f64 = trees.iter().map(|t| walk(t, &row)).sum();
            assert_eq!(*s, want, "row {i}");
        }
    }

    /// A random tree in sklearn's depth-first layout over `d` features:
    /// leaves at every depth up to `max_depth`, thresholds on data values,
    /// between two f32 or infinite, NaN going either way.
    fn random_tree(rng: &mut Rng, d: usize, max_depth: usize, pool: &[f64]) -> Tree {
        fn grow(rng: &mut Rng, t: &mut Tree, d: usize, depth: usize, max: usize, pool: &[f64]) {
            let i = t.feature.len();
            t.value.push(rng.uniform() * 20.0);
            t.n_node_samples.push(1);
            t.missing_go_to_left.push(rng.coin() as u8);
            if depth == max || (depth > 0 && rng.below(4) == 0) {
                t.feature.push(TREE_UNDEFINED);
                t.threshold.push(-2.0);
                t.children_left.push(TREE_LEAF);
                t.children_right.push(TREE_LEAF);
                return;
            }
            t.feature.push(rng.below(d) as i32);
            let v = pool[rng.below(pool.len())];
            let th = match rng.below(6) {
                0 => f64::INFINITY,
                1 => f64::NEG_INFINITY,
                2 => (v as f32) as f64 + 1e-12, // between two f32
                3 => f64::from(f32::MAX) * 1.5,
                _ => v,
            };
            t.threshold.push(th);
            t.children_left.push(0);
            t.children_right.push(0);
            let l = t.feature.len();
            grow(rng, t, d, depth + 1, max, pool);
            let r = t.feature.len();
            grow(rng, t, d, depth + 1, max, pool);
            t.children_left[i] = l as i32;
            t.children_right[i] = r as i32;
        }
        let mut t = Tree::default();
        grow(rng, &mut t, d, 0, max_depth, pool);
        t
    }

    fn plain_sums(trees: &[Tree], x: &Array2<f64>) -> Vec<f64> {
        x.rows()
            .into_iter()
            .map(|r| {
                let row = r.to_vec();
                trees.iter().fold(0.0, |s, t| s + walk(t, &row))
            })
            .collect()
    }

    #[test]
    fn implicit_layout_matches_plain_walk() {
        let d = 4;
        let mut rng = Rng::new(7, 0);
        for case in 0..12u64 {
            let n = 37 + 50 * case as usize;
            // Values on a coarse grid (ties with thresholds), f32-exact so
            // the f32 and f64 matrices hold the same numbers; column 2 is
            // constant; some NaN, +-inf and huge values.
            let mut x = Array2::<f64>::zeros((n, d));
            for v in x.iter_mut() {
                *v = f64::from((rng.below(41) as f32 - 20.0) * 0.25);
            }
            for i in 0..n {
                x[[i, 2]] = 1.5;
                match rng.below(10) {
                    0 => x[[i, rng.below(d)]] = f64::NAN,
                    1 => x[[i, rng.below(d)]] = f64::INFINITY,
                    2 => x[[i, rng.below(d)]] = -f64::from(f32::MAX),
                    3 => x[[i, rng.below(d)]] = -0.0,
                    _ => {}
                }
            }
            if case % 3 == 0 {
                x.map_inplace(|v| {
                    if v.is_nan() {
                        *v = 0.0
                    }
                });
            }
            let pool: Vec<f64> = x.iter().copied().filter(|v| v.is_finite()).collect();
            let max_depth = (case % 11) as usize;
            let mut trees: Vec<Tree> = (0..9)
                .map(|_| random_tree(&mut rng, d, max_depth, &pool))
                .collect();
            if case % 3 == 1 {
                // NaN in the rows but no NaN-goes-right split to honour.
                for t in trees.iter_mut() {
                    t.missing_go_to_left.iter_mut().for_each(|m| *m = 1);
                }
            }
            let p = packed(&trees, d).unwrap();
            assert!(p.implicit.is_some(), "depth {max_depth}");
            let mut plain = p.clone();
            plain.implicit = None;
            let want = plain_sums(&trees, &x);
            let c = Cancel::new();
            let x32 = x.mapv(|v| v as f32);
            let xt = x.t().to_owned();
            let (csr_d, csr_i, csr_p) = to_csr(&x);
            let csr = Csr::new(n, d, &csr_d, &csr_i, &csr_p).unwrap();
            for (what, got) in [
                ("node walk", path_length_sums(x.view(), &plain, &c).unwrap()),
                ("f64", path_length_sums(x.view(), &p, &c).unwrap()),
                ("f64 serial", path_length_sums_serial(x.view(), &p).unwrap()),
                ("f32", path_length_sums(x32.view(), &p, &c).unwrap()),
                ("strided", path_length_sums(xt.t(), &p, &c).unwrap()),
                ("csr", path_length_sums(csr, &p, &c).unwrap()),
            ] {
                for i in 0..n {
                    assert_eq!(
                        got[i].to_bits(),
                        want[i].to_bits(),
                        "{what} case {case} row {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn f32_thresholds_round_down() {
        let mut rng = Rng::new(3, 0);
        let mut ts: Vec<f64> = vec![
            0.0,
            -0.0,
            1e-50,
            -1e-50,
            1.0,
            -1.0,
            0.1,
            -0.1,
            1e39,
            -1e39,
            f64::from(f32::MAX),
            -f64::from(f32::MAX),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::from(f32::from_bits(1)),
            -f64::from(f32::from_bits(1)),
        ];
        ts.extend((0..200).map(|_| (rng.uniform() - 0.5) * 10f64.powi(rng.below(80) as i32 - 40)));
        let mut xs: Vec<f32> = vec![0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
        for &t in &ts {
            let r = t as f32;
            xs.extend([
                r,
                f32::from_bits(r.to_bits().wrapping_add(1)),
                f32::from_bits(r.to_bits().wrapping_sub(1)),
            ]);
        }
        for &t in &ts {
            let r = round_down_f32(t);
            for &x in &xs {
                assert_eq!(x > r, f64::from(x) > t, "x {x:e} t {t:e} r {r:e}");
            }
        }
    }

    #[test]
    fn any_node_numbering_scores_the_same() {
        let x = data(300, 3);
        let c = Cancel::new();
        let trees = grow_forest(x.view(), None, &params(4, 64, 3), &c).unwrap();
        // Renumber every tree: root stays 0, the others in reverse order.
        let shuffled: Vec<Tree> = trees
            .iter()
            .map(|t| {
                let m = t.feature.len();
                let to = |i: usize| if i == 0 { 0 } else { m - i };
                let mut u = t.clone();
                for i in 0..m {
                    let j = to(i);
                    u.feature[j] = t.feature[i];
                    u.threshold[j] = t.threshold[i];
                    u.missing_go_to_left[j] = t.missing_go_to_left[i];
                    u.value[j] = t.value[i];
                    let map = |c: i32| if c < 0 { c } else { to(c as usize) as i32 };
                    u.children_left[j] = map(t.children_left[i]);
                    u.children_right[j] = map(t.children_right[i]);
                }
                u
            })
            .collect();
        let a = path_length_sums(x.view(), &packed(&trees, 3).unwrap(), &c).unwrap();
        let b = path_length_sums(x.view(), &packed(&shuffled, 3).unwrap(), &c).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn same_forest_for_any_thread_count() {
        let x = data(2000, 3);
        let c = Cancel::new();
        let p = params(30, 256, 3);
        let a = crate::parallel::run_in_pool(1, || grow_forest(x.view(), None, &p, &c))
            .unwrap()
            .unwrap();
        let b = crate::parallel::run_in_pool(2, || grow_forest(x.view(), None, &p, &c))
            .unwrap()
            .unwrap();
        assert_eq!(a, b);
        let pk = packed(&a, 3).unwrap();
        let s1 = crate::parallel::run_in_pool(1, || path_length_sums(x.view(), &pk, &c))
            .unwrap()
            .unwrap();
        let s2 = crate::parallel::run_in_pool(2, || path_length_sums(x.view(), &pk, &c))
            .unwrap()
            .unwrap();
        assert_eq!(s1, s2);
        // Warm start: trees 10.. of a 30-tree forest are what a second call grows.
        let later = GrowParams {
            first_tree: 10,
            n_trees: 20,
            ..p
        };
        let tail = grow_forest(x.view(), None, &later, &c).unwrap();
        assert_eq!(&a[10..], &tail[..]);
    }

    #[test]
    fn outliers_score_lower() {
        let mut x = data(500, 2);
        x[[0, 0]] = 10.0;
        x[[0, 1]] = -10.0;
        let c = Cancel::new();
        let trees = grow_forest(x.view(), None, &params(100, 256, 2), &c).unwrap();
        let p = packed(&trees, 2).unwrap();
        let mut s = path_length_sums(x.view(), &p, &c).unwrap();
        scores_from_sums(&mut s, 100, 256);
        let min = s.iter().cloned().fold(f64::INFINITY, f64::min);
        assert_eq!(s[0], min);
        assert!(s.iter().all(|v| (-1.0..=0.0).contains(v)));
    }

    #[test]
    fn constant_and_tiny_data() {
        let c = Cancel::new();
        // All rows equal: the root is a leaf with every row.
        let x = Array2::<f64>::from_elem((50, 3), 1.5);
        let trees = grow_forest(x.view(), None, &params(3, 50, 3), &c).unwrap();
        assert!(trees.iter().all(|t| t.feature == vec![TREE_UNDEFINED]));
        // One row.
        let x = Array2::<f64>::from_elem((1, 2), 0.0);
        let trees = grow_forest(x.view(), None, &params(2, 1, 2), &c).unwrap();
        assert_eq!(trees[0].value, vec![0.0]);
        let mut s = path_length_sums(x.view(), &packed(&trees, 2).unwrap(), &c).unwrap();
        scores_from_sums(&mut s, 2, 1);
        assert_eq!(s, vec![-0.5]);
        // All NaN column and infinities do not break anything.
        let mut x = data(64, 2);
        for i in 0..64 {
            x[[i, 0]] = f64::NAN;
        }
        x[[3, 1]] = f64::INFINITY;
        x[[4, 1]] = f64::NEG_INFINITY;
        let trees = grow_forest(x.view(), None, &params(5, 64, 2), &c).unwrap();
        assert!(trees.iter().all(|t| t.feature.iter().all(|&f| f != 0)));
        let p = packed(&trees, 2).unwrap();
        assert!(path_length_sums(x.view(), &p, &c)
            .unwrap()
            .iter()
            .all(|v| v.is_finite()));
    }

    /// `x` as CSR arrays, zeros dropped, columns of each row reversed
    /// (unsorted indices) and the first stored value split into a duplicate.
    fn to_csr(x: &Array2<f64>) -> (Vec<f64>, Vec<i32>, Vec<i32>) {
        let (mut data, mut indices, mut indptr) = (vec![], vec![], vec![0i32]);
        for row in x.rows() {
            for (j, &v) in row.iter().enumerate().rev() {
                if v != 0.0 {
                    data.push(v);
                    indices.push(j as i32);
                }
            }
            indptr.push(data.len() as i32);
        }
        if !data.is_empty() && data[0].is_finite() {
            // 0.5 v + 0.5 v == v exactly.
            data[0] *= 0.5;
            data.insert(0, data[0]);
            indices.insert(0, indices[0]);
            for p in indptr.iter_mut().skip(1) {
                *p += 1;
            }
        }
        (data, indices, indptr)
    }

    #[test]
    fn sparse_grows_and_scores_like_dense() {
        let mut x = data(700, 6);
        for (i, v) in x.iter_mut().enumerate() {
            if (i.wrapping_mul(2_654_435_761) >> 7) % 3 != 0 {
                *v = 0.0; // about two thirds zeros, in every column
            }
        }
        x[[5, 2]] = f64::NAN;
        let (vals, idx, ptr) = to_csr(&x);
        let csr = Csr::new(700, 6, &vals, &idx, &ptr).unwrap();
        let c = Cancel::new();
        let p = params(25, 128, 6);
        let dense = grow_forest(x.view(), None, &p, &c).unwrap();
        let sparse = grow_forest(csr, None, &p, &c).unwrap();
        assert_eq!(dense, sparse);
        let pk = packed(&dense, 6).unwrap();
        let a = path_length_sums(x.view(), &pk, &c).unwrap();
        let b = path_length_sums(csr, &pk, &c).unwrap();
        let b1 = path_length_sums_serial(csr, &pk).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, b1);
        // Malformed arrays are errors, not panics.
        assert!(Csr::new(700, 5, &vals, &idx, &ptr).is_err());
        assert!(Csr::new(699, 6, &vals, &idx, &ptr).is_err());
        assert!(Csr::new(700, 6, &vals[1..], &idx, &ptr).is_err());
        let mut bad = ptr.clone();
        bad[3] = bad[4] + 1;
        assert!(Csr::new(700, 6, &vals, &idx, &bad).is_err());
        let mut neg = idx.clone();
        neg[0] = -1;
        assert!(Csr::new(700, 6, &vals, &neg, &ptr).is_err());
    }

    #[test]
    fn contributions_telescope_to_path_length() {
        let mut x = data(400, 4);
        x[[0, 3]] = 25.0; // far out on feature 3 only
        x[[7, 1]] = f64::NAN;
        let c = Cancel::new();
        let trees = grow_forest(x.view(), None, &params(50, 128, 4), &c).unwrap();
        let (offsets, all) = arrays(&trees);
        let nns: Vec<i64> = trees
            .iter()
            .flat_map(|t| t.n_node_samples.clone())
            .collect();
        let fa = ForestArrays {
            offsets: &offsets,
            feature: &all.feature,
            threshold: &all.threshold,
            children_left: &all.children_left,
            children_right: &all.children_right,
            missing_go_to_left: &all.missing_go_to_left,
            value: &all.value,
        };
        let contrib = feature_contributions(x.view(), &fa, &nns, &c).unwrap();
        let pk = pack(&fa, 4).unwrap();
        let sums = path_length_sums(x.view(), &pk, &c).unwrap();
        let c_root = average_path_length(128.0);
        for r in 0..400 {
            let total: f64 = contrib[r * 4..r * 4 + 4].iter().sum();
            let want = c_root - sums[r] / 50.0;
            assert!((total - want).abs() < 1e-9, "row {r}: {total} vs {want}");
        }
        let row0 = &contrib[0..4];
        assert!(
            row0[3] > 3.0 * row0[0].abs().max(row0[1].abs()).max(row0[2].abs()),
            "{row0:?}"
        );
        assert!(feature_contributions(x.view(), &fa, &nns[1..], &c).is_err());
    }

    #[test]
    fn extended_trees_split_on_hyperplanes() {
        let mut x = data(1500, 4);
        x[[0, 0]] = 6.0;
        x[[0, 1]] = -6.0;
        x[[9, 2]] = f64::NAN;
        let c = Cancel::new();
        let p = params(40, 256, 4);
        let grow = |threads| {
            crate::parallel::run_in_pool(threads, || {
                grow_forest_extended(x.view(), None, &p, 3, &c)
            })
            .unwrap()
            .unwrap()
        };
        let (a, b) = (grow(1), grow(2));
        assert_eq!(a, b);
        let (vals, idx, ptr) = to_csr(&x);
        let csr = Csr::new(1500, 4, &vals, &idx, &ptr).unwrap();
        assert_eq!(grow_forest_extended(csr, None, &p, 3, &c).unwrap(), a);
        let k = 3;
        for t in &a {
            for i in 0..t.tree.feature.len() {
                let slots = &t.hyper_features[i * k..(i + 1) * k];
                if t.tree.children_left[i] == TREE_LEAF {
                    assert!(slots.iter().all(|&f| f == -1));
                } else {
                    let used: Vec<i32> = slots.iter().copied().filter(|&f| f >= 0).collect();
                    assert!(!used.is_empty() && used[0] == t.tree.feature[i]);
                    let mut u = used.clone();
                    u.sort_unstable();
                    u.dedup();
                    assert_eq!(u.len(), used.len(), "distinct features per hyperplane");
                }
            }
        }
        let (offsets, all) = arrays(&a.iter().map(|h| h.tree.clone()).collect::<Vec<_>>());
        let hf: Vec<i32> = a.iter().flat_map(|h| h.hyper_features.clone()).collect();
        let hc: Vec<f64> = a.iter().flat_map(|h| h.hyper_coefs.clone()).collect();
        let fa = ForestArrays {
            offsets: &offsets,
            feature: &all.feature,
            threshold: &all.threshold,
            children_left: &all.children_left,
            children_right: &all.children_right,
            missing_go_to_left: &all.missing_go_to_left,
            value: &all.value,
        };
        let h = Hyperplanes {
            k,
            features: &hf,
            coefs: &hc,
        };
        let s1 =
            crate::parallel::run_in_pool(1, || path_length_sums_extended(x.view(), &fa, &h, &c))
                .unwrap()
                .unwrap();
        let s2 = crate::parallel::run_in_pool(2, || path_length_sums_extended(csr, &fa, &h, &c))
            .unwrap()
            .unwrap();
        assert_eq!(s1, s2);
        // The outlier (far out on two features) has the shortest path.
        let min = s1.iter().cloned().fold(f64::INFINITY, f64::min);
        assert_eq!(s1[0], min);
        assert!(s1.iter().all(|v| v.is_finite()));
        let bad = Hyperplanes {
            k,
            features: &hf[1..],
            coefs: &hc,
        };
        assert!(path_length_sums_extended(x.view(), &fa, &bad, &c).is_err());
        let mut wide = hf.clone();
        wide[0] = 9;
        let bad = Hyperplanes {
            k,
            features: &wide,
            coefs: &hc,
        };
        assert!(path_length_sums_extended(x.view(), &fa, &bad, &c).is_err());
        assert!(grow_forest_extended(x.view(), None, &p, 5, &c).is_err());
        assert!(grow_forest_extended(x.view(), None, &p, 1, &c).is_err());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let c = Cancel::new();
        let x = data(10, 2);
        assert!(grow_forest(x.view(), None, &params(1, 11, 2), &c).is_err());
        assert!(grow_forest(
            x.view(),
            None,
            &GrowParams {
                max_features: 3,
                ..params(1, 5, 2)
            },
            &c
        )
        .is_err());
        assert!(grow_forest(x.view(), Some(&[1.0; 3]), &params(1, 5, 2), &c).is_err());
        let trees = grow_forest(x.view(), None, &params(2, 10, 2), &c).unwrap();
        assert!(
            packed(&trees, 1).is_err() || trees.iter().all(|t| t.feature.iter().all(|&f| f < 1))
        );
        let p = packed(&trees, 2).unwrap();
        let wrong = data(4, 3);
        assert!(path_length_sums(wrong.view(), &p, &c).is_err());
        // Tampered arrays: a child pointing backwards.
        let mut t = trees[0].clone();
        if t.children_left.len() > 1 {
            t.children_left[0] = 0;
            assert!(packed(&[t], 2).is_err());
        }
        let cancelled = Cancel::new();
        cancelled.cancel();
        assert_eq!(
            grow_forest(x.view(), None, &params(2, 10, 2), &cancelled),
            Err(CoreError::Cancelled)
        );
    }
}
