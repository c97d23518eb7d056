//! Synthetic market-basket data, in the spirit of the IBM Quest generator
//! that wrote T10I4D100K (Agrawal and Srikant, "Fast algorithms for mining
//! association rules", VLDB 1994, section 2.4.3).
//!
//! First `n_patterns` potentially frequent itemsets ("patterns") are drawn:
//! lengths `1 + Poisson(avg_pattern_len - 1)`; each pattern takes a fraction
//! `min(1, Exp(mean = correlation))` of its items from the previous pattern
//! (so patterns share items) and the rest uniformly; weights are `Exp(1)`,
//! normalised; each pattern has a corruption level `Normal(corruption,
//! variance 0.1)` clamped to [0, 1] (exactly 0 when `corruption` is 0).
//!
//! Then every transaction gets a target length `1 + Poisson(avg_len - 1)`
//! and is filled with patterns picked by weight. Before a pattern is added,
//! items are dropped from it while a uniform draw is below its corruption
//! level. A pattern that does not fit is added anyway half the time and
//! otherwise carried over to the next transaction, as in the paper. Items
//! are distinct and ascending within a transaction.
//!
//! Determinism: transactions are made in fixed chunks of [`CHUNK`] rows, each
//! with its own random stream `(seed, chunk index)`, and a pattern is carried
//! over only inside a chunk. The output is therefore bit-identical for any
//! number of threads.

use rayon::prelude::*;

use crate::error::{CoreError, Result};
use crate::parallel::Cancel;

/// Transactions per chunk (one random stream each).
pub const CHUNK: usize = 4096;

/// A transaction stops growing after this many picks in a row added nothing.
const MAX_IDLE_PICKS: usize = 32;

/// Variance of the per-pattern corruption level (the paper's 0.1).
const CORRUPTION_VARIANCE: f64 = 0.1;

/// The generator's parameters (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct BasketParams {
    pub n_transactions: usize,
    pub n_items: usize,
    pub avg_len: f64,
    pub n_patterns: usize,
    pub avg_pattern_len: f64,
    pub correlation: f64,
    pub corruption: f64,
    pub seed: u64,
}

/// The planted patterns: a list column of ascending item ids, with the
/// probability of picking each one and its corruption level.
#[derive(Debug, Clone, PartialEq)]
pub struct Patterns {
    pub offsets: Vec<i64>,
    pub items: Vec<i32>,
    pub weights: Vec<f64>,
    pub corruption: Vec<f64>,
}

impl Patterns {
    fn get(&self, p: usize) -> &[i32] {
        &self.items[self.offsets[p] as usize..self.offsets[p + 1] as usize]
    }
}

/// Transactions as a list column (`offsets` of length n + 1, `items`).
#[derive(Debug, Clone, PartialEq)]
pub struct Baskets {
    pub offsets: Vec<i64>,
    pub items: Vec<i32>,
    pub patterns: Patterns,
}

// ---------------------------------------------------------------------------
// Random numbers: SplitMix64, one stream per (seed, index).

#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Stream(u64);

impl Stream {
    fn new(seed: u64, index: u64) -> Self {
        Stream(mix64(
            seed ^ mix64(index.wrapping_add(0x9E37_79B9_7F4A_7C15)),
        ))
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    #[inline]
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n (n >= 1); Lemire's multiply-shift, bias below n / 2^64.
    #[inline]
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    fn exponential(&mut self, mean: f64) -> f64 {
        // 1 - u is in (0, 1], so the log is finite.
        -mean * (1.0 - self.uniform()).ln()
    }

    fn normal(&mut self) -> f64 {
        let r = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        r * (std::f64::consts::TAU * self.uniform()).cos()
    }

    /// Poisson(lambda) by Knuth's product of uniforms, in pieces of mean at
    /// most 16 (a sum of Poissons is Poisson), so exp(-piece) never
    /// underflows. Costs about lambda draws, the order of the items made.
    fn poisson(&mut self, lambda: f64) -> usize {
        let mut left = lambda.max(0.0);
        let mut k = 0usize;
        while left > 0.0 {
            let piece = left.min(16.0);
            left -= piece;
            let limit = (-piece).exp();
            let mut p = self.uniform();
            while p > limit {
                k += 1;
                p *= self.uniform();
            }
        }
        k
    }
}

/// Walker's alias table (Vose's construction): O(1) draws by weight.
struct Alias {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Alias {
    fn new(weights: &[f64]) -> Self {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut prob: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| prob[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            alias[s] = l as u32;
            prob[l] -= 1.0 - prob[s];
            if prob[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Rounding leftovers stand for themselves.
        for i in small.into_iter().chain(large) {
            prob[i] = 1.0;
        }
        Alias { prob, alias }
    }

    #[inline]
    fn draw(&self, rng: &mut Stream) -> usize {
        let i = rng.below(self.prob.len());
        if rng.uniform() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}

/// Distinct-item bookkeeping over 0..n_items without clearing: an item is in
/// the current set iff its stamp equals the current one.
struct Marks {
    stamp: Vec<u32>,
    now: u32,
}

impl Marks {
    fn new(n_items: usize) -> Self {
        Marks {
            stamp: vec![0; n_items],
            now: 0,
        }
    }
    fn clear(&mut self) {
        self.now = self.now.wrapping_add(1);
        if self.now == 0 {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.now = 1;
        }
    }
    /// Inserts `i`; false if it was already there.
    #[inline]
    fn insert(&mut self, i: usize) -> bool {
        let fresh = self.stamp[i] != self.now;
        self.stamp[i] = self.now;
        fresh
    }
    #[inline]
    fn contains(&self, i: usize) -> bool {
        self.stamp[i] == self.now
    }
}

fn check(p: &BasketParams) -> Result<()> {
    let bad = |m: String| Err(CoreError::invalid(m));
    if p.n_items == 0 || p.n_items > i32::MAX as usize {
        return bad(format!(
            "n_items must be in [1, 2**31 - 1], got {}",
            p.n_items
        ));
    }
    if p.n_patterns == 0 || p.n_patterns > u32::MAX as usize {
        return bad(format!(
            "n_patterns must be in [1, 2**32 - 1], got {}",
            p.n_patterns
        ));
    }
    let nf = p.n_items as f64;
    if !(p.avg_len >= 1.0 && p.avg_len <= nf) {
        return bad(format!(
            "avg_len must be in [1, n_items={}], got {}",
            p.n_items, p.avg_len
        ));
    }
    if !(p.avg_pattern_len >= 1.0 && p.avg_pattern_len <= nf) {
        return bad(format!(
            "avg_pattern_len must be in [1, n_items={}], got {}",
            p.n_items, p.avg_pattern_len
        ));
    }
    if !(0.0..=1.0).contains(&p.correlation) {
        return bad(format!(
            "correlation must be in [0, 1], got {}",
            p.correlation
        ));
    }
    if !(0.0..=1.0).contains(&p.corruption) {
        return bad(format!(
            "corruption must be in [0, 1], got {}",
            p.corruption
        ));
    }
    Ok(())
}

/// Adds `k` uniformly drawn items not yet in `marks` to `out`. Rejection
/// sampling: cheap while the pattern is small next to `n_items`.
fn fill_random(rng: &mut Stream, marks: &mut Marks, n_items: usize, k: usize, out: &mut Vec<i32>) {
    let mut added = 0;
    while added < k {
        let i = rng.below(n_items);
        if marks.insert(i) {
            out.push(i as i32);
            added += 1;
        }
    }
}

/// The planted patterns (stream 0 of `seed`).
pub fn make_patterns(p: &BasketParams) -> Result<Patterns> {
    check(p)?;
    let mut rng = Stream::new(p.seed, 0);
    let mut marks = Marks::new(p.n_items);
    let mut offsets = Vec::with_capacity(p.n_patterns + 1);
    offsets.push(0i64);
    let mut items: Vec<i32> = Vec::new();
    let mut weights = Vec::with_capacity(p.n_patterns);
    let mut corruption = Vec::with_capacity(p.n_patterns);
    let mut prev: Vec<i32> = Vec::new();
    let mut pat: Vec<i32> = Vec::new();
    for _ in 0..p.n_patterns {
        let len = (1 + rng.poisson(p.avg_pattern_len - 1.0)).min(p.n_items);
        marks.clear();
        pat.clear();
        // A share of the items comes from the previous pattern.
        let share = rng.exponential(p.correlation).min(1.0);
        let take = ((share * len as f64).round() as usize).min(prev.len());
        for j in 0..take {
            // Partial Fisher-Yates over the previous pattern.
            let r = j + rng.below(prev.len() - j);
            prev.swap(j, r);
            marks.insert(prev[j] as usize);
            pat.push(prev[j]);
        }
        fill_random(&mut rng, &mut marks, p.n_items, len - take, &mut pat);
        pat.sort_unstable();
        items.extend_from_slice(&pat);
        offsets.push(items.len() as i64);
        weights.push(rng.exponential(1.0));
        let c = if p.corruption == 0.0 {
            0.0
        } else {
            (p.corruption + CORRUPTION_VARIANCE.sqrt() * rng.normal()).clamp(0.0, 1.0)
        };
        corruption.push(c);
        std::mem::swap(&mut prev, &mut pat);
    }
    let total: f64 = weights.iter().sum();
    weights.iter_mut().for_each(|w| *w /= total);
    Ok(Patterns {
        offsets,
        items,
        weights,
        corruption,
    })
}

/// One chunk of transactions: (lengths, items).
fn make_chunk(
    p: &BasketParams,
    pats: &Patterns,
    alias: &Alias,
    chunk: usize,
    marks: &mut Marks,
) -> (Vec<u32>, Vec<i32>) {
    let start = chunk * CHUNK;
    let rows = CHUNK.min(p.n_transactions - start);
    let mut rng = Stream::new(p.seed, chunk as u64 + 1);
    let mut lengths = Vec::with_capacity(rows);
    let mut items: Vec<i32> = Vec::with_capacity((rows as f64 * p.avg_len * 1.1) as usize + 16);
    let mut picked: Vec<i32> = Vec::new();
    let mut carried = false;
    for _ in 0..rows {
        marks.clear();
        let begin = items.len();
        let target = (1 + rng.poisson(p.avg_len - 1.0)).min(p.n_items);
        // Bounds the picks when corruption empties most patterns, or when the
        // patterns' items cannot reach the target (a transaction near
        // n_items long, or few distinct items over all patterns).
        let mut tries = 4 * target + 16;
        let mut idle = 0;
        while tries > 0 && idle < MAX_IDLE_PICKS {
            tries -= 1;
            if !carried {
                let k = alias.draw(&mut rng);
                picked.clear();
                picked.extend_from_slice(pats.get(k));
                let c = pats.corruption[k];
                while !picked.is_empty() && rng.uniform() < c {
                    let r = rng.below(picked.len());
                    picked.swap_remove(r);
                }
            }
            carried = false;
            let size = items.len() - begin;
            let new = picked
                .iter()
                .filter(|&&i| !marks.contains(i as usize))
                .count();
            if new == 0 {
                idle += 1;
                continue;
            }
            idle = 0;
            if size > 0 && size + new > target && rng.uniform() >= 0.5 {
                // Does not fit: keep it for the next transaction.
                carried = true;
                break;
            }
            for &i in &picked {
                if marks.insert(i as usize) {
                    items.push(i);
                }
            }
            if items.len() - begin >= target {
                break;
            }
        }
        items[begin..].sort_unstable();
        lengths.push((items.len() - begin) as u32);
    }
    (lengths, items)
}

/// Generates the transactions (and the patterns planted in them).
pub fn make_transactions(p: &BasketParams, cancel: &Cancel) -> Result<Baskets> {
    let patterns = make_patterns(p)?;
    let alias = Alias::new(&patterns.weights);
    let n_chunks = p.n_transactions.div_ceil(CHUNK);
    let chunks: Vec<(Vec<u32>, Vec<i32>)> = (0..n_chunks)
        .into_par_iter()
        .map_init(
            || Marks::new(p.n_items),
            |marks, c| {
                cancel.check()?;
                Ok(make_chunk(p, &patterns, &alias, c, marks))
            },
        )
        .collect::<Result<_>>()?;
    cancel.check()?;
    let mut offsets = Vec::with_capacity(p.n_transactions + 1);
    offsets.push(0i64);
    let mut end = 0i64;
    for (lengths, _) in &chunks {
        for &l in lengths {
            end += l as i64;
            offsets.push(end);
        }
    }
    // Zeroed pages are only touched when written, and every chunk is freed
    // right after its copy, so the peak stays near one copy of the items.
    let mut items = vec![0i32; end as usize];
    let mut slots: Vec<&mut [i32]> = Vec::with_capacity(n_chunks);
    let mut rest = items.as_mut_slice();
    for (_, chunk_items) in &chunks {
        let (head, tail) = rest.split_at_mut(chunk_items.len());
        slots.push(head);
        rest = tail;
    }
    chunks
        .into_par_iter()
        .zip(slots)
        .for_each(|((_, src), dst)| dst.copy_from_slice(&src));
    Ok(Baskets {
        offsets,
        items,
        patterns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::run_in_pool;

    fn params(n: usize, seed: u64) -> BasketParams {
        BasketParams {
            n_transactions: n,
            n_items: 500,
            avg_len: 10.0,
            n_patterns: 200,
            avg_pattern_len: 4.0,
            correlation: 0.5,
            corruption: 0.5,
            seed,
        }
    }

    #[test]
    fn same_output_for_any_thread_count() {
        let p = params(3 * CHUNK + 17, 7);
        let a = run_in_pool(1, || make_transactions(&p, &Cancel::new()))
            .unwrap()
            .unwrap();
        let b = run_in_pool(2, || make_transactions(&p, &Cancel::new()))
            .unwrap()
            .unwrap();
        assert_eq!(a, b);
        let c = make_transactions(&params(3 * CHUNK + 17, 8), &Cancel::new()).unwrap();
        assert_ne!(a.items, c.items);
    }

    #[test]
    fn transactions_are_sorted_distinct_and_near_the_mean_length() {
        let p = params(20_000, 1);
        let b = make_transactions(&p, &Cancel::new()).unwrap();
        assert_eq!(b.offsets.len(), p.n_transactions + 1);
        for w in b.offsets.windows(2) {
            let t = &b.items[w[0] as usize..w[1] as usize];
            assert!(t.windows(2).all(|x| x[0] < x[1]));
            assert!(t.iter().all(|&i| (0..500).contains(&i)));
        }
        let mean = b.items.len() as f64 / p.n_transactions as f64;
        assert!((mean - 10.0).abs() < 1.0, "mean length {mean}");
        let wsum: f64 = b.patterns.weights.iter().sum();
        assert!((wsum - 1.0).abs() < 1e-12);
    }

    #[test]
    fn poisson_and_alias_have_the_right_means() {
        let mut rng = Stream::new(3, 0);
        for lambda in [0.0, 0.5, 3.0, 40.0] {
            let n = 200_000;
            let m = (0..n).map(|_| rng.poisson(lambda) as f64).sum::<f64>() / n as f64;
            assert!((m - lambda).abs() < 0.05 * lambda.max(1.0), "{lambda}: {m}");
        }
        let alias = Alias::new(&[0.1, 0.6, 0.3]);
        let mut hits = [0usize; 3];
        for _ in 0..300_000 {
            hits[alias.draw(&mut rng)] += 1;
        }
        for (h, w) in hits.iter().zip([0.1, 0.6, 0.3]) {
            assert!((*h as f64 / 300_000.0 - w).abs() < 0.01);
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        let mut p = params(10, 0);
        p.avg_len = 0.5;
        assert!(matches!(
            make_transactions(&p, &Cancel::new()),
            Err(CoreError::InvalidInput(_))
        ));
        let mut p = params(10, 0);
        p.n_items = 0;
        assert!(make_patterns(&p).is_err());
        let mut p = params(10, 0);
        p.corruption = f64::NAN;
        assert!(make_patterns(&p).is_err());
    }

    #[test]
    fn unreachable_targets_stop() {
        // Transactions as long as the item set, patterns half as long: the
        // last items are rarely reachable; this must stay fast and bounded.
        let mut p = params(300, 5);
        p.n_items = 2000;
        p.avg_len = 2000.0;
        p.avg_pattern_len = 1000.0;
        p.n_patterns = 5;
        let b = make_transactions(&p, &Cancel::new()).unwrap();
        assert!(b.offsets.windows(2).all(|w| w[1] - w[0] <= 2000));
    }

    #[test]
    fn cancel_stops() {
        let c = Cancel::new();
        c.cancel();
        assert_eq!(
            make_transactions(&params(10_000, 0), &c).unwrap_err(),
            CoreError::Cancelled
        );
    }
}
