//! The VM's network cards: one virtio-net PCI function per `--net`, each
//! with its backend (passt or a TAP device) and an I/O thread. Backends
//! start before anything else of the VM exists, so a missing passt, a
//! busy port or a TAP device saffron may not use is a one-line error.

use std::sync::{Arc, Mutex};

use devices::interrupt::MsiDelivery;
use devices::pci::SharedPciDevice;
use devices::virtio::net::worker::NetWorker;
use devices::virtio::net::{NetBackend, NetStats, Transfer, VirtioNet};
use devices::virtio::pci::VirtioPciDevice;
use saffron::net::passt::Passt;
use saffron::net::stream::StreamBackend;
use saffron::net::tap::Tap;
use saffron::net::{NetBackendKind, NetError, NetOptions};
use serde_json::{json, Value};

use super::interrupts::{virtio_wiring, LevelLines};
use super::{device_err, VmError};

/// The first card's PCI slot (after the agent's virtio-serial device).
pub const FIRST_SLOT: u8 = super::agent::SERIAL_SLOT + 1;
/// Cards per VM.
pub const MAX_CARDS: usize = 4;
/// The first card's MAC address (QEMU's); card N adds N to its last byte.
const FIRST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// A card's backend, started.
pub struct OpenBackend {
    mac: [u8; 6],
    backend: Box<dyn NetBackend>,
    kind: &'static str,
    /// The TAP device's name, or passt's pid and forwards (passt ends by
    /// itself when the card's socket closes: nothing needs to hold it).
    detail: Value,
}

/// Starts every card's backend, in order.
pub fn open(options: &[NetOptions]) -> Result<Vec<OpenBackend>, VmError> {
    if options.len() > MAX_CARDS {
        return Err(device_err("the network cards")(format!(
            "{} cards given, at most {MAX_CARDS} are supported",
            options.len()
        )));
    }
    let mut open = Vec::new();
    for (index, o) in options.iter().enumerate() {
        let mut mac = FIRST_MAC;
        mac[5] = mac[5].wrapping_add(index as u8);
        let mac = o.mac.unwrap_or(mac);
        if open.iter().any(|b: &OpenBackend| b.mac == mac) {
            return Err(device_err("the network cards")(format!(
                "two cards have the MAC address {}",
                format_mac(&mac)
            )));
        }
        open.push(start_backend(o, mac)?);
    }
    Ok(open)
}

fn start_backend(o: &NetOptions, mac: [u8; 6]) -> Result<OpenBackend, NetError> {
    Ok(match &o.backend {
        NetBackendKind::User(user) => {
            let (passt, socket) = Passt::start(user)?;
            let backend = StreamBackend::new(socket, "passt").map_err(NetError::PasstStart)?;
            let forwards: Vec<String> = user
                .forwards
                .iter()
                .map(|f| {
                    let addr = f.host_addr.map(|a| a.to_string()).unwrap_or_default();
                    format!(
                        "{}:{addr}:{}-:{}",
                        f.protocol.name(),
                        f.host_port,
                        f.guest_port
                    )
                })
                .collect();
            OpenBackend {
                mac,
                backend: Box::new(backend),
                kind: "user",
                detail: json!({ "passt_pid": passt.pid(), "hostfwd": forwards }),
            }
        }
        NetBackendKind::Tap { name } => OpenBackend {
            mac,
            backend: Box::new(Tap::open(name)?),
            kind: "tap",
            detail: json!({ "ifname": name }),
        },
    })
}

/// The cards on the PCI bus, their I/O threads running.
pub struct Nics {
    /// (slot, device) for the PCI bus.
    pub pci: Vec<(u8, SharedPciDevice)>,
    /// What `status` reports of each.
    pub status: Vec<NicStatus>,
    /// Dropped at the end: each thread stops and closes its backend (passt
    /// then exits).
    _workers: Vec<NetWorker>,
}

/// A card as `status` shows it.
pub struct NicStatus {
    name: String,
    mac: [u8; 6],
    kind: &'static str,
    detail: Value,
    slot: u8,
    transport: Arc<Mutex<VirtioPciDevice<VirtioNet>>>,
    stats: Arc<NetStats>,
}

impl NicStatus {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the link up or down and tells the guest.
    pub fn set_link(&self, up: bool) {
        let mut transport = devices::bus::lock(&self.transport);
        if transport.device().link_up() != up {
            transport.device_mut().set_link(up);
            transport.config_changed();
        }
    }

    pub fn to_json(&self) -> Value {
        let c = self.stats.counts();
        let link = devices::bus::lock(&self.transport).device().link_up();
        json!({
            "device": self.name,
            "mac": format_mac(&self.mac),
            "backend": self.kind,
            "backend_detail": self.detail,
            "backend_failed": c.backend_failed,
            "link": if link { "up" } else { "down" },
            "pci_slot": self.slot,
            "rx_packets": c.rx_packets,
            "rx_bytes": c.rx_bytes,
            "tx_packets": c.tx_packets,
            "tx_bytes": c.tx_bytes,
            "rx_dropped": c.rx_dropped,
            "tx_refused": c.tx_refused,
        })
    }
}

/// Puts each card in its PCI slot and starts its I/O thread.
pub fn attach(
    backends: Vec<OpenBackend>,
    memory: &devices::virtio::GuestMemory,
    msi: Arc<dyn MsiDelivery>,
    lines: &Arc<LevelLines>,
) -> Result<Nics, VmError> {
    let mut nics = Nics {
        pci: Vec::new(),
        status: Vec::new(),
        _workers: Vec::new(),
    };
    for (index, open) in backends.into_iter().enumerate() {
        let slot = FIRST_SLOT + index as u8;
        let card = VirtioNet::new(open.mac, open.backend.vnet_header())
            .map_err(device_err("a network card"))?;
        let wiring = virtio_wiring(slot, memory, &msi, lines);
        let transport = Arc::new(Mutex::new(
            VirtioPciDevice::new(card, wiring).map_err(device_err("a network card"))?,
        ));
        let name = format!("net{index}");
        let transfer = Transfer::new(open.backend, Arc::default());
        let worker = NetWorker::spawn(&name, transport.clone(), transfer)
            .map_err(device_err("a network card's I/O thread"))?;
        nics.status.push(NicStatus {
            name,
            mac: open.mac,
            kind: open.kind,
            detail: open.detail,
            slot,
            transport: transport.clone(),
            stats: worker.stats(),
        });
        nics.pci.push((slot, transport as SharedPciDevice));
        nics._workers.push(worker);
    }
    Ok(nics)
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
