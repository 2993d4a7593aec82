//! The event loop: one mio thread owns the listening sockets and every
//! client connection (non-blocking; partial reads and writes resume),
//! dispatches messages to the channels, hands them what changed (cursor
//! events, the guest's LEDs, the session's decisions), and writes output;
//! display channels encode on threads of their own (`worker`).
//!
//! The link stage and sessions are in [`sessions`]: a main-channel link
//! starts a session (random non-zero id); other channels must quote that
//! id. A new main link ends the previous session (its client is told and
//! disconnected). When a session's main channel closes, its other channels
//! close too. The VM never notices.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::thread_layer::{ThreadLayer, WorkerKind};
use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token, Waker};

use super::agent::mouse::AgentMouse;
use super::agent::{Agent, AgentStatus};
use super::audio::AudioHub;
use super::channel::ChannelError;
use super::codec::policy::CompressionOptions;
use super::config::MousePolicy;
use super::connection::{Connection, State, Stream, MAX_CLIENT_MESSAGE};
use super::display_feed::DisplayFeed;
use super::inputs_channel::{InputSink, KeyboardLeds};
use super::net_test::LinkEstimate;
use super::protocol::{base, channel, mouse_mode};
use super::session::{Changes, ChannelKind, Context, SentTotals, ServerContext, Session};
use super::ticket::{TicketKey, Tickets};
use super::tls::ChannelPolicy;
use super::wire::next_frame;
use super::{
    cursor_channel, display_channel, inputs_channel, main_channel, playback_channel, record_channel,
};
use guard::{LinkGuard, Linking, Source};

/// Every channel kind the server offers: main first, then the others in
/// the order clients should open them. A new channel is one line here.
pub const CHANNELS: &[ChannelKind] = &[
    main_channel::KIND,
    display_channel::KIND,
    inputs_channel::KIND,
    cursor_channel::KIND,
    playback_channel::KIND,
    record_channel::KIND,
];

pub mod guard;
mod sessions;

pub const WAKER: Token = Token(0);
const TCP_LISTENER: Token = Token(1);
const UNIX_LISTENER: Token = Token(2);
const TLS_LISTENER: Token = Token(3);
const FIRST_CONNECTION: usize = 16;

/// Linked connections at most; more are refused at accept. (Connections
/// still in the link stage have caps of their own, see [`guard`].)
pub const MAX_CONNECTIONS: usize = 64;
/// Replies queued for a client that does not read, before we stop reading
/// its requests.
pub const MAX_REPLY_BACKLOG: usize = 64 * 1024;
/// The link stage must finish within this time.
pub const LINK_TIMEOUT: Duration = Duration::from_secs(10);
/// The event loop wakes at least this often (timeouts, stream ends).
const IDLE_POLL: Duration = Duration::from_millis(250);

/// State the handle and the loop share.
pub struct Shared {
    pub stop: AtomicBool,
    pub leds: Mutex<Option<KeyboardLeds>>,
    /// Whether an absolute pointer is available, when that changed.
    pub client_mouse: Mutex<Option<bool>>,
    /// What the display clients have left to receive, after each loop pass.
    pub status: Mutex<LoopStatus>,
    pub status_changed: std::sync::Condvar,
    /// Threads waiting on `status_changed` (the loop notifies only then).
    pub status_waiters: std::sync::atomic::AtomicUsize,
    /// The compression options display channels opened from now on get.
    pub compression: Mutex<CompressionOptions>,
    /// The agent's port changed since the loop last looked.
    pub agent_changed: AtomicBool,
    /// The agent's state, published by the loop.
    pub agent_status: Mutex<Option<AgentStatus>>,
    /// Who may link (`set-password`, `expire-password` change it).
    pub tickets: Mutex<Tickets>,
    /// End the current session at the next pass (the password changed).
    pub end_session: AtomicBool,
    /// `set-password` may set none (the server is local only, or was
    /// started with `disable-ticketing`).
    pub may_drop_password: bool,
}

/// The event loop's view of its display clients, published after every
/// pass (for `saffron replay --pace client`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LoopStatus {
    /// Passes of the loop so far.
    pub passes: u64,
    /// Open display channels.
    pub display_clients: usize,
    /// Some display channel has damage, queued messages or unwritten bytes
    /// (including when it waits for the client's ACKs).
    pub display_busy: bool,
    /// Sent so far, by open and closed display channels.
    pub sent: SentTotals,
    /// What the current session's network test found (`None` without a
    /// session, or until its test is over).
    pub client_link: Option<LinkEstimate>,
}

/// Everything the loop needs.
pub struct LoopSetup {
    pub poll: Poll,
    pub waker: Arc<Waker>,
    pub tcp: Option<TcpListener>,
    pub unix: Option<UnixListener>,
    /// The TLS listener and its configuration.
    pub tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    /// Which channels must (or must not) use TLS.
    pub channel_policy: ChannelPolicy,
    pub key: TicketKey,
    pub displays: Vec<DisplayFeed>,
    pub input: Arc<dyn InputSink>,
    pub agent: Option<Arc<Mutex<Agent>>>,
    /// The sound card's audio.
    pub audio: Option<Arc<AudioHub>>,
    /// Sound as Opus for clients that take it.
    pub playback_compression: bool,
    pub client_mouse_allowed: bool,
    pub mouse: MousePolicy,
    pub shared: Arc<Shared>,
}

pub struct EventLoop {
    setup: LoopSetup,
    /// What channels see of the server.
    server: ServerContext,
    connections: HashMap<Token, Connection>,
    next_token: usize,
    session: Option<Session>,
    /// The mouse mode the input sink was last told.
    sink_mouse_mode: u16,
    /// What closed display channels sent.
    closed_sent: SentTotals,
    /// The guest's tablet driver runs (client mouse mode through it).
    tablet: Arc<AtomicBool>,
    /// Wrong passwords per source.
    guard: LinkGuard,
}

fn log_close(conn: &Connection, why: &dyn std::fmt::Display) {
    tracing::warn!(
        "spice: {} ({} channel): {why}; disconnecting",
        conn.peer,
        conn.channel_name()
    );
}

impl EventLoop {
    pub fn new(mut setup: LoopSetup) -> io::Result<EventLoop> {
        if let Some(l) = setup.tcp.as_mut() {
            setup
                .poll
                .registry()
                .register(l, TCP_LISTENER, Interest::READABLE)?;
        }
        if let Some(l) = setup.unix.as_mut() {
            setup
                .poll
                .registry()
                .register(l, UNIX_LISTENER, Interest::READABLE)?;
        }
        if let Some((l, _)) = setup.tls.as_mut() {
            setup
                .poll
                .registry()
                .register(l, TLS_LISTENER, Interest::READABLE)?;
        }
        let tablet = Arc::new(AtomicBool::new(setup.client_mouse_allowed));
        let input: Arc<dyn InputSink> = match &setup.agent {
            Some(agent) => Arc::new(AgentMouse::new(
                setup.input.clone(),
                agent.clone(),
                tablet.clone(),
            )),
            None => setup.input.clone(),
        };
        let mut server = ServerContext {
            displays: setup.displays.iter().map(|f| f.display().clone()).collect(),
            input,
            agent: setup.agent.clone(),
            audio: setup.audio.clone(),
            client_mouse_allowed: setup.client_mouse_allowed,
            mouse: setup.mouse,
            compression: CompressionOptions::default(),
            guest_leds: KeyboardLeds::default(),
            epoch: Instant::now(),
            waker: setup.waker.clone(),
            channels: Vec::new(),
        };
        server.channels = sessions::channel_list(&server);
        if let Some(hub) = &server.audio {
            hub.attach(
                server.waker.clone(),
                server.clock(),
                setup.playback_compression,
            );
        }
        Ok(EventLoop {
            server,
            setup,
            connections: HashMap::new(),
            next_token: FIRST_CONNECTION,
            session: None,
            sink_mouse_mode: mouse_mode::SERVER,
            closed_sent: SentTotals::default(),
            tablet,
            guard: LinkGuard::default(),
        })
    }

    /// The earliest time a channel needs a pump, or a held answer is due,
    /// without an event.
    fn next_deadline(&self) -> Option<Instant> {
        self.connections
            .values()
            .filter_map(|conn| match &conn.state {
                State::Open { channel, .. } => channel.next_deadline(),
                State::Linking { .. } => conn.hold_until,
            })
            .min()
    }

    fn now_ns(&self) -> u64 {
        self.server.epoch.elapsed().as_nanos() as u64
    }

    /// Runs until the shared stop flag is set.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut backlog: Vec<Token> = Vec::new();
        let mut layer = ThreadLayer::new(WorkerKind::Server);
        while !self.setup.shared.stop.load(Ordering::Relaxed) {
            layer.before_work();
            let timeout = if backlog.is_empty() {
                self.next_deadline()
                    .map_or(IDLE_POLL, |t| t.saturating_duration_since(Instant::now()))
                    .min(IDLE_POLL)
            } else {
                Duration::from_millis(5)
            };
            if let Err(e) = self.setup.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("spice: event loop failed: {e}");
                    break;
                }
            }
            let mut readable: Vec<Token> = std::mem::take(&mut backlog);
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    TCP_LISTENER | UNIX_LISTENER | TLS_LISTENER => self.accept(event.token()),
                    token if event.is_readable() || event.is_read_closed() || event.is_error() => {
                        readable.push(token)
                    }
                    _ => {}
                }
            }
            readable.sort_unstable();
            readable.dedup();
            for token in readable {
                if self.service_input(token) {
                    backlog.push(token);
                }
            }
            self.hand_out_changes();
            self.pump_and_flush();
            self.expire();
            self.enforce_tickets();
            self.reap();
            self.publish_status();
        }
        for conn in self.connections.values_mut() {
            conn.stream.shutdown();
        }
    }

    /// The next connection on a listener: its stream, peer name and source.
    fn accept_one(&self, listener: Token) -> io::Result<(Stream, String, Source)> {
        match (listener, &self.setup.tcp, &self.setup.unix, &self.setup.tls) {
            (TCP_LISTENER, Some(l), _, _) => l.accept().map(|(s, a)| {
                let _ = s.set_nodelay(true);
                (Stream::Tcp(s), a.to_string(), Some(a.ip()))
            }),
            (UNIX_LISTENER, _, Some(l), _) => l
                .accept()
                .map(|(s, _)| (Stream::Unix(s), "unix socket".to_string(), None)),
            (TLS_LISTENER, _, _, Some((l, config))) => {
                let (s, a) = l.accept()?;
                let _ = s.set_nodelay(true);
                Ok((Stream::tls(config, s)?, format!("{a} (TLS)"), Some(a.ip())))
            }
            _ => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn accept(&mut self, listener: Token) {
        loop {
            let (mut stream, peer, source) = match self.accept_one(listener) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("spice: accept failed: {e}");
                    return;
                }
            };
            let linked = self
                .connections
                .values()
                .filter(|c| !c.is_linking())
                .count();
            if linked >= MAX_CONNECTIONS {
                tracing::warn!("spice: {peer}: too many connections, refused");
                stream.shutdown();
                continue;
            }
            self.make_room_to_link(source);
            let token = Token(self.next_token);
            self.next_token += 1;
            if let Err(e) = self.setup.poll.registry().register(
                stream.source(),
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!("spice: {peer}: cannot watch the socket: {e}");
                continue;
            }
            tracing::info!("spice: connection from {peer}");
            self.connections
                .insert(token, Connection::new(stream, peer, source, Instant::now()));
        }
    }

    /// Drops the oldest connection still in the link stage when one more
    /// from `source` would pass the caps.
    fn make_room_to_link(&mut self, source: Source) {
        let linking: Vec<Linking<Token>> = self
            .connections
            .iter()
            // Held answers to wrong passwords count too.
            .filter(|(_, c)| c.is_linking() && !c.closed)
            .map(|(token, c)| Linking {
                id: *token,
                source: c.source,
                opened: c.opened,
            })
            .collect();
        if let Some(conn) =
            guard::to_evict(source, &linking).and_then(|t| self.connections.get_mut(&t))
        {
            log_close(
                conn,
                &"too many connections in the link stage; dropping the oldest",
            );
            conn.closed = true;
        }
    }

    /// Ends the session when the password expired or was changed with
    /// `connected=disconnect`.
    fn enforce_tickets(&mut self) {
        let expired = self
            .setup
            .shared
            .tickets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expired(std::time::SystemTime::now());
        let asked = self.setup.shared.end_session.swap(false, Ordering::SeqCst);
        if let Some(session) = self
            .session
            .as_ref()
            .map(|s| s.id)
            .filter(|_| expired || asked)
        {
            self.session = None;
            let why = if expired {
                "the password expired"
            } else {
                "the password changed"
            };
            self.end_session(session, why);
        }
    }

    /// Hands what changed since the last pass to the channels: the
    /// displays' events, the guest's LEDs, whether an absolute pointer
    /// exists, and what the session's main channel decided.
    fn hand_out_changes(&mut self) {
        let shared = &self.setup.shared;
        if let Some(leds) = shared.leds.lock().unwrap_or_else(|p| p.into_inner()).take() {
            self.server.guest_leds = leds;
        }
        let client_mouse = shared
            .client_mouse
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(allowed) = client_mouse {
            self.tablet.store(allowed, Ordering::Relaxed);
        }
        let agent_mouse = self.service_agent();
        self.server.client_mouse_allowed = self.tablet.load(Ordering::Relaxed) || agent_mouse;
        let feeds: Vec<_> = self.setup.displays.iter().map(DisplayFeed::take).collect();
        let view = self.session_decisions();
        let current = self.session.as_ref().map(|s| s.id);
        for conn in self.connections.values_mut() {
            let State::Open {
                session,
                channel,
                outbox,
                ..
            } = &mut conn.state
            else {
                continue;
            };
            let changes = Changes {
                displays: &feeds,
                guest_leds: self.server.guest_leds,
                client_mouse_allowed: self.server.client_mouse_allowed,
                view: view.filter(|_| Some(*session) == current),
            };
            channel.update(&changes, outbox);
        }
    }

    /// Looks at the agent's port when it changed; whether client mouse
    /// mode can go through the agent.
    fn service_agent(&mut self) -> bool {
        let Some(agent) = &self.setup.agent else {
            return false;
        };
        let mut agent = agent.lock().unwrap_or_else(|p| p.into_inner());
        let shared = &self.setup.shared;
        if shared.agent_changed.swap(false, Ordering::SeqCst) || agent.more_to_read() {
            agent.service();
            if agent.more_to_read() {
                let _ = self.setup.waker.wake();
            }
        }
        let status = agent.status();
        let mut published = shared
            .agent_status
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if published.as_ref() != Some(&status) {
            *published = Some(status);
        }
        agent.carries_mouse()
    }

    /// Reads and handles what a connection sent. Returns true if it has
    /// more to do (buffer was full, or it is over its message rate).
    fn service_input(&mut self, token: Token) -> bool {
        let Some(conn) = self.connections.get_mut(&token) else {
            return false;
        };
        if conn.closed || conn.closing {
            return false;
        }
        let more_in_socket = match conn.fill_input() {
            Ok(more) => more,
            Err(e) => {
                log_close(conn, &format!("read failed: {e}"));
                conn.closed = true;
                return false;
            }
        };
        let mut backlog = more_in_socket;
        loop {
            let Some(conn) = self.connections.get_mut(&token) else {
                return false;
            };
            if conn.closed || conn.closing {
                return false;
            }
            match &mut conn.state {
                State::Linking { .. } => {
                    if !self.advance_link(token) {
                        break;
                    }
                }
                State::Open {
                    outbox, channel, ..
                } => {
                    // A client that sends requests but does not read the
                    // replies is not served further until it reads (the
                    // display channel's output is bounded by its own pump,
                    // and its ACKs must always get through). Its PONGs are
                    // answers, not requests, and the network test times
                    // them while its large ping is still going out.
                    let blocked =
                        outbox.queued_bytes() > MAX_REPLY_BACKLOG && !channel.bounds_own_output();
                    let mode = outbox.mode();
                    let frame = match next_frame(mode, &conn.input, MAX_CLIENT_MESSAGE) {
                        Ok(Some((header, ..))) if blocked && header.msg_type != base::PONG => {
                            backlog = true;
                            break;
                        }
                        Ok(Some((header, body, used))) => {
                            Some((header.msg_type, body.to_vec(), used))
                        }
                        Ok(None) => None,
                        Err(e) => {
                            log_close(conn, &e);
                            conn.closed = true;
                            return false;
                        }
                    };
                    let Some((msg_type, body, used)) = frame else {
                        break;
                    };
                    if !conn.take_token(Instant::now()) {
                        backlog = true;
                        break;
                    }
                    conn.input.drain(..used);
                    if let Err(e) = self.dispatch(token, msg_type, &body) {
                        if let Some(conn) = self.connections.get_mut(&token) {
                            log_close(conn, &e);
                            conn.closed = true;
                        }
                        return false;
                    }
                }
            }
        }
        let Some(conn) = self.connections.get_mut(&token) else {
            return false;
        };
        if conn.read_eof && !conn.closed {
            tracing::info!(
                "spice: {} ({}) disconnected",
                conn.peer,
                conn.channel_name()
            );
            conn.closed = true;
        }
        backlog && !conn.closed
    }

    fn dispatch(&mut self, token: Token, msg_type: u16, body: &[u8]) -> Result<(), ChannelError> {
        let now_ns = self.now_ns();
        let Some(conn) = self.connections.get_mut(&token) else {
            return Ok(());
        };
        let State::Open {
            channel, outbox, ..
        } = &mut conn.state
        else {
            return Ok(());
        };
        let mut cx = Context {
            out: outbox,
            now: Instant::now(),
            now_ns,
        };
        channel.receive(msg_type, body, &mut cx)
    }

    /// Lets channels produce output where there is room, and writes.
    fn pump_and_flush(&mut self) {
        let now_ns = self.now_ns();
        let now = Instant::now();
        for conn in self.connections.values_mut() {
            if conn.closed || conn.held(now) {
                continue;
            }
            // The hold is over: the answer goes now, within the link
            // stage's time limit like any other.
            conn.hold_until = None;
            // Pump, write, and let the channel fill the room the write made.
            for _ in 0..4 {
                if let State::Open {
                    channel, outbox, ..
                } = &mut conn.state
                {
                    channel.pump(&mut Context {
                        out: outbox,
                        now,
                        now_ns,
                    });
                }
                let before = conn.written();
                let flushed = conn.flush();
                if conn.written() != before {
                    if let State::Open { channel, .. } = &mut conn.state {
                        channel.written();
                    }
                }
                match flushed {
                    Ok(true) => {
                        if conn.closing {
                            conn.closed = true;
                        }
                    }
                    Ok(false) => break,
                    Err(e) => {
                        log_close(conn, &format!("write failed: {e}"));
                        conn.closed = true;
                        break;
                    }
                }
                let busy = matches!(&conn.state, State::Open { channel, .. } if channel.has_work());
                if !busy || conn.closed {
                    break;
                }
            }
        }
    }

    /// Closes connections that linked too slowly or never initialised.
    fn expire(&mut self) {
        let now = Instant::now();
        for conn in self.connections.values_mut() {
            let overdue = match &mut conn.state {
                State::Linking { .. } => {
                    !conn.held(now) && now.duration_since(conn.opened) > LINK_TIMEOUT
                }
                State::Open { channel, .. } => {
                    if let Some(e) = channel.failed() {
                        if !conn.closed {
                            log_close(conn, &e);
                            conn.closed = true;
                        }
                        continue;
                    }
                    channel.overdue(now)
                }
            };
            if overdue && !conn.closed {
                log_close(conn, &"timed out");
                conn.closed = true;
            }
        }
    }

    /// Drops closed connections; a closed main channel ends its session.
    fn reap(&mut self) {
        let closed: Vec<Token> = self
            .connections
            .iter()
            .filter(|(_, c)| c.closed)
            .map(|(t, _)| *t)
            .collect();
        for token in closed {
            let Some(mut conn) = self.connections.remove(&token) else {
                continue;
            };
            let _ = self.setup.poll.registry().deregister(conn.stream.source());
            conn.stream.shutdown();
            if let State::Open {
                session,
                id,
                channel,
                ..
            } = &mut conn.state
            {
                channel.closed();
                channel.add_sent(&mut self.closed_sent);
                let current = self.session.as_ref().map(|s| s.id);
                if id.0 == channel::MAIN && current == Some(*session) {
                    self.session = None;
                    let s = *session;
                    self.end_session(s, "the main channel closed");
                }
            }
        }
        if self.connections.values().any(|c| c.closed) {
            self.reap();
        }
    }
}

impl EventLoop {
    fn publish_status(&self) {
        let (mut clients, mut busy, mut sent) = (0, false, self.closed_sent);
        for conn in self.connections.values() {
            if let State::Open { channel, .. } = &conn.state {
                channel.add_sent(&mut sent);
                if channel.is_display() {
                    clients += 1;
                    busy |= channel.has_work() || conn.has_output();
                }
            }
        }
        let mut status = self
            .setup
            .shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        status.passes += 1;
        status.display_clients = clients;
        status.display_busy = busy;
        status.sent = sent;
        status.client_link = self.session.as_ref().and_then(|s| s.view.client_link);
        drop(status);
        if self.setup.shared.status_waiters.load(Ordering::SeqCst) > 0 {
            self.setup.shared.status_changed.notify_all();
        }
    }
}
