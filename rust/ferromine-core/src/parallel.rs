//! Thread pools, the process-wide thread cap and cooperative cancellation.
//!
//! We never use rayon's global pool: it cannot be resized and does not survive
//! `fork()`. Pools are built lazily per size and remembered together with the
//! process id; a forked child sees a different pid and builds fresh pools
//! instead of touching the inherited ones (whose threads do not exist there).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{CoreError, Result};

/// A cancellation flag that kernels poll at chunk boundaries.
#[derive(Debug, Default)]
pub struct Cancel(AtomicBool);

impl Cancel {
    pub fn new() -> Self {
        Cancel(AtomicBool::new(false))
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    /// `Err(Cancelled)` once `cancel` was called.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(CoreError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// 0 = no cap. Set through threadpoolctl (`threadpool_limits`).
static THREAD_CAP: AtomicUsize = AtomicUsize::new(0);

/// Cap every later call at `n` threads (0 removes the cap).
pub fn set_thread_cap(n: usize) {
    THREAD_CAP.store(n, Ordering::Relaxed);
}

/// The cap if one is set, else the number of logical CPUs available.
pub fn thread_cap() -> usize {
    match THREAD_CAP.load(Ordering::Relaxed) {
        0 => default_threads(),
        n => n,
    }
}

pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The number of threads a call asking for `requested` actually gets.
pub fn effective_threads(requested: usize) -> usize {
    let requested = requested.max(1);
    match THREAD_CAP.load(Ordering::Relaxed) {
        0 => requested,
        cap => requested.min(cap),
    }
}

struct Pools {
    pid: u32,
    by_size: HashMap<usize, Arc<ThreadPool>>,
}

static POOLS: Mutex<Option<Pools>> = Mutex::new(None);

/// The pool of `n_threads` workers for this process, built on first use.
pub fn pool(n_threads: usize) -> Result<Arc<ThreadPool>> {
    let n = effective_threads(n_threads);
    let pid = std::process::id();
    // A poisoned lock only means another thread panicked while holding it; the
    // map itself is still consistent, so keep using it.
    let mut guard = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().is_some_and(|p| p.pid != pid) {
        // Forked child: the inherited pools' threads do not exist here. Leak
        // them rather than run their destructors, which would signal threads
        // that are not there.
        if let Some(old) = guard.take() {
            std::mem::forget(old);
        }
    }
    let pools = guard.get_or_insert_with(|| Pools {
        pid,
        by_size: HashMap::new(),
    });
    if let Some(p) = pools.by_size.get(&n) {
        return Ok(Arc::clone(p));
    }
    // A pool that uses every CPU the process may run on gets one worker per
    // CPU. Unpinned, Linux wakes an idle pool's workers onto the waker's CPU,
    // and a call after a pause ran at one core's speed (measured: k-means
    // fit, 2 threads, 30 ms back to back, 49 ms after a 0.15 s sleep; pinned,
    // 32 ms). A smaller pool is not pinned: it would crowd the first CPUs.
    let cpus = affinity::allowed_cpus();
    let pin = n > 1 && cpus.len() == n;
    let built = ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("ferromine-{i}"))
        .start_handler(move |i| {
            if pin {
                affinity::pin_current_thread(cpus[i]);
            }
        })
        .build()
        .map_err(|e| CoreError::Internal(format!("could not start {n} worker threads: {e}")))?;
    let built = Arc::new(built);
    pools.by_size.insert(n, Arc::clone(&built));
    Ok(built)
}

/// CPU affinity of pool workers (Linux; elsewhere nothing is pinned).
mod affinity {
    /// Words of a `cpu_set_t` (1024 CPUs, glibc's size).
    #[cfg(target_os = "linux")]
    const WORDS: usize = 16;

    #[cfg(target_os = "linux")]
    extern "C" {
        fn sched_getaffinity(pid: i32, size: usize, mask: *mut u64) -> i32;
        fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
    }

    /// The CPUs the calling thread may run on, in increasing order (empty
    /// when unknown).
    pub fn allowed_cpus() -> Vec<usize> {
        #[cfg(target_os = "linux")]
        {
            let mut mask = [0u64; WORDS];
            // SAFETY: `mask` is a writable buffer of the size passed.
            let rc = unsafe { sched_getaffinity(0, WORDS * 8, mask.as_mut_ptr()) };
            if rc != 0 {
                return Vec::new();
            }
            (0..WORDS * 64)
                .filter(|&c| mask[c / 64] >> (c % 64) & 1 == 1)
                .collect()
        }
        #[cfg(not(target_os = "linux"))]
        Vec::new()
    }

    /// Pin the calling thread to `cpu`. A failure leaves it unpinned: pinning
    /// only steers the scheduler.
    pub fn pin_current_thread(cpu: usize) {
        #[cfg(target_os = "linux")]
        if cpu < WORDS * 64 {
            let mut mask = [0u64; WORDS];
            mask[cpu / 64] = 1 << (cpu % 64);
            // SAFETY: `mask` is a readable buffer of the size passed; pid 0 is
            // the calling thread.
            let _ = unsafe { sched_setaffinity(0, WORDS * 8, mask.as_ptr()) };
        }
        #[cfg(not(target_os = "linux"))]
        let _ = cpu;
    }
}

/// Forget every pool (for `os.register_at_fork(after_in_child=...)`).
pub fn reset_pools_after_fork() {
    let mut guard = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = guard.take() {
        std::mem::forget(old);
    }
}

/// Run `f` on a pool of `n_threads` from plain Rust (tests, benches).
pub fn run_in_pool<T: Send>(n_threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    Ok(pool(n_threads)?.install(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_reused_per_size() {
        let a = pool(2).unwrap();
        let b = pool(2).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.current_num_threads(), 2);
        assert_eq!(pool(1).unwrap().current_num_threads(), 1);
    }

    #[test]
    fn a_pool_over_every_cpu_pins_one_worker_per_cpu() {
        let cpus = affinity::allowed_cpus();
        if cfg!(not(target_os = "linux")) || cpus.len() < 2 {
            return; // nothing is pinned there
        }
        let p = pool(cpus.len()).unwrap();
        let mut seen: Vec<Vec<usize>> = p.broadcast(|_| affinity::allowed_cpus());
        seen.sort();
        let want: Vec<Vec<usize>> = cpus.iter().map(|&c| vec![c]).collect();
        assert_eq!(seen, want);
        // A smaller pool is left to the scheduler.
        let small = pool(cpus.len() - 1).unwrap();
        assert!(small
            .broadcast(|_| affinity::allowed_cpus())
            .iter()
            .all(|c| *c == cpus));
    }

    #[test]
    fn cancel_flag() {
        let c = Cancel::new();
        assert!(c.check().is_ok());
        c.cancel();
        assert_eq!(c.check(), Err(CoreError::Cancelled));
    }
}
