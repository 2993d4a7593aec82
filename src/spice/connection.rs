//! One client connection: its socket, input buffer, rate limit, link stage
//! or open channel, and outgoing bytes. The event loop in `server.rs` owns
//! all connections and drives them.

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::{TcpStream, UnixStream};

use super::channel::Outbox;
use super::link::{LinkRequest, Linker};
use super::session::SpiceChannel;

/// Largest client message body accepted on any channel (agent data is the
/// biggest legitimate one, 2 KiB).
pub const MAX_CLIENT_MESSAGE: u32 = 8 * 1024;
/// Received bytes buffered per connection at most.
pub const MAX_INPUT_BUFFER: usize = 64 * 1024;
/// Client messages a connection may send per second, sustained …
pub const MESSAGES_PER_SECOND: f64 = 5000.0;
/// … and in a burst.
pub const MESSAGE_BURST: f64 = 1000.0;

pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }

    pub fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub enum State {
    Linking {
        linker: Linker,
        request: Option<LinkRequest>,
    },
    Open {
        session: u32,
        /// `(type, id)` as in the link message.
        id: (u8, u8),
        /// "display 0", "main", ... for logs.
        name: String,
        channel: Box<dyn SpiceChannel>,
        outbox: Outbox,
    },
}

pub struct Connection {
    pub stream: Stream,
    pub peer: String,
    pub opened: Instant,
    pub input: Vec<u8>,
    /// Raw bytes to send before any framed message (link replies).
    pub raw_out: Vec<u8>,
    pub state: State,
    /// Close once `raw_out` (and the outbox) are written or cannot be.
    pub closing: bool,
    /// Dead: remove at the end of this loop iteration.
    pub closed: bool,
    /// The peer will send no more.
    pub read_eof: bool,
    tokens: f64,
    refilled: Instant,
}

impl Connection {
    pub fn new(stream: Stream, peer: String, now: Instant) -> Self {
        Connection {
            stream,
            peer,
            opened: now,
            input: Vec::new(),
            raw_out: Vec::new(),
            state: State::Linking {
                linker: Linker::new(),
                request: None,
            },
            closing: false,
            closed: false,
            read_eof: false,
            tokens: MESSAGE_BURST,
            refilled: now,
        }
    }

    pub fn channel_name(&self) -> String {
        match &self.state {
            State::Linking { .. } => "link".into(),
            State::Open { name, .. } => name.clone(),
        }
    }

    /// Reads what the socket has, up to the input buffer limit.
    /// Returns `Ok(true)` if it stopped because the buffer is full (more
    /// may be waiting in the socket).
    pub fn fill_input(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let room = MAX_INPUT_BUFFER.saturating_sub(self.input.len());
            if room == 0 {
                return Ok(true);
            }
            let want = room.min(chunk.len());
            match self.stream.read(&mut chunk[..want]) {
                Ok(0) => {
                    self.read_eof = true;
                    return Ok(false);
                }
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes a message token; `false` when the client is over its rate.
    pub fn take_token(&mut self, now: Instant) -> bool {
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * MESSAGES_PER_SECOND).min(MESSAGE_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Writes pending output; `Ok(true)` when all of it is out.
    pub fn flush(&mut self) -> io::Result<bool> {
        while !self.raw_out.is_empty() {
            match self.stream.write(&self.raw_out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.raw_out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        match &mut self.state {
            State::Open { outbox, .. } => outbox.flush_to(&mut self.stream),
            State::Linking { .. } => Ok(true),
        }
    }

    /// Framed bytes written so far.
    pub fn written(&self) -> u64 {
        match &self.state {
            State::Open { outbox, .. } => outbox.written(),
            State::Linking { .. } => 0,
        }
    }

    pub fn has_output(&self) -> bool {
        !self.raw_out.is_empty()
            || matches!(&self.state, State::Open { outbox, .. } if !outbox.is_empty())
    }
}
