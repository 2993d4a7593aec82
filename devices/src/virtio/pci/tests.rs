//! Tests of the virtio PCI transport and virtio-input, driven the way
//! Linux's virtio_pci_modern and virtio_input drivers drive them, and the
//! way a hostile driver might.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use vm_memory::{Address, Bytes, GuestAddress};

use super::*;
use crate::virtio::input::{self, InputEvent, VirtioInput, EV_ABS, EV_KEY, EV_SYN};

const RAM: u64 = 0x10_0000;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const BUFFERS: u64 = 0x1_0000;
const QSIZE: u16 = 16;

#[derive(Default)]
struct MsiLog(Mutex<Vec<(u64, u32)>>);
impl MsiDelivery for MsiLog {
    fn deliver(&self, address: u64, data: u32) {
        self.0.lock().unwrap().push((address, data));
    }
}

#[derive(Default)]
struct Line(AtomicBool);
impl LevelInterrupt for Line {
    fn set_level(&self, asserted: bool) {
        self.0.store(asserted, Ordering::SeqCst);
    }
}

struct Driver {
    dev: VirtioPciDevice<VirtioInput>,
    mem: GuestMemory,
    msi: Arc<MsiLog>,
    intx: Arc<Line>,
    avail_idx: u16,
}

fn driver() -> Driver {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
    let msi = Arc::new(MsiLog::default());
    let intx = Arc::new(Line::default());
    let dev = VirtioPciDevice::new(
        VirtioInput::tablet(),
        Wiring {
            memory: mem.clone(),
            msi: msi.clone(),
            intx: intx.clone(),
            intx_line: 19,
        },
    )
    .unwrap();
    Driver {
        dev,
        mem,
        msi,
        intx,
        avail_idx: 0,
    }
}

impl Driver {
    fn write(&mut self, offset: u64, value: u64, size: usize) {
        self.dev.write_bar(0, offset, &value.to_le_bytes()[..size]);
    }
    fn read(&mut self, offset: u64, size: usize) -> u64 {
        let mut b = [0u8; 8];
        self.dev.read_bar(0, offset, &mut b[..size]);
        u64::from_le_bytes(b)
    }
    fn status(&mut self) -> u8 {
        self.read(common::DEVICE_STATUS, 1) as u8
    }
    fn set_status(&mut self, s: u8) {
        self.write(common::DEVICE_STATUS, u64::from(s), 1);
    }
    fn negotiate(&mut self, features: u64) -> bool {
        self.set_status(status::ACKNOWLEDGE | status::DRIVER);
        self.write(common::DRIVER_FEATURE_SELECT, 0, 4);
        self.write(common::DRIVER_FEATURE, features & 0xffff_ffff, 4);
        self.write(common::DRIVER_FEATURE_SELECT, 1, 4);
        self.write(common::DRIVER_FEATURE, features >> 32, 4);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        self.status() & status::FEATURES_OK != 0
    }
    /// Sets up queue `q` with its rings at `base` (+DESC/AVAIL/USED).
    fn setup_queue(&mut self, q: u16, base: u64, vector: u16) -> bool {
        self.write(common::QUEUE_SELECT, u64::from(q), 2);
        self.write(common::QUEUE_SIZE, u64::from(QSIZE), 2);
        self.write(common::QUEUE_MSIX_VECTOR, u64::from(vector), 2);
        // Linux writes 64-bit addresses as two halves.
        for (lo, addr) in [
            (common::QUEUE_DESC_LO, base + DESC),
            (common::QUEUE_DRIVER_LO, base + AVAIL),
            (common::QUEUE_DEVICE_LO, base + USED),
        ] {
            self.write(lo, addr & 0xffff_ffff, 4);
            self.write(lo + 4, addr >> 32, 4);
        }
        self.write(common::QUEUE_ENABLE, 1, 2);
        self.read(common::QUEUE_ENABLE, 2) == 1
    }
    fn start(&mut self) {
        assert!(self.negotiate(VIRTIO_F_VERSION_1));
        assert!(self.setup_queue(0, 0, 0));
        assert!(self.setup_queue(1, 0x4000, 1));
        self.set_status(
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
    }
    fn desc(&self, base: u64, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(base + DESC + u64::from(index) * 16);
        self.mem.write_obj(addr, at).unwrap();
        self.mem.write_obj(len, at.unchecked_add(8)).unwrap();
        self.mem.write_obj(flags, at.unchecked_add(12)).unwrap();
        self.mem.write_obj(next, at.unchecked_add(14)).unwrap();
    }
    /// Makes chain `head` available in the queue at `base`.
    fn offer(&mut self, base: u64, head: u16) {
        let slot = u64::from(self.avail_idx % QSIZE);
        self.mem
            .write_obj(head, GuestAddress(base + AVAIL + 4 + slot * 2))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx, GuestAddress(base + AVAIL + 2))
            .unwrap();
    }
    fn kick(&mut self, q: u16) {
        self.write(
            NOTIFY_OFFSET + u64::from(q) * u64::from(NOTIFY_MULTIPLIER),
            u64::from(q),
            2,
        );
    }
    /// Posts `n` 8-byte event buffers in the event queue.
    fn post_event_buffers(&mut self, n: u16) {
        for i in 0..n {
            self.desc(
                0,
                i,
                BUFFERS + u64::from(i) * 0x100,
                8,
                VRING_DESC_F_WRITE,
                0,
            );
            self.offer(0, i);
        }
        self.kick(0);
    }
    fn used(&self, base: u64) -> Vec<(u32, u32)> {
        let idx: u16 = self.mem.read_obj(GuestAddress(base + USED + 2)).unwrap();
        (0..idx)
            .map(|i| {
                let at = GuestAddress(base + USED + 4 + u64::from(i % QSIZE) * 8);
                (
                    self.mem.read_obj(at).unwrap(),
                    self.mem.read_obj(at.unchecked_add(4)).unwrap(),
                )
            })
            .collect()
    }
    fn event_in(&self, buffer: u16) -> InputEvent {
        let at = GuestAddress(BUFFERS + u64::from(buffer) * 0x100);
        InputEvent::new(
            self.mem.read_obj(at).unwrap(),
            self.mem.read_obj(at.unchecked_add(2)).unwrap(),
            self.mem.read_obj(at.unchecked_add(4)).unwrap(),
        )
    }
    fn send(&mut self, events: &[InputEvent]) {
        self.dev.with_device(|d, q| d.send(events, q));
    }
    fn enable_msix(&mut self) {
        let cap = self.dev.msix_cap;
        let control = (self.dev.read_config(cap / 4) >> 16) as u16 | 0x8000;
        self.dev.write_config(cap + 2, &control.to_le_bytes());
        for v in 0..3u64 {
            let base = MSIX_TABLE_OFFSET + v * 16;
            self.write(base, 0xfee0_0000 + v * 0x1000, 4);
            self.write(base + 4, 0, 4);
            self.write(base + 8, 0x40 + v, 4);
            self.write(base + 12, 0, 4);
        }
    }
}

const VRING_DESC_F_NEXT: u16 = 1;
const VRING_DESC_F_WRITE: u16 = 2;
const VRING_DESC_F_INDIRECT: u16 = 4;

/// The capabilities as (cap id, config offset, bytes).
fn capabilities(dev: &mut VirtioPciDevice<VirtioInput>) -> Vec<(u8, usize, Vec<u8>)> {
    let bytes: Vec<u8> = (0..64)
        .flat_map(|reg| dev.read_config(reg).to_le_bytes())
        .collect();
    let mut caps = Vec::new();
    let mut at = bytes[0x34] as usize;
    while at != 0 && caps.len() < 16 {
        let len = if bytes[at] == CAP_VENDOR {
            bytes[at + 2] as usize
        } else {
            12
        };
        caps.push((bytes[at], at, bytes[at..at + len].to_vec()));
        at = bytes[at + 1] as usize;
    }
    caps
}

#[test]
fn identity_and_capabilities_as_linux_finds_them() {
    let mut d = driver();
    assert_eq!(d.dev.read_config(0), 0x1052_1af4, "virtio-input, modern ID");
    assert_eq!(d.dev.read_config(2) >> 8, 0x09_80_00);
    assert_eq!((d.dev.read_config(15) >> 8) & 0xff, 1, "INTA");
    let caps = capabilities(&mut d.dev);
    let virtio: Vec<(u8, u8, u32, u32)> = caps
        .iter()
        .filter(|c| c.0 == CAP_VENDOR)
        .map(|(_, _, b)| {
            let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            (b[3], b[4], word(8), word(12))
        })
        .collect();
    assert_eq!(
        virtio,
        vec![
            (CAP_COMMON, 0, 0x0000, 0x38),
            (CAP_ISR, 0, 0x1000, 4),
            (CAP_DEVICE, 0, 0x2000, 136),
            (CAP_NOTIFY, 0, 0x3000, 8),
            (CAP_PCI_CFG, 0, 0, 0),
        ]
    );
    let notify = &caps[3].2;
    assert_eq!(notify[16..20], NOTIFY_MULTIPLIER.to_le_bytes());
    let msix = caps.iter().find(|c| c.0 == msix::CAPABILITY_ID).unwrap();
    assert_eq!(&msix.2[2..4], &[2, 0], "3 vectors");
    assert_eq!(&msix.2[4..8], &0x4000u32.to_le_bytes());
    assert_eq!(&msix.2[8..12], &0x5000u32.to_le_bytes());
}

#[test]
fn feature_negotiation() {
    let mut d = driver();
    d.write(common::DEVICE_FEATURE_SELECT, 1, 4);
    assert_eq!(d.read(common::DEVICE_FEATURE, 4), 1, "VERSION_1");
    d.write(common::DEVICE_FEATURE_SELECT, 0, 4);
    assert_eq!(
        d.read(common::DEVICE_FEATURE, 4),
        VIRTIO_RING_F_EVENT_IDX | VIRTIO_RING_F_INDIRECT_DESC
    );
    // A legacy driver (no VERSION_1) and an unoffered feature are refused.
    assert!(!d.negotiate(0));
    d.set_status(0);
    assert!(!d.negotiate(VIRTIO_F_VERSION_1 | 1 << 5));
    d.set_status(0);
    assert!(d.negotiate(VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX));
    // Features are frozen after FEATURES_OK.
    d.write(common::DRIVER_FEATURE_SELECT, 0, 4);
    d.write(common::DRIVER_FEATURE, 0, 4);
    assert_eq!(
        d.dev.driver_features(),
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX
    );
    // DRIVER_OK without FEATURES_OK is refused.
    d.set_status(0);
    d.set_status(status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK);
    assert_eq!(d.status() & status::DRIVER_OK, 0);
}

#[test]
fn queue_setup_is_validated() {
    let mut d = driver();
    assert!(d.negotiate(VIRTIO_F_VERSION_1));
    d.write(common::QUEUE_SELECT, 0, 2);
    assert_eq!(d.read(common::QUEUE_SIZE, 2), 64, "max size");
    d.write(common::QUEUE_SIZE, 12, 2); // not a power of two
    assert_eq!(d.read(common::QUEUE_SIZE, 2), 64);
    // Rings outside RAM: refused, and the device asks for a reset.
    assert!(!d.setup_queue(0, RAM, 0));
    assert_ne!(d.status() & status::DEVICE_NEEDS_RESET, 0);
    d.set_status(0);
    assert_eq!(d.status(), 0);
    assert!(d.negotiate(VIRTIO_F_VERSION_1));
    assert!(d.setup_queue(0, 0, 0));
    // Once enabled, the queue cannot be moved.
    d.write(common::QUEUE_DESC_LO, 0x8000, 4);
    assert_eq!(d.read(common::QUEUE_DESC_LO, 8), DESC);
    // A queue that does not exist reads as size 0, vector NO_VECTOR.
    d.write(common::QUEUE_SELECT, 7, 2);
    assert_eq!(d.read(common::QUEUE_SIZE, 2), 0);
    assert_eq!(d.read(common::QUEUE_MSIX_VECTOR, 2), 0xffff);
    d.write(common::QUEUE_SIZE, 8, 2);
    d.write(common::QUEUE_ENABLE, 1, 2);
    // Vectors beyond the table read back as NO_VECTOR.
    d.write(common::QUEUE_SELECT, 1, 2);
    d.write(common::QUEUE_MSIX_VECTOR, 3, 2);
    assert_eq!(d.read(common::QUEUE_MSIX_VECTOR, 2), 0xffff);
    d.write(common::CONFIG_MSIX_VECTOR, 2, 2);
    assert_eq!(d.read(common::CONFIG_MSIX_VECTOR, 2), 2);
    assert_eq!(d.read(common::NUM_QUEUES, 2), 2);
}

#[test]
fn events_reach_the_guest_with_msix() {
    let mut d = driver();
    d.enable_msix();
    d.start();
    d.post_event_buffers(4);
    d.send(&[
        InputEvent::new(EV_ABS, input::ABS_X, 100),
        InputEvent::new(EV_ABS, input::ABS_Y, 40_000), // clamped
        InputEvent::new(EV_KEY, input::BTN_LEFT, 1),
    ]);
    assert_eq!(d.used(0), vec![(0, 8), (1, 8), (2, 8), (3, 8)]);
    assert_eq!(d.event_in(0), InputEvent::new(EV_ABS, input::ABS_X, 100));
    assert_eq!(d.event_in(1), InputEvent::new(EV_ABS, input::ABS_Y, 32767));
    assert_eq!(d.event_in(2), InputEvent::new(EV_KEY, input::BTN_LEFT, 1));
    assert_eq!(d.event_in(3), InputEvent::new(EV_SYN, 0, 0));
    assert_eq!(*d.msi.0.lock().unwrap(), vec![(0xfee0_0000, 0x40)]);
    assert!(!d.intx.0.load(Ordering::SeqCst), "no INTx with MSI-X");
    // Undeclared events are dropped; nothing is sent for an empty burst.
    d.send(&[InputEvent::new(EV_KEY, 30, 1), InputEvent::new(7, 0, 1)]);
    assert_eq!(d.dev.device().pending(), 0);
}

#[derive(Default)]
struct Readiness(Mutex<Vec<bool>>);
impl input::DriverObserver for Readiness {
    fn driver_ready(&self, ready: bool) {
        self.0.lock().unwrap().push(ready);
    }
}

#[test]
fn the_observer_hears_the_driver_come_and_go() {
    let mut d = driver();
    let log = Arc::new(Readiness::default());
    d.dev.with_device(|dev, _| dev.set_observer(log.clone()));
    d.start();
    assert!(d.dev.device().is_ready());
    d.set_status(0);
    assert_eq!(*log.0.lock().unwrap(), vec![true, false]);
}

#[test]
fn events_wait_for_buffers_and_intx_works() {
    let mut d = driver();
    d.start();
    d.send(&[InputEvent::new(EV_KEY, input::BTN_RIGHT, 1)]);
    assert_eq!(d.dev.device().pending(), 2);
    assert!(!d.intx.0.load(Ordering::SeqCst));
    d.post_event_buffers(2);
    assert_eq!(d.used(0).len(), 2);
    assert!(d.intx.0.load(Ordering::SeqCst), "INTx asserted");
    assert_eq!(d.read(ISR_OFFSET, 1), 1, "queue interrupt");
    assert!(!d.intx.0.load(Ordering::SeqCst), "reading ISR deasserts");
    assert_eq!(d.read(ISR_OFFSET, 1), 0);
}

#[test]
fn a_flood_is_bounded_and_keeps_the_last_state() {
    let mut d = driver();
    d.start();
    for i in 0..100_000 {
        d.send(&[
            InputEvent::new(EV_ABS, input::ABS_X, i % 30_000),
            InputEvent::new(EV_KEY, input::BTN_LEFT, i % 2),
        ]);
        assert!(d.dev.device().pending() <= input::PENDING_LIMIT);
    }
    assert!(d.dev.device().resyncs() > 0);
    // The guest catches up: the last values it sees are the last sent.
    let mut last_x = None;
    let mut last_left = None;
    for _ in 0..40 {
        let before = d.used(0).len();
        d.post_event_buffers(QSIZE);
        let used = d.used(0);
        for &(id, len) in &used[before..] {
            assert_eq!(len, 8);
            let e = d.event_in(id as u16);
            match (e.kind, e.code) {
                (EV_ABS, input::ABS_X) => last_x = Some(e.value),
                (EV_KEY, input::BTN_LEFT) => last_left = Some(e.value),
                _ => {}
            }
        }
        if d.dev.device().pending() == 0 {
            break;
        }
    }
    assert_eq!(d.dev.device().pending(), 0);
    assert_eq!(last_x, Some(99_999 % 30_000));
    assert_eq!(last_left, Some(1));
}

#[test]
fn hostile_descriptors_are_refused_without_harm() {
    let mut d = driver();
    d.start();
    // 0: outside RAM. 1: too short. 2: read-only. 3: loops onto itself.
    // 4: an indirect table outside RAM. 5: a good one.
    d.desc(0, 0, RAM - 4, 8, VRING_DESC_F_WRITE, 0);
    d.desc(0, 1, BUFFERS, 4, VRING_DESC_F_WRITE, 0);
    d.desc(0, 2, BUFFERS, 8, 0, 0);
    d.desc(0, 3, BUFFERS, 8, VRING_DESC_F_NEXT, 3);
    d.desc(0, 4, u64::MAX - 15, 16, VRING_DESC_F_INDIRECT, 0);
    d.desc(0, 5, BUFFERS + 0x500, 8, VRING_DESC_F_WRITE, 0);
    for head in 0..6 {
        d.offer(0, head);
    }
    d.kick(0);
    d.send(&[InputEvent::new(EV_KEY, input::BTN_MIDDLE, 1)]);
    let used = d.used(0);
    assert_eq!(used.len(), 6, "{used:?}");
    assert!(used[..5].iter().all(|&(_, len)| len == 0), "{used:?}");
    // The event went into the good buffer, SYN waits for the next one.
    assert_eq!(used[5], (5, 8));
    assert_eq!(d.event_in(5), InputEvent::new(EV_KEY, input::BTN_MIDDLE, 1));
    assert!(d.dev.guest_errors() >= 4);
    assert_eq!(d.status() & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn a_bad_head_index_asks_for_a_reset() {
    let mut d = driver();
    d.start();
    d.offer(0, 200); // beyond the queue
    d.kick(0);
    d.send(&[InputEvent::new(EV_KEY, input::BTN_LEFT, 1)]);
    assert_ne!(d.status() & status::DEVICE_NEEDS_RESET, 0);
    // Further notifications are ignored until the reset.
    d.post_event_buffers(2);
    assert!(d.used(0).is_empty());
    d.set_status(0);
    assert_eq!(d.status(), 0);
}

#[test]
fn an_avail_index_too_far_ahead_is_ignored() {
    let mut d = driver();
    d.start();
    d.mem.write_obj(1000u16, GuestAddress(AVAIL + 2)).unwrap();
    d.kick(0);
    d.send(&[InputEvent::new(EV_KEY, input::BTN_LEFT, 1)]);
    assert!(d.used(0).is_empty());
    assert_eq!(d.dev.device().pending(), 2);
}

#[test]
fn status_queue_buffers_come_back() {
    let mut d = driver();
    d.start();
    d.desc(0x4000, 0, BUFFERS, 8, 0, 0);
    d.avail_idx = 0;
    d.offer(0x4000, 0);
    d.kick(1);
    assert_eq!(d.used(0x4000), vec![(0, 0)]);
}

#[test]
fn input_config_space_as_virtio_input_reads_it() {
    let mut d = driver();
    let select = |d: &mut Driver, sel: u8, sub: u8| -> Vec<u8> {
        d.write(DEVICE_OFFSET, u64::from(sel), 1);
        d.write(DEVICE_OFFSET + 1, u64::from(sub), 1);
        let size = d.read(DEVICE_OFFSET + 2, 1) as usize;
        (0..size)
            .map(|i| d.read(DEVICE_OFFSET + 8 + i as u64, 1) as u8)
            .collect()
    };
    assert_eq!(select(&mut d, 1, 0), b"Saffron Virtio Tablet");
    assert_eq!(select(&mut d, 2, 0), b"saffron-tablet-0");
    assert_eq!(select(&mut d, 3, 0), vec![6, 0, 0xf4, 0x1a, 3, 0, 1, 0]);
    assert_eq!(select(&mut d, 0x10, 0), Vec::<u8>::new(), "no properties");
    let keys = select(&mut d, 0x11, EV_KEY as u8);
    assert_eq!(keys.len(), 0x114 / 8 + 1);
    assert_eq!(keys[0x110 / 8], 0x1f, "BTN_LEFT..BTN_EXTRA");
    assert!(keys[..0x110 / 8].iter().all(|b| *b == 0));
    assert_eq!(select(&mut d, 0x11, 2), vec![0, 1], "REL_WHEEL (code 8)");
    assert_eq!(select(&mut d, 0x11, 3), vec![0b11], "ABS_X, ABS_Y");
    assert_eq!(select(&mut d, 0x11, 0x11), Vec::<u8>::new(), "no LEDs");
    let abs = select(&mut d, 0x12, 1);
    assert_eq!(abs.len(), 20);
    assert_eq!(&abs[4..8], &32767i32.to_le_bytes());
    assert_eq!(select(&mut d, 0x12, 2), Vec::<u8>::new(), "no such axis");
    assert_eq!(select(&mut d, 0x7f, 0), Vec::<u8>::new());
    // Out of the configuration space, reads give zeros and writes vanish.
    assert_eq!(d.read(DEVICE_OFFSET + 200, 4), 0);
    d.write(DEVICE_OFFSET + 2, 99, 1);
    d.write(DEVICE_OFFSET + 1, 0, 1);
    d.write(DEVICE_OFFSET, 1, 1);
    assert_eq!(d.read(DEVICE_OFFSET + 2, 1), 21);
}

#[test]
fn pci_configuration_access_window() {
    let mut d = driver();
    let cap = d.dev.pci_cfg_cap;
    // bar 0, offset of num_queues, length 2
    d.dev.write_config(cap + 4, &[0]);
    d.dev
        .write_config(cap + 8, &(common::NUM_QUEUES as u32).to_le_bytes());
    d.dev.write_config(cap + 12, &2u32.to_le_bytes());
    assert_eq!(d.dev.read_config((cap + 16) / 4) & 0xffff, 2);
    // Writing through it: queue_select = 1.
    d.dev
        .write_config(cap + 8, &(common::QUEUE_SELECT as u32).to_le_bytes());
    d.dev.write_config(cap + 16, &[1, 0]);
    assert_eq!(d.read(common::QUEUE_SELECT, 2), 1);
}

#[test]
fn masked_msix_vectors_are_delivered_on_unmask() {
    let mut d = driver();
    d.enable_msix();
    d.write(MSIX_TABLE_OFFSET + 12, 1, 4); // mask vector 0
    d.start();
    d.post_event_buffers(2);
    d.send(&[InputEvent::new(EV_KEY, input::BTN_LEFT, 1)]);
    assert!(d.msi.0.lock().unwrap().is_empty());
    assert_eq!(d.read(MSIX_PBA_OFFSET, 8), 1);
    d.write(MSIX_TABLE_OFFSET + 12, 0, 4);
    assert_eq!(*d.msi.0.lock().unwrap(), vec![(0xfee0_0000, 0x40)]);
}

#[test]
fn odd_accesses_are_ignored() {
    let mut d = driver();
    // Straddling regions, beyond the BAR, other BARs.
    d.dev.write_bar(0, 0xffe, &[1, 2, 3, 4]);
    d.dev.write_bar(0, BAR_SIZE - 2, &[1, 2, 3, 4]);
    d.dev.write_bar(0, u64::MAX - 1, &[1, 2, 3, 4]);
    d.dev.write_bar(1, 0, &[1, 2, 3, 4]);
    let mut b = [0xaau8; 4];
    d.dev.read_bar(0, u64::MAX - 1, &mut b);
    assert_eq!(b, [0; 4]);
    // A kick for a queue that does not exist.
    d.kick(9);
    assert!(d.dev.guest_errors() >= 1);
    // A wide write over queue_select and queue_size at once.
    d.start();
    d.write(common::QUEUE_SELECT, 0x0040_0001, 4);
    assert_eq!(d.read(common::QUEUE_SELECT, 2), 1);
}

/// A small deterministic generator for the randomized tests.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn a_random_driver_cannot_break_the_device() {
    // Random register writes (all widths), random ring and descriptor
    // contents, random kicks and events: no panic, bounded state.
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    for round in 0..20 {
        let mut d = driver();
        if round % 2 == 0 {
            d.enable_msix();
        }
        d.start();
        for _ in 0..2000 {
            let r = rng.next();
            let size = [1usize, 2, 4, 8][(r & 3) as usize];
            let value = rng.next();
            match (r >> 2) % 8 {
                0 => {
                    let offset = rng.next() % (BAR_SIZE + 16);
                    d.dev.write_bar(0, offset, &value.to_le_bytes()[..size]);
                }
                1 => {
                    let offset = rng.next() % (BAR_SIZE + 16);
                    let mut b = [0u8; 8];
                    d.dev.read_bar(0, offset, &mut b[..size]);
                }
                2 => {
                    // Scribble on the rings and descriptor tables.
                    let at = rng.next() % 0x8000;
                    let _ = d.mem.write_obj(value, GuestAddress(at));
                }
                3 => d.kick((value % 3) as u16),
                4 => d.send(&[
                    InputEvent::new(EV_ABS, input::ABS_X, value as i32),
                    InputEvent::new(EV_KEY, input::BTN_LEFT, (value >> 40) as i32),
                ]),
                5 => {
                    let offset = (rng.next() % 0x100) as usize & !3;
                    d.dev
                        .write_config(offset, &value.to_le_bytes()[..size.min(4)]);
                }
                6 => {
                    let _ = d.dev.read_config((rng.next() % 0x50) as usize);
                }
                _ => {
                    if value.is_multiple_of(64) {
                        d.set_status(0);
                        d.start_quietly();
                    }
                }
            }
            assert!(d.dev.device().pending() <= input::PENDING_LIMIT);
        }
    }
}

impl Driver {
    /// Like `start`, without asserting that the device agrees (its rings
    /// may have been scribbled on).
    fn start_quietly(&mut self) {
        self.avail_idx = 0;
        self.negotiate(VIRTIO_F_VERSION_1);
        self.setup_queue(0, 0, 0);
        self.setup_queue(1, 0x4000, 1);
        self.set_status(
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
    }
}
