//! Frames over a stream socket, each after its length as a 32-bit
//! big-endian number: what passt and QEMU's `-netdev stream` exchange
//! (docs/virtio-net.md §5.1). The socket is non-blocking. A frame is
//! written only when the socket has room for all of it ([`unix_buffer`]),
//! so the peer never waits for the rest of one; otherwise the card keeps it
//! until the socket is writable. The rest of a frame the kernel took only in
//! part anyway waits in a buffer and goes first.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use devices::virtio::net::transfer::MAX_FRAME;
use devices::virtio::net::{GuestPiece, NetBackend, Offloads, Sent};
use devices::virtio::GuestMemory;

use super::unix_buffer;

/// Room past a frame for the kernel's accounting of the pieces it cuts a
/// frame into (a few hundred bytes each).
const KERNEL_SLACK: usize = 8 << 10;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 << 10;

/// Bytes with a start and an end in a fixed buffer: taken from the front,
/// added at the back, moved to the start only when the back is full (so
/// a byte is moved at most once, not at every frame).
struct Window {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Window {
    fn new(size: usize) -> Self {
        Window {
            buf: vec![0; size].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space at the back, at least `want` bytes if the buffer has them.
    fn space(&mut self, want: usize) -> &mut [u8] {
        if self.buf.len() - self.end < want && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    fn added(&mut self, n: usize) {
        self.end += n;
    }

    /// Appends `bytes` if they fit.
    fn push(&mut self, bytes: &[u8]) -> bool {
        let space = self.space(bytes.len());
        if space.len() < bytes.len() {
            return false;
        }
        space[..bytes.len()].copy_from_slice(bytes);
        self.added(bytes.len());
        true
    }
}

/// A length-prefixed frame stream.
pub struct StreamBackend {
    socket: UnixStream,
    /// Who is at the other end, for errors.
    peer: &'static str,
    input: Window,
    /// The rest of a frame the socket took in part.
    output: Window,
    /// The socket's send buffer; frames are written whole within it.
    send_buffer: usize,
}

impl StreamBackend {
    pub fn new(socket: UnixStream, peer: &'static str) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        unix_buffer::enlarge(&socket);
        let send_buffer = unix_buffer::send_buffer(&socket)?;
        Ok(StreamBackend {
            socket,
            peer,
            input: Window::new(4 + MAX_FRAME + READ_CHUNK),
            output: Window::new(4 + MAX_FRAME),
            send_buffer,
        })
    }

    /// The length of a whole frame at the front of the input, if there is one.
    fn next_frame(&self) -> io::Result<Option<usize>> {
        let waiting = self.input.data();
        let Some(prefix) = waiting.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(prefix.try_into().unwrap_or_default()) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} sent a frame of {len} bytes", self.peer),
            ));
        }
        Ok((waiting.len() >= 4 + len).then_some(len))
    }

    /// Reads what the socket has; false when it had nothing.
    fn fill(&mut self) -> io::Result<bool> {
        let space = self.input.space(READ_CHUNK);
        match self.socket.read(space) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} closed its socket (it exited?)", self.peer),
            )),
            Ok(n) => {
                self.input.added(n);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Whether the socket takes a frame of `len` bytes whole now: nothing
    /// of an earlier one waits, and the send buffer has room for it. epoll
    /// calls the socket writable when at most a quarter of its buffer is in
    /// use, so a frame needing at most half always fits then; a buffer too
    /// small for that takes frames as it can.
    fn takes_whole(&mut self, len: usize) -> io::Result<bool> {
        self.flush()?;
        if self.output.len() > 0 {
            return Ok(false);
        }
        let need = 4 + len + KERNEL_SLACK;
        if need > self.send_buffer / 2 {
            return Ok(true);
        }
        Ok(unix_buffer::queued(&self.socket)? + need <= self.send_buffer)
    }
}

impl NetBackend for StreamBackend {
    fn vnet_header(&self) -> bool {
        false
    }

    fn set_offloads(&mut self, _offloads: Offloads) -> io::Result<()> {
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            if let Some(len) = self.next_frame()? {
                let n = len.min(buf.len());
                buf[..n].copy_from_slice(&self.input.data()[4..4 + n]);
                self.input.consume(4 + len);
                // A frame longer than `buf` says so by its length; the
                // card drops it.
                return Ok(Some(len));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<Sent> {
        if !self.takes_whole(frame.len())? {
            return Ok(Sent::Full);
        }
        let pushed =
            self.output.push(&(frame.len() as u32).to_be_bytes()) && self.output.push(frame);
        debug_assert!(pushed, "room was checked");
        self.flush()?;
        Ok(Sent::Done)
    }

    /// With nothing waiting, the frame goes straight from guest memory; what
    /// the socket does not take at once is copied into the output buffer.
    fn send_from_guest(
        &mut self,
        prefix: &[u8],
        pieces: &[GuestPiece],
        memory: &GuestMemory,
    ) -> Option<io::Result<Sent>> {
        let len = prefix.len() + pieces.iter().map(|p| p.len).sum::<usize>();
        match self.takes_whole(len) {
            Ok(true) => {}
            Ok(false) => return Some(Ok(Sent::Full)),
            Err(e) => return Some(Err(e)),
        }
        let length = (len as u32).to_be_bytes();
        let parts = [&length[..], prefix];
        let written = loop {
            match super::guest_io::writev(self.socket.as_fd(), &parts, pieces, memory) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e)),
            }
        };
        if written == 4 + len {
            return Some(Ok(Sent::Done));
        }
        let mut rest = Vec::with_capacity(4 + len - written);
        let copied = super::guest_io::append_rest(&parts, pieces, memory, written, &mut rest);
        Some(copied.map(|()| {
            let pushed = self.output.push(&rest);
            debug_assert!(pushed, "room was checked");
            Sent::Done
        }))
    }

    fn wants_writable(&self) -> bool {
        self.output.len() > 0
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.output.len() > 0 {
            match self.socket.write(self.output.data()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.output.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (StreamBackend, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (StreamBackend::new(a, "the peer").unwrap(), b)
    }

    #[test]
    fn frames_cut_anywhere_come_out_whole() {
        let (mut s, mut peer) = pair();
        let mut wire = Vec::new();
        for len in [60usize, 1500, 70_000 - 4 - 18] {
            let len = len.min(MAX_FRAME);
            wire.extend((len as u32).to_be_bytes());
            wire.extend((0..len).map(|i| i as u8));
        }
        let mut buf = vec![0u8; MAX_FRAME];
        let mut got = Vec::new();
        for piece in wire.chunks(7777) {
            peer.write_all(piece).unwrap();
            while let Some(n) = s.recv(&mut buf).unwrap() {
                got.push(buf[..n].to_vec());
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], (0..1500).map(|i| i as u8).collect::<Vec<_>>());
    }

    /// Reads what `peer` holds now: the lengths of the whole frames, and
    /// the bytes left over (a frame's first part).
    fn frames_waiting(peer: &mut UnixStream) -> (Vec<usize>, usize) {
        peer.set_nonblocking(true).unwrap();
        let mut wire = Vec::new();
        let _ = peer.read_to_end(&mut wire);
        let (mut frames, mut at) = (Vec::new(), 0);
        while let Some(prefix) = wire.get(at..at + 4) {
            let len = u32::from_be_bytes(prefix.try_into().unwrap()) as usize;
            if at + 4 + len > wire.len() {
                break;
            }
            frames.push(len);
            at += 4 + len;
        }
        (frames, wire.len() - at)
    }

    #[test]
    fn sent_frames_are_prefixed_and_a_full_socket_holds_whole_frames() {
        let (mut s, mut peer) = pair();
        assert_eq!(s.send(&[1, 2, 3]).unwrap(), Sent::Done);
        let mut b = [0u8; 7];
        peer.read_exact(&mut b).unwrap();
        assert_eq!(b, [0, 0, 0, 3, 1, 2, 3]);
        let frame = vec![0u8; 60_000];
        let mut sent = 0;
        while s.send(&frame).unwrap() == Sent::Done {
            sent += 1;
            assert!(sent < 1000, "never full");
        }
        assert!(!s.wants_writable(), "nothing of a frame waits");
        assert_eq!(frames_waiting(&mut peer), (vec![60_000; sent], 0));
        assert_eq!(
            s.send(&frame).unwrap(),
            Sent::Done,
            "room once the peer read"
        );
    }

    #[test]
    fn frames_from_guest_memory_arrive_whole_even_when_the_socket_is_full() {
        use vm_memory::{Bytes, GuestAddress};
        let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let body: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
        memory.write_slice(&body, GuestAddress(0x1000)).unwrap();
        let pieces = [
            GuestPiece {
                addr: GuestAddress(0x1000),
                len: 20_000,
            },
            GuestPiece {
                addr: GuestAddress(0x1000 + 20_000),
                len: 40_000,
            },
        ];
        let (mut s, mut peer) = pair();
        let mut sent = 0;
        // Told a small socket always has room, it fills up in the middle of
        // a frame: then the rest waits in the buffer and nothing more goes.
        nix::sys::socket::setsockopt(&s.socket, nix::sys::socket::sockopt::SndBuf, &(64 << 10))
            .unwrap();
        s.send_buffer = 1 << 40;
        while !s.wants_writable() {
            assert!(sent < 100, "the socket never filled");
            match s.send_from_guest(&[], &pieces, &memory) {
                Some(Ok(Sent::Done)) => sent += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            s.send_from_guest(&[], &pieces, &memory),
            Some(Ok(Sent::Full))
        ));
        peer.set_nonblocking(false).unwrap();
        let reader = std::thread::spawn(move || {
            let mut frames = 0;
            let mut prefix = [0u8; 4];
            while peer.read_exact(&mut prefix).is_ok() {
                let mut frame = vec![0u8; u32::from_be_bytes(prefix) as usize];
                peer.read_exact(&mut frame).unwrap();
                assert_eq!(
                    frame,
                    (0..60_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>()
                );
                frames += 1;
            }
            frames
        });
        while s.wants_writable() {
            s.flush().unwrap();
        }
        drop(s);
        assert_eq!(reader.join().unwrap(), sent);
    }

    #[test]
    fn a_closed_peer_or_a_huge_length_is_an_error() {
        let (mut s, peer) = pair();
        drop(peer);
        assert!(s.recv(&mut [0u8; 100]).is_err());
        let (mut s, mut peer) = pair();
        peer.write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert!(s.recv(&mut [0u8; 100]).is_err());
    }

    /// passt (Debian's 2023 version) reads what the socket holds, and when
    /// that ends inside a frame it reads the rest with one blocking read; a
    /// short read loses the frame and the stream's framing with it.
    fn read_like_passt(mut peer: UnixStream) -> (usize, usize) {
        // passt's read size (TAP_BUF_FILL), and room for a frame's rest.
        const READ: usize = 8_323_069;
        let mut buf = vec![0u8; READ + 70_000];
        let (mut whole, mut lost) = (0, 0);
        loop {
            let Ok(got @ 1..) = peer.read(&mut buf[..READ]) else {
                return (whole, lost);
            };
            let (mut at, mut n) = (0, got);
            while n > 4 {
                let len = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
                (at, n) = (at + 4, n - 4);
                if len > 65_535 {
                    lost += 1;
                    break;
                }
                if len > n {
                    n += peer.read(&mut buf[at + n..at + len]).unwrap_or(0);
                }
                if n < len {
                    lost += 1;
                    break;
                }
                whole += 1;
                (at, n) = (at + len, n - len);
            }
        }
    }

    #[test]
    fn a_reader_like_passt_gets_every_frame() {
        let (s, peer) = pair();
        let reader = std::thread::spawn(move || read_like_passt(peer));
        let mut s = s;
        let frame = vec![7u8; 59_000];
        let mut sent = 0;
        while sent < 20_000 {
            match s.send(&frame).unwrap() {
                Sent::Done => sent += 1,
                Sent::Full => std::thread::yield_now(),
            }
        }
        while s.wants_writable() {
            s.flush().unwrap();
        }
        drop(s);
        assert_eq!(reader.join().unwrap(), (sent, 0));
    }
}
