//! The BIOS e820 memory map the kernel reads from its boot parameters.

use crate::layout::{self, MemoryLayout};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Kind {
    Ram = 1,
    Reserved = 2,
    Acpi = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: E820Kind,
}

impl E820Entry {
    fn new(range: std::ops::Range<u64>, kind: E820Kind) -> Self {
        E820Entry {
            addr: range.start,
            size: range.end - range.start,
            kind,
        }
    }
}

/// The e820 map for a guest with this layout: usable RAM, the BIOS areas, the
/// ACPI tables and the ECAM window (which Linux wants reserved before it uses MMCONFIG).
pub fn memory_map(layout: &MemoryLayout) -> Vec<E820Entry> {
    let mut map = vec![
        E820Entry::new(0..layout::EBDA_START, E820Kind::Ram),
        E820Entry::new(
            layout::EBDA_START..layout::VGA_WINDOW.start,
            E820Kind::Reserved,
        ),
        E820Entry::new(layout::ACPI_TABLES, E820Kind::Reserved),
        E820Entry::new(
            layout::HIGH_MEMORY_START..layout.low_ram_end(),
            E820Kind::Ram,
        ),
        E820Entry::new(layout::PCI_ECAM, E820Kind::Reserved),
        E820Entry::new(layout::KVM_PRIVATE, E820Kind::Reserved),
    ];
    if let Some(high) = &layout.high_ram {
        map.push(E820Entry::new(high.clone(), E820Kind::Ram));
    }
    map
}

/// The map a BIOS starts from (QEMU's `etc/e820`): RAM from 0 (the BIOS
/// carves out its own areas and the VGA window) and above 4 GiB, and the
/// ECAM window reserved.
pub fn bios_memory_map(layout: &MemoryLayout) -> Vec<E820Entry> {
    let mut map = vec![
        E820Entry::new(0..layout.low_ram_end(), E820Kind::Ram),
        E820Entry::new(layout::PCI_ECAM, E820Kind::Reserved),
        E820Entry::new(layout::KVM_PRIVATE, E820Kind::Reserved),
    ];
    if let Some(high) = &layout.high_ram {
        map.push(E820Entry::new(high.clone(), E820Kind::Ram));
    }
    map
}

/// The map as fw_cfg's `etc/e820` file: (address u64, length u64, type
/// u32) per entry, little endian, packed.
pub fn fw_cfg_bytes(map: &[E820Entry]) -> Vec<u8> {
    map.iter()
        .flat_map(|e| {
            let mut bytes = e.addr.to_le_bytes().to_vec();
            bytes.extend_from_slice(&e.size.to_le_bytes());
            bytes.extend_from_slice(&(e.kind as u32).to_le_bytes());
            bytes
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{GIB, MIB};

    #[test]
    fn usable_ram_adds_up() {
        let l = MemoryLayout::new(5 * GIB, 46).unwrap();
        let map = memory_map(&l);
        let usable: u64 = map
            .iter()
            .filter(|e| e.kind == E820Kind::Ram)
            .map(|e| e.size)
            .sum();
        // Everything but the EBDA..1MiB area counts as usable.
        assert_eq!(
            usable,
            5 * GIB - (layout::HIGH_MEMORY_START - layout::EBDA_START)
        );
        assert!(map.iter().any(|e| e.addr == 4 * GIB && e.size == 2 * GIB));
    }

    #[test]
    fn entries_do_not_overlap() {
        let mut map = memory_map(&MemoryLayout::new(512 * MIB, 46).unwrap());
        map.sort_by_key(|e| e.addr);
        for pair in map.windows(2) {
            assert!(pair[0].addr + pair[0].size <= pair[1].addr, "{pair:?}");
        }
    }

    #[test]
    fn bios_map_as_fw_cfg_file() {
        let l = MemoryLayout::new(5 * GIB, 46).unwrap();
        let bytes = fw_cfg_bytes(&bios_memory_map(&l));
        assert_eq!(bytes.len(), 4 * 20);
        assert_eq!(&bytes[0..8], &0u64.to_le_bytes());
        assert_eq!(&bytes[8..16], &l.low_ram_end().to_le_bytes());
        assert_eq!(&bytes[16..20], &1u32.to_le_bytes());
        assert_eq!(&bytes[76..80], &1u32.to_le_bytes(), "RAM above 4 GiB");
        assert_eq!(&bytes[36..40], &2u32.to_le_bytes(), "ECAM reserved");
    }
}
