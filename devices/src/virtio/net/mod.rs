//! virtio-net (device type 1): an Ethernet card for the guest
//! (docs/virtio-net.md).
//!
//! The device model ([`VirtioNet`]) answers the transport: its features,
//! its configuration space (MAC address, link status) and queue kicks,
//! which only wake the card's I/O thread ([`worker`]). That thread moves
//! frames between the two queues (0 receive, 1 transmit) and a
//! [`NetBackend`] (passt's socket, a TAP device) with [`Transfer`], which
//! checks every chain and header the guest gives it and bounds the work of
//! each round. Nothing is buffered without bound: one received frame may
//! wait for guest buffers, and a backend that cannot take more leaves the
//! transmit queue alone until it can.
//!
//! Offloads (checksums, TSO) are offered only when the backend carries the
//! virtio-net header itself (TAP with `IFF_VNET_HDR`); then headers pass
//! through, checked, and the backend is told which offloads the guest
//! accepts. Receive buffers may be mergeable (a frame spread over several
//! chains), which Linux uses for frames larger than a page.

/// A backend for tests and fuzz targets (feature `test-driver`).
#[cfg(any(test, feature = "test-driver"))]
pub mod fake;
pub mod header;
#[cfg(test)]
mod tests;
pub mod transfer;
pub mod worker;

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{GuestMemory, Queues, VirtioDevice};

pub use transfer::{GuestPiece, Progress, Transfer};

/// The virtio device type of a network card.
pub const DEVICE_TYPE: u16 = 1;
/// The receive queue.
pub const RX: u16 = 0;
/// The transmit queue.
pub const TX: u16 = 1;
/// Entries in each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Bytes of configuration space: mac, status, max_virtqueue_pairs, mtu.
pub const CONFIG_SIZE: usize = 12;
/// Status bit: the link is up.
pub const STATUS_LINK_UP: u16 = 1;

/// Feature bits.
pub mod features {
    pub const CSUM: u64 = 1 << 0;
    pub const GUEST_CSUM: u64 = 1 << 1;
    pub const MAC: u64 = 1 << 5;
    pub const GUEST_TSO4: u64 = 1 << 7;
    pub const GUEST_TSO6: u64 = 1 << 8;
    pub const GUEST_ECN: u64 = 1 << 9;
    pub const HOST_TSO4: u64 = 1 << 11;
    pub const HOST_TSO6: u64 = 1 << 12;
    pub const HOST_ECN: u64 = 1 << 13;
    pub const MRG_RXBUF: u64 = 1 << 15;
    pub const STATUS: u64 = 1 << 16;
    /// What a backend that carries the virtio-net header can take.
    pub const OFFLOADS: u64 =
        CSUM | GUEST_CSUM | GUEST_TSO4 | GUEST_TSO6 | GUEST_ECN | HOST_TSO4 | HOST_TSO6 | HOST_ECN;
}

/// The offloads a guest accepts on received frames, for the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offloads {
    pub csum: bool,
    pub tso4: bool,
    pub tso6: bool,
    pub ecn: bool,
}

impl Offloads {
    /// What the negotiated `features` allow on the receive side.
    pub fn from_features(features: u64) -> Self {
        let has = |f| features & f != 0;
        let csum = has(features::GUEST_CSUM);
        Offloads {
            csum,
            tso4: csum && has(features::GUEST_TSO4),
            tso6: csum && has(features::GUEST_TSO6),
            ecn: csum && has(features::GUEST_ECN),
        }
    }
}

/// What a backend did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Taken (or dropped by the backend as a network would).
    Done,
    /// No room now: try again once the backend's fd is writable.
    Full,
}

/// Where the card's frames come from and go to. With
/// [`vnet_header`](NetBackend::vnet_header) every frame starts with the
/// 12-byte virtio-net header; otherwise frames are bare Ethernet.
pub trait NetBackend: Send {
    /// Whether frames carry the virtio-net header (offloads pass through).
    fn vnet_header(&self) -> bool;
    /// Tells the backend which offloads the guest takes on received frames.
    fn set_offloads(&mut self, offloads: Offloads) -> io::Result<()>;
    /// Reads one frame into `buf`; `None` when none waits.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Sends one frame.
    fn send(&mut self, frame: &[u8]) -> io::Result<Sent>;
    /// Sends one frame made of `prefix` (the card's checked copy of what
    /// comes first) and then `pieces` of guest memory, read from there by
    /// the kernel (writev); `None` when the backend cannot, and the card
    /// copies the frame and calls [`send`](NetBackend::send).
    fn send_from_guest(
        &mut self,
        _prefix: &[u8],
        _pieces: &[GuestPiece],
        _memory: &GuestMemory,
    ) -> Option<io::Result<Sent>> {
        None
    }
    /// Whether output waits for the fd to become writable.
    fn wants_writable(&self) -> bool {
        false
    }
    /// Writes output that waited; called when the fd is writable.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// The fd to wait on.
    fn fd(&self) -> BorrowedFd<'_>;
}

/// The card's counters, shared with `status`.
#[derive(Debug, Default)]
pub struct NetStats {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Received frames dropped: no guest buffers big enough, or the
    /// guest's buffers were unusable.
    pub rx_dropped: AtomicU64,
    /// Frames from the guest refused: bad chains or headers, too long.
    pub tx_refused: AtomicU64,
    /// The backend failed (e.g. passt exited); frames are dropped since.
    pub backend_failed: AtomicBool,
}

/// A snapshot of [`NetStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetCounts {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_refused: u64,
    pub backend_failed: bool,
}

impl NetStats {
    pub fn counts(&self) -> NetCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NetCounts {
            rx_packets: get(&self.rx_packets),
            rx_bytes: get(&self.rx_bytes),
            tx_packets: get(&self.tx_packets),
            tx_bytes: get(&self.tx_bytes),
            rx_dropped: get(&self.rx_dropped),
            tx_refused: get(&self.tx_refused),
            backend_failed: self.backend_failed.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: u64) -> u64 {
        counter.fetch_add(n, Ordering::Relaxed) + n
    }
}

/// Wakes the I/O thread: a kick (also straight from the hypervisor, as
/// an ioeventfd), an activation or reset, or a stop.
pub struct Wake {
    fd: Arc<EventFd>,
    stop: AtomicBool,
}

impl Wake {
    pub fn new() -> io::Result<Self> {
        Ok(Wake {
            fd: Arc::new(EventFd::new(EFD_NONBLOCK)?),
            stop: AtomicBool::new(false),
        })
    }

    pub fn wake(&self) {
        // A full counter still wakes the reader: nothing is lost.
        let _ = self.fd.write(1);
    }

    /// Clears the wake-up (the thread then looks at everything).
    pub fn clear(&self) {
        let _ = self.fd.read();
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn event(&self) -> &Arc<EventFd> {
        &self.fd
    }
}

/// The card as the guest driver sees it.
pub struct VirtioNet {
    mac: [u8; 6],
    link_up: bool,
    features: u64,
    wake: Arc<Wake>,
}

impl VirtioNet {
    /// A card with `mac`; offloads are offered when the backend carries
    /// the virtio-net header.
    pub fn new(mac: [u8; 6], vnet_header: bool) -> io::Result<Self> {
        let mut features = features::MAC | features::STATUS | features::MRG_RXBUF;
        if vnet_header {
            features |= features::OFFLOADS;
        }
        Ok(VirtioNet {
            mac,
            link_up: true,
            features,
            wake: Arc::new(Wake::new()?),
        })
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// Sets the link state the guest reads (the caller tells the guest
    /// that its configuration changed).
    pub fn set_link(&mut self, up: bool) {
        self.link_up = up;
        self.wake.wake();
    }

    pub fn wake_handle(&self) -> Arc<Wake> {
        self.wake.clone()
    }

    fn config(&self) -> [u8; CONFIG_SIZE] {
        let mut c = [0u8; CONFIG_SIZE];
        c[..6].copy_from_slice(&self.mac);
        let status = if self.link_up { STATUS_LINK_UP } else { 0 };
        c[6..8].copy_from_slice(&status.to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes());
        c[10..12].copy_from_slice(&1500u16.to_le_bytes());
        c
    }
}

impl VirtioDevice for VirtioNet {
    fn device_type(&self) -> u16 {
        DEVICE_TYPE
    }

    fn name(&self) -> &'static str {
        "virtio-net"
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn device_features(&self) -> u64 {
        self.features
    }

    fn config_size(&self) -> usize {
        CONFIG_SIZE
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let config = self.config();
        if let Some(src) = config.get(offset..offset + data.len()) {
            data.copy_from_slice(src);
        }
    }

    fn write_config(&mut self, _offset: usize, _data: &[u8]) {
        // The MAC is writable only with VIRTIO_NET_F_CTRL_MAC_ADDR, which
        // this card does not offer; writes are ignored.
    }

    fn activate(&mut self, _queues: &mut Queues<'_>) {
        self.wake.wake();
    }

    fn queue_notify(&mut self, _index: u16, _queues: &mut Queues<'_>) {
        self.wake.wake();
    }

    fn reset(&mut self) {
        // The I/O thread touches the queues only under the transport lock,
        // which the caller holds: after this it finds them dead.
        self.wake.wake();
    }

    fn notify_events(&self) -> Vec<(u16, Arc<EventFd>)> {
        vec![
            (RX, self.wake.event().clone()),
            (TX, self.wake.event().clone()),
        ]
    }
}

/// Parses a MAC address written as six hex pairs split by ':'.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Whether `mac` may be a card's address: unicast and not all zeroes.
pub fn is_unicast(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0 && mac != &[0; 6]
}
