//! The guest agent's traffic from both ends: a hostile guest's byte stream
//! on the agent port and a hostile client's agent messages, interleaved as
//! the input says. The agent must never panic or send a client piece over
//! 2048 bytes.
#![no_main]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use saffron::spice::agent::{Agent, AgentDevice, AgentOptions, AgentPort, ToClient};

#[derive(Default)]
struct FuzzPort {
    open: AtomicBool,
    from_guest: Mutex<VecDeque<u8>>,
    room: AtomicUsize,
}

impl AgentPort for FuzzPort {
    fn connected(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }
    fn read(&self, buf: &mut [u8]) -> usize {
        let mut q = self.from_guest.lock().unwrap();
        let n = buf.len().min(q.len());
        for (b, v) in buf.iter_mut().zip(q.drain(..n)) {
            *b = v;
        }
        n
    }
    fn write(&self, data: &[u8]) -> usize {
        let n = data.len().min(self.room.load(Ordering::Relaxed));
        self.room.fetch_sub(n, Ordering::Relaxed);
        n
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let port = Arc::new(FuzzPort::default());
    port.open.store(true, Ordering::Relaxed);
    port.room.store(usize::MAX, Ordering::Relaxed);
    let options = AgentOptions {
        enabled: true,
        mouse: flags & 1 != 0,
        copy_paste: flags & 2 != 0,
        file_transfer: flags & 4 != 0,
    };
    let device = AgentDevice {
        port: port.clone(),
        monitors: None,
    };
    let mut agent = Agent::new(device, options);
    let mut session = 1;
    agent.service();
    agent.client_arrived(session);
    // Each step: an operation byte, a length byte, that many bytes.
    while rest.len() >= 2 {
        let (op, len) = (rest[0], usize::from(rest[1]) * 16);
        let payload = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        let word = payload
            .get(..4)
            .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()));
        match op % 8 {
            0 => {
                port.from_guest.lock().unwrap().extend(payload);
                agent.service();
            }
            1 => {
                if agent.client_data(session, payload).is_err() {
                    agent.client_gone(session);
                    session += 1;
                    agent.client_arrived(session);
                }
            }
            2 => agent.client_start(session, word),
            3 => agent.client_tokens(session, word),
            4 => {
                for m in agent.take_for_client(session) {
                    if let ToClient::Data(d) = m {
                        assert!(d.len() <= 2048, "a piece of {} bytes", d.len());
                    }
                }
            }
            5 => {
                port.open.fetch_xor(true, Ordering::Relaxed);
                agent.service();
            }
            6 => agent.mouse_state(0, word, word >> 3, word & 0xfe),
            _ => port.room.store(
                if word & 1 == 0 { 0 } else { usize::MAX },
                Ordering::Relaxed,
            ),
        }
    }
});
