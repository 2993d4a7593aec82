//! Guest RAM (vm-memory) and the KVM memory slots that map it and device
//! memory into the guest.

use std::sync::Mutex;

use firmware::layout::MemoryLayout;
use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

pub type GuestRam = GuestMemoryMmap<()>;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("cannot allocate {size} bytes of guest memory: {reason}")]
    Allocate { size: u64, reason: String },
    #[error("KVM refused a memory slot at {addr:#x} ({size:#x} bytes): {source}")]
    Slot {
        addr: u64,
        size: u64,
        source: kvm_ioctls::Error,
    },
    #[error("all KVM memory slots are in use")]
    NoFreeSlot,
    #[error("KVM cannot read the dirty log of memory slot {slot}: {source}")]
    DirtyLog {
        slot: u32,
        source: kvm_ioctls::Error,
    },
}

/// Allocates guest RAM for `layout` (lazily: pages are only touched on use).
pub fn allocate_ram(layout: &MemoryLayout) -> Result<GuestRam, MemoryError> {
    let ranges: Vec<(GuestAddress, usize)> = layout
        .ram_regions()
        .into_iter()
        .map(|r| (GuestAddress(r.start), (r.end - r.start) as usize))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges).map_err(|e| MemoryError::Allocate {
        size: layout.ram_size(),
        reason: e.to_string(),
    })
}

/// Hands out KVM memory slot numbers and maps host memory into the guest.
pub struct MemorySlots {
    free: Mutex<Vec<u32>>,
    max: u32,
}

/// A mapping of host memory into guest physical address space.
#[derive(Debug, Clone, Copy)]
pub struct SlotMapping {
    pub guest_addr: u64,
    pub size: u64,
    pub host_addr: u64,
    pub read_only: bool,
    pub log_dirty: bool,
}

impl MemorySlots {
    pub fn new(max: usize) -> Self {
        let max = max.min(u16::MAX as usize) as u32;
        MemorySlots {
            free: Mutex::new((0..max).rev().collect()),
            max,
        }
    }

    /// Maps `mapping` into the guest; returns the slot used.
    pub fn map(&self, vm: &VmFd, mapping: SlotMapping) -> Result<u32, MemoryError> {
        let slot = self
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .ok_or(MemoryError::NoFreeSlot)?;
        let mut flags = 0;
        if mapping.read_only {
            flags |= KVM_MEM_READONLY;
        }
        if mapping.log_dirty {
            flags |= KVM_MEM_LOG_DIRTY_PAGES;
        }
        let region = kvm_userspace_memory_region {
            slot,
            flags,
            guest_phys_addr: mapping.guest_addr,
            memory_size: mapping.size,
            userspace_addr: mapping.host_addr,
        };
        // SAFETY: the host memory behind `host_addr` is owned by guest RAM or a
        // device's DeviceMemory, both of which live until the VM is torn down
        // (the process exits), and is `size` bytes long.
        if let Err(source) = unsafe { vm.set_user_memory_region(region) } {
            self.release(slot);
            return Err(MemoryError::Slot {
                addr: mapping.guest_addr,
                size: mapping.size,
                source,
            });
        }
        Ok(slot)
    }

    /// Removes `slot` from the guest.
    pub fn unmap(&self, vm: &VmFd, slot: u32) {
        let region = kvm_userspace_memory_region {
            slot,
            ..Default::default()
        };
        // SAFETY: a zero-sized region deletes the slot; no host memory is referenced.
        if let Err(e) = unsafe { vm.set_user_memory_region(region) } {
            tracing::warn!("could not remove memory slot {slot}: {e}");
        }
        self.release(slot);
    }

    /// The pages of `slot` (`size` bytes, mapped with `log_dirty`) the guest
    /// wrote since the last call: bit `i` of the bitmap is page `i`.
    pub fn dirty_log(&self, vm: &VmFd, slot: u32, size: u64) -> Result<Vec<u64>, MemoryError> {
        vm.get_dirty_log(slot, size as usize)
            .map_err(|source| MemoryError::DirtyLog { slot, source })
    }

    fn release(&self, slot: u32) {
        if slot < self.max {
            self.free
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(slot);
        }
    }
}

/// Maps every RAM region into the guest.
pub fn map_ram(vm: &VmFd, slots: &MemorySlots, ram: &GuestRam) -> Result<(), MemoryError> {
    map_regions(vm, slots, ram, false)
}

/// Maps `rom` into the guest read-only: writes exit to the VMM, which
/// ignores them.
pub fn map_rom(vm: &VmFd, slots: &MemorySlots, rom: &GuestRam) -> Result<(), MemoryError> {
    map_regions(vm, slots, rom, true)
}

fn map_regions(
    vm: &VmFd,
    slots: &MemorySlots,
    memory: &GuestRam,
    read_only: bool,
) -> Result<(), MemoryError> {
    for region in memory.iter() {
        let host_addr = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|e| MemoryError::Allocate {
                size: region.len(),
                reason: e.to_string(),
            })? as u64;
        slots.map(
            vm,
            SlotMapping {
                guest_addr: region.start_addr().0,
                size: region.len(),
                host_addr,
                read_only,
                log_dirty: false,
            },
        )?;
    }
    Ok(())
}
