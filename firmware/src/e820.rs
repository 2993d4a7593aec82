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
    ];
    if let Some(high) = &layout.high_ram {
        map.push(E820Entry::new(high.clone(), E820Kind::Ram));
    }
    map
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
}
