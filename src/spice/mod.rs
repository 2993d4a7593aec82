//! Saffron's built-in SPICE server.
//!
//! Stock SPICE clients (remote-viewer, spicy, spicy-screenshot, spice-glib,
//! spice-html5 through a WebSocket proxy) connect to it and see the VM's
//! displays, and drive its keyboard and mouse.
//!
//! ```text
//!  Display (devices)                                          event loop (1 mio thread)
//!  draw/resize/cursor  ──►  Subscription ──wake (when it stops  ──►  DisplayFeed → FeedState{Region,flags}
//!                                          being empty)              → channels per connection:
//!                                                                    main, cursor, inputs; display ─┐
//!                                             InputSink (VMM)  ◄──── inputs channel                 │
//!                                display worker thread (one per display connection): encodes, ◄────┘
//!                                frames into a twin outbox, the loop writes what it framed
//! ```
//!
//! * Wire: [`wire`] (marshalling, framing), [`protocol`] (numbers),
//!   [`link`] + [`ticket`] (handshake, RSA/OAEP password check),
//!   [`channel`] (outbox, ACK window, base messages).
//! * Channels: [`main_channel`] (with the session's [`net_test`]: is the
//!   client on a slow link?), [`display_channel`], [`cursor_channel`],
//!   [`inputs_channel`]; each is a sans-IO state machine with typed
//!   messages (`encode()` for ours, `decode()` for the client's).
//! * The channel interface: [`session`] ([`session::SpiceChannel`], which
//!   every channel implements, and [`session::ChannelKind`], which
//!   registers it in [`server::CHANNELS`]); [`mm_clock`] (multimedia time).
//! * Runtime: [`server`] (event loop, sessions), [`worker`] (a channel
//!   on a thread of its own: the display channel), [`connection`],
//!   [`display_feed`] (display events), [`region`] (bounded damage).
//!
//! Memory per client is bounded: damage is a region of at most 32
//! rectangles read from the current picture when the socket has room, the
//! outbox stops growing past 512 KiB plus one message, and input buffers
//! are 64 KiB. Clients are untrusted: every message is bounds-checked, and
//! a client that breaks the protocol is disconnected (logged once).
//!
//! Start it with [`SpiceServer::start`]; the VMM passes its displays, an
//! [`InputSink`] and whether an absolute pointer (tablet) exists.

pub mod agent;
pub mod audio;
pub mod channel;
pub mod codec;
pub mod config;
pub mod connection;
pub mod cursor_channel;
pub mod display_channel;
mod display_feed;
mod image_cache;
pub mod inputs_channel;
pub mod link;
pub mod main_channel;
mod mm_clock;
mod net_test;
mod opus;
pub mod playback_channel;
pub mod protocol;
pub mod record_channel;
mod region;
mod server;
mod session;
pub mod ticket;
pub mod tls;
pub mod video_stream;
pub mod wire;
mod worker;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use devices::display::Display;
use mio::{Poll, Waker};

pub use agent::{AgentDevice, AgentOptions, AgentPort, AgentStatus, ClientMonitors};
pub use audio::AudioHub;
pub use codec::policy::{CompressionOptions, STATS_METHODS};
pub use config::{MousePolicy, SpiceConfig};
pub use inputs_channel::{InputSink, KeyboardLeds, MouseButtons, NoInput};
pub use net_test::LinkEstimate;
pub use session::SentTotals;

#[derive(Debug, thiserror::Error)]
pub enum SpiceError {
    #[error("SPICE: cannot listen on {what}: {source}")]
    Listen {
        what: String,
        source: std::io::Error,
    },
    #[error("SPICE: {0}")]
    Ticket(#[from] ticket::TicketError),
    #[error("SPICE: TLS: {0}")]
    Tls(String),
    #[error("SPICE: cannot start: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPICE: at most 255 displays, got {0}")]
    TooManyDisplays(usize),
}

/// A waiter for the event loop's status wakes the loop at most this often.
const NUDGE_INTERVAL: Duration = Duration::from_millis(5);

/// What the server serves besides the sockets.
pub struct ServerInputs {
    /// One display channel (and cursor channel) per Display, in order.
    pub displays: Vec<Arc<Display>>,
    /// Where keyboard and mouse input goes.
    pub input: Arc<dyn InputSink>,
    /// An absolute pointing device is available from the start (offers
    /// client mouse mode; see [`SpiceNotifier::set_client_mouse_allowed`]).
    pub tablet: bool,
    /// The guest agent's port (changes reach the server through
    /// [`SpiceNotifier::agent_port_changed`]).
    pub agent: Option<AgentDevice>,
    /// The sound card's audio, when the VM has one.
    pub audio: Option<Arc<AudioHub>>,
}

/// A running server; dropping it stops it.
pub struct SpiceServer {
    shared: Arc<server::Shared>,
    waker: Arc<Waker>,
    tcp_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
    unix_path: Option<std::path::PathBuf>,
}

impl SpiceServer {
    /// Generates the ticket key, opens the sockets and starts the threads.
    pub fn start(config: &SpiceConfig, inputs: ServerInputs) -> Result<SpiceServer, SpiceError> {
        if inputs.displays.len() > 255 {
            return Err(SpiceError::TooManyDisplays(inputs.displays.len()));
        }
        let tls_config = config.tls.server_config().map_err(SpiceError::Tls)?;
        let key = ticket::TicketKey::generate()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), server::WAKER)?);
        let tcp = config.tcp.map(listen_tcp).transpose()?;
        let tcp_addr = match &tcp {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let tls = match (config.tls_addr, tls_config) {
            (Some(addr), Some(tls_config)) => Some((listen_tcp(addr)?, tls_config)),
            _ => None,
        };
        let tls_addr = match &tls {
            Some((l, _)) => Some(l.local_addr()?),
            None => None,
        };
        if config.open_to_local_users {
            tracing::warn!(
                "SPICE: no password: any user of this machine can connect \
                 (give password=SECRET, or disable-ticketing to silence this)"
            );
        }
        let unix = match &config.unix {
            Some(path) => {
                let listener = crate::unix_socket::bind_private(path)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|source| SpiceError::Listen {
                        what: path.display().to_string(),
                        source,
                    })?;
                Some(mio::net::UnixListener::from_std(listener))
            }
            None => None,
        };
        let agent = inputs
            .agent
            .filter(|_| config.agent.enabled)
            .map(|device| Arc::new(Mutex::new(agent::Agent::new(device, config.agent))));
        let shared = Arc::new(server::Shared {
            stop: AtomicBool::new(false),
            leds: Mutex::new(None),
            client_mouse: Mutex::new(None),
            status: Mutex::new(server::LoopStatus::default()),
            status_changed: std::sync::Condvar::new(),
            status_waiters: std::sync::atomic::AtomicUsize::new(0),
            compression: Mutex::new(config.compression),
            // The port may have changed before the server existed.
            agent_changed: AtomicBool::new(true),
            agent_status: Mutex::new(agent.as_ref().map(|_| AgentStatus::default())),
            tickets: Mutex::new(ticket::Tickets::new(config.ticket.clone())),
            end_session: AtomicBool::new(false),
            may_drop_password: may_drop_password(config),
        });
        let mut threads = Vec::new();
        let displays = inputs
            .displays
            .iter()
            .map(|display| display_feed::DisplayFeed::cursor(display, waker.clone()))
            .collect();
        let event_loop = server::EventLoop::new(server::LoopSetup {
            poll,
            waker: waker.clone(),
            tcp,
            unix,
            tls,
            channel_policy: config.tls.policy.clone(),
            key,
            displays,
            input: inputs.input,
            agent,
            audio: inputs.audio,
            playback_compression: config.playback_compression,
            client_mouse_allowed: inputs.tablet,
            mouse: config.mouse,
            shared: shared.clone(),
        })?;
        codec::parallel::start_pool();
        let loop_shared = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("spice".into())
                .spawn(move || {
                    event_loop.run();
                    loop_shared.stop.store(true, Ordering::Relaxed);
                })?,
        );
        if let Some(addr) = tcp_addr {
            tracing::info!("SPICE server listening on {addr}");
        }
        if let Some(addr) = tls_addr {
            tracing::info!("SPICE server listening for TLS on {addr}");
        }
        Ok(SpiceServer {
            shared,
            waker,
            tcp_addr,
            tls_addr,
            threads,
            unix_path: config.unix.clone(),
        })
    }

    /// The TCP address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The TLS address actually bound.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The guest changed its keyboard LEDs: tell the client.
    pub fn set_keyboard_leds(&self, leds: KeyboardLeds) {
        self.notifier().set_keyboard_leds(leds);
    }

    /// A handle that reads and changes the server's settings and counters
    /// (for the control socket).
    pub fn control(&self) -> SpiceControl {
        SpiceControl {
            shared: self.shared.clone(),
        }
    }

    /// A handle that tells the server about the VM's input devices from
    /// any thread, without blocking.
    pub fn notifier(&self) -> SpiceNotifier {
        SpiceNotifier {
            shared: self.shared.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Waits until the loop's status satisfies `done` (the loop publishes
    /// it after every pass); gives up after `timeout`. With `nudge`, wakes
    /// the loop at most every [`NUDGE_INTERVAL`] so that it passes again
    /// even without events (a pass re-checks its clients); without, waits
    /// for the loop's own passes.
    fn wait_status(
        &self,
        timeout: Option<Duration>,
        nudge: bool,
        done: impl Fn(&server::LoopStatus) -> bool,
    ) {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut last_nudge: Option<Instant> = None;
        let waiters = &self.shared.status_waiters;
        waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Counted(waiters);
        let mut status = self.shared.status.lock().unwrap_or_else(|p| p.into_inner());
        while !done(&status) && !self.shared.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return;
            }
            // Every pass notifies: waking the loop on each would make the
            // two threads chase each other flat out.
            if nudge && last_nudge.is_none_or(|t| now - t >= NUDGE_INTERVAL) {
                let _ = self.waker.wake();
                last_nudge = Some(now);
            }
            status = self
                .shared
                .status_changed
                .wait_timeout(status, NUDGE_INTERVAL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until a client has opened a display channel.
    pub fn wait_for_display_client(&self) {
        self.wait_status(None, false, |s| s.display_clients > 0);
    }

    /// Waits until every display client has been sent everything the
    /// displays showed when this was called (the event loop went round
    /// twice since, and no display channel has anything left to send or is
    /// held back by the client's ACKs). At once without display clients;
    /// at most 10 seconds.
    pub fn wait_display_clients_caught_up(&self) {
        let start = self
            .shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .passes;
        self.wait_status(Some(Duration::from_secs(10)), true, |s| {
            s.passes >= start + 2 && (s.display_clients == 0 || !s.display_busy)
        });
    }

    /// Stops the threads and closes every connection.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(path) = self.unix_path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether `set-password` may leave the server without a password: only
/// when it listens on this machine alone, or was started without one on
/// purpose (`disable-ticketing`), as the `--spice` rules allow at start.
fn may_drop_password(config: &SpiceConfig) -> bool {
    let remote = [config.tcp, config.tls_addr]
        .iter()
        .flatten()
        .any(|a| !a.ip().is_loopback());
    !remote || (config.ticket == ticket::TicketPolicy::Disabled && !config.open_to_local_users)
}

fn listen_tcp(addr: SocketAddr) -> Result<mio::net::TcpListener, SpiceError> {
    mio::net::TcpListener::bind(addr).map_err(|source| SpiceError::Listen {
        what: addr.to_string(),
        source,
    })
}

/// Counts a waiter for the time it exists.
struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads and changes a running server's settings and counters (for the
/// control socket; cheap to clone).
#[derive(Clone)]
pub struct SpiceControl {
    shared: Arc<server::Shared>,
}

impl SpiceControl {
    /// The compression options new display channels get.
    pub fn compression(&self) -> CompressionOptions {
        *self
            .shared
            .compression
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the compression options of display channels opened from now
    /// on (clients that are connected keep theirs, as they keep their
    /// caches and streams); `changes` are `--spice` names and values.
    /// Returns the options now in force; one bad change changes nothing.
    pub fn set_compression(&self, changes: &[(&str, &str)]) -> Result<CompressionOptions, String> {
        let mut options = self
            .shared
            .compression
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut changed = *options;
        for (key, value) in changes {
            changed.set(key, value)?;
        }
        *options = changed;
        tracing::info!("SPICE: compression for new clients: {:?}", changed.named());
        Ok(changed)
    }

    /// What the display channels sent so far.
    pub fn sent(&self) -> SentTotals {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sent
    }

    /// What the connected client's network test found (`None` without a
    /// client, or until the test is over).
    pub fn client_link(&self) -> Option<net_test::LinkEstimate> {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .client_link
    }

    /// `set-password`: clients must give `password` from the next link on
    /// (`None`: no password at all); an expiry set before stays, as in
    /// QEMU. With `disconnect`, the connected client is disconnected.
    pub fn set_password(&self, password: Option<String>, disconnect: bool) -> Result<(), String> {
        let policy = match password {
            Some(p) => {
                ticket::check_password(&p)?;
                ticket::TicketPolicy::Password(p)
            }
            None if self.shared.may_drop_password => ticket::TicketPolicy::Disabled,
            None => {
                return Err("the server is reachable from other machines: it keeps a \
                            password (start it with disable-ticketing to allow none)"
                    .into())
            }
        };
        self.tickets().policy = policy;
        if disconnect {
            self.shared.end_session.store(true, Ordering::SeqCst);
        }
        tracing::info!("SPICE: the password was changed");
        Ok(())
    }

    /// `expire-password`: from `at` on (`None`: never) no link gets in,
    /// and a client connected then is disconnected.
    pub fn expire_password(&self, at: Option<std::time::SystemTime>) {
        self.tickets().expires = at;
    }

    fn tickets(&self) -> std::sync::MutexGuard<'_, ticket::Tickets> {
        self.shared
            .tickets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The guest agent's state (`None` when the server has no agent port).
    pub fn agent(&self) -> Option<AgentStatus> {
        self.shared
            .agent_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Tells a running server what the VM's input devices did (cheap to
/// clone; calls take a lock briefly and wake the event loop).
#[derive(Clone)]
pub struct SpiceNotifier {
    shared: Arc<server::Shared>,
    waker: Arc<Waker>,
}

impl SpiceNotifier {
    /// The guest changed its keyboard LEDs: tell the client.
    pub fn set_keyboard_leds(&self, leds: KeyboardLeds) {
        *self.shared.leds.lock().unwrap_or_else(|p| p.into_inner()) = Some(leds);
        let _ = self.waker.wake();
    }

    /// Something changed on the agent's port (it opened or closed, the
    /// agent wrote, or it took data): the loop looks at it.
    pub fn agent_port_changed(&self) {
        self.shared.agent_changed.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    /// An absolute pointer became usable (the guest's tablet driver runs)
    /// or stopped being: offer or withdraw client mouse mode.
    pub fn set_client_mouse_allowed(&self, allowed: bool) {
        *self
            .shared
            .client_mouse
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(allowed);
        let _ = self.waker.wake();
    }
}

impl Drop for SpiceServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::codec::policy::{ImageCompression, StreamingVideo};
    use super::*;

    #[test]
    fn compression_changes_apply_whole_or_not_at_all() {
        let mut config = SpiceConfig::parse("port=1,image-compression=quic").unwrap();
        config.tcp = Some("127.0.0.1:0".parse().unwrap()); // any free port
        let server = SpiceServer::start(
            &config,
            ServerInputs {
                displays: Vec::new(),
                input: Arc::new(NoInput),
                tablet: false,
                agent: None,
                audio: None,
            },
        )
        .unwrap();
        let control = server.control();
        assert_eq!(control.compression().image, ImageCompression::Quic);
        let error = control
            .set_compression(&[("image-compression", "lz"), ("streaming-video", "on")])
            .unwrap_err();
        assert!(error.contains("streaming-video: 'on'"), "{error}");
        assert_eq!(control.compression(), config.compression, "nothing changed");
        let options = control
            .set_compression(&[("image-compression", "lz4"), ("streaming-video", "all")])
            .unwrap();
        assert_eq!(options.image, ImageCompression::Lz4);
        assert_eq!(options.streaming, StreamingVideo::All);
        assert_eq!(control.compression(), options);
        assert_eq!(control.sent(), SentTotals::default());
        server.stop();
    }
}
