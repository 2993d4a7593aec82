//! An Intel HD Audio controller (ICH6, as QEMU's `intel-hda`) with a duplex
//! codec (as QEMU's `hda-duplex`): what Linux's `snd-hda-intel` and
//! Windows' inbox driver drive (docs/hda.md).
//!
//! The PCI function ([`Hda`]) has one 16 KiB memory BAR (the registers,
//! mirrored in its upper half), INTx and MSI (one vector; Linux takes it).
//! An MSI goes out when an interrupt source appears that was not pending
//! at the last look, so an event the driver has not yet acknowledged does
//! not repeat it. The registers and the DMA engine
//! are in [`controller`]; the pump ([`spawn_pump`]) moves audio in real
//! time while a stream runs, between the guest's buffers and an
//! [`AudioBackend`]. Nothing here knows who listens.

pub mod codec;
pub mod controller;
pub mod corb;
pub mod stream;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::audio::AudioBackend;
use crate::bus::lock;
use crate::interrupt::{LevelInterrupt, MsiDelivery};
use crate::pci::msi::Msi;
use crate::pci::{Bar, BarKind, ConfigError, PciConfig, PciDevice, PciIdentity};
use crate::thread_layer::ThreadLayer;
use crate::virtio::GuestMemory;
pub use controller::Controller;

/// The register BAR's size; registers repeat from 8 KiB on.
pub const BAR_SIZE: u64 = 0x4000;
const REGISTERS: u64 = 0x2000;
/// How often the pump moves audio while a stream runs.
pub const TICK: Duration = Duration::from_millis(5);

/// Wakes the pump when a stream starts.
#[derive(Default)]
pub struct PumpSignal {
    started: Mutex<bool>,
    changed: Condvar,
}

impl PumpSignal {
    fn notify(&self) {
        *lock(&self.started) = true;
        self.changed.notify_one();
    }

    /// Waits until a stream may have started, at most `timeout`.
    fn wait(&self, timeout: Duration) {
        let started = lock(&self.started);
        let (mut started, _) = self
            .changed
            .wait_timeout_while(started, timeout, |s| !*s)
            .unwrap_or_else(|p| p.into_inner());
        *started = false;
    }
}

/// The sound card on the PCI bus.
pub struct Hda {
    config: PciConfig,
    controller: Controller,
    line: Arc<dyn LevelInterrupt>,
    level: bool,
    msi: Msi,
    deliver: Arc<dyn MsiDelivery>,
    /// The interrupt sources pending at the last look (INTSTS bits).
    sources: u32,
    signal: Arc<PumpSignal>,
}

/// How the card interrupts: its INTx line (wired to `gsi`) and MSI.
pub struct HdaInterrupts {
    pub line: Arc<dyn LevelInterrupt>,
    pub gsi: u8,
    pub msi: Arc<dyn MsiDelivery>,
}

impl Hda {
    /// A card reading and writing `memory`, handing audio to `backend`.
    pub fn new(
        memory: GuestMemory,
        backend: Arc<dyn AudioBackend>,
        interrupts: HdaInterrupts,
    ) -> Result<Hda, ConfigError> {
        let mut config = PciConfig::new(PciIdentity {
            vendor: 0x8086,
            device: 0x2668,
            revision: 1,
            class: 0x040300,
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        });
        config.add_bar(
            0,
            Bar {
                size: BAR_SIZE,
                kind: BarKind::Memory32,
                prefetchable: false,
            },
        )?;
        config.set_interrupt(1, interrupts.gsi);
        // HDCTL, TCSEL and the rest of ICH's registers sit at 0x40-0x5f;
        // MSI goes after them, where QEMU puts it.
        config.reserve_below(0x60);
        let msi = Msi::add(&mut config)?;
        // HDCTL: HD Audio signalling, not AC'97.
        config.set_reg(0x40 / 4, 1);
        let mut controller = Controller::new(memory, backend);
        controller.reset();
        Ok(Hda {
            config,
            controller,
            line: interrupts.line,
            level: false,
            msi,
            deliver: interrupts.msi,
            sources: 0,
            signal: Arc::default(),
        })
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// Moves the audio due by `now`; returns whether a stream still runs.
    pub fn tick(&mut self, now: Instant) -> bool {
        self.controller.tick(now);
        self.update_line();
        self.controller.running()
    }

    fn update_line(&mut self) {
        if std::mem::take(&mut self.controller.started) {
            self.signal.notify();
        }
        let sources = self.controller.pending_sources();
        let message = self.msi.message(&self.config);
        self.config.set_interrupt_status(sources != 0);
        let level = sources != 0 && message.is_none() && !self.config.intx_disabled();
        if level != self.level {
            self.level = level;
            self.line.set_level(level);
        }
        if let Some((address, data)) = message {
            if sources & !self.sources != 0 {
                self.deliver.deliver(address, data);
            }
        }
        self.sources = sources;
    }
}

impl PciDevice for Hda {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
        self.update_line();
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar != 0 || data.len() > 8 {
            data.fill(0xff);
            return;
        }
        self.controller
            .read(offset % REGISTERS, data, Instant::now());
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != 0 || data.len() > 8 {
            return;
        }
        self.controller
            .write(offset % REGISTERS, data, Instant::now());
        self.update_line();
        if self.controller.run_waiting_commands() {
            self.update_line();
        }
    }
}

/// Starts the thread that moves the card's audio: every [`TICK`] while a
/// stream runs, asleep otherwise; it ends once the card is dropped.
pub fn spawn_pump(hda: &Arc<Mutex<Hda>>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let signal = lock(hda).signal.clone();
    let hda = Arc::downgrade(hda);
    std::thread::Builder::new()
        .name("hda".into())
        .spawn(move || {
            let mut layer = ThreadLayer::default();
            while let Some(card) = hda.upgrade() {
                layer.before_work();
                let running = lock(&card).tick(Instant::now());
                drop(card);
                if running {
                    std::thread::sleep(TICK);
                } else {
                    signal.wait(Duration::from_secs(1));
                }
            }
        })
}
