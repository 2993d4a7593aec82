//! The QXL PCI function: identity, the BAR layout Linux's and Windows'
//! drivers expect, and the I/O BAR routed to the worker's front end.
//!
//! BAR layout (docs/qxl.md §1.3). NOTE: issue 3 calls BAR 0 "VRAM (surfaces)" and
//! BAR 1 "RAM (QXLRam header, rings, primary)", which is backwards: the
//! guest drivers read the ROM's `ram_header_offset` as an offset into BAR 0
//! (Linux: `qdev->vram_base + rom->ram_header_offset`; its "vram" is BAR 0)
//! and use BAR 1 (or BAR 4) as off-screen surface memory. We follow the
//! drivers and spice-protocol's `QXL_*_RANGE_INDEX`:
//!
//! | BAR | what | backing |
//! |---|---|---|
//! | 0 | surface-0/VGA area, command pages, QXLRam header + rings (32-bit) | `ram`, guest memory |
//! | 1 | off-screen surfaces (32-bit; the first `vram` bytes of the surface memory) | `vram`, guest memory |
//! | 2 | QXLRom + mode list (read-only) | `rom`, read-only guest memory |
//! | 3 | I/O ports (32 bytes) | trapped |
//! | 4 | all the surface memory (64-bit, prefetchable), only with `vram64` | `vram` |
//!
//! Memory BARs never exit to the VMM: the guest writes commands and pixels
//! straight into them; only port I/O exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::config::QxlConfig;
use super::defs::*;
use super::irq::IrqLine;
use super::memslots::BarLayout;
use super::worker::Frontend;
use crate::memory::DeviceMemory;
use crate::pci::{
    Bar, BarBacking, BarKind, ConfigError, PciConfig, PciDevice, PciIdentity, COMMAND_INTX_DISABLE,
};
use vmm_sys_util::eventfd::EventFd;

pub struct QxlPci {
    config: PciConfig,
    ram: DeviceMemory,
    vram: DeviceMemory,
    rom: DeviceMemory,
    has_vram64: bool,
    frontend: Arc<Frontend>,
    irq: Arc<IrqLine>,
    bar0_dirty_logging: Arc<AtomicBool>,
}

impl QxlPci {
    pub(crate) fn new(
        qxl: &QxlConfig,
        ram: DeviceMemory,
        vram: DeviceMemory,
        rom: DeviceMemory,
        frontend: Arc<Frontend>,
        irq: Arc<IrqLine>,
        bar0_dirty_logging: Arc<AtomicBool>,
    ) -> Result<Self, ConfigError> {
        let mut config = PciConfig::new(PciIdentity {
            vendor: VENDOR_REDHAT,
            device: DEVICE_QXL,
            revision: qxl.revision,
            class: CLASS_VGA,
            subsystem_vendor: SUBSYSTEM_VENDOR,
            subsystem: SUBSYSTEM_QEMU,
        });
        let memory = |size| Bar {
            size,
            kind: BarKind::Memory32,
            prefetchable: false,
        };
        config.add_bar(BAR_RAM, memory(qxl.ram_size))?;
        config.add_bar(BAR_VRAM, memory(qxl.vram_size))?;
        config.add_bar(BAR_ROM, memory(ROM_BAR_SIZE))?;
        config.add_bar(
            BAR_IO,
            Bar {
                size: IO_BAR_SIZE,
                kind: BarKind::Io,
                prefetchable: false,
            },
        )?;
        if let Some(size) = qxl.vram64_size {
            config.add_bar(
                BAR_VRAM64,
                Bar {
                    size,
                    kind: BarKind::Memory64,
                    prefetchable: true,
                },
            )?;
        }
        Ok(QxlPci {
            config,
            ram,
            vram,
            rom,
            has_vram64: qxl.vram64_size.is_some(),
            frontend,
            irq,
            bar0_dirty_logging,
        })
    }

    /// Where the memory BARs decode now.
    fn bar_layout(&self) -> BarLayout {
        BarLayout {
            ram: self.config.bar_range(BAR_RAM),
            vram: self.config.bar_range(BAR_VRAM),
            vram64: if self.has_vram64 {
                self.config.bar_range(BAR_VRAM64)
            } else {
                None
            },
        }
    }
}

impl PciDevice for QxlPci {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
        self.irq
            .set_disabled(self.config.command() & COMMAND_INTX_DISABLE != 0);
    }

    fn bar_backing(&self, bar: usize) -> BarBacking {
        let memory = |memory: &DeviceMemory, read_only, log_dirty| BarBacking::Memory {
            memory: memory.clone(),
            read_only,
            log_dirty,
        };
        match bar {
            BAR_RAM => memory(
                &self.ram,
                false,
                self.bar0_dirty_logging.load(Ordering::SeqCst),
            ),
            BAR_VRAM => memory(&self.vram, false, false),
            BAR_ROM => memory(&self.rom, true, false),
            BAR_VRAM64 if self.has_vram64 => memory(&self.vram, false, false),
            _ => BarBacking::Trapped,
        }
    }

    /// `QXL_IO_NOTIFY_CMD` and `QXL_IO_NOTIFY_CURSOR` only wake the worker:
    /// with an ioeventfd they do not exit to the VMM at all.
    fn bar_events(&self, bar: usize) -> Vec<(u64, Arc<EventFd>)> {
        if bar != BAR_IO {
            return Vec::new();
        }
        let event = self.frontend.notify_event();
        vec![
            (u64::from(IO_NOTIFY_CMD), event.clone()),
            (u64::from(IO_NOTIFY_CURSOR), event),
        ]
    }

    fn read_bar(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        // The ports are write-only; the ROM's exits are only writes.
        data.fill(0xff);
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        // Only byte writes to the I/O BAR mean something (QEMU rejects wider ones).
        if bar != BAR_IO || data.len() != 1 || offset >= IO_BAR_SIZE {
            return;
        }
        let layout = || self.bar_layout();
        self.frontend.port_write(offset as u8, data[0], layout);
    }
}
