//! Profile the PSI kernels: `cargo run --release --example psi_profile -- q|h|qh ITERS [c]`
//! (PSI_N rows, PSI_D columns, PSI_T threads; default one thread).
use std::time::Instant;

use ferromine_core::psi::{histograms, quantiles, Closed};
use ferromine_core::{Cancel, Columns};
use ndarray::Array2;

fn main() {
    // Shape from the environment (PSI_N, PSI_D), default 1M x 8.
    let env = |k: &str, v: usize| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(v)
    };
    let (n, d) = (env("PSI_N", 1_000_000), env("PSI_D", 8));
    let mut s = 1u64;
    let order_c = std::env::args().nth(3).is_some();
    let x = Array2::from_shape_fn(ndarray::ShapeBuilder::set_f((n, d), !order_c), |_| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    });
    let data = Columns::Matrix(x.view());
    let probs: Vec<f64> = (1..10).map(|i| i as f64 / 10.0).collect();
    let cancel = Cancel::new();
    let what = std::env::args().nth(1).unwrap_or_default();
    let pool = ferromine_core::parallel::pool(env("PSI_T", 1)).expect("pool");
    pool.install(|| {
        let iters: usize = std::env::args()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(5);
        for _ in 0..iters {
            if what != "h" {
                let t = Instant::now();
                let q = quantiles(&data, &probs, &cancel).expect("quantiles");
                println!(
                    "quantiles {:.2} ms/col",
                    t.elapsed().as_secs_f64() * 1e3 / d as f64
                );
                if what == "q" {
                    continue;
                }
                let cuts: Vec<Vec<f64>> = q.iter().map(|q| q.values.clone()).collect();
                let t = Instant::now();
                histograms(&data, &cuts, Closed::Right, &cancel).expect("histograms");
                println!(
                    "histograms {:.2} ms/col",
                    t.elapsed().as_secs_f64() * 1e3 / d as f64
                );
            } else {
                let cuts = vec![probs.clone(); d];
                let t = Instant::now();
                histograms(&data, &cuts, Closed::Right, &cancel).expect("histograms");
                println!(
                    "histograms {:.2} ms/col",
                    t.elapsed().as_secs_f64() * 1e3 / d as f64
                );
            }
        }
    });
}
