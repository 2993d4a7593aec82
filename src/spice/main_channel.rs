//! The main channel (type 1): session set-up and control.
//!
//! On link the server sends `INIT` (session id, mouse modes, agent state,
//! multimedia clock) and a `PING`; the client answers `ATTACH_CHANNELS`, we
//! send `CHANNELS_LIST`, and it opens the other channels with the session
//! id as their connection id. Mouse mode requests are honoured (client
//! mode only when an absolute pointer exists). There is no guest agent
//! yet: the client is told it is disconnected, agent data is discarded and
//! its tokens returned. Migration messages are ignored (we never offer
//! migration, so clients never start one).

use super::channel::{BaseMessage, ChannelError, Encode, Outbox, Ping};
use super::protocol::{main_msg, mouse_mode};
use super::wire::{Reader, Writer};

/// Agent tokens a client starts with (`REDS_AGENT_WINDOW_SIZE`).
pub const AGENT_TOKENS: u32 = 10;
/// How many discarded agent messages are paid back at once.
const AGENT_TOKEN_BATCH: u32 = 5;
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
#[derive(Debug, Clone)]
pub struct MainSetup {
    pub session_id: u32,
    /// Every other channel, in the order clients should open them.
    pub channels: Vec<(u8, u8)>,
    pub display_channels: u32,
    /// An absolute pointing device exists: offer client mouse mode.
    pub client_mouse_allowed: bool,
    /// The server's multimedia clock now (ms).
    pub mm_time_now: u32,
}

/// The server side of one main channel connection.
#[derive(Debug)]
pub struct MainChannel {
    setup: MainSetup,
    mouse_mode: u16,
    agent_messages_unpaid: u32,
    next_ping_id: u32,
}

impl MainChannel {
    /// Queues `INIT` and a first `PING`.
    pub fn start(setup: MainSetup, out: &mut Outbox, now_ns: u64) -> MainChannel {
        let channel = MainChannel {
            mouse_mode: mouse_mode::SERVER,
            setup,
            agent_messages_unpaid: 0,
            next_ping_id: 1,
        };
        out.push(&MainInit {
            session_id: channel.setup.session_id,
            display_channels_hint: channel.setup.display_channels,
            supported_mouse_modes: u32::from(channel.supported_mouse_modes()),
            current_mouse_mode: u32::from(channel.mouse_mode),
            agent_connected: 0,
            agent_tokens: AGENT_TOKENS,
            multi_media_time: channel.setup.mm_time_now.wrapping_sub(MM_TIME_DELTA),
            ram_hint: 0,
        });
        let mut channel = channel;
        channel.ping(out, now_ns);
        channel
    }

    pub fn supported_mouse_modes(&self) -> u16 {
        if self.setup.client_mouse_allowed {
            mouse_mode::SERVER | mouse_mode::CLIENT
        } else {
            mouse_mode::SERVER
        }
    }

    pub fn mouse_mode(&self) -> u16 {
        self.mouse_mode
    }

    pub fn ping(&mut self, out: &mut Outbox, now_ns: u64) {
        out.push(&Ping {
            id: self.next_ping_id,
            timestamp: now_ns,
        });
        self.next_ping_id = self.next_ping_id.wrapping_add(1);
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
                let rtt = now_ns.saturating_sub(timestamp);
                tracing::debug!("main channel: pong {id}, round trip {} µs", rtt / 1000);
            }
            MainMessage::Base(_) | MainMessage::ClientInfo { .. } => {}
            MainMessage::AttachChannels => out.push(&ChannelsList(self.setup.channels.clone())),
            MainMessage::MouseModeRequest { mode } => {
                let allowed = match mode {
                    mouse_mode::SERVER => true,
                    mouse_mode::CLIENT => self.setup.client_mouse_allowed,
                    _ => false,
                };
                if allowed && mode != self.mouse_mode {
                    self.mouse_mode = mode;
                    out.push(&MouseMode {
                        supported: self.supported_mouse_modes(),
                        current: mode,
                    });
                }
            }
            MainMessage::AgentStart { .. } => {
                // No agent: say so (clients only start one when INIT said
                // it was connected, so this is a late or confused client).
                out.push(&AgentDisconnected { error: 0 });
            }
            MainMessage::AgentData { .. } => {
                // Nowhere to deliver it; pay the client's token back so a
                // client that believes in an agent is not starved.
                self.agent_messages_unpaid += 1;
                if self.agent_messages_unpaid >= AGENT_TOKEN_BATCH {
                    out.push(&AgentToken {
                        tokens: self.agent_messages_unpaid,
                    });
                    self.agent_messages_unpaid = 0;
                }
            }
            MainMessage::AgentToken { .. } => {}
            MainMessage::Ignored(t) => tracing::debug!("main channel: ignoring message {t}"),
        }
        Ok(())
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
            mm_time_now: 1000,
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
        assert_eq!(sent[1].0, 4);
        main.handle(104, &[], &mut out, 6).unwrap();
        let sent = frames(&mut out);
        assert_eq!(sent, vec![(104, vec![3, 0, 0, 0, 2, 0, 3, 0, 4, 0])]);
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

        let mut main = MainChannel::start(setup(true), &mut out, 0);
        let init = &frames(&mut out)[0].1;
        assert_eq!(&init[8..16], &[3, 0, 0, 0, 1, 0, 0, 0]);
        main.handle(105, &[2, 0], &mut out, 0).unwrap();
        assert_eq!(frames(&mut out), vec![(105, vec![3, 0, 2, 0])]);
        main.handle(105, &[2, 0], &mut out, 0).unwrap();
        assert!(frames(&mut out).is_empty());
        main.handle(105, &[1, 0], &mut out, 0).unwrap();
        assert_eq!(frames(&mut out), vec![(105, vec![3, 0, 1, 0])]);
        assert!(main.handle(105, &[1], &mut out, 0).is_err());
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
