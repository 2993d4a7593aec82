//! The guest agent (VDIPort): spice-vdagent in the guest, reached through
//! a virtio-serial port, talking to the client through the main channel
//! (docs/spice-agent.md).
//!
//! The [`Agent`] is the server's side of that port, shared by the event
//! loop (which services the port when the device reports a change) and
//! the current session's main channel (which carries the client's half).
//! - Guest to client: the port's byte stream is cut into chunks
//!   (`VDIChunkHeader`); chunks for the client are cut into pieces of at
//!   most 2048 bytes, checked by the [`filter`], and sent as `AGENT_DATA`
//!   while the client has given tokens. At most [`CLIENT_QUEUE`] pieces
//!   wait; then the port is not read and the guest's writes block.
//! - Client to guest: each `AGENT_DATA` (at most 2048 bytes, one token of
//!   the client's window of 10) is checked and written to the port as one
//!   chunk; its token is paid back once the guest took it (in batches of
//!   5 while messages stream, at once when none waits). A client that
//!   sends without tokens, oversized data or a broken message stream is
//!   disconnected; discarded messages (copy and paste or file transfer
//!   disabled, types that do not go that way) are logged and paid back.
//! - The server's own messages: the client mouse state (when the agent
//!   carries client mouse mode) and "client disconnected".
//! - A monitors config from the client (it comes through the agent
//!   channel) goes to the display device's client monitors config, as
//!   libspice gives it to QXL; to the agent only when the guest's display
//!   driver does not take those (libspice's rule, so that the two do not
//!   both resize the guest).
//!
//! Nothing here grows without bound: the client's window, the five pieces
//! for the client, one mouse state, one monitors config of at most
//! [`MAX_MONITORS_CONFIG`] bytes.

pub mod filter;
pub mod mouse;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;

use zerocopy::{FromBytes, IntoBytes};

use filter::{Direction, Filter, FilterError, Piece, Policy, Verdict};
use wire::{kind, ChunkHeader, MouseState, CHUNK_HEADER_SIZE, MAX_DATA_SIZE, MESSAGE_HEADER_SIZE};

/// The client's window of `AGENT_DATA` messages (libspice's
/// `REDS_AGENT_WINDOW_SIZE`), given in `MAIN_INIT`.
pub const CLIENT_WINDOW: u32 = 10;
/// Finished client messages are paid back in batches of this many.
pub const TOKEN_BATCH: u32 = 5;
/// Pieces for the client waiting for its tokens before the port is left
/// unread.
pub const CLIENT_QUEUE: usize = 5;
/// Bytes the agent's port is read for in one service (the rest waits for
/// the next pass of the loop, so a flooding guest cannot hold it).
const READ_PER_SERVICE: usize = 256 << 10;
/// Bytes read from the port ahead of parsing.
const READ_AHEAD: usize = 8 << 10;
/// Agent state changes waiting for the client at most.
const MAX_STATE_CHANGES: usize = 8;
/// Mouse states waiting for the agent.
const MOUSE_QUEUE: usize = 32;
/// Send tokens a client may hold.
const MAX_SEND_TOKENS: u32 = 1 << 16;
/// Bytes of a client monitors config message (header, count and flags,
/// 256 heads and their physical sizes), libspice's bound.
pub const MAX_MONITORS_CONFIG: usize = MESSAGE_HEADER_SIZE
    + wire::MONITORS_CONFIG_HEADER
    + wire::MAX_MONITORS * (size_of::<wire::MonConfig>() + 4);

/// The guest's end of the agent port, as the server uses it.
pub trait AgentPort: Send + Sync {
    /// Whether a guest program (the agent) has the port open.
    fn connected(&self) -> bool;
    /// Moves up to `buf.len()` bytes the agent wrote into `buf`; how many.
    fn read(&self, buf: &mut [u8]) -> usize;
    /// Offers bytes to the agent; how many it took (0: its buffers are full).
    fn write(&self, data: &[u8]) -> usize;
}

/// A client monitor: x, y, width, height.
pub type Head = (i32, i32, u32, u32);

/// Where the client's monitor layout goes besides the agent (QXL's client
/// monitors config).
pub trait ClientMonitors: Send + Sync {
    /// Passes one (x, y, width, height) per head, at most 16 (a turned-off
    /// one with width and height 0); whether the guest's display driver takes such layouts (then the
    /// agent is not told).
    fn client_monitors(&self, heads: &[Head]) -> bool;
}

/// What `--spice` says about the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentOptions {
    /// The agent port exists (`agent=on`).
    pub enabled: bool,
    /// Client mouse mode may go through the agent (`agent-mouse=on`).
    pub mouse: bool,
    pub copy_paste: bool,
    pub file_transfer: bool,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            enabled: true,
            mouse: true,
            copy_paste: true,
            file_transfer: true,
        }
    }
}

/// The agent's port and where monitor layouts go.
#[derive(Clone)]
pub struct AgentDevice {
    pub port: Arc<dyn AgentPort>,
    pub monitors: Option<Arc<dyn ClientMonitors>>,
}

/// What the main channel sends its client for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToClient {
    Connected,
    Disconnected,
    Data(Vec<u8>),
    /// The client may send this many more messages.
    Tokens(u32),
}

/// Why a client's agent traffic cuts it off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("agent data of {0} bytes, over 2048")]
    TooLarge(usize),
    #[error("agent data without a token")]
    NoToken,
    #[error("agent monitors config over {MAX_MONITORS_CONFIG} bytes")]
    MonitorsConfigTooLarge,
    #[error(transparent)]
    Stream(#[from] FilterError),
}

/// What the control socket shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStatus {
    pub connected: bool,
    /// The capability words the agent announced.
    pub caps: Vec<u32>,
    pub messages_from_client: u64,
    pub pieces_to_client: u64,
    pub discarded: u64,
    /// Bytes waiting for the agent to take them.
    pub waiting_for_agent: usize,
}

/// A chunk on its way to the agent.
struct Outgoing {
    bytes: Vec<u8>,
    written: usize,
    from_client: bool,
    /// A client's monitors config (all its chunks): only the latest one
    /// not yet begun is kept.
    monitors: bool,
}

/// The current session's client, as far as the agent goes.
struct Client {
    /// Its session (a main channel of an older session is ignored).
    session: u32,
    /// It sent AGENT_START since the agent connected.
    started: bool,
    /// `AGENT_DATA` messages we may send it.
    send_tokens: u32,
    /// Messages it may send us.
    window: u32,
    /// Its messages done with and not yet paid back.
    unpaid: u32,
    filter: Filter,
    /// The client's current message began while the agent listened: its
    /// pieces go to the agent (else they are dropped, so that no chunk
    /// without a header reaches a new agent).
    forwarding: bool,
    /// The client's current message began after its AGENT_START (a monitors
    /// config counts then, with or without an agent).
    after_start: bool,
    out: VecDeque<ToClient>,
    /// Pieces in `out`.
    pieces: usize,
}

impl Client {
    /// Queues AGENT_CONNECTED or _DISCONNECTED; of a guest that opens and
    /// closes the port faster than the client reads, the oldest pairs are
    /// dropped (the client's view ends the same).
    fn push_state(&mut self, state: ToClient) {
        let is_state = |m: &ToClient| matches!(m, ToClient::Connected | ToClient::Disconnected);
        if self.out.iter().filter(|m| is_state(m)).count() >= MAX_STATE_CHANGES {
            for _ in 0..2 {
                if let Some(at) = self.out.iter().position(is_state) {
                    self.out.remove(at);
                }
            }
        }
        self.out.push_back(state);
    }

    fn new(session: u32) -> Self {
        Client {
            session,
            started: false,
            send_tokens: 0,
            window: CLIENT_WINDOW,
            unpaid: 0,
            filter: Filter::new(Direction::ClientToAgent),
            forwarding: false,
            after_start: false,
            out: VecDeque::new(),
            pieces: 0,
        }
    }
}

/// The server's side of the agent port.
pub struct Agent {
    device: AgentDevice,
    options: AgentOptions,
    attached: bool,
    /// The agent broke the protocol: ignored until it closes the port.
    broken: bool,
    caps: Vec<u32>,
    inbound: VecDeque<u8>,
    /// Body bytes of the current chunk still to come, and its port.
    chunk_left: u32,
    chunk_port: u32,
    from_agent: Filter,
    /// The agent's current message goes to the client (it started while
    /// the client listened).
    message_for_client: bool,
    client: Option<Client>,
    to_guest: VecDeque<Outgoing>,
    /// Mouse states for the agent: positions with the same buttons are
    /// merged, button changes kept (at most [`MOUSE_QUEUE`]).
    mouse: VecDeque<MouseState>,
    monitors_config: Vec<u8>,
    status: AgentStatus,
    warnings: u64,
    /// A service stopped at its read budget: the port has more.
    more_to_read: bool,
}

impl Agent {
    pub fn new(device: AgentDevice, options: AgentOptions) -> Self {
        Agent {
            device,
            options,
            attached: false,
            broken: false,
            caps: Vec::new(),
            inbound: VecDeque::new(),
            chunk_left: 0,
            chunk_port: 0,
            from_agent: Filter::new(Direction::AgentToClient),
            message_for_client: false,
            client: None,
            to_guest: VecDeque::new(),
            mouse: VecDeque::new(),
            monitors_config: Vec::new(),
            status: AgentStatus::default(),
            warnings: 0,
            more_to_read: false,
        }
    }

    fn policy(&self) -> Policy {
        Policy {
            copy_paste: self.options.copy_paste,
            file_transfer: self.options.file_transfer,
        }
    }

    /// Whether the agent is there (and speaks the protocol).
    pub fn attached(&self) -> bool {
        self.attached && !self.broken
    }

    /// Whether client mouse mode can go through the agent.
    pub fn carries_mouse(&self) -> bool {
        self.attached() && self.options.mouse
    }

    pub fn status(&self) -> AgentStatus {
        AgentStatus {
            connected: self.attached(),
            caps: self.caps.clone(),
            waiting_for_agent: self
                .to_guest
                .iter()
                .map(|o| o.bytes.len() - o.written)
                .sum(),
            ..self.status.clone()
        }
    }

    fn warn(&mut self, what: std::fmt::Arguments<'_>) {
        self.warnings += 1;
        if self.warnings <= 8 || self.warnings.is_power_of_two() {
            tracing::warn!("spice agent: {what} (#{})", self.warnings);
        }
    }

    /// Looks at the port: the agent came or went, wrote, or took data.
    /// Whether it came or went.
    pub fn service(&mut self) -> bool {
        let connected = self.device.port.connected();
        let changed = connected != self.attached;
        if changed {
            if connected {
                self.attach();
            } else {
                self.detach();
            }
        }
        if self.attached {
            self.write_to_guest();
            self.read_from_guest();
        }
        changed
    }

    fn attach(&mut self) {
        tracing::info!("spice agent: connected");
        self.attached = true;
        self.broken = false;
        self.reset_stream();
        if let Some(client) = &mut self.client {
            client.started = false;
            client.push_state(ToClient::Connected);
        }
    }

    fn detach(&mut self) {
        tracing::info!("spice agent: disconnected");
        let was_broken = self.broken;
        self.attached = false;
        self.broken = false;
        self.caps.clear();
        self.reset_stream();
        // What the agent wrote before it closed belongs to a stream that
        // has ended (bounded: the guest's side is closed).
        let mut sink = vec![0u8; READ_AHEAD];
        while self.device.port.read(&mut sink) > 0 {}
        let dropped = self.to_guest.iter().filter(|o| o.from_client).count() as u32;
        self.to_guest.clear();
        self.mouse.clear();
        if let Some(client) = &mut self.client {
            client.unpaid += dropped;
            client.started = false;
            client.forwarding = false;
            client.out.retain(|m| !matches!(m, ToClient::Data(_)));
            client.pieces = 0;
            if !was_broken {
                client.push_state(ToClient::Disconnected);
            }
        }
    }

    fn reset_stream(&mut self) {
        self.inbound.clear();
        self.chunk_left = 0;
        self.from_agent.reset();
        self.message_for_client = false;
    }

    /// The agent broke the protocol: tell the client it is gone and ignore
    /// it until it closes and reopens the port.
    fn cut_off(&mut self, why: std::fmt::Arguments<'_>) {
        self.warn(format_args!("{why}; ignored until it reopens the port"));
        self.detach();
        self.attached = true;
        self.broken = true;
    }

    /// Writes waiting chunks while the agent takes them.
    fn write_to_guest(&mut self) {
        if self.broken {
            self.to_guest.clear();
            return;
        }
        loop {
            if self.to_guest.is_empty() {
                self.queue_mouse_state();
            }
            let Some(front) = self.to_guest.front_mut() else {
                return;
            };
            front.written += self.device.port.write(&front.bytes[front.written..]);
            if front.written < front.bytes.len() {
                return;
            }
            let done = self.to_guest.pop_front().expect("front exists");
            if done.from_client {
                if let Some(client) = &mut self.client {
                    client.unpaid += 1;
                }
            }
        }
    }

    fn queue_mouse_state(&mut self) {
        if let Some(state) = self.mouse.pop_front() {
            self.to_guest.push_back(Outgoing {
                bytes: wire::server_message(kind::MOUSE_STATE, state.as_bytes()),
                written: 0,
                from_client: false,
                monitors: false,
            });
        }
    }

    /// Whether a piece for the client may be read now (or, with no client
    /// listening, dropped).
    fn room_for_client(&self) -> bool {
        match &self.client {
            Some(c) if c.started => c.pieces < CLIENT_QUEUE,
            _ => true,
        }
    }

    /// Reads the agent's chunks while the client has room for them.
    fn read_from_guest(&mut self) {
        if self.broken {
            self.drain_port();
            return;
        }
        let mut budget = READ_PER_SERVICE;
        self.more_to_read = false;
        while self.attached() && self.room_for_client() {
            if budget == 0 {
                self.more_to_read = true;
                return;
            }
            budget = budget.saturating_sub(self.fill_inbound());
            if self.chunk_left == 0 {
                if !self.start_chunk() {
                    return;
                }
                continue;
            }
            let want = (self.chunk_left as usize).min(MAX_DATA_SIZE);
            if self.inbound.len() < want {
                return;
            }
            let piece: Vec<u8> = self.inbound.drain(..want).collect();
            self.chunk_left -= want as u32;
            if self.chunk_port == wire::CLIENT_PORT {
                self.piece_from_agent(piece);
            }
        }
    }

    /// Reads ahead from the port; how many bytes.
    fn fill_inbound(&mut self) -> usize {
        let room = READ_AHEAD.saturating_sub(self.inbound.len());
        if room == 0 {
            return 0;
        }
        let mut buf = vec![0u8; room];
        let n = self.device.port.read(&mut buf);
        self.inbound.extend(&buf[..n]);
        n
    }

    /// Reads and drops what waits on the port, at most a service's worth;
    /// the device reports more as it comes.
    fn drain_port(&mut self) {
        let mut sink = vec![0u8; READ_AHEAD];
        let mut budget = READ_PER_SERVICE;
        self.more_to_read = false;
        while budget > 0 {
            let n = self.device.port.read(&mut sink);
            if n == 0 {
                return;
            }
            budget = budget.saturating_sub(n);
        }
        self.more_to_read = true;
    }

    /// Whether the last service left input on the port (then the loop
    /// services the agent again on its next pass).
    pub fn more_to_read(&self) -> bool {
        self.more_to_read
    }

    /// Reads a chunk header; whether one was there.
    fn start_chunk(&mut self) -> bool {
        if self.inbound.len() < CHUNK_HEADER_SIZE {
            return false;
        }
        let bytes: Vec<u8> = self.inbound.drain(..CHUNK_HEADER_SIZE).collect();
        let header = ChunkHeader::read_from_bytes(&bytes).expect("sizes match");
        let port = header.port.get();
        if port != wire::CLIENT_PORT && port != wire::SERVER_PORT {
            self.cut_off(format_args!("the agent wrote a chunk for port {port}"));
            return false;
        }
        self.chunk_port = port;
        self.chunk_left = header.size.get();
        true
    }

    fn piece_from_agent(&mut self, mut piece: Vec<u8>) {
        let policy = self.policy();
        let checked = match self.from_agent.process(&piece, policy) {
            Ok(p) => p,
            Err(e) => return self.cut_off(format_args!("from the agent: {e}")),
        };
        let listening = self.client.as_ref().is_some_and(|c| c.started);
        if checked.first {
            tracing::debug!("spice agent: agent message type {}", checked.kind);
            self.message_for_client = listening;
            if checked.kind == kind::ANNOUNCE_CAPABILITIES {
                self.announced(&mut piece);
            }
        }
        match (checked.verdict, listening && self.message_for_client) {
            (Verdict::Pass, true) => {
                let client = self.client.as_mut().expect("listening");
                client.out.push_back(ToClient::Data(piece));
                client.pieces += 1;
            }
            (Verdict::Discard(why), _) if checked.first => {
                self.status.discarded += 1;
                self.warn(format_args!(
                    "agent message type {} dropped: {why}",
                    checked.kind
                ));
            }
            _ => {}
        }
    }

    /// The agent's capabilities: noted, and edited as `--spice` disables
    /// things, so the client does not offer them.
    fn announced(&mut self, piece: &mut [u8]) {
        let caps_at = MESSAGE_HEADER_SIZE + 4;
        let words = piece.get(caps_at..).unwrap_or(&[]);
        self.caps = words
            .chunks_exact(4)
            .take(8)
            .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")))
            .collect();
        let Some(first) = piece.get_mut(caps_at..caps_at + 4) else {
            return;
        };
        let mut word = u32::from_le_bytes((&*first).try_into().expect("4 bytes"));
        if !self.options.copy_paste {
            for bit in [
                wire::cap::CLIPBOARD,
                wire::cap::CLIPBOARD_BY_DEMAND,
                wire::cap::CLIPBOARD_SELECTION,
            ] {
                word &= !(1 << bit);
            }
        }
        if !self.options.file_transfer {
            word |= 1 << wire::cap::FILE_XFER_DISABLED;
        }
        first.copy_from_slice(&word.to_le_bytes());
    }

    /// A session's main channel opened; whether the agent is there (for
    /// `MAIN_INIT`).
    pub fn client_arrived(&mut self, session: u32) -> bool {
        if let Some(old) = self.client.as_ref().map(|c| c.session) {
            self.client_gone(old);
        }
        self.client = Some(Client::new(session));
        self.attached()
    }

    /// The current client, if `session` is its session.
    fn client_of(&mut self, session: u32) -> Option<&mut Client> {
        self.client.as_mut().filter(|c| c.session == session)
    }

    /// `AGENT_START`: the client listens and gives `tokens`.
    pub fn client_start(&mut self, session: u32, tokens: u32) {
        let attached = self.attached();
        let Some(client) = self.client_of(session).filter(|_| attached) else {
            return;
        };
        client.started = true;
        client.send_tokens = tokens.min(MAX_SEND_TOKENS);
    }

    /// `AGENT_TOKEN` from the client.
    pub fn client_tokens(&mut self, session: u32, tokens: u32) {
        if let Some(client) = self.client_of(session) {
            client.send_tokens = client
                .send_tokens
                .saturating_add(tokens)
                .min(MAX_SEND_TOKENS);
        }
        self.read_from_guest();
    }

    /// `AGENT_DATA` from the client.
    pub fn client_data(&mut self, session: u32, data: &[u8]) -> Result<(), AgentError> {
        let policy = self.policy();
        let attached = self.attached();
        let Some(client) = self.client.as_mut().filter(|c| c.session == session) else {
            return Ok(());
        };
        if data.len() > MAX_DATA_SIZE {
            return Err(AgentError::TooLarge(data.len()));
        }
        if client.window == 0 {
            return Err(AgentError::NoToken);
        }
        client.window -= 1;
        let piece = client.filter.process(data, policy)?;
        self.status.messages_from_client += u64::from(piece.first);
        if piece.first {
            tracing::debug!("spice agent: client message type {}", piece.kind);
            client.forwarding = attached && client.started;
            client.after_start = client.started;
        }
        if piece.kind == kind::MONITORS_CONFIG && piece.verdict == Verdict::Pass {
            client.unpaid += 1;
            return match client.after_start {
                true => self.monitors_piece(piece, data),
                false => Ok(()),
            };
        }
        if !client.forwarding {
            client.unpaid += 1;
            return Ok(());
        }
        match piece.verdict {
            Verdict::Pass => self.to_guest.push_back(Outgoing {
                bytes: wire::client_chunk(data),
                written: 0,
                from_client: true,
                monitors: false,
            }),
            Verdict::Discard(why) => {
                client.unpaid += 1;
                if piece.first {
                    self.status.discarded += 1;
                    self.warn(format_args!(
                        "client message type {} dropped: {why}",
                        piece.kind
                    ));
                }
            }
        }
        self.write_to_guest();
        Ok(())
    }

    /// Collects a client monitors config. A whole one goes to the display
    /// device; to the agent only when the guest's display driver does not
    /// take it (libspice's rule: one of the two resizes the guest, not
    /// both). Its pieces are paid back at once: the message is bounded.
    fn monitors_piece(&mut self, piece: Piece, data: &[u8]) -> Result<(), AgentError> {
        if piece.first {
            self.monitors_config.clear();
        }
        if self.monitors_config.len() + data.len() > MAX_MONITORS_CONFIG {
            self.monitors_config.clear();
            return Err(AgentError::MonitorsConfigTooLarge);
        }
        self.monitors_config.extend_from_slice(data);
        if !piece.last {
            return Ok(());
        }
        let message = std::mem::take(&mut self.monitors_config);
        let heads = parse_monitors(message.get(MESSAGE_HEADER_SIZE..).unwrap_or(&[]));
        let display_takes = (self.device.monitors.as_ref())
            .is_some_and(|monitors| monitors.client_monitors(&heads));
        tracing::info!(
            "spice agent: the client asks for monitors {heads:?}; for the {}",
            if display_takes {
                "display driver"
            } else {
                "agent"
            }
        );
        let forwarding = self.client.as_ref().is_some_and(|c| c.forwarding);
        if !display_takes && forwarding {
            // A newer layout replaces one the agent has not begun to take.
            self.to_guest.retain(|o| !o.monitors || o.written > 0);
            let bytes = message
                .chunks(MAX_DATA_SIZE)
                .flat_map(wire::client_chunk)
                .collect();
            self.to_guest.push_back(Outgoing {
                bytes,
                written: 0,
                from_client: false,
                monitors: true,
            });
            self.write_to_guest();
        }
        Ok(())
    }

    /// What the main channel should send its client now: state changes,
    /// returned tokens, and pieces the client has tokens for.
    pub fn take_for_client(&mut self, session: u32) -> Vec<ToClient> {
        let Some(client) = self.client.as_mut().filter(|c| c.session == session) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // In batches while the client's messages stream in; all of them
        // once none waits for the agent, so that a client whose count
        // differs from ours is never left without tokens.
        let idle = !self.to_guest.iter().any(|o| o.from_client);
        if client.unpaid >= TOKEN_BATCH || (idle && client.unpaid > 0) {
            client.window += client.unpaid;
            out.push(ToClient::Tokens(client.unpaid));
            client.unpaid = 0;
        }
        while let Some(front) = client.out.front() {
            if matches!(front, ToClient::Data(_)) {
                if client.send_tokens == 0 {
                    break;
                }
                client.send_tokens -= 1;
                client.pieces -= 1;
                self.status.pieces_to_client += 1;
            }
            out.push(client.out.pop_front().expect("front exists"));
        }
        if !out.is_empty() {
            self.read_from_guest();
        }
        out
    }

    /// Whether [`Self::take_for_client`] has something.
    pub fn has_output_for_client(&self, session: u32) -> bool {
        self.client.as_ref().is_some_and(|c| {
            c.session == session
                && (c.unpaid >= TOKEN_BATCH
                    || (c.unpaid > 0 && !self.to_guest.iter().any(|o| o.from_client))
                    || c.out
                        .front()
                        .is_some_and(|m| !matches!(m, ToClient::Data(_)) || c.send_tokens > 0))
        })
    }

    /// The session's main channel closed: the agent hears the client left.
    pub fn client_gone(&mut self, session: u32) {
        if self.client.as_ref().is_none_or(|c| c.session != session) {
            return;
        }
        let Some(client) = self.client.take() else {
            return;
        };
        if !self.attached() || !client.started {
            return;
        }
        // Chunks not yet begun are dropped (the agent forgets the client's
        // half-sent message when told it left); one begun is finished.
        self.to_guest
            .retain(|o| !(o.from_client || o.monitors) || o.written > 0);
        let bytes = wire::server_message(kind::CLIENT_DISCONNECTED, &[]);
        // One is enough while the agent does not read.
        if !self
            .to_guest
            .iter()
            .any(|o| o.written == 0 && o.bytes == bytes)
        {
            self.to_guest.push_back(Outgoing {
                bytes,
                written: 0,
                from_client: false,
                monitors: false,
            });
        }
        self.message_for_client = false;
        self.write_to_guest();
    }

    /// The client's pointer in client mouse mode, for the agent to apply.
    pub fn mouse_state(&mut self, display: u8, x: u32, y: u32, buttons: u32) {
        if !self.carries_mouse() {
            return;
        }
        let state = MouseState {
            x: x.into(),
            y: y.into(),
            buttons: buttons.into(),
            display_id: display,
        };
        let full = self.mouse.len() >= MOUSE_QUEUE;
        match self.mouse.back_mut() {
            Some(last) if last.buttons == state.buttons || full => *last = state,
            _ => self.mouse.push_back(state),
        }
        self.write_to_guest();
    }
}

/// The heads of a `VDAgentMonitorsConfig` body, at most 16 (what QXL's
/// client monitors config holds), in the client's order (the order is the
/// guest's output numbering): a turned-off head (a size of 0) stays as
/// width and height 0, except at the end, where it is left out.
fn parse_monitors(body: &[u8]) -> Vec<Head> {
    let count = body
        .get(..4)
        .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let heads = body.get(wire::MONITORS_CONFIG_HEADER..).unwrap_or(&[]);
    let mut heads: Vec<Head> = heads
        .chunks_exact(size_of::<wire::MonConfig>())
        .take(count.min(16) as usize)
        .filter_map(|h| wire::MonConfig::read_from_bytes(h).ok())
        .map(|m| match (m.width.get(), m.height.get()) {
            (0, _) | (_, 0) => (m.x.get(), m.y.get(), 0, 0),
            (w, h) => (m.x.get(), m.y.get(), w, h),
        })
        .collect();
    while heads.last().is_some_and(|h| h.2 == 0) {
        heads.pop();
    }
    heads
}
