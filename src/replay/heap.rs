//! A first-fit allocator for a range of device memory (the replay driver's
//! command pages in BAR 0 and its surface memory in BAR 1), with
//! coalescing of neighbouring free blocks.

use std::collections::BTreeMap;

/// Every block starts and ends on this boundary.
const ALIGN: u64 = 64;

#[derive(Debug)]
pub struct Heap {
    start: u64,
    end: u64,
    /// Free blocks: start → length.
    free: BTreeMap<u64, u64>,
    used: u64,
}

impl Heap {
    /// Manages `[start, end)` (rounded inwards to the alignment).
    pub fn new(start: u64, end: u64) -> Heap {
        let mut heap = Heap {
            start: start.next_multiple_of(ALIGN),
            end: end - end % ALIGN,
            free: BTreeMap::new(),
            used: 0,
        };
        heap.reset();
        heap
    }

    /// Everything free again.
    pub fn reset(&mut self) {
        self.free.clear();
        if self.end > self.start {
            self.free.insert(self.start, self.end - self.start);
        }
        self.used = 0;
    }

    /// Bytes the heap manages.
    pub fn capacity(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    /// A block of at least `len` bytes (rounded up to the alignment).
    pub fn alloc(&mut self, len: u64) -> Option<(u64, u64)> {
        let len = len.max(1).checked_next_multiple_of(ALIGN)?;
        let (&at, &size) = self.free.iter().find(|(_, &size)| size >= len)?;
        self.free.remove(&at);
        if size > len {
            self.free.insert(at + len, size - len);
        }
        self.used += len;
        Some((at, len))
    }

    /// Gives back a block `alloc` returned.
    pub fn free(&mut self, at: u64, len: u64) {
        debug_assert!(at >= self.start && at + len <= self.end);
        self.used = self.used.saturating_sub(len);
        let (mut at, mut len) = (at, len);
        if let Some((&next, &next_len)) = self.free.range(at + len..).next() {
            if next == at + len {
                self.free.remove(&next);
                len += next_len;
            }
        }
        if let Some((&prev, &prev_len)) = self.free.range(..at).next_back() {
            if prev + prev_len == at {
                self.free.remove(&prev);
                at = prev;
                len += prev_len;
            }
        }
        self.free.insert(at, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_frees_and_coalesces() {
        let mut h = Heap::new(100, 100 + 64 * 10 + 50);
        assert_eq!(h.capacity(), 64 * 10);
        let a = h.alloc(1).unwrap();
        assert_eq!(a, (128, 64));
        let b = h.alloc(200).unwrap();
        assert_eq!(b, (192, 256));
        let c = h.alloc(64 * 5).unwrap();
        assert!(h.alloc(64).is_none(), "full");
        h.free(b.0, b.1);
        assert_eq!(h.alloc(64 * 2).unwrap().0, 192, "first fit");
        h.free(192, 128);
        h.free(a.0, a.1);
        h.free(c.0, c.1);
        assert_eq!(h.used(), 0);
        assert_eq!(h.alloc(64 * 10).unwrap(), (128, 640), "all coalesced");
        assert!(h.alloc(u64::MAX).is_none());
    }
}
