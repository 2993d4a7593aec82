//! Parallel encoding: runs a function over a batch of images on the
//! encoder pool (one thread per core, started once), results in input
//! order. Small batches (by total pixels) stay on the calling thread,
//! where handing them over would cost more than it saves.

use devices::thread_layer::{ThreadLayer, WorkerKind};
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::OnceLock;

/// Batches lighter than this many pixels are encoded on the caller.
pub const MIN_PARALLEL_PIXELS: u64 = 128 * 1024;

/// Worker threads: the cores this process may use.
pub fn workers() -> usize {
    static WORKERS: OnceLock<usize> = OnceLock::new();
    *WORKERS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The encoder pool, or None where threads cannot be started (then
/// everything is encoded on the caller).
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(workers())
            .thread_name(|i| format!("spice-encode{i}"))
            .build()
            .map_err(|e| tracing::warn!("spice: no encoder pool ({e}); encoding on one thread"))
            .ok()
    })
    .as_ref()
}

/// Starts the encoder pool's threads now: the SPICE server calls it
/// while it sets up, as threads cannot start once the VM runs
/// (docs/seccomp.md).
pub fn start_pool() {
    pool();
}

thread_local! {
    /// An encoder thread's narrowing, applied before its first job.
    static LAYER: RefCell<ThreadLayer> = const { RefCell::new(ThreadLayer::new(WorkerKind::Compute)) };
}

/// `f` over `items` (of total `weight` pixels), in parallel when it pays.
pub fn map<T: Sync, R: Send>(
    items: &[T],
    weight: u64,
    f: impl Fn(&T) -> R + Sync + Send,
) -> Vec<R> {
    match pool() {
        Some(pool) if items.len() > 1 && workers() > 1 && weight >= MIN_PARALLEL_PIXELS => {
            let narrowed = |item: &T| {
                LAYER.with_borrow_mut(ThreadLayer::before_work);
                f(item)
            };
            pool.install(|| items.par_iter().with_max_len(1).map(narrowed).collect())
        }
        _ => items.iter().map(f).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_their_order() {
        let items: Vec<u64> = (0..100).collect();
        assert_eq!(
            map(&items, u64::MAX, |&x| x * 2),
            (0..100).map(|x| x * 2).collect::<Vec<_>>()
        );
        assert_eq!(map(&items[..1], 0, |&x| x + 1), vec![1]);
        assert!(map(&[] as &[u64], 0, |&x| x).is_empty());
    }
}
