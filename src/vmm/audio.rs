//! The sound card: an HDA controller on the PCI bus, the thread that moves
//! its audio in real time, and the SPICE server's side of it (the
//! [`AudioHub`] the playback and record channels read and feed).

use std::sync::{Arc, Mutex};

use devices::hda::{Hda, HdaInterrupts};
use firmware::layout;
use saffron::spice::AudioHub;

use super::build::Machine;
use super::{device_err, interrupts, Platform, VmError};

/// The card's PCI slot (after the network cards').
pub const HDA_SLOT: u8 = super::net::FIRST_SLOT + super::net::MAX_CARDS as u8;

/// The card and where its audio goes.
pub struct Audio {
    pub device: Arc<Mutex<Hda>>,
    pub hub: Arc<AudioHub>,
}

impl Audio {
    pub fn create(machine: &Machine, platform: &Platform) -> Result<Audio, VmError> {
        let gsi = layout::pci_irq_for(HDA_SLOT, 0);
        let hub = Arc::new(AudioHub::default());
        let interrupts = HdaInterrupts {
            line: platform.level_lines.source(gsi),
            gsi: gsi as u8,
            msi: interrupts::KvmMsi::new(machine.vm.clone()),
        };
        let device = Hda::new(machine.ram.clone(), hub.clone(), interrupts)
            .map_err(device_err("the HDA sound card"))?;
        Ok(Audio {
            device: Arc::new(Mutex::new(device)),
            hub,
        })
    }

    /// Starts the thread that moves the audio.
    pub fn start(&self) -> Result<(), VmError> {
        devices::hda::spawn_pump(&self.device)
            .map_err(device_err("the HDA sound card's thread"))?;
        Ok(())
    }
}
