//! The event loop: one mio thread owns the listening sockets and every
//! client connection (non-blocking; partial reads and writes resume), runs
//! the link stage, dispatches messages to the channels, hands them
//! the displays' events, and writes output.
//!
//! Sessions: a main-channel link starts a session (random non-zero id);
//! other channels must quote that id. A new main link ends the previous
//! session (its client is told and disconnected). When a session's main
//! channel closes, its other channels close too. The VM never notices.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token, Waker};

use super::channel::{ChannelError, Notify, Outbox};
use super::codec::policy::CompressionOptions;
use super::config::MousePolicy;
use super::connection::{Channel, Connection, State, Stream, MAX_CLIENT_MESSAGE};
use super::cursor_channel::CursorChannel;
use super::display_channel::{self, DisplayChannel, ImageSetup};
use super::display_feed::{DisplayFeed, SHOWN_HEAD};
use super::image_cache::SessionImages;
use super::inputs_channel::{InputSink, InputsChannel, KeyboardLeds};
use super::link::{self, LinkRequest, LinkStep};
use super::main_channel::{MainChannel, MainSetup};
use super::net_test::LinkEstimate;
use super::protocol::{base, channel, common_cap, inputs_cap, main_cap, mouse_mode, LinkError};
use super::ticket::{TicketKey, TicketPolicy};
use super::video_stream::MmClock;
use super::wire::{next_frame, Caps, HeaderMode};

pub const WAKER: Token = Token(0);
const TCP_LISTENER: Token = Token(1);
const UNIX_LISTENER: Token = Token(2);
const FIRST_CONNECTION: usize = 16;

/// Connections (linked or not) at most; more are refused at accept.
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
    /// The compression options display channels opened from now on get.
    pub compression: Mutex<CompressionOptions>,
}

/// What the display and cursor channels sent since the server started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SentTotals {
    /// Images and their bytes per encoding, in the order of
    /// [`super::codec::policy::STATS_METHODS`].
    pub images: [u64; 6],
    pub image_bytes: [u64; 6],
    /// Draws sent as ids of the client's pixmap cache (no image data).
    pub images_from_cache: u64,
    /// Video streams started, their frames and bytes.
    pub streams: u64,
    pub stream_frames: u64,
    pub stream_bytes: u64,
    /// Due stream frames not sent because they showed what the last did.
    pub stream_frames_unchanged: u64,
    /// Still stream pictures sent losslessly over their stream.
    pub stream_stills_made_exact: u64,
    /// Cursor shapes sent, and how many of them as ids of the client's
    /// cursor cache.
    pub cursor_shapes: u64,
    pub cursor_shapes_from_cache: u64,
}

impl SentTotals {
    fn add(&mut self, display: &DisplayChannel) {
        let images = display.stats();
        for m in 0..self.images.len() {
            self.images[m] += images.images[m];
            self.image_bytes[m] += images.bytes_out[m];
        }
        self.images_from_cache += display.from_cache();
        let streams = display.stream_stats();
        self.streams += streams.started;
        self.stream_frames += streams.frames;
        self.stream_bytes += streams.bytes;
        self.stream_frames_unchanged += streams.unchanged;
        self.stream_stills_made_exact += streams.still_exact;
    }

    fn add_cursor(&mut self, cursor: &CursorChannel) {
        let stats = cursor.stats();
        self.cursor_shapes += stats.shapes;
        self.cursor_shapes_from_cache += stats.from_cache;
    }
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
    pub key: TicketKey,
    pub ticket: TicketPolicy,
    pub displays: Vec<DisplayFeed>,
    pub input: Arc<dyn InputSink>,
    pub client_mouse_allowed: bool,
    pub mouse: MousePolicy,
    pub shared: Arc<Shared>,
}

pub struct EventLoop {
    setup: LoopSetup,
    connections: HashMap<Token, Connection>,
    next_token: usize,
    session: Option<u32>,
    /// The current session's caches and GLZ windows.
    session_images: Arc<SessionImages>,
    /// Whether the current session's client keeps the caches we name by
    /// hashed ids (cursor shapes, pictures).
    session_client_caches: bool,
    guest_leds: KeyboardLeds,
    /// The session's mouse mode, as its inputs channel and the sink know it.
    mouse_mode: u16,
    /// The session's network test result, as its display channels know it.
    client_link: Option<LinkEstimate>,
    epoch: Instant,
    /// What closed display channels sent.
    closed_sent: SentTotals,
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
        Ok(EventLoop {
            setup,
            connections: HashMap::new(),
            next_token: FIRST_CONNECTION,
            session: None,
            session_images: Arc::new(SessionImages::default()),
            session_client_caches: false,
            guest_leds: KeyboardLeds::default(),
            mouse_mode: mouse_mode::SERVER,
            client_link: None,
            epoch: Instant::now(),
            closed_sent: SentTotals::default(),
        })
    }

    /// The earliest time a display channel's video streams need a pump.
    fn next_deadline(&self) -> Option<Instant> {
        self.connections
            .values()
            .filter_map(|conn| match &conn.state {
                State::Open {
                    channel: Channel::Display(_, d),
                    ..
                } => d.next_deadline(),
                _ => None,
            })
            .min()
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Runs until the shared stop flag is set.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut backlog: Vec<Token> = Vec::new();
        while !self.setup.shared.stop.load(Ordering::Relaxed) {
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
                    TCP_LISTENER | UNIX_LISTENER => self.accept(event.token()),
                    token if event.is_readable() || event.is_read_closed() || event.is_error() => {
                        readable.push(token)
                    }
                    _ => {}
                }
            }
            self.take_display_events();
            readable.sort_unstable();
            readable.dedup();
            for token in readable {
                if self.service_input(token) {
                    backlog.push(token);
                }
            }
            self.sync_mouse_mode();
            self.sync_client_link();
            self.pump_and_flush();
            self.expire();
            self.reap();
            self.publish_status();
        }
        for conn in self.connections.values_mut() {
            conn.stream.shutdown();
        }
    }

    fn accept(&mut self, listener: Token) {
        loop {
            let accepted = match (listener, &self.setup.tcp, &self.setup.unix) {
                (TCP_LISTENER, Some(l), _) => l.accept().map(|(s, a)| {
                    let _ = s.set_nodelay(true);
                    (Stream::Tcp(s), a.to_string())
                }),
                (UNIX_LISTENER, _, Some(l)) => l
                    .accept()
                    .map(|(s, _)| (Stream::Unix(s), "unix socket".to_string())),
                _ => return,
            };
            let (mut stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("spice: accept failed: {e}");
                    return;
                }
            };
            if self.connections.len() >= MAX_CONNECTIONS {
                tracing::warn!("spice: {peer}: too many connections, refused");
                stream.shutdown();
                continue;
            }
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
                .insert(token, Connection::new(stream, peer, Instant::now()));
        }
    }

    /// Hands the displays' events since the last turn to the channels.
    fn take_display_events(&mut self) {
        let leds = self
            .setup
            .shared
            .leds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(leds) = leds {
            self.guest_leds = leds;
        }
        let client_mouse = self
            .setup
            .shared
            .client_mouse
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(allowed) = client_mouse {
            self.setup.client_mouse_allowed = allowed;
        }
        let feeds: Vec<_> = self.setup.displays.iter().map(DisplayFeed::take).collect();
        for conn in self.connections.values_mut() {
            let State::Open {
                channel, outbox, ..
            } = &mut conn.state
            else {
                continue;
            };
            match channel {
                Channel::Display(i, display) => {
                    let feed = &feeds[*i];
                    if feed.head_changed {
                        display.head_changed();
                    }
                    for rect in feed.damage.rects() {
                        display.damage(*rect);
                    }
                }
                Channel::Cursor(i, cursor) if feeds[*i].cursor_changed => cursor.cursor_changed(),
                Channel::Inputs(inputs) => inputs.set_guest_leds(self.guest_leds, outbox),
                Channel::Main(main) => {
                    main.set_client_mouse_allowed(self.setup.client_mouse_allowed, outbox)
                }
                _ => {}
            }
        }
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
                    let blocked = outbox.queued_bytes() > MAX_REPLY_BACKLOG
                        && !matches!(channel, Channel::Display(..));
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

    /// Moves the link stage on; true if it made progress worth repeating.
    fn advance_link(&mut self, token: Token) -> bool {
        let displays = self.setup.displays.len();
        let Some(conn) = self.connections.get_mut(&token) else {
            return false;
        };
        let State::Linking { linker, request } = &mut conn.state else {
            return false;
        };
        match linker.step(&mut conn.input) {
            LinkStep::NeedMore => false,
            LinkStep::Refuse(error) => {
                log_close(conn, &format!("link refused ({error:?})"));
                conn.raw_out.extend(link::encode_error_reply(error));
                conn.closing = true;
                false
            }
            LinkStep::Request(req) => {
                let Some(channel_caps) = channel_caps(&req, displays) else {
                    log_close(
                        conn,
                        &format!("no channel type {} id {}", req.channel_type, req.channel_id),
                    );
                    conn.raw_out
                        .extend(link::encode_error_reply(LinkError::ChannelNotAvailable));
                    conn.closing = true;
                    return false;
                };
                conn.raw_out.extend(link::encode_link_reply(
                    self.setup.key.public_der(),
                    &link::server_common_caps(),
                    &channel_caps,
                ));
                linker.accept();
                *request = Some(req);
                true
            }
            LinkStep::Ticket(ticket) => {
                let req = request.take();
                let Some(req) = req else {
                    conn.closed = true;
                    return false;
                };
                if !self.setup.key.check(&ticket, &self.setup.ticket) {
                    log_close(conn, &"wrong password");
                    conn.raw_out
                        .extend(link::encode_link_result(LinkError::PermissionDenied));
                    conn.closing = true;
                    return false;
                }
                self.open_channel(token, req);
                true
            }
        }
    }

    /// The ticket was right: join or start the session and start the channel.
    fn open_channel(&mut self, token: Token, req: LinkRequest) {
        let session = if req.channel_type == channel::MAIN {
            if let Some(old) = self.session.take() {
                self.end_session(old, "another client connected to this VM");
            }
            let mut id = rand::random::<u32>();
            while id == 0 {
                id = rand::random();
            }
            self.session = Some(id);
            // A new client session: its caches and GLZ window start empty,
            // and its link is not known until its network test is over.
            self.session_images = Arc::new(SessionImages::default());
            self.session_client_caches = client_keeps_caches(&req);
            self.client_link = None;
            id
        } else {
            match self.session {
                Some(id) if id == req.connection_id => {
                    // A channel linked twice replaces the older link.
                    let wanted = (req.channel_type, req.channel_id);
                    for (t, other) in self.connections.iter_mut() {
                        if *t != token {
                            if let State::Open {
                                session, channel, ..
                            } = &other.state
                            {
                                if *session == id && channel.id() == wanted {
                                    tracing::info!(
                                        "spice: {} replaced by a new link",
                                        channel.name()
                                    );
                                    other.closed = true;
                                }
                            }
                        }
                    }
                    id
                }
                _ => {
                    if let Some(conn) = self.connections.get_mut(&token) {
                        log_close(conn, &format!("unknown session {:#x}", req.connection_id));
                        conn.raw_out
                            .extend(link::encode_link_result(LinkError::BadConnectionId));
                        conn.closing = true;
                    }
                    return;
                }
            }
        };
        let mode = if req.common_caps.has(common_cap::MINI_HEADER) {
            HeaderMode::Mini
        } else {
            HeaderMode::Full
        };
        let mut outbox = Outbox::new(mode);
        let now = Instant::now();
        let now_ns = self.now_ns();
        let index = req.channel_id as usize;
        let channel = match req.channel_type {
            channel::MAIN => Channel::Main(MainChannel::start(
                MainSetup {
                    session_id: session,
                    channels: self.channel_list(),
                    display_channels: self.setup.displays.len() as u32,
                    client_mouse_allowed: self.setup.client_mouse_allowed,
                    mouse: self.setup.mouse,
                    mm_time_now: MmClock::new(self.epoch).at(now),
                },
                &mut outbox,
                now_ns,
            )),
            channel::DISPLAY => Channel::Display(
                index,
                Box::new(DisplayChannel::start(
                    self.setup.displays[index].display().clone(),
                    SHOWN_HEAD,
                    &req.channel_caps,
                    ImageSetup {
                        compression: *self
                            .setup
                            .shared
                            .compression
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()),
                        session: self.session_images.clone(),
                        client_caches: self.session_client_caches,
                        clock: MmClock::new(self.epoch),
                        client_link: self.client_link,
                    },
                    &mut outbox,
                    now,
                )),
            ),
            channel::CURSOR => Channel::Cursor(
                index,
                CursorChannel::start(
                    self.setup.displays[index].display().clone(),
                    self.session_client_caches,
                    &mut outbox,
                ),
            ),
            _ => {
                let mut inputs =
                    InputsChannel::start(self.setup.input.clone(), self.guest_leds, &mut outbox);
                inputs.set_mouse_mode(self.mouse_mode);
                Channel::Inputs(inputs)
            }
        };
        let Some(conn) = self.connections.get_mut(&token) else {
            return;
        };
        tracing::info!(
            "spice: {} linked {} channel (session {session:#x})",
            conn.peer,
            channel.name()
        );
        conn.raw_out.extend(link::encode_link_result(LinkError::Ok));
        conn.state = State::Open {
            session,
            channel,
            outbox,
        };
    }

    /// Follows the session's mouse mode (its main channel decides) into
    /// its inputs channels and the input sink.
    fn sync_mouse_mode(&mut self) {
        let Some(session) = self.session else {
            return;
        };
        let Some(mode) = self.session_main(session).map(|m| m.mouse_mode()) else {
            return;
        };
        if mode == self.mouse_mode {
            return;
        }
        self.mouse_mode = mode;
        for conn in self.connections.values_mut() {
            if let State::Open {
                session: s,
                channel: Channel::Inputs(inputs),
                ..
            } = &mut conn.state
            {
                if *s == session {
                    inputs.set_mouse_mode(mode);
                }
            }
        }
        self.setup.input.mouse_mode(mode == mouse_mode::CLIENT);
    }

    /// Follows the session's network test (its main channel runs it) into
    /// its display channels' compression choices.
    fn sync_client_link(&mut self) {
        let Some(session) = self.session else {
            return;
        };
        let link = self.session_main(session).and_then(|m| m.link());
        if link == self.client_link {
            return;
        }
        let Some(link) = link else { return };
        self.client_link = Some(link);
        for conn in self.connections.values_mut() {
            if let State::Open {
                session: s,
                channel: Channel::Display(_, display),
                ..
            } = &mut conn.state
            {
                if *s == session {
                    display.set_client_link(link);
                }
            }
        }
    }

    /// The main channel of `session`, while it is open.
    fn session_main(&self, session: u32) -> Option<&MainChannel> {
        self.connections.values().find_map(|c| match &c.state {
            State::Open {
                session: s,
                channel: Channel::Main(main),
                ..
            } if *s == session => Some(main),
            _ => None,
        })
    }

    /// Every channel except main, in the order clients open them.
    fn channel_list(&self) -> Vec<(u8, u8)> {
        let n = self.setup.displays.len() as u8;
        let mut list: Vec<(u8, u8)> = (0..n).map(|i| (channel::DISPLAY, i)).collect();
        list.push((channel::INPUTS, 0));
        list.extend((0..n).map(|i| (channel::CURSOR, i)));
        list
    }

    /// Tells a session's client why, writes what we can, and closes it.
    fn end_session(&mut self, session: u32, why: &str) {
        let timestamp = self.now_ns();
        for conn in self.connections.values_mut() {
            let State::Open {
                session: s,
                channel,
                outbox,
            } = &mut conn.state
            else {
                continue;
            };
            if *s != session {
                continue;
            }
            if let Channel::Main(_) = channel {
                outbox.push(&Notify {
                    timestamp,
                    severity: Notify::SEVERITY_WARN,
                    visibility: Notify::VISIBILITY_HIGH,
                    what: 0,
                    message: why.to_string(),
                });
            }
            tracing::info!("spice: {}: {why}; closing {}", conn.peer, channel.name());
            let _ = conn.flush();
            conn.closed = true;
        }
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
        match channel {
            Channel::Main(main) => main.handle(msg_type, body, outbox, now_ns),
            Channel::Display(_, display) => display.handle(msg_type, body),
            Channel::Cursor(_, cursor) => cursor.handle(msg_type, body),
            Channel::Inputs(inputs) => inputs.handle(msg_type, body, outbox),
        }
    }

    /// Lets channels produce output where there is room, and writes.
    fn pump_and_flush(&mut self) {
        let now_ns = self.now_ns();
        for conn in self.connections.values_mut() {
            if conn.closed {
                continue;
            }
            if let State::Open {
                channel, outbox, ..
            } = &mut conn.state
            {
                match channel {
                    Channel::Display(_, d) if d.has_work() => d.pump(outbox),
                    Channel::Cursor(_, c) if c.has_work() => c.pump(outbox),
                    Channel::Main(m) => m.tick(outbox, now_ns),
                    _ => {}
                }
            }
            // Write, then let the display fill the room the write made.
            for _ in 0..4 {
                match conn.flush() {
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
                let State::Open {
                    channel: Channel::Display(_, d),
                    outbox,
                    ..
                } = &mut conn.state
                else {
                    break;
                };
                if !d.has_work() || conn.closed {
                    break;
                }
                d.pump(outbox);
            }
        }
    }

    /// Closes connections that linked too slowly or never initialised.
    fn expire(&mut self) {
        let now = Instant::now();
        for conn in self.connections.values_mut() {
            let overdue = match &conn.state {
                State::Linking { .. } => now.duration_since(conn.opened) > LINK_TIMEOUT,
                State::Open {
                    channel: Channel::Display(_, d),
                    ..
                } => d.init_overdue(now),
                _ => false,
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
                session, channel, ..
            } = &mut conn.state
            {
                match channel {
                    Channel::Inputs(inputs) => inputs.release_all(),
                    Channel::Display(_, display) => self.closed_sent.add(display),
                    Channel::Cursor(_, cursor) => self.closed_sent.add_cursor(cursor),
                    Channel::Main(_) if self.session == Some(*session) => {
                        self.session = None;
                        self.client_link = None;
                        let s = *session;
                        self.end_session(s, "the main channel closed");
                    }
                    _ => {}
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
            match &conn.state {
                State::Open {
                    channel: Channel::Display(_, d),
                    ..
                } => {
                    clients += 1;
                    busy |= d.has_work() || conn.has_output();
                    sent.add(d);
                }
                State::Open {
                    channel: Channel::Cursor(_, c),
                    ..
                } => sent.add_cursor(c),
                _ => {}
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
        status.client_link = self.client_link;
        drop(status);
        self.setup.shared.status_changed.notify_all();
    }
}

/// Whether the client of this main channel link keeps a cursor cache and
/// a pixmap cache that take any 64-bit id. No capability says so.
/// spice-html5 falls short: it has no cursor cache (it ignores the cursor
/// flags: a shape sent as a cache id would come out empty), its pixmap
/// cache reads ids as 32-bit numbers (`(hi << 32) | lo` in JavaScript)
/// and keeps a JPEG only once the browser has decoded it. It is also the
/// one client whose main channel does not advertise `NAME_AND_UUID`;
/// spice-gtk (remote-viewer, spicy, spice-glib) does, and has both caches.
/// A client we cannot tell gets whole shapes and pictures, which every
/// client shows.
fn client_keeps_caches(main_link: &LinkRequest) -> bool {
    main_link.channel_caps.has(main_cap::NAME_AND_UUID)
}

/// Our channel caps for a requested channel; `None` if it does not exist.
fn channel_caps(req: &LinkRequest, displays: usize) -> Option<Caps> {
    match (req.channel_type, req.channel_id as usize) {
        (channel::MAIN, 0) => Some(Caps::default()),
        (channel::DISPLAY, i) if i < displays => Some(display_channel::server_caps()),
        (channel::CURSOR, i) if i < displays => Some(Caps::default()),
        (channel::INPUTS, 0) => Some(Caps::from_bits(&[inputs_cap::KEY_SCANCODE])),
        _ => None,
    }
}
