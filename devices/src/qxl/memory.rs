//! Safe, bounds-checked access to the memory QXL shares with the guest: the
//! RAM BAR (BAR 0) and the surface memory behind BAR 1 / BAR 4.
//!
//! Everything the device reads from the guest goes through here. A
//! [`GuestRange`] is a validated byte range of one backing (made by memslot
//! translation or by the device itself); reads copy bytes out once (the guest
//! may change the memory at any moment, so callers parse their private copy),
//! writes copy bytes in. All accesses use vm-memory's volatile slices, so this
//! module needs no `unsafe`: a range that does not fit its backing is refused,
//! never read.

use core::mem::size_of;
use std::sync::atomic::{AtomicU32, Ordering};

use vm_memory::{VolatileMemory, VolatileSlice};
use zerocopy::{FromBytes, IntoBytes, KnownLayout};

use crate::memory::DeviceMemory;

/// Which host memory a range lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backing {
    /// BAR 0.
    Ram,
    /// The surface memory of BAR 1 (its first bytes) and BAR 4.
    Vram,
}

/// A byte range inside one backing, known to fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestRange {
    pub backing: Backing,
    pub offset: u64,
    pub len: u64,
}

impl GuestRange {
    /// `len` bytes at `at` inside this range.
    pub fn sub(&self, at: u64, len: u64) -> Option<GuestRange> {
        let end = at.checked_add(len)?;
        (end <= self.len).then_some(GuestRange {
            backing: self.backing,
            offset: self.offset + at,
            len,
        })
    }

    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// The device's shared memory.
pub struct BarMemory {
    ram: DeviceMemory,
    vram: DeviceMemory,
}

impl BarMemory {
    pub fn new(ram: DeviceMemory, vram: DeviceMemory) -> Self {
        BarMemory { ram, vram }
    }

    pub fn ram(&self) -> &DeviceMemory {
        &self.ram
    }

    pub fn vram(&self) -> &DeviceMemory {
        &self.vram
    }

    fn region(&self, backing: Backing) -> &DeviceMemory {
        match backing {
            Backing::Ram => &self.ram,
            Backing::Vram => &self.vram,
        }
    }

    pub fn size(&self, backing: Backing) -> u64 {
        self.region(backing).size() as u64
    }

    /// A range of `backing`, if it fits.
    pub fn range(&self, backing: Backing, offset: u64, len: u64) -> Option<GuestRange> {
        let end = offset.checked_add(len)?;
        (end <= self.size(backing)).then_some(GuestRange {
            backing,
            offset,
            len,
        })
    }

    fn slice(&self, backing: Backing, offset: u64, len: usize) -> Option<VolatileSlice<'_>> {
        let offset = usize::try_from(offset).ok()?;
        self.region(backing).get_slice(offset, len).ok()
    }

    /// Copies `out.len()` bytes from `range` at `at`; false (and `out`
    /// untouched) if they are not all inside the range.
    pub fn read(&self, range: GuestRange, at: u64, out: &mut [u8]) -> bool {
        let Some(sub) = range.sub(at, out.len() as u64) else {
            return false;
        };
        match self.slice(sub.backing, sub.offset, out.len()) {
            Some(slice) => slice.copy_to(out) == out.len(),
            None => false,
        }
    }

    /// `N` bytes from `range` at `at`.
    pub fn read_array<const N: usize>(&self, range: GuestRange, at: u64) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        self.read(range, at, &mut out).then_some(out)
    }

    /// Copies the structure at `offset` of a BAR out of it (device
    /// registers such as the RAM header's); `None` if it does not fit.
    pub fn read_struct<T: FromBytes + IntoBytes + KnownLayout>(
        &self,
        backing: Backing,
        offset: u64,
    ) -> Option<T> {
        let range = self.range(backing, offset, size_of::<T>() as u64)?;
        let mut value = T::new_zeroed();
        self.read(range, 0, value.as_mut_bytes()).then_some(value)
    }

    /// Copies `data` into `range` at `at`; false if it does not fit.
    pub fn write(&self, range: GuestRange, at: u64, data: &[u8]) -> bool {
        let Some(sub) = range.sub(at, data.len() as u64) else {
            return false;
        };
        match self.slice(sub.backing, sub.offset, data.len()) {
            Some(slice) => {
                slice.copy_from(data);
                true
            }
            None => false,
        }
    }

    /// Zeroes a range.
    pub fn zero(&self, range: GuestRange) -> bool {
        static ZEROS: [u8; 65536] = [0; 65536];
        let mut done = 0u64;
        while done < range.len {
            let n = (range.len - done).min(ZEROS.len() as u64) as usize;
            if !self.write(range, done, &ZEROS[..n]) {
                return false;
            }
            done += n as u64;
        }
        true
    }

    /// A little-endian u32 at a fixed offset of `backing` (device-owned
    /// structures such as the RAM header); 0 if out of range.
    pub fn u32_at(&self, backing: Backing, offset: u64) -> u32 {
        self.range(backing, offset, 4)
            .and_then(|r| self.read_array::<4>(r, 0))
            .map_or(0, u32::from_le_bytes)
    }

    pub fn u64_at(&self, backing: Backing, offset: u64) -> u64 {
        self.range(backing, offset, 8)
            .and_then(|r| self.read_array::<8>(r, 0))
            .map_or(0, u64::from_le_bytes)
    }

    pub fn set_u32_at(&self, backing: Backing, offset: u64, value: u32) {
        if let Some(r) = self.range(backing, offset, 4) {
            self.write(r, 0, &value.to_le_bytes());
        }
    }

    pub fn set_u64_at(&self, backing: Backing, offset: u64, value: u64) {
        if let Some(r) = self.range(backing, offset, 8) {
            self.write(r, 0, &value.to_le_bytes());
        }
    }

    /// Atomically ORs `bits` into the aligned u32 at `offset` of BAR 0 (the
    /// guest clears it with an atomic exchange); returns the previous value.
    pub fn fetch_or_ram_u32(&self, offset: u64, bits: u32) -> u32 {
        let Ok(offset) = usize::try_from(offset) else {
            return 0;
        };
        match self.ram.get_atomic_ref::<AtomicU32>(offset) {
            Ok(word) => word.fetch_or(bits, Ordering::SeqCst),
            Err(_) => 0,
        }
    }

    /// Atomically replaces the aligned u32 at `offset` of BAR 0 and returns
    /// the previous value: what a guest driver does to take `int_pending`
    /// (Linux: `xchg(&ram->int_pending, 0)`). For drivers written in Rust
    /// (the replay tool, tests).
    pub fn swap_ram_u32(&self, offset: u64, value: u32) -> u32 {
        let Ok(offset) = usize::try_from(offset) else {
            return 0;
        };
        match self.ram.get_atomic_ref::<AtomicU32>(offset) {
            Ok(word) => word.swap(value, Ordering::SeqCst),
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::allocate;

    #[test]
    fn ranges_are_bounded() {
        let mem = BarMemory::new(allocate(8192).unwrap(), allocate(4096).unwrap());
        assert!(mem.range(Backing::Ram, 8190, 2).is_some());
        assert!(mem.range(Backing::Ram, 8190, 3).is_none());
        assert!(mem.range(Backing::Vram, u64::MAX, 2).is_none());
        let r = mem.range(Backing::Ram, 100, 16).unwrap();
        assert!(mem.write(r, 12, &[1, 2, 3, 4]));
        assert!(!mem.write(r, 13, &[1, 2, 3, 4]));
        assert_eq!(mem.read_array::<4>(r, 12), Some([1, 2, 3, 4]));
        assert_eq!(mem.read_array::<4>(r, 14), None);
        assert_eq!(mem.u32_at(Backing::Ram, 112), 0x0403_0201);
        assert_eq!(mem.u32_at(Backing::Ram, 8190), 0, "out of range reads as 0");
        assert_eq!(r.sub(8, 8).unwrap().offset, 108);
        assert!(r.sub(8, 9).is_none());
        assert!(r.sub(u64::MAX, 2).is_none());
    }

    #[test]
    fn atomic_or_and_zero() {
        let mem = BarMemory::new(allocate(8192).unwrap(), allocate(4096).unwrap());
        assert_eq!(mem.fetch_or_ram_u32(4, 1), 0);
        assert_eq!(mem.fetch_or_ram_u32(4, 4), 1);
        assert_eq!(mem.u32_at(Backing::Ram, 4), 5);
        assert_eq!(
            mem.fetch_or_ram_u32(8190, 1),
            0,
            "misaligned/out of range is refused"
        );
        let all = mem.range(Backing::Ram, 0, 8192).unwrap();
        assert!(mem.zero(all));
        assert_eq!(mem.u32_at(Backing::Ram, 4), 0);
    }
}
