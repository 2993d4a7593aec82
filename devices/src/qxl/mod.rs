//! The QXL paravirtual display device (Red Hat 1b36:0100), as the guest's
//! own drivers (Linux `qxl`, Windows QXL-WDDM-DOD) drive it (layouts from
//! spice-protocol's `qxl_dev.h`). Facts and numbers: docs/qxl.md.
//!
//! ```text
//!  vCPU threads                      display worker thread (one per device)
//!  port write ─► QxlPci ─► Frontend ─queue─► Worker ─► QxlCore
//!  NOTIFY_CMD/CURSOR ─(KVM ioeventfd)─────────►│        ├ ports, modes, memslots, surfaces
//!                 UPDATE_IRQ ─► IrqLine ◄── raise ──────┤ rings ─► parse ─► draw ─► Display head 0
//!  guest memory (BARs, never exit) ◄──── read in place ─┘ release ring ◄── releases
//! ```
//!
//! * [`pci`]: the PCI function and its BARs (BAR 0 = RAM/rings, BAR 1/4 =
//!   surfaces; see there for why this is not what issue 3 says).
//! * [`rom`], [`rings`], [`irq`], [`memslots`], [`memory`]: the shared
//!   structures and how they are read (bounds-checked, copy-then-validate).
//! * [`parse`] + [`commands`]: commands parsed in place into SPICE-free types.
//! * [`device`]: the state machine; [`draw`] + [`sources`]: rendering with
//!   [`crate::display::render`]; [`cursor`]: cursor shapes.
//! * [`worker`]: threads; [`vga`]: what the VGA fallback gets (BAR 0 as its
//!   video memory, the display and its `ScanoutSwitch`);
//!   [`observer`]: how a later consumer sees each drawable.
//!
//! Use: [`Qxl::new`], plug [`Qxl::pci`] into the PCI root, start the worker
//! with [`Qxl::spawn_worker`], hand [`Qxl::display`] to the display server
//! and [`Qxl::vga`] to the VGA device.

pub mod abi;
pub mod commands;
pub mod config;
pub mod cursor;
pub mod defs;
pub mod device;
pub mod draw;
pub mod irq;
pub mod memory;
pub mod memslots;
pub mod observer;
pub mod parse;
pub mod pci;
pub mod rings;
pub mod rom;
pub mod sources;
pub mod stats;
pub mod surfaces;
pub mod vga;
pub mod worker;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use config::QxlConfig;
pub use observer::DrawableObserver;
pub use stats::{QxlStats, QxlStatsSnapshot};
pub use vga::VgaLink;

use crate::display::{Display, ScanoutSwitch};
use crate::interrupt::LevelInterrupt;
use crate::memory::allocate;
use device::QxlCore;
use irq::IrqLine;
use memory::BarMemory;
use pci::QxlPci;
use worker::{Frontend, Worker};

#[derive(Debug, thiserror::Error)]
pub enum QxlError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("QXL PCI configuration: {0}")]
    Pci(#[from] crate::pci::ConfigError),
    #[error("cannot allocate {size} bytes of QXL device memory: {source}")]
    Memory { size: u64, source: std::io::Error },
    #[error("cannot create the QXL worker's events: {0}")]
    Events(std::io::Error),
}

fn alloc(size: u64) -> Result<crate::memory::DeviceMemory, QxlError> {
    allocate(size as usize).map_err(|source| QxlError::Memory { size, source })
}

/// Controls a running device from the VMM or a display server.
#[derive(Clone)]
pub struct QxlControl {
    frontend: Arc<Frontend>,
    stats: Arc<QxlStats>,
}

impl QxlControl {
    /// Registers (or removes) the drawable observer.
    pub fn set_observer(&self, observer: Option<Box<dyn DrawableObserver>>) {
        self.frontend.set_observer(observer);
    }

    /// Tells the guest the display client's monitors: (x, y, width, height)
    /// each (a SPICE client's window sizes); Linux then offers them as
    /// preferred modes. Returns whether the guest's driver takes them (its
    /// interrupt mask asks for them), as the display worker last saw; the
    /// call never waits.
    pub fn set_client_monitors(&self, heads: Vec<(u32, u32, u32, u32)>) -> bool {
        self.frontend.set_client_monitors(heads)
    }

    /// Tells the guest whether a display client is connected, and its
    /// SPICE display capability bits.
    pub fn set_client(&self, present: bool, capabilities: Vec<u8>) {
        self.frontend.set_client(present, capabilities);
    }

    /// Machine reset.
    pub fn reset(&self) {
        self.frontend.reset();
    }

    pub fn stats(&self) -> QxlStatsSnapshot {
        self.stats.snapshot()
    }

    /// Stops the worker thread.
    pub fn stop(&self) {
        self.frontend.stop();
    }
}

/// One QXL device: its PCI function, display, worker and VGA link.
pub struct Qxl {
    pub pci: Arc<Mutex<QxlPci>>,
    pub display: Arc<Display>,
    pub vga: VgaLink,
    pub control: QxlControl,
    /// The memory BARs as the device reads them (for recorders and tests).
    pub memory: Arc<BarMemory>,
    worker: Option<Worker>,
    bar0_dirty_logging: Arc<AtomicBool>,
}

impl Qxl {
    /// Builds the device; `interrupt` is its INTA line and `irq_line` the
    /// number the guest reads from the interrupt line register.
    pub fn new(
        config: QxlConfig,
        interrupt: Arc<dyn LevelInterrupt>,
        irq_line: u8,
    ) -> Result<Qxl, QxlError> {
        config.validate()?;
        let ram = alloc(config.ram_size)?;
        let vram = alloc(config.surface_memory_size())?;
        let rom = alloc(defs::ROM_BAR_SIZE)?;
        let memory = Arc::new(BarMemory::new(ram.clone(), vram.clone()));
        let irq = Arc::new(IrqLine::new(
            memory.clone(),
            config.ram_header_offset(),
            interrupt,
        ));
        let stats = Arc::new(QxlStats::default());
        let display = Display::new();
        let switch = ScanoutSwitch::new();
        let frontend = Frontend::new(irq.clone(), stats.clone()).map_err(QxlError::Events)?;
        let bar0_dirty_logging = Arc::new(AtomicBool::new(false));
        let mut pci = QxlPci::new(
            &config,
            ram.clone(),
            vram,
            rom.clone(),
            frontend.clone(),
            irq.clone(),
            bar0_dirty_logging.clone(),
        )?;
        pci_set_interrupt(&mut pci, irq_line);
        let core = QxlCore::new(
            config,
            memory.clone(),
            rom,
            irq,
            display.clone(),
            switch.clone(),
            stats.clone(),
        );
        let worker = Worker::new(core, frontend.clone());
        vga::hook_legacy_writes(&switch, &frontend);
        Ok(Qxl {
            pci: Arc::new(Mutex::new(pci)),
            vga: VgaLink {
                framebuffer: ram,
                framebuffer_offset: 0,
                framebuffer_size: config.vgamem_size,
                display: display.clone(),
                switch,
            },
            display,
            control: QxlControl { frontend, stats },
            memory,
            worker: Some(worker),
            bar0_dirty_logging,
        })
    }

    /// Maps BAR 0 with KVM dirty-page logging (for a VGA scan-out that
    /// wants it); call before the BARs are assigned.
    pub fn set_bar0_dirty_logging(&self, on: bool) {
        self.bar0_dirty_logging.store(on, Ordering::SeqCst);
    }

    /// Starts the display worker thread (once).
    pub fn spawn_worker(&mut self) -> std::io::Result<Option<JoinHandle<()>>> {
        match self.worker.take() {
            Some(w) => w.spawn("qxl-worker".into()).map(Some),
            None => Ok(None),
        }
    }

    /// The worker, for driving the device without a thread (tests).
    pub fn take_worker(&mut self) -> Option<Worker> {
        self.worker.take()
    }
}

fn pci_set_interrupt(pci: &mut QxlPci, line: u8) {
    use crate::pci::PciDevice;
    pci.config_mut().set_interrupt(1, line);
}
