//! The SPICE agent's port: a virtio-serial device with the port
//! `com.redhat.spice.0` (what spice-vdagent and the Windows agent open),
//! and the SPICE server's view of it ([`AgentPort`]). The port's host side
//! is open for as long as the VM runs, as QEMU's `spicevmc` keeps it once
//! the agent opened its end. A client's monitor layout also goes to QXL's
//! client monitors config ([`QxlMonitors`]).

use std::sync::{Arc, Mutex, OnceLock};

use devices::bus::lock;
use devices::qxl::QxlControl;
use devices::virtio::console::{PortId, PortObserver, VirtioConsole};
use devices::virtio::pci::{VirtioPciDevice, Wiring};
use saffron::spice::{AgentDevice, AgentPort, ClientMonitors, SpiceNotifier};

/// The agent's port name.
pub const AGENT_PORT_NAME: &str = "com.redhat.spice.0";
/// The virtio-serial device's PCI slot (after the disks').
pub const SERIAL_SLOT: u8 = super::disks::FIRST_SLOT + super::disks::MAX_DISKS as u8;

/// The virtio-serial device on the PCI bus.
pub type SerialPorts = Arc<Mutex<VirtioPciDevice<VirtioConsole>>>;

/// Tells the SPICE server about the port once it exists.
#[derive(Default)]
pub struct PortLink {
    notifier: OnceLock<SpiceNotifier>,
}

impl PortLink {
    /// From now on, tell this server.
    pub fn connect(&self, notifier: SpiceNotifier) {
        let _ = self.notifier.set(notifier);
        if let Some(n) = self.notifier.get() {
            n.agent_port_changed();
        }
    }
}

impl PortObserver for PortLink {
    fn port_changed(&self, _port: PortId) {
        if let Some(n) = self.notifier.get() {
            n.agent_port_changed();
        }
    }
}

/// Makes the virtio-serial device with the agent's port, its host side open.
pub fn create(
    wiring: Wiring,
    link: Arc<PortLink>,
) -> Result<(SerialPorts, PortId), devices::pci::ConfigError> {
    let mut console =
        VirtioConsole::new(&[AGENT_PORT_NAME]).expect("the agent's port name is valid");
    console.set_observer(link);
    let id = console
        .port_id(AGENT_PORT_NAME)
        .expect("the port was added");
    let transport = Arc::new(Mutex::new(VirtioPciDevice::new(console, wiring)?));
    lock(&transport).with_device(|device, queues| device.set_host_open(id, true, queues));
    Ok((transport, id))
}

/// One port of the device, as the SPICE server uses it.
pub struct SerialPort {
    pub device: SerialPorts,
    pub id: PortId,
}

impl AgentPort for SerialPort {
    fn connected(&self) -> bool {
        lock(&self.device).device().guest_open(self.id)
    }

    fn read(&self, buf: &mut [u8]) -> usize {
        lock(&self.device).with_device(|device, queues| device.read(self.id, buf, queues))
    }

    fn write(&self, data: &[u8]) -> usize {
        lock(&self.device).with_device(|device, queues| device.write(self.id, data, queues))
    }
}

/// QXL's client monitors config, fed from the agent's monitors config.
pub struct QxlMonitors(pub QxlControl);

impl ClientMonitors for QxlMonitors {
    fn client_monitors(&self, heads: &[saffron::spice::agent::Head]) -> bool {
        let heads = heads
            .iter()
            .map(|&(x, y, w, h)| (x.max(0) as u32, y.max(0) as u32, w, h))
            .collect();
        self.0.set_client_monitors(heads)
    }
}

/// What the SPICE server gets for the agent.
pub fn spice_device(ports: &SerialPorts, id: PortId, qxl: Option<QxlControl>) -> AgentDevice {
    AgentDevice {
        port: Arc::new(SerialPort {
            device: ports.clone(),
            id,
        }),
        monitors: qxl.map(|q| Arc::new(QxlMonitors(q)) as Arc<dyn ClientMonitors>),
    }
}
