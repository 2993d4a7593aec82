//! virtio-serial driven as Linux's virtio_console drives it, and as a
//! hostile driver might.

use std::sync::Mutex;

use super::*;
use crate::virtio::test_driver::{Driver, DATA};

const PORT: PortId = 1;
const RX: u16 = 4;
const TX: u16 = 5;

#[derive(Default)]
struct Changes(Mutex<Vec<PortId>>);
impl PortObserver for Changes {
    fn port_changed(&self, port: PortId) {
        self.0.lock().unwrap().push(port);
    }
}

impl Changes {
    fn take(&self) -> Vec<PortId> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

struct Rig {
    d: Driver<VirtioConsole>,
    changes: Arc<Changes>,
    /// Next free guest address for buffers.
    next: u64,
}

impl Rig {
    fn new(names: &[&str]) -> Rig {
        let mut console = VirtioConsole::new(names).unwrap();
        let changes = Arc::new(Changes::default());
        console.set_observer(changes.clone());
        Rig {
            d: Driver::start(console, F_MULTIPORT),
            changes,
            next: DATA,
        }
    }

    fn buffer(&mut self, len: u32) -> u64 {
        let at = self.next;
        self.next += u64::from(len).next_multiple_of(0x1000);
        at
    }

    /// Posts `n` control receive buffers of 4 KiB; their addresses.
    fn post_control_buffers(&mut self, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| {
                let at = self.buffer(4096);
                self.d.post(CONTROL_RX, at, 4096, true);
                at
            })
            .collect()
    }

    fn send_control(&mut self, id: u32, event: u16, value: u16) {
        let at = self.buffer(8);
        let mut m = id.to_le_bytes().to_vec();
        m.extend(event.to_le_bytes());
        m.extend(value.to_le_bytes());
        self.d.write(at, &m);
        self.d.add(CONTROL_TX, &[(at, 8, false)]);
        self.d.kick(CONTROL_TX);
    }

    /// The control messages the device wrote, as (id, event, value, extra).
    fn control_received(&mut self, buffers: &[u64]) -> Vec<(u32, u16, u16, Vec<u8>)> {
        let used = self.d.take_used(CONTROL_RX);
        used.iter()
            .enumerate()
            .map(|(i, &(_, len))| {
                let b = self.d.read(buffers[i], len as usize);
                let id = u32::from_le_bytes(b[0..4].try_into().unwrap());
                let event = u16::from_le_bytes(b[4..6].try_into().unwrap());
                let value = u16::from_le_bytes(b[6..8].try_into().unwrap());
                (id, event, value, b[8..].to_vec())
            })
            .collect()
    }

    /// The handshake up to the guest opening the port.
    fn open_port(&mut self) {
        let buffers = self.post_control_buffers(8);
        self.send_control(u32::MAX, 0, 1);
        self.send_control(PORT, 3, 1);
        self.send_control(PORT, 6, 1);
        self.control_received(&buffers);
        assert!(self.d.device.device().guest_open(PORT));
        self.changes.take();
    }

    fn with<R>(&mut self, f: impl FnOnce(&mut VirtioConsole, &mut Queues<'_>) -> R) -> R {
        self.d.device.with_device(f)
    }
}

#[test]
fn config_and_features() {
    let mut rig = Rig::new(&["com.redhat.spice.0", "org.qemu.guest_agent.0"]);
    let config = rig.d.config(0, CONFIG_SIZE);
    assert_eq!(&config[4..8], &3u32.to_le_bytes(), "max_nr_ports");
    assert_eq!(rig.d.device.driver_features() & F_MULTIPORT, F_MULTIPORT);
    assert_eq!(rig.d.device.device().queue_max_sizes().len(), 8);
    assert_eq!(
        rig.d.device.device().port_id("org.qemu.guest_agent.0"),
        Some(2)
    );
    assert_eq!(rig.d.device.device().port_id("nope"), None);
}

#[test]
fn bad_port_lists_are_refused() {
    assert!(matches!(
        VirtioConsole::new(&[""]),
        Err(PortError::BadName(_))
    ));
    assert!(matches!(
        VirtioConsole::new(&["a b"]),
        Err(PortError::BadName(_))
    ));
    assert!(matches!(
        VirtioConsole::new(&["a", "a"]),
        Err(PortError::Duplicate(_))
    ));
    let many: Vec<String> = (0..31).map(|i| format!("p{i}")).collect();
    let names: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(VirtioConsole::new(&names).err(), Some(PortError::TooMany));
}

#[test]
fn the_handshake_as_linux_sees_it() {
    let mut rig = Rig::new(&["com.redhat.spice.0"]);
    rig.with(|c, q| c.set_host_open(PORT, true, q));
    let buffers = rig.post_control_buffers(8);
    rig.send_control(u32::MAX, 0, 1);
    assert_eq!(rig.control_received(&buffers), vec![(1, 1, 0, vec![])]);
    rig.send_control(PORT, 3, 1);
    let got = rig.control_received(&buffers[1..]);
    assert_eq!(
        got,
        vec![(1, 7, 1, b"com.redhat.spice.0".to_vec()), (1, 6, 1, vec![])]
    );
    assert!(rig.changes.take().is_empty());
    rig.send_control(PORT, 6, 1);
    assert_eq!(rig.changes.take(), vec![PORT]);
    assert!(rig.d.device.device().guest_open(PORT));
    rig.send_control(PORT, 6, 0);
    assert_eq!(rig.changes.take(), vec![PORT]);
    assert!(!rig.d.device.device().guest_open(PORT));
    // The host side closing is told to the guest.
    rig.with(|c, q| c.set_host_open(PORT, false, q));
    assert_eq!(rig.control_received(&buffers[3..]), vec![(1, 6, 0, vec![])]);
}

#[test]
fn control_messages_wait_for_buffers() {
    let mut rig = Rig::new(&["a", "b"]);
    rig.send_control(u32::MAX, 0, 1);
    let buffers = rig.post_control_buffers(4);
    let got = rig.control_received(&buffers);
    assert_eq!(got, vec![(1, 1, 0, vec![]), (2, 1, 0, vec![])]);
}

#[test]
fn guest_writes_reach_the_host_within_a_bound() {
    let mut rig = Rig::new(&["com.redhat.spice.0"]);
    rig.with(|c, q| c.set_host_open(PORT, true, q));
    rig.open_port();
    let at = rig.buffer(32 << 10);
    let data: Vec<u8> = (0..32u32 << 10).map(|i| i as u8).collect();
    rig.d.write(at, &data);
    // Three 32 KiB writes: two fit under the limit, the third waits.
    for _ in 0..3 {
        rig.d.add(TX, &[(at, 32 << 10, false)]);
    }
    rig.d.kick(TX);
    assert_eq!(rig.changes.take(), vec![PORT]);
    assert_eq!(rig.d.take_used(TX).len(), 2);
    assert_eq!(rig.d.device.device().pending_from_guest(PORT), 64 << 10);
    let mut got = vec![0u8; 40 << 10];
    assert_eq!(rig.with(|c, q| c.read(PORT, &mut got, q)), 40 << 10);
    assert_eq!(&got[..32 << 10], &data[..]);
    assert_eq!(&got[32 << 10..], &data[..8 << 10]);
    // Reading made room: the third write came in.
    assert_eq!(rig.d.take_used(TX).len(), 1);
    assert_eq!(rig.d.device.device().pending_from_guest(PORT), 56 << 10);
    // A later write is asked for (EVENT_IDX) and arrives.
    rig.with(|c, q| c.read(PORT, &mut vec![0u8; 64 << 10], q));
    rig.d.add(TX, &[(at, 5, false)]);
    assert!(rig.d.kick_if_asked(TX, 1), "the device asked for kicks");
    assert_eq!(rig.d.device.device().pending_from_guest(PORT), 5);
}

#[test]
fn host_writes_fill_the_guests_buffers() {
    let mut rig = Rig::new(&["com.redhat.spice.0"]);
    rig.with(|c, q| c.set_host_open(PORT, true, q));
    // Nothing is written before the guest opens the port.
    assert_eq!(rig.with(|c, q| c.write(PORT, b"early", q)), 0);
    rig.open_port();
    let a = rig.buffer(4096);
    let b = rig.buffer(4096);
    rig.d.post(RX, a, 4096, true);
    rig.d.post(RX, b, 4096, true);
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(rig.with(|c, q| c.write(PORT, &data, q)), 8192);
    let used = rig.d.take_used(RX);
    assert_eq!(used.iter().map(|u| u.1).collect::<Vec<_>>(), [4096, 4096]);
    assert_eq!(rig.d.read(a, 4096), data[..4096]);
    assert_eq!(rig.d.read(b, 4096), data[4096..8192]);
    // No buffers: nothing fits, and the device asks for a kick; the next
    // buffer posted tells the host side.
    assert_eq!(rig.with(|c, q| c.write(PORT, &data[8192..], q)), 0);
    rig.changes.take();
    assert!(
        rig.d.kick_if_asked(RX, 1) || {
            rig.d.add(RX, &[(a, 4096, true)]);
            rig.d.kick_if_asked(RX, 1)
        }
    );
    assert_eq!(rig.changes.take(), vec![PORT]);
}

#[test]
fn hostile_control_traffic_is_refused() {
    let mut rig = Rig::new(&["com.redhat.spice.0"]);
    let buffers = rig.post_control_buffers(4);
    // PORT_READY and PORT_OPEN for ports that do not exist or are not set up,
    // events only a device sends, a short message.
    rig.send_control(9, 3, 1);
    rig.send_control(PORT, 6, 1);
    rig.send_control(PORT, 7, 1);
    rig.send_control(PORT, 99, 1);
    let at = rig.buffer(4);
    rig.d.add(CONTROL_TX, &[(at, 4, false)]);
    rig.d.kick(CONTROL_TX);
    assert!(!rig.d.device.device().guest_open(PORT));
    assert!(rig.control_received(&buffers).is_empty());
    assert_eq!(rig.d.device.guest_errors(), 5);
    assert_eq!(rig.d.take_used(CONTROL_TX).len(), 5);
    // A DEVICE_READY flood without buffers is bounded.
    let mut rig = Rig::new(&["com.redhat.spice.0"]);
    for _ in 0..200 {
        rig.send_control(u32::MAX, 0, 1);
    }
    assert!(rig.d.device.device().control_out.len() <= CONTROL_BACKLOG);
}

#[test]
fn huge_and_broken_guest_writes() {
    let mut rig = Rig::new(&["com.redhat.spice.0"]);
    rig.with(|c, q| c.set_host_open(PORT, true, q));
    rig.open_port();
    // A chain over the per-write limit is cut; one outside RAM is dropped.
    let at = rig.buffer(CHAIN_LIMIT as u32 + 4096);
    rig.d.add(TX, &[(at, CHAIN_LIMIT as u32 + 4096, false)]);
    rig.d.add(TX, &[(u64::MAX - 16, 64, false)]);
    rig.d.kick(TX);
    assert_eq!(rig.d.device.device().pending_from_guest(PORT), CHAIN_LIMIT);
    assert!(rig.d.device.guest_errors() >= 1);
    assert_eq!(rig.d.take_used(TX).len(), 1, "the second waits for room");
    let mut sink = vec![0u8; CHAIN_LIMIT];
    rig.with(|c, q| c.read(PORT, &mut sink, q));
    assert_eq!(rig.d.take_used(TX).len(), 1);
    assert_eq!(rig.d.device.device().pending_from_guest(PORT), 0);
}

#[test]
fn writes_with_the_host_side_closed_are_dropped() {
    let mut rig = Rig::new(&["com.redhat.spice.0"]);
    rig.open_port();
    let at = rig.buffer(16);
    rig.d.add(TX, &[(at, 16, false)]);
    rig.d.kick(TX);
    assert_eq!(rig.d.take_used(TX).len(), 1);
    assert_eq!(rig.d.device.device().pending_from_guest(PORT), 0);
}

#[test]
fn a_reset_closes_the_ports() {
    let mut rig = Rig::new(&["com.redhat.spice.0"]);
    rig.with(|c, q| c.set_host_open(PORT, true, q));
    rig.open_port();
    rig.d.set_status(0);
    assert!(!rig.d.device.device().guest_open(PORT));
    assert_eq!(rig.changes.take(), vec![PORT]);
    assert!(rig.d.status() == 0);
}
