//! virtio-net from a hostile guest driver and a hostile network: the card
//! set up as Linux does (with or without mergeable buffers and offloads,
//! with a backend that carries the virtio-net header or not), then
//! operations from the fuzz input: chains posted on either queue
//! (addresses also past RAM, any lengths and directions), guest memory
//! written (headers, frames), frames arriving of any length, a backend
//! that fills up, the link going down and up, rounds of the I/O thread,
//! used rings read back; and
//! bytes from a broken peer into passt's frame stream. Nothing may panic
//! and what waits stays bounded.
#![no_main]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use devices::virtio::net::fake::FakeBackend;
use devices::virtio::net::transfer::MAX_FRAME;
use devices::virtio::net::{features, NetBackend, Transfer, VirtioNet, RX, TX};
use devices::virtio::test_driver::{hostile_chain, Driver};
use libfuzzer_sys::fuzz_target;
use saffron::net::stream::StreamBackend;

fn stream(bytes: &[u8]) {
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let mut s = StreamBackend::new(ours, "the fuzzer").unwrap();
    let _ = peer.write_all(&bytes[..bytes.len().min(200_000)]);
    drop(peer);
    let mut buf = vec![0u8; MAX_FRAME];
    for _ in 0..10_000 {
        match s.recv(&mut buf) {
            Ok(Some(n)) => assert!(n <= MAX_FRAME),
            Ok(None) | Err(_) => break,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    if mode == 0xff {
        stream(data);
        return;
    }
    let vnet = mode & 1 != 0;
    let mut wanted = 0;
    if mode & 2 != 0 {
        wanted |= features::MRG_RXBUF;
    }
    if mode & 4 != 0 {
        wanted |= features::OFFLOADS;
    }
    let (fake, wire) = FakeBackend::new(vnet).unwrap();
    {
        let mut w = wire.lock().unwrap();
        // Checked below, frame by frame: keep none.
        w.keep_sent = false;
        w.zero_copy = mode & 8 != 0;
    }
    let card = VirtioNet::new([0x52, 0x54, 0, 1, 2, 3], vnet).unwrap();
    let mut d = Driver::start(card, wanted);
    let mut t = Transfer::new(Box::new(fake), Arc::default());
    let mut ops = data.chunks_exact(8);
    while let Some(op) = ops.next() {
        let q = if op[1] & 1 == 0 { RX } else { TX };
        match op[0] % 8 {
            0 | 1 => {
                d.add(q, &hostile_chain(op));
                d.kick(q);
            }
            2 => d.hostile_write(op, ops.next()),
            3 => {
                let len = usize::from(u16::from_le_bytes([op[2], op[3]])) << (op[4] % 3);
                let mut w = wire.lock().unwrap();
                if w.inbound.len() < 64 {
                    w.inbound.push_back(vec![op[5]; len]);
                }
            }
            4 => wire.lock().unwrap().room = (op[2] & 1 == 0).then_some(usize::from(op[3] % 4)),
            5 => {
                let negotiated = d.device.driver_features();
                d.device
                    .with_device(|net, queues| t.pump(negotiated, net.link_up(), queues));
            }
            6 => {
                d.device.device_mut().set_link(op[2] & 1 == 0);
                d.device.config_changed();
            }
            _ => {
                d.take_used(q);
            }
        }
    }
    let counts = t.stats().counts();
    assert!(counts.tx_packets <= wire.lock().unwrap().sent as u64);
});
