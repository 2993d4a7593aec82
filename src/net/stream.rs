//! Frames over a stream socket, each after its length as a 32-bit
//! big-endian number: what passt and QEMU's `-netdev stream` exchange
//! (docs/virtio-net.md §5.1). The socket is non-blocking; output waits in
//! a buffer of at most [`OUT_LIMIT`] bytes and the card stops sending when
//! it is full.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use devices::virtio::net::transfer::MAX_FRAME;
use devices::virtio::net::{NetBackend, Offloads, Sent};

/// Bytes of output that may wait for the socket.
pub const OUT_LIMIT: usize = 256 << 10;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 << 10;

/// A length-prefixed frame stream.
pub struct StreamBackend {
    socket: UnixStream,
    /// Who is at the other end, for errors.
    peer: &'static str,
    input: Vec<u8>,
    /// Bytes of `input` already handed out.
    taken: usize,
    output: Vec<u8>,
    /// Bytes of `output` already written.
    written: usize,
}

impl StreamBackend {
    pub fn new(socket: UnixStream, peer: &'static str) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(StreamBackend {
            socket,
            peer,
            input: Vec::with_capacity(2 * READ_CHUNK),
            taken: 0,
            output: Vec::with_capacity(OUT_LIMIT),
            written: 0,
        })
    }

    /// A whole frame at the front of the input, if there is one.
    fn next_frame(&self) -> io::Result<Option<(usize, usize)>> {
        let waiting = &self.input[self.taken..];
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
        Ok((waiting.len() >= 4 + len).then_some((self.taken + 4, len)))
    }

    /// Reads what the socket has; false when it had nothing.
    fn fill(&mut self) -> io::Result<bool> {
        if self.taken > 0 {
            self.input.drain(..self.taken);
            self.taken = 0;
        }
        let start = self.input.len();
        self.input.resize(start + READ_CHUNK, 0);
        let result = self.socket.read(&mut self.input[start..]);
        self.input.truncate(start + *result.as_ref().unwrap_or(&0));
        match result {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} closed its socket (it exited?)", self.peer),
            )),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
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
            if let Some((at, len)) = self.next_frame()? {
                self.taken = at + len;
                let n = len.min(buf.len());
                buf[..n].copy_from_slice(&self.input[at..at + n]);
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
        if self.output.len() - self.written + 4 + frame.len() > OUT_LIMIT {
            self.flush()?;
            if self.output.len() - self.written + 4 + frame.len() > OUT_LIMIT {
                return Ok(Sent::Full);
            }
        }
        if self.written > 0 {
            self.output.drain(..self.written);
            self.written = 0;
        }
        self.output
            .extend_from_slice(&(frame.len() as u32).to_be_bytes());
        self.output.extend_from_slice(frame);
        self.flush()?;
        Ok(Sent::Done)
    }

    fn wants_writable(&self) -> bool {
        self.written < self.output.len()
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.written < self.output.len() {
            match self.socket.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.output.len() {
            self.output.clear();
            self.written = 0;
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

    #[test]
    fn sent_frames_are_prefixed_and_a_stuck_peer_fills_the_buffer() {
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
        assert!(s.wants_writable());
        assert!(s.output.len() <= OUT_LIMIT);
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
}
