//! Booting through a BIOS (SeaBIOS): its image where the CPU starts,
//! fw_cfg with what it reads (the memory map, the CPU count, the ACPI
//! tables and their loader, the QXL's VGA BIOS), and the CMOS memory
//! fields. The boot CPU then starts at the reset vector.

use std::path::Path;
use std::sync::{Arc, Mutex};

use devices::bus::{lock, Bus};
use devices::rtc::Rtc;
use firmware::bios::BiosImage;
use firmware::fw_cfg::{self, FwCfg};
use firmware::layout::MemoryLayout;
use firmware::{acpi, acpi_loader, e820, linuxboot};
use kvm_ioctls::VmFd;
use vm_memory::{Bytes, GuestAddress};

use super::memory::{self, GuestRam, MemorySlots};
use super::{device_err, input_err, Cause, LinuxKernel, VmError};

/// The fw_cfg file SeaBIOS runs as the VGA BIOS of QXL (vendor 1b36,
/// device 0100).
const QXL_VGA_ROM_FILE: &str = "pci1b36,0100.rom";

/// What the BIOS is given.
pub struct BiosSetup<'a> {
    pub path: &'a Path,
    pub cpus: u8,
    pub layout: &'a MemoryLayout,
    /// The QXL display is there: give SeaBIOS its VGA BIOS.
    pub qxl: bool,
    /// Show the boot menu prompt for this many milliseconds.
    pub boot_menu: Option<u16>,
    /// A kernel for the BIOS to boot before the disks.
    pub kernel: Option<&'a LinuxKernel>,
}

/// The BIOS as installed; keeps its memory mapped.
pub struct Bios {
    _rom: GuestRam,
}

fn firmware_err(e: impl Into<Cause>) -> VmError {
    device_err("the firmware")(e)
}

/// Maps the BIOS, fills the legacy BIOS segment, sets the CMOS fields and
/// puts fw_cfg on the I/O bus.
pub fn install(
    vm: &VmFd,
    slots: &MemorySlots,
    ram: &GuestRam,
    io_bus: &Bus,
    rtc: &Mutex<Rtc>,
    setup: &BiosSetup,
) -> Result<Bios, VmError> {
    let image = BiosImage::load(setup.path).map_err(firmware_err)?;
    let base = GuestAddress(image.high_base());
    let rom = GuestRam::from_ranges(&[(base, image.bytes.len())]).map_err(firmware_err)?;
    rom.write_slice(&image.bytes, base).map_err(firmware_err)?;
    memory::map_rom(vm, slots, &rom)?;
    let (at, alias) = image.low_copy();
    ram.write_slice(alias, GuestAddress(at))
        .map_err(firmware_err)?;
    let mut cmos = lock(rtc);
    for (register, value) in firmware::bios::cmos_fields(setup.layout, setup.cpus) {
        cmos.set_nvram(register, value);
    }
    drop(cmos);
    let fw_cfg = Arc::new(Mutex::new(fw_cfg_device(ram, setup)?));
    io_bus
        .insert(u64::from(fw_cfg::PORT_BASE), fw_cfg::PORT_COUNT, fw_cfg)
        .map_err(firmware_err)?;
    let debug = Arc::new(Mutex::new(DebugPort::default()));
    io_bus.insert(DEBUG_PORT, 1, debug).map_err(firmware_err)?;
    Ok(Bios { _rom: rom })
}

/// The port SeaBIOS writes its debug messages to (QEMU's debugcon).
const DEBUG_PORT: u64 = 0x402;
/// A debug line is cut at this length.
const DEBUG_LINE_MAX: usize = 200;

/// Logs what the BIOS writes to its debug port, a line at a time (at
/// debug level: `SAFFRON_LOG=debug`).
#[derive(Default)]
struct DebugPort {
    line: Vec<u8>,
}

impl devices::bus::BusDeviceMut for DebugPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Reading 0xe9 back tells the BIOS the port exists (QEMU's answer).
        data.fill(0xe9);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        for &byte in data {
            if byte == b'\n' || self.line.len() >= DEBUG_LINE_MAX {
                tracing::debug!("bios: {}", String::from_utf8_lossy(&self.line).trim_end());
                self.line.clear();
            }
            if byte != b'\n' {
                self.line.push(byte);
            }
        }
    }
}

/// fw_cfg with the memory map, the ACPI tables and the VGA BIOS.
fn fw_cfg_device(ram: &GuestRam, setup: &BiosSetup) -> Result<FwCfg, VmError> {
    let layout = setup.layout;
    let mut device = FwCfg::new(ram.clone(), u16::from(setup.cpus), layout.ram_size());
    let e820 = e820::fw_cfg_bytes(&e820::bios_memory_map(layout));
    let tables = acpi_loader::build(&acpi::AcpiConfig {
        cpus: setup.cpus,
        layout,
    });
    let mut files = vec![
        ("etc/e820", e820),
        (acpi_loader::RSDP_FILE, tables.rsdp),
        (acpi_loader::TABLES_FILE, tables.tables),
        (acpi_loader::LOADER_FILE, tables.loader),
    ];
    if setup.qxl {
        files.push((QXL_VGA_ROM_FILE, qxl_vga_rom()?));
    }
    if let Some(wait_ms) = setup.boot_menu {
        device.set_item(fw_cfg::key::BOOT_MENU, 1u16.to_le_bytes().to_vec());
        files.push(("etc/boot-menu-wait", wait_ms.to_le_bytes().to_vec()));
    }
    if let Some(linux) = setup.kernel {
        for (selector, data) in kernel_items(linux, layout)? {
            device.set_item(selector, data);
        }
        files.push((linuxboot::ROM_FILE, linuxboot_rom()?));
        files.push(("bootorder", linuxboot::BOOT_ORDER.as_bytes().to_vec()));
    }
    for (name, data) in files {
        device.add_file(name, data).map_err(firmware_err)?;
    }
    Ok(device)
}

/// The fw_cfg items of a kernel the BIOS boots (docs/seabios-platform.md §10).
fn kernel_items(linux: &LinuxKernel, layout: &MemoryLayout) -> Result<linuxboot::Items, VmError> {
    let read = |path: &Path| std::fs::read(path).map_err(input_err(path));
    let kernel = read(&linux.kernel)?;
    let initrd = linux.initrd.as_deref().map(read).transpose()?;
    linuxboot::items(
        &kernel,
        initrd.as_deref(),
        &linux.cmdline,
        layout.low_ram_end(),
    )
    .map_err(input_err(&linux.kernel))
}

/// QEMU's option ROM that loads a kernel from fw_cfg.
fn linuxboot_rom() -> Result<Vec<u8>, VmError> {
    let path = firmware::bios::qemu_file(linuxboot::ROM_NAME).ok_or_else(|| {
        firmware_err(format!(
            "no {} among QEMU's data files: install qemu-system-data to boot --kernel through the BIOS",
            linuxboot::ROM_NAME
        ))
    })?;
    std::fs::read(&path).map_err(|e| firmware_err(format!("{}: {e}", path.display())))
}

/// SeaVGABIOS built for QXL, from the installed SeaBIOS.
fn qxl_vga_rom() -> Result<Vec<u8>, VmError> {
    let path = firmware::bios::seabios_file("vgabios-qxl.bin").ok_or_else(|| {
        firmware_err("no vgabios-qxl.bin next to SeaBIOS: install the seabios package")
    })?;
    std::fs::read(&path).map_err(|e| firmware_err(format!("{}: {e}", path.display())))
}
