//! The three rings of the RAM header (docs/qxl.md §3.2, §3.3, §7.3): the command
//! and cursor rings the guest produces and the device consumes, and the
//! release ring the device produces and the guest consumes.
//!
//! Ring indices are free-running u32s in guest memory. The device never trusts
//! the guest's `num_items`: it uses the fixed sizes, and a producer index more
//! than a ring's size ahead of the consumer index is reported as corruption.

use std::sync::atomic::{fence, Ordering};

use super::defs::{
    ram, ring, COMMAND_RING_SIZE, COMMAND_SIZE, CURSOR_RING_SIZE, RELEASE_RING_SIZE,
};
use super::memory::{Backing, BarMemory, GuestRange};

/// One ring of the RAM header.
#[derive(Debug, Clone, Copy)]
pub struct Ring {
    /// Offset of the ring header in BAR 0.
    base: u64,
    size: u32,
    item_size: u64,
}

/// A `QXLCommand` as read from a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawCommand {
    pub data: u64,
    pub kind: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ring indices corrupt: producer {prod}, consumer {cons}")]
pub struct RingCorrupt {
    pub prod: u32,
    pub cons: u32,
}

impl Ring {
    pub fn command(header: u64) -> Ring {
        Ring {
            base: header + ram::CMD_RING,
            size: COMMAND_RING_SIZE,
            item_size: COMMAND_SIZE,
        }
    }

    pub fn cursor(header: u64) -> Ring {
        Ring {
            base: header + ram::CURSOR_RING,
            size: CURSOR_RING_SIZE,
            item_size: COMMAND_SIZE,
        }
    }

    pub fn release(header: u64) -> Ring {
        Ring {
            base: header + ram::RELEASE_RING,
            size: RELEASE_RING_SIZE,
            item_size: 8,
        }
    }

    fn get(&self, mem: &BarMemory, field: u64) -> u32 {
        mem.u32_at(Backing::Ram, self.base + field)
    }

    fn set(&self, mem: &BarMemory, field: u64, value: u32) {
        mem.set_u32_at(Backing::Ram, self.base + field, value)
    }

    pub fn prod(&self, mem: &BarMemory) -> u32 {
        self.get(mem, ring::PROD)
    }

    pub fn cons(&self, mem: &BarMemory) -> u32 {
        self.get(mem, ring::CONS)
    }

    fn item_offset(&self, index: u32) -> u64 {
        self.base + ring::ITEMS + u64::from(index & (self.size - 1)) * self.item_size
    }

    /// Reset state: empty, `notify_on_prod = 1` (so the first push kicks).
    pub fn init(&self, mem: &BarMemory) {
        self.set(mem, ring::NUM_ITEMS, self.size);
        self.set(mem, ring::PROD, 0);
        self.set(mem, ring::CONS, 0);
        self.set(mem, ring::NOTIFY_ON_PROD, 1);
        self.set(mem, ring::NOTIFY_ON_CONS, 0);
        fence(Ordering::SeqCst);
    }

    /// Consumer side: takes the next command, if any. The flag says whether
    /// the guest asked to be told that this slot became free.
    pub fn pop(&self, mem: &BarMemory) -> Result<Option<(RawCommand, bool)>, RingCorrupt> {
        let prod = self.prod(mem);
        let cons = self.cons(mem);
        if prod == cons {
            return Ok(None);
        }
        if prod.wrapping_sub(cons) > self.size {
            return Err(RingCorrupt { prod, cons });
        }
        fence(Ordering::Acquire);
        let at = self.item_offset(cons);
        let command = RawCommand {
            data: mem.u64_at(Backing::Ram, at),
            kind: mem.u32_at(Backing::Ram, at + 8),
        };
        let cons = cons.wrapping_add(1);
        self.set(mem, ring::CONS, cons);
        fence(Ordering::SeqCst);
        let notify = cons == self.get(mem, ring::NOTIFY_ON_CONS);
        Ok(Some((command, notify)))
    }

    /// Consumer side, ring found empty: ask the guest to kick us on its next
    /// push. Returns true if the ring is still empty after that.
    pub fn request_notification(&self, mem: &BarMemory) -> bool {
        let prod = self.prod(mem);
        self.set(mem, ring::NOTIFY_ON_PROD, prod.wrapping_add(1));
        fence(Ordering::SeqCst);
        self.prod(mem) == self.cons(mem)
    }
}

/// The device's side of the release ring: chains of released ids
/// (docs/qxl.md §7.3).
#[derive(Debug, Default)]
pub struct ReleaseRing {
    /// `QXLReleaseInfo` of the last id put in the open chain.
    last: Option<GuestRange>,
    /// Ids in the open chain.
    count: u32,
}

impl ReleaseRing {
    /// Forgets the open chain (device reset).
    pub fn reset(&mut self, mem: &BarMemory, ring: &Ring) {
        self.last = None;
        self.count = 0;
        mem.set_u64_at(Backing::Ram, ring.item_offset(0), 0);
    }

    pub fn pending(&self) -> u32 {
        self.count
    }

    /// Appends the command whose `QXLReleaseInfo` is `info` to the open chain:
    /// its id is read, then its field is overwritten with the chain link.
    pub fn release(&mut self, mem: &BarMemory, ring: &Ring, info: GuestRange) {
        let Some(id) = mem.read_array::<8>(info, 0).map(u64::from_le_bytes) else {
            return;
        };
        let slot = ring.item_offset(ring.prod(mem));
        match self.last {
            Some(last) => {
                mem.write(last, 0, &id.to_le_bytes());
                mem.write(info, 0, &0u64.to_le_bytes());
            }
            None => {
                mem.write(info, 0, &0u64.to_le_bytes());
                mem.set_u64_at(Backing::Ram, slot, id);
            }
        }
        self.last = Some(info);
        self.count += 1;
    }

    /// Pushes the open chain if there is one and the ring has room (one slot
    /// is always kept open). Returns true if the guest asked for an interrupt.
    pub fn push(&mut self, mem: &BarMemory, ring: &Ring) -> bool {
        if self.count == 0 {
            return false;
        }
        let prod = ring.prod(mem);
        let cons = ring.cons(mem);
        if prod.wrapping_sub(cons) >= ring.size - 1 {
            // Full (or the guest scribbled on `cons`): keep growing the chain.
            return false;
        }
        let prod = prod.wrapping_add(1);
        ring.set(mem, ring::PROD, prod);
        fence(Ordering::SeqCst);
        // The guest asks for an interrupt at `notify_on_prod`. Linux sets it
        // after finding the ring empty without looking again, so a push that
        // lands in between would pass it silently; notifying for every push
        // at or past the mark closes that window (a cause already pending
        // costs nothing more).
        let mark = ring.get(mem, ring::NOTIFY_ON_PROD);
        let notify = (prod.wrapping_sub(mark) as i32) >= 0;
        mem.set_u64_at(Backing::Ram, ring.item_offset(prod), 0);
        self.last = None;
        self.count = 0;
        notify
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::allocate;

    const HEADER: u64 = 0x8000;

    fn memory() -> BarMemory {
        BarMemory::new(allocate(0x10000).unwrap(), allocate(0x1000).unwrap())
    }

    #[test]
    fn consumer_pops_in_order_and_rearms() {
        let mem = memory();
        let r = Ring::command(HEADER);
        r.init(&mem);
        assert_eq!(r.pop(&mem), Ok(None));
        for i in 0..3u64 {
            let at = r.item_offset(i as u32);
            mem.set_u64_at(Backing::Ram, at, 0x100 + i);
            mem.set_u32_at(Backing::Ram, at + 8, 1);
        }
        r.set(&mem, ring::PROD, 3);
        r.set(&mem, ring::NOTIFY_ON_CONS, 2);
        assert_eq!(
            r.pop(&mem),
            Ok(Some((
                RawCommand {
                    data: 0x100,
                    kind: 1
                },
                false
            )))
        );
        assert_eq!(
            r.pop(&mem),
            Ok(Some((
                RawCommand {
                    data: 0x101,
                    kind: 1
                },
                true
            )))
        );
        assert!(r.pop(&mem).unwrap().is_some());
        assert!(r.request_notification(&mem));
        assert_eq!(r.get(&mem, ring::NOTIFY_ON_PROD), 4);
        // Garbage: producer far ahead of the consumer.
        r.set(&mem, ring::PROD, 1000);
        assert_eq!(
            r.pop(&mem),
            Err(RingCorrupt {
                prod: 1000,
                cons: 3
            })
        );
    }

    #[test]
    fn releases_are_chained_through_release_info() {
        let mem = memory();
        let r = Ring::release(HEADER);
        r.init(&mem);
        let mut rel = ReleaseRing::default();
        rel.reset(&mem, &r);
        let infos: Vec<GuestRange> = (0..3)
            .map(|i| mem.range(Backing::Ram, 0x100 * (i + 1), 8).unwrap())
            .collect();
        for (i, info) in infos.iter().enumerate() {
            mem.write(*info, 0, &(7 + i as u64).to_le_bytes());
            rel.release(&mem, &r, *info);
        }
        // Ring slot 0 holds the head id 7; 7 -> 8 -> 9 -> 0.
        assert_eq!(mem.u64_at(Backing::Ram, r.item_offset(0)), 7);
        let next = |i: usize| mem.read_array::<8>(infos[i], 0).map(u64::from_le_bytes);
        assert_eq!((next(0), next(1), next(2)), (Some(8), Some(9), Some(0)));
        assert!(rel.push(&mem, &r), "notify_on_prod is 1 after reset");
        assert_eq!(r.prod(&mem), 1);
        assert_eq!(mem.u64_at(Backing::Ram, r.item_offset(1)), 0);
        assert!(!rel.push(&mem, &r), "nothing to push");
        // A guest that set its mark late (at the slot just pushed) is still told.
        r.set(&mem, ring::NOTIFY_ON_PROD, 1);
        let info = mem.range(Backing::Ram, 0x800, 8).unwrap();
        mem.write(info, 0, &5u64.to_le_bytes());
        rel.release(&mem, &r, info);
        assert!(rel.push(&mem, &r), "prod 2 is past the mark 1");
        r.set(&mem, ring::NOTIFY_ON_PROD, 4);
        rel.release(&mem, &r, info);
        assert!(!rel.push(&mem, &r), "prod 3 is before the mark 4");
    }

    #[test]
    fn full_release_ring_grows_the_chain() {
        let mem = memory();
        let r = Ring::release(HEADER);
        r.init(&mem);
        let mut rel = ReleaseRing::default();
        rel.reset(&mem, &r);
        for i in 0..10u64 {
            let info = mem.range(Backing::Ram, 0x100 + 8 * i, 8).unwrap();
            mem.write(info, 0, &(i + 1).to_le_bytes());
            rel.release(&mem, &r, info);
            rel.push(&mem, &r);
        }
        // 7 slots pushed, the rest waits in the open chain.
        assert_eq!(r.prod(&mem), 7);
        assert_eq!(rel.pending(), 3);
        r.set(&mem, ring::CONS, 7);
        rel.push(&mem, &r);
        assert_eq!(r.prod(&mem), 8);
        assert_eq!(mem.u64_at(Backing::Ram, r.item_offset(7)), 8);
    }
}
