//! The ACPI tables a guest booted directly (without a BIOS) finds:
//! RSDP → XSDT → FADT (→ FACS, DSDT), MADT, MCFG.
//!
//! The platform is "fixed hardware" ACPI: PM1a event/control blocks and a PM
//! timer at I/O ports (see [`crate::layout`]), a power button as a fixed event,
//! `\_S5` for soft-off, and a reset register at 0xcf9. The DSDT describes the
//! PCI host bridge (its windows and `_PRT` INTx routing), COM1 and the i8042.

use acpi_tables::{aml, fadt, rsdp::Rsdp, sdt::Sdt, Aml};

use crate::layout::{self, MemoryLayout};

const OEM_ID: [u8; 6] = *b"SAFFRN";
const OEM_TABLE_ID: [u8; 8] = *b"SAFFRON ";
const OEM_REVISION: u32 = 1;

/// What the tables must describe.
#[derive(Debug, Clone)]
pub struct AcpiConfig<'a> {
    pub cpus: u8,
    pub layout: &'a MemoryLayout,
}

/// The tables as one blob to be copied to guest memory at `base`.
#[derive(Debug, Clone)]
pub struct AcpiTables {
    pub base: u64,
    pub bytes: Vec<u8>,
    /// Guest address of the RSDP (also `base`: it is placed first).
    pub rsdp_addr: u64,
}

/// Builds the tables for a guest whose tables live at `layout::ACPI_TABLES`.
pub fn build(config: &AcpiConfig) -> AcpiTables {
    let tables = build_at(config, layout::ACPI_TABLES.start);
    assert!(
        tables.base + tables.bytes.len() as u64 <= layout::ACPI_TABLES.end,
        "ACPI tables overflow their area"
    );
    tables
}

/// Builds the tables as if loaded at `base` (0: every pointer is an offset
/// into the blob, for firmware that places them itself).
pub fn build_at(config: &AcpiConfig, base: u64) -> AcpiTables {
    let mut blob = TableBlob {
        base,
        bytes: Vec::new(),
    };

    // The RSDP goes first (at a 16-byte boundary in 0xe0000..0x100000, where
    // the kernel scans for it); its XSDT address is patched once known.
    let rsdp_offset = blob.reserve(Rsdp::len(), 16);

    let facs = blob.append(&acpi_tables::facs::FACS::new().to_bytes(), 64);
    let dsdt = blob.append(&dsdt(config), 8);
    let fadt = blob.append(&fadt(facs, dsdt), 8);
    let madt = blob.append(madt(config).as_slice(), 8);
    let mcfg = blob.append(&mcfg(), 8);

    let mut xsdt = Sdt::new(*b"XSDT", 36, 1, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for table in [fadt, madt, mcfg] {
        xsdt.append(table);
    }
    xsdt.update_checksum();
    let xsdt_addr = blob.append(xsdt.as_slice(), 8);

    let rsdp = Rsdp::new(OEM_ID, xsdt_addr).to_bytes();
    blob.bytes[rsdp_offset..rsdp_offset + rsdp.len()].copy_from_slice(&rsdp);

    AcpiTables {
        base,
        rsdp_addr: base + rsdp_offset as u64,
        bytes: blob.bytes,
    }
}

/// Tables laid out one after another, each aligned.
struct TableBlob {
    base: u64,
    bytes: Vec<u8>,
}

impl TableBlob {
    fn reserve(&mut self, len: usize, align: usize) -> usize {
        let offset = self.bytes.len().next_multiple_of(align);
        self.bytes.resize(offset + len, 0);
        offset
    }

    /// Appends `table`, returning its guest address.
    fn append(&mut self, table: &[u8], align: usize) -> u64 {
        let offset = self.reserve(table.len(), align);
        self.bytes[offset..].copy_from_slice(table);
        self.base + offset as u64
    }
}

trait ToBytes {
    fn to_bytes(&self) -> Vec<u8>;
}

impl<T: Aml> ToBytes for T {
    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.to_aml_bytes(&mut bytes);
        bytes
    }
}

fn fadt(facs: u64, dsdt: u64) -> Vec<u8> {
    let mut f = fadt::FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .firmware_ctrl_32(facs as u32)
        .dsdt_32(dsdt as u32)
        .flag(fadt::Flags::Wbinvd)
        .flag(fadt::Flags::ProcC1)
        // The sleep button is absent (a set bit means "not a fixed feature");
        // the power button is a fixed feature (its bit stays clear).
        .flag(fadt::Flags::SlpButton)
        .flag(fadt::Flags::TmrValExt)
        .flag(fadt::Flags::ResetRegSup)
        .preferred_pm_profile(fadt::PmProfile::Desktop)
        .gpe_info(u32::from(layout::ACPI_GPE0), 0, layout::ACPI_GPE0_LEN, 0, 0);
    f.sci_int = (layout::SCI_IRQ as u16).into();
    f.smi_cmd = 0.into(); // no SMI: the platform is always in ACPI mode
    f.pm1a_evt_blk = u32::from(layout::ACPI_PM1A_EVT).into();
    f.pm1_evt_len = 4;
    f.pm1a_cnt_blk = u32::from(layout::ACPI_PM1A_CNT).into();
    f.pm1_cnt_len = 2;
    f.pm_tmr_blk = u32::from(layout::ACPI_PM_TMR).into();
    f.pm_tmr_len = 4;
    // IA-PC boot architecture: legacy devices present, 8042 present.
    f.iapc_boot_arch = 0x0003.into();
    f.reset_reg = acpi_tables::gas::GAS::new(
        acpi_tables::gas::AddressSpace::SystemIo,
        8,
        0,
        acpi_tables::gas::AccessSize::ByteAccess,
        u64::from(layout::RESET_CONTROL_PORT),
    );
    f.reset_value = layout::RESET_CONTROL_VALUE;
    f.finalize().to_bytes()
}

fn madt(config: &AcpiConfig) -> Sdt {
    const PCAT_COMPAT: u32 = 1;
    const ENABLED: u32 = 1;
    const ISA_BUS: u8 = 0;
    const EDGE_HIGH: u16 = 0b0101;
    const LEVEL_HIGH: u16 = 0b1101;

    let mut madt = Sdt::new(*b"APIC", 36, 3, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    madt.append(layout::LAPIC_START as u32);
    madt.append(PCAT_COMPAT);
    for cpu in 0..config.cpus {
        // Processor Local APIC: type 0, length 8, UID, APIC id, flags.
        madt.append_slice(&[0, 8, cpu, cpu]);
        madt.append(ENABLED);
    }
    // I/O APIC: type 1, length 12, id, reserved, address, GSI base.
    madt.append_slice(&[1, 12, config.cpus, 0]);
    madt.append(layout::IOAPIC_START as u32);
    madt.append(0u32);
    // Interrupt source overrides: the PIT's IRQ0 is IOAPIC pin 2, the SCI is level.
    for (source, gsi, flags) in [
        (0u8, 2u32, EDGE_HIGH),
        (layout::SCI_IRQ as u8, layout::SCI_IRQ, LEVEL_HIGH),
    ] {
        madt.append_slice(&[2, 10, ISA_BUS, source]);
        madt.append(gsi);
        madt.append(flags);
    }
    // Local APIC NMI: all processors, LINT1.
    madt.append_slice(&[4, 6, 0xff]);
    madt.append(0u16);
    madt.append(1u8);
    madt.update_checksum();
    madt
}

fn mcfg() -> Vec<u8> {
    let mut mcfg = acpi_tables::mcfg::MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    mcfg.add_ecam(layout::PCI_ECAM.start, 0, 0, 0);
    mcfg.to_bytes()
}

fn dsdt(config: &AcpiConfig) -> Vec<u8> {
    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let s5 = layout::SLP_TYP_S5;
    let s5_package = aml::Package::new(vec![&s5, &s5, &0u8, &0u8]);
    aml::Name::new("_S5_".into(), &s5_package).to_aml_bytes(&mut dsdt);

    let pci0 = pci_host_bridge(config.layout);
    let com1 = legacy_device("COM1", "PNP0501", 1, &[(0x3f8, 8)], &[4]);
    let ps2_keyboard = legacy_device("PS2K", "PNP0303", 0, &[(0x60, 1), (0x64, 1)], &[1]);
    let ps2_mouse = legacy_device("PS2M", "PNP0F13", 0, &[], &[12]);
    let rtc = legacy_device("RTC_", "PNP0B00", 0, &[(0x70, 2)], &[8]);
    let motherboard = motherboard_resources();
    let sb = aml::Scope::new(
        "\\_SB_".into(),
        vec![&pci0, &com1, &ps2_keyboard, &ps2_mouse, &rtc, &motherboard],
    );
    sb.to_aml_bytes(&mut dsdt);
    dsdt.update_checksum();
    dsdt.as_slice().to_vec()
}

/// Raw AML bytes, so devices can be built in helpers and composed.
struct RawAml(Vec<u8>);

impl Aml for RawAml {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(&self.0);
    }
}

fn pci_host_bridge(layout: &MemoryLayout) -> RawAml {
    let mmio32 = &layout::PCI_MMIO32;
    let mmio64 = &layout.pci_mmio64;
    let vga = &layout::VGA_WINDOW;
    let bus = aml::AddressSpace::new_bus_number(0u16, 0u16);
    let cf8 = aml::IO::new(0xcf8, 0xcf8, 1, 8);
    let io_low = aml::AddressSpace::new_io(0u16, 0xcf7u16, None);
    let io_high = aml::AddressSpace::new_io(0xd00u16, 0xffffu16, None);
    let vga_mem = aml::AddressSpace::new_memory(
        aml::AddressSpaceCacheable::NotCacheable,
        true,
        vga.start as u32,
        (vga.end - 1) as u32,
        None,
    );
    let mem32 = aml::AddressSpace::new_memory(
        aml::AddressSpaceCacheable::NotCacheable,
        true,
        mmio32.start as u32,
        (mmio32.end - 1) as u32,
        None,
    );
    let mem64 = aml::AddressSpace::new_memory(
        aml::AddressSpaceCacheable::NotCacheable,
        true,
        mmio64.start,
        mmio64.end - 1,
        None,
    );
    let crs = aml::ResourceTemplate::new(vec![
        &bus, &cf8, &io_low, &io_high, &vga_mem, &mem32, &mem64,
    ]);

    // _PRT: every slot's INTA..INTD to its IOAPIC pin (no link devices).
    let entries: Vec<RawAml> = (1u8..32)
        .flat_map(|slot| {
            (0u8..4).map(move |pin| {
                let address = (u32::from(slot) << 16) | 0xffff;
                let gsi = layout::pci_irq_for(slot, pin);
                RawAml(aml::Package::new(vec![&address, &pin, &0u8, &gsi]).to_bytes())
            })
        })
        .collect();
    let prt = aml::Package::new(entries.iter().map(|e| e as &dyn Aml).collect());

    RawAml(
        aml::Device::new(
            "PCI0".into(),
            vec![
                &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0A08")),
                &aml::Name::new("_CID".into(), &aml::EISAName::new("PNP0A03")),
                &aml::Name::new("_ADR".into(), &0u8),
                &aml::Name::new("_SEG".into(), &0u8),
                &aml::Name::new("_UID".into(), &0u8),
                &aml::Name::new("_BBN".into(), &0u8),
                &aml::Name::new("_CRS".into(), &crs),
                &aml::Name::new("_PRT".into(), &prt),
            ],
        )
        .to_bytes(),
    )
}

/// A legacy ISA device with fixed I/O ports and edge-triggered IRQs.
fn legacy_device(name: &str, hid: &str, uid: u8, ports: &[(u16, u8)], irqs: &[u32]) -> RawAml {
    let ios: Vec<aml::IO> = ports
        .iter()
        .map(|&(p, n)| aml::IO::new(p, p, 1, n))
        .collect();
    let ints: Vec<aml::Interrupt> = irqs
        .iter()
        .map(|&irq| aml::Interrupt::new(true, true, false, false, irq))
        .collect();
    let mut resources: Vec<&dyn Aml> = ios.iter().map(|r| r as &dyn Aml).collect();
    resources.extend(ints.iter().map(|r| r as &dyn Aml));
    let crs = aml::ResourceTemplate::new(resources);
    let hid = aml::EISAName::new(hid);
    RawAml(
        aml::Device::new(
            name.into(),
            vec![
                &aml::Name::new("_HID".into(), &hid),
                &aml::Name::new("_UID".into(), &uid),
                &aml::Name::new("_CRS".into(), &crs),
            ],
        )
        .to_bytes(),
    )
}

/// Resources the platform itself decodes: the ECAM window and ACPI registers.
/// Linux accepts MMCONFIG only if its window is reserved here or in e820.
fn motherboard_resources() -> RawAml {
    let ecam = &layout::PCI_ECAM;
    let ecam_mem =
        aml::Memory32Fixed::new(false, ecam.start as u32, (ecam.end - ecam.start) as u32);
    let pm = aml::IO::new(layout::ACPI_PM1A_EVT, layout::ACPI_PM1A_EVT, 1, 0x10);
    let gpe = aml::IO::new(
        layout::ACPI_GPE0,
        layout::ACPI_GPE0,
        1,
        layout::ACPI_GPE0_LEN,
    );
    let crs = aml::ResourceTemplate::new(vec![&ecam_mem, &pm, &gpe]);
    RawAml(
        aml::Device::new(
            "MRES".into(),
            vec![
                &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0C02")),
                &aml::Name::new("_UID".into(), &0u8),
                &aml::Name::new("_CRS".into(), &crs),
            ],
        )
        .to_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{GIB, MIB};

    fn checksum_ok(table: &[u8]) -> bool {
        table.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
    }

    fn table_at(t: &AcpiTables, addr: u64) -> &[u8] {
        let off = (addr - t.base) as usize;
        let len = u32::from_le_bytes(t.bytes[off + 4..off + 8].try_into().unwrap()) as usize;
        &t.bytes[off..off + len]
    }

    #[test]
    fn tables_link_up_and_checksum() {
        let layout = MemoryLayout::new(5 * GIB, 46).unwrap();
        let t = build(&AcpiConfig {
            cpus: 4,
            layout: &layout,
        });
        assert_eq!(t.rsdp_addr % 16, 0);
        let rsdp = &t.bytes[(t.rsdp_addr - t.base) as usize..][..36];
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert!(checksum_ok(&rsdp[..20]) && checksum_ok(rsdp));
        let xsdt_addr = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
        let xsdt = table_at(&t, xsdt_addr);
        assert_eq!(&xsdt[..4], b"XSDT");
        assert!(checksum_ok(xsdt));
        let mut signatures = Vec::new();
        for entry in xsdt[36..].chunks(8) {
            let table = table_at(&t, u64::from_le_bytes(entry.try_into().unwrap()));
            assert!(checksum_ok(table), "{:?}", &table[..4]);
            signatures.push(table[..4].to_vec());
            if &table[..4] == b"FACP" {
                let dsdt = u32::from_le_bytes(table[40..44].try_into().unwrap());
                let dsdt = table_at(&t, u64::from(dsdt));
                assert_eq!(&dsdt[..4], b"DSDT");
                assert!(checksum_ok(dsdt));
            }
        }
        assert_eq!(
            signatures,
            vec![b"FACP".to_vec(), b"APIC".to_vec(), b"MCFG".to_vec()]
        );
    }

    #[test]
    fn madt_lists_every_cpu() {
        let layout = MemoryLayout::new(512 * MIB, 46).unwrap();
        let madt = madt(&AcpiConfig {
            cpus: 8,
            layout: &layout,
        });
        let body = &madt.as_slice()[44..];
        let lapics = body.chunks(8).take_while(|e| e[0] == 0).count();
        assert_eq!(lapics, 8);
    }
}
