//! The main channel (type 1): session set-up and control.
//!
//! On link the server sends `INIT` (session id, mouse modes, agent state,
//! multimedia clock) and the network test's `PING`s ([`super::net_test`]:
//! is the client on a slow link?); the client answers `ATTACH_CHANNELS`, we
//! send `CHANNELS_LIST`, and it opens the other channels with the session
//! id as their connection id. Mouse modes: client mode is offered while an
//! absolute pointer is available (the guest's tablet driver runs) and is
//! then the starting mode, unless `mouse=` forces one mode; when the
//! availability changes, the client is told (`MOUSE_MODE`), and requests
//! for a mode not offered are refused. The agent's messages go to and come
//! from the server's [`Agent`] (`super::agent`); without one (`agent=off`)
//! the client is told it is disconnected, agent data is discarded and its
//! tokens returned. Migration messages are ignored (we never offer
//! migration, so clients never start one).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::agent::{Agent, ToClient, CLIENT_WINDOW, TOKEN_BATCH};
use super::channel::{BaseMessage, ChannelError, Encode, Outbox, Ping};
use super::config::MousePolicy;
use super::net_test::{LinkEstimate, NetTest, TestPing};
use super::protocol::{channel, main_msg, mouse_mode};
use super::session::{Changes, ChannelKind, Context, SessionView, SpiceChannel};
use super::wire::{Caps, Reader, Writer};

/// Agent tokens a client starts with (`REDS_AGENT_WINDOW_SIZE`).
pub const AGENT_TOKENS: u32 = CLIENT_WINDOW;
/// A ping goes this long after the last agent message to the client: it
/// wakes clients (spice-gtk) that queue an agent message without sending
/// it until the server says something, as a file transfer's cancel.
const AGENT_QUIET_PING: Duration = Duration::from_millis(200);
/// Bytes queued for the client above which no agent output is added.
const AGENT_OUTBOX_LIMIT: usize = 256 << 10;
/// The client's multimedia clock starts this far behind ours (ms).
const MM_TIME_DELTA: u32 = 400;

/// `MAIN_INIT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MainInit {
    pub session_id: u32,
    pub display_channels_hint: u32,
    pub supported_mouse_modes: u32,
    pub current_mouse_mode: u32,
    pub agent_connected: u32,
    pub agent_tokens: u32,
    pub multi_media_time: u32,
    pub ram_hint: u32,
}

impl Encode for MainInit {
    const TYPE: u16 = main_msg::INIT;
    fn encode(&self, w: &mut Writer) {
        w.u32(self.session_id)
            .u32(self.display_channels_hint)
            .u32(self.supported_mouse_modes)
            .u32(self.current_mouse_mode)
            .u32(self.agent_connected)
            .u32(self.agent_tokens)
            .u32(self.multi_media_time)
            .u32(self.ram_hint);
    }
}

/// `CHANNELS_LIST`: `(type, id)` of every channel except main.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelsList(pub Vec<(u8, u8)>);

impl Encode for ChannelsList {
    const TYPE: u16 = main_msg::CHANNELS_LIST;
    fn encode(&self, w: &mut Writer) {
        w.u32(self.0.len() as u32);
        for (t, id) in &self.0 {
            w.u8(*t).u8(*id);
        }
    }
}

/// `MOUSE_MODE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MouseMode {
    pub supported: u16,
    pub current: u16,
}

impl Encode for MouseMode {
    const TYPE: u16 = main_msg::MOUSE_MODE;
    fn encode(&self, w: &mut Writer) {
        w.u16(self.supported).u16(self.current);
    }
}

/// `AGENT_DISCONNECTED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentDisconnected {
    pub error: u32,
}

impl Encode for AgentDisconnected {
    const TYPE: u16 = main_msg::AGENT_DISCONNECTED;
    fn encode(&self, w: &mut Writer) {
        w.u32(self.error);
    }
}

/// `AGENT_TOKEN`: the client may send this many more agent messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentToken {
    pub tokens: u32,
}

impl Encode for AgentToken {
    const TYPE: u16 = main_msg::AGENT_TOKEN;
    fn encode(&self, w: &mut Writer) {
        w.u32(self.tokens);
    }
}

/// What a client may send on the main channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MainMessage {
    Base(BaseMessage),
    ClientInfo {
        cache_size: u64,
    },
    AttachChannels,
    MouseModeRequest {
        mode: u16,
    },
    AgentStart {
        tokens: u32,
    },
    AgentData {
        len: usize,
    },
    AgentToken {
        tokens: u32,
    },
    /// Migration replies and quality indicators: accepted, ignored.
    Ignored(u16),
}

impl MainMessage {
    pub fn decode(msg_type: u16, body: &[u8]) -> Result<MainMessage, ChannelError> {
        if let Some(base) = BaseMessage::decode(msg_type, body)? {
            return Ok(MainMessage::Base(base));
        }
        let bad = ChannelError::malformed(msg_type);
        let mut r = Reader::new(body);
        Ok(match msg_type {
            main_msg::CLIENT_INFO => MainMessage::ClientInfo {
                cache_size: r.u64("cache_size").map_err(bad)?,
            },
            main_msg::ATTACH_CHANNELS => MainMessage::AttachChannels,
            main_msg::MOUSE_MODE_REQUEST => MainMessage::MouseModeRequest {
                mode: r.u16("mode").map_err(bad)?,
            },
            main_msg::AGENT_START => MainMessage::AgentStart {
                tokens: r.u32("num_tokens").map_err(bad)?,
            },
            main_msg::AGENT_DATA => MainMessage::AgentData { len: body.len() },
            main_msg::CLIENT_AGENT_TOKEN => MainMessage::AgentToken {
                tokens: r.u32("num_tokens").map_err(bad)?,
            },
            main_msg::MIGRATE_CONNECTED
            | main_msg::MIGRATE_CONNECT_ERROR
            | main_msg::MIGRATE_END
            | main_msg::MIGRATE_DST_DO_SEAMLESS
            | main_msg::MIGRATE_CONNECTED_SEAMLESS
            | main_msg::QUALITY_INDICATOR => MainMessage::Ignored(msg_type),
            other => return Err(ChannelError::UnknownType(other)),
        })
    }
}

/// What the main channel is told when it starts.
#[derive(Clone)]
pub struct MainSetup {
    pub session_id: u32,
    /// Every other channel, in the order clients should open them.
    pub channels: Vec<(u8, u8)>,
    pub display_channels: u32,
    /// An absolute pointing device is available now.
    pub client_mouse_allowed: bool,
    /// Which modes `mouse=` allows.
    pub mouse: MousePolicy,
    /// The server's multimedia clock now (ms).
    pub mm_time_now: u32,
    /// The guest agent's port (`None` with `agent=off`).
    pub agent: Option<Arc<Mutex<Agent>>>,
}

impl std::fmt::Debug for MainChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MainChannel")
            .field("session_id", &self.setup.session_id)
            .field("mouse_mode", &self.mouse_mode)
            .finish_non_exhaustive()
    }
}

fn lock(agent: &Mutex<Agent>) -> std::sync::MutexGuard<'_, Agent> {
    agent.lock().unwrap_or_else(|p| p.into_inner())
}

/// The server side of one main channel connection.
pub struct MainChannel {
    setup: MainSetup,
    /// When to ping the client after its agent traffic went quiet.
    agent_ping_at: Option<Instant>,
    mouse_mode: u16,
    agent_messages_unpaid: u32,
    next_ping_id: u32,
    net_test: NetTest,
}

impl MainChannel {
    /// Queues `INIT` and the network test's `PING`s.
    pub fn start(setup: MainSetup, out: &mut Outbox, now_ns: u64) -> MainChannel {
        let (net_test, pings) = NetTest::start(1, now_ns);
        let agent_connected = setup
            .agent
            .as_ref()
            .is_some_and(|a| lock(a).client_arrived(setup.session_id));
        let mut channel = MainChannel {
            agent_ping_at: None,
            mouse_mode: initial_mouse_mode(&setup),
            setup,
            agent_messages_unpaid: 0,
            next_ping_id: 1,
            net_test,
        };
        out.push(&MainInit {
            session_id: channel.setup.session_id,
            display_channels_hint: channel.setup.display_channels,
            supported_mouse_modes: u32::from(channel.supported_mouse_modes()),
            current_mouse_mode: u32::from(channel.mouse_mode),
            agent_connected: agent_connected.into(),
            agent_tokens: AGENT_TOKENS,
            multi_media_time: channel.setup.mm_time_now.wrapping_sub(MM_TIME_DELTA),
            ram_hint: 0,
        });
        channel.queue_pings(&pings, out, now_ns);
        channel
    }

    pub fn supported_mouse_modes(&self) -> u16 {
        supported_mouse_modes(&self.setup)
    }

    /// An absolute pointer became available or went away: with `mouse=`
    /// unset, offer client mode or withdraw it, and tell the client.
    pub fn set_client_mouse_allowed(&mut self, allowed: bool, out: &mut Outbox) {
        if allowed == self.setup.client_mouse_allowed {
            return;
        }
        self.setup.client_mouse_allowed = allowed;
        if self.setup.mouse != MousePolicy::Auto {
            return;
        }
        if self.supported_mouse_modes() & self.mouse_mode == 0 {
            self.mouse_mode = mouse_mode::SERVER;
        }
        out.push(&MouseMode {
            supported: self.supported_mouse_modes(),
            current: self.mouse_mode,
        });
    }

    pub fn mouse_mode(&self) -> u16 {
        self.mouse_mode
    }

    /// What the network test found (`None` until it is over).
    pub fn link(&self) -> Option<LinkEstimate> {
        self.net_test.result()
    }

    /// Time passes: queues the network test's pings when a slow link is
    /// due to be measured again.
    pub fn tick(&mut self, out: &mut Outbox, now_ns: u64) {
        let pings = self.net_test.due(now_ns, self.next_ping_id);
        self.queue_pings(&pings, out, now_ns);
    }

    fn queue_pings(&mut self, pings: &[TestPing], out: &mut Outbox, now_ns: u64) {
        for p in pings {
            out.push(&Ping {
                id: p.id,
                timestamp: now_ns,
                payload: p.payload,
            });
            self.next_ping_id = p.id.wrapping_add(1);
        }
    }

    pub fn handle(
        &mut self,
        msg_type: u16,
        body: &[u8],
        out: &mut Outbox,
        now_ns: u64,
    ) -> Result<(), ChannelError> {
        match MainMessage::decode(msg_type, body)? {
            MainMessage::Base(BaseMessage::Pong { id, timestamp }) => {
                if !self.net_test.awaits(id) {
                    tracing::debug!("main channel: pong {id} (not awaited)");
                    return Ok(());
                }
                let before = self.net_test.result();
                let again = self.net_test.pong(id, timestamp, now_ns, self.next_ping_id);
                self.queue_pings(&again, out, now_ns);
                // (Logged when a measurement ends with a new result.)
                if let Some(link) = self.net_test.result().filter(|r| Some(*r) != before) {
                    tracing::info!(
                        "main channel: network test: latency {:.1} ms, {}{}",
                        link.latency.as_secs_f64() * 1000.0,
                        link.bits_per_second
                            .map_or("rate too fast to measure".into(), |b| {
                                format!("{:.1} Mbit/s", b as f64 / 1e6)
                            }),
                        if link.low_bandwidth() {
                            " (a slow link: JPEG and ZLIB_GLZ allowed in their auto mode)"
                        } else {
                            ""
                        }
                    );
                }
            }
            MainMessage::Base(_) | MainMessage::ClientInfo { .. } => {}
            MainMessage::AttachChannels => out.push(&ChannelsList(self.setup.channels.clone())),
            MainMessage::MouseModeRequest { mode } => {
                let allowed = matches!(mode, mouse_mode::SERVER | mouse_mode::CLIENT)
                    && self.supported_mouse_modes() & mode != 0;
                if allowed && mode != self.mouse_mode {
                    self.mouse_mode = mode;
                    out.push(&MouseMode {
                        supported: self.supported_mouse_modes(),
                        current: mode,
                    });
                }
            }
            MainMessage::AgentStart { tokens } => match &self.setup.agent {
                Some(agent) => lock(agent).client_start(self.setup.session_id, tokens),
                // No agent: say so (clients only start one when INIT said
                // it was connected, so this is a late or confused client).
                None => out.push(&AgentDisconnected { error: 0 }),
            },
            MainMessage::AgentData { .. } => match &self.setup.agent {
                Some(agent) => lock(agent).client_data(self.setup.session_id, body)?,
                // Nowhere to deliver it; pay the client's token back so a
                // client that believes in an agent is not starved.
                None => {
                    self.agent_messages_unpaid += 1;
                    if self.agent_messages_unpaid >= TOKEN_BATCH {
                        out.push(&AgentToken {
                            tokens: self.agent_messages_unpaid,
                        });
                        self.agent_messages_unpaid = 0;
                    }
                }
            },
            MainMessage::AgentToken { tokens } => {
                if let Some(agent) = &self.setup.agent {
                    lock(agent).client_tokens(self.setup.session_id, tokens);
                }
            }
            MainMessage::Ignored(t) => tracing::debug!("main channel: ignoring message {t}"),
        }
        Ok(())
    }
}

/// The main channel kind: one per server; its link starts a session.
pub const KIND: ChannelKind = ChannelKind {
    channel_type: channel::MAIN,
    name: "main",
    count: |_| 1,
    caps: Caps::default,
    open: |o, out| {
        let setup = MainSetup {
            session_id: o.session.id,
            channels: o.server.channels.clone(),
            display_channels: o.server.displays.len() as u32,
            client_mouse_allowed: o.server.client_mouse_allowed,
            mouse: o.server.mouse,
            mm_time_now: o.server.clock().at(o.now),
            agent: o.server.agent.clone(),
        };
        Box::new(MainChannel::start(setup, out, o.now_ns))
    },
};

impl SpiceChannel for MainChannel {
    fn receive(
        &mut self,
        msg_type: u16,
        body: &[u8],
        cx: &mut Context,
    ) -> Result<(), ChannelError> {
        self.handle(msg_type, body, cx.out, cx.now_ns)
    }

    fn update(&mut self, changes: &Changes, out: &mut Outbox) {
        self.set_client_mouse_allowed(changes.client_mouse_allowed, out);
    }

    fn pump(&mut self, cx: &mut Context) {
        self.tick(cx.out, cx.now_ns);
        let Some(agent) = &self.setup.agent else {
            return;
        };
        // A client that does not read gets no more agent output (the
        // agent then stops reading its port, and the guest's writes block).
        if cx.out.queued_bytes() > AGENT_OUTBOX_LIMIT {
            return;
        }
        let messages = lock(agent).take_for_client(self.setup.session_id);
        if !messages.is_empty() {
            self.agent_ping_at = Some(cx.now + AGENT_QUIET_PING);
        } else if self.agent_ping_at.is_some_and(|at| cx.now >= at) {
            self.agent_ping_at = None;
            cx.out.push(&Ping {
                id: self.next_ping_id,
                timestamp: cx.now_ns,
                payload: 0,
            });
            self.next_ping_id = self.next_ping_id.wrapping_add(1);
        }
        for message in messages {
            match message {
                ToClient::Connected => cx.out.push_raw(main_msg::AGENT_CONNECTED, Vec::new()),
                ToClient::Disconnected => cx.out.push(&AgentDisconnected { error: 0 }),
                ToClient::Data(data) => cx.out.push_raw(main_msg::AGENT_DATA_TO_CLIENT, data),
                ToClient::Tokens(tokens) => cx.out.push(&AgentToken { tokens }),
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.agent_ping_at
    }

    fn has_work(&self) -> bool {
        self.setup
            .agent
            .as_ref()
            .is_some_and(|a| lock(a).has_output_for_client(self.setup.session_id))
    }

    fn closed(&mut self) {
        if let Some(agent) = &self.setup.agent {
            lock(agent).client_gone(self.setup.session_id);
        }
    }

    fn decide(&self, view: &mut SessionView) {
        view.mouse_mode = self.mouse_mode;
        if let Some(link) = self.link() {
            view.client_link = Some(link);
        }
    }
}

fn supported_mouse_modes(setup: &MainSetup) -> u16 {
    match setup.mouse {
        MousePolicy::Server => mouse_mode::SERVER,
        MousePolicy::Client => mouse_mode::CLIENT,
        MousePolicy::Auto if setup.client_mouse_allowed => mouse_mode::SERVER | mouse_mode::CLIENT,
        MousePolicy::Auto => mouse_mode::SERVER,
    }
}

/// Client mode when offered (clients ask for it anyway), else server mode.
fn initial_mouse_mode(setup: &MainSetup) -> u16 {
    if supported_mouse_modes(setup) & mouse_mode::CLIENT != 0 {
        mouse_mode::CLIENT
    } else {
        mouse_mode::SERVER
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spice::wire::{next_frame, HeaderMode};

    fn frames(out: &mut Outbox) -> Vec<(u16, Vec<u8>)> {
        let bytes = out.take_bytes();
        let mut at = 0;
        let mut result = Vec::new();
        while let Some((h, body, used)) =
            next_frame(HeaderMode::Mini, &bytes[at..], u32::MAX).unwrap()
        {
            result.push((h.msg_type, body.to_vec()));
            at += used;
        }
        assert_eq!(at, bytes.len());
        result
    }

    fn setup(client_mouse_allowed: bool) -> MainSetup {
        MainSetup {
            session_id: 0x1234_5678,
            channels: vec![(2, 0), (3, 0), (4, 0)],
            display_channels: 1,
            client_mouse_allowed,
            mouse: MousePolicy::Auto,
            mm_time_now: 1000,
            agent: None,
        }
    }

    #[test]
    fn init_ping_and_channels_list() {
        let mut out = Outbox::new(HeaderMode::Mini);
        let mut main = MainChannel::start(setup(false), &mut out, 5);
        let sent = frames(&mut out);
        assert_eq!(sent[0].0, 103);
        assert_eq!(
            sent[0].1,
            [
                0x78, 0x56, 0x34, 0x12, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0,
                0, 0x58, 0x02, 0, 0, 0, 0, 0, 0
            ]
        );
        // The network test: two empty pings and a large one.
        let pings: Vec<(u16, usize)> = sent[1..].iter().map(|(t, b)| (*t, b.len())).collect();
        assert_eq!(pings, [(4, 12), (4, 12), (4, 12 + 250 * 1024)]);
        main.handle(104, &[], &mut out, 6).unwrap();
        let sent = frames(&mut out);
        assert_eq!(sent, vec![(104, vec![3, 0, 0, 0, 2, 0, 3, 0, 4, 0])]);
    }

    /// A `PONG` for the ping in `frame` (the client echoes id and timestamp).
    fn pong(frame: &(u16, Vec<u8>)) -> Vec<u8> {
        assert_eq!(frame.0, 4);
        frame.1[..12].to_vec()
    }

    #[test]
    fn the_network_test_finds_a_slow_link() {
        let mut out = Outbox::new(HeaderMode::Mini);
        let ms = 1_000_000;
        let mut main = MainChannel::start(setup(false), &mut out, 0);
        let sent = frames(&mut out);
        main.handle(3, &pong(&sent[1]), &mut out, 20 * ms).unwrap();
        main.handle(3, &pong(&sent[2]), &mut out, 20 * ms).unwrap();
        assert!(main.link().is_none());
        // 250 KiB in 500 ms: 4 Mbit/s, slow; measured once more.
        main.handle(3, &pong(&sent[3]), &mut out, 520 * ms).unwrap();
        assert!(main.link().is_none());
        let again = frames(&mut out);
        assert_eq!(again.len(), 2);
        main.handle(3, &pong(&again[0]), &mut out, 540 * ms)
            .unwrap();
        main.handle(3, &pong(&again[1]), &mut out, 1040 * ms)
            .unwrap();
        let link = main.link().unwrap();
        assert_eq!(link.latency.as_millis(), 20);
        assert_eq!(link.bits_per_second, Some(250 * 1024 * 8 * 2));
        assert!(link.low_bandwidth());
        // Late or repeated answers change nothing.
        main.handle(3, &pong(&again[1]), &mut out, 9000 * ms)
            .unwrap();
        assert_eq!(main.link(), Some(link));
        assert!(frames(&mut out).is_empty());
        // A minute on, the slow link is measured again.
        main.tick(&mut out, 30_000 * ms);
        assert!(frames(&mut out).is_empty());
        main.tick(&mut out, 61_040 * ms);
        let pings: Vec<(u16, usize)> = frames(&mut out)
            .iter()
            .map(|(t, b)| (*t, b.len()))
            .collect();
        assert_eq!(pings, [(4, 12), (4, 12 + 250 * 1024)]);
    }

    #[test]
    fn mouse_mode_requests() {
        let mut out = Outbox::new(HeaderMode::Mini);
        let mut main = MainChannel::start(setup(false), &mut out, 0);
        frames(&mut out);
        // Client mode refused without a tablet: no reply.
        main.handle(105, &[2, 0], &mut out, 0).unwrap();
        assert!(frames(&mut out).is_empty());
        assert_eq!(main.mouse_mode(), mouse_mode::SERVER);

        // With a tablet, client mode is offered and is where we start.
        let mut main = MainChannel::start(setup(true), &mut out, 0);
        let init = &frames(&mut out)[0].1;
        assert_eq!(&init[8..16], &[3, 0, 0, 0, 2, 0, 0, 0]);
        main.handle(105, &[2, 0], &mut out, 0).unwrap();
        assert!(frames(&mut out).is_empty(), "already in client mode");
        main.handle(105, &[1, 0], &mut out, 0).unwrap();
        assert_eq!(frames(&mut out), vec![(105, vec![3, 0, 1, 0])]);
        main.handle(105, &[2, 0], &mut out, 0).unwrap();
        assert_eq!(frames(&mut out), vec![(105, vec![3, 0, 2, 0])]);
        main.handle(105, &[3, 0], &mut out, 0).unwrap();
        assert!(frames(&mut out).is_empty(), "not a mode");
        assert!(main.handle(105, &[1], &mut out, 0).is_err());
    }

    #[test]
    fn the_tablet_coming_and_going_is_announced() {
        let mut out = Outbox::new(HeaderMode::Mini);
        let mut main = MainChannel::start(setup(false), &mut out, 0);
        frames(&mut out);
        main.set_client_mouse_allowed(true, &mut out);
        assert_eq!(frames(&mut out), vec![(105, vec![3, 0, 1, 0])]);
        main.handle(105, &[2, 0], &mut out, 0).unwrap();
        assert_eq!(frames(&mut out), vec![(105, vec![3, 0, 2, 0])]);
        main.set_client_mouse_allowed(true, &mut out);
        assert!(frames(&mut out).is_empty(), "no change, no message");
        // The guest's driver went away: back to server mode.
        main.set_client_mouse_allowed(false, &mut out);
        assert_eq!(frames(&mut out), vec![(105, vec![1, 0, 1, 0])]);
        assert_eq!(main.mouse_mode(), mouse_mode::SERVER);
    }

    #[test]
    fn forced_mouse_modes() {
        let mut out = Outbox::new(HeaderMode::Mini);
        for (policy, tablet, supported, current) in [
            (MousePolicy::Server, true, 1u8, 1u8),
            (MousePolicy::Client, false, 2, 2),
            (MousePolicy::Client, true, 2, 2),
        ] {
            let mut s = setup(tablet);
            s.mouse = policy;
            let mut main = MainChannel::start(s, &mut out, 0);
            let init = &frames(&mut out)[0].1;
            assert_eq!(&init[8..16], &[supported, 0, 0, 0, current, 0, 0, 0]);
            // The other mode is refused; availability changes say nothing.
            let other = if current == 1 { 2 } else { 1 };
            main.handle(105, &[other, 0], &mut out, 0).unwrap();
            main.set_client_mouse_allowed(!tablet, &mut out);
            assert!(frames(&mut out).is_empty(), "{policy:?}");
            assert_eq!(main.mouse_mode(), u16::from(current));
        }
    }

    #[test]
    fn agent_without_agent() {
        let mut out = Outbox::new(HeaderMode::Mini);
        let mut main = MainChannel::start(setup(false), &mut out, 0);
        frames(&mut out);
        main.handle(106, &[0xff; 4], &mut out, 0).unwrap();
        assert_eq!(frames(&mut out), vec![(108, vec![0, 0, 0, 0])]);
        for _ in 0..4 {
            main.handle(107, &[0; 30], &mut out, 0).unwrap();
        }
        assert!(frames(&mut out).is_empty());
        main.handle(107, &[], &mut out, 0).unwrap();
        assert_eq!(frames(&mut out), vec![(110, vec![5, 0, 0, 0])]);
        main.handle(108, &[1, 0, 0, 0], &mut out, 0).unwrap();
        assert!(main.handle(108, &[1, 0], &mut out, 0).is_err());
    }

    #[test]
    fn decodes_and_rejects() {
        assert_eq!(
            MainMessage::decode(101, &7u64.to_le_bytes()),
            Ok(MainMessage::ClientInfo { cache_size: 7 })
        );
        assert_eq!(MainMessage::decode(109, &[]), Ok(MainMessage::Ignored(109)));
        assert_eq!(
            MainMessage::decode(113, &[]),
            Err(ChannelError::UnknownType(113))
        );
        assert!(MainMessage::decode(101, &[0; 7]).is_err());
        let mut out = Outbox::new(HeaderMode::Mini);
        let mut main = MainChannel::start(setup(false), &mut out, 0);
        assert!(main.handle(999, &[], &mut out, 0).is_err());
        // Migration replies are ignored without a fuss.
        main.handle(102, &[], &mut out, 0).unwrap();
    }
}
