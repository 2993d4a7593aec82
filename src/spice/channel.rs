//! What every channel shares once linked: the outgoing message queue
//! ([`Outbox`], which frames messages with the negotiated header), ACK flow
//! control ([`AckWindow`]), the base messages valid on every channel, and
//! the error type for misbehaving clients.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::protocol::base;
use super::wire::{DataHeader, HeaderMode, Reader, WireError, Writer};

/// A server → client message: a type number and a body encoder.
pub trait Encode {
    const TYPE: u16;
    fn encode(&self, w: &mut Writer);

    /// The body alone (for tests and size checks).
    fn body(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.into_bytes()
    }
}

/// Why a client connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("bad message {msg_type}: {error}")]
    Malformed { msg_type: u16, error: WireError },
    #[error("unknown message type {0}")]
    UnknownType(u16),
    #[error("{0}")]
    Protocol(&'static str),
    #[error("agent: {0}")]
    Agent(#[from] super::agent::AgentError),
}

impl ChannelError {
    pub fn malformed(msg_type: u16) -> impl Fn(WireError) -> ChannelError {
        move |error| ChannelError::Malformed { msg_type, error }
    }
}

/// Pieces (headers, bodies) handed to one vectored write: Linux takes up
/// to 1024; 64 covers a burst of small messages without a large array.
const MAX_SLICES: usize = 64;

/// Framed messages waiting for the socket. Bodies are kept as they were
/// encoded (no copy into one big buffer); partial writes resume where they
/// stopped.
///
/// A channel that runs on its own thread frames into a twin
/// ([`Self::twin`]) and hands the framed pieces over
/// ([`Self::hand_over`], [`Self::append_framed`]); the two count their
/// unwritten bytes together, so the channel sees the socket's backlog.
pub struct Outbox {
    mode: HeaderMode,
    serial: u64,
    chunks: VecDeque<Vec<u8>>,
    front_written: usize,
    queued: Arc<AtomicUsize>,
    written: u64,
}

impl Outbox {
    pub fn new(mode: HeaderMode) -> Self {
        Outbox {
            mode,
            serial: 0,
            chunks: VecDeque::new(),
            front_written: 0,
            queued: Arc::default(),
            written: 0,
        }
    }

    /// An empty outbox that continues this one's numbering and shares its
    /// count of unwritten bytes (for a channel on another thread).
    pub fn twin(&self) -> Outbox {
        Outbox {
            mode: self.mode,
            serial: self.serial,
            chunks: VecDeque::new(),
            front_written: 0,
            queued: self.queued.clone(),
            written: 0,
        }
    }

    /// Takes the framed pieces queued so far (they stay counted as
    /// unwritten until the twin that gets them writes them).
    pub fn hand_over(&mut self) -> Vec<Vec<u8>> {
        debug_assert_eq!(self.front_written, 0, "a twin is never written");
        self.chunks.drain(..).collect()
    }

    /// Queues pieces a twin framed and handed over.
    pub fn append_framed(&mut self, chunks: Vec<Vec<u8>>) {
        self.chunks.extend(chunks);
    }

    pub fn mode(&self) -> HeaderMode {
        self.mode
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Nothing of its own is left to write.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes this outbox wrote so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Messages queued so far (= the serial of the last one).
    pub fn messages_queued(&self) -> u64 {
        self.serial
    }

    pub fn push<M: Encode>(&mut self, message: &M) {
        let mut w = Writer::new();
        message.encode(&mut w);
        self.push_raw(M::TYPE, w.into_bytes());
    }

    pub fn push_raw(&mut self, msg_type: u16, body: Vec<u8>) {
        self.serial += 1;
        let mut header = Vec::with_capacity(self.mode.header_len());
        DataHeader {
            msg_type,
            size: u32::try_from(body.len()).unwrap_or(u32::MAX),
        }
        .encode(self.mode, self.serial, &mut header);
        self.queued
            .fetch_add(header.len() + body.len(), Ordering::SeqCst);
        self.chunks.push_back(header);
        if !body.is_empty() {
            self.chunks.push_back(body);
        }
    }

    /// Writes as much as the writer takes; `Ok(true)` when everything is out.
    /// Headers, bodies and whole messages go out together, up to
    /// [`MAX_SLICES`] pieces per vectored write (one `writev` on a socket).
    pub fn flush_to(&mut self, out: &mut impl Write) -> io::Result<bool> {
        while !self.chunks.is_empty() {
            let slices: Vec<IoSlice> = self
                .chunks
                .iter()
                .take(MAX_SLICES)
                .enumerate()
                .map(|(i, chunk)| {
                    IoSlice::new(if i == 0 {
                        &chunk[self.front_written..]
                    } else {
                        chunk
                    })
                })
                .collect();
            match out.write_vectored(&slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Drops `n` written bytes from the front of the queue.
    fn consume(&mut self, mut n: usize) {
        self.written += n as u64;
        let _ = self
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                Some(q.saturating_sub(n))
            });
        while let Some(front) = self.chunks.front() {
            let left = front.len() - self.front_written;
            if n < left {
                self.front_written += n;
                return;
            }
            n -= left;
            self.chunks.pop_front();
            self.front_written = 0;
        }
    }

    /// Takes everything queued as one byte string (tests, fuzzing).
    pub fn take_bytes(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.flush_to(&mut out);
        out
    }
}

/// `SET_ACK`: the client acknowledges every `window` messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAck {
    pub generation: u32,
    pub window: u32,
}

impl Encode for SetAck {
    const TYPE: u16 = base::SET_ACK;
    fn encode(&self, w: &mut Writer) {
        w.u32(self.generation).u32(self.window);
    }
}

/// `PING`: the client echoes `id` and `timestamp` in a `PONG`. `payload`
/// zero bytes follow (the network test times a large one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    pub id: u32,
    pub timestamp: u64,
    pub payload: u32,
}

impl Encode for Ping {
    const TYPE: u16 = base::PING;
    fn encode(&self, w: &mut Writer) {
        w.u32(self.id)
            .u64(self.timestamp)
            .zeros(self.payload as usize);
    }
}

/// `NOTIFY`: a message for the client's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub timestamp: u64,
    pub severity: u32,
    pub visibility: u32,
    pub what: u32,
    pub message: String,
}

impl Notify {
    pub const SEVERITY_INFO: u32 = 0;
    pub const SEVERITY_WARN: u32 = 1;
    pub const VISIBILITY_HIGH: u32 = 2;
}

impl Encode for Notify {
    const TYPE: u16 = base::NOTIFY;
    fn encode(&self, w: &mut Writer) {
        w.u64(self.timestamp)
            .u32(self.severity)
            .u32(self.visibility)
            .u32(self.what)
            .u32(self.message.len() as u32)
            .bytes(self.message.as_bytes())
            .u8(0);
    }
}

/// `DISCONNECTING`: the server is about to close the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnecting {
    pub timestamp: u64,
    pub reason: u32,
}

impl Encode for Disconnecting {
    const TYPE: u16 = base::DISCONNECTING;
    fn encode(&self, w: &mut Writer) {
        w.u64(self.timestamp).u32(self.reason);
    }
}

/// Client messages valid on every channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseMessage {
    AckSync {
        generation: u32,
    },
    Ack,
    Pong {
        id: u32,
        timestamp: u64,
    },
    /// Migration messages and the client's DISCONNECTING: accepted, ignored.
    Ignored(u16),
}

impl BaseMessage {
    /// Decodes a base message; `Ok(None)` if the type is not a base one.
    pub fn decode(msg_type: u16, body: &[u8]) -> Result<Option<BaseMessage>, ChannelError> {
        let mut r = Reader::new(body);
        let bad = ChannelError::malformed(msg_type);
        Ok(Some(match msg_type {
            base::ACK_SYNC => BaseMessage::AckSync {
                generation: r.u32("generation").map_err(bad)?,
            },
            base::ACK => BaseMessage::Ack,
            base::PONG => BaseMessage::Pong {
                id: r.u32("id").map_err(&bad)?,
                timestamp: r.u64("timestamp").map_err(&bad)?,
            },
            base::MIGRATE_FLUSH_MARK | base::MIGRATE_DATA | base::CLIENT_DISCONNECTING => {
                BaseMessage::Ignored(msg_type)
            }
            _ => return Ok(None),
        }))
    }
}

/// ACK flow control (display and cursor channels).
///
/// After `SET_ACK(generation, window)` the client sends `ACK` for every
/// `window` messages it has processed. We stop producing while more than
/// two windows are unacknowledged, which throttles to the client's speed.
#[derive(Debug)]
pub struct AckWindow {
    window: u32,
    generation: u32,
    client_generation: Option<u32>,
    unacked: u64,
    counted_until: u64,
}

impl AckWindow {
    /// spice-server's normal window.
    pub const WINDOW: u32 = 20;

    /// Queues `SET_ACK` as the first message of `out`.
    pub fn start(out: &mut Outbox) -> AckWindow {
        let mut ack = AckWindow {
            window: Self::WINDOW,
            generation: 1,
            client_generation: None,
            unacked: 0,
            counted_until: out.messages_queued(),
        };
        out.push(&SetAck {
            generation: ack.generation,
            window: ack.window,
        });
        ack.count(out);
        ack
    }

    /// Counts the messages queued since the last call.
    fn count(&mut self, out: &Outbox) {
        let queued = out.messages_queued();
        self.unacked += queued.saturating_sub(self.counted_until);
        self.counted_until = queued;
    }

    /// Whether more messages may be queued now.
    pub fn may_send(&mut self, out: &Outbox) -> bool {
        self.count(out);
        self.unacked <= 2 * u64::from(self.window)
    }

    /// How many more messages may be queued now (`may_send` while > 0).
    pub fn room(&mut self, out: &Outbox) -> u64 {
        self.count(out);
        (2 * u64::from(self.window) + 1).saturating_sub(self.unacked)
    }

    pub fn on_message(&mut self, message: &BaseMessage) {
        match message {
            BaseMessage::AckSync { generation } => self.client_generation = Some(*generation),
            BaseMessage::Ack if self.client_generation == Some(self.generation) => {
                self.unacked = self.unacked.saturating_sub(u64::from(self.window));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_frames_and_resumes_partial_writes() {
        let mut out = Outbox::new(HeaderMode::Mini);
        out.push(&SetAck {
            generation: 1,
            window: 20,
        });
        out.push_raw(102, Vec::new());
        assert_eq!(out.queued_bytes(), 6 + 8 + 6);

        /// Takes at most 5 bytes per write, then blocks once.
        struct Trickle(Vec<u8>, bool);
        impl Write for Trickle {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.1 = !self.1;
                if self.1 {
                    let n = b.len().min(5);
                    self.0.extend_from_slice(&b[..n]);
                    Ok(n)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                }
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut sink = Trickle(Vec::new(), false);
        let mut rounds = 0;
        while !out.flush_to(&mut sink).unwrap() {
            rounds += 1;
        }
        assert!(rounds > 3);
        assert_eq!(
            sink.0,
            [3, 0, 8, 0, 0, 0, 1, 0, 0, 0, 20, 0, 0, 0, 102, 0, 0, 0, 0, 0]
        );
        assert!(out.is_empty());
    }

    /// Takes at most `limit` bytes per vectored write and counts the calls.
    struct Vectored {
        bytes: Vec<u8>,
        calls: usize,
        limit: usize,
    }

    impl Write for Vectored {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(b)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.limit - n);
                self.bytes.extend_from_slice(&b[..take]);
                n += take;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn ten_messages() -> Outbox {
        let mut out = Outbox::new(HeaderMode::Mini);
        for i in 0..10u8 {
            out.push_raw(100 + u16::from(i), vec![i; usize::from(i)]);
        }
        out
    }

    #[test]
    fn outbox_sends_many_messages_in_one_write() {
        let expected = ten_messages().take_bytes();
        let mut out = ten_messages();
        let mut sink = Vectored {
            bytes: Vec::new(),
            calls: 0,
            limit: usize::MAX,
        };
        assert!(out.flush_to(&mut sink).unwrap());
        assert_eq!(sink.calls, 1, "ten headers and nine bodies in one call");
        assert_eq!(sink.bytes, expected);

        // Short writes that end inside headers and bodies lose nothing.
        let mut out = ten_messages();
        let mut sink = Vectored {
            bytes: Vec::new(),
            calls: 0,
            limit: 7,
        };
        assert!(out.flush_to(&mut sink).unwrap());
        assert_eq!(sink.bytes, expected);
        assert_eq!(sink.calls, expected.len().div_ceil(7));
        assert!(out.is_empty());
    }

    #[test]
    fn full_headers_carry_serials() {
        let mut out = Outbox::new(HeaderMode::Full);
        out.push_raw(7, vec![1]);
        out.push_raw(8, vec![]);
        let bytes = out.take_bytes();
        assert_eq!(&bytes[..8], &1u64.to_le_bytes());
        assert_eq!(&bytes[19..27], &2u64.to_le_bytes());
    }

    #[test]
    fn ack_window_throttles() {
        let mut out = Outbox::new(HeaderMode::Mini);
        let mut ack = AckWindow::start(&mut out);
        for _ in 0..39 {
            assert!(ack.may_send(&out));
            out.push_raw(102, vec![]);
        }
        assert!(ack.may_send(&out));
        out.push_raw(102, vec![]);
        assert!(!ack.may_send(&out));
        // An ACK before ACK_SYNC does not count.
        ack.on_message(&BaseMessage::Ack);
        assert!(!ack.may_send(&out));
        ack.on_message(&BaseMessage::AckSync { generation: 1 });
        ack.on_message(&BaseMessage::Ack);
        assert!(ack.may_send(&out));
    }

    #[test]
    fn base_messages() {
        assert_eq!(
            BaseMessage::decode(1, &[1, 0, 0, 0]),
            Ok(Some(BaseMessage::AckSync { generation: 1 }))
        );
        assert_eq!(BaseMessage::decode(2, &[]), Ok(Some(BaseMessage::Ack)));
        let mut pong = vec![9, 0, 0, 0];
        pong.extend_from_slice(&77u64.to_le_bytes());
        assert_eq!(
            BaseMessage::decode(3, &pong),
            Ok(Some(BaseMessage::Pong {
                id: 9,
                timestamp: 77
            }))
        );
        assert!(BaseMessage::decode(3, &pong[..11]).is_err());
        assert_eq!(BaseMessage::decode(101, &[]), Ok(None));
        let notify = Notify {
            timestamp: 1,
            severity: 1,
            visibility: 2,
            what: 0,
            message: "hi".into(),
        };
        let body = notify.body();
        assert_eq!(body.len(), 24 + 2 + 1);
        assert_eq!(&body[20..], &[2, 0, 0, 0, b'h', b'i', 0]);
        assert_eq!(
            Ping {
                id: 1,
                timestamp: 2,
                payload: 0,
            }
            .body(),
            [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
        );
        let large = Ping {
            id: 1,
            timestamp: 2,
            payload: 1000,
        }
        .body();
        assert_eq!(large.len(), 12 + 1000);
        assert!(large[12..].iter().all(|b| *b == 0));
    }
}
