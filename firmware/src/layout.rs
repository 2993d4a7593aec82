//! The guest physical address map: where RAM, the PCI windows, the
//! interrupt controllers and the boot structures live.
//!
//! ```text
//! 0x0000_0000 ┬ RAM (low)          boot GDT, page tables, zero page, cmdline
//! 0x0009_fc00 ┼ EBDA (reserved)
//! 0x000a_0000 ┼ legacy VGA window  (a device region, not RAM)
//! 0x000c_0000 ┼ RAM, reserved      option ROM area; ACPI tables at 0xe_0000
//! 0x0010_0000 ┼ RAM                kernel, initrd (top of low RAM)
//!   low_end   ┼ (hole)
//! 0xc000_0000 ┼ PCI 32-bit MMIO window (BARs)
//! 0xe000_0000 ┼ PCI ECAM (MMCONFIG) for bus 0
//! 0xfec0_0000 ┼ IOAPIC, 0xfee0_0000 LAPIC
//! 0x1_0000_0000 RAM above 4 GiB (when there is more than fits below)
//!   then        PCI 64-bit MMIO window
//! ```

use std::ops::Range;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Start of the extended BIOS data area; RAM below it is usable.
pub const EBDA_START: u64 = 0x9_fc00;
/// The legacy VGA memory window (0xa0000..0xc0000), emulated by the display device.
pub const VGA_WINDOW: Range<u64> = 0xa_0000..0xc_0000;
/// Where the ACPI tables (and the RSDP, which the kernel also scans for) live.
pub const ACPI_TABLES: Range<u64> = 0xe_0000..0x10_0000;
/// First byte of "high" memory (above the first MiB).
pub const HIGH_MEMORY_START: u64 = 0x10_0000;

/// The boot GDT and IDT used for the 64-bit entry.
pub const BOOT_GDT_START: u64 = 0x500;
pub const BOOT_IDT_START: u64 = 0x520;
/// The initial stack pointer handed to the kernel.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// The `boot_params` ("zero page").
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Identity-mapping page tables for the 64-bit entry (PML4, PDPT, 4 PDs).
pub const PML4_START: u64 = 0x9000;
pub const PDPT_START: u64 = 0xa000;
pub const PD_START: u64 = 0xb000;
/// The kernel command line.
pub const CMDLINE_START: u64 = 0x2_0000;
pub const CMDLINE_MAX_SIZE: usize = 0x1_0000;

/// RAM below 4 GiB ends here at the latest; the rest goes above 4 GiB.
pub const LOW_RAM_LIMIT: u64 = 0xc000_0000;
/// The 32-bit PCI MMIO window, for BARs: from the end of low RAM up to the
/// I/O APIC, as SeaBIOS uses it on an i440fx (it places BARs from the top).
pub const PCI_MMIO32: Range<u64> = 0xc000_0000..0xfec0_0000;
/// Where the VGA's linear framebuffer sits while no PCI display device
/// provides one: 16 MiB of the 32-bit PCI window that BAR assignment then
/// leaves alone (it only uses the window below).
pub const VGA_STANDALONE_FRAMEBUFFER: Range<u64> = 0xdf00_0000..0xe000_0000;
/// ECAM (memory-mapped PCI configuration space) for bus 0 only, above the
/// local APIC's window and outside the PCI window (firmware that assigns
/// BARs itself knows nothing of it).
pub const PCI_ECAM: Range<u64> = 0xfef0_0000..0xff00_0000;
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// KVM's own pages (the identity map page, then three for the TSS), just
/// below a 256 KiB BIOS image: reserved in every e820 map.
pub const KVM_PRIVATE: Range<u64> = 0xfffb_c000..0xfffc_0000;
pub const KVM_IDENTITY_MAP: u64 = KVM_PRIVATE.start;
pub const KVM_TSS: u64 = KVM_PRIVATE.start + 0x1000;
pub const LAPIC_START: u64 = 0xfee0_0000;
/// RAM that does not fit below 4 GiB starts here.
pub const RAM_ABOVE_4G_START: u64 = 1 << 32;
/// Size of the 64-bit PCI window placed above RAM.
pub const PCI_MMIO64_SIZE: u64 = 64 * GIB;

/// I/O port window for PCI I/O BARs.
pub const PCI_IO: Range<u64> = 0xc000..0x1_0000;

/// ACPI fixed-hardware register blocks (I/O ports).
pub const ACPI_PM1A_EVT: u16 = 0x600; // status (2 bytes) + enable (2 bytes)
pub const ACPI_PM1A_CNT: u16 = 0x604; // control (2 bytes)
pub const ACPI_PM_TMR: u16 = 0x608; // 24-bit timer (4 bytes)
pub const ACPI_GPE0: u16 = 0x620; // status (2 bytes) + enable (2 bytes)
pub const ACPI_GPE0_LEN: u8 = 4;
/// The reset control register (writing 0x06 resets the machine), as in the FADT.
pub const RESET_CONTROL_PORT: u16 = 0xcf9;
pub const RESET_CONTROL_VALUE: u8 = 0x06;
/// The SCI (ACPI system control interrupt) line.
pub const SCI_IRQ: u32 = 9;
/// The SLP_TYP value that means "soft off" (S5) in our \_S5 package.
pub const SLP_TYP_S5: u8 = 5;

/// IOAPIC pins 16..24 are the PCI INTx lines; each device pin maps to one of them.
pub const PCI_IRQ_BASE: u32 = 16;
pub const PCI_IRQ_COUNT: u32 = 8;

/// The interrupt line a PCI device's pin (0 = INTA) is wired to.
pub fn pci_irq_for(slot: u8, pin: u8) -> u32 {
    PCI_IRQ_BASE + (u32::from(slot) + u32::from(pin)) % PCI_IRQ_COUNT
}

/// Why a memory layout cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("guest memory size must be at least 64 MiB (got {0} bytes)")]
    TooSmall(u64),
    #[error("guest memory size must be a multiple of 4 KiB (got {0} bytes)")]
    NotPageAligned(u64),
    #[error("{size} bytes of guest memory do not fit in {phys_bits}-bit guest physical addresses")]
    TooLarge { size: u64, phys_bits: u8 },
}

/// Where this guest's RAM and 64-bit PCI window are, given its memory size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLayout {
    /// RAM from address 0 (the VGA window and BIOS area inside it are carved out
    /// of what the guest may use, see [`MemoryLayout::ram_regions`]).
    pub low_ram: Range<u64>,
    /// RAM above 4 GiB, if the guest has more than fits below.
    pub high_ram: Option<Range<u64>>,
    /// The 64-bit PCI MMIO window, above all RAM.
    pub pci_mmio64: Range<u64>,
}

impl MemoryLayout {
    pub const MIN_RAM: u64 = 64 * MIB;

    /// Lays out `ram_size` bytes of RAM for a CPU with `phys_bits` physical address bits.
    pub fn new(ram_size: u64, phys_bits: u8) -> Result<Self, LayoutError> {
        if ram_size < Self::MIN_RAM {
            return Err(LayoutError::TooSmall(ram_size));
        }
        if !ram_size.is_multiple_of(4 * KIB) {
            return Err(LayoutError::NotPageAligned(ram_size));
        }
        let low_size = ram_size.min(LOW_RAM_LIMIT);
        let high_size = ram_size - low_size;
        let high_ram = (high_size > 0).then(|| RAM_ABOVE_4G_START..RAM_ABOVE_4G_START + high_size);
        let top = high_ram.as_ref().map_or(RAM_ABOVE_4G_START, |r| r.end);
        let mmio64_start = top.div_ceil(GIB) * GIB;
        let pci_mmio64 = mmio64_start..mmio64_start + PCI_MMIO64_SIZE;
        let limit = 1u64.checked_shl(u32::from(phys_bits)).unwrap_or(u64::MAX);
        if pci_mmio64.end > limit {
            return Err(LayoutError::TooLarge {
                size: ram_size,
                phys_bits,
            });
        }
        Ok(MemoryLayout {
            low_ram: 0..low_size,
            high_ram,
            pci_mmio64,
        })
    }

    /// The ranges backed by guest RAM: everything but the legacy VGA window.
    pub fn ram_regions(&self) -> Vec<Range<u64>> {
        let mut regions = vec![0..VGA_WINDOW.start, VGA_WINDOW.end..self.low_ram.end];
        regions.extend(self.high_ram.clone());
        regions
    }

    /// Total RAM in bytes (including the carved-out BIOS areas).
    pub fn ram_size(&self) -> u64 {
        let high = self.high_ram.as_ref().map_or(0, |r| r.end - r.start);
        self.low_ram.end + high
    }

    /// The end of low RAM: the initrd is placed just below this.
    pub fn low_ram_end(&self) -> u64 {
        self.low_ram.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_has_no_high_ram() {
        let l = MemoryLayout::new(512 * MIB, 46).unwrap();
        assert_eq!(l.low_ram, 0..512 * MIB);
        assert_eq!(l.high_ram, None);
        assert_eq!(l.pci_mmio64.start, 4 * GIB);
        assert_eq!(l.ram_regions(), vec![0..0xa_0000, 0xc_0000..512 * MIB]);
    }

    #[test]
    fn large_guest_spills_above_4g() {
        let l = MemoryLayout::new(5 * GIB, 46).unwrap();
        assert_eq!(l.low_ram.end, LOW_RAM_LIMIT);
        assert_eq!(l.high_ram, Some(4 * GIB..4 * GIB + 2 * GIB));
        assert_eq!(l.ram_size(), 5 * GIB);
        assert_eq!(l.pci_mmio64.start, 6 * GIB);
    }

    #[test]
    fn rejects_bad_sizes() {
        assert_eq!(MemoryLayout::new(0, 46), Err(LayoutError::TooSmall(0)));
        assert!(matches!(
            MemoryLayout::new(64 * MIB + 1, 46),
            Err(LayoutError::NotPageAligned(_))
        ));
        assert!(matches!(
            MemoryLayout::new(1 << 46, 46),
            Err(LayoutError::TooLarge { .. })
        ));
    }

    #[test]
    fn pci_irqs_stay_in_the_ioapic_range() {
        for slot in 0..32 {
            for pin in 0..4 {
                let irq = pci_irq_for(slot, pin);
                assert!((16..24).contains(&irq));
            }
        }
    }
}
