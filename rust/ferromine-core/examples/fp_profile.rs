//! Profile FP-Growth on a FIMI `.dat` file (plain text, one transaction a line):
//! `cargo run --profile ci -p ferromine-core --example fp_profile -- FILE MIN_SUPPORT [all|closed|maximal] [count]`
//!
//! Prints the best and median wall time of FP_REPS calls of `mine` (default
//! 20) in an FP_T-thread pool (default 2). FP_SLEEP_MS pauses before each
//! call (the cores go idle, as between a benchmark's calls); with FP_KEEP
//! every result is kept alive, so each call writes fresh memory.
use ferromine_core::error::Result;
use ferromine_core::fpgrowth::{min_count_for, mine, Kind, MineParams};
use ferromine_core::parallel::run_in_pool;
use ferromine_core::{Cancel, CoreError};
use std::time::{Duration, Instant};

fn env(k: &str, v: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(v)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, support, rest @ ..] = args.as_slice() else {
        return Err(CoreError::invalid(
            "usage: fp_profile FILE MIN_SUPPORT [all|closed|maximal] [count]",
        ));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| CoreError::invalid(format!("cannot read {path}: {e}")))?;
    let min_support: f64 = support.parse().map_err(|_| {
        CoreError::invalid(format!("MIN_SUPPORT must be a number, got {support:?}"))
    })?;
    let kind = match rest.first().map(String::as_str).unwrap_or("all") {
        "closed" => Kind::Closed,
        "maximal" => Kind::Maximal,
        _ => Kind::All,
    };
    let count_only = rest.get(1).is_some_and(|a| a == "count");
    let (mut indptr, mut indices) = (vec![0u64], Vec::<u32>::new());
    for (l, line) in text.lines().enumerate() {
        let mut row = line
            .split_whitespace()
            .map(|t| t.parse::<u32>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                CoreError::invalid(format!("line {}: item ids are integers: {e}", l + 1))
            })?;
        row.sort_unstable();
        row.dedup();
        indices.extend(row);
        indptr.push(indices.len() as u64);
    }
    let n_items = indices.iter().max().map_or(0, |&m| m as usize + 1);
    let n = indptr.len() as u64 - 1;
    let params = MineParams {
        min_count: min_count_for(min_support, n)?,
        max_len: None,
        kind,
        max_itemsets: None,
        count_only,
    };
    let (threads, reps) = (env("FP_T", 2) as usize, env("FP_REPS", 20).max(1));
    let (pause, keep) = (env("FP_SLEEP_MS", 0), std::env::var("FP_KEEP").is_ok());
    let cancel = Cancel::new();
    let (mut times, sets) = run_in_pool(threads, || -> Result<(Vec<f64>, u64)> {
        let (mut times, mut kept, mut sets) = (Vec::new(), Vec::new(), 0);
        for _ in 0..reps {
            std::thread::sleep(Duration::from_millis(pause));
            let t = Instant::now();
            let out = mine(&indptr, &indices, n_items, params, &cancel)?;
            times.push(t.elapsed().as_secs_f64());
            sets = out.n_itemsets;
            if keep {
                kept.push(out);
            }
        }
        Ok((times, sets))
    })??;
    // FP_REPS is at least 1, so `times` is not empty.
    times.sort_by(f64::total_cmp);
    println!(
        "{kind:?}: best {:.3} ms, median {:.3} ms, {sets} itemsets",
        times[0] * 1e3,
        times[times.len() / 2] * 1e3
    );
    Ok(())
}
