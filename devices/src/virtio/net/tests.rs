use std::sync::{Arc, Mutex};

use super::fake::{FakeBackend, Wire};
use super::header::{self, NetHeader, F_NEEDS_CSUM, GSO_TCPV4};
use super::transfer::MAX_FRAME;
use super::*;
use crate::virtio::test_driver::{Driver, DATA};
use zerocopy::IntoBytes;

struct Card {
    d: Driver<VirtioNet>,
    t: Transfer,
    wire: Arc<Mutex<Wire>>,
}

fn card(vnet: bool, features: u64) -> Card {
    let (fake, wire) = FakeBackend::new(vnet).unwrap();
    let net = VirtioNet::new([0x52, 0x54, 0, 0x12, 0x34, 0x56], vnet).unwrap();
    let d = Driver::start(net, features);
    let t = Transfer::new(Box::new(fake), Arc::default());
    Card { d, t, wire }
}

impl Card {
    fn pump(&mut self) -> Progress {
        let negotiated = self.d.device.driver_features();
        let t = &mut self.t;
        self.d
            .device
            .with_device(|net, q| t.pump(negotiated, net.link_up(), q))
    }
    fn counts(&self) -> NetCounts {
        self.t.stats().counts()
    }
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
        .collect()
}

#[test]
fn config_space_has_the_mac_and_an_up_link() {
    let mut c = card(false, features::MAC | features::STATUS);
    assert_eq!(c.d.config(0, 6), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    assert_eq!(c.d.config(6, 2), [1, 0]);
    let offered = c.d.device.device().device_features();
    assert_eq!(
        offered & features::OFFLOADS,
        0,
        "no offloads without a vnet header"
    );
    assert_ne!(
        card(true, 0).d.device.device().device_features() & features::HOST_TSO4,
        0
    );
}

#[test]
fn a_transmitted_frame_reaches_the_backend_without_its_header() {
    let mut c = card(false, features::MRG_RXBUF);
    let f = frame(100, 7);
    c.d.write(DATA, &[0u8; header::SIZE]);
    c.d.write(DATA + 0x1000, &f);
    let head =
        c.d.add(TX, &[(DATA, 12, false), (DATA + 0x1000, 100, false)]);
    c.d.kick(TX);
    c.pump();
    assert_eq!(c.wire.lock().unwrap().outbound, vec![f]);
    assert_eq!(c.d.take_used(TX), vec![(head, 0)]);
    let n = c.counts();
    assert_eq!((n.tx_packets, n.tx_bytes, n.tx_refused), (1, 100, 0));
}

#[test]
fn a_received_frame_fills_one_buffer_with_a_header() {
    let mut c = card(false, features::MRG_RXBUF);
    let f = frame(1000, 3);
    c.wire.lock().unwrap().inbound.push_back(f.clone());
    let head = c.d.add(RX, &[(DATA, 2048, true)]);
    c.pump();
    assert_eq!(c.d.take_used(RX), vec![(head, 1012)]);
    let got = c.d.read(DATA, 1012);
    let mut want = [0u8; 12];
    want[10] = 1; // num_buffers
    assert_eq!(got[..12], want);
    assert_eq!(got[12..], f[..]);
}

#[test]
fn a_big_frame_spreads_over_mergeable_buffers() {
    let mut c = card(false, features::MRG_RXBUF);
    let f = frame(60_000, 5);
    c.wire.lock().unwrap().inbound.push_back(f.clone());
    let heads: Vec<u16> = (0..20)
        .map(|i| c.d.add(RX, &[(DATA + i * 0x1000, 4096, true)]))
        .collect();
    c.pump();
    let used = c.d.take_used(RX);
    let chains = (60_012usize).div_ceil(4096);
    assert_eq!(used.len(), chains);
    assert_eq!(used[0], (heads[0], 4096));
    let mut got = Vec::new();
    for (i, &(_, len)) in used.iter().enumerate() {
        got.extend(c.d.read(DATA + i as u64 * 0x1000, len as usize));
    }
    assert_eq!(u16::from_le_bytes([got[10], got[11]]) as usize, chains);
    assert_eq!(got[12..], f[..]);
    // The buffers left over stay for the next frame.
    c.wire.lock().unwrap().inbound.push_back(frame(64, 9));
    c.pump();
    assert_eq!(c.d.take_used(RX), vec![(heads[chains], 76)]);
}

#[test]
fn a_frame_over_several_buffers_becomes_used_at_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use vm_memory::{Bytes, GuestAddress};
    let mut c = card(false, features::MRG_RXBUF);
    // A driver polling the used index (Linux's NAPI on another vCPU) must
    // never see part of a frame's buffers used: it would drop the frame.
    let (mem, at) = (c.d.mem.clone(), GuestAddress(c.d.used_index_addr(RX)));
    let stop = Arc::new(AtomicBool::new(false));
    let watching = stop.clone();
    let watcher = std::thread::spawn(move || {
        while !watching.load(Ordering::Relaxed) {
            let idx: u16 = mem.load(at, Ordering::Acquire).unwrap();
            if !idx.is_multiple_of(3) {
                return Some(idx);
            }
        }
        None
    });
    for round in 0..400u64 {
        c.wire.lock().unwrap().inbound.push_back(frame(10_000, 3));
        for i in 0..3 {
            c.d.add(RX, &[(DATA + (round % 8 * 3 + i) * 0x1000, 4096, true)]);
        }
        c.pump();
        assert_eq!(c.d.take_used(RX).len(), 3);
        // EVENT_IDX: the driver hears of the frame when it asked to (its
        // used_event, moved on each round as a driver re-arming does, lies
        // among the three entries), and only then.
        assert_eq!(c.d.isr() & 1, u8::from(round % 2 == 0), "round {round}");
        let used = (round as u16 + 1) * 3;
        let asked = if round % 2 == 1 { used + 1 } else { used + 5 };
        c.d.set_used_event(RX, asked);
    }
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        watcher.join().unwrap(),
        None,
        "a frame's buffers were seen partly used"
    );
}

#[test]
fn without_mergeable_buffers_a_frame_too_big_for_one_is_dropped() {
    let mut c = card(false, 0);
    c.wire.lock().unwrap().inbound.push_back(frame(3000, 1));
    c.wire.lock().unwrap().inbound.push_back(frame(500, 2));
    let head = c.d.add(RX, &[(DATA, 1536, true)]);
    c.pump();
    // The big one is dropped, the buffer kept for the small one.
    assert_eq!(c.d.take_used(RX), vec![(head, 512)]);
    assert_eq!(c.counts().rx_dropped, 1);
}

#[test]
fn a_frame_waits_for_buffers_and_the_backend_is_not_read_meanwhile() {
    let mut c = card(false, features::MRG_RXBUF);
    for i in 0..3 {
        c.wire.lock().unwrap().inbound.push_back(frame(4000, i + 1));
    }
    let p = c.pump();
    assert!(!p.want_read, "no buffers: do not wait on the backend");
    assert_eq!(
        c.wire.lock().unwrap().inbound.len(),
        2,
        "one frame taken, held"
    );
    // Half the room it needs: still waiting, nothing used.
    c.d.add(RX, &[(DATA, 2048, true)]);
    c.d.kick(RX);
    c.pump();
    assert!(c.d.take_used(RX).is_empty());
    c.d.add(RX, &[(DATA + 0x1000, 2048, true)]);
    c.d.kick(RX);
    c.pump();
    assert_eq!(c.d.take_used(RX).iter().map(|u| u.1).sum::<u32>(), 4012);
    assert_eq!(c.counts().rx_packets, 1);
    assert_eq!(c.counts().rx_dropped, 0);
}

#[test]
fn a_full_backend_keeps_the_frame_and_the_queue() {
    let mut c = card(false, 0);
    c.wire.lock().unwrap().room = Some(1);
    for i in 0..3u64 {
        c.d.write(DATA + i * 0x1000 + 12, &frame(60, i as u8 + 1));
        c.d.add(TX, &[(DATA + i * 0x1000, 72, false)]);
    }
    c.d.kick(TX);
    let p = c.pump();
    assert!(p.want_write);
    assert_eq!(c.wire.lock().unwrap().outbound.len(), 1);
    assert_eq!(c.d.take_used(TX).len(), 2, "the second waits in the device");
    c.wire.lock().unwrap().room = None;
    c.pump();
    let out = c.wire.lock().unwrap().outbound.clone();
    assert_eq!(out, vec![frame(60, 1), frame(60, 2), frame(60, 3)]);
    assert_eq!(c.d.take_used(TX).len(), 1);
}

#[test]
fn a_reset_drops_the_frame_that_waited_for_the_backend() {
    let mut c = card(false, 0);
    c.wire.lock().unwrap().room = Some(0);
    c.d.write(DATA + 12, &frame(60, 1));
    c.d.add(TX, &[(DATA, 72, false)]);
    c.d.kick(TX);
    assert!(c.pump().want_write, "the frame waits for room");
    c.d.set_status(0);
    let p = c.pump();
    assert!(!p.want_write && !p.want_read && !p.more, "{p:?}");
    c.wire.lock().unwrap().room = None;
    c.pump();
    assert!(
        c.wire.lock().unwrap().outbound.is_empty(),
        "the old frame was sent"
    );
}

#[test]
fn hostile_transmit_chains_are_returned_and_counted() {
    let mut c = card(false, features::MRG_RXBUF);
    let csum = NetHeader {
        flags: F_NEEDS_CSUM,
        ..Default::default()
    };
    c.d.write(DATA, csum.as_bytes());
    let bad = [
        vec![(DATA, 12, false), (DATA + 0x100, 64, true)], // writable
        vec![(1 << 40, 76, false)],                        // outside RAM
        vec![(DATA, 76, false)],                           // NEEDS_CSUM, not offered
        vec![(DATA + 0x2000, 8, false)],                   // shorter than a header
        vec![(DATA + 0x2000, 20, false)],                  // shorter than Ethernet
        vec![(DATA + 0x2000, MAX_FRAME as u32 + 13, false)], // too long
    ];
    for chain in &bad {
        c.d.add(TX, chain);
    }
    c.d.kick(TX);
    c.pump();
    assert_eq!(c.d.take_used(TX).len(), bad.len());
    let n = c.counts();
    assert_eq!((n.tx_packets, n.tx_refused), (0, bad.len() as u64));
    assert!(c.wire.lock().unwrap().outbound.is_empty());
    // The card still works.
    c.d.write(DATA + 0x3000, &[0u8; 12]);
    c.d.add(TX, &[(DATA + 0x3000, 80, false)]);
    c.d.kick(TX);
    c.pump();
    assert_eq!(c.counts().tx_packets, 1);
}

#[test]
fn hostile_receive_chains_drop_the_frame_and_keep_the_card() {
    let mut c = card(false, features::MRG_RXBUF);
    c.wire.lock().unwrap().inbound.push_back(frame(100, 1));
    c.d.add(RX, &[(DATA, 64, false)]); // readable
    c.pump();
    assert_eq!(c.d.take_used(RX).len(), 1);
    c.wire.lock().unwrap().inbound.push_back(frame(100, 2));
    c.d.add(RX, &[(1 << 40, 4096, true)]); // outside RAM
    c.d.kick(RX);
    c.pump();
    assert_eq!(c.d.take_used(RX).len(), 1);
    assert_eq!(c.counts().rx_dropped, 2);
    c.wire.lock().unwrap().inbound.push_back(frame(100, 3));
    c.d.add(RX, &[(DATA, 4096, true)]);
    c.d.kick(RX);
    c.pump();
    assert_eq!(c.d.take_used(RX), vec![(2, 112)]);
}

#[test]
fn a_failed_backend_is_reported_and_frames_are_dropped() {
    let mut c = card(false, 0);
    c.wire.lock().unwrap().broken = true;
    c.d.add(RX, &[(DATA, 4096, true)]);
    let p = c.pump();
    assert!(c.counts().backend_failed);
    assert!(!p.want_read && !p.want_write);
    c.d.write(DATA + 0x1000, &[0u8; 12]);
    c.d.add(TX, &[(DATA + 0x1000, 80, false)]);
    c.d.kick(TX);
    c.pump();
    assert_eq!(
        c.d.take_used(TX).len(),
        1,
        "transmit chains still come back"
    );
}

#[test]
fn with_a_vnet_header_offloads_pass_through() {
    let f = features::MRG_RXBUF | features::OFFLOADS;
    let mut c = card(true, f);
    let mut tso = NetHeader {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        ..Default::default()
    };
    tso.gso_size.set(1448);
    tso.csum_start.set(34);
    tso.csum_offset.set(16);
    c.d.write(DATA, tso.as_bytes());
    c.d.write(DATA + 12, &frame(3000, 4));
    c.d.add(TX, &[(DATA, 3012, false)]);
    c.d.kick(TX);
    c.pump();
    let w = c.wire.lock().unwrap();
    assert_eq!(w.outbound.len(), 1);
    assert_eq!(w.outbound[0][..12], *tso.as_bytes());
    let all = Offloads {
        csum: true,
        tso4: true,
        tso6: true,
        ecn: true,
    };
    assert_eq!(w.offloads, vec![all]);
}

#[test]
fn gso_the_guest_did_not_negotiate_is_refused() {
    let mut c = card(true, features::CSUM);
    let mut tso = NetHeader {
        gso_type: GSO_TCPV4,
        ..Default::default()
    };
    tso.gso_size.set(1448);
    c.d.write(DATA, tso.as_bytes());
    c.d.add(TX, &[(DATA, 112, false)]);
    c.d.kick(TX);
    c.pump();
    assert_eq!(c.counts().tx_refused, 1);
}

#[test]
fn with_the_link_down_nothing_moves_and_the_driver_hears_of_it() {
    let mut c = card(false, features::MRG_RXBUF);
    let generation = c.d.config_generation();
    c.d.device.device_mut().set_link(false);
    c.d.device.config_changed();
    assert_eq!(c.d.config(6, 2), [0, 0]);
    assert_ne!(c.d.config_generation(), generation);
    c.wire.lock().unwrap().inbound.push_back(frame(100, 1));
    c.d.add(RX, &[(DATA, 4096, true)]);
    c.d.write(DATA + 0x1000, &[0u8; 12]);
    c.d.add(TX, &[(DATA + 0x1000, 80, false)]);
    c.d.kick(TX);
    let p = c.pump();
    assert!(!p.want_read);
    assert_eq!(c.d.take_used(TX).len(), 1, "transmit chains come back");
    assert!(c.d.take_used(RX).is_empty());
    assert!(c.wire.lock().unwrap().outbound.is_empty());
    assert_eq!(
        c.wire.lock().unwrap().inbound.len(),
        1,
        "the backend keeps its frames"
    );
    c.d.device.device_mut().set_link(true);
    c.pump();
    assert_eq!(c.d.take_used(RX), vec![(0, 112)]);
}

#[test]
fn mac_addresses_parse() {
    assert_eq!(
        parse_mac("52:54:00:ab:CD:ef"),
        Some([0x52, 0x54, 0, 0xab, 0xcd, 0xef])
    );
    for bad in [
        "52:54:00:ab:cd",
        "52:54:00:ab:cd:ef:01",
        "5:54:00:ab:cd:ef",
        "zz:54:00:ab:cd:ef",
    ] {
        assert_eq!(parse_mac(bad), None, "{bad}");
    }
    assert!(!is_unicast(&[1, 0, 0, 0, 0, 0]));
    assert!(!is_unicast(&[0; 6]));
}

#[test]
fn kicks_of_both_queues_may_come_as_ioeventfds() {
    use crate::pci::PciDevice;
    use crate::virtio::pci::{NOTIFY_MULTIPLIER, NOTIFY_OFFSET};
    let c = card(false, 0);
    let events = c.d.device.bar_events(0);
    let offsets: Vec<u64> = events.iter().map(|(at, _)| *at).collect();
    let stride = u64::from(NOTIFY_MULTIPLIER);
    assert_eq!(offsets, [NOTIFY_OFFSET, NOTIFY_OFFSET + stride]);
    assert!(c.d.device.bar_events(2).is_empty());
    // The I/O thread's wake-up is that event (DRIVER_OK woke it already).
    let wake = c.d.device.device().wake_handle();
    wake.clear();
    events[1].1.write(1).unwrap();
    assert_eq!(wake.event().read().unwrap(), 1);
}

#[test]
fn frames_go_straight_from_guest_memory_with_the_checked_header() {
    let mut c = card(true, features::OFFLOADS);
    c.wire.lock().unwrap().zero_copy = true;
    let f = frame(3000, 6);
    let mut hdr = [0u8; 12];
    hdr[10] = 0x55; // num_buffers: ignored on transmit, passed as given
    c.d.write(DATA, &hdr);
    c.d.write(DATA + 12, &f[..1000]);
    c.d.write(DATA + 0x2000, &f[1000..]);
    c.d.add(TX, &[(DATA, 1012, false), (DATA + 0x2000, 2000, false)]);
    c.d.kick(TX);
    c.pump();
    let w = c.wire.lock().unwrap();
    assert_eq!(w.from_guest, 1);
    assert_eq!(w.outbound[0][..12], hdr);
    assert_eq!(w.outbound[0][12..], f[..]);
}

#[test]
fn a_flow_of_frames_lingers_instead_of_asking_for_kicks() {
    let mut c = card(false, features::MRG_RXBUF);
    let send = |c: &mut Card, seed: u8| {
        c.d.write(DATA, &[0u8; header::SIZE]);
        c.d.write(DATA + 0x1000, &frame(100, seed));
        c.d.add(TX, &[(DATA, 12, false), (DATA + 0x1000, 100, false)]);
    };
    send(&mut c, 1);
    c.d.kick(TX);
    assert!(c.pump().linger, "frames went out: look again soon");
    // The next frame of the flow: the device did not ask for a kick, and
    // the look after the linger takes it.
    send(&mut c, 2);
    assert!(!c.d.kick_if_asked(TX, 1));
    assert!(c.pump().linger);
    assert_eq!(c.wire.lock().unwrap().outbound.len(), 2);
    // A look that finds nothing asks for a kick again.
    assert!(!c.pump().linger);
    send(&mut c, 3);
    assert!(c.d.kick_if_asked(TX, 1));
    c.pump();
    assert_eq!(c.wire.lock().unwrap().outbound.len(), 3);
}
