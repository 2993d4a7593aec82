//! A guest driver for unit tests: it sets a virtio PCI device up as Linux
//! does (features, every queue, DRIVER_OK) with its rings in a test guest
//! memory, posts chains, kicks, and reads the used rings back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress};

use super::pci::{VirtioPciDevice, Wiring, COMMON_OFFSET as C, DEVICE_OFFSET, NOTIFY_OFFSET};
use super::{status, GuestMemory, VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX};
use crate::interrupt::{LevelInterrupt, MsiDelivery};
use crate::pci::PciDevice;

/// Bytes of test guest memory.
pub const RAM: u64 = 0x100_0000;
/// Where data buffers may go: everything from here up.
pub const DATA: u64 = 0x80_0000;
/// Each queue's rings take this much, from 0x1_0000 up.
const RING_SPAN: u64 = 0x4000;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

/// Counts MSI-X messages.
#[derive(Default)]
pub struct MsiCount(pub AtomicUsize);
impl MsiDelivery for MsiCount {
    fn deliver(&self, _: u64, _: u32) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

struct NoLine;
impl LevelInterrupt for NoLine {
    fn set_level(&self, _: bool) {}
}

struct Ring {
    size: u16,
    base: u64,
    avail: u16,
    next_desc: u16,
    /// Used entries already returned by [`Driver::take_used`].
    seen: u16,
}

/// The device on its transport and the driver's view of its queues.
pub struct Driver<D: VirtioDevice> {
    pub device: VirtioPciDevice<D>,
    pub mem: GuestMemory,
    pub msi: Arc<MsiCount>,
    rings: Vec<Ring>,
}

impl<D: VirtioDevice> Driver<D> {
    /// Negotiates VERSION_1, EVENT_IDX and `features`, sets up every queue
    /// at its largest size and sets DRIVER_OK.
    pub fn start(device: D, features: u64) -> Self {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let msi = Arc::new(MsiCount::default());
        let wiring = Wiring {
            memory: mem.clone(),
            msi: msi.clone(),
            intx: Arc::new(NoLine),
            intx_line: 5,
        };
        let device = VirtioPciDevice::new(device, wiring).unwrap();
        let mut driver = Driver {
            device,
            mem,
            msi,
            rings: Vec::new(),
        };
        driver.set_status(status::ACKNOWLEDGE | status::DRIVER);
        let wanted = features | VIRTIO_RING_F_EVENT_IDX | VIRTIO_F_VERSION_1;
        for select in 0..2u64 {
            driver.reg(C + 0x08, select, 4);
            driver.reg(C + 0x0c, (wanted >> (32 * select)) & 0xffff_ffff, 4);
        }
        driver.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        let sizes = driver.device.device().queue_max_sizes().to_vec();
        for (q, size) in sizes.into_iter().enumerate() {
            let base = 0x1_0000 + q as u64 * RING_SPAN;
            driver.reg(C + 0x16, q as u64, 2);
            driver.reg(C + 0x18, u64::from(size), 2);
            let desc = base;
            let avail = base + 16 * u64::from(size);
            let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
            for (at, addr) in [(0x20, desc), (0x28, avail), (0x30, used)] {
                driver.reg(C + at, addr, 4);
                driver.reg(C + at + 4, 0, 4);
            }
            driver.reg(C + 0x1c, 1, 2);
            driver.rings.push(Ring {
                size,
                base,
                avail: 0,
                next_desc: 0,
                seen: 0,
            });
        }
        driver.set_status(
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        driver
    }

    pub fn reg(&mut self, offset: u64, value: u64, size: usize) {
        self.device
            .write_bar(0, offset, &value.to_le_bytes()[..size]);
    }

    pub fn set_status(&mut self, s: u8) {
        self.reg(C + 0x14, u64::from(s), 1);
    }

    pub fn status(&mut self) -> u8 {
        let mut b = [0u8];
        self.device.read_bar(0, C + 0x14, &mut b);
        b[0]
    }

    /// Reads (and so clears) the ISR status: bit 0 is a queue interrupt.
    pub fn isr(&mut self) -> u8 {
        let mut b = [0u8];
        self.device.read_bar(0, super::pci::ISR_OFFSET, &mut b);
        b[0]
    }

    /// The configuration generation the device reports.
    pub fn config_generation(&mut self) -> u8 {
        let mut b = [0u8];
        self.device.read_bar(0, C + 0x15, &mut b);
        b[0]
    }

    /// Reads device configuration space.
    pub fn config(&mut self, offset: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.device.read_bar(0, DEVICE_OFFSET + offset, &mut b);
        b
    }

    fn ring(&self, q: u16) -> &Ring {
        &self.rings[usize::from(q)]
    }

    fn avail_addr(&self, q: u16) -> u64 {
        let r = self.ring(q);
        r.base + 16 * u64::from(r.size)
    }

    fn used_addr(&self, q: u16) -> u64 {
        let r = self.ring(q);
        (self.avail_addr(q) + 6 + 2 * u64::from(r.size) + 3) & !3
    }

    /// Writes queue `q`'s `used_event` (EVENT_IDX: the used index after
    /// which the driver wants an interrupt).
    pub fn set_used_event(&mut self, q: u16, event: u16) {
        let at = self.avail_addr(q) + 4 + 2 * u64::from(self.ring(q).size);
        self.mem.write_obj(event, GuestAddress(at)).unwrap();
    }

    /// Where queue `q`'s used index lies (to watch it from another thread).
    pub fn used_index_addr(&self, q: u16) -> u64 {
        self.used_addr(q) + 2
    }

    /// Adds a chain of (addr, len, device-writable) without kicking.
    pub fn add(&mut self, q: u16, buffers: &[(u64, u32, bool)]) -> u16 {
        let avail = self.avail_addr(q);
        let ring = &mut self.rings[usize::from(q)];
        let head = ring.next_desc;
        for (i, &(addr, len, write)) in buffers.iter().enumerate() {
            let index = (head + i as u16) % ring.size;
            let last = i + 1 == buffers.len();
            let flags = if write { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            let next = (index + 1) % ring.size;
            let at = GuestAddress(ring.base + u64::from(index) * 16);
            self.mem
                .write_obj(Descriptor::new(addr, len, flags, next), at)
                .unwrap();
        }
        ring.next_desc = (head + buffers.len() as u16) % ring.size;
        let slot = avail + 4 + u64::from(ring.avail % ring.size) * 2;
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        ring.avail = ring.avail.wrapping_add(1);
        self.mem
            .write_obj(ring.avail, GuestAddress(avail + 2))
            .unwrap();
        head
    }

    /// Kicks queue `q` when the device asked for it (EVENT_IDX: its
    /// `avail_event` lies among the last `added` chains); whether it did.
    pub fn kick_if_asked(&mut self, q: u16, added: u16) -> bool {
        let r = self.ring(q);
        let at = self.used_addr(q) + 4 + 8 * u64::from(r.size);
        let event: u16 = self.mem.read_obj(GuestAddress(at)).unwrap();
        let asked = r.avail.wrapping_sub(event).wrapping_sub(1) < added;
        if asked {
            self.kick(q);
        }
        asked
    }

    pub fn kick(&mut self, q: u16) {
        let at = NOTIFY_OFFSET + u64::from(q) * u64::from(super::pci::NOTIFY_MULTIPLIER);
        self.reg(at, u64::from(q), 2);
    }

    /// Posts one buffer as Linux posts them (kicking when asked).
    pub fn post(&mut self, q: u16, addr: u64, len: u32, writable: bool) -> u16 {
        let head = self.add(q, &[(addr, len, writable)]);
        self.kick_if_asked(q, 1);
        head
    }

    /// The used entries (head, length) of queue `q` since the last call.
    pub fn take_used(&mut self, q: u16) -> Vec<(u16, u32)> {
        let used = self.used_addr(q);
        let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
        let ring = &mut self.rings[usize::from(q)];
        let mut out = Vec::new();
        while ring.seen != idx {
            let at = used + 4 + 8 * u64::from(ring.seen % ring.size);
            let head: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
            let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
            out.push((head as u16, len));
            ring.seen = ring.seen.wrapping_add(1);
        }
        out
    }

    pub fn write(&self, addr: u64, bytes: &[u8]) {
        self.mem.write_slice(bytes, GuestAddress(addr)).unwrap();
    }

    /// For fuzz targets: writes `bytes` (the input's next chunk, if any) at
    /// the address in `op[2..5]`, when it lies in RAM.
    pub fn hostile_write(&self, op: &[u8], bytes: Option<&[u8]>) {
        let at = hostile_address(&op[2..5]);
        if let Some(bytes) = bytes.filter(|b| at + b.len() as u64 <= RAM) {
            self.write(at, bytes);
        }
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.mem.read_slice(&mut b, GuestAddress(addr)).unwrap();
        b
    }
}

/// For fuzz targets: an address from three input bytes, mostly in the
/// data area, sometimes anywhere (past RAM too).
pub fn hostile_address(b: &[u8]) -> u64 {
    let v = u64::from(u16::from_le_bytes([b[0], b[1]]));
    if b[2] & 0x80 == 0 {
        DATA + v * 64
    } else {
        v << (b[2] & 0x3f)
    }
}

/// For fuzz targets: a chain of one to four buffers from an 8-byte
/// operation (`op[2..5]` the address, `op[5]` and `op[6]` the length,
/// `op[7]` the count, bit 3 of `op[0]` device-writable).
pub fn hostile_chain(op: &[u8]) -> Vec<(u64, u32, bool)> {
    (0..1 + usize::from(op[7] % 4))
        .map(|i| {
            let len = u32::from(op[5]) << (op[6] % 18);
            (
                hostile_address(&op[2..5]) + i as u64 * 4096,
                len,
                op[0] & 8 != 0,
            )
        })
        .collect()
}
