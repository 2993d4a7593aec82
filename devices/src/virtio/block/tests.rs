//! virtio-blk driven as Linux's virtio_blk drives it, and as a hostile
//! driver might: request parsing on its own, then whole requests through
//! the PCI transport and the I/O thread into a real file.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress};

use super::request::{parse, DiskShape, Operation, Range, Segment};
use super::worker::BlockWorker;
use super::*;
use crate::block::{self, DiskOptions};
use crate::interrupt::{LevelInterrupt, MsiDelivery};
use crate::pci::PciDevice;
use crate::test_util::TempDir;
use crate::virtio::pci::{VirtioPciDevice, Wiring};
use crate::virtio::{status, GuestMemory, VIRTIO_F_VERSION_1};

const RAM: u64 = 0x40_0000;
const F_WRITE: u16 = 2;
const F_NEXT: u16 = 1;
const DISK: DiskShape = DiskShape {
    size: 1 << 20,
    read_only: false,
};

fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap()
}

fn d(addr: u64, len: u32, write: bool) -> Descriptor {
    Descriptor::new(addr, len, if write { F_WRITE } else { 0 }, 0)
}

fn header(mem: &GuestMemory, at: u64, kind: u32, sector: u64) {
    mem.write_obj(kind, GuestAddress(at)).unwrap();
    mem.write_obj(0u32, GuestAddress(at + 4)).unwrap();
    mem.write_obj(sector, GuestAddress(at + 8)).unwrap();
}

#[test]
fn linux_layout_read() {
    let mem = memory();
    header(&mem, 0x1000, TYPE_IN, 8);
    let chain = [
        d(0x1000, 16, false),
        d(0x2000, 4096, true),
        d(0x3000, 1, true),
    ];
    let r = parse(&chain, &mem, DISK).unwrap();
    assert_eq!(r.operation, Operation::Read { offset: 4096 });
    assert_eq!(
        r.data,
        vec![Segment {
            addr: GuestAddress(0x2000),
            len: 4096
        }]
    );
    assert_eq!((r.data_len, r.status), (4096, GuestAddress(0x3000)));
}

#[test]
fn any_layout_write_in_one_readable_buffer() {
    let mem = memory();
    header(&mem, 0x1000, TYPE_OUT, 1);
    // Header and data in one buffer, status in the same writable one as nothing else.
    let chain = [d(0x1000, 16 + 1024, false), d(0x3000, 1, true)];
    let r = parse(&chain, &mem, DISK).unwrap();
    assert_eq!(r.operation, Operation::Write { offset: 512 });
    assert_eq!(
        r.data,
        vec![Segment {
            addr: GuestAddress(0x1010),
            len: 1024
        }]
    );
    // A read whose status shares the data's buffer.
    header(&mem, 0x1000, TYPE_IN, 0);
    let chain = [d(0x1000, 16, false), d(0x2000, 513, true)];
    let r = parse(&chain, &mem, DISK).unwrap();
    assert_eq!(r.data_len, 512);
    assert_eq!(r.status, GuestAddress(0x2200));
}

#[test]
fn header_split_over_buffers() {
    let mem = memory();
    header(&mem, 0x1000, TYPE_IN, 3);
    let chain = [
        d(0x1000, 5, false),
        d(0x1005, 11, false),
        d(0x2000, 512, true),
        d(0x3000, 1, true),
    ];
    assert_eq!(
        parse(&chain, &mem, DISK).unwrap().operation,
        Operation::Read { offset: 1536 }
    );
}

fn refused(chain: &[Descriptor], mem: &GuestMemory, disk: DiskShape) -> (Option<u64>, u8, String) {
    let r = parse(chain, mem, disk).unwrap_err();
    (r.status_addr.map(|a| a.0), r.status, r.reason)
}

#[test]
fn hostile_chains_are_refused() {
    let mem = memory();
    header(&mem, 0x1000, TYPE_IN, 0);
    // No status byte at all.
    let (addr, _, why) = refused(&[d(0x1000, 16, false)], &mem, DISK);
    assert_eq!(addr, None, "{why}");
    // A buffer outside guest RAM (and one that wraps).
    let (addr, status, _) = refused(
        &[
            d(0x1000, 16, false),
            d(RAM - 16, 512, true),
            d(0x3000, 1, true),
        ],
        &mem,
        DISK,
    );
    assert_eq!((addr, status), (Some(0x3000), STATUS_IOERR));
    let (_, status, _) = refused(
        &[
            d(0x1000, 16, false),
            d(u64::MAX - 8, 512, true),
            d(0x3000, 1, true),
        ],
        &mem,
        DISK,
    );
    assert_eq!(status, STATUS_IOERR);
    // Readable after writable.
    let (_, _, why) = refused(
        &[
            d(0x2000, 512, true),
            d(0x1000, 16, false),
            d(0x3000, 1, true),
        ],
        &mem,
        DISK,
    );
    assert!(why.contains("after a writable"), "{why}");
    // A short header.
    let (addr, _, why) = refused(&[d(0x1000, 15, false), d(0x3000, 1, true)], &mem, DISK);
    assert_eq!(addr, Some(0x3000));
    assert!(why.contains("header"), "{why}");
}

#[test]
fn sectors_must_be_whole_and_inside_the_disk() {
    let mem = memory();
    let capacity = DISK.size / SECTOR_SIZE;
    let chain = |len| {
        [
            d(0x1000, 16, false),
            d(0x2000, len, true),
            d(0x3000, 1, true),
        ]
    };
    header(&mem, 0x1000, TYPE_IN, 0);
    assert!(refused(&chain(100), &mem, DISK).2.contains("whole sectors"));
    for sector in [capacity, capacity - 1 + 1, u64::MAX, u64::MAX / 512] {
        header(&mem, 0x1000, TYPE_IN, sector);
        let (_, status, why) = refused(&chain(1024), &mem, DISK);
        assert_eq!(status, STATUS_IOERR, "sector {sector}: {why}");
    }
    header(&mem, 0x1000, TYPE_IN, capacity - 2);
    assert!(
        parse(&chain(1024), &mem, DISK).is_ok(),
        "the last two sectors"
    );
}

#[test]
fn huge_requests_are_refused() {
    let mem = memory();
    header(&mem, 0x1000, TYPE_IN, 0);
    let big = DiskShape {
        size: 1 << 40,
        read_only: false,
    };
    // The same 1 MiB of RAM named 40 times: more than a driver may send.
    let mut chain = vec![d(0x1000, 16, false)];
    chain.extend((0..40).map(|_| d(0x10_0000, 1 << 20, true)));
    chain.push(d(0x3000, 1, true));
    let (_, status, why) = refused(&chain, &mem, big);
    assert_eq!(status, STATUS_IOERR);
    assert!(why.contains("in one request"), "{why}");
}

#[test]
fn read_only_disks_refuse_writes() {
    let mem = memory();
    let ro = DiskShape {
        read_only: true,
        ..DISK
    };
    header(&mem, 0x1000, TYPE_OUT, 0);
    let chain = [
        d(0x1000, 16, false),
        d(0x2000, 512, false),
        d(0x3000, 1, true),
    ];
    assert_eq!(refused(&chain, &mem, ro).1, STATUS_IOERR);
    header(&mem, 0x1000, TYPE_DISCARD, 0);
    assert_eq!(refused(&chain, &mem, ro).1, STATUS_UNSUPP);
    header(&mem, 0x1000, TYPE_IN, 0);
    let chain = [
        d(0x1000, 16, false),
        d(0x2000, 512, true),
        d(0x3000, 1, true),
    ];
    assert!(parse(&chain, &mem, ro).is_ok());
}

fn range_bytes(mem: &GuestMemory, at: u64, sector: u64, count: u32, flags: u32) {
    mem.write_obj(sector, GuestAddress(at)).unwrap();
    mem.write_obj(count, GuestAddress(at + 8)).unwrap();
    mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
}

#[test]
fn discard_and_write_zeroes_ranges() {
    let mem = memory();
    let chain = |n: u32| {
        [
            d(0x1000, 16, false),
            d(0x2000, 16 * n, false),
            d(0x3000, 1, true),
        ]
    };
    header(&mem, 0x1000, TYPE_WRITE_ZEROES, 0);
    range_bytes(&mem, 0x2000, 4, 8, 1);
    range_bytes(&mem, 0x2010, 100, 1, 0);
    let r = parse(&chain(2), &mem, DISK).unwrap();
    assert_eq!(
        r.operation,
        Operation::WriteZeroes(vec![
            Range {
                offset: 2048,
                len: 4096,
                unmap: true
            },
            Range {
                offset: 51200,
                len: 512,
                unmap: false
            },
        ])
    );
    // Discard may not carry the unmap flag; unknown flags, empty and
    // oversized ranges, too many ranges and ranges past the end are refused.
    header(&mem, 0x1000, TYPE_DISCARD, 0);
    assert_eq!(refused(&chain(1), &mem, DISK).1, STATUS_UNSUPP);
    for (sector, count, flags, want) in [
        (0, 1, 4, STATUS_UNSUPP),
        (0, 0, 0, STATUS_UNSUPP),
        (0, limits::MAX_RANGE_SECTORS + 1, 0, STATUS_UNSUPP),
        (2047, 2, 0, STATUS_IOERR),
        (u64::MAX, 1, 0, STATUS_IOERR),
    ] {
        range_bytes(&mem, 0x2000, sector, count, flags);
        assert_eq!(
            refused(&chain(1), &mem, DISK).1,
            want,
            "{sector} {count} {flags}"
        );
    }
    range_bytes(&mem, 0x2000, 0, 1, 0);
    assert!(parse(&chain(1), &mem, DISK).is_ok());
    assert_eq!(
        refused(&chain(limits::MAX_RANGES + 1), &mem, DISK).1,
        STATUS_UNSUPP
    );
    let odd = [
        d(0x1000, 16, false),
        d(0x2000, 15, false),
        d(0x3000, 1, true),
    ];
    assert_eq!(refused(&odd, &mem, DISK).1, STATUS_UNSUPP);
}

#[test]
fn unknown_types_are_unsupported() {
    let mem = memory();
    header(&mem, 0x1000, 99, 0);
    let chain = [d(0x1000, 16, false), d(0x3000, 1, true)];
    assert_eq!(refused(&chain, &mem, DISK).1, STATUS_UNSUPP);
}

#[test]
fn config_space_and_features() {
    let rw = VirtioBlock::new(10 * 512 + 100, false, Some("disk-1"));
    let mut c = [0u8; CONFIG_SIZE];
    rw.read_config(0, &mut c);
    assert_eq!(u64::from_le_bytes(c[0..8].try_into().unwrap()), 10);
    assert_eq!(
        u32::from_le_bytes(c[12..16].try_into().unwrap()),
        limits::SEG_MAX
    );
    assert_eq!(u32::from_le_bytes(c[20..24].try_into().unwrap()), 512);
    assert_ne!(rw.device_features() & features::DISCARD, 0);
    assert_eq!(rw.device_features() & features::RO, 0);
    assert_eq!(&rw.serial()[..7], b"disk-1\0");
    let ro = VirtioBlock::new(4096, true, None);
    assert_ne!(ro.device_features() & features::RO, 0);
    assert_eq!(
        ro.device_features() & (features::DISCARD | features::WRITE_ZEROES),
        0
    );
    // Reads past the end give nothing, and do not panic.
    let mut past = [0xffu8; 8];
    ro.read_config(CONFIG_SIZE - 4, &mut past);
    assert_eq!(past, [0xff; 8]);
}

// ---- whole requests through the transport and the I/O thread ----------------------------

#[derive(Default)]
struct Msi(AtomicUsize);
impl MsiDelivery for Msi {
    fn deliver(&self, _: u64, _: u32) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
struct NoLine;
impl LevelInterrupt for NoLine {
    fn set_level(&self, _: bool) {}
}

const QSIZE: u16 = 256;
const DESC: u64 = 0x1_0000;
const AVAIL: u64 = 0x2_0000;
const USED: u64 = 0x3_0000;

/// A driver with its queue at DESC/AVAIL/USED and a disk file behind the device.
struct Rig {
    transport: worker::Transport,
    mem: GuestMemory,
    worker: BlockWorker,
    file: std::path::PathBuf,
    _dir: TempDir,
    avail: u16,
    next_desc: u16,
}

/// An image whose reads take a while, so a test can catch the I/O thread
/// in the middle of a batch.
struct Slow(Box<dyn block::DiskImage>);
impl block::DiskImage for Slow {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn format(&self) -> block::Format {
        self.0.format()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::thread::sleep(Duration::from_millis(20));
        self.0.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_at(offset, buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
    fn discard(&mut self, offset: u64, len: u64) -> std::io::Result<()> {
        self.0.discard(offset, len)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> std::io::Result<()> {
        self.0.write_zeroes(offset, len, unmap)
    }
}

/// A disk of `sectors` sectors, each filled with its number's low byte.
fn rig(name: &str, sectors: u64, read_only: bool) -> Rig {
    rig_with(name, sectors, read_only, |image| image)
}

fn rig_with(
    name: &str,
    sectors: u64,
    read_only: bool,
    wrap: impl FnOnce(Box<dyn block::DiskImage>) -> Box<dyn block::DiskImage>,
) -> Rig {
    let dir = TempDir::new(&format!("blk-{name}"));
    let content: Vec<u8> = (0..sectors * 512).map(|i| (i / 512) as u8).collect();
    let file = dir.file("disk.raw", &content);
    let mut options = DiskOptions::new(&file);
    options.format = Some(block::Format::Raw);
    options.read_only = read_only;
    let image = wrap(block::open(&options).unwrap());
    let mem = memory();
    let device = VirtioBlock::new(image.size(), read_only, Some("rig"));
    let wiring = Wiring {
        memory: mem.clone(),
        msi: Arc::new(Msi::default()),
        intx: Arc::new(NoLine),
        intx_line: 5,
    };
    let transport = Arc::new(Mutex::new(VirtioPciDevice::new(device, wiring).unwrap()));
    let worker = BlockWorker::spawn(name, transport.clone(), image, mem.clone()).unwrap();
    let mut rig = Rig {
        transport,
        mem,
        worker,
        file,
        _dir: dir,
        avail: 0,
        next_desc: 0,
    };
    rig.start();
    rig
}

impl Rig {
    fn reg(&self, offset: u64, value: u64, size: usize) {
        let mut t = self.transport.lock().unwrap();
        t.write_bar(0, offset, &value.to_le_bytes()[..size]);
    }

    fn start(&mut self) {
        use crate::virtio::pci::COMMON_OFFSET as C;
        self.reg(C + 0x14, u64::from(status::ACKNOWLEDGE | status::DRIVER), 1);
        self.reg(C + 0x08, 0, 4);
        self.reg(C + 0x0c, crate::virtio::VIRTIO_RING_F_EVENT_IDX, 4);
        self.reg(C + 0x08, 1, 4);
        self.reg(C + 0x0c, VIRTIO_F_VERSION_1 >> 32, 4);
        self.reg(
            C + 0x14,
            u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK),
            1,
        );
        self.reg(C + 0x16, 0, 2);
        self.reg(C + 0x18, u64::from(QSIZE), 2);
        for (at, addr) in [(0x20, DESC), (0x28, AVAIL), (0x30, USED)] {
            self.reg(C + at, addr, 4);
            self.reg(C + at + 4, 0, 4);
        }
        self.reg(C + 0x1c, 1, 2);
        let all = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;
        self.reg(C + 0x14, u64::from(all), 1);
    }

    /// Posts a chain of (addr, len, writable) and kicks; returns its head.
    fn post(&mut self, buffers: &[(u64, u32, bool)]) -> u16 {
        let head = self.add(buffers);
        self.kick();
        head
    }

    fn kick(&self) {
        self.reg(crate::virtio::pci::NOTIFY_OFFSET, 0, 2);
    }

    /// Kicks only if the device asked for it (EVENT_IDX: the available
    /// index passed its `avail_event` with the last `added` chains).
    fn kick_if_asked(&self, added: u16) {
        let event: u16 = self
            .mem
            .read_obj(GuestAddress(USED + 4 + 8 * u64::from(QSIZE)))
            .unwrap();
        let new = self.avail;
        if new.wrapping_sub(event).wrapping_sub(1) < added {
            self.kick();
        }
    }

    /// Posts a chain without kicking; returns its head.
    fn add(&mut self, buffers: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, write)) in buffers.iter().enumerate() {
            let index = (head + i as u16) % QSIZE;
            let last = i + 1 == buffers.len();
            let flags = if write { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            let next = (index + 1) % QSIZE;
            let at = GuestAddress(DESC + u64::from(index) * 16);
            self.mem
                .write_obj(Descriptor::new(addr, len, flags, next), at)
                .unwrap();
        }
        self.next_desc = (head + buffers.len() as u16) % QSIZE;
        let slot = AVAIL + 4 + u64::from(self.avail % QSIZE) * 2;
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail = self.avail.wrapping_add(1);
        self.mem
            .write_obj(self.avail, GuestAddress(AVAIL + 2))
            .unwrap();
        head
    }

    /// Waits until the device has used `count` chains in all.
    fn wait_used(&self, count: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.mem.read_obj::<u16>(GuestAddress(USED + 2)).unwrap() < count {
            assert!(
                Instant::now() < deadline,
                "the device did not complete the request"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// One request: header at 0x1000, data at 0x4000, status at 0x3000.
    fn request(&mut self, kind: u32, sector: u64, data: Option<(u32, bool)>) -> u8 {
        header(&self.mem, 0x1000, kind, sector);
        self.mem.write_obj(0xffu8, GuestAddress(0x3000)).unwrap();
        let mut chain = vec![(0x1000, 16, false)];
        chain.extend(data.map(|(len, write)| (0x4000u64, len, write)));
        chain.push((0x3000, 1, true));
        self.post(&chain);
        self.wait_used(self.avail);
        self.mem.read_obj(GuestAddress(0x3000)).unwrap()
    }

    fn file_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.file).unwrap()
    }
}

#[test]
fn reads_and_writes_reach_the_file() {
    let mut rig = rig("rw", 64, false);
    assert_eq!(rig.request(TYPE_IN, 3, Some((1024, true))), STATUS_OK);
    let mut got = vec![0u8; 1024];
    rig.mem.read_slice(&mut got, GuestAddress(0x4000)).unwrap();
    assert!(got[..512].iter().all(|&b| b == 3) && got[512..].iter().all(|&b| b == 4));
    rig.mem
        .write_slice(&[0xab; 512], GuestAddress(0x4000))
        .unwrap();
    assert_eq!(rig.request(TYPE_OUT, 10, Some((512, false))), STATUS_OK);
    assert_eq!(rig.request(TYPE_FLUSH, 0, None), STATUS_OK);
    let file = rig.file_bytes();
    assert!(file[10 * 512..11 * 512].iter().all(|&b| b == 0xab));
    assert!(file[9 * 512..10 * 512].iter().all(|&b| b == 9));
    assert!(file[11 * 512..12 * 512].iter().all(|&b| b == 11));
    // The used length of a read counts the data and the status byte.
    let used_len: u32 = rig.mem.read_obj(GuestAddress(USED + 4 + 4)).unwrap();
    assert_eq!(used_len, 1025);
    let c = rig.worker.stats().counts();
    assert_eq!((c.reads, c.writes, c.flushes), (1, 1, 1));
    assert_eq!((c.bytes_read, c.bytes_written, c.refused), (1024, 512, 0));
}

#[test]
fn get_id_and_zeroes() {
    let mut rig = rig("id", 64, false);
    assert_eq!(rig.request(TYPE_GET_ID, 0, Some((20, true))), STATUS_OK);
    let mut id = [0u8; 20];
    rig.mem.read_slice(&mut id, GuestAddress(0x4000)).unwrap();
    assert_eq!(&id[..4], b"rig\0");
    range_bytes(&rig.mem, 0x4000, 5, 2, 1);
    assert_eq!(
        rig.request(TYPE_WRITE_ZEROES, 0, Some((16, false))),
        STATUS_OK
    );
    range_bytes(&rig.mem, 0x4000, 20, 1, 0);
    assert_eq!(rig.request(TYPE_DISCARD, 0, Some((16, false))), STATUS_OK);
    let file = rig.file_bytes();
    assert!(file[5 * 512..7 * 512].iter().all(|&b| b == 0));
    assert!(file[4 * 512..5 * 512].iter().all(|&b| b == 4));
    assert!(file[7 * 512..8 * 512].iter().all(|&b| b == 7));
    assert_eq!(file.len(), 64 * 512, "holes keep the size");
}

#[test]
fn bad_requests_fail_and_the_disk_is_untouched() {
    let mut rig = rig("bad", 64, false);
    let before = rig.file_bytes();
    rig.mem
        .write_slice(&[0xcd; 4096], GuestAddress(0x4000))
        .unwrap();
    assert_eq!(rig.request(TYPE_OUT, 63, Some((1024, false))), STATUS_IOERR);
    assert_eq!(
        rig.request(TYPE_OUT, u64::MAX, Some((512, false))),
        STATUS_IOERR
    );
    assert_eq!(rig.request(TYPE_OUT, 0, Some((100, false))), STATUS_IOERR);
    assert_eq!(rig.request(42, 0, None), STATUS_UNSUPP);
    // A chain whose descriptors loop: taken and refused without a status.
    let head = rig.next_desc;
    let at = GuestAddress(DESC + u64::from(head) * 16);
    rig.mem
        .write_obj(Descriptor::new(0x1000, 16, F_NEXT, head), at)
        .unwrap();
    let slot = AVAIL + 4 + u64::from(rig.avail % QSIZE) * 2;
    rig.mem.write_obj(head, GuestAddress(slot)).unwrap();
    rig.avail += 1;
    rig.mem
        .write_obj(rig.avail, GuestAddress(AVAIL + 2))
        .unwrap();
    rig.reg(crate::virtio::pci::NOTIFY_OFFSET, 0, 2);
    rig.wait_used(rig.avail);
    rig.next_desc = (head + 1) % QSIZE;
    // And the device still works.
    assert_eq!(rig.request(TYPE_IN, 1, Some((512, true))), STATUS_OK);
    assert_eq!(rig.file_bytes(), before);
    let c = rig.worker.stats().counts();
    assert_eq!((c.refused, c.writes, c.reads), (5, 0, 1), "{c:?}");
}

#[test]
fn a_bogus_available_index_fails_the_device_without_spinning() {
    let mut rig = rig("bogus-avail", 16, false);
    assert_eq!(rig.request(TYPE_IN, 0, Some((512, true))), STATUS_OK);
    // The driver claims 300 new buffers in a queue of 64.
    rig.mem
        .write_obj(rig.avail.wrapping_add(300), GuestAddress(AVAIL + 2))
        .unwrap();
    rig.reg(crate::virtio::pci::NOTIFY_OFFSET, 0, 2);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // The I/O thread must let go of the transport, and flag the device.
        let status = {
            let mut t = rig.transport.lock().unwrap();
            let mut b = [0u8];
            t.read_bar(0, crate::virtio::pci::COMMON_OFFSET + 0x14, &mut b);
            b[0]
        };
        if status & status::DEVICE_NEEDS_RESET != 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status {status:#x}: no NEEDS_RESET"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn read_only_disk_refuses_writes() {
    let mut rig = rig("ro", 16, true);
    let before = rig.file_bytes();
    assert_eq!(rig.request(TYPE_OUT, 0, Some((512, false))), STATUS_IOERR);
    assert_eq!(rig.request(TYPE_IN, 0, Some((512, true))), STATUS_OK);
    assert_eq!(rig.file_bytes(), before);
}

#[test]
fn many_requests_in_flight() {
    let mut rig = rig("batch", 256, false);
    // 20 reads of different sectors, posted before the device looks.
    for i in 0..20u64 {
        let hdr = 0x5000 + i * 0x100;
        header(&rig.mem, hdr, TYPE_IN, i * 3);
        rig.post(&[
            (hdr, 16, false),
            (0x10_0000 + i * 512, 512, true),
            (hdr + 0x80, 1, true),
        ]);
    }
    rig.wait_used(20);
    for i in 0..20u64 {
        let mut got = [0u8; 512];
        rig.mem
            .read_slice(&mut got, GuestAddress(0x10_0000 + i * 512))
            .unwrap();
        assert!(got.iter().all(|&b| b == (i * 3) as u8), "read {i}");
        assert_eq!(
            rig.mem
                .read_obj::<u8>(GuestAddress(0x5000 + i * 0x100 + 0x80))
                .unwrap(),
            0
        );
    }
}

#[test]
fn a_reset_waits_for_the_request_in_hand_and_drops_the_rest() {
    // Ten 1 MiB reads of different sectors, all into the same 256 KiB (four
    // segments each): any read served after the reset would change it.
    const DATA: u64 = 0x20_0000;
    const LEN: u32 = 256 << 10;
    let mut rig = rig_with("reset", 4096, false, |image| Box::new(Slow(image)));
    rig.mem
        .write_slice(&vec![0xee; LEN as usize], GuestAddress(DATA))
        .unwrap();
    for i in 0..10u64 {
        let hdr = 0x5000 + i * 0x100;
        header(&rig.mem, hdr, TYPE_IN, i * 7);
        let mut chain = vec![(hdr, 16, false)];
        chain.extend([(DATA, LEN, true); 4]);
        chain.push((hdr + 0x80, 1, true));
        rig.post(&chain);
    }
    // Let the I/O thread take them (it then serves for 200 ms), then reset.
    std::thread::sleep(Duration::from_millis(5));
    rig.reg(crate::virtio::pci::COMMON_OFFSET + 0x14, 0, 1);
    // From here the driver owns its buffers again: nothing may change them.
    let snapshot = |mem: &GuestMemory| {
        let mut bytes = vec![0u8; LEN as usize];
        mem.read_slice(&mut bytes, GuestAddress(DATA)).unwrap();
        let used: u16 = mem.read_obj(GuestAddress(USED + 2)).unwrap();
        (bytes, used)
    };
    let before = snapshot(&rig.mem);
    assert!(before.1 < 10, "every read was done before the reset");
    eprintln!("DEBUG used {} first byte {:#x}", before.1, before.0[0]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        before == snapshot(&rig.mem),
        "guest memory written after the reset"
    );
}

#[test]
fn a_full_batch_then_an_empty_queue_leaves_kicks_armed() {
    // A driver that kicks only when EVENT_IDX asks, as Linux does: exactly
    // one full batch, then one more request.
    let mut rig = rig("armed", 256, false);
    let read = |rig: &mut Rig, i: u64| {
        let hdr = 0x5000 + i * 0x100;
        header(&rig.mem, hdr, TYPE_IN, i);
        rig.add(&[
            (hdr, 16, false),
            (0x10_0000 + i * 512, 512, true),
            (hdr + 0x80, 1, true),
        ]);
    };
    let full = worker::MAX_BATCH as u64;
    for i in 0..full {
        read(&mut rig, i);
    }
    rig.kick();
    rig.wait_used(full as u16);
    read(&mut rig, full);
    rig.kick_if_asked(1);
    rig.wait_used(full as u16 + 1);
}
