//! One client connection: its socket, input buffer, rate limit, link stage
//! or open channel, and outgoing bytes. The event loop in `server.rs` owns
//! all connections and drives them.

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::{TcpStream, UnixStream};
use rustls::{ServerConnection, StreamOwned};

use super::channel::Outbox;
use super::link::{LinkRequest, Linker};
use super::server::guard::Source;
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

/// TLS records rustls holds for the socket at most (its default).
const TLS_BUFFER_LIMIT: usize = 64 * 1024;

pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// TLS over TCP (non-blocking: rustls reports `WouldBlock` as the
    /// socket does, and keeps what it could not write yet).
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    /// A TLS server stream over an accepted socket.
    pub fn tls(
        config: &std::sync::Arc<rustls::ServerConfig>,
        socket: TcpStream,
    ) -> io::Result<Self> {
        let mut conn = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(Stream::Tls(Box::new(StreamOwned::new(conn, socket))))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    pub fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
            Stream::Tls(s) => &mut s.sock,
        }
    }

    pub fn shutdown(&mut self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.conn.write_tls(&mut s.sock);
                s.sock.shutdown(std::net::Shutdown::Both)
            }
        };
    }

    /// Whether TLS records wait for the socket.
    pub fn has_pending(&self) -> bool {
        matches!(self, Stream::Tls(s) if s.conn.wants_write())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            // A peer that closes without close_notify has simply gone.
            Stream::Tls(s) => match s.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => tls_written(s.write(buf), !buf.is_empty()),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::Tls(s) => {
                tls_written(s.write_vectored(bufs), bufs.iter().any(|b| !b.is_empty()))
            }
        }
    }
    /// Writes the TLS records rustls holds (`WouldBlock` when the socket
    /// is full).
    fn flush(&mut self) -> io::Result<()> {
        let Stream::Tls(s) = self else {
            return Ok(());
        };
        while s.conn.wants_write() {
            if s.conn.write_tls(&mut s.sock)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }
}

/// rustls takes nothing while its buffer is full: that is the socket
/// being full, not a closed one.
fn tls_written(result: io::Result<usize>, offered: bool) -> io::Result<usize> {
    match result {
        Ok(0) if offered => Err(io::ErrorKind::WouldBlock.into()),
        other => other,
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

/// How much one read takes from a socket.
const READ_CHUNK: usize = 16 * 1024;

pub struct Connection {
    pub stream: Stream,
    pub peer: String,
    /// Its address (for the per-source limits).
    pub source: Source,
    pub opened: Instant,
    /// Nothing is written before this (a wrong password's answer waits).
    pub hold_until: Option<Instant>,
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
    /// Where reads land before `input`: zeroed once, not per read (a 16 KiB
    /// memset per readable event was 14% of the SPICE loop's CPU).
    chunk: Box<[u8]>,
}

impl Connection {
    pub fn new(stream: Stream, peer: String, source: Source, now: Instant) -> Self {
        Connection {
            stream,
            peer,
            source,
            opened: now,
            hold_until: None,
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
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
        }
    }

    /// Whether its output is held back at `now`.
    pub fn held(&self, now: Instant) -> bool {
        self.hold_until.is_some_and(|t| now < t)
    }

    pub fn is_linking(&self) -> bool {
        matches!(self.state, State::Linking { .. })
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
        loop {
            let room = MAX_INPUT_BUFFER.saturating_sub(self.input.len());
            if room == 0 {
                return Ok(true);
            }
            let want = room.min(self.chunk.len());
            match self.stream.read(&mut self.chunk[..want]) {
                Ok(0) => {
                    self.read_eof = true;
                    return Ok(false);
                }
                Ok(n) => self.input.extend_from_slice(&self.chunk[..n]),
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
        if !self.flush_tls()? {
            return Ok(false);
        }
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
        let done = match &mut self.state {
            State::Open { outbox, .. } => outbox.flush_to(&mut self.stream)?,
            State::Linking { .. } => true,
        };
        Ok(self.flush_tls()? && done)
    }

    /// Writes the TLS records waiting for the socket; `Ok(true)` when none
    /// is left.
    fn flush_tls(&mut self) -> io::Result<bool> {
        match self.stream.flush() {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(e),
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
        self.stream.has_pending()
            || !self.raw_out.is_empty()
            || matches!(&self.state, State::Open { outbox, .. } if !outbox.is_empty())
    }
}
