//! Where the VMM starts its display server: the SPICE server of `--spice`,
//! fed with the VM's display devices and input devices.
//!
//! The VMM calls [`start`] once its display devices exist. The returned
//! server must be kept alive for as long as the VM runs (dropping it closes
//! every client connection). What the input devices report later (keyboard
//! LEDs, the tablet's driver starting) reaches it through
//! [`saffron::spice::SpiceServer::notifier`] (see `input::SpiceLink`).

use std::sync::Arc;

use devices::display::Display;
use saffron::spice::{
    AgentDevice, AudioHub, InputSink, ServerInputs, SpiceConfig, SpiceError, SpiceServer,
};

/// The VM's display and input devices, as the SPICE server sees them.
pub struct DisplayDevices {
    /// One per display device, in the order clients number them.
    pub displays: Vec<Arc<Display>>,
    /// Keyboard and mouse (PS/2; a tablet for absolute positions).
    pub input: Arc<dyn InputSink>,
    /// An absolute pointing device is usable from the start (offers SPICE
    /// client mouse mode); later changes go through the server's notifier.
    pub tablet: bool,
    /// The guest agent's port, if the VM has one.
    pub agent: Option<AgentDevice>,
    /// The sound card's audio.
    pub audio: Option<Arc<AudioHub>>,
}

/// Starts the SPICE server if `--spice` was given.
pub fn start(
    config: Option<&SpiceConfig>,
    devices: DisplayDevices,
) -> Result<Option<SpiceServer>, SpiceError> {
    let Some(config) = config else {
        return Ok(None);
    };
    if devices.displays.is_empty() {
        tracing::warn!("SPICE: this VM has no display device; clients will see no picture");
    }
    let server = SpiceServer::start(
        config,
        ServerInputs {
            displays: devices.displays,
            input: devices.input,
            tablet: devices.tablet,
            agent: devices.agent,
            audio: devices.audio,
        },
    )?;
    if let Some(addr) = server.local_addr() {
        tracing::info!("SPICE: connect with remote-viewer spice://{addr}");
    }
    Ok(Some(server))
}
