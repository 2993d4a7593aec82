//! Address-range dispatch for port I/O and MMIO exits.
//!
//! A [`Bus`] maps non-overlapping ranges to devices; a vCPU thread asks it to
//! carry out each access. Devices see offsets relative to their range.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// A device reachable through a bus. Methods take `&self` so that one device
/// can serve several vCPUs; most devices get this through [`BusDeviceMut`].
pub trait BusDevice: Send + Sync {
    fn read(&self, offset: u64, data: &mut [u8]);
    fn write(&self, offset: u64, data: &[u8]);
}

/// A device whose state sits behind one lock.
pub trait BusDeviceMut: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

impl<T: BusDeviceMut> BusDevice for Mutex<T> {
    fn read(&self, offset: u64, data: &mut [u8]) {
        lock(self).read(offset, data)
    }
    fn write(&self, offset: u64, data: &[u8]) {
        lock(self).write(offset, data)
    }
}

/// Locks a device, carrying on if another thread panicked while holding it:
/// device state stays usable and the VM keeps running.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("range {base:#x}+{len:#x} overlaps a device already on the bus")]
    Overlap { base: u64, len: u64 },
    #[error("empty or wrapping range {base:#x}+{len:#x}")]
    BadRange { base: u64, len: u64 },
}

struct Entry {
    len: u64,
    device: Arc<dyn BusDevice>,
}

/// A set of devices, each on its own address range.
#[derive(Default)]
pub struct Bus {
    entries: RwLock<BTreeMap<u64, Entry>>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&self, base: u64, len: u64, device: Arc<dyn BusDevice>) -> Result<(), BusError> {
        if len == 0 || base.checked_add(len).is_none() {
            return Err(BusError::BadRange { base, len });
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let overlaps_prev = entries
            .range(..base + len)
            .next_back()
            .is_some_and(|(b, e)| b + e.len > base);
        if overlaps_prev {
            return Err(BusError::Overlap { base, len });
        }
        entries.insert(base, Entry { len, device });
        Ok(())
    }

    /// Removes the device whose range starts at `base`; returns whether there was one.
    pub fn remove(&self, base: u64) -> bool {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.remove(&base).is_some()
    }

    fn find(&self, addr: u64, size: usize) -> Option<(Arc<dyn BusDevice>, u64)> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let (base, entry) = entries.range(..=addr).next_back()?;
        let offset = addr - base;
        (offset + size as u64 <= entry.len).then(|| (entry.device.clone(), offset))
    }

    /// Reads from the device at `addr`; returns false (leaving `data` as it
    /// was) when no device covers the whole access.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((device, offset)) => {
                device.read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Writes to the device at `addr`; returns false when no device covers it.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((device, offset)) => {
                device.write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Vec<(u64, Vec<u8>)>);

    impl BusDeviceMut for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_by_range_with_offsets() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(0x3f8, 8, dev.clone()).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fa, &mut b));
        assert_eq!(b, [2]);
        assert!(bus.write(0x3ff, &[7]));
        assert!(!bus.write(0x400, &[7]));
        assert!(!bus.read(0x3ff, &mut [0u8; 2]), "access straddling the end");
        assert_eq!(lock(&dev).0, vec![(7, vec![7])]);
    }

    #[test]
    fn rejects_overlaps() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(0x100, 0x10, dev.clone()).unwrap();
        assert!(bus.insert(0x108, 0x10, dev.clone()).is_err());
        assert!(bus.insert(0xf8, 0x10, dev.clone()).is_err());
        assert!(bus.insert(0x110, 0x10, dev.clone()).is_ok());
        assert!(bus.insert(u64::MAX, 2, dev.clone()).is_err());
        assert!(bus.remove(0x100));
        assert!(bus.insert(0xf8, 0x10, dev).is_ok());
    }
}
