//! Memslots and QXLPHYSICAL translation (docs/qxl.md §4).
//!
//! A guest address is `slot id (8 bits) | generation (8 bits) | offset (48
//! bits)`; the offset is relative to the slot's start. Slots may only cover
//! the device's own memory BARs (as in QEMU), so a translated address can
//! never reach guest RAM, the ROM or anything else. A slot remembers which
//! backing and offset it was added with, so moving a BAR later does not change
//! what existing slots mean.

use std::ops::Range;

use super::defs::{NUM_MEMSLOTS, SLOT_GEN_BITS, SLOT_ID_BITS};
use super::memory::{Backing, BarMemory, GuestRange};

/// Where the memory BARs decode right now (guest-physical ranges), captured
/// when the guest adds a memslot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BarLayout {
    pub ram: Option<Range<u64>>,
    pub vram: Option<Range<u64>>,
    pub vram64: Option<Range<u64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemSlot {
    pub backing: Backing,
    /// Offset of the slot's first byte in its backing.
    pub base: u64,
    pub size: u64,
    pub generation: u8,
    /// The guest-physical start the guest gave (for logs).
    pub guest_start: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("memslot id {0} out of range")]
    BadId(u8),
    #[error("memslot {0} is already active")]
    Active(u8),
    #[error("memslot {id}: start {start:#x} is after end {end:#x}")]
    Inverted { id: u8, start: u64, end: u64 },
    #[error("memslot {id}: {start:#x}..{end:#x} is not inside one of the device's memory BARs")]
    NoBar { id: u8, start: u64, end: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("address {0:#x}: slot id out of range")]
    BadSlot(u64),
    #[error("address {0:#x}: slot not active")]
    Inactive(u64),
    #[error("address {0:#x}: stale slot generation")]
    Generation(u64),
    #[error("address {addr:#x} + {len:#x} bytes: outside its slot")]
    OutOfSlot { addr: u64, len: u64 },
}

const OFFSET_BITS: u32 = 64 - SLOT_ID_BITS as u32 - SLOT_GEN_BITS as u32;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;

/// Builds a QXLPHYSICAL, as guest drivers do (for tests and logs).
pub fn make_address(slot: u8, generation: u8, offset: u64) -> u64 {
    (u64::from(slot) << (64 - SLOT_ID_BITS as u32))
        | (u64::from(generation) << OFFSET_BITS)
        | (offset & OFFSET_MASK)
}

#[derive(Debug, Default)]
pub struct MemSlots {
    slots: [Option<MemSlot>; NUM_MEMSLOTS],
}

impl MemSlots {
    /// `QXL_IO_MEMSLOT_ADD`: `[start, end)` in guest-physical addresses.
    pub fn add(
        &mut self,
        id: u8,
        start: u64,
        end: u64,
        bars: &BarLayout,
        memory: &BarMemory,
    ) -> Result<MemSlot, SlotError> {
        let entry = self
            .slots
            .get_mut(usize::from(id))
            .ok_or(SlotError::BadId(id))?;
        if entry.is_some() {
            return Err(SlotError::Active(id));
        }
        if start > end {
            return Err(SlotError::Inverted { id, start, end });
        }
        // BAR 0 first, then the surface BARs (QEMU's order). Both surface BARs
        // show the surface memory from its first byte.
        let candidates = [
            (bars.ram.as_ref(), Backing::Ram),
            (bars.vram.as_ref(), Backing::Vram),
            (bars.vram64.as_ref(), Backing::Vram),
        ];
        for (range, backing) in candidates {
            let Some(range) = range else { continue };
            let shown = (range.end - range.start).min(memory.size(backing));
            let bar_end = range.start + shown;
            if start >= range.start && start <= bar_end && end <= bar_end {
                let slot = MemSlot {
                    backing,
                    base: start - range.start,
                    size: end - start,
                    generation: 0,
                    guest_start: start,
                };
                *entry = Some(slot);
                return Ok(slot);
            }
        }
        Err(SlotError::NoBar { id, start, end })
    }

    /// `QXL_IO_MEMSLOT_DEL`.
    pub fn delete(&mut self, id: u8) -> Result<(), SlotError> {
        let entry = self
            .slots
            .get_mut(usize::from(id))
            .ok_or(SlotError::BadId(id))?;
        *entry = None;
        Ok(())
    }

    pub fn clear(&mut self) {
        self.slots = Default::default();
    }

    pub fn get(&self, id: u8) -> Option<&MemSlot> {
        self.slots.get(usize::from(id))?.as_ref()
    }

    /// The `len` bytes at guest address `addr`, if they lie inside an active
    /// slot of the right generation.
    pub fn translate(&self, addr: u64, len: u64) -> Result<GuestRange, TranslateError> {
        let id = (addr >> (64 - SLOT_ID_BITS as u32)) as usize;
        let generation = ((addr >> OFFSET_BITS) & ((1 << SLOT_GEN_BITS) - 1)) as u8;
        let offset = addr & OFFSET_MASK;
        let slot = self
            .slots
            .get(id)
            .ok_or(TranslateError::BadSlot(addr))?
            .as_ref()
            .ok_or(TranslateError::Inactive(addr))?;
        if generation != slot.generation {
            return Err(TranslateError::Generation(addr));
        }
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= slot.size)
            .ok_or(TranslateError::OutOfSlot { addr, len })?;
        // The slot fitted its backing when it was added; the backing never shrinks.
        let _ = end;
        Ok(GuestRange {
            backing: slot.backing,
            offset: slot.base + offset,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::allocate;

    fn setup() -> (MemSlots, BarLayout, BarMemory) {
        let memory = BarMemory::new(allocate(0x10000).unwrap(), allocate(0x8000).unwrap());
        let bars = BarLayout {
            ram: Some(0xc000_0000..0xc001_0000),
            vram: Some(0xc002_0000..0xc002_4000), // BAR 1 shows half the surface memory
            vram64: Some(0x1_0000_0000..0x1_0000_8000),
        };
        (MemSlots::default(), bars, memory)
    }

    #[test]
    fn add_translate_delete() {
        let (mut slots, bars, mem) = setup();
        let s = slots.add(1, 0xc000_0000, 0xc000_e000, &bars, &mem).unwrap();
        assert_eq!((s.backing, s.base, s.size), (Backing::Ram, 0, 0xe000));
        let s = slots
            .add(2, 0x1_0000_1000, 0x1_0000_8000, &bars, &mem)
            .unwrap();
        assert_eq!((s.backing, s.base), (Backing::Vram, 0x1000));
        let r = slots.translate(make_address(1, 0, 0x1234), 16).unwrap();
        assert_eq!((r.backing, r.offset, r.len), (Backing::Ram, 0x1234, 16));
        let r = slots.translate(make_address(2, 0, 0x10), 4).unwrap();
        assert_eq!((r.backing, r.offset), (Backing::Vram, 0x1010));
        assert_eq!(
            slots.translate(make_address(1, 0, 0xdff0), 0x11),
            Err(TranslateError::OutOfSlot {
                addr: make_address(1, 0, 0xdff0),
                len: 0x11
            })
        );
        assert!(slots.translate(make_address(1, 0, 0xdff0), 0x10).is_ok());
        assert!(matches!(
            slots.translate(make_address(1, 1, 0), 1),
            Err(TranslateError::Generation(_))
        ));
        assert!(matches!(
            slots.translate(make_address(3, 0, 0), 1),
            Err(TranslateError::Inactive(_))
        ));
        assert!(matches!(
            slots.translate(make_address(8, 0, 0), 1),
            Err(TranslateError::BadSlot(_))
        ));
        assert!(matches!(
            slots.translate(make_address(1, 0, 5), u64::MAX),
            Err(TranslateError::OutOfSlot { .. })
        ));
        slots.delete(1).unwrap();
        assert!(slots.translate(make_address(1, 0, 0), 1).is_err());
    }

    #[test]
    fn bad_slots_are_refused() {
        let (mut slots, bars, mem) = setup();
        assert_eq!(
            slots.add(8, 0xc000_0000, 0xc000_1000, &bars, &mem),
            Err(SlotError::BadId(8))
        );
        assert!(matches!(
            slots.add(1, 0xc000_2000, 0xc000_1000, &bars, &mem),
            Err(SlotError::Inverted { .. })
        ));
        // Past the end of BAR 0, and straddling BAR 0 and guest RAM.
        assert!(matches!(
            slots.add(1, 0xc000_0000, 0xc001_0001, &bars, &mem),
            Err(SlotError::NoBar { .. })
        ));
        assert!(matches!(
            slots.add(1, 0x1000, 0x2000, &bars, &mem),
            Err(SlotError::NoBar { .. })
        ));
        slots.add(1, 0xc000_0000, 0xc001_0000, &bars, &mem).unwrap();
        assert_eq!(
            slots.add(1, 0xc000_0000, 0xc001_0000, &bars, &mem),
            Err(SlotError::Active(1))
        );
        assert_eq!(slots.delete(9), Err(SlotError::BadId(9)));
    }
}
