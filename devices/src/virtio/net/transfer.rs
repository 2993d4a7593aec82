//! Moving frames between the queues and a backend, one bounded round at a
//! time (docs/virtio-net.md §4).
//!
//! Transmit: each chain of the transmit queue is checked whole (header,
//! then the frame; at most [`MAX_DESCRIPTORS`] readable descriptors inside
//! RAM and [`MAX_FRAME`] bytes), a copy of its header checked against the
//! negotiated features, and the frame handed to the backend: straight from
//! guest memory when the backend can (TAP's writev), else copied. A chain
//! that breaks a rule is returned unsent and counted. When the backend has
//! no room a copy of the frame waits here and the queue is left alone
//! until the backend's fd is writable.
//!
//! Receive: a frame is read from the backend only when none waits here.
//! Its chains are gathered first (writable descriptors inside guest RAM;
//! several chains only with mergeable buffers) and the frame is written
//! only once they hold it whole, with `num_buffers` set; until the guest
//! posts enough buffers the frame waits and the backend is not read, so
//! the backend (passt, the TAP queue) holds the rest.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemory as _};
use zerocopy::{FromBytes, IntoBytes};

use super::header::{self, NetHeader};
use super::{features, NetBackend, NetStats, Offloads, Sent, RX, TX};
use crate::virtio::{GuestMemory, Queues};

/// Bytes of a frame after the header: a 64 KiB TSO frame plus its
/// Ethernet and VLAN headers.
pub const MAX_FRAME: usize = 65_536 + 18;
/// Bytes of an Ethernet header: no frame is shorter.
pub const MIN_FRAME: usize = 14;
/// Descriptors read from one chain (a longer chain is refused).
pub const MAX_DESCRIPTORS: usize = 64;
/// Frames moved each way in one round.
pub const FRAMES_PER_ROUND: usize = 64;
/// How soon the transmit queue is looked at again after frames went out,
/// instead of asking the driver to kick (QEMU's transmit timer's 150 µs).
pub const TX_LINGER: std::time::Duration = std::time::Duration::from_micros(150);

/// What a round leaves to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// The round ran out of budget: go again without waiting.
    pub more: bool,
    /// Wait for the backend's fd to be readable.
    pub want_read: bool,
    /// Wait for the backend's fd to be writable.
    pub want_write: bool,
    /// Frames just went out: look at the transmit queue again after
    /// [`TX_LINGER`], wake-up or not (the driver was not asked to kick).
    pub linger: bool,
}

enum Delivery {
    Delivered,
    /// Not enough guest buffers now; the frame waits.
    NoBuffers,
    /// The frame cannot be delivered (too big, bad buffers).
    Dropped,
}

/// A piece of a frame in guest memory (checked to lie in RAM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestPiece {
    pub addr: GuestAddress,
    pub len: usize,
}

/// A writable piece of a receive chain.
struct Segment {
    piece: GuestPiece,
    chain: usize,
}

/// The frames in flight between the queues and a backend.
pub struct Transfer {
    backend: Box<dyn NetBackend>,
    stats: Arc<NetStats>,
    /// A received frame, header first, waiting for guest buffers.
    rx: Vec<u8>,
    rx_len: usize,
    /// A transmitted frame (header first) the backend had no room for.
    tx: Vec<u8>,
    tx_len: usize,
    segments: Vec<Segment>,
    chains: Vec<(u16, u32)>,
    /// The transmit chain in hand, and its frame after the header.
    pieces: Vec<GuestPiece>,
    body: Vec<GuestPiece>,
    offloads: Option<Offloads>,
    failed: bool,
}

impl Transfer {
    pub fn new(backend: Box<dyn NetBackend>, stats: Arc<NetStats>) -> Self {
        Transfer {
            backend,
            stats,
            rx: vec![0; header::SIZE + MAX_FRAME],
            rx_len: 0,
            tx: vec![0; header::SIZE + MAX_FRAME],
            tx_len: 0,
            segments: Vec::new(),
            chains: Vec::new(),
            pieces: Vec::new(),
            body: Vec::new(),
            offloads: None,
            failed: false,
        }
    }

    pub fn stats(&self) -> Arc<NetStats> {
        self.stats.clone()
    }

    pub fn backend_fd(&self) -> BorrowedFd<'_> {
        self.backend.fd()
    }

    /// Whether the backend failed for good.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// One round each way with the `negotiated` features. With the link
    /// down, transmitted frames are dropped and nothing is received (the
    /// backend keeps what arrives), as on an unplugged cable.
    pub fn pump(&mut self, negotiated: u64, link_up: bool, queues: &mut Queues<'_>) -> Progress {
        if !self.failed && self.backend.wants_writable() {
            if let Err(e) = self.backend.flush() {
                self.fail(&e);
            }
        }
        if !queues.is_live(RX) && !queues.is_live(TX) {
            // The driver reset the card (or has not started it): the frame
            // it sent before is dropped, as a NIC's reset drops its queue,
            // so nothing keeps the thread waking for a writable backend.
            self.offloads = None;
            self.tx_len = 0;
            return self.progress(false, false);
        }
        if !link_up {
            self.tx_len = 0;
            let (more, linger) = self.transmit(negotiated, false, queues);
            return Progress {
                more,
                want_read: false,
                want_write: false,
                linger,
            };
        }
        self.sync_offloads(negotiated);
        let (tx_more, linger) = self.transmit(negotiated, true, queues);
        let (rx_more, want_read) = self.receive(negotiated, queues);
        Progress {
            linger,
            ..self.progress(tx_more || rx_more, want_read)
        }
    }

    fn progress(&self, more: bool, want_read: bool) -> Progress {
        Progress {
            more,
            want_read: want_read && !self.failed,
            want_write: !self.failed && (self.backend.wants_writable() || self.tx_len > 0),
            linger: false,
        }
    }

    fn fail(&mut self, e: &io::Error) {
        if !self.failed {
            tracing::error!("virtio-net: the network backend failed: {e}; frames are dropped");
            self.failed = true;
            self.stats.backend_failed.store(true, Ordering::Relaxed);
            self.tx_len = 0;
            self.rx_len = 0;
        }
    }

    fn sync_offloads(&mut self, negotiated: u64) {
        let wanted = Offloads::from_features(negotiated);
        if self.failed || !self.backend.vnet_header() || self.offloads == Some(wanted) {
            return;
        }
        self.offloads = Some(wanted);
        if let Err(e) = self.backend.set_offloads(wanted) {
            self.fail(&e);
        }
    }

    /// Sends what the transmit queue holds (or, without `send`, returns it
    /// unsent): whether more may wait, and whether to linger.
    ///
    /// Once frames went out, more are likely on their way: the queue is
    /// left without asking the driver to kick, to be looked at again after
    /// [`TX_LINGER`]; only a look that finds nothing asks for a kick. So a
    /// flow of frames costs the guest no kick, and (with EVENT_IDX, where
    /// Linux asks for an interrupt when 3/4 of the frames it queued are
    /// used) few interrupts, instead of one of each per frame.
    fn transmit(&mut self, negotiated: u64, send: bool, queues: &mut Queues<'_>) -> (bool, bool) {
        if self.tx_len > 0 && !self.send_waiting(negotiated) {
            return (false, false);
        }
        queues.disable_notification(TX);
        let mut used = false;
        let mut more = true;
        for _ in 0..FRAMES_PER_ROUND {
            let next = if used {
                queues.pop(TX)
            } else {
                queues.pop_or_arm(TX)
            };
            let Some(chain) = next else {
                more = false;
                break;
            };
            let head = chain.head_index();
            let memory = queues.memory();
            let sent = match send {
                true => readable_pieces(chain, memory, &mut self.pieces)
                    .and_then(|total| self.send_chain(negotiated, total, memory)),
                false => Ok(true),
            };
            queues.add_used(TX, head, 0);
            used = true;
            match sent {
                Ok(true) => {}
                Ok(false) => {
                    more = false;
                    break;
                }
                Err(reason) => self.refuse(queues, format_args!("transmit chain {head}: {reason}")),
            }
        }
        if used {
            queues.notify(TX);
        }
        (more, used && !more && self.tx_len == 0)
    }

    /// Checks the frame in `pieces` (`total` bytes) and hands it to the
    /// backend, straight from guest memory when the backend can; false when
    /// the backend had no room (a copy of the frame then waits here).
    fn send_chain(
        &mut self,
        negotiated: u64,
        total: usize,
        memory: &GuestMemory,
    ) -> Result<bool, String> {
        if self.failed {
            return Ok(true);
        }
        if total < header::SIZE + MIN_FRAME {
            return Err(format!("{total} bytes, less than the headers"));
        }
        // The header the backend gets is this checked copy.
        let mut copy = [0u8; header::SIZE];
        copy_from_pieces(memory, &self.pieces, &mut copy)?;
        let hdr = NetHeader::read_from_bytes(&copy).unwrap_or_default();
        hdr.check_tx(negotiated, total - header::SIZE)
            .map_err(|e| e.to_string())?;
        skip_prefix(&self.pieces, header::SIZE, &mut self.body);
        let prefix: &[u8] = if self.backend.vnet_header() {
            &copy
        } else {
            &[]
        };
        match self.backend.send_from_guest(prefix, &self.body, memory) {
            Some(Ok(Sent::Done)) => {
                NetStats::add(&self.stats.tx_packets, 1);
                NetStats::add(&self.stats.tx_bytes, (total - header::SIZE) as u64);
                Ok(true)
            }
            Some(Err(e)) => {
                self.fail(&e);
                Ok(true)
            }
            Some(Ok(Sent::Full)) | None => {
                copy_from_pieces(memory, &self.pieces, &mut self.tx[..total])?;
                self.tx_len = total;
                Ok(self.send_waiting(negotiated))
            }
        }
    }

    fn refuse(&mut self, queues: &mut Queues<'_>, what: std::fmt::Arguments<'_>) {
        NetStats::add(&self.stats.tx_refused, 1);
        queues.guest_error(what);
    }

    /// Checks and sends the frame in `tx`; false when the backend had no
    /// room (the frame stays).
    fn send_waiting(&mut self, negotiated: u64) -> bool {
        let len = std::mem::take(&mut self.tx_len);
        let frame = &self.tx[..len];
        let Ok((hdr, body)) = NetHeader::read_from_prefix(frame) else {
            NetStats::add(&self.stats.tx_refused, 1);
            return true;
        };
        if body.len() < MIN_FRAME || hdr.check_tx(negotiated, body.len()).is_err() {
            NetStats::add(&self.stats.tx_refused, 1);
            return true;
        }
        if self.failed {
            return true;
        }
        let out = if self.backend.vnet_header() {
            frame
        } else {
            body
        };
        match self.backend.send(out) {
            Ok(Sent::Done) => {
                NetStats::add(&self.stats.tx_packets, 1);
                NetStats::add(&self.stats.tx_bytes, body.len() as u64);
                true
            }
            Ok(Sent::Full) => {
                self.tx_len = len;
                false
            }
            Err(e) => {
                self.fail(&e);
                true
            }
        }
    }

    /// Delivers frames to the receive queue: (more may wait, wait for the
    /// backend to be readable).
    fn receive(&mut self, negotiated: u64, queues: &mut Queues<'_>) -> (bool, bool) {
        if !queues.is_live(RX) || self.failed {
            return (false, false);
        }
        let mergeable = negotiated & features::MRG_RXBUF != 0;
        let mut used = false;
        let mut result = (true, true);
        for _ in 0..FRAMES_PER_ROUND {
            if self.rx_len == 0 && !self.read_frame() {
                result = (false, !self.failed);
                break;
            }
            match self.deliver(mergeable, queues) {
                Delivery::Delivered => used = true,
                Delivery::NoBuffers => {
                    result = (false, false);
                    break;
                }
                Delivery::Dropped => {
                    NetStats::add(&self.stats.rx_dropped, 1);
                    self.rx_len = 0;
                    used |= !self.chains.is_empty();
                    self.chains.clear();
                }
            }
        }
        if used {
            queues.notify(RX);
        }
        result
    }

    /// Reads the next frame from the backend into `rx`; whether there was one.
    fn read_frame(&mut self) -> bool {
        loop {
            let result = if self.backend.vnet_header() {
                self.backend.recv(&mut self.rx)
            } else {
                self.rx[..header::SIZE].fill(0);
                let got = self.backend.recv(&mut self.rx[header::SIZE..]);
                got.map(|n| n.map(|n| n + header::SIZE))
            };
            match result {
                Ok(Some(n)) if n >= header::SIZE + MIN_FRAME && n <= self.rx.len() => {
                    self.rx_len = n;
                    return true;
                }
                Ok(Some(_)) => {
                    NetStats::add(&self.stats.rx_dropped, 1);
                }
                Ok(None) => return false,
                Err(e) => {
                    self.fail(&e);
                    return false;
                }
            }
        }
    }

    /// Puts the frame in `rx` into receive chains.
    fn deliver(&mut self, mergeable: bool, queues: &mut Queues<'_>) -> Delivery {
        let total = self.rx_len;
        match self.gather(total, mergeable, queues) {
            Ok(true) => {}
            Ok(false) => return Delivery::NoBuffers,
            Err(drop) => return drop,
        }
        let count = self.chains.len() as u16;
        if mergeable {
            let mut hdr = NetHeader::read_from_bytes(&self.rx[..header::SIZE]).unwrap_or_default();
            hdr.num_buffers.set(count);
            self.rx[..header::SIZE].copy_from_slice(hdr.as_bytes());
        }
        if let Err(e) = self.scatter(total, queues.memory()) {
            self.chains.iter_mut().for_each(|chain| chain.1 = 0);
            queues.add_used_together(RX, &self.chains);
            queues.guest_error(format_args!("receive buffers unwritable: {e}"));
            return Delivery::Dropped;
        }
        // All of the frame's buffers become used at once.
        queues.add_used_together(RX, &self.chains);
        self.rx_len = 0;
        NetStats::add(&self.stats.rx_packets, 1);
        NetStats::add(&self.stats.rx_bytes, (total - header::SIZE) as u64);
        Delivery::Delivered
    }

    /// Takes receive chains until they hold `total` bytes: Ok(false) when
    /// the guest has not posted enough (what was taken is given back).
    fn gather(
        &mut self,
        total: usize,
        mergeable: bool,
        queues: &mut Queues<'_>,
    ) -> Result<bool, Delivery> {
        self.segments.clear();
        self.chains.clear();
        let mut room = 0usize;
        let mut armed = false;
        while room < total {
            let chain = match queues.pop(RX) {
                Some(chain) => chain,
                None if !armed && !queues.failed() => {
                    // Ask for a kick, then look once more.
                    armed = true;
                    if queues.enable_notification(RX) {
                        continue;
                    }
                    self.give_back(queues);
                    return Ok(false);
                }
                None => {
                    self.give_back(queues);
                    return Ok(false);
                }
            };
            let head = chain.head_index();
            let index = self.chains.len();
            match writable_segments(chain, queues.memory(), index, &mut self.segments) {
                Ok(n) => {
                    room += n;
                    self.chains.push((head, 0));
                }
                Err(reason) => {
                    // The chains taken before it are no longer the last
                    // popped: all go back used and empty (the driver frees
                    // them).
                    self.chains.push((head, 0));
                    queues.add_used_together(RX, &self.chains);
                    queues.guest_error(format_args!("receive chain {head}: {reason}"));
                    return Err(Delivery::Dropped);
                }
            }
            let last_try = !mergeable || self.chains.len() >= usize::from(queues.size(RX));
            if room < total && last_try {
                // One chain must hold the frame, or the whole ring cannot.
                self.give_back(queues);
                return Err(Delivery::Dropped);
            }
        }
        Ok(true)
    }

    /// Returns the chains taken for a frame, unused, to the queue.
    fn give_back(&mut self, queues: &mut Queues<'_>) {
        for _ in 0..self.chains.len() {
            queues.unpop(RX);
        }
        self.chains.clear();
        self.segments.clear();
    }

    /// Writes `rx[..total]` across the gathered segments, chain by chain,
    /// recording how much each chain got.
    fn scatter(
        &mut self,
        total: usize,
        memory: &GuestMemory,
    ) -> Result<(), vm_memory::GuestMemoryError> {
        let mut at = 0;
        for s in &self.segments {
            if at == total {
                break;
            }
            let n = s.piece.len.min(total - at);
            memory.write_slice(&self.rx[at..at + n], s.piece.addr)?;
            self.chains[s.chain].1 += n as u32;
            at += n;
        }
        // Chains past the frame's end (never: gathering stops once it fits)
        // would keep 0 bytes; the driver then frees them.
        Ok(())
    }
}

/// Collects a transmit chain's buffers into `out`: the frame's length,
/// header included.
fn readable_pieces(
    chain: DescriptorChain<&GuestMemory>,
    memory: &GuestMemory,
    out: &mut Vec<GuestPiece>,
) -> Result<usize, String> {
    out.clear();
    chain_pieces(chain, memory, false, header::SIZE + MAX_FRAME, |p| {
        out.push(p)
    })
}

/// Hands a chain's buffers to `take`, checking them: readable ones (or
/// writable ones with `writable`) only, at most [`MAX_DESCRIPTORS`] and
/// `limit` bytes, inside guest RAM, the chain whole (no loop or bad
/// index). Their total length.
fn chain_pieces(
    chain: DescriptorChain<&GuestMemory>,
    memory: &GuestMemory,
    writable: bool,
    limit: usize,
    mut take: impl FnMut(GuestPiece),
) -> Result<usize, String> {
    let access = if writable {
        vm_memory::Permissions::Write
    } else {
        vm_memory::Permissions::Read
    };
    let (mut len, mut count, mut cut_short) = (0usize, 0, false);
    for d in chain {
        count += 1;
        if count > MAX_DESCRIPTORS {
            return Err(format!("more than {MAX_DESCRIPTORS} descriptors"));
        }
        if d.is_write_only() != writable {
            return Err(format!(
                "a device-{} descriptor",
                if writable { "readable" } else { "writable" }
            ));
        }
        let n = d.len() as usize;
        len += n;
        if len > limit {
            return Err(format!("more than {limit} bytes"));
        }
        if !memory.check_range(d.addr(), n, access) {
            return Err(format!("buffer {:#x}+{n:#x} outside RAM", d.addr().0));
        }
        take(GuestPiece {
            addr: d.addr(),
            len: n,
        });
        cut_short = d.has_next();
    }
    if cut_short {
        return Err("a chain cut short (a loop or a bad index)".into());
    }
    Ok(len)
}

/// Fills `buf` from the start of `pieces`.
fn copy_from_pieces(
    memory: &GuestMemory,
    pieces: &[GuestPiece],
    buf: &mut [u8],
) -> Result<(), String> {
    let mut at = 0;
    for p in pieces {
        if at == buf.len() {
            break;
        }
        let n = p.len.min(buf.len() - at);
        memory
            .read_slice(&mut buf[at..at + n], p.addr)
            .map_err(|e| format!("buffer {:#x}: {e}", p.addr.0))?;
        at += n;
    }
    if at < buf.len() {
        return Err(format!("{at} bytes where {} were expected", buf.len()));
    }
    Ok(())
}

/// `pieces` without their first `skip` bytes, into `out`.
fn skip_prefix(pieces: &[GuestPiece], mut skip: usize, out: &mut Vec<GuestPiece>) {
    out.clear();
    for p in pieces {
        if skip >= p.len {
            skip -= p.len;
            continue;
        }
        out.push(GuestPiece {
            addr: GuestAddress(p.addr.0 + skip as u64),
            len: p.len - skip,
        });
        skip = 0;
    }
}

/// Adds a receive chain's buffers to `out`: its room.
fn writable_segments(
    chain: DescriptorChain<&GuestMemory>,
    memory: &GuestMemory,
    index: usize,
    out: &mut Vec<Segment>,
) -> Result<usize, String> {
    chain_pieces(chain, memory, true, usize::MAX, |piece| {
        out.push(Segment {
            piece,
            chain: index,
        })
    })
}
