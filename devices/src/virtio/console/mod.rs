//! virtio-serial (virtio-console with `MULTIPORT`, device type 3): named
//! byte-stream ports between guest programs and the host, such as the SPICE
//! agent's `com.redhat.spice.0` (docs/virtio-serial.md).
//!
//! Ports are numbered from 1 in the order they are given (port 0 is the
//! console port of the specification, which this device never adds, as
//! QEMU keeps it for `virtconsole`). The control queues carry the
//! handshake: the driver says DEVICE_READY, we add every port, the driver
//! says PORT_READY for each, we name it and say whether the host side is
//! open; the driver says PORT_OPEN when a guest program opens or closes
//! the port.
//!
//! The host side reaches a port through [`VirtioConsole::read`],
//! [`VirtioConsole::write`] and [`VirtioConsole::set_host_open`] (with the
//! transport lock held, through `with_device`), and hears about it through
//! a [`PortObserver`]: the guest opened or closed the port, wrote, or
//! posted buffers. Nothing is buffered without bound: the guest's writes
//! are taken while less than [`GUEST_BYTES_LIMIT`] bytes wait per port
//! (then its transmit queue is left alone and its writes block; one chain
//! of at most 256 KiB can go past the limit), and what the host
//! writes goes straight into the buffers the guest posted, so a write
//! takes only what fits.

mod control;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::Arc;

use control::{ControlMessage, Event};

use super::{Queues, VirtioDevice};

pub const DEVICE_TYPE: u16 = 3;
/// The device has more than one port and control queues.
pub const F_MULTIPORT: u64 = 1 << 1;
/// Bytes of configuration space: cols, rows, max_nr_ports, emerg_wr.
pub const CONFIG_SIZE: usize = 12;
/// Entries in each port's queues (QEMU's size).
const DATA_QUEUE_SIZE: u16 = 128;
/// Entries in each control queue.
const CONTROL_QUEUE_SIZE: u16 = 32;
const CONTROL_RX: u16 = 2;
const CONTROL_TX: u16 = 3;
/// Bytes the guest wrote that may wait for the host side, per port; past
/// it the port's transmit queue waits.
pub const GUEST_BYTES_LIMIT: usize = 64 << 10;
/// Bytes read from one transmit chain (Linux writes at most 32 KiB at a
/// time); the rest of a longer chain is dropped as a driver error.
const CHAIN_LIMIT: usize = 256 << 10;
/// Control messages waiting for buffers of the control receive queue.
const CONTROL_BACKLOG: usize = 64;
/// Bytes of a port name.
pub const MAX_NAME: usize = 255;

/// A port's number as the guest knows it (1, 2, ...).
pub type PortId = u32;

/// Told (with the device locked: must not block or call back into it) when
/// something changed on a port: the guest opened or closed it, wrote, or
/// posted buffers for the host to write into.
pub trait PortObserver: Send + Sync {
    fn port_changed(&self, port: PortId);
}

/// Why a port list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("virtio-serial port name {0:?} is empty, too long or not printable ASCII")]
    BadName(String),
    #[error("virtio-serial port name {0:?} is given twice")]
    Duplicate(String),
    #[error("virtio-serial supports at most 30 ports")]
    TooMany,
}

#[derive(Debug)]
struct Port {
    name: String,
    /// The driver set the port up (PORT_READY).
    guest_ready: bool,
    /// A guest program has the port open.
    guest_open: bool,
    /// The host side is open (told to the guest with PORT_OPEN).
    host_open: bool,
    /// What the guest wrote that the host side has not read.
    from_guest: VecDeque<u8>,
}

/// A virtio-serial device with named ports.
pub struct VirtioConsole {
    ports: Vec<Port>,
    /// Queue sizes: port 0's pair, the control pair, then each port's pair.
    queue_sizes: Vec<u16>,
    /// Control messages for the guest that wait for buffers.
    control_out: VecDeque<Vec<u8>>,
    observer: Option<Arc<dyn PortObserver>>,
}

impl VirtioConsole {
    /// A device with one port per name, numbered from 1 in this order.
    pub fn new(names: &[&str]) -> Result<Self, PortError> {
        if names.len() > 30 {
            return Err(PortError::TooMany);
        }
        let mut ports: Vec<Port> = Vec::new();
        for name in names {
            let printable = name.bytes().all(|b| b.is_ascii_graphic());
            if name.is_empty() || name.len() > MAX_NAME || !printable {
                return Err(PortError::BadName(name.to_string()));
            }
            if ports.iter().any(|p| p.name == *name) {
                return Err(PortError::Duplicate(name.to_string()));
            }
            ports.push(Port {
                name: name.to_string(),
                guest_ready: false,
                guest_open: false,
                host_open: false,
                from_guest: VecDeque::new(),
            });
        }
        let max_ports = ports.len() + 1;
        let mut queue_sizes = vec![DATA_QUEUE_SIZE; 2 * max_ports + 2];
        queue_sizes[usize::from(CONTROL_RX)] = CONTROL_QUEUE_SIZE;
        queue_sizes[usize::from(CONTROL_TX)] = CONTROL_QUEUE_SIZE;
        Ok(VirtioConsole {
            ports,
            queue_sizes,
            control_out: VecDeque::new(),
            observer: None,
        })
    }

    /// Who to tell about changes on the ports.
    pub fn set_observer(&mut self, observer: Arc<dyn PortObserver>) {
        self.observer = Some(observer);
    }

    /// The number of the port called `name`.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        let index = self.ports.iter().position(|p| p.name == name)?;
        Some(index as PortId + 1)
    }

    fn port(&self, id: PortId) -> Option<&Port> {
        self.ports.get(usize::try_from(id).ok()?.checked_sub(1)?)
    }

    fn port_mut(&mut self, id: PortId) -> Option<&mut Port> {
        self.ports
            .get_mut(usize::try_from(id).ok()?.checked_sub(1)?)
    }

    /// Whether a guest program has port `id` open.
    pub fn guest_open(&self, id: PortId) -> bool {
        self.port(id).is_some_and(|p| p.guest_open)
    }

    /// Bytes the guest wrote to port `id` that wait for [`Self::read`].
    pub fn pending_from_guest(&self, id: PortId) -> usize {
        self.port(id).map_or(0, |p| p.from_guest.len())
    }

    /// Opens or closes the host side of port `id` and tells the guest.
    pub fn set_host_open(&mut self, id: PortId, open: bool, queues: &mut Queues<'_>) {
        let Some(port) = self.port_mut(id) else {
            return;
        };
        if port.host_open == open {
            return;
        }
        port.host_open = open;
        if port.guest_ready {
            self.send_control(ControlMessage::new(id, Event::PortOpen, open.into()), &[]);
            self.flush_control(queues);
        }
    }

    /// Moves up to `buf.len()` bytes the guest wrote to port `id` into
    /// `buf`; how many.
    pub fn read(&mut self, id: PortId, buf: &mut [u8], queues: &mut Queues<'_>) -> usize {
        let Some(port) = self.port_mut(id) else {
            return 0;
        };
        let n = buf.len().min(port.from_guest.len());
        for (to, from) in buf.iter_mut().zip(port.from_guest.drain(..n)) {
            *to = from;
        }
        self.pull_from_guest(id, queues);
        n
    }

    /// Writes into the buffers the guest posted for port `id`; how many
    /// bytes fitted (0 when the guest has no buffers or the port closed).
    pub fn write(&mut self, id: PortId, data: &[u8], queues: &mut Queues<'_>) -> usize {
        if !self.guest_open(id) || data.is_empty() {
            return 0;
        }
        let queue = rx_queue(id);
        let mut written = 0;
        while written < data.len() {
            let Some(chain) = queues.pop_or_arm(queue) else {
                break;
            };
            let head = chain.head_index();
            let n = match chain.writer(queues.memory()) {
                Ok(mut writer) => {
                    let n = writer.available_bytes().min(data.len() - written);
                    match writer.write_all(&data[written..written + n]) {
                        Ok(()) => n,
                        Err(e) => {
                            queues.guest_error(format_args!("port {id}: buffer {head}: {e}"));
                            0
                        }
                    }
                }
                Err(e) => {
                    queues.guest_error(format_args!("port {id}: buffer {head}: {e}"));
                    0
                }
            };
            queues.add_used(queue, head, n as u32);
            written += n;
        }
        queues.notify(queue);
        written
    }

    /// Reads the port's transmit chains while there is room for them.
    fn pull_from_guest(&mut self, id: PortId, queues: &mut Queues<'_>) {
        let queue = tx_queue(id);
        let mut used = false;
        loop {
            let Some(port) = self.port(id) else {
                return;
            };
            if port.from_guest.len() >= GUEST_BYTES_LIMIT {
                break;
            }
            let Some(chain) = queues.pop_or_arm(queue) else {
                break;
            };
            let head = chain.head_index();
            let mut bytes = Vec::new();
            match chain.reader(queues.memory()) {
                Ok(reader) => {
                    let total = reader.available_bytes();
                    if let Err(e) = reader.take(CHAIN_LIMIT as u64).read_to_end(&mut bytes) {
                        queues.guest_error(format_args!("port {id}: buffer {head}: {e}"));
                        bytes.clear();
                    } else if total > CHAIN_LIMIT {
                        queues.guest_error(format_args!(
                            "port {id}: a write of {total} bytes, over {CHAIN_LIMIT}; cut"
                        ));
                    }
                }
                Err(e) => queues.guest_error(format_args!("port {id}: buffer {head}: {e}")),
            }
            queues.add_used(queue, head, 0);
            used = true;
            let port = self.port_mut(id).expect("checked above");
            // With the host side closed the bytes go nowhere, as on a
            // serial line with nothing attached.
            if port.host_open {
                port.from_guest.extend(bytes);
            }
        }
        if used {
            queues.notify(queue);
            self.changed(id);
        }
    }

    fn changed(&self, id: PortId) {
        if let Some(observer) = &self.observer {
            observer.port_changed(id);
        }
    }

    fn send_control(&mut self, message: ControlMessage, extra: &[u8]) {
        if self.control_out.len() >= CONTROL_BACKLOG {
            tracing::warn!("virtio-serial: the driver takes no control messages; one dropped");
            return;
        }
        let mut bytes = zerocopy::IntoBytes::as_bytes(&message).to_vec();
        bytes.extend_from_slice(extra);
        self.control_out.push_back(bytes);
    }

    /// Moves waiting control messages into the driver's buffers.
    fn flush_control(&mut self, queues: &mut Queues<'_>) {
        let mut used = false;
        while let Some(message) = self.control_out.front() {
            let Some(chain) = queues.pop_or_arm(CONTROL_RX) else {
                break;
            };
            let head = chain.head_index();
            let written = match chain.writer(queues.memory()) {
                Ok(mut w) if w.available_bytes() >= message.len() => {
                    w.write_all(message).map(|()| message.len()).unwrap_or(0)
                }
                Ok(_) => {
                    queues.guest_error(format_args!("control buffer {head} is too small"));
                    0
                }
                Err(e) => {
                    queues.guest_error(format_args!("control buffer {head}: {e}"));
                    0
                }
            };
            queues.add_used(CONTROL_RX, head, written as u32);
            used = true;
            self.control_out.pop_front();
        }
        if used {
            queues.notify(CONTROL_RX);
        }
    }

    /// Handles the driver's control messages.
    fn serve_control(&mut self, queues: &mut Queues<'_>) {
        let mut used = false;
        while let Some(chain) = queues.pop_or_arm(CONTROL_TX) {
            let head = chain.head_index();
            let mut bytes = [0u8; control::SIZE];
            let message = match chain.reader(queues.memory()) {
                Ok(mut r) => r
                    .read_exact(&mut bytes)
                    .ok()
                    .map(|()| ControlMessage::parse(&bytes)),
                Err(_) => None,
            };
            queues.add_used(CONTROL_TX, head, 0);
            used = true;
            match message {
                Some(m) => self.control(m, queues),
                None => queues.guest_error(format_args!("control message {head} is unreadable")),
            }
        }
        if used {
            queues.notify(CONTROL_TX);
        }
        self.flush_control(queues);
    }

    fn control(&mut self, message: ControlMessage, queues: &mut Queues<'_>) {
        let (id, value) = (message.id.get(), message.value.get());
        match Event::from_number(message.event.get()) {
            Some(Event::DeviceReady) if value == 1 => {
                for id in 1..=self.ports.len() as PortId {
                    self.send_control(ControlMessage::new(id, Event::DeviceAdd, 0), &[]);
                }
            }
            Some(Event::DeviceReady) => tracing::warn!("virtio-serial: the driver failed to start"),
            Some(Event::PortReady) => self.port_ready(id, value == 1, queues),
            Some(Event::PortOpen) => self.guest_opened(id, value != 0, queues),
            _ => queues.guest_error(format_args!(
                "control event {} for port {id} is not one a driver sends",
                message.event.get()
            )),
        }
    }

    fn port_ready(&mut self, id: PortId, ready: bool, queues: &mut Queues<'_>) {
        let Some(port) = self.port_mut(id) else {
            queues.guest_error(format_args!(
                "PORT_READY for port {id}, which does not exist"
            ));
            return;
        };
        if !ready {
            tracing::warn!("virtio-serial: the driver could not add port {id}");
            return;
        }
        // Again after a restore from hibernation (without DEVICE_READY):
        // the name and the host side's state are told again.
        port.guest_ready = true;
        let name = port.name.clone().into_bytes();
        let host_open = port.host_open;
        self.send_control(ControlMessage::new(id, Event::PortName, 1), &name);
        if host_open {
            self.send_control(ControlMessage::new(id, Event::PortOpen, 1), &[]);
        }
    }

    fn guest_opened(&mut self, id: PortId, open: bool, queues: &mut Queues<'_>) {
        let Some(port) = self.port_mut(id).filter(|p| p.guest_ready) else {
            queues.guest_error(format_args!("PORT_OPEN for port {id}, which is not set up"));
            return;
        };
        if port.guest_open != open {
            port.guest_open = open;
            tracing::info!(
                "virtio-serial: port {id} ({}) {} by the guest",
                port.name,
                if open { "opened" } else { "closed" }
            );
            self.changed(id);
        }
    }
}

/// A port's receive queue (host to guest).
fn rx_queue(id: PortId) -> u16 {
    if id == 0 {
        0
    } else {
        (2 * id + 2) as u16
    }
}

/// A port's transmit queue (guest to host).
fn tx_queue(id: PortId) -> u16 {
    rx_queue(id) + 1
}

/// The port a data queue belongs to, and whether it is a transmit queue.
fn queue_port(queue: u16) -> Option<(PortId, bool)> {
    match queue {
        0 | 1 => Some((0, queue == 1)),
        CONTROL_RX | CONTROL_TX => None,
        q => Some((PortId::from(q / 2 - 1), q % 2 == 1)),
    }
}

impl VirtioDevice for VirtioConsole {
    fn device_type(&self) -> u16 {
        DEVICE_TYPE
    }

    fn name(&self) -> &'static str {
        "virtio-serial"
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn device_features(&self) -> u64 {
        F_MULTIPORT
    }

    fn config_size(&self) -> usize {
        CONFIG_SIZE
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let max_ports = self.ports.len() as u32 + 1;
        let mut config = [0u8; CONFIG_SIZE];
        config[4..8].copy_from_slice(&max_ports.to_le_bytes());
        data.copy_from_slice(&config[offset..offset + data.len()]);
    }

    fn write_config(&mut self, _offset: usize, _data: &[u8]) {
        // cols/rows are the device's; emerg_wr needs EMERG_WRITE, not offered.
    }

    fn queue_notify(&mut self, index: u16, queues: &mut Queues<'_>) {
        match (index, queue_port(index)) {
            (CONTROL_TX, _) => self.serve_control(queues),
            (CONTROL_RX, _) => self.flush_control(queues),
            (_, Some((id, true))) if self.port(id).is_some() => self.pull_from_guest(id, queues),
            (_, Some((id, false))) if self.port(id).is_some() => self.changed(id),
            _ => {
                // Port 0's queues: nothing is added there; return what the
                // driver posts for transmission so it does not hang.
                if index == 1 {
                    while let Some(chain) = queues.pop_or_arm(1) {
                        queues.add_used(1, chain.head_index(), 0);
                    }
                    queues.notify(1);
                }
            }
        }
    }

    fn reset(&mut self) {
        self.control_out.clear();
        let mut closed = Vec::new();
        for (index, port) in self.ports.iter_mut().enumerate() {
            if port.guest_open {
                closed.push(index as PortId + 1);
            }
            port.guest_ready = false;
            port.guest_open = false;
            port.from_guest.clear();
        }
        for id in closed {
            self.changed(id);
        }
    }
}
