//! Places PCI BARs where the guest programs them: trapped BARs on the I/O or
//! MMIO bus (plus KVM ioeventfds for the offsets a device marks as pure
//! "wake up" doorbells), memory-backed BARs as KVM memory slots (moved, not
//! copied).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use devices::bus::{lock, Bus};
use devices::pci::{BarAccess, BarBacking, BarKind, BarMapper, BarRegion, SharedPciDevice};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vmm_sys_util::eventfd::EventFd;

use super::memory::{MemoryError, MemorySlots, SlotMapping};

/// A registered ioeventfd: where, and the device's event.
type IoEvent = (IoEventAddress, Arc<EventFd>);

pub struct KvmBarMapper {
    vm: Arc<VmFd>,
    slots: Arc<MemorySlots>,
    io_bus: Arc<Bus>,
    mmio_bus: Arc<Bus>,
    /// Where BARs may go: anything else (a half-programmed BAR, a size probe
    /// left enabled) stays unmapped.
    io_window: Range<u64>,
    memory_windows: Vec<Range<u64>>,
    /// KVM slot and size of each memory-backed BAR that is mapped, by (PCI slot, BAR).
    memory_slots: Mutex<HashMap<(u8, usize), (u32, u64)>>,
    /// ioeventfds registered for a BAR, to remove when it moves.
    ioevents: Mutex<HashMap<(u8, usize), Vec<IoEvent>>>,
}

impl KvmBarMapper {
    pub fn new(
        vm: Arc<VmFd>,
        slots: Arc<MemorySlots>,
        io_bus: Arc<Bus>,
        mmio_bus: Arc<Bus>,
        io_window: Range<u64>,
        memory_windows: Vec<Range<u64>>,
    ) -> Self {
        KvmBarMapper {
            vm,
            slots,
            io_bus,
            mmio_bus,
            io_window,
            memory_windows,
            memory_slots: Mutex::new(HashMap::new()),
            ioevents: Mutex::new(HashMap::new()),
        }
    }

    /// Registers the device's doorbell events for a trapped BAR; a failure
    /// only costs speed (the writes then exit to the device as usual).
    fn add_ioevents(&self, region: &BarRegion, device: &SharedPciDevice) {
        let events = lock(device).bar_events(region.bar);
        let mut added = Vec::new();
        for (offset, event) in events {
            let Some(addr) = region.range.start.checked_add(offset) else {
                continue;
            };
            let address = match region.kind {
                BarKind::Io => IoEventAddress::Pio(addr),
                _ => IoEventAddress::Mmio(addr),
            };
            match self.vm.register_ioevent(&event, &address, NoDatamatch) {
                Ok(()) => added.push((address, event)),
                Err(e) => tracing::debug!("no ioeventfd at {addr:#x}: {e}"),
            }
        }
        self.ioevents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((region.slot, region.bar), added);
    }

    fn remove_ioevents(&self, region: &BarRegion) {
        let removed = self
            .ioevents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(region.slot, region.bar));
        for (address, event) in removed.into_iter().flatten() {
            if let Err(e) = self.vm.unregister_ioevent(&event, &address, NoDatamatch) {
                tracing::warn!("cannot remove an ioeventfd: {e}");
            }
        }
    }

    fn in_window(&self, region: &BarRegion) -> bool {
        let inside = |w: &Range<u64>| region.range.start >= w.start && region.range.end <= w.end;
        match region.kind {
            BarKind::Io => inside(&self.io_window),
            _ => self.memory_windows.iter().any(inside),
        }
    }

    /// The dirty page bitmap of a memory-backed BAR mapped with `log_dirty`
    /// (bit `i` = page `i` of the BAR), since the last call; `None` when the
    /// BAR is not mapped now. After the guest moves a BAR its log starts
    /// afresh, so callers should treat a move as "everything changed".
    pub fn dirty_log(&self, pci_slot: u8, bar: usize) -> Option<Result<Vec<u64>, MemoryError>> {
        // Holding the map keeps the slot from being moved while KVM reads it.
        let slots = self.memory_slots.lock().unwrap_or_else(|p| p.into_inner());
        let (slot, size) = *slots.get(&(pci_slot, bar))?;
        Some(self.slots.dirty_log(&self.vm, slot, size))
    }

    fn bus(&self, kind: BarKind) -> &Bus {
        if kind == BarKind::Io {
            &self.io_bus
        } else {
            &self.mmio_bus
        }
    }
}

impl BarMapper for KvmBarMapper {
    fn map(
        &self,
        region: &BarRegion,
        device: &SharedPciDevice,
        backing: &BarBacking,
    ) -> Result<(), String> {
        if !self.in_window(region) {
            return Err(format!(
                "{:#x}..{:#x} is outside the host bridge's windows",
                region.range.start, region.range.end
            ));
        }
        let len = region.range.end - region.range.start;
        match backing {
            BarBacking::Trapped => {
                self.bus(region.kind)
                    .insert(
                        region.range.start,
                        len,
                        Arc::new(BarAccess {
                            device: device.clone(),
                            bar: region.bar,
                        }),
                    )
                    .map_err(|e| e.to_string())?;
                self.add_ioevents(region, device);
                Ok(())
            }
            BarBacking::Memory {
                memory,
                read_only,
                log_dirty,
            } => {
                let size = (memory.size() as u64).min(len);
                let mut memory_slots = self.memory_slots.lock().unwrap_or_else(|p| p.into_inner());
                let slot = self
                    .slots
                    .map(
                        &self.vm,
                        SlotMapping {
                            guest_addr: region.range.start,
                            size,
                            host_addr: memory.as_ptr() as u64,
                            read_only: *read_only,
                            log_dirty: *log_dirty,
                        },
                    )
                    .map_err(|e| e.to_string())?;
                memory_slots.insert((region.slot, region.bar), (slot, size));
                drop(memory_slots);
                if *read_only {
                    // Writes to read-only memory exit as MMIO: send them to the device.
                    let _ = self.mmio_bus.insert(
                        region.range.start,
                        len,
                        Arc::new(BarAccess {
                            device: device.clone(),
                            bar: region.bar,
                        }),
                    );
                }
                Ok(())
            }
        }
    }

    fn unmap(&self, region: &BarRegion, backing: &BarBacking) {
        match backing {
            BarBacking::Trapped => {
                self.remove_ioevents(region);
                self.bus(region.kind).remove(region.range.start);
            }
            BarBacking::Memory { read_only, .. } => {
                let mut memory_slots = self.memory_slots.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((slot, _)) = memory_slots.remove(&(region.slot, region.bar)) {
                    self.slots.unmap(&self.vm, slot);
                }
                drop(memory_slots);
                if *read_only {
                    self.mmio_bus.remove(region.range.start);
                }
            }
        }
    }
}
