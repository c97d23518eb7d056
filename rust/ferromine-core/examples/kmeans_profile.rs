//! Profile the k-means kernels, one thread (KM_T threads), CPU time of the pool thread:
//! `cargo run --profile ci -p ferromine-core --example kmeans_profile -- fit|pass|pp [SEL]`
//!
//! - `fit`: whole Lloyd fits (20 iterations, tol 0); SEL filters `f32`, `f64` or `f64:16:256`.
//! - `pass`: one `lloyd_pass` with and without the centre sums (f32 and f64).
//! - `pp`: greedy k-means++ seeding, n = 100k, d = 16, k = 8, 64, 256.
//!
//! Shape overrides: KM_N rows (default 100k), KM_REPS repetitions (best is printed).
use ferromine_core::error::Result;
use ferromine_core::kmeans::{column_stats, kmeans_plusplus, lloyd, lloyd_pass, Float, SplitMix64};
use ferromine_core::parallel::run_in_pool;
use ferromine_core::{Cancel, CoreError};
use ndarray::Array2;

fn env(k: &str, v: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(v)
}

/// CPU time of the calling thread (the machine is shared: wall time is noise).
/// `clock_gettime(CLOCK_THREAD_CPUTIME_ID)` from the C library std links
/// (schedstat only moves at scheduler ticks).
fn cpu_s() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec (two 64-bit fields on x86-64 Linux).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

/// Best of KM_REPS timings of `f` in a KM_T-thread pool: CPU seconds of the
/// pool thread when single-threaded, else wall seconds.
fn time_it<R: Send>(f: &(dyn Fn() -> Result<R> + Sync)) -> Result<(f64, R)> {
    let threads = env("KM_T", 1);
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..env("KM_REPS", 3) {
        let (t, r) = run_in_pool(threads, || {
            let (c0, w0) = (cpu_s(), std::time::Instant::now());
            let r = f();
            let t = if threads == 1 {
                cpu_s() - c0
            } else {
                w0.elapsed().as_secs_f64()
            };
            (t, r)
        })?;
        best = best.min(t);
        out = Some(r?);
    }
    let out = out.ok_or_else(|| CoreError::invalid("KM_REPS must be at least 1"))?;
    Ok((best, out))
}

/// Blobs-like data: `m` centres in a 40-wide box plus uniform noise, offset
/// from the origin (so the shift matters).
fn data<T: Float>(n: usize, d: usize, m: usize) -> Array2<T> {
    let mut r = SplitMix64::new(7, 1);
    let cen: Vec<f64> = (0..m * d).map(|_| r.uniform() * 40.0).collect();
    Array2::from_shape_fn((n, d), |(i, f)| {
        T::from_f64(cen[(i % m) * d + f] * 0.05 + 60.0 * r.uniform() + 3.0)
    })
}

fn fit<T: Float>(name: &str, d: usize, k: usize) -> Result<()> {
    let n = env("KM_N", 100_000);
    let x = data::<T>(n, d, k.max(8));
    let init: Vec<T> = (0..k).flat_map(|j| x.row(j * 97).to_vec()).collect();
    let cancel = Cancel::new();
    let (shift, _) = column_stats(&x.view(), &cancel)?;
    let (t, it) =
        time_it(&|| Ok(lloyd(&x.view(), None, &init, k, &shift, 20, 0.0, &cancel)?.n_iter))?;
    println!(
        "fit {name} d={d} k={k}: {:.1} ms ({it} iterations), {:.1} GFLOP/s",
        t * 1e3,
        2.0 * (it * n * k * d) as f64 / t / 1e9
    );
    Ok(())
}

fn pass<T: Float>(name: &str, d: usize, k: usize) -> Result<()> {
    let n = env("KM_N", 100_000);
    let mut r = SplitMix64::new(1, 0);
    let x = Array2::from_shape_fn((n, d), |_| T::from_f64(r.uniform()));
    let c: Vec<f64> = (0..k * d).map(|_| r.uniform()).collect();
    let cancel = Cancel::new();
    let zeros = vec![0.0; d];
    let run = |update: bool| -> Result<f64> {
        let (t, _) = time_it(&|| {
            let mut labels = vec![0i32; n];
            Ok(
                lloyd_pass(&x.view(), None, &zeros, &c, k, &mut labels, update, &cancel)?
                    .weights
                    .len(),
            )
        })?;
        Ok(t)
    };
    let (s, s2) = (run(true)?, run(false)?);
    println!(
        "pass {name} d={d} k={k}: {:.2} ms ({:.1} GFLOP/s), argmin only {:.2} ms",
        s * 1e3,
        2.0 * (n * k * d) as f64 / s / 1e9,
        s2 * 1e3
    );
    Ok(())
}

fn plusplus<T: Float>(name: &str, d: usize, k: usize) -> Result<()> {
    let n = env("KM_N", 100_000);
    let x = data::<T>(n, d, k.max(8));
    let cancel = Cancel::new();
    let (shift, _) = column_stats(&x.view(), &cancel)?;
    let trials = 2 + (k as f64).ln() as usize;
    let (t, idx) = time_it(&|| kmeans_plusplus(&x.view(), None, k, trials, &shift, 3, 0, &cancel))?;
    println!(
        "k-means++ {name} d={d} k={k}: {:.2} ms (first picks {:?})",
        t * 1e3,
        &idx[..idx.len().min(3)]
    );
    Ok(())
}

fn main() -> Result<()> {
    let what = std::env::args().nth(1).unwrap_or_else(|| "fit".into());
    let sel = std::env::args().nth(2).unwrap_or_default();
    let want = |t: &str, d: usize, k: usize| {
        sel.is_empty()
            || sel
                .split(',')
                .any(|s| s == format!("{t}:{d}:{k}") || s == t)
    };
    let shapes: &[(usize, usize)] = match what.as_str() {
        "pass" => &[(16, 8), (16, 256), (64, 8), (64, 64), (64, 256)],
        "pp" => &[(16, 8), (16, 64), (16, 256)],
        _ => &[(64, 8), (64, 64), (64, 256), (16, 8), (16, 64), (16, 256)],
    };
    for &(d, k) in shapes {
        for t in ["f32", "f64"] {
            if !want(t, d, k) {
                continue;
            }
            match (what.as_str(), t) {
                ("pass", "f32") => pass::<f32>(t, d, k),
                ("pass", _) => pass::<f64>(t, d, k),
                ("pp", "f32") => plusplus::<f32>(t, d, k),
                ("pp", _) => plusplus::<f64>(t, d, k),
                (_, "f32") => fit::<f32>(t, d, k),
                (_, _) => fit::<f64>(t, d, k),
            }?;
        }
    }
    Ok(())
}
