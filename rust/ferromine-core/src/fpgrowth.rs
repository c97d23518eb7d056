//! Frequent itemsets (FP-Growth) and association rules.
//!
//! Pipeline: count items, recode the frequent ones by descending support
//! (rank 0 = most frequent; infrequent items dropped), sort the recoded
//! transactions so identical ones and shared prefixes are adjacent, and build
//! an FP-tree in flat arrays by prefix sharing (no child lookups). Mining walks
//! the tree per item, from the least frequent up: the item's prefix paths form
//! its conditional database, whose items with the same support as the prefix
//! are *perfect extensions* (they occur in every transaction of it). Those are
//! taken out of the recursion and combined afterwards, which also covers the
//! single-path case. Each recursion node is the equivalence class
//! `core ∪ S, S ⊆ perfect extensions`, all with one support:
//! - all itemsets: every `S` (bounded by `max_len`);
//! - closed: only `core ∪ all extensions` can be closed; it is, unless another
//!   node of the same support holds a strict superset (checked at the end over
//!   these candidates only, never over all frequent itemsets);
//! - maximal: only nodes without further frequent items can be maximal; they
//!   are, unless a strict superset was found too.
//!
//! The top-level items are mined in parallel, each into its own buffer; the
//! buffers are concatenated in item order, so the output order does not depend
//! on the thread count. Supports are exact integer counts.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::{CoreError, Result};
use crate::parallel::Cancel;

/// An index array element (CSR `indptr`/`indices`, list offsets, item ids).
pub trait Index: Copy + Send + Sync {
    fn to_usize(self) -> Option<usize>;
}

macro_rules! impl_index {
    ($($t:ty),*) => {$(
        impl Index for $t {
            #[inline]
            fn to_usize(self) -> Option<usize> {
                usize::try_from(self).ok()
            }
        }
    )*};
}
impl_index!(i32, i64, u32, u64, usize);

/// Which itemsets to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    All,
    Closed,
    Maximal,
}

/// Mining parameters. `max_len = None`: no length limit. `max_itemsets`: the
/// guard against results that would exhaust memory (counted while mining).
#[derive(Debug, Clone, Copy)]
pub struct MineParams {
    pub min_count: u64,
    pub max_len: Option<usize>,
    pub kind: Kind,
    pub max_itemsets: Option<u64>,
    pub count_only: bool,
}

/// Itemsets as a list column: itemset `k` has items
/// `items[offsets[k]..offsets[k + 1]]` (input column ids, ascending) and
/// occurs in `counts[k]` transactions. With `count_only` only `n_itemsets`
/// is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Itemsets {
    pub offsets: Vec<u64>,
    pub items: Vec<u32>,
    pub counts: Vec<u64>,
    pub n_itemsets: u64,
}

impl Itemsets {
    fn new() -> Self {
        Itemsets {
            offsets: vec![0],
            ..Default::default()
        }
    }
    fn push(&mut self, items: &[u32], count: u64) {
        self.items.extend_from_slice(items);
        self.offsets.push(self.items.len() as u64);
        self.counts.push(count);
        self.n_itemsets += 1;
    }
    fn len(&self) -> usize {
        self.counts.len()
    }
    fn get(&self, k: usize) -> &[u32] {
        &self.items[self.offsets[k] as usize..self.offsets[k + 1] as usize]
    }
    fn append(&mut self, other: Itemsets) {
        let base = self.items.len() as u64;
        self.items.extend_from_slice(&other.items);
        self.offsets
            .extend(other.offsets.iter().skip(1).map(|o| o + base));
        self.counts.extend_from_slice(&other.counts);
        self.n_itemsets += other.n_itemsets;
    }
}

/// The smallest count `c` with `c / n >= min_support` in f64: one threshold
/// rule for every itemset size (mlxtend mixes this with `ceil(min_support * n)`).
pub fn min_count_for(min_support: f64, n: u64) -> Result<u64> {
    if !(min_support > 0.0 && min_support <= 1.0) {
        return Err(CoreError::invalid(format!(
            "min_support must be a fraction in (0, 1] or an int count >= 1, got {min_support}"
        )));
    }
    let nf = n as f64;
    let mut c = (min_support * nf).ceil().min(nf) as u64;
    // ceil(min_support * n) is off by one when the product rounds; fix it
    // against the defining test itself.
    while c > 0 && ((c - 1) as f64) / nf >= min_support {
        c -= 1;
    }
    while c < n && (c as f64) / nf < min_support {
        c += 1;
    }
    Ok(c.max(1))
}

/// Checks a CSR row-pointer array against `n_indices` and returns the
/// number of transactions.
fn check_indptr<O: Index>(indptr: &[O], n_indices: usize) -> Result<usize> {
    if indptr.is_empty() {
        return Err(CoreError::invalid(
            "indptr must have n_transactions + 1 entries, got an empty array",
        ));
    }
    let mut prev = 0usize;
    for (k, &o) in indptr.iter().enumerate() {
        let o = o
            .to_usize()
            .ok_or_else(|| CoreError::invalid(format!("indptr[{k}] is negative or too large")))?;
        if (k == 0 && o != 0) || o < prev {
            return Err(CoreError::invalid(
                "indptr must start at 0 and never decrease (a CSR row-pointer array)",
            ));
        }
        prev = o;
    }
    if prev > n_indices {
        return Err(CoreError::invalid(format!(
            "indptr ends at {prev} but there are only {n_indices} indices"
        )));
    }
    Ok(indptr.len() - 1)
}

/// Checks a CSR structure and returns the number of transactions.
fn check_csr<O: Index, I: Index>(indptr: &[O], indices: &[I], n_items: usize) -> Result<usize> {
    check_indptr(indptr, indices.len())?;
    let prev = indptr.last().and_then(|o| o.to_usize()).unwrap_or(0);
    for &i in &indices[..prev] {
        match i.to_usize() {
            Some(v) if v < n_items => {}
            _ => {
                return Err(CoreError::invalid(format!(
                    "item ids must be in [0, {n_items}); found one outside"
                )))
            }
        }
    }
    Ok(indptr.len() - 1)
}

/// CSR `(indptr, indices)` of a dense one-hot matrix of bytes (nonzero =
/// the item is present), stored row-major (`data[t * n_items + i]`) or
/// column-major (`data[i * n_transactions + t]`, what pandas hands over for a
/// frame of bool columns). Item ids ascend within each row. One pass (two for
/// column-major: row lengths, then the fill), no index arrays of every cell.
pub fn csr_of_dense(
    data: &[u8],
    n_transactions: usize,
    n_items: usize,
    column_major: bool,
    cancel: &Cancel,
) -> Result<(Vec<i64>, Vec<u32>)> {
    if n_transactions.checked_mul(n_items) != Some(data.len()) {
        return Err(CoreError::invalid(format!(
            "a dense matrix of {n_transactions} x {n_items} needs {} cells, got {}",
            n_transactions.saturating_mul(n_items),
            data.len()
        )));
    }
    if n_items > u32::MAX as usize - 1 {
        return Err(CoreError::invalid("too many items (more than 2^32 - 2)"));
    }
    // Cells are packed into one 64-bit mask per (64-column group, row),
    // group-major, then each row's set bits are written out in column
    // order. Packing reads the cells in memory order and is branch-free in
    // both layouts; a direct fill from column-major cells scattered one write
    // per cell across all rows (measured: mushroom's 8124 x 119 cells, 1.8 ms
    // before, see docs/fpgrowth.md).
    let groups = n_items.div_ceil(64);
    let mut masks = vec![0u64; groups * n_transactions];
    if column_major {
        for (i, col) in data.chunks_exact(n_transactions.max(1)).enumerate() {
            if i % 64 == 0 {
                cancel.check()?;
            }
            let (g, bit) = (i / 64, i % 64);
            or_column_bits(
                &mut masks[g * n_transactions..(g + 1) * n_transactions],
                col,
                bit,
            );
        }
    } else {
        for (t, row) in data.chunks_exact(n_items.max(1)).enumerate() {
            if t % 4096 == 0 {
                cancel.check()?;
            }
            for (g, cells) in row.chunks(64).enumerate() {
                let mut m = 0u64;
                for (bit, &v) in cells.iter().enumerate() {
                    m |= ((v != 0) as u64) << bit;
                }
                masks[g * n_transactions + t] = m;
            }
        }
    }
    cancel.check()?;
    let mut indptr = Vec::with_capacity(n_transactions + 1);
    indptr.push(0i64);
    let mut total = 0i64;
    for t in 0..n_transactions {
        total += (0..groups)
            .map(|g| masks[g * n_transactions + t].count_ones() as i64)
            .sum::<i64>();
        indptr.push(total);
    }
    let mut indices = vec![0u32; total as usize];
    let mut at = 0;
    for t in 0..n_transactions {
        for g in 0..groups {
            let mut m = masks[g * n_transactions + t];
            while m != 0 {
                if let Some(slot) = indices.get_mut(at) {
                    *slot = (g * 64) as u32 + m.trailing_zeros();
                }
                at += 1;
                m &= m - 1;
            }
        }
    }
    Ok((indptr, indices))
}

/// `masks[t] |= (col[t] != 0) << bit`, in AVX2 registers where present (the
/// u8 to u64 widening is slow in baseline SSE2).
fn or_column_bits(masks: &mut [u64], col: &[u8], bit: usize) {
    #[inline(always)]
    fn body(masks: &mut [u64], col: &[u8], bit: usize) {
        for (m, &v) in masks.iter_mut().zip(col) {
            *m |= ((v != 0) as u64) << bit;
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn avx2(masks: &mut [u64], col: &[u8], bit: usize) {
        body(masks, col, bit)
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected at run time.
        return unsafe { avx2(masks, col, bit) };
    }
    body(masks, col, bit)
}

/// Support count of every item (an item listed twice in one transaction
/// counts once). Validates the CSR on the way: each row is read once for its
/// id range and order, and a strictly ascending row (scipy's canonical CSR,
/// our own intake) is counted without the duplicate stamps.
pub fn item_counts<O: Index, I: Index>(
    indptr: &[O],
    indices: &[I],
    n_items: usize,
    cancel: &Cancel,
) -> Result<Vec<u64>> {
    let n = check_indptr(indptr, indices.len())?;
    let chunks = row_chunks(n, n_items);
    let parts = chunks
        .par_iter()
        .map(|&rows| count_rows(indptr, indices, n_items, rows, cancel))
        .collect::<Result<Vec<_>>>()?;
    let mut parts = parts.into_iter();
    let mut counts = parts.next().unwrap_or_else(|| vec![0u64; n_items]);
    for part in parts {
        for (c, p) in counts.iter_mut().zip(part) {
            *c += p;
        }
    }
    Ok(counts)
}

/// Fixed row chunks for the top-level passes, a function of the sizes only
/// (never of the thread count, so every result is the same for any): at
/// most 16 chunks of at least 32768 rows, and at most 2^24 per-chunk
/// counters (`per_chunk` each) in all.
fn row_chunks(n: usize, per_chunk: usize) -> Vec<(usize, usize)> {
    let by_rows = n.div_ceil(32768);
    let by_mem = ((1usize << 24) / per_chunk.max(1)).max(1);
    let k = by_rows.min(16).min(by_mem).max(1);
    let size = n.div_ceil(k).max(1);
    (0..k)
        .map(|c| (c * size, ((c + 1) * size).min(n)))
        .filter(|(a, b)| a < b)
        .collect()
}

/// [`item_counts`] over the rows `rows.0..rows.1`.
fn count_rows<O: Index, I: Index>(
    indptr: &[O],
    indices: &[I],
    n_items: usize,
    rows: (usize, usize),
    cancel: &Cancel,
) -> Result<Vec<u64>> {
    let mut counts = vec![0u64; n_items];
    let mut stamp: Vec<u32> = Vec::new(); // only for rows that are not ascending
    let out_of_range = || {
        CoreError::invalid(format!(
            "item ids must be in [0, {n_items}); found one outside"
        ))
    };
    for t in rows.0..rows.1 {
        if t % 65536 == 0 {
            cancel.check()?;
        }
        let (a, b) = row_bounds(indptr, t);
        let row = &indices[a..b];
        // One pass: count while checking the range and the order; a row
        // that turns out not ascending is taken back and counted again.
        let mut next_min = 0usize;
        let mut ascending = true;
        for &i in row {
            let v = i
                .to_usize()
                .filter(|&v| v < n_items)
                .ok_or_else(out_of_range)?;
            ascending &= v >= next_min;
            next_min = v + 1;
            counts[v] += 1;
        }
        if !ascending {
            if stamp.is_empty() {
                stamp = vec![u32::MAX; n_items];
            }
            for &i in row {
                counts[i.to_usize().unwrap_or(0)] -= 1;
            }
            for &i in row {
                let v = i.to_usize().unwrap_or(0);
                if stamp[v] != t as u32 {
                    stamp[v] = t as u32;
                    counts[v] += 1;
                }
            }
        }
    }
    Ok(counts)
}

/// Candidates counted per parallel task; each block restarts its prefix stack.
const COUNT_BLOCK: usize = 256;

/// Support count of each candidate itemset `items[offsets[k]..offsets[k+1]]`
/// over the transactions (the global counting pass of a two-pass, SON-style
/// distributed mining: candidates from all partitions, counted on each).
///
/// Vertical bitsets, one per item that occurs in a candidate; a candidate's
/// count is the popcount of the AND of its items' bitsets. Candidates are
/// visited in lexicographic order so that shared prefixes are intersected
/// once. An empty candidate counts every transaction; an item listed twice
/// in a candidate or a transaction counts once. Exact integer counts, the
/// same for any thread count.
pub fn count_itemsets<O: Index, I: Index>(
    indptr: &[O],
    indices: &[I],
    n_items: usize,
    offsets: &[u64],
    items: &[u32],
    cancel: &Cancel,
) -> Result<Vec<u64>> {
    let n = check_csr(indptr, indices, n_items)?;
    if offsets.first() != Some(&0) {
        return Err(CoreError::invalid(
            "candidate offsets must start at 0 (n_candidates + 1 entries)",
        ));
    }
    let mut bounds = Vec::with_capacity(offsets.len().saturating_sub(1));
    for w in offsets.windows(2) {
        let (a, b) = (w[0] as usize, w[1] as usize);
        if b < a || b > items.len() {
            return Err(CoreError::invalid(
                "candidate offsets must never decrease and end within the items",
            ));
        }
        bounds.push((a, b));
    }
    // Slots only for items some candidate uses.
    let mut slot = vec![u32::MAX; n_items];
    let mut n_slots = 0u32;
    for &it in items {
        let i = it as usize;
        if i >= n_items {
            return Err(CoreError::invalid(format!(
                "candidate item ids must be in [0, {n_items}); found {i}"
            )));
        }
        if slot[i] == u32::MAX {
            slot[i] = n_slots;
            n_slots += 1;
        }
    }
    let words = n.div_ceil(64);
    let mut bits = vec![0u64; n_slots as usize * words];
    for t in 0..n {
        if t % 65536 == 0 {
            cancel.check()?;
        }
        let (a, b) = row_bounds(indptr, t);
        for &i in &indices[a..b] {
            let s = slot[i.to_usize().unwrap_or(0)];
            if s != u32::MAX {
                bits[s as usize * words + t / 64] |= 1u64 << (t % 64);
            }
        }
    }
    let cand = |k: usize| &items[bounds[k].0..bounds[k].1];
    let mut order: Vec<usize> = (0..bounds.len()).collect();
    order.sort_by(|&a, &b| cand(a).cmp(cand(b)));
    let row = |it: u32| {
        let s = slot[it as usize] as usize;
        &bits[s * words..(s + 1) * words]
    };
    let parts: Vec<Vec<(usize, u64)>> = order
        .par_chunks(COUNT_BLOCK)
        .map(|block| {
            cancel.check()?;
            // stack[j]: AND of the first j + 1 items of `prev`.
            let mut stack: Vec<Vec<u64>> = Vec::new();
            let mut prev: &[u32] = &[];
            let mut out = Vec::with_capacity(block.len());
            for &k in block {
                let c = cand(k);
                let common = c.iter().zip(prev).take_while(|(a, b)| a == b).count();
                stack.truncate(common);
                for (j, &it) in c.iter().enumerate().skip(common) {
                    let next: Vec<u64> = match j {
                        0 => row(it).to_vec(),
                        _ => stack[j - 1]
                            .iter()
                            .zip(row(it))
                            .map(|(a, b)| a & b)
                            .collect(),
                    };
                    stack.push(next);
                }
                let count = match stack.last() {
                    Some(s) => s.iter().map(|w| u64::from(w.count_ones())).sum(),
                    None => n as u64,
                };
                out.push((k, count));
                prev = c;
            }
            Ok(out)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut counts = vec![0u64; bounds.len()];
    for (k, c) in parts.into_iter().flatten() {
        counts[k] = c;
    }
    Ok(counts)
}

#[inline]
fn row_bounds<O: Index>(indptr: &[O], t: usize) -> (usize, usize) {
    (
        indptr[t].to_usize().unwrap_or(0),
        indptr[t + 1].to_usize().unwrap_or(0),
    )
}

/// Weighted paths over local item ids, each strictly ascending.
#[derive(Default)]
struct Paths {
    off: Vec<usize>,
    items: Vec<u32>,
    w: Vec<u64>,
}

impl Paths {
    fn push_end(&mut self, w: u64) {
        if self.items.len() > *self.off.last().unwrap_or(&0) {
            self.off.push(self.items.len());
            self.w.push(w);
        }
    }
    fn get(&self, k: usize) -> &[u32] {
        &self.items[self.off[k]..self.off[k + 1]]
    }
    fn len(&self) -> usize {
        self.w.len()
    }
    fn clear(&mut self) {
        self.off.clear();
        self.off.push(0);
        self.items.clear();
        self.w.clear();
    }
    /// Path ids in lexicographic order (a path before its extensions).
    fn sorted_order_into(&self, order: &mut Vec<u32>, stack: &mut Vec<(usize, usize, usize)>) {
        order.clear();
        order.extend(0..self.len() as u32);
        self.lex_sort(order, stack);
    }

    /// Sorts path ids lexicographically, most significant item first: each
    /// group of paths equal up to depth `d` is ordered by its item at `d` (a
    /// cheap integer key) and only runs that still tie go one level deeper.
    /// Comparing whole paths instead rescans their shared prefixes, which in
    /// dense data are most of each path. Equal paths may end up in any order:
    /// they build the same nodes, so the tree is determined.
    fn lex_sort(&self, order: &mut [u32], stack: &mut Vec<(usize, usize, usize)>) {
        let key = |p: u32, d: usize| -> u64 {
            let (s, e) = (self.off[p as usize], self.off[p as usize + 1]);
            if s + d < e {
                self.items[s + d] as u64 + 1
            } else {
                0 // the path ended: before every extension
            }
        };
        let (mut keys, mut bucket, mut tmp) = (Vec::new(), Vec::<usize>::new(), Vec::new());
        stack.clear();
        stack.push((0, order.len(), 0));
        while let Some((a, b, d)) = stack.pop() {
            let run = &mut order[a..b];
            if run.len() <= 16 {
                run.sort_unstable_by(|&x, &y| {
                    let (px, py) = (self.get(x as usize), self.get(y as usize));
                    px[d.min(px.len())..].cmp(&py[d.min(py.len())..])
                });
                continue;
            }
            // Large groups over a small key range (the top-level database,
            // big conditional ones): a counting sort, linear, with the key of
            // each path read once.
            keys.clear();
            keys.extend(run.iter().map(|&p| key(p, d) as u32));
            let max_key = keys.iter().copied().max().unwrap_or(0) as usize;
            if run.len() >= 256 && max_key <= 4 * run.len() {
                bucket.clear();
                bucket.resize(max_key + 2, 0);
                for &k in keys.iter() {
                    bucket[k as usize + 1] += 1;
                }
                for k in 0..=max_key {
                    bucket[k + 1] += bucket[k];
                }
                tmp.clear();
                tmp.resize(run.len(), 0);
                let mut next = bucket.clone();
                for (&p, &k) in run.iter().zip(keys.iter()) {
                    tmp[next[k as usize]] = p;
                    next[k as usize] += 1;
                }
                run.copy_from_slice(&tmp);
                // Key 0 (ended paths) needs no further order.
                for k in 1..=max_key {
                    let (i, j) = (bucket[k], bucket[k + 1]);
                    if j - i > 1 {
                        stack.push((a + i, a + j, d + 1));
                    }
                }
                continue;
            }
            run.sort_unstable_by_key(|&p| key(p, d));
            let mut i = 0;
            while i < run.len() {
                let k = key(run[i], d);
                let mut j = i + 1;
                while j < run.len() && key(run[j], d) == k {
                    j += 1;
                }
                if k != 0 && j - i > 1 {
                    stack.push((a + i, a + j, d + 1));
                }
                i = j;
            }
        }
    }
}

/// An FP-tree in flat arrays. Node 0 is the root. `support[i]` is the total
/// count of local item `i`; `head` lists each item's nodes (CSR by item).
#[derive(Default)]
struct Tree {
    item: Vec<u32>,
    count: Vec<u64>,
    parent: Vec<u32>,
    support: Vec<u64>,
    head_off: Vec<u32>,
    head: Vec<u32>,
}

impl Tree {
    /// Builds the trie of `paths` visited in lexicographic `order`: a path
    /// shares the nodes of its common prefix with the previous path.
    fn build(paths: &Paths, order: &[u32], n_items: usize) -> Tree {
        let mut t = Tree::default();
        t.build_into(paths, order, n_items, &mut Vec::new(), &mut Vec::new());
        t
    }

    /// [`Tree::build`] into this tree's buffers (kept from an earlier use, so
    /// the recursion does not allocate at every node); `stack` and `fill`
    /// are scratch.
    fn build_into(
        &mut self,
        paths: &Paths,
        order: &[u32],
        n_items: usize,
        stack: &mut Vec<u32>,
        fill: &mut Vec<u32>,
    ) {
        let Tree {
            item,
            count,
            parent,
            support,
            head_off,
            head,
        } = self;
        item.clear();
        count.clear();
        parent.clear();
        item.push(u32::MAX);
        count.push(0);
        parent.push(0);
        support.clear();
        support.resize(n_items, 0);
        stack.clear();
        let mut prev: &[u32] = &[];
        for &p in order {
            let path = paths.get(p as usize);
            let w = paths.w[p as usize];
            let common = path.iter().zip(prev).take_while(|(a, b)| a == b).count();
            stack.truncate(common);
            for &node in stack.iter() {
                count[node as usize] += w;
            }
            for &it in &path[common..] {
                let node = item.len() as u32;
                let par = stack.last().copied().unwrap_or(0);
                item.push(it);
                count.push(w);
                parent.push(par);
                stack.push(node);
            }
            for &it in path {
                support[it as usize] += w;
            }
            prev = path;
        }
        // Nodes by item, by counting sort.
        head_off.clear();
        head_off.resize(n_items + 1, 0);
        for &it in &item[1..] {
            head_off[it as usize + 1] += 1;
        }
        for i in 0..n_items {
            head_off[i + 1] += head_off[i];
        }
        fill.clear();
        fill.extend_from_slice(head_off);
        head.clear();
        head.resize(item.len() - 1, 0);
        for (node, &it) in item.iter().enumerate().skip(1) {
            head[fill[it as usize] as usize] = node as u32;
            fill[it as usize] += 1;
        }
    }

    /// One chain root -> item 0 -> item 1 -> ... (node k + 1 holds item k).
    fn is_single_path(&self) -> bool {
        self.item.len() == self.support.len() + 1
            && (1..self.item.len())
                .all(|v| self.parent[v] as usize == v - 1 && self.item[v] as usize == v - 1)
    }

    fn nodes_of(&self, i: usize) -> &[u32] {
        &self.head[self.head_off[i] as usize..self.head_off[i + 1] as usize]
    }
}

/// The recoded, merged database: items by rank (0 = most frequent).
struct Prepared {
    n_transactions: u64,
    /// Input column id of each rank.
    item_of_rank: Vec<u32>,
    /// Items in every transaction (perfect extensions of the empty set).
    root_pe: Vec<u32>,
    tree: Tree,
    /// Sparse data: the top level reads the rows, not a tree (`tree` is
    /// then empty).
    rows: Option<TopRows>,
    /// Few ranks: the top level reads row bitmasks (`tree` is then empty).
    masks: Option<MaskDb>,
}

/// The top-level database kept as rows (sparse data: an FP-tree would
/// share few prefixes, and walking it costs a dependent load per step).
struct TopRows {
    paths: Paths,
    col_off: Vec<usize>,
    col_paths: Vec<u32>,
    /// Pair counts of the ranks, `pairs[tri(j) + i]` for `i < j`.
    pairs: Vec<u32>,
    /// Count of each rank.
    support: Vec<u64>,
}

/// Start of row `j` of a strictly lower-triangular matrix.
#[inline]
fn tri(j: usize) -> usize {
    j * j.saturating_sub(1) / 2
}

/// Ranks above which the pair matrix is not built (2048^2 / 2 entries = 8 MB).
const MAX_PAIR_RANKS: usize = 2048;

/// Densest top-level database (frequent occurrences / (rows x ranks))
/// kept as rows: below it, rows share few prefixes (T10I4D100K: 0.03,
/// retail: 0.04; chess, mushroom: 0.3 and more), so a tree would cost its
/// sort and build and save little.
const ROWS_MAX_DENSITY: f64 = 0.1;

/// The pair counts of the ranks over the rows: sum len^2/2 independent
/// increments into a small matrix (the tree walks they replace are the same
/// number of steps, each a dependent load).
fn pair_counts(paths: &Paths, n_ranks: usize) -> Vec<u32> {
    let mut pairs = vec![0u32; tri(n_ranks)];
    for k in 0..paths.len() {
        let path = paths.get(k);
        let w = paths.w[k] as u32;
        for (bi, &b) in path.iter().enumerate() {
            let row = &mut pairs[tri(b as usize)..tri(b as usize) + b as usize];
            for &a in &path[..bi] {
                row[a as usize] += w;
            }
        }
    }
    pairs
}

/// `masks`: whether few ranks may take the bitmask miner (tests turn it
/// off to check the other paths against it).
fn prepare<O: Index, I: Index>(
    indptr: &[O],
    indices: &[I],
    n_items: usize,
    min_count: u64,
    masks: bool,
    cancel: &Cancel,
) -> Result<Prepared> {
    let counts = item_counts(indptr, indices, n_items, cancel)?;
    let n = indptr.len() - 1;
    let mut frequent: Vec<u32> = (0..n_items as u32)
        .filter(|&i| counts[i as usize] >= min_count)
        .collect();
    // Descending support, ties by column id: a fixed order.
    frequent.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    let root_pe: Vec<u32> = frequent
        .iter()
        .copied()
        .filter(|&i| counts[i as usize] == n as u64)
        .collect();
    let item_of_rank: Vec<u32> = frequent
        .iter()
        .copied()
        .filter(|&i| counts[i as usize] != n as u64)
        .collect();
    let mut rank = vec![u32::MAX; n_items];
    for (r, &i) in item_of_rank.iter().enumerate() {
        rank[i as usize] = r as u32;
    }
    let n_ranks = item_of_rank.len();
    if masks && n_ranks <= MASK_MAX_RANKS && n < u32::MAX as usize {
        let support: Vec<u64> = item_of_rank.iter().map(|&i| counts[i as usize]).collect();
        let db = if n_ranks <= 64 {
            MaskDb::One(top_masks(indptr, indices, &rank, support, cancel)?)
        } else {
            MaskDb::Two(top_masks(indptr, indices, &rank, support, cancel)?)
        };
        return Ok(Prepared {
            n_transactions: n as u64,
            item_of_rank,
            root_pe,
            tree: Tree::default(),
            rows: None,
            masks: Some(db),
        });
    }
    let n_occurrences: u64 = item_of_rank.iter().map(|&i| counts[i as usize]).sum();
    let paths = ranked_rows(
        indptr,
        indices,
        &rank,
        n_ranks,
        n_occurrences as usize,
        cancel,
    )?;
    let density = paths.items.len() as f64 / (n.max(1) as f64 * n_ranks.max(1) as f64);
    if (2..=MAX_PAIR_RANKS).contains(&n_ranks)
        && n < u32::MAX as usize
        && density < ROWS_MAX_DENSITY
    {
        let pairs = pair_counts(&paths, n_ranks);
        let support: Vec<u64> = item_of_rank.iter().map(|&i| counts[i as usize]).collect();
        let (col_off, col_paths) = rank_columns(&paths, &support);
        return Ok(Prepared {
            n_transactions: n as u64,
            item_of_rank,
            root_pe,
            tree: Tree::default(),
            rows: Some(TopRows {
                paths,
                col_off,
                col_paths,
                pairs,
                support,
            }),
            masks: None,
        });
    }
    let mut order = Vec::new();
    paths.sorted_order_into(&mut order, &mut Vec::new());
    let tree = Tree::build(&paths, &order, n_ranks);
    Ok(Prepared {
        n_transactions: n as u64,
        item_of_rank,
        root_pe,
        tree,
        rows: None,
        masks: None,
    })
}

/// Rank sets up to this size are sorted by a bitmask per row.
const BITMASK_MAX_RANKS: usize = 4096;

/// The transactions as paths of their frequent items' ranks, ascending
/// (duplicates once, empty rows dropped). With at most 4096 ranks each row
/// is a bitmask read back in order (no comparisons, writes in sequence);
/// beyond, each row is sorted.
fn ranked_rows<O: Index, I: Index>(
    indptr: &[O],
    indices: &[I],
    rank: &[u32],
    n_ranks: usize,
    n_occurrences: usize,
    cancel: &Cancel,
) -> Result<Paths> {
    let n = indptr.len() - 1;
    let chunks = row_chunks(n, 1);
    let mut parts = chunks
        .par_iter()
        .map(|&rows| rank_rows(indptr, indices, rank, n_ranks, rows, cancel))
        .collect::<Result<Vec<_>>>()?;
    if parts.len() == 1 {
        let (off, items) = parts.pop().unwrap_or_default();
        let w = vec![1u64; off.len() - 1];
        return Ok(Paths { off, items, w });
    }
    let mut off = Vec::with_capacity(n + 1);
    off.push(0usize);
    let mut items: Vec<u32> = Vec::with_capacity(n_occurrences);
    for (part_off, part_items) in parts {
        let base = items.len();
        off.extend(part_off[1..].iter().map(|&o| o + base));
        items.extend_from_slice(&part_items);
    }
    let w = vec![1u64; off.len() - 1];
    Ok(Paths { off, items, w })
}

/// [`ranked_rows`] over the rows `rows.0..rows.1`: `(off, items)`.
fn rank_rows<O: Index, I: Index>(
    indptr: &[O],
    indices: &[I],
    rank: &[u32],
    n_ranks: usize,
    rows: (usize, usize),
    cancel: &Cancel,
) -> Result<(Vec<usize>, Vec<u32>)> {
    let mut off = Vec::with_capacity(rows.1 - rows.0 + 1);
    off.push(0usize);
    let (a0, b0) = (
        row_bounds(indptr, rows.0).0,
        row_bounds(indptr, rows.1.max(1) - 1).1,
    );
    let mut items: Vec<u32> = Vec::with_capacity(b0.saturating_sub(a0));
    if n_ranks <= BITMASK_MAX_RANKS {
        let mut words = vec![0u64; n_ranks.div_ceil(64)];
        for t in rows.0..rows.1 {
            if t % 65536 == 0 {
                cancel.check()?;
            }
            let (a, b) = row_bounds(indptr, t);
            let (mut lo, mut hi) = (usize::MAX, 0usize);
            for &i in &indices[a..b] {
                let r = rank[i.to_usize().unwrap_or(0)];
                if r != u32::MAX {
                    let w = (r >> 6) as usize;
                    words[w] |= 1u64 << (r & 63);
                    lo = lo.min(w);
                    hi = hi.max(w);
                }
            }
            if lo <= hi {
                for (w, word) in words.iter_mut().enumerate().take(hi + 1).skip(lo) {
                    let mut bits = std::mem::take(word);
                    while bits != 0 {
                        items.push(((w as u32) << 6) | bits.trailing_zeros());
                        bits &= bits - 1;
                    }
                }
                off.push(items.len());
            }
        }
    } else {
        let mut stamp = vec![u32::MAX; n_ranks];
        for t in rows.0..rows.1 {
            if t % 65536 == 0 {
                cancel.check()?;
            }
            let (a, b) = row_bounds(indptr, t);
            let start = items.len();
            for &i in &indices[a..b] {
                let r = rank[i.to_usize().unwrap_or(0)];
                if r != u32::MAX && stamp[r as usize] != t as u32 {
                    stamp[r as usize] = t as u32;
                    items.push(r);
                }
            }
            if items.len() > start {
                items[start..].sort_unstable();
                off.push(items.len());
            }
        }
    }
    cancel.check()?;
    Ok((off, items))
}

/// The columns of ranked rows: `col_paths[col_off[r]..col_off[r + 1]]` are
/// the paths holding rank `r`, ascending. `support[r]` is the column length.
fn rank_columns(paths: &Paths, support: &[u64]) -> (Vec<usize>, Vec<u32>) {
    let mut col_off = Vec::with_capacity(support.len() + 1);
    col_off.push(0usize);
    for &c in support {
        let last = *col_off.last().unwrap_or(&0);
        col_off.push(last + c as usize);
    }
    let mut fill: Vec<usize> = col_off[..support.len()].to_vec();
    let mut col_paths = vec![0u32; *col_off.last().unwrap_or(&0)];
    for k in 0..paths.len() {
        for &r in paths.get(k) {
            let f = &mut fill[r as usize];
            if let Some(slot) = col_paths.get_mut(*f) {
                *slot = k as u32;
            }
            *f += 1;
        }
    }
    (col_off, col_paths)
}

/// Ranks up to which the top-level database is kept as row bitmasks (two
/// 64-bit words): dense data with few frequent items (chess, mushroom) and
/// sparse data with few frequent items (retail at 1%).
const MASK_MAX_RANKS: usize = 128;

/// A transaction over the ranks as a bitmask (bit `r` of word `r / 64`).
type Mask<const W: usize> = [u64; W];

/// A row bitmask, how many transactions have it and, for the closed and
/// maximal miners (`P = W`), the AND of those transactions' whole bitmasks
/// (every rank, before any cut): the closure test of [`Miner::mask_node`].
/// The frequent-itemset miner carries no payload (`P = 0`).
type MaskRow<const W: usize, const P: usize = 0> = (Mask<W>, u64, [u64; P]);

/// The bits below `j`.
#[inline]
fn mask_below<const W: usize>(j: usize) -> Mask<W> {
    let mut m = [0u64; W];
    for (w, word) in m.iter_mut().enumerate() {
        let lo = w * 64;
        *word = if j >= lo + 64 {
            u64::MAX
        } else if j > lo {
            (1u64 << (j - lo)) - 1
        } else {
            0
        };
    }
    m
}

#[inline]
fn mask_and<const W: usize>(a: &Mask<W>, b: &Mask<W>) -> Mask<W> {
    let mut m = [0u64; W];
    for w in 0..W {
        m[w] = a[w] & b[w];
    }
    m
}

/// `a &= b`, word by word.
#[inline]
fn and_into<const P: usize>(a: &mut [u64; P], b: &[u64; P]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x &= y;
    }
}

/// The set bits of `m`, ascending.
fn mask_ranks<const W: usize>(m: &Mask<W>) -> impl Iterator<Item = usize> + '_ {
    m.iter().enumerate().flat_map(|(w, &word)| {
        let mut bits = word;
        std::iter::from_fn(move || {
            (bits != 0).then(|| {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                w * 64 + b
            })
        })
    })
}

#[inline]
fn mask_has<const W: usize>(m: &Mask<W>, r: usize) -> bool {
    m[r >> 6] >> (r & 63) & 1 == 1
}

#[inline]
fn mask_is_empty<const W: usize>(m: &Mask<W>) -> bool {
    m.iter().all(|&w| w == 0)
}

/// Merges rows with the same mask (summing their counts): the conditional
/// databases of dense data hold few distinct rows. Counts are exact sums, so
/// the result does not depend on the order the rows came in.
fn merge_rows<const W: usize, const P: usize>(rows: &mut Vec<MaskRow<W, P>>) {
    if rows.len() < 2 {
        return;
    }
    if rows.len() > 64 {
        // Linear, in first-seen order: a sort of the 88k rows of retail
        // costs more than the mining.
        let mut first: FxHashMap<Mask<W>, u32> = FxHashMap::default();
        first.reserve(rows.len().min(1 << 16));
        let mut kept = 0usize;
        for k in 0..rows.len() {
            let row = rows[k];
            match first.entry(row.0) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    let into = &mut rows[*e.get() as usize];
                    into.1 += row.1;
                    and_into(&mut into.2, &row.2);
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(kept as u32);
                    rows[kept] = row;
                    kept += 1;
                }
            }
        }
        rows.truncate(kept);
        return;
    }
    rows.sort_unstable_by_key(|r| r.0);
    let mut kept = 0;
    for k in 1..rows.len() {
        if rows[k].0 == rows[kept].0 {
            let (w, full) = (rows[k].1, rows[k].2);
            rows[kept].1 += w;
            and_into(&mut rows[kept].2, &full);
        } else {
            kept += 1;
            rows[kept] = rows[k];
        }
    }
    rows.truncate(kept + 1);
}

/// The top-level database as distinct row bitmasks (at most `64 W` ranks):
/// no tree, no path sort; a conditional database is a filter and an AND
/// over a few hundred rows.
struct TopMasks<const W: usize> {
    rows: Vec<MaskRow<W>>,
    /// `col_rows[col_off[r]..col_off[r + 1]]`: the rows holding rank `r`.
    col_off: Vec<usize>,
    col_rows: Vec<u32>,
    /// Count of each rank.
    support: Vec<u64>,
}

/// Row bitmasks of one width.
enum MaskDb {
    One(TopMasks<1>),
    Two(TopMasks<2>),
}

/// The nonempty row bitmasks of the rows `rows.0..rows.1` (ranks mapped
/// through `rank`, unranked items dropped, duplicates once).
fn mask_rows<const W: usize, O: Index, I: Index>(
    indptr: &[O],
    indices: &[I],
    rank: &[u32],
    rows: (usize, usize),
    cancel: &Cancel,
) -> Result<Vec<MaskRow<W>>> {
    let mut out = Vec::with_capacity(rows.1 - rows.0);
    for t in rows.0..rows.1 {
        if t % 65536 == 0 {
            cancel.check()?;
        }
        let (a, b) = row_bounds(indptr, t);
        let mut m = [0u64; W];
        for &i in &indices[a..b] {
            let r = rank[i.to_usize().unwrap_or(0)];
            if r != u32::MAX {
                m[(r >> 6) as usize] |= 1u64 << (r & 63);
            }
        }
        if !mask_is_empty(&m) {
            out.push((m, 1, []));
        }
    }
    Ok(out)
}

/// [`TopMasks`] of the CSR rows (validated by [`item_counts`] before).
fn top_masks<const W: usize, O: Index, I: Index>(
    indptr: &[O],
    indices: &[I],
    rank: &[u32],
    support: Vec<u64>,
    cancel: &Cancel,
) -> Result<TopMasks<W>> {
    let n = indptr.len() - 1;
    let parts = row_chunks(n, 1)
        .par_iter()
        .map(|&rows| {
            let mut part = mask_rows::<W, O, I>(indptr, indices, rank, rows, cancel)?;
            merge_rows(&mut part);
            Ok(part)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut rows: Vec<MaskRow<W>> = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for part in &parts {
        rows.extend_from_slice(part);
    }
    if parts.len() > 1 {
        merge_rows(&mut rows);
    }
    cancel.check()?;
    let n_ranks = support.len();
    let mut col_off = vec![0usize; n_ranks + 1];
    for (m, _, _) in &rows {
        for (w, &word) in m.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                col_off[w * 64 + bits.trailing_zeros() as usize + 1] += 1;
                bits &= bits - 1;
            }
        }
    }
    for r in 0..n_ranks {
        col_off[r + 1] += col_off[r];
    }
    let mut fill: Vec<usize> = col_off[..n_ranks].to_vec();
    let mut col_rows = vec![0u32; col_off[n_ranks]];
    for (k, (m, _, _)) in rows.iter().enumerate() {
        for (w, &word) in m.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let f = &mut fill[w * 64 + bits.trailing_zeros() as usize];
                if let Some(slot) = col_rows.get_mut(*f) {
                    *slot = k as u32;
                }
                *f += 1;
                bits &= bits - 1;
            }
        }
    }
    Ok(TopMasks {
        rows,
        col_off,
        col_rows,
        support,
    })
}

/// The class `core ∪ S` for `S ⊆ pe` with `|core ∪ S| <= max_len`, nonempty:
/// its number of itemsets and their total number of items
/// (`sum_k C(n_pe, k) * (core_len + k)`), both saturating.
fn class_totals(core_len: usize, n_pe: usize, max_len: usize) -> (u64, u64) {
    if core_len > max_len {
        return (0, 0);
    }
    let kmax = n_pe.min(max_len - core_len);
    let (mut sets, mut items): (u128, u128) = (0, 0);
    let mut binom: u128 = 1; // C(n_pe, k)
    for k in 0..=kmax {
        if k > 0 {
            binom = binom * (n_pe - k + 1) as u128 / k as u128;
        }
        if core_len + k > 0 {
            sets = sets.saturating_add(binom);
        }
        items = items.saturating_add(binom.saturating_mul((core_len + k) as u128));
        if sets > u64::MAX as u128 {
            return (u64::MAX, u64::MAX);
        }
    }
    (sets as u64, items.min(u64::MAX as u128) as u64)
}

struct Miner<'a> {
    p: MineParams,
    max_len: usize,
    item_of_rank: &'a [u32],
    emitted: &'a AtomicU64,
    cancel: &'a Cancel,
}

/// Per-recursion scratch (the growing itemset and its perfect extensions,
/// both as input column ids), and the buffers of finished recursion nodes
/// for the next ones to reuse.
struct Scratch {
    core: Vec<u32>,
    pe: Vec<u32>,
    buf: Vec<u32>,
    spare: Vec<NodeBufs>,
}

impl Scratch {
    fn new(pe: Vec<u32>) -> Self {
        Scratch {
            core: Vec::new(),
            pe,
            buf: Vec::new(),
            spare: Vec::new(),
        }
    }
}

/// The working memory of one recursion node.
#[derive(Default)]
struct NodeBufs {
    cnt: Vec<u64>,
    local: Vec<u32>,
    next_global: Vec<u32>,
    paths: Paths,
    order: Vec<u32>,
    stack: Vec<u32>,
    fill: Vec<u32>,
    runs: Vec<(usize, usize, usize)>,
    cond: Tree,
}

impl Miner<'_> {
    fn count(&self, n: u64) -> Result<()> {
        // No limit, no shared counter: threads would contend on it at every node.
        let Some(limit) = self.p.max_itemsets else {
            return Ok(());
        };
        let before = self.emitted.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > limit {
            return Err(CoreError::invalid(format!(
                "the result would exceed max_itemsets={limit} itemsets ({} so far); raise \
                 min_support, set max_len, use fpclosed/fpmax (kind='closed'/'maximal'), \
                 output='count', or raise max_itemsets",
                before.saturating_add(n)
            )));
        }
        Ok(())
    }

    /// Reports the class of one recursion node: `core ∪ S` for `S ⊆ pe`.
    fn emit(&self, s: &mut Scratch, support: u64, leaf: bool, out: &mut Itemsets) -> Result<()> {
        match self.p.kind {
            Kind::All => {
                let (n, n_items) = class_totals(s.core.len(), s.pe.len(), self.max_len);
                if n == 0 {
                    return Ok(());
                }
                self.count(n)?;
                if self.p.count_only {
                    out.n_itemsets += n;
                    return Ok(());
                }
                let room = self.max_len.saturating_sub(s.core.len()).min(s.pe.len());
                // Exact room for the class (one growth step, not several);
                // a huge class just grows as it goes.
                if n_items <= 1 << 26 {
                    let _ = out.items.try_reserve(n_items as usize);
                    let _ = out.offsets.try_reserve(n as usize);
                    let _ = out.counts.try_reserve(n as usize);
                }
                s.buf.clear();
                s.buf.extend_from_slice(&s.core);
                s.buf.sort_unstable();
                subsets(&s.pe, 0, room, &mut s.buf, support, out);
            }
            Kind::Closed | Kind::Maximal => {
                if self.p.kind == Kind::Maximal && !leaf {
                    return Ok(());
                }
                if s.core.is_empty() && s.pe.is_empty() {
                    return Ok(());
                }
                self.count(1)?;
                s.buf.clear();
                s.buf.extend_from_slice(&s.core);
                s.buf.extend_from_slice(&s.pe);
                s.buf.sort_unstable();
                out.push(&s.buf, support);
            }
        }
        Ok(())
    }

    /// Mines item `j` of `tree` (local ids; `global[i]` = input column id of
    /// local item `i`) with `s.core`/`s.pe` as the current prefix.
    fn mine_item(
        &self,
        tree: &Tree,
        global: &[u32],
        j: usize,
        s: &mut Scratch,
        out: &mut Itemsets,
        rows: Option<&TopRows>,
    ) -> Result<()> {
        self.cancel.check()?;
        let mut b = s.spare.pop().unwrap_or_default();
        let result = self.mine_item_with(tree, global, j, s, out, &mut b, rows);
        s.spare.push(b);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn mine_item_with(
        &self,
        tree: &Tree,
        global: &[u32],
        j: usize,
        s: &mut Scratch,
        out: &mut Itemsets,
        b: &mut NodeBufs,
        rows: Option<&TopRows>,
    ) -> Result<()> {
        let sup = rows.map_or_else(|| tree.support[j], |r| r.support[j]);
        // Conditional supports of the items above j (only smaller ids).
        let cnt = &mut b.cnt;
        cnt.clear();
        if let Some(r) = rows {
            cnt.extend(r.pairs[tri(j)..tri(j) + j].iter().map(|&c| c as u64));
        } else {
            cnt.resize(j, 0);
            for &v in tree.nodes_of(j) {
                let w = tree.count[v as usize];
                let mut u = tree.parent[v as usize];
                while u != 0 {
                    cnt[tree.item[u as usize] as usize] += w;
                    u = tree.parent[u as usize];
                }
            }
        }
        let core_len = s.core.len();
        let pe_len = s.pe.len();
        s.core.push(global[j]);
        let local = &mut b.local;
        local.clear();
        local.resize(j, u32::MAX);
        let next_global = &mut b.next_global;
        next_global.clear();
        for i in 0..j {
            if cnt[i] == sup {
                s.pe.push(global[i]);
            } else if cnt[i] >= self.p.min_count {
                local[i] = next_global.len() as u32;
                next_global.push(global[i]);
            }
        }
        let leaf = next_global.is_empty();
        let result = self.emit(s, sup, leaf, out).and_then(|()| {
            let recurse = !leaf && (self.p.kind != Kind::All || s.core.len() < self.max_len);
            if !recurse {
                return Ok(());
            }
            let paths = &mut b.paths;
            paths.clear();
            if let Some(r) = rows {
                // The rows holding j, cut before j (ranks ascend in a row).
                for &pi in &r.col_paths[r.col_off[j]..r.col_off[j + 1]] {
                    let row = r.paths.get(pi as usize);
                    for &i in row.iter().take_while(|&&i| (i as usize) < j) {
                        let l = local[i as usize];
                        if l != u32::MAX {
                            paths.items.push(l);
                        }
                    }
                    paths.push_end(r.paths.w[pi as usize]);
                }
            } else {
                for &v in tree.nodes_of(j) {
                    let start = paths.items.len();
                    let mut u = tree.parent[v as usize];
                    while u != 0 {
                        let l = local[tree.item[u as usize] as usize];
                        if l != u32::MAX {
                            paths.items.push(l);
                        }
                        u = tree.parent[u as usize];
                    }
                    paths.items[start..].reverse();
                    paths.push_end(tree.count[v as usize]);
                }
            }
            paths.sorted_order_into(&mut b.order, &mut b.runs);
            let cond = &mut b.cond;
            cond.build_into(
                paths,
                &b.order,
                next_global.len(),
                &mut b.stack,
                &mut b.fill,
            );
            if cond.is_single_path() {
                // Every item above a path node is a perfect extension of it:
                // each node is one class, no further trees needed.
                for k in (0..next_global.len()).rev() {
                    self.cancel.check()?;
                    let (c, p) = (s.core.len(), s.pe.len());
                    s.core.push(next_global[k]);
                    s.pe.extend_from_slice(&next_global[..k]);
                    let r = self.emit(s, cond.count[k + 1], true, out);
                    s.core.truncate(c);
                    s.pe.truncate(p);
                    r?;
                }
                return Ok(());
            }
            for k in (0..next_global.len()).rev() {
                self.mine_item(cond, next_global, k, s, out, None)?;
            }
            Ok(())
        });
        s.core.truncate(core_len);
        s.pe.truncate(pe_len);
        result
    }
}

/// Scratch of the bitmask miner: conditional supports, and row buffers of
/// finished recursion nodes for the next ones to reuse.
struct MaskScratch<const W: usize, const P: usize> {
    cnt: Vec<u64>,
    spare: Vec<Vec<MaskRow<W, P>>>,
    /// The ranks of the current prefix (core and perfect extensions).
    prefix: Mask<W>,
}

impl<const W: usize, const P: usize> MaskScratch<W, P> {
    fn new() -> Self {
        MaskScratch {
            cnt: vec![0; 64 * W],
            spare: Vec::new(),
            prefix: [0; W],
        }
    }
}

/// The bitmask miner: the same recursion, classes and output order as
/// [`Miner::mine_item`] (items by rank, perfect extensions ascending,
/// children from the highest rank down), over conditional databases of
/// merged row bitmasks instead of conditional trees.
impl Miner<'_> {
    /// The top-level items, from the least frequent up, one part each.
    /// With `P = W` (closed and maximal), subtrees whose prefix has an item
    /// of a higher rank in its closure are skipped ([`Miner::mask_node`]).
    fn mask_top<const W: usize, const P: usize>(
        &self,
        t: &TopMasks<W>,
        root_pe: &[u32],
    ) -> Result<Vec<Itemsets>> {
        (0..t.support.len())
            .into_par_iter()
            .rev()
            .map_init(
                || (Scratch::new(root_pe.to_vec()), MaskScratch::<W, P>::new()),
                |(s, ms), j| -> Result<Itemsets> {
                    let mut part = Itemsets::new();
                    let below = mask_below::<W>(j);
                    let mut rows = ms.spare.pop().unwrap_or_default();
                    rows.clear();
                    let mut dropped = [u64::MAX; P];
                    for &k in &t.col_rows[t.col_off[j]..t.col_off[j + 1]] {
                        let (m, w, _) = &t.rows[k as usize];
                        let full: [u64; P] = std::array::from_fn(|i| m[i]);
                        let c = mask_and(m, &below);
                        if !mask_is_empty(&c) {
                            rows.push((c, *w, full));
                        } else {
                            and_into(&mut dropped, &full);
                        }
                    }
                    let r = self.mask_node(j, t.support[j], &rows, dropped, s, &mut part, ms);
                    ms.spare.push(rows);
                    r.map(|()| part)
                },
            )
            .collect()
    }

    /// Mines rank `j` after the prefix in `s`: `sup` transactions hold it,
    /// and `rows` are those of them with items left, cut to the ranks below
    /// `j` that may still extend the prefix.
    ///
    /// With `P = W`, `dropped` is the AND of the whole bitmasks of the
    /// transactions left out of `rows` (nothing left below `j`), so the
    /// closure of the prefix (the items in all its transactions) is that AND
    /// with the rows' payloads. An item of that closure ranked above `j` and
    /// not in the prefix is in every transaction of every itemset of this
    /// subtree: none of them is closed (each is found, with that item, in
    /// the subtree of a higher rank), so the subtree is skipped. Every node
    /// that passes emits its closure, once (LCM's prefix-preserving closure
    /// extension, on FP-growth's recursion).
    #[allow(clippy::too_many_arguments)]
    fn mask_node<const W: usize, const P: usize>(
        &self,
        j: usize,
        sup: u64,
        rows: &[MaskRow<W, P>],
        dropped: [u64; P],
        s: &mut Scratch,
        out: &mut Itemsets,
        ms: &mut MaskScratch<W, P>,
    ) -> Result<()> {
        self.cancel.check()?;
        if P > 0 {
            let mut closure = dropped;
            for (_, _, full) in rows {
                and_into(&mut closure, full);
            }
            let upto = mask_below::<W>(j + 1);
            if (0..P).any(|i| closure[i] & !upto[i] & !ms.prefix[i] != 0) {
                return Ok(());
            }
        }
        let prefix = ms.prefix;
        ms.prefix[j >> 6] |= 1u64 << (j & 63);
        let cnt = &mut ms.cnt[..j];
        cnt.fill(0);
        for (m, w, _) in rows {
            for (wi, &word) in m.iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    cnt[wi * 64 + bits.trailing_zeros() as usize] += w;
                    bits &= bits - 1;
                }
            }
        }
        let core_len = s.core.len();
        let pe_len = s.pe.len();
        s.core.push(self.item_of_rank[j]);
        let mut next = [0u64; W];
        for (i, &c) in cnt.iter().enumerate() {
            if c == sup {
                s.pe.push(self.item_of_rank[i]);
                ms.prefix[i >> 6] |= 1u64 << (i & 63);
            } else if c >= self.p.min_count {
                next[i >> 6] |= 1u64 << (i & 63);
            }
        }
        let leaf = mask_is_empty(&next);
        let result = self.emit(s, sup, leaf, out).and_then(|()| {
            let recurse = !leaf && (self.p.kind != Kind::All || s.core.len() < self.max_len);
            if !recurse {
                return Ok(());
            }
            if self.p.kind == Kind::Maximal {
                // Look-ahead (MAFIA's HUT): when the prefix with every
                // candidate item is frequent, it holds every itemset of the
                // subtree, so it is the subtree's only possible maximal one.
                let hut: u64 = rows
                    .iter()
                    .filter(|(m, _, _)| mask_and(m, &next) == next)
                    .map(|(_, w, _)| w)
                    .sum();
                if hut >= self.p.min_count {
                    self.count(1)?;
                    s.buf.clear();
                    s.buf.extend_from_slice(&s.core);
                    s.buf.extend_from_slice(&s.pe);
                    s.buf
                        .extend(mask_ranks(&next).map(|r| self.item_of_rank[r]));
                    s.buf.sort_unstable();
                    out.push(&s.buf, hut);
                    return Ok(());
                }
            }
            let mut cond = ms.spare.pop().unwrap_or_default();
            cond.clear();
            cond.extend(rows.iter().filter_map(|(m, w, full)| {
                let c = mask_and(m, &next);
                (!mask_is_empty(&c)).then_some((c, *w, *full))
            }));
            merge_rows(&mut cond);
            let mut sub = ms.spare.pop().unwrap_or_default();
            let r = self.mask_children(&cond, &next, s, out, &mut sub, ms);
            ms.spare.push(sub);
            ms.spare.push(cond);
            r
        });
        s.core.truncate(core_len);
        s.pe.truncate(pe_len);
        ms.prefix = prefix;
        result
    }

    /// Mines every rank of `items`, from the highest down, in the
    /// conditional database `cond` of the prefix in `s`.
    fn mask_children<const W: usize, const P: usize>(
        &self,
        cond: &[MaskRow<W, P>],
        items: &Mask<W>,
        s: &mut Scratch,
        out: &mut Itemsets,
        sub: &mut Vec<MaskRow<W, P>>,
        ms: &mut MaskScratch<W, P>,
    ) -> Result<()> {
        for w in (0..W).rev() {
            let mut bits = items[w];
            while bits != 0 {
                let b = 63 - bits.leading_zeros() as usize;
                bits &= !(1u64 << b);
                let k = w * 64 + b;
                let below = mask_below::<W>(k);
                sub.clear();
                let mut sup = 0u64;
                let mut dropped = [u64::MAX; P];
                for (m, c, full) in cond {
                    if mask_has(m, k) {
                        sup += c;
                        let cut = mask_and(m, &below);
                        if !mask_is_empty(&cut) {
                            sub.push((cut, *c, *full));
                        } else {
                            and_into(&mut dropped, full);
                        }
                    }
                }
                self.mask_node(k, sup, sub, dropped, s, out, ms)?;
            }
        }
        Ok(())
    }
}

/// Appends `buf ∪ S` for every `S ⊆ pe[from..]` with `|S| <= room`
/// (`buf` nonempty or `S` nonempty). `buf` is kept sorted (each item of `S`
/// inserted in place), so every itemset is copied out already sorted.
fn subsets(
    pe: &[u32],
    from: usize,
    room: usize,
    buf: &mut Vec<u32>,
    support: u64,
    out: &mut Itemsets,
) {
    if !buf.is_empty() {
        out.items.extend_from_slice(buf);
        out.offsets.push(out.items.len() as u64);
        out.counts.push(support);
        out.n_itemsets += 1;
    }
    if room == 0 {
        return;
    }
    for k in from..pe.len() {
        let x = pe[k];
        let at = buf.partition_point(|&y| y < x);
        buf.insert(at, x);
        subsets(pe, k + 1, room - 1, buf, support, out);
        buf.remove(at);
    }
}

/// Keeps the sets that are not a strict subset of another set of the same
/// group. Sets are sorted item lists; `group[k]` its group key. Returns one
/// flag per set.
fn not_subsumed(sets: &Itemsets, group: Option<&[u64]>, cancel: &Cancel) -> Result<Vec<bool>> {
    let n = sets.len();
    let key = |k: usize| group.map_or(0, |g| g[k]);
    let mut order: Vec<u32> = (0..n as u32).collect();
    // By group, longest first: a strict superset is always seen before.
    order.par_sort_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        key(a)
            .cmp(&key(b))
            .then(sets.get(b).len().cmp(&sets.get(a).len()))
            .then(a.cmp(&b))
    });
    let mut groups: Vec<&[u32]> = Vec::new();
    let mut start = 0;
    for k in 1..=n {
        if k == n || key(order[k] as usize) != key(order[start] as usize) {
            groups.push(&order[start..k]);
            start = k;
        }
    }
    let kept: Vec<Vec<u32>> = groups
        .par_iter()
        .map(|g| -> Result<Vec<u32>> {
            cancel.check()?;
            let mut postings: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
            let mut sig: Vec<u64> = Vec::new();
            let mut accepted: Vec<u32> = Vec::new();
            for (step, &c) in g.iter().enumerate() {
                if step % 4096 == 4095 {
                    cancel.check()?;
                }
                let items = sets.get(c as usize);
                let csig = signature(items);
                let shortest = items
                    .iter()
                    .map(|i| postings.get(i).map_or(&[][..], |v| &v[..]))
                    .min_by_key(|v| v.len())
                    .unwrap_or(&[]);
                let covered = shortest.iter().any(|&a| {
                    csig & !sig[a as usize] == 0
                        && is_subset(items, sets.get(accepted[a as usize] as usize))
                });
                if !covered {
                    let id = accepted.len() as u32;
                    accepted.push(c);
                    sig.push(csig);
                    for &i in items {
                        postings.entry(i).or_default().push(id);
                    }
                }
            }
            Ok(accepted)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut keep = vec![false; n];
    for g in kept {
        for c in g {
            keep[c as usize] = true;
        }
    }
    Ok(keep)
}

#[inline]
fn signature(items: &[u32]) -> u64 {
    items.iter().fold(0u64, |s, &i| s | 1u64 << (i % 64))
}

/// `a ⊆ b` for sorted slices.
fn is_subset(a: &[u32], b: &[u32]) -> bool {
    if a.len() > b.len() {
        return false;
    }
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j == b.len() || b[j] != x {
            return false;
        }
        j += 1;
    }
    true
}

/// Mines frequent (all, closed or maximal) itemsets of the transactions given
/// in CSR form: transaction `t` holds the items `indices[indptr[t]..indptr[t+1]]`
/// (ids in `[0, n_items)`; duplicates count once). Returns the itemsets and
/// the number of transactions. Call inside a pool; the output order depends
/// on the data only.
pub fn mine<O: Index, I: Index>(
    indptr: &[O],
    indices: &[I],
    n_items: usize,
    params: MineParams,
    cancel: &Cancel,
) -> Result<Itemsets> {
    mine_with(indptr, indices, n_items, params, true, cancel)
}

/// [`mine`], with the bitmask miner allowed or not (`masks`, see [`prepare`]).
fn mine_with<O: Index, I: Index>(
    indptr: &[O],
    indices: &[I],
    n_items: usize,
    params: MineParams,
    masks: bool,
    cancel: &Cancel,
) -> Result<Itemsets> {
    if params.min_count == 0 {
        return Err(CoreError::invalid("min_count must be >= 1"));
    }
    if params.max_len == Some(0) {
        return Err(CoreError::invalid("max_len must be None or >= 1"));
    }
    if n_items > u32::MAX as usize - 1 {
        return Err(CoreError::invalid("too many items (more than 2^32 - 2)"));
    }
    let prep = prepare(indptr, indices, n_items, params.min_count, masks, cancel)?;
    let emitted = AtomicU64::new(0);
    let miner = Miner {
        p: params,
        // Closed/maximal mine without the length limit and filter at the end:
        // a long itemset can make a short one non-closed or non-maximal.
        max_len: match params.kind {
            Kind::All => params.max_len.unwrap_or(usize::MAX),
            _ => usize::MAX,
        },
        item_of_rank: &prep.item_of_rank,
        emitted: &emitted,
        cancel,
    };
    let tree = &prep.tree;
    let n_top = prep.item_of_rank.len();
    let mut out = Itemsets::new();
    if prep.n_transactions > 0 {
        // The class of the empty prefix: subsets of the items in every transaction.
        let mut s = Scratch::new(prep.root_pe.clone());
        miner.emit(&mut s, prep.n_transactions, n_top == 0, &mut out)?;
    }
    // The bitmask miner skips the subtrees without closed itemsets (the
    // closed and maximal ones); the tree miner emits every class and the
    // filter below keeps the closed (maximal) ones.
    let pruned = params.kind != Kind::All;
    let parts: Vec<Itemsets> = match &prep.masks {
        Some(MaskDb::One(t)) if pruned => miner.mask_top::<1, 1>(t, &prep.root_pe)?,
        Some(MaskDb::Two(t)) if pruned => miner.mask_top::<2, 2>(t, &prep.root_pe)?,
        Some(MaskDb::One(t)) => miner.mask_top::<1, 0>(t, &prep.root_pe)?,
        Some(MaskDb::Two(t)) => miner.mask_top::<2, 0>(t, &prep.root_pe)?,
        None => (0..n_top)
            .into_par_iter()
            .rev()
            .map_init(
                || Scratch::new(prep.root_pe.clone()),
                |s, j| -> Result<Itemsets> {
                    let mut part = Itemsets::new();
                    miner.mine_item(
                        tree,
                        miner.item_of_rank,
                        j,
                        s,
                        &mut part,
                        prep.rows.as_ref(),
                    )?;
                    Ok(part)
                },
            )
            .collect::<Result<Vec<_>>>()?,
    };
    // One exact allocation for the concatenation; each part is freed as
    // soon as it is copied.
    out.items.reserve(parts.iter().map(|p| p.items.len()).sum());
    let n_sets: usize = parts.iter().map(|p| p.counts.len()).sum();
    out.offsets.reserve(n_sets);
    out.counts.reserve(n_sets);
    for part in parts {
        out.append(part);
    }
    if params.kind == Kind::All {
        return Ok(out);
    }
    let keep = match params.kind {
        // Every class the bitmask miner emits is closed, and only once.
        Kind::Closed if prep.masks.is_some() => vec![true; out.len()],
        Kind::Closed => not_subsumed(&out, Some(&out.counts), cancel)?,
        // Maximal: the candidates (leaves, and the bitmask miner's look-ahead
        // sets) that no other candidate contains.
        _ => not_subsumed(&out, None, cancel)?,
    };
    let max_len = params.max_len.unwrap_or(usize::MAX);
    let mut kept = Itemsets::new();
    for (k, &keep) in keep.iter().enumerate() {
        let items = out.get(k);
        if keep && items.len() <= max_len {
            if params.count_only {
                kept.n_itemsets += 1;
            } else {
                kept.push(items, out.counts[k]);
            }
        }
    }
    Ok(kept)
}

/// The metrics of mlxtend's `association_rules`, in its column order.
pub const METRICS: [&str; 12] = [
    "antecedent support",
    "consequent support",
    "support",
    "confidence",
    "lift",
    "representativity",
    "leverage",
    "conviction",
    "zhangs_metric",
    "jaccard",
    "certainty",
    "kulczynski",
];

/// All 12 metrics of a rule from the supports of the antecedent, the
/// consequent and their union, with mlxtend's formulas operation for
/// operation (`n` is its `num_itemsets`, which cancels out).
#[allow(clippy::eq_op)] // representativity is n / n in mlxtend (NaN for n = 0)
pub fn rule_metrics(s_ac: f64, s_a: f64, s_c: f64, n: f64) -> [f64; 12] {
    let conf = (s_ac * n) / (s_a * n);
    let leverage = s_ac - s_a * s_c;
    let conviction = if conf < 1.0 {
        (1.0 - s_c) / (1.0 - conf)
    } else {
        f64::INFINITY
    };
    let denom = f64::max(s_ac * (1.0 - s_a), s_a * (s_c - s_ac));
    let zhang = if denom == 0.0 { 0.0 } else { leverage / denom };
    let jaccard = s_ac / (s_a + s_c - s_ac);
    let certainty = if 1.0 - s_c == 0.0 {
        0.0
    } else {
        (conf - s_c) / (1.0 - s_c)
    };
    let kulc = ((s_ac * n) / (s_a * n) + (s_ac * n) / (s_c * n)) / 2.0;
    [
        s_a,
        s_c,
        s_ac,
        conf,
        conf / s_c,
        n / n,
        leverage,
        conviction,
        zhang,
        jaccard,
        certainty,
        kulc,
    ]
}

/// Parameters of [`association_rules`]. `metric` indexes [`METRICS`].
#[derive(Debug, Clone, Copy)]
pub struct RuleParams {
    pub metric: usize,
    pub min_threshold: f64,
    pub support_only: bool,
    pub max_antecedent_len: Option<usize>,
    pub max_consequent_len: Option<usize>,
    pub num_itemsets: f64,
    pub max_rules: Option<u64>,
    pub count_only: bool,
}

/// Rules as two list columns plus one column per metric (`metrics[m][r]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub ant_offsets: Vec<u64>,
    pub ant_items: Vec<u32>,
    pub con_offsets: Vec<u64>,
    pub con_items: Vec<u32>,
    pub metrics: Vec<Vec<f64>>,
    pub n_rules: u64,
}

impl Rules {
    fn new() -> Self {
        Rules {
            ant_offsets: vec![0],
            con_offsets: vec![0],
            metrics: vec![Vec::new(); 12],
            ..Default::default()
        }
    }
    fn append(&mut self, o: Rules) {
        let (a, c) = (self.ant_items.len() as u64, self.con_items.len() as u64);
        self.ant_items.extend_from_slice(&o.ant_items);
        self.con_items.extend_from_slice(&o.con_items);
        self.ant_offsets
            .extend(o.ant_offsets.iter().skip(1).map(|x| x + a));
        self.con_offsets
            .extend(o.con_offsets.iter().skip(1).map(|x| x + c));
        for (m, v) in self.metrics.iter_mut().zip(o.metrics) {
            m.extend(v);
        }
        self.n_rules += o.n_rules;
    }
}

/// Why rules could not be generated: an antecedent or consequent whose
/// support is not in the input (e.g. maximal itemsets); carries its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSupport(pub Vec<u32>);

/// Association rules from itemsets (list column `offsets`/`items` of item ids,
/// any order within an itemset) and their supports, with mlxtend's semantics:
/// every split of every itemset of size >= 2 into antecedent and consequent,
/// kept when `metric >= min_threshold`. With `support_only` the other
/// metrics are NaN and no look-up is needed. Output order: by itemset, then
/// antecedent size descending, then combinations in lexicographic order.
pub fn association_rules(
    offsets: &[u64],
    items: &[u32],
    supports: &[f64],
    p: RuleParams,
    cancel: &Cancel,
) -> Result<std::result::Result<Rules, MissingSupport>> {
    let n = supports.len();
    if offsets.len() != n + 1 || offsets[0] != 0 {
        return Err(CoreError::invalid(
            "offsets must have len(supports) + 1 entries starting at 0",
        ));
    }
    if offsets.windows(2).any(|w| w[1] < w[0]) || offsets[n] as usize > items.len() {
        return Err(CoreError::invalid(
            "offsets must be non-decreasing and within the items",
        ));
    }
    if p.metric >= METRICS.len() {
        return Err(CoreError::invalid("unknown metric"));
    }
    let sorted: Vec<Box<[u32]>> = (0..n)
        .map(|k| {
            let mut v = items[offsets[k] as usize..offsets[k + 1] as usize].to_vec();
            v.sort_unstable();
            v.dedup();
            v.into_boxed_slice()
        })
        .collect();
    // Like a Python dict built from the rows: the last support of a repeated
    // itemset wins, and it is visited once, at its first position.
    let mut lookup: FxHashMap<&[u32], (usize, f64)> = FxHashMap::default();
    for (k, set) in sorted.iter().enumerate() {
        let e = lookup.entry(&set[..]).or_insert((k, supports[k]));
        e.1 = supports[k];
    }
    let emitted = AtomicU64::new(0);
    const CHUNK: usize = 256;
    let chunks: Vec<std::result::Result<Rules, MissingSupport>> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| -> Result<std::result::Result<Rules, MissingSupport>> {
            cancel.check()?;
            let mut out = Rules::new();
            let mut ant = Vec::new();
            let mut con = Vec::new();
            for (k, set) in sorted.iter().enumerate().take(((c + 1) * CHUNK).min(n)).skip(c * CHUNK) {
                let set = &set[..];
                let Some(&(first, s_ac)) = lookup.get(set) else { continue };
                if first != k || set.len() < 2 {
                    continue;
                }
                if set.len() > 63 {
                    return Err(CoreError::invalid(format!(
                        "an itemset of {} items has 2^{} rules; set max_len when mining",
                        set.len(),
                        set.len()
                    )));
                }
                let m = set.len();
                let max_a = p.max_antecedent_len.unwrap_or(m).min(m - 1);
                let min_a = m.saturating_sub(p.max_consequent_len.unwrap_or(m)).max(1);
                for size in (min_a..=max_a).rev() {
                    let mut idx: Vec<usize> = (0..size).collect();
                    loop {
                        ant.clear();
                        con.clear();
                        let mut q = 0;
                        for (pos, &x) in set.iter().enumerate() {
                            if q < size && idx[q] == pos {
                                ant.push(x);
                                q += 1;
                            } else {
                                con.push(x);
                            }
                        }
                        let row = if p.support_only {
                            let mut r = [f64::NAN; 12];
                            r[2] = s_ac;
                            r
                        } else {
                            let s_a = match lookup.get(&ant[..]) {
                                Some(&(_, s)) => s,
                                None => return Ok(Err(MissingSupport(ant.clone()))),
                            };
                            let s_c = match lookup.get(&con[..]) {
                                Some(&(_, s)) => s,
                                None => return Ok(Err(MissingSupport(con.clone()))),
                            };
                            rule_metrics(s_ac, s_a, s_c, p.num_itemsets)
                        };
                        let metric = if p.support_only { 2 } else { p.metric };
                        if row[metric] >= p.min_threshold {
                            out.n_rules += 1;
                            if !p.count_only {
                                out.ant_items.extend_from_slice(&ant);
                                out.ant_offsets.push(out.ant_items.len() as u64);
                                out.con_items.extend_from_slice(&con);
                                out.con_offsets.push(out.con_items.len() as u64);
                                for (col, v) in out.metrics.iter_mut().zip(row) {
                                    col.push(v);
                                }
                            }
                        }
                        // Next combination in lexicographic order.
                        let mut i = size;
                        while i > 0 && idx[i - 1] == m - size + i - 1 {
                            i -= 1;
                        }
                        if i == 0 {
                            break;
                        }
                        idx[i - 1] += 1;
                        for t in i..size {
                            idx[t] = idx[t - 1] + 1;
                        }
                    }
                }
            }
            let before = emitted.fetch_add(out.n_rules, Ordering::Relaxed);
            if let Some(limit) = p.max_rules {
                if before + out.n_rules > limit {
                    return Err(CoreError::invalid(format!(
                        "more than max_rules={limit} rules ({} so far); raise min_threshold, \
                         set max_antecedent_len/max_consequent_len, use output='count', or raise max_rules",
                        before + out.n_rules
                    )));
                }
            }
            Ok(Ok(out))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut all = Rules::new();
    for c in chunks {
        match c {
            Ok(r) => all.append(r),
            Err(m) => return Ok(Err(m)),
        }
    }
    Ok(Ok(all))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn params(min_count: u64, kind: Kind) -> MineParams {
        MineParams {
            min_count,
            max_len: None,
            kind,
            max_itemsets: None,
            count_only: false,
        }
    }

    #[test]
    fn count_itemsets_matches_mined_counts() {
        for seed in 0..4u64 {
            let (indptr, idx) = random_db(seed, 300, 12, 0.3);
            let cancel = Cancel::new();
            let all = mine(&indptr, &idx, 12, params(1, Kind::All), &cancel).unwrap();
            let counts =
                count_itemsets(&indptr, &idx, 12, &all.offsets, &all.items, &cancel).unwrap();
            assert_eq!(counts, all.counts, "seed {seed}");
        }
        let cancel = Cancel::new();
        // Empty candidate: every transaction; an absent item: zero.
        let got = count_itemsets(&[0u64, 1, 2], &[0u32, 0], 3, &[0, 0, 1], &[2], &cancel).unwrap();
        assert_eq!(got, vec![2, 0]);
        assert!(count_itemsets(&[0u64, 1], &[0u32], 3, &[0, 1], &[7], &cancel).is_err());
        assert!(count_itemsets(&[0u64, 1], &[0u32], 3, &[1, 1], &[0], &cancel).is_err());
    }

    /// A tiny xorshift for test data.
    fn random_db(seed: u64, n: usize, m: usize, density: f64) -> (Vec<u64>, Vec<u32>) {
        let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        let mut indptr = vec![0u64];
        let mut idx = Vec::new();
        for _ in 0..n {
            for i in 0..m {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                if (s % 1000) as f64 / 1000.0 < density {
                    idx.push(i as u32);
                }
            }
            indptr.push(idx.len() as u64);
        }
        (indptr, idx)
    }

    /// Brute force over all subsets of the items: (itemset -> count).
    fn brute(indptr: &[u64], idx: &[u32], m: usize, min_count: u64) -> BTreeMap<Vec<u32>, u64> {
        let mut res = BTreeMap::new();
        for mask in 1u32..(1 << m) {
            let set: Vec<u32> = (0..m as u32).filter(|i| mask >> i & 1 == 1).collect();
            let c = (0..indptr.len() - 1)
                .filter(|&t| {
                    let row = &idx[indptr[t] as usize..indptr[t + 1] as usize];
                    set.iter().all(|i| row.contains(i))
                })
                .count() as u64;
            if c >= min_count {
                res.insert(set, c);
            }
        }
        res
    }

    fn as_map(r: &Itemsets) -> BTreeMap<Vec<u32>, u64> {
        (0..r.len())
            .map(|k| (r.get(k).to_vec(), r.counts[k]))
            .collect()
    }

    #[test]
    fn csr_of_dense_both_layouts() {
        let c = Cancel::new();
        // 3 transactions x 4 items.
        let rows: [[u8; 4]; 3] = [[1, 0, 2, 0], [0, 0, 0, 0], [0, 1, 1, 1]];
        let rm: Vec<u8> = rows.iter().flatten().copied().collect();
        let cm: Vec<u8> = (0..4)
            .flat_map(|i| rows.iter().map(move |r| r[i]))
            .collect();
        let want = (vec![0i64, 2, 2, 5], vec![0u32, 2, 1, 2, 3]);
        assert_eq!(csr_of_dense(&rm, 3, 4, false, &c).unwrap(), want);
        assert_eq!(csr_of_dense(&cm, 3, 4, true, &c).unwrap(), want);
        assert_eq!(
            csr_of_dense(&[], 2, 0, false, &c).unwrap(),
            (vec![0i64, 0, 0], vec![])
        );
        assert_eq!(
            csr_of_dense(&[], 2, 0, true, &c).unwrap(),
            (vec![0i64, 0, 0], vec![])
        );
        assert!(csr_of_dense(&rm, 4, 4, false, &c).is_err());
        // Both layouts against a naive scan, across 64-column groups.
        let mut state = 7u64;
        for &(n, m) in &[
            (1usize, 1usize),
            (5, 63),
            (9, 64),
            (33, 65),
            (100, 200),
            (3, 129),
        ] {
            let cells: Vec<u8> = (0..n * m)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 33).is_multiple_of(3) as u8 * ((state >> 40) % 5 + 1) as u8
                })
                .collect();
            let mut want = (vec![0i64], Vec::new());
            for r in cells.chunks(m) {
                want.1.extend(
                    r.iter()
                        .enumerate()
                        .filter(|(_, &v)| v != 0)
                        .map(|(i, _)| i as u32),
                );
                want.0.push(want.1.len() as i64);
            }
            let cm: Vec<u8> = (0..m)
                .flat_map(|i| cells.chunks(m).map(move |r| r[i]))
                .collect();
            assert_eq!(
                csr_of_dense(&cells, n, m, false, &c).unwrap(),
                want,
                "{n} x {m}"
            );
            assert_eq!(
                csr_of_dense(&cm, n, m, true, &c).unwrap(),
                want,
                "{n} x {m}"
            );
        }
    }

    #[test]
    fn threshold_rule() {
        assert_eq!(min_count_for(0.07, 100).unwrap(), 7);
        assert_eq!(min_count_for(0.5, 3).unwrap(), 2);
        assert_eq!(min_count_for(1.0, 10).unwrap(), 10);
        assert_eq!(min_count_for(1e-9, 10).unwrap(), 1);
        assert!(min_count_for(0.0, 10).is_err());
        assert!(min_count_for(1.5, 10).is_err());
        assert!(min_count_for(f64::NAN, 10).is_err());
    }

    #[test]
    fn ranked_rows_bitmask_and_sort_agree_with_naive() {
        let c = Cancel::new();
        // Rank counts on both sides of BITMASK_MAX_RANKS; rows with
        // duplicates, unranked items and empty rows.
        // 70_000 rows: several fixed row chunks, mined in parallel.
        for (seed, n_ranks, n_rows) in [
            (1u64, 70usize, 200usize),
            (2, 4096, 200),
            (3, 4097, 200),
            (4, 6000, 200),
            (5, 70, 70_000),
            (6, 5000, 70_000),
        ] {
            let m = n_ranks + 50;
            let mut state = seed;
            let mut next = move || {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as usize
            };
            let (mut indptr, mut idx) = (vec![0u64], Vec::new());
            for _ in 0..n_rows {
                for _ in 0..next() % 12 {
                    let i = next() % m;
                    idx.push(i as u32);
                    if next() % 5 == 0 {
                        idx.push(i as u32);
                    }
                }
                indptr.push(idx.len() as u64);
            }
            // The first n_ranks items ranked by a permutation, the rest unranked.
            let mut rank = vec![u32::MAX; m];
            for (i, r) in rank.iter_mut().enumerate().take(n_ranks) {
                *r = ((i * 31) % n_ranks) as u32;
            }
            let got = crate::parallel::pool(2)
                .unwrap()
                .install(|| ranked_rows(&indptr, &idx, &rank, n_ranks, 0, &c))
                .unwrap();
            let counts = crate::parallel::pool(2)
                .unwrap()
                .install(|| item_counts(&indptr, &idx, m, &c))
                .unwrap();
            let mut want_counts = vec![0u64; m];
            let mut want: Vec<Vec<u32>> = Vec::new();
            for t in 0..n_rows {
                let mut items: Vec<u32> = idx[indptr[t] as usize..indptr[t + 1] as usize].to_vec();
                items.sort_unstable();
                items.dedup();
                for &i in &items {
                    want_counts[i as usize] += 1;
                }
                let mut row: Vec<u32> = idx[indptr[t] as usize..indptr[t + 1] as usize]
                    .iter()
                    .map(|&i| rank[i as usize])
                    .filter(|&r| r != u32::MAX)
                    .collect();
                row.sort_unstable();
                row.dedup();
                if !row.is_empty() {
                    want.push(row);
                }
            }
            let got: Vec<Vec<u32>> = (0..got.len()).map(|k| got.get(k).to_vec()).collect();
            assert_eq!(got, want, "n_ranks {n_ranks}");
            assert_eq!(counts, want_counts, "n_ranks {n_ranks}");
        }
    }

    #[test]
    fn pair_matrix_and_tree_walk_agree_with_brute_force() {
        // Sparse rows (little prefix sharing) take the pair matrix, dense
        // ones the tree walk; both must give the brute-force answer.
        let (mut with_pairs, mut without) = (0, 0);
        for seed in 0..24u64 {
            let m = 14;
            let density = if seed % 2 == 0 { 0.06 } else { 0.85 };
            let (indptr, idx) = random_db(seed, 300, m, density);
            let c = Cancel::new();
            for min_count in [1u64, 4, 30] {
                let prep = prepare(&indptr, &idx, m, min_count, false, &c).unwrap();
                if prep.rows.is_some() {
                    with_pairs += 1;
                } else {
                    without += 1;
                }
                let want = brute(&indptr, &idx, m, min_count);
                let all = mine(&indptr, &idx, m, params(min_count, Kind::All), &c).unwrap();
                assert_eq!(as_map(&all), want, "seed {seed} min {min_count}");
            }
        }
        assert!(with_pairs > 0 && without > 0, "{with_pairs} / {without}");
    }

    #[test]
    fn matches_brute_force_all_closed_maximal() {
        for seed in 0..30u64 {
            let m = 9;
            let (indptr, idx) = random_db(seed, 40, m, 0.3 + (seed % 5) as f64 * 0.1);
            for min_count in [1u64, 3, 8, 20] {
                let want = brute(&indptr, &idx, m, min_count);
                let c = Cancel::new();
                let all = mine(&indptr, &idx, m, params(min_count, Kind::All), &c).unwrap();
                assert_eq!(all.len(), want.len());
                assert_eq!(as_map(&all), want, "seed {seed} min {min_count}");
                let closed: BTreeMap<_, _> = want
                    .iter()
                    .filter(|(s, &c)| {
                        !want
                            .iter()
                            .any(|(t, &d)| d == c && t.len() > s.len() && is_subset(s, t))
                    })
                    .map(|(s, &c)| (s.clone(), c))
                    .collect();
                let got = mine(&indptr, &idx, m, params(min_count, Kind::Closed), &c).unwrap();
                assert_eq!(as_map(&got), closed, "closed seed {seed} min {min_count}");
                let maximal: BTreeMap<_, _> = want
                    .iter()
                    .filter(|(s, _)| !want.keys().any(|t| t.len() > s.len() && is_subset(s, t)))
                    .map(|(s, &c)| (s.clone(), c))
                    .collect();
                let got = mine(&indptr, &idx, m, params(min_count, Kind::Maximal), &c).unwrap();
                assert_eq!(as_map(&got), maximal, "maximal seed {seed} min {min_count}");
                for max_len in 1..4 {
                    let mut p = params(min_count, Kind::All);
                    p.max_len = Some(max_len);
                    let got = mine(&indptr, &idx, m, p, &c).unwrap();
                    let w: BTreeMap<_, _> = want
                        .iter()
                        .filter(|(s, _)| s.len() <= max_len)
                        .map(|(s, &c)| (s.clone(), c))
                        .collect();
                    assert_eq!(as_map(&got), w);
                    p.count_only = true;
                    assert_eq!(
                        mine(&indptr, &idx, m, p, &c).unwrap().n_itemsets,
                        w.len() as u64
                    );
                }
            }
        }
    }

    #[test]
    fn bitmask_miner_matches_tree_and_rows_exactly() {
        // Item densities from 2% to 97% (deep classes among the few dense ones,
        // the rest shallow), over item counts that give one-word masks,
        // two-word masks and none (> 128 ranks); duplicated and unsorted
        // ids in some rows. Same itemsets, counts and order as the tree or
        // row-list miner, for every kind, length limit and thread count.
        let mut seen = [0usize; 3];
        for (seed, m) in [
            (1u64, 9usize),
            (2, 40),
            (3, 64),
            (4, 65),
            (5, 100),
            (6, 128),
            (7, 200),
        ] {
            let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
            let mut rnd = move || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            };
            let dens: Vec<u64> = (0..m)
                .map(|i| {
                    // At most 8 dense items: classes stay small enough to enumerate.
                    if i % 9 == 0 && i < 72 {
                        900 + rnd() % 70
                    } else {
                        20 + rnd() % 400
                    }
                })
                .collect();
            let n = 300;
            let (mut indptr, mut idx) = (vec![0u64], Vec::new());
            for t in 0..n {
                let start = idx.len();
                for (i, &d) in dens.iter().enumerate() {
                    if rnd() % 1000 < d {
                        idx.push(i as u32);
                    }
                }
                if t % 10 == 3 && idx.len() > start {
                    idx.push(idx[start]); // a duplicate, out of order
                    idx[start..].reverse();
                }
                indptr.push(idx.len() as u64);
            }
            let c = Cancel::new();
            for min_count in [20u64, 60, 120] {
                let n_ranks = {
                    let prep = prepare(&indptr, &idx, m, min_count, true, &c).unwrap();
                    seen[match &prep.masks {
                        Some(MaskDb::One(_)) => 0,
                        Some(MaskDb::Two(_)) => 1,
                        None => 2,
                    }] += 1;
                    prep.item_of_rank.len()
                };
                for kind in [Kind::All, Kind::Closed, Kind::Maximal] {
                    for max_len in [None, Some(3)] {
                        for count_only in [false, true] {
                            let p = MineParams {
                                max_len,
                                count_only,
                                ..params(min_count, kind)
                            };
                            let run = |masks: bool, threads: usize| {
                                crate::parallel::run_in_pool(threads, || {
                                    mine_with(&indptr, &idx, m, p, masks, &c)
                                })
                                .unwrap()
                                .unwrap()
                            };
                            let want = run(false, 1);
                            assert_eq!(
                                run(true, 1),
                                want,
                                "m {m} ranks {n_ranks} min {min_count} {kind:?} {max_len:?}"
                            );
                            assert_eq!(run(true, 2), want);
                        }
                    }
                }
            }
        }
        assert!(seen.iter().all(|&k| k > 0), "{seen:?}");
    }

    #[test]
    fn same_order_for_any_thread_count() {
        let (indptr, idx) = random_db(7, 300, 14, 0.5);
        let run = |t| {
            crate::parallel::run_in_pool(t, || {
                mine(&indptr, &idx, 14, params(20, Kind::All), &Cancel::new())
            })
            .unwrap()
            .unwrap()
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn guard_and_bad_input() {
        let (indptr, idx) = random_db(3, 50, 8, 0.6);
        let mut p = params(1, Kind::All);
        p.max_itemsets = Some(10);
        let e = mine(&indptr, &idx, 8, p, &Cancel::new()).unwrap_err();
        assert!(matches!(e, CoreError::InvalidInput(ref m) if m.contains("max_itemsets")));
        assert!(mine(
            &[0u64, 2],
            &[0u32, 9],
            8,
            params(1, Kind::All),
            &Cancel::new()
        )
        .is_err());
        assert!(mine(
            &[1u64, 2],
            &[0u32, 1],
            8,
            params(1, Kind::All),
            &Cancel::new()
        )
        .is_err());
        assert!(mine(
            &[0u64, 5],
            &[0u32, 1],
            8,
            params(1, Kind::All),
            &Cancel::new()
        )
        .is_err());
        let c = Cancel::new();
        c.cancel();
        assert_eq!(
            mine(&indptr, &idx, 8, params(1, Kind::All), &c),
            Err(CoreError::Cancelled)
        );
    }

    #[test]
    fn rules_split_every_itemset() {
        // {0}:0.6 {1}:0.5 {0,1}:0.4
        let r = association_rules(
            &[0, 1, 2, 4],
            &[0, 1, 1, 0],
            &[0.6, 0.5, 0.4],
            RuleParams {
                metric: 3,
                min_threshold: 0.0,
                support_only: false,
                max_antecedent_len: None,
                max_consequent_len: None,
                num_itemsets: 1.0,
                max_rules: None,
                count_only: false,
            },
            &Cancel::new(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.n_rules, 2);
        assert_eq!(r.ant_items, vec![0, 1]);
        assert_eq!(r.metrics[3], vec![0.4 / 0.6, 0.4 / 0.5]);
        let missing = association_rules(
            &[0, 2],
            &[0, 1],
            &[0.4],
            RuleParams {
                metric: 3,
                min_threshold: 0.0,
                support_only: false,
                max_antecedent_len: None,
                max_consequent_len: None,
                num_itemsets: 1.0,
                max_rules: None,
                count_only: false,
            },
            &Cancel::new(),
        )
        .unwrap();
        assert!(missing.is_err());
    }
}
