//! A network backend for tests and fuzz targets (feature `test-driver`):
//! frames to receive are queued in its [`Wire`], sent frames are kept
//! there, and it can be made full, broken, or to take frames straight from
//! guest memory as TAP does.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use vm_memory::Bytes;

use super::{GuestPiece, NetBackend, Offloads, Sent};
use crate::virtio::GuestMemory;

/// What passes through a [`FakeBackend`], shared with the test.
#[derive(Default)]
pub struct Wire {
    /// Frames the backend will hand to the card.
    pub inbound: VecDeque<Vec<u8>>,
    /// Frames the card sent (kept only with `keep_sent`).
    pub outbound: Vec<Vec<u8>>,
    pub keep_sent: bool,
    /// Frames sent in all.
    pub sent: usize,
    /// Frames the backend still takes before it is full (`None`: always).
    pub room: Option<usize>,
    pub offloads: Vec<Offloads>,
    /// Every call fails, as after passt exited.
    pub broken: bool,
    /// Take frames straight from guest memory (as TAP does).
    pub zero_copy: bool,
    pub from_guest: usize,
}

pub struct FakeBackend {
    pub wire: Arc<Mutex<Wire>>,
    vnet: bool,
    fd: UnixStream,
}

impl FakeBackend {
    /// A backend that carries the virtio-net header with `vnet`.
    pub fn new(vnet: bool) -> io::Result<(Self, Arc<Mutex<Wire>>)> {
        let wire = Arc::new(Mutex::new(Wire {
            keep_sent: true,
            ..Wire::default()
        }));
        let fd = UnixStream::pair()?.0;
        let backend = FakeBackend {
            wire: wire.clone(),
            vnet,
            fd,
        };
        Ok((backend, wire))
    }

    fn wire(&self) -> std::sync::MutexGuard<'_, Wire> {
        self.wire.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one frame if there is room: whether it did. Every frame must
    /// have passed the card's checks: an Ethernet header at least, at most
    /// the largest frame, after the virtio-net header if the backend has it.
    fn take(vnet: bool, wire: &mut Wire, frame: Vec<u8>) -> bool {
        let extra = if vnet { super::header::SIZE } else { 0 };
        let (min, max) = (
            extra + super::transfer::MIN_FRAME,
            extra + super::transfer::MAX_FRAME,
        );
        assert!(
            (min..=max).contains(&frame.len()),
            "a {}-byte frame reached the backend",
            frame.len()
        );
        match &mut wire.room {
            Some(0) => return false,
            Some(n) => *n -= 1,
            None => {}
        }
        wire.sent += 1;
        if wire.keep_sent {
            wire.outbound.push(frame);
        }
        true
    }
}

fn broken() -> io::Error {
    io::Error::from(io::ErrorKind::BrokenPipe)
}

impl NetBackend for FakeBackend {
    fn vnet_header(&self) -> bool {
        self.vnet
    }

    fn set_offloads(&mut self, offloads: Offloads) -> io::Result<()> {
        self.wire().offloads.push(offloads);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut w = self.wire();
        if w.broken {
            return Err(broken());
        }
        Ok(w.inbound.pop_front().map(|f| {
            let n = f.len().min(buf.len());
            buf[..n].copy_from_slice(&f[..n]);
            f.len()
        }))
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<Sent> {
        let vnet = self.vnet;
        let mut w = self.wire();
        if w.broken {
            return Err(broken());
        }
        Ok(if Self::take(vnet, &mut w, frame.to_vec()) {
            Sent::Done
        } else {
            Sent::Full
        })
    }

    fn send_from_guest(
        &mut self,
        prefix: &[u8],
        pieces: &[GuestPiece],
        memory: &GuestMemory,
    ) -> Option<io::Result<Sent>> {
        let vnet = self.vnet;
        let mut w = self.wire();
        if !w.zero_copy || w.broken || w.room.is_some() {
            return None;
        }
        let mut frame = prefix.to_vec();
        for p in pieces {
            let at = frame.len();
            frame.resize(at + p.len, 0);
            if let Err(e) = memory.read_slice(&mut frame[at..], p.addr) {
                return Some(Err(io::Error::other(e)));
            }
        }
        w.from_guest += 1;
        Self::take(vnet, &mut w, frame);
        Some(Ok(Sent::Done))
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
