//! Profile FP-Growth on a FIMI `.dat` file (plain text, one transaction a line):
//! `cargo run --profile ci -p ferromine-core --example fp_profile -- FILE MIN_SUPPORT [all|closed|maximal] [count]`
//!
//! Prints the best and median wall time of FP_REPS calls of `mine` (default
//! 20) in an FP_T-thread pool (default 2). FP_SLEEP_MS pauses before each
//! call (the cores go idle, as between a benchmark's calls); with FP_KEEP
//! every result is kept alive, so each call writes fresh memory.
use ferromine_core::fpgrowth::{min_count_for, mine, Kind, MineParams};
use ferromine_core::parallel::run_in_pool;
use ferromine_core::Cancel;
use std::time::{Duration, Instant};

fn env(k: &str, v: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(v)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: fp_profile FILE MIN_SUPPORT [all|closed|maximal] [count]");
        std::process::exit(2);
    }
    let text = std::fs::read_to_string(&args[1]).expect("read the .dat file");
    let min_support: f64 = args[2].parse().expect("MIN_SUPPORT is a number");
    let kind = match args.get(3).map(String::as_str).unwrap_or("all") {
        "closed" => Kind::Closed,
        "maximal" => Kind::Maximal,
        _ => Kind::All,
    };
    let count_only = args.get(4).is_some_and(|a| a == "count");
    let (mut indptr, mut indices) = (vec![0u64], Vec::<u32>::new());
    for line in text.lines() {
        let mut row: Vec<u32> = line
            .split_whitespace()
            .map(|t| t.parse().expect("item ids are integers"))
            .collect();
        row.sort_unstable();
        row.dedup();
        indices.extend(row);
        indptr.push(indices.len() as u64);
    }
    let n_items = indices.iter().max().map_or(0, |&m| m as usize + 1);
    let n = indptr.len() as u64 - 1;
    let params = MineParams {
        min_count: min_count_for(min_support, n).expect("min_support in (0, 1]"),
        max_len: None,
        kind,
        max_itemsets: None,
        count_only,
    };
    let (threads, reps) = (env("FP_T", 2) as usize, env("FP_REPS", 20).max(1));
    let (pause, keep) = (env("FP_SLEEP_MS", 0), std::env::var("FP_KEEP").is_ok());
    let cancel = Cancel::new();
    let (mut times, sets) = run_in_pool(threads, || {
        let (mut times, mut kept, mut sets) = (Vec::new(), Vec::new(), 0);
        for _ in 0..reps {
            std::thread::sleep(Duration::from_millis(pause));
            let t = Instant::now();
            let out = mine(&indptr, &indices, n_items, params, &cancel).expect("mine");
            times.push(t.elapsed().as_secs_f64());
            sets = out.n_itemsets;
            if keep {
                kept.push(out);
            }
        }
        (times, sets)
    })
    .expect("thread pool");
    times.sort_by(f64::total_cmp);
    println!(
        "{kind:?}: best {:.3} ms, median {:.3} ms, {sets} itemsets",
        times[0] * 1e3,
        times[times.len() / 2] * 1e3
    );
}
