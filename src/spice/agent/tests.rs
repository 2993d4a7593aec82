//! The agent between a fake port and a client, as spice-vdagent and
//! spice-gtk use it, and as hostile ones might.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use zerocopy::IntoBytes;

use super::wire::{MessageHeader, PROTOCOL};
use super::*;

const SESSION: u32 = 7;

/// A port with a guest behind it: what the agent wrote waits in
/// `from_agent`; the guest takes at most `room` bytes.
#[derive(Default)]
struct FakePort {
    open: AtomicBool,
    from_agent: Mutex<VecDeque<u8>>,
    to_agent: Mutex<Vec<u8>>,
    room: Mutex<usize>,
}

impl AgentPort for FakePort {
    fn connected(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }
    fn read(&self, buf: &mut [u8]) -> usize {
        let mut q = self.from_agent.lock().unwrap();
        let n = buf.len().min(q.len());
        for (b, v) in buf.iter_mut().zip(q.drain(..n)) {
            *b = v;
        }
        n
    }
    fn write(&self, data: &[u8]) -> usize {
        let mut room = self.room.lock().unwrap();
        let n = data.len().min(*room);
        *room -= n;
        self.to_agent.lock().unwrap().extend_from_slice(&data[..n]);
        n
    }
}

/// The layouts it was given; whether the guest's driver takes them.
#[derive(Default)]
struct Monitors(Mutex<Vec<Vec<Head>>>, AtomicBool);
impl ClientMonitors for Monitors {
    fn client_monitors(&self, heads: &[Head]) -> bool {
        self.0.lock().unwrap().push(heads.to_vec());
        self.1.load(Ordering::SeqCst)
    }
}

fn message(t: u32, data: &[u8]) -> Vec<u8> {
    let h = MessageHeader {
        protocol: PROTOCOL.into(),
        kind: t.into(),
        opaque: 0.into(),
        size: (data.len() as u32).into(),
    };
    let mut b = h.as_bytes().to_vec();
    b.extend_from_slice(data);
    b
}

fn chunk(port: u32, data: &[u8]) -> Vec<u8> {
    let mut b = port.to_le_bytes().to_vec();
    b.extend((data.len() as u32).to_le_bytes());
    b.extend_from_slice(data);
    b
}

struct Rig {
    port: Arc<FakePort>,
    monitors: Arc<Monitors>,
    agent: Agent,
}

impl Rig {
    fn new(options: AgentOptions) -> Rig {
        let port = Arc::new(FakePort::default());
        *port.room.lock().unwrap() = usize::MAX;
        let monitors = Arc::new(Monitors::default());
        let agent = Agent::new(
            AgentDevice {
                port: port.clone(),
                monitors: Some(monitors.clone()),
            },
            options,
        );
        Rig {
            port,
            monitors,
            agent,
        }
    }

    /// The guest opens the port, a client arrives and starts the agent.
    fn connected(options: AgentOptions) -> Rig {
        let mut rig = Rig::new(options);
        rig.set_open(true);
        assert!(rig.agent.client_arrived(SESSION));
        rig.agent.client_start(SESSION, 10);
        rig
    }

    fn set_open(&mut self, open: bool) {
        self.port.open.store(open, Ordering::SeqCst);
        self.agent.service();
    }

    fn guest_writes(&mut self, bytes: &[u8]) {
        self.port.from_agent.lock().unwrap().extend(bytes);
        self.agent.service();
    }

    fn to_agent(&self) -> Vec<u8> {
        std::mem::take(&mut self.port.to_agent.lock().unwrap())
    }

    fn sent_to_client(&mut self) -> Vec<ToClient> {
        self.agent.take_for_client(SESSION)
    }
}

#[test]
fn the_agent_comes_and_goes() {
    let mut rig = Rig::new(AgentOptions::default());
    assert!(!rig.agent.client_arrived(SESSION));
    rig.set_open(true);
    assert_eq!(rig.sent_to_client(), vec![ToClient::Connected]);
    assert!(rig.agent.status().connected);
    rig.set_open(false);
    assert_eq!(rig.sent_to_client(), vec![ToClient::Disconnected]);
    assert!(!rig.agent.status().connected);
}

#[test]
fn client_messages_reach_the_agent_as_chunks_and_tokens_come_back() {
    let mut rig = Rig::connected(AgentOptions::default());
    let grab = message(kind::CLIPBOARD_GRAB, &1u32.to_le_bytes());
    for i in 0..5 {
        rig.agent.client_data(SESSION, &grab).unwrap();
        assert_eq!(rig.to_agent(), chunk(wire::CLIENT_PORT, &grab), "{i}");
    }
    assert_eq!(rig.sent_to_client(), vec![ToClient::Tokens(5)]);
    // A message over several AGENT_DATA.
    let text = vec![b'x'; 3000];
    let whole = message(kind::CLIPBOARD, &text);
    for piece in whole.chunks(MAX_DATA_SIZE) {
        rig.agent.client_data(SESSION, piece).unwrap();
    }
    let mut expected = chunk(wire::CLIENT_PORT, &whole[..2048]);
    expected.extend(chunk(wire::CLIENT_PORT, &whole[2048..]));
    assert_eq!(rig.to_agent(), expected);
}

#[test]
fn a_slow_guest_holds_tokens_back() {
    let mut rig = Rig::connected(AgentOptions::default());
    *rig.port.room.lock().unwrap() = 0;
    let grab = message(kind::CLIPBOARD_RELEASE, &[]);
    for _ in 0..10 {
        rig.agent.client_data(SESSION, &grab).unwrap();
    }
    assert!(rig.sent_to_client().is_empty());
    // An eleventh message without a token cuts the client off.
    assert_eq!(
        rig.agent.client_data(SESSION, &grab),
        Err(AgentError::NoToken)
    );
    // The guest takes them: the window opens again.
    *rig.port.room.lock().unwrap() = usize::MAX;
    rig.agent.service();
    assert_eq!(rig.to_agent().len(), 10 * (8 + 20));
    assert_eq!(rig.sent_to_client(), vec![ToClient::Tokens(10)]);
}

#[test]
fn bad_client_data_is_refused() {
    let mut rig = Rig::connected(AgentOptions::default());
    assert_eq!(
        rig.agent.client_data(SESSION, &[0; 2049]),
        Err(AgentError::TooLarge(2049))
    );
    assert!(matches!(
        rig.agent.client_data(SESSION, &[1, 0, 0]),
        Err(AgentError::Stream(_))
    ));
    // Another session's main channel is not heard.
    rig.agent.client_data(SESSION + 1, &[1, 0, 0]).unwrap();
    assert!(rig.to_agent().is_empty());
}

#[test]
fn agent_messages_reach_the_client_in_pieces_as_tokens_allow() {
    let mut rig = Rig::new(AgentOptions::default());
    rig.set_open(true);
    rig.agent.client_arrived(SESSION);
    rig.agent.client_start(SESSION, 2);
    let text: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let whole = message(kind::CLIPBOARD, &text);
    rig.guest_writes(&chunk(wire::CLIENT_PORT, &whole));
    let got = rig.sent_to_client();
    assert_eq!(
        got,
        vec![
            ToClient::Data(whole[..2048].to_vec()),
            ToClient::Data(whole[2048..4096].to_vec())
        ]
    );
    assert!(rig.sent_to_client().is_empty(), "no tokens left");
    rig.agent.client_tokens(SESSION, 5);
    assert_eq!(
        rig.sent_to_client(),
        vec![ToClient::Data(whole[4096..].to_vec())]
    );
    assert_eq!(rig.agent.status().pieces_to_client, 3);
}

#[test]
fn a_client_without_tokens_leaves_the_agent_blocked_not_buffered() {
    let mut rig = Rig::connected(AgentOptions::default());
    rig.agent.client_start(SESSION, 0);
    let big = message(kind::CLIPBOARD, &vec![7; 100_000]);
    rig.guest_writes(&chunk(wire::CLIENT_PORT, &big));
    assert!(rig.sent_to_client().is_empty());
    let waiting = rig.port.from_agent.lock().unwrap().len();
    assert!(
        waiting > 100_000 - (CLIENT_QUEUE + 4) * MAX_DATA_SIZE,
        "the port is left unread: {waiting} bytes wait"
    );
}

#[test]
fn without_a_listening_client_the_agents_output_is_dropped() {
    let mut rig = Rig::new(AgentOptions::default());
    rig.set_open(true);
    rig.guest_writes(&chunk(wire::CLIENT_PORT, &message(kind::REPLY, &[0; 8])));
    assert!(rig.port.from_agent.lock().unwrap().is_empty());
    rig.agent.client_arrived(SESSION);
    rig.agent.client_start(SESSION, 10);
    assert_eq!(rig.sent_to_client(), vec![]);
    let reply = message(kind::REPLY, &[0; 8]);
    rig.guest_writes(&chunk(wire::CLIENT_PORT, &reply));
    assert_eq!(rig.sent_to_client(), vec![ToClient::Data(reply)]);
}

#[test]
fn a_garbled_agent_is_cut_off_until_it_reopens() {
    let mut rig = Rig::connected(AgentOptions::default());
    rig.guest_writes(&chunk(9, b"junk"));
    assert_eq!(rig.sent_to_client(), vec![ToClient::Disconnected]);
    assert!(!rig.agent.attached());
    rig.guest_writes(&chunk(wire::CLIENT_PORT, &message(kind::REPLY, &[])));
    assert!(rig.sent_to_client().is_empty());
    assert!(rig.port.from_agent.lock().unwrap().is_empty(), "drained");
    rig.set_open(false);
    rig.set_open(true);
    assert_eq!(rig.sent_to_client(), vec![ToClient::Connected]);
    // A message stream that breaks (a piece past its message's end).
    rig.agent.client_start(SESSION, 10);
    let mut two = message(kind::REPLY, &[0; 8]);
    two.extend(message(kind::REPLY, &[0; 8]));
    rig.guest_writes(&chunk(wire::CLIENT_PORT, &two));
    assert_eq!(rig.sent_to_client(), vec![ToClient::Disconnected]);
}

#[test]
fn server_port_chunks_and_unknown_types_are_dropped() {
    let mut rig = Rig::connected(AgentOptions::default());
    rig.guest_writes(&chunk(wire::SERVER_PORT, &message(kind::REPLY, &[])));
    rig.guest_writes(&chunk(wire::CLIENT_PORT, &message(999, &[1, 2, 3])));
    rig.guest_writes(&chunk(wire::CLIENT_PORT, &message(kind::MOUSE_STATE, &[])));
    assert!(rig.sent_to_client().is_empty());
    assert!(rig.agent.attached());
    assert_eq!(rig.agent.status().discarded, 2);
}

#[test]
fn disabled_copy_paste_and_file_transfer() {
    let options = AgentOptions {
        copy_paste: false,
        file_transfer: false,
        ..AgentOptions::default()
    };
    let mut rig = Rig::connected(options);
    // The agent's capabilities are edited on the way.
    let caps = (1u32 << wire::cap::CLIPBOARD_BY_DEMAND) | (1 << wire::cap::MOUSE_STATE);
    let mut body = 1u32.to_le_bytes().to_vec();
    body.extend(caps.to_le_bytes());
    rig.guest_writes(&chunk(
        wire::CLIENT_PORT,
        &message(kind::ANNOUNCE_CAPABILITIES, &body),
    ));
    let sent = rig.sent_to_client();
    let [ToClient::Data(announce)] = &sent[..] else {
        panic!("{sent:?}")
    };
    let word = u32::from_le_bytes(announce[24..28].try_into().unwrap());
    assert_eq!(
        word,
        (1 << wire::cap::MOUSE_STATE) | (1 << wire::cap::FILE_XFER_DISABLED)
    );
    assert_eq!(rig.agent.status().caps, vec![caps]);
    // Clipboard and file transfer go nowhere, both ways, and are paid for.
    rig.guest_writes(&chunk(
        wire::CLIENT_PORT,
        &message(kind::CLIPBOARD_GRAB, &[1, 0, 0, 0]),
    ));
    assert!(rig.sent_to_client().is_empty());
    for t in [
        kind::CLIPBOARD_GRAB,
        kind::CLIPBOARD,
        kind::FILE_XFER_START,
        kind::FILE_XFER_DATA,
        kind::CLIPBOARD_RELEASE,
    ] {
        rig.agent
            .client_data(SESSION, &message(t, &[0; 12]))
            .unwrap();
    }
    assert!(rig.to_agent().is_empty());
    assert_eq!(rig.sent_to_client(), vec![ToClient::Tokens(5)]);
}

#[test]
fn the_agent_hears_when_the_client_leaves() {
    let mut rig = Rig::connected(AgentOptions::default());
    *rig.port.room.lock().unwrap() = 10;
    let grab = message(kind::CLIPBOARD_GRAB, &1u32.to_le_bytes());
    rig.agent.client_data(SESSION, &grab).unwrap();
    rig.agent.client_data(SESSION, &grab).unwrap();
    rig.agent.client_gone(SESSION);
    *rig.port.room.lock().unwrap() = usize::MAX;
    rig.agent.service();
    // The chunk begun is finished, the one not begun dropped, then the
    // server's "client disconnected".
    let mut expected = chunk(wire::CLIENT_PORT, &grab);
    expected.extend(chunk(
        wire::SERVER_PORT,
        &message(kind::CLIENT_DISCONNECTED, &[]),
    ));
    assert_eq!(rig.to_agent(), expected);
}

#[test]
fn mouse_states_merge_but_keep_button_changes() {
    let mut rig = Rig::connected(AgentOptions::default());
    *rig.port.room.lock().unwrap() = 0;
    rig.agent.mouse_state(0, 1, 1, 0);
    rig.agent.mouse_state(0, 2, 2, 0);
    rig.agent.mouse_state(0, 3, 3, 2);
    rig.agent.mouse_state(0, 3, 3, 0);
    rig.agent.mouse_state(0, 9, 9, 0);
    *rig.port.room.lock().unwrap() = usize::MAX;
    rig.agent.service();
    let state = |x: u32, b: u32| {
        let s = MouseState {
            x: x.into(),
            y: x.into(),
            buttons: b.into(),
            display_id: 0,
        };
        wire::server_message(kind::MOUSE_STATE, s.as_bytes())
    };
    // The first was on its way; of the rest, positions with the same
    // buttons merged into the last of them.
    let expected: Vec<u8> = [state(1, 0), state(2, 0), state(3, 2), state(9, 0)].concat();
    assert_eq!(rig.to_agent(), expected);
    // Without the agent-mouse option nothing goes.
    let mut rig = Rig::connected(AgentOptions {
        mouse: false,
        ..AgentOptions::default()
    });
    assert!(!rig.agent.carries_mouse());
    rig.agent.mouse_state(0, 1, 1, 0);
    assert!(rig.to_agent().is_empty());
}

#[test]
fn monitors_configs_also_go_to_the_display_device() {
    let mut rig = Rig::connected(AgentOptions::default());
    let mut body = 2u32.to_le_bytes().to_vec();
    body.extend(0u32.to_le_bytes());
    for (w, h, x) in [(1280u32, 800u32, 0i32), (0, 0, 1280)] {
        body.extend(h.to_le_bytes());
        body.extend(w.to_le_bytes());
        body.extend(32u32.to_le_bytes());
        body.extend(x.to_le_bytes());
        body.extend(0i32.to_le_bytes());
    }
    let m = message(kind::MONITORS_CONFIG, &body);
    rig.agent.client_data(SESSION, &m).unwrap();
    assert_eq!(rig.to_agent(), chunk(wire::CLIENT_PORT, &m));
    assert_eq!(
        *rig.monitors.0.lock().unwrap(),
        vec![vec![(0, 0, 1280, 800)]]
    );
    // A guest whose display driver takes layouts: the agent is not told,
    // the token still comes back.
    rig.monitors.1.store(true, Ordering::SeqCst);
    rig.agent.client_data(SESSION, &m).unwrap();
    assert!(rig.to_agent().is_empty());
    assert_eq!(rig.monitors.0.lock().unwrap().len(), 2);
    assert!(rig.sent_to_client().contains(&ToClient::Tokens(2)));
    rig.monitors.1.store(false, Ordering::SeqCst);
    // One in two pieces reaches the agent whole.
    rig.agent.client_data(SESSION, &m[..30]).unwrap();
    rig.agent.client_data(SESSION, &m[30..]).unwrap();
    assert_eq!(rig.to_agent(), chunk(wire::CLIENT_PORT, &m));
    // An agent that does not read keeps only the latest layout queued,
    // however many the client sends.
    *rig.port.room.lock().unwrap() = 0;
    for _ in 0..100 {
        rig.agent.client_data(SESSION, &m).unwrap();
        rig.sent_to_client();
    }
    let queued = rig.agent.to_guest.iter().filter(|o| o.monitors).count();
    assert_eq!(queued, 1);
    *rig.port.room.lock().unwrap() = usize::MAX;
    rig.agent.service();
    assert_eq!(rig.to_agent(), chunk(wire::CLIENT_PORT, &m));
    // One that claims more than the bound is refused.
    let huge = message(kind::MONITORS_CONFIG, &vec![0; MAX_MONITORS_CONFIG]);
    let mut result = Ok(());
    for piece in huge.chunks(MAX_DATA_SIZE) {
        result = rig.agent.client_data(SESSION, piece);
        if result.is_err() {
            break;
        }
        rig.agent.client_tokens(SESSION, 0);
        rig.sent_to_client();
    }
    assert_eq!(result, Err(AgentError::MonitorsConfigTooLarge));
}

#[test]
fn pieces_of_a_message_begun_before_the_start_are_dropped() {
    let mut rig = Rig::new(AgentOptions::default());
    rig.set_open(true);
    rig.agent.client_arrived(SESSION);
    // The first piece of a 2100-byte monitors config before AGENT_START,
    // the rest after it: nothing reaches the agent or QXL, nothing panics.
    let m = message(kind::MONITORS_CONFIG, &[0; 2080]);
    rig.agent.client_data(SESSION, &m[..2048]).unwrap();
    rig.agent.client_start(SESSION, 10);
    rig.agent.client_data(SESSION, &m[2048..]).unwrap();
    assert!(rig.to_agent().is_empty());
    assert!(rig.monitors.0.lock().unwrap().is_empty());
    // The next message goes through.
    let grab = message(kind::CLIPBOARD_GRAB, &1u32.to_le_bytes());
    rig.agent.client_data(SESSION, &grab).unwrap();
    assert_eq!(rig.to_agent(), chunk(wire::CLIENT_PORT, &grab));
}

#[test]
fn a_new_session_ends_the_old_clients_part() {
    let mut rig = Rig::connected(AgentOptions::default());
    rig.to_agent();
    rig.agent.client_arrived(SESSION + 1);
    assert_eq!(
        rig.to_agent(),
        chunk(wire::SERVER_PORT, &message(kind::CLIENT_DISCONNECTED, &[]))
    );
    // The old main channel closing later changes nothing.
    rig.agent.client_gone(SESSION);
    assert!(rig.to_agent().is_empty());
}

#[test]
fn a_flooding_agent_is_read_a_bounded_amount_per_service() {
    let mut rig = Rig::new(AgentOptions::default());
    rig.set_open(true);
    let reply = chunk(wire::CLIENT_PORT, &message(kind::REPLY, &[0; 8]));
    let flood: Vec<u8> = reply
        .iter()
        .copied()
        .cycle()
        .take(reply.len() * 40_000)
        .collect();
    rig.guest_writes(&flood);
    assert!(rig.agent.more_to_read());
    assert!(!rig.port.from_agent.lock().unwrap().is_empty());
    while rig.agent.more_to_read() {
        rig.agent.service();
    }
    assert!(rig.port.from_agent.lock().unwrap().is_empty());
}

#[test]
fn monitors_keep_the_clients_numbering() {
    let body = |heads: &[(u32, u32, i32)]| {
        let mut body = (heads.len() as u32).to_le_bytes().to_vec();
        body.extend(0u32.to_le_bytes());
        for &(w, h, x) in heads {
            for v in [h, w, 32] {
                body.extend(v.to_le_bytes());
            }
            body.extend(x.to_le_bytes());
            body.extend(0i32.to_le_bytes());
        }
        body
    };
    // Head 1 turned off between two on: it keeps its place.
    assert_eq!(
        super::parse_monitors(&body(&[(1024, 768, 0), (0, 0, 0), (800, 600, 2048)])),
        vec![(0, 0, 1024, 768), (0, 0, 0, 0), (2048, 0, 800, 600)]
    );
    // A count larger than the heads sent, and turned-off heads at the end.
    let mut short = body(&[(640, 480, 0), (0, 480, 640)]);
    short[..4].copy_from_slice(&99u32.to_le_bytes());
    assert_eq!(super::parse_monitors(&short), vec![(0, 0, 640, 480)]);
}
