//! What a disk has done, for `status`: counted by its I/O thread, read by
//! anyone.

use std::sync::atomic::{AtomicU64, Ordering};

use super::request::Operation;

#[derive(Debug, Default)]
pub struct BlockStats {
    reads: AtomicU64,
    writes: AtomicU64,
    flushes: AtomicU64,
    discards: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    /// Requests the image failed (host I/O errors).
    io_errors: AtomicU64,
    /// Requests refused before any I/O (malformed, out of range, read-only).
    refused: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCounts {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub discards: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub io_errors: u64,
    pub refused: u64,
}

fn add(counter: &AtomicU64, n: u64) -> u64 {
    counter.fetch_add(n, Ordering::Relaxed) + n
}

impl BlockStats {
    /// Counts a request that was carried out (`ok`) or failed.
    pub(crate) fn served(&self, operation: &Operation, bytes: u64, ok: bool) {
        if !ok {
            add(&self.io_errors, 1);
            return;
        }
        match operation {
            Operation::Read { .. } => {
                add(&self.reads, 1);
                add(&self.bytes_read, bytes);
            }
            Operation::Write { .. } => {
                add(&self.writes, 1);
                add(&self.bytes_written, bytes);
            }
            Operation::Flush => {
                add(&self.flushes, 1);
            }
            Operation::Discard(_) | Operation::WriteZeroes(_) => {
                add(&self.discards, 1);
            }
            Operation::GetId => {}
        }
    }

    /// Counts a refused request; how many there were so far.
    pub(crate) fn refused(&self) -> u64 {
        add(&self.refused, 1)
    }

    /// How many requests failed so far, this one included.
    pub(crate) fn io_errors(&self) -> u64 {
        self.io_errors.load(Ordering::Relaxed)
    }

    pub fn counts(&self) -> BlockCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BlockCounts {
            reads: get(&self.reads),
            writes: get(&self.writes),
            flushes: get(&self.flushes),
            discards: get(&self.discards),
            bytes_read: get(&self.bytes_read),
            bytes_written: get(&self.bytes_written),
            io_errors: get(&self.io_errors),
            refused: get(&self.refused),
        }
    }
}

/// Whether the `n`th occurrence of something is logged: the first few,
/// then every power of two, so nothing floods the log.
pub(crate) fn worth_logging(n: u64) -> bool {
    n <= 8 || n.is_power_of_two()
}
