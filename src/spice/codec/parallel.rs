//! Parallel encoding: runs a function over a batch of images on up to one
//! scoped worker thread per core, results in input order. Small batches
//! (by total pixels) stay on the calling thread, where starting threads
//! would cost more than it saves.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Batches lighter than this many pixels are encoded on the caller.
pub const MIN_PARALLEL_PIXELS: u64 = 128 * 1024;

/// Worker threads: the cores this process may use.
pub fn workers() -> usize {
    static WORKERS: OnceLock<usize> = OnceLock::new();
    *WORKERS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `f` over `items` (of total `weight` pixels), in parallel when it pays.
pub fn map<T: Sync, R: Send>(items: &[T], weight: u64, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = workers().min(items.len());
    if threads <= 1 || weight < MIN_PARALLEL_PIXELS {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let work = || loop {
        let k = next.fetch_add(1, Ordering::Relaxed);
        let Some(item) = items.get(k) else { break };
        let r = f(item);
        *slots[k].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every item was encoded")
        })
        .collect()
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
