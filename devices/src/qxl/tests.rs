//! Device tests: a small guest driver in Rust that does what Linux's qxl
//! driver does (read the ROM, reset, add memslots, create the primary, push
//! draw and cursor commands, notify, collect releases and interrupts), plus
//! hostile guests that must end in the error state without a panic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::defs::*;
use super::device::{Mode, QxlCore};
use super::memory::{Backing, BarMemory};
use super::memslots::{make_address, BarLayout};
use super::observer::DrawableObserver;
use super::*;
use crate::display::{DisplayEvent, Monitor, Rect, Surface};
use crate::interrupt::LevelInterrupt;
use crate::pci::{BarBacking, PciDevice};

const BAR0: u64 = 0xc000_0000;
const BAR1: u64 = 0xc400_0000;

#[derive(Default)]
struct TestLine(AtomicBool);

impl LevelInterrupt for TestLine {
    fn set_level(&self, asserted: bool) {
        self.0.store(asserted, Ordering::SeqCst);
    }
}

/// A guest driver talking to the device.
struct Guest {
    qxl: Qxl,
    worker: Option<worker::Worker>,
    mem: BarMemory,
    line: Arc<TestLine>,
    config: QxlConfig,
    header: u64,
    /// Next free byte of BAR 0's command pages.
    next: u64,
    next_id: u64,
    bars: BarLayout,
}

fn small_config() -> QxlConfig {
    QxlConfig {
        ram_size: 16 << 20,
        vram_size: 8 << 20,
        vram64_size: None,
        vgamem_size: 8 << 20,
        revision: 4,
        initial_size: None,
        heads: 2,
    }
}

/// Little-endian structure builder.
#[derive(Default)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i32(self, v: i32) -> Self {
        self.u32(v as u32)
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A QXLRect: top, left, bottom, right.
    fn rect(self, r: Rect) -> Self {
        self.i32(r.top).i32(r.left).i32(r.bottom).i32(r.right)
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn pad_to(mut self, n: usize) -> Self {
        self.0.resize(n, 0);
        self
    }
}

impl Guest {
    fn new(config: QxlConfig) -> Guest {
        let line = Arc::new(TestLine::default());
        let mut qxl = Qxl::new(config, line.clone(), 11).unwrap();
        let worker = qxl.take_worker();
        let ram = qxl.vga.framebuffer.clone();
        let vram = match qxl.pci.lock().unwrap().bar_backing(BAR_VRAM) {
            BarBacking::Memory { memory, .. } => memory,
            BarBacking::Trapped => unreachable!(),
        };
        let mem = BarMemory::new(ram, vram);
        let header = config.ram_header_offset();
        Guest {
            qxl,
            worker,
            mem,
            line,
            config,
            header,
            next: config.vgamem_size,
            next_id: 1,
            bars: BarLayout {
                ram: Some(BAR0..BAR0 + config.ram_size),
                vram: Some(BAR1..BAR1 + config.vram_size),
                vram64: None,
            },
        }
    }

    fn core(&mut self) -> &mut QxlCore {
        self.worker.as_mut().unwrap().core()
    }

    fn io(&mut self, port: u8, value: u8) {
        let bars = self.bars.clone();
        self.core().io_write(port, value, &bars);
    }

    fn ram_u32(&self, field: u64) -> u32 {
        self.mem.u32_at(Backing::Ram, self.header + field)
    }

    fn set_ram_u32(&self, field: u64, v: u32) {
        self.mem.set_u32_at(Backing::Ram, self.header + field, v)
    }

    /// Takes the pending interrupt causes (as Linux's handler does), and
    /// tells the device.
    fn ack(&mut self) -> u32 {
        let pending = self.ram_u32(ram::INT_PENDING);
        self.set_ram_u32(ram::INT_PENDING, 0);
        self.io(IO_UPDATE_IRQ, 0);
        pending
    }

    /// Writes bytes into BAR 0's command pages; returns their QXLPHYSICAL.
    fn put(&mut self, bytes: &[u8]) -> u64 {
        let at = self.next;
        self.next = (at + bytes.len() as u64).next_multiple_of(64);
        assert!(self.next < self.header, "test ran out of BAR 0");
        let r = self
            .mem
            .range(Backing::Ram, at, bytes.len() as u64)
            .unwrap();
        assert!(self.mem.write(r, 0, bytes));
        make_address(1, 0, at)
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Reset + interrupt mask + both memslots, as Linux's probe does.
    fn boot(&mut self) {
        self.io(IO_RESET, 0);
        self.set_ram_u32(ram::INT_MASK, 0x27);
        for (id, start, end) in [
            (1u8, BAR0, BAR0 + self.config.ram_header_offset()),
            (2, BAR1, BAR1 + self.config.vram_size),
        ] {
            self.mem
                .set_u64_at(Backing::Ram, self.header + ram::MEM_SLOT, start);
            self.mem
                .set_u64_at(Backing::Ram, self.header + ram::MEM_SLOT + 8, end);
            self.io(IO_MEMSLOT_ADD_ASYNC, id);
            assert_eq!(
                self.ack() & INTERRUPT_IO_CMD,
                INTERRUPT_IO_CMD,
                "memslot add completes"
            );
        }
        assert!(!self.core().guest_bug());
    }

    /// CREATE_PRIMARY_ASYNC with the shadow at surface-BAR offset 0.
    fn create_primary(&mut self, w: u32, h: u32) {
        let sc = Bytes::default()
            .u32(w)
            .u32(h)
            .i32((w * 4) as i32)
            .u32(SURFACE_FMT_32_XRGB)
            .u32(0)
            .u32(0)
            .u32(SURF_FLAG_KEEP_DATA)
            .u32(0)
            .u64(make_address(2, 0, 0));
        let r = self
            .mem
            .range(Backing::Ram, self.header + ram::CREATE_SURFACE, 40)
            .unwrap();
        self.mem.write(r, 0, &sc.0);
        self.io(IO_CREATE_PRIMARY_ASYNC, 0);
        assert_eq!(self.ack() & INTERRUPT_IO_CMD, INTERRUPT_IO_CMD);
    }

    /// Pushes a command on a ring and kicks the device if it asked.
    fn push(&mut self, cursor: bool, data: u64, kind: u32) {
        let base = self.header
            + if cursor {
                ram::CURSOR_RING
            } else {
                ram::CMD_RING
            };
        let prod = self.mem.u32_at(Backing::Ram, base + ring::PROD);
        let item = base + ring::ITEMS + u64::from(prod & 31) * 16;
        self.mem.set_u64_at(Backing::Ram, item, data);
        self.mem.set_u32_at(Backing::Ram, item + 8, kind);
        self.mem
            .set_u32_at(Backing::Ram, base + ring::PROD, prod.wrapping_add(1));
        if prod.wrapping_add(1) == self.mem.u32_at(Backing::Ram, base + ring::NOTIFY_ON_PROD) {
            self.io(
                if cursor {
                    IO_NOTIFY_CURSOR
                } else {
                    IO_NOTIFY_CMD
                },
                0,
            );
        }
    }

    /// Pops the release ring and walks each chain; returns the ids.
    fn releases(&mut self) -> Vec<u64> {
        let base = self.header + ram::RELEASE_RING;
        let mut ids = Vec::new();
        loop {
            let cons = self.mem.u32_at(Backing::Ram, base + ring::CONS);
            let prod = self.mem.u32_at(Backing::Ram, base + ring::PROD);
            if cons == prod {
                self.mem
                    .set_u32_at(Backing::Ram, base + ring::NOTIFY_ON_PROD, cons + 1);
                break;
            }
            let mut id = self
                .mem
                .u64_at(Backing::Ram, base + ring::ITEMS + u64::from(cons & 7) * 8);
            self.mem
                .set_u32_at(Backing::Ram, base + ring::CONS, cons + 1);
            while id != 0 {
                ids.push(id);
                // Our ids are the BAR 0 offsets of the commands (like Windows' pointers).
                id = self.mem.u64_at(Backing::Ram, self.id_offsets(id));
            }
        }
        ids
    }

    fn id_offsets(&self, id: u64) -> u64 {
        id >> 16
    }

    /// A command body's release info: id = offset << 16 | serial, so the
    /// test can follow chains.
    fn release_info(&mut self) -> (u64, Bytes) {
        let at = self.next;
        let id = (at << 16) | (self.new_id() & 0xffff);
        (id, Bytes::default().u64(id))
    }

    #[allow(clippy::too_many_arguments)]
    fn image_bitmap(
        &mut self,
        format: u8,
        flags: u8,
        w: u32,
        h: u32,
        stride: u32,
        palette: u64,
        data: u64,
    ) -> u64 {
        let img = Bytes::default()
            .u64(0)
            .u8(0)
            .u8(0)
            .u32(w)
            .u32(h)
            .u8(format)
            .u8(flags)
            .u32(w)
            .u32(h)
            .u32(stride)
            .u64(palette)
            .u64(data);
        self.put(&img.0)
    }

    fn chunk(&mut self, data: &[u8], next: u64) -> u64 {
        let c = Bytes::default()
            .u32(data.len() as u32)
            .u64(0)
            .u64(next)
            .raw(data);
        self.put(&c.0)
    }

    fn clip(&mut self, rects: &[Rect]) -> u64 {
        let mut c = Bytes::default()
            .u32(rects.len() as u32)
            .u32((16 * rects.len()) as u32)
            .u64(0)
            .u64(0);
        for r in rects {
            c = c.rect(*r);
        }
        self.put(&c.0)
    }

    /// A drawable; returns (release id, address).
    fn drawable(
        &mut self,
        surface: u32,
        kind: u8,
        bbox: Rect,
        clip: u64,
        union: &[u8],
    ) -> (u64, u64) {
        let (id, d) = self.release_info();
        let d = d
            .u32(surface)
            .u8(1)
            .u8(kind)
            .u8(0)
            .rect(Rect::default())
            .rect(bbox)
            .u32(if clip == 0 { 0 } else { 1 })
            .u64(clip)
            .u32(0)
            .i32(-1)
            .i32(-1)
            .i32(-1)
            .pad_to(123)
            .raw(union)
            .pad_to(191);
        let addr = self.put(&d.0);
        (id, addr)
    }

    /// A DRAW_COPY of a 32-bit top-down single-chunk bitmap, as fbcon sends.
    fn draw_copy(&mut self, bbox: Rect, clip: &[Rect], pixel: impl Fn(u32, u32) -> u32) -> u64 {
        let (w, h) = (bbox.width() as u32, bbox.height() as u32);
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&pixel(x, y).to_le_bytes());
            }
        }
        let chunk = self.chunk(&data, 0);
        let image = self.image_bitmap(8, 4, w, h, w * 4, 0, chunk);
        let clip = if clip.is_empty() { 0 } else { self.clip(clip) };
        let u = Bytes::default()
            .u64(image)
            .rect(Rect::new(0, 0, w as i32, h as i32))
            .u16(8)
            .u8(0)
            .raw(&[0; 17]);
        let (id, addr) = self.drawable(0, 3, bbox, clip, &u.0);
        self.push(false, addr, CMD_DRAW);
        id
    }

    fn head_pixel(&self, x: u32, y: u32) -> u32 {
        self.qxl.display.head(0).unwrap().pixel(x, y) & 0xff_ffff
    }

    fn bug(&mut self) -> bool {
        self.core().guest_bug()
    }
}

fn booted(w: u32, h: u32) -> Guest {
    let mut g = Guest::new(small_config());
    g.boot();
    g.create_primary(w, h);
    g
}

#[test]
fn rom_and_ram_after_reset() {
    let g = Guest::new(QxlConfig::default());
    let rom = match g.qxl.pci.lock().unwrap().bar_backing(BAR_ROM) {
        BarBacking::Memory {
            memory, read_only, ..
        } => {
            assert!(read_only);
            memory
        }
        _ => panic!("ROM is memory"),
    };
    let rom = BarMemory::new(rom.clone(), rom);
    assert_eq!(rom.u32_at(Backing::Ram, 0), ROM_MAGIC);
    assert_eq!(
        rom.u32_at(Backing::Ram, defs::rom::RAM_HEADER_OFFSET as u64),
        0x03FF_E000
    );
    assert_eq!(g.ram_u32(ram::MAGIC), RAM_MAGIC);
    for r in [ram::CMD_RING, ram::CURSOR_RING] {
        assert_eq!(g.ram_u32(r + ring::NUM_ITEMS), 32);
        assert_eq!(g.ram_u32(r + ring::NOTIFY_ON_PROD), 1);
    }
    assert_eq!(g.ram_u32(ram::RELEASE_RING + ring::NUM_ITEMS), 8);
    let pci = g.qxl.pci.lock().unwrap();
    assert_eq!(pci.config().read_reg(0), 0x0100_1b36);
    assert_eq!(
        pci.config().read_reg(2),
        0x0300_0004,
        "VGA class, revision 4"
    );
    assert_eq!((pci.config().read_reg(15) >> 8) & 0xff, 1, "INTA");
    for (bar, size) in [(0, 64u64 << 20), (1, 64 << 20), (2, 8192), (3, 32)] {
        assert_eq!(pci.config().bar(bar).unwrap().size, size, "BAR {bar}");
    }
    assert!(pci.config().bar(4).is_none());
}

#[test]
fn linux_probe_and_modeset() {
    let mut g = Guest::new(small_config());
    assert!(!g.qxl.vga.qxl_owns_screen());
    g.boot();
    let generation = g.qxl.vga.switch.generation();
    g.create_primary(64, 32);
    assert_eq!(g.core().mode(), Mode::Native);
    assert!(g.qxl.vga.qxl_owns_screen());
    assert_ne!(g.qxl.vga.switch.generation(), generation);
    assert_eq!(g.qxl.display.heads(), vec![(0, 64, 32)]);
    // Destroy and re-create at another size (a mode switch).
    g.io(IO_DESTROY_PRIMARY_ASYNC, 0);
    assert_eq!(g.ack() & INTERRUPT_IO_CMD, INTERRUPT_IO_CMD);
    assert_eq!(g.core().mode(), Mode::Undefined);
    g.create_primary(128, 64);
    assert_eq!(g.qxl.display.heads(), vec![(0, 128, 64)]);
    // Reset goes back to VGA.
    g.io(IO_RESET, 0);
    assert_eq!(g.core().mode(), Mode::Vga);
    assert!(!g.qxl.vga.qxl_owns_screen());
    assert!(g.core().slots().get(1).is_none(), "reset drops memslots");
}

#[test]
fn fbcon_copy_draws_releases_and_interrupts() {
    let mut g = booted(64, 32);
    let setup = g.qxl.control.stats();
    let id = g.draw_copy(
        Rect::new(8, 4, 24, 12),
        &[Rect::new(8, 4, 16, 12)],
        |x, y| 0x10_0000 | (y << 8) | x,
    );
    assert_eq!(g.head_pixel(8, 4), 0x10_0000);
    assert_eq!(g.head_pixel(15, 11), 0x10_0707);
    assert_eq!(g.head_pixel(16, 4), 0, "clipped out");
    assert_eq!(g.head_pixel(7, 4), 0);
    assert!(
        g.line.0.load(Ordering::SeqCst),
        "release → DISPLAY interrupt"
    );
    assert_eq!(g.ack() & INTERRUPT_DISPLAY, INTERRUPT_DISPLAY);
    assert!(
        !g.line.0.load(Ordering::SeqCst),
        "UPDATE_IRQ lowers the line"
    );
    assert_eq!(g.releases(), vec![id]);
    // The device re-armed the command ring: the next push kicks it.
    let base = g.header + ram::CMD_RING;
    assert_eq!(
        g.mem.u32_at(Backing::Ram, base + ring::NOTIFY_ON_PROD),
        g.mem.u32_at(Backing::Ram, base + ring::PROD) + 1
    );
    let ids: Vec<u64> = (0..40)
        .map(|i| g.draw_copy(Rect::new(0, 0, 4, 4), &[], move |_, _| i))
        .collect();
    assert_eq!(g.head_pixel(0, 0), 39);
    // The ring holds 7 chains; the rest waits until the guest asks (as Linux
    // does when it runs short of memory).
    let mut got = g.releases();
    assert!(got.len() >= 7);
    g.io(IO_NOTIFY_OOM, 0);
    got.extend(g.releases());
    assert_eq!(got, ids, "every command released once, in order");
    let stats = g.qxl.control.stats();
    assert_eq!(stats.drawables, 41);
    assert_eq!(stats.releases, 41);
    assert_eq!(stats.bad_commands + stats.guest_bugs, 0);
    assert_eq!(
        stats.surface_copy_bytes, setup.surface_copy_bytes,
        "drawing copies no surface data"
    );
}

#[test]
fn update_area_writes_the_primary_back_to_guest_memory() {
    let mut g = booted(16, 8);
    g.draw_copy(Rect::new(0, 0, 16, 8), &[], |x, y| (y << 8) | x);
    let r = g.mem.range(Backing::Vram, 0, 16 * 8 * 4).unwrap();
    assert_eq!(
        g.mem.read_array::<4>(r, 4 * (3 * 16 + 5)),
        Some([0, 0, 0, 0]),
        "not yet"
    );
    let area = Bytes::default().rect(Rect::new(0, 0, 16, 4)).u32(0);
    let ar = g
        .mem
        .range(Backing::Ram, g.header + ram::UPDATE_AREA, 20)
        .unwrap();
    g.mem.write(ar, 0, &area.0);
    g.io(IO_UPDATE_AREA_ASYNC, 0);
    assert_eq!(g.ack() & INTERRUPT_IO_CMD, INTERRUPT_IO_CMD);
    assert_eq!(
        g.mem.read_array::<4>(r, 4 * (3 * 16 + 5)),
        Some([5, 3, 0, 0])
    );
    assert_eq!(
        g.mem.read_array::<4>(r, 4 * (5 * 16 + 5)),
        Some([0, 0, 0, 0]),
        "outside the area"
    );
}

#[test]
fn windows_style_bottom_up_multi_chunk_bitmap() {
    let mut g = booted(8, 8);
    // 4x3 bitmap, rows stored bottom-up, split into chunks that straddle rows.
    let (w, h) = (4u32, 3u32);
    let mut data = Vec::new();
    for row in (0..h).rev() {
        for x in 0..w {
            data.extend_from_slice(&(0x20_0000 | (row << 8) | x).to_le_bytes());
        }
    }
    let c3 = g.chunk(&data[30..], 0);
    let c2 = g.chunk(&data[7..30], c3);
    let empty = g.chunk(&[], c2);
    let c1 = g.chunk(&data[..7], empty);
    let image = g.image_bitmap(9, 0, w, h, w * 4, 0, c1);
    let u = Bytes::default()
        .u64(image)
        .rect(Rect::new(0, 0, 4, 3))
        .u16(8)
        .u8(1)
        .raw(&[0; 17]);
    let (id, addr) = g.drawable(0, 3, Rect::new(2, 2, 6, 5), 0, &u.0);
    g.push(false, addr, CMD_DRAW);
    for y in 0..3 {
        for x in 0..4 {
            assert_eq!(g.head_pixel(2 + x, 2 + y), 0x20_0000 | (y << 8) | x);
        }
    }
    assert_eq!(g.releases(), vec![id]);
}

#[test]
fn palettes_fill_rop_and_copy_bits() {
    let mut g = booted(16, 16);
    // 8-bit palettised 2x2 bitmap.
    let palette = g.put(
        &Bytes::default()
            .u64(0)
            .u16(2)
            .u32(0x11_2233)
            .u32(0x44_5566)
            .0,
    );
    let chunk = g.chunk(&[0, 1, 0, 0, 1, 7, 0, 0], 0);
    let image = g.image_bitmap(5, 4, 2, 2, 4, palette, chunk);
    let u = Bytes::default()
        .u64(image)
        .rect(Rect::new(0, 0, 2, 2))
        .u16(8)
        .u8(1)
        .raw(&[0; 17]);
    let (_, addr) = g.drawable(0, 3, Rect::new(0, 0, 2, 2), 0, &u.0);
    g.push(false, addr, CMD_DRAW);
    assert_eq!(g.head_pixel(0, 0), 0x11_2233);
    assert_eq!(g.head_pixel(1, 0), 0x44_5566);
    assert_eq!(g.head_pixel(1, 1), 0, "index past the palette is black");
    // FILL solid with XOR over (0,0)-(4,4).
    let u = Bytes::default()
        .u32(1)
        .u32(0x00ff_ffff)
        .pad_to(20)
        .u16(Ropd::OP_XOR)
        .raw(&[0; 17]);
    let (_, addr) = g.drawable(0, 1, Rect::new(0, 0, 4, 4), 0, &u.0);
    g.push(false, addr, CMD_DRAW);
    assert_eq!(g.head_pixel(0, 0), 0xee_ddcc);
    assert_eq!(g.head_pixel(3, 3), 0xff_ffff);
    // COPY_BITS (0,0)-(4,4) to (8,8).
    let u = Bytes::default().i32(0).i32(0);
    let (_, addr) = g.drawable(0, 4, Rect::new(8, 8, 12, 12), 0, &u.0);
    g.push(false, addr, CMD_DRAW);
    assert_eq!(g.head_pixel(8, 8), 0xee_ddcc);
    assert_eq!(g.head_pixel(11, 11), 0xff_ffff);
    assert_eq!(g.core().int_pending() & INTERRUPT_ERROR, 0);
}

use super::commands::Ropd;

#[test]
fn offscreen_surfaces_draw_copy_and_release_on_destroy() {
    let mut g = booted(16, 16);
    // Surface 5: 8x8 xRGB at surface-BAR offset 1 MiB.
    let (create_id, create) = g.release_info();
    let create = create
        .u32(5)
        .u8(0)
        .u32(SURF_FLAG_KEEP_DATA)
        .u32(SURFACE_FMT_32_XRGB)
        .u32(8)
        .u32(8)
        .i32(32)
        .u64(make_address(2, 0, 1 << 20));
    let addr = g.put(&create.0);
    g.push(false, addr, CMD_SURFACE);
    assert_eq!(g.core().surface_count(), 1);
    assert!(
        g.releases().is_empty(),
        "surface creates are kept until destroy"
    );
    // FILL surface 5 blue.
    let u = Bytes::default()
        .u32(1)
        .u32(0x0000_00ff)
        .pad_to(20)
        .u16(8)
        .raw(&[0; 17]);
    let (_, addr) = g.drawable(5, 1, Rect::new(0, 0, 8, 8), 0, &u.0);
    g.push(false, addr, CMD_DRAW);
    let r = g.mem.range(Backing::Vram, 1 << 20, 256).unwrap();
    assert_eq!(
        g.mem.read_array::<4>(r, 4 * 9),
        Some([0xff, 0, 0, 0]),
        "drawn in guest memory"
    );
    // COPY surface 5 (SURFACE image) to the primary.
    let image = g.put(&Bytes::default().u64(0).u8(104).u8(0).u32(8).u32(8).u32(5).0);
    let u = Bytes::default()
        .u64(image)
        .rect(Rect::new(0, 0, 8, 8))
        .u16(8)
        .u8(1)
        .raw(&[0; 17]);
    let (_, addr) = g.drawable(0, 3, Rect::new(4, 4, 12, 12), 0, &u.0);
    g.push(false, addr, CMD_DRAW);
    assert_eq!(g.head_pixel(11, 11), 0xff);
    assert_eq!(g.head_pixel(3, 3), 0);
    g.releases();
    // Destroy: the create is released first, then the destroy.
    let (destroy_id, destroy) = g.release_info();
    let addr = g.put(&destroy.u32(5).u8(1).pad_to(41).0);
    g.push(false, addr, CMD_SURFACE);
    assert_eq!(g.releases(), vec![create_id, destroy_id]);
    assert_eq!(g.core().surface_count(), 0);
}

#[test]
fn cursor_set_move_hide() {
    let mut g = booted(64, 64);
    let mut pixels = Vec::new();
    for i in 0..(4 * 4) {
        pixels.extend_from_slice(&[i as u8, 0, 0, 0xff]);
    }
    let shape = g.put(
        &Bytes::default()
            .u64(0)
            .u16(0)
            .u16(4)
            .u16(4)
            .u16(1)
            .u16(2)
            .u32(64)
            .u32(64)
            .u64(0)
            .u64(0)
            .raw(&pixels)
            .0,
    );
    let (id, cmd) = g.release_info();
    let addr = g.put(&cmd.u8(0).u16(30).u16(40).u8(1).u64(shape).pad_to(150).0);
    g.push(true, addr, CMD_CURSOR);
    let c = g.qxl.display.cursor();
    assert!(c.visible);
    assert_eq!((c.x, c.y), (30, 40));
    let s = c.shape.unwrap();
    assert_eq!((s.width, s.height, s.hot_x, s.hot_y), (4, 4, 1, 2));
    assert_eq!(&s.argb[4..8], &[1, 0, 0, 0xff]);
    let (id2, cmd) = g.release_info();
    let addr = g.put(&cmd.u8(1).u16(5).u16(6).pad_to(150).0);
    g.push(true, addr, CMD_CURSOR);
    assert_eq!((g.qxl.display.cursor().x, g.qxl.display.cursor().y), (5, 6));
    let (id3, cmd) = g.release_info();
    let addr = g.put(&cmd.u8(2).pad_to(150).0);
    g.push(true, addr, CMD_CURSOR);
    assert!(!g.qxl.display.cursor().visible);
    assert_eq!(g.releases(), vec![id, id2, id3]);
}

// ---- hostile guests ----------------------------------------------------------------------

#[test]
fn untranslatable_command_latches_the_error_state() {
    let mut g = booted(16, 16);
    g.push(false, make_address(6, 0, 0x1000), CMD_DRAW);
    assert!(g.bug());
    assert_ne!(g.core().int_pending() & INTERRUPT_ERROR, 0);
    // Everything but reset is ignored now.
    let before = g.qxl.control.stats().drawables;
    g.draw_copy(Rect::new(0, 0, 2, 2), &[], |_, _| 1);
    g.io(IO_NOTIFY_CMD, 0);
    assert_eq!(g.qxl.control.stats().drawables, before);
    g.io(IO_CREATE_PRIMARY_ASYNC, 0);
    assert_eq!(
        g.core().int_pending() & INTERRUPT_IO_CMD,
        0,
        "ignored, not completed"
    );
    // Reset clears it; the driver starts over.
    g.boot();
    assert!(!g.bug());
    g.create_primary(16, 16);
    g.draw_copy(Rect::new(0, 0, 2, 2), &[], |_, _| 7);
    assert_eq!(g.head_pixel(1, 1), 7);
}

#[test]
fn chunk_list_cycle_is_refused_and_processing_goes_on() {
    let mut g = booted(16, 16);
    // A chunk whose next points to itself, with zero bytes: an endless list.
    let at = g.next;
    let self_addr = make_address(1, 0, at);
    let c = g.chunk(&[], self_addr);
    assert_eq!(c, self_addr);
    let image = g.image_bitmap(8, 4, 2, 2, 8, 0, c);
    let u = Bytes::default()
        .u64(image)
        .rect(Rect::new(0, 0, 2, 2))
        .u16(8)
        .u8(1)
        .raw(&[0; 17]);
    let (id, addr) = g.drawable(0, 3, Rect::new(0, 0, 2, 2), 0, &u.0);
    g.push(false, addr, CMD_DRAW);
    assert!(!g.bug(), "a malformed drawable is refused, not latched");
    assert_ne!(g.core().int_pending() & INTERRUPT_ERROR, 0);
    assert_eq!(g.releases(), vec![id], "and still released");
    assert_eq!(g.qxl.control.stats().bad_commands, 1);
    // A cycle through data-carrying chunks hits the size limit instead.
    let a_at = g.next;
    let b_addr = make_address(1, 0, a_at + 64);
    let a = g.chunk(&[0; 8], b_addr);
    let b = g.chunk(&[0; 8], a);
    assert_eq!(b, b_addr);
    let image = g.image_bitmap(8, 4, 2, 2, 8, 0, a);
    let u = Bytes::default()
        .u64(image)
        .rect(Rect::new(0, 0, 2, 2))
        .u16(8)
        .u8(1)
        .raw(&[0; 17]);
    let (_, addr) = g.drawable(0, 3, Rect::new(0, 0, 2, 2), 0, &u.0);
    g.push(false, addr, CMD_DRAW);
    assert_eq!(g.qxl.control.stats().bad_commands, 2);
    // The device still draws.
    g.draw_copy(Rect::new(0, 0, 1, 1), &[], |_, _| 3);
    assert_eq!(g.head_pixel(0, 0), 3);
}

#[test]
fn huge_sizes_and_strides_are_refused() {
    let mut g = booted(16, 16);
    let chunk = g.chunk(&[0; 64], 0);
    let cases = [
        (0xffff_ffffu32, 1u32, 0xffff_fffcu32), // width beyond any limit
        (60000, 60000, 240000),                 // 14 GB bitmap
        (16, 16, 4),                            // stride shorter than a row
        (0, 4, 4),                              // empty
        (4, 4, 16),                             // chunks hold 64, bitmap needs 64: fine
    ];
    for (i, (w, h, stride)) in cases.iter().enumerate() {
        let image = g.image_bitmap(8, 4, *w, *h, *stride, 0, chunk);
        let u = Bytes::default()
            .u64(image)
            .rect(Rect::new(0, 0, 1, 1))
            .u16(8)
            .u8(1)
            .raw(&[0; 17]);
        let (_, addr) = g.drawable(0, 3, Rect::new(0, 0, 1, 1), 0, &u.0);
        g.push(false, addr, CMD_DRAW);
        let bad = g.qxl.control.stats().bad_commands;
        assert_eq!(bad, (i as u64 + 1).min(4), "case {i}");
    }
    // Surface create with a stride that overflows, and one bigger than its slot.
    for (stride, h) in [(i32::MIN, 1u32), (-(1 << 30), 4), (1 << 20, 16)] {
        let (_, create) = g.release_info();
        let create = create
            .u32(9)
            .u8(0)
            .u32(0)
            .u32(32)
            .u32(16)
            .u32(h)
            .i32(stride)
            .u64(make_address(2, 0, 0));
        let addr = g.put(&create.0);
        g.push(false, addr, CMD_SURFACE);
    }
    assert_eq!(g.core().surface_count(), 0);
    assert_eq!(g.qxl.control.stats().bad_commands, 7);
    // Primary larger than the framebuffer: guest bug.
    let sc = Bytes::default()
        .u32(8192)
        .u32(8192)
        .i32(8192 * 4)
        .u32(32)
        .pad_to(32)
        .u64(make_address(2, 0, 0));
    let r = g
        .mem
        .range(Backing::Ram, g.header + ram::CREATE_SURFACE, 40)
        .unwrap();
    g.mem.write(r, 0, &sc.0);
    g.io(IO_DESTROY_PRIMARY_ASYNC, 0);
    g.io(IO_CREATE_PRIMARY_ASYNC, 0);
    assert!(g.bug());
    assert_ne!(
        g.core().int_pending() & INTERRUPT_IO_CMD,
        0,
        "the async still completes"
    );
}

#[test]
fn bad_surface_ids_and_bboxes() {
    let mut g = booted(16, 16);
    let u = Bytes::default()
        .u32(1)
        .u32(0xff)
        .pad_to(20)
        .u16(8)
        .raw(&[0; 17]);
    // Surface id out of range, existing-but-absent surface, bbox off the surface.
    for (surface, bbox) in [
        (5000, Rect::new(0, 0, 1, 1)),
        (7, Rect::new(0, 0, 1, 1)),
        (0, Rect::new(0, 0, 17, 1)),
        (0, Rect::new(-1, 0, 1, 1)),
    ] {
        let (_, addr) = g.drawable(surface, 1, bbox, 0, &u.0);
        g.push(false, addr, CMD_DRAW);
    }
    // A dependency on a missing surface.
    let (_, d) = g.release_info();
    let d = d
        .u32(0)
        .u8(1)
        .u8(1)
        .u8(0)
        .rect(Rect::default())
        .rect(Rect::new(0, 0, 1, 1))
        .u32(0)
        .u64(0)
        .u32(0)
        .i32(77)
        .i32(-1)
        .i32(-1)
        .pad_to(123)
        .raw(&u.0)
        .pad_to(191);
    let addr = g.put(&d.0);
    g.push(false, addr, CMD_DRAW);
    // Clip rect count that does not match its data, and too many rects.
    let bad_clip = g.put(
        &Bytes::default()
            .u32(3)
            .u32(16)
            .u64(0)
            .u64(0)
            .rect(Rect::new(0, 0, 1, 1))
            .0,
    );
    let (_, addr) = g.drawable(0, 1, Rect::new(0, 0, 1, 1), bad_clip, &u.0);
    g.push(false, addr, CMD_DRAW);
    let many = g.put(&Bytes::default().u32(1_000_000).u32(16).u64(0).u64(0).0);
    let (_, addr) = g.drawable(0, 1, Rect::new(0, 0, 1, 1), many, &u.0);
    g.push(false, addr, CMD_DRAW);
    let stats = g.qxl.control.stats();
    assert_eq!(stats.bad_commands, 5);
    assert_eq!(
        stats.dropped_drawables, 2,
        "bounding boxes off the surface are dropped quietly"
    );
    assert!(!g.bug());
    assert_eq!(g.head_pixel(0, 0), 0, "nothing was drawn");
}

#[test]
fn extreme_coordinates_are_clipped_not_trusted() {
    let mut g = booted(16, 16);
    let solid = Bytes::default().u32(1).u32(0xff_ffff).pad_to(20);
    // COPY_BITS from the far ends of the coordinate space.
    for (x, y) in [(i32::MIN, 0), (0, i32::MIN), (i32::MAX, i32::MAX)] {
        let (_, addr) = g.drawable(
            0,
            4,
            Rect::new(0, 0, 16, 16),
            0,
            &Bytes::default().i32(x).i32(y).0,
        );
        g.push(false, addr, CMD_DRAW);
    }
    // FILL through a 1-bit mask placed far away.
    let bits = g.chunk(&[0xff; 8], 0);
    let mask = g.image_bitmap(2, 4, 8, 8, 1, 0, bits);
    let u = Bytes::default()
        .raw(&solid.0)
        .u16(8)
        .u8(0)
        .i32(i32::MIN)
        .i32(i32::MAX)
        .u64(mask);
    let (_, addr) = g.drawable(0, 1, Rect::new(0, 0, 16, 16), 0, &u.0);
    g.push(false, addr, CMD_DRAW);
    // STROKE of a path with points at the ends of 28.4 fixed point.
    let seg = Bytes::default()
        .u32(1 | 2)
        .u32(3)
        .i32(i32::MIN)
        .i32(i32::MIN)
        .i32(i32::MAX)
        .i32(i32::MAX)
        .i32(0)
        .i32(8 << 4);
    let path = g.put(
        &Bytes::default()
            .u32(seg.0.len() as u32)
            .u32(seg.0.len() as u32)
            .u64(0)
            .u64(0)
            .raw(&seg.0)
            .0,
    );
    let u = Bytes::default()
        .u64(path)
        .u8(0)
        .u8(0)
        .u8(0)
        .u8(0)
        .i32(3 << 4)
        .i32(0)
        .u64(0)
        .raw(&solid.0)
        .u16(8)
        .u16(8);
    let (_, addr) = g.drawable(0, 10, Rect::new(0, 0, 16, 16), 0, &u.0);
    g.push(false, addr, CMD_DRAW);
    // TEXT with a glyph far away and one on screen.
    let glyphs = Bytes::default()
        .i32(i32::MAX)
        .i32(i32::MIN)
        .i32(i32::MAX)
        .i32(5)
        .u16(8)
        .u16(1)
        .u8(0xff)
        .i32(2)
        .i32(3)
        .i32(0)
        .i32(0)
        .u16(8)
        .u16(1)
        .u8(0xff);
    let n = glyphs.0.len() as u32;
    let string = g.put(
        &Bytes::default()
            .u32(n)
            .u16(2)
            .u16(1)
            .u32(n)
            .u64(0)
            .u64(0)
            .raw(&glyphs.0)
            .0,
    );
    let u = Bytes::default()
        .u64(string)
        .rect(Rect::default())
        .raw(&solid.0)
        .raw(&[0; 20])
        .u16(8)
        .u16(8);
    let (_, addr) = g.drawable(0, 11, Rect::new(0, 0, 16, 16), 0, &u.0);
    g.push(false, addr, CMD_DRAW);
    let stats = g.qxl.control.stats();
    assert_eq!(stats.bad_commands + stats.guest_bugs, 0);
    assert_eq!(stats.drawables, 6);
    assert_eq!(g.head_pixel(2, 3), 0xff_ffff, "the on-screen glyph");
}

#[test]
fn ring_index_garbage_latches() {
    let mut g = booted(16, 16);
    g.set_ram_u32(ram::CMD_RING + ring::PROD, 1000);
    g.io(IO_NOTIFY_CMD, 0);
    assert!(g.bug());
    // Garbage num_items is never used.
    let mut g = booted(16, 16);
    g.set_ram_u32(ram::CMD_RING + ring::NUM_ITEMS, 0xffff_ffff);
    g.draw_copy(Rect::new(0, 0, 1, 1), &[], |_, _| 9);
    assert_eq!(g.head_pixel(0, 0), 9);
}

#[test]
fn unknown_commands_and_wrong_rings_latch() {
    for (cursor, kind) in [(false, 77), (true, CMD_DRAW), (false, CMD_CURSOR)] {
        let mut g = booted(16, 16);
        let (_, body) = g.release_info();
        let addr = g.put(&body.pad_to(200).0);
        g.push(cursor, addr, kind);
        assert!(g.bug(), "type {kind} on cursor ring {cursor}");
    }
}

#[test]
fn bad_io_latches_and_vga_mode_filters() {
    let mut g = Guest::new(small_config());
    // In VGA mode, an async port not allowed there completes at once and does nothing.
    g.io(IO_UPDATE_AREA_ASYNC, 0);
    assert_eq!(g.ack(), INTERRUPT_IO_CMD);
    g.io(IO_NOTIFY_CMD, 0);
    assert!(!g.bug());
    // Memslot outside the BARs, twice the same slot, bad id.
    g.boot();
    for (id, start, end) in [
        (3u8, 0x1000u64, 0x2000u64),
        (1, BAR0, BAR0 + 0x1000),
        (9, BAR0, BAR0 + 1),
    ] {
        g.mem
            .set_u64_at(Backing::Ram, g.header + ram::MEM_SLOT, start);
        g.mem
            .set_u64_at(Backing::Ram, g.header + ram::MEM_SLOT + 8, end);
        g.io(IO_MEMSLOT_ADD, id);
        assert!(g.bug(), "memslot {id} {start:#x}..{end:#x}");
        g.boot();
    }
    g.io(IO_RANGE_SIZE + 2, 0);
    assert!(g.bug(), "unknown port");
    g.boot();
    g.io(IO_SET_MODE, 3);
    assert!(g.bug(), "qxl-1 compat is refused");
}

#[test]
fn release_ring_full_grows_the_chain() {
    let mut g = booted(16, 16);
    let mut ids = Vec::new();
    // The guest does not consume releases for a while.
    for i in 0..300 {
        ids.push(g.draw_copy(Rect::new(0, 0, 1, 1), &[], move |_, _| i));
    }
    let got = g.releases();
    let mut rest = Vec::new();
    // More come once there is room.
    g.io(IO_FLUSH_RELEASE, 0);
    rest.extend(g.releases());
    g.io(IO_NOTIFY_OOM, 0);
    rest.extend(g.releases());
    let mut all = got;
    all.extend(rest);
    assert_eq!(all, ids);
}

#[test]
fn random_garbage_never_panics() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..40 {
        let mut g = booted(32, 32);
        // Fill a window of BAR 0 with garbage that mostly points into itself.
        let base = g.next;
        let mut garbage = Vec::new();
        for _ in 0..2048 {
            let v = rand();
            let word = match v % 4 {
                0 => make_address(1, 0, base + (v >> 8) % 8192),
                1 => v & 0xff,
                2 => v & 0xffff,
                _ => v,
            };
            garbage.extend_from_slice(&word.to_le_bytes());
        }
        g.put(&garbage);
        for _ in 0..64 {
            let v = rand();
            let addr = make_address(1, 0, base + (v >> 16) % 16384);
            let kind = [CMD_DRAW, CMD_SURFACE, CMD_UPDATE, CMD_MESSAGE, CMD_DRAW][(v % 5) as usize];
            let cursor = v % 7 == 0;
            g.push(cursor, addr, if cursor { CMD_CURSOR } else { kind });
            if g.bug() {
                g.boot();
                g.create_primary(32, 32);
            }
        }
        let _ = round;
    }
}

// ---- the threaded device, through the PCI function -------------------------------------

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl DrawableObserver for Recorder {
    fn drawable(&mut self, d: &super::commands::Drawable, _: &BarMemory) {
        self.0
            .lock()
            .unwrap()
            .push(format!("draw {} {:?}", d.op.name(), d.bbox));
    }
    fn primary(&mut self, p: Option<&super::surfaces::SurfaceInfo>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("primary {:?}", p.map(|p| (p.width, p.height))));
    }
}

#[test]
fn threaded_device_through_port_writes() {
    let mut g = Guest::new(small_config());
    let worker = g.worker.take().unwrap();
    let handle = worker.spawn("qxl-test".into()).unwrap();
    let recorder = Recorder::default();
    g.qxl.control.set_observer(Some(Box::new(recorder.clone())));
    // Program the BARs as firmware would so memslot adds find them.
    {
        let mut pci = g.qxl.pci.lock().unwrap();
        let config = pci.config_mut();
        config.set_bar_address(0, BAR0);
        config.set_bar_address(1, BAR1);
        config.set_command(0x7);
    }
    let port = |g: &Guest, port: u8, value: u8| {
        g.qxl
            .pci
            .lock()
            .unwrap()
            .write_bar(BAR_IO, u64::from(port), &[value]);
    };
    port(&g, IO_RESET, 0);
    g.set_ram_u32(ram::INT_MASK, 0x27);
    g.mem
        .set_u64_at(Backing::Ram, g.header + ram::MEM_SLOT, BAR0);
    g.mem.set_u64_at(
        Backing::Ram,
        g.header + ram::MEM_SLOT + 8,
        BAR0 + g.config.ram_header_offset(),
    );
    // Synchronous: the slot exists when the write returns.
    port(&g, IO_MEMSLOT_ADD, 1);
    g.mem
        .set_u64_at(Backing::Ram, g.header + ram::MEM_SLOT, BAR1);
    g.mem.set_u64_at(
        Backing::Ram,
        g.header + ram::MEM_SLOT + 8,
        BAR1 + g.config.vram_size,
    );
    port(&g, IO_MEMSLOT_ADD, 2);
    let sc = Bytes::default()
        .u32(32)
        .u32(16)
        .i32(128)
        .u32(32)
        .pad_to(24)
        .u32(1)
        .u32(0)
        .u64(make_address(2, 0, 0));
    let r = g
        .mem
        .range(Backing::Ram, g.header + ram::CREATE_SURFACE, 40)
        .unwrap();
    g.mem.write(r, 0, &sc.0);
    port(&g, IO_CREATE_PRIMARY, 0);
    assert_eq!(
        g.qxl.display.heads(),
        vec![(0, 32, 16)],
        "sync create is done on return"
    );
    // An async one completes with IO_CMD.
    port(&g, IO_MONITORS_CONFIG_ASYNC, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !g.line.0.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "no interrupt");
        std::thread::yield_now();
    }
    assert_eq!(g.ram_u32(ram::INT_PENDING), INTERRUPT_IO_CMD);
    g.set_ram_u32(ram::INT_PENDING, 0);
    port(&g, IO_UPDATE_IRQ, 0);
    assert!(
        !g.line.0.load(Ordering::SeqCst),
        "UPDATE_IRQ is applied before the write returns"
    );
    // Draw through the rings, kicked by NOTIFY_CMD from port writes.
    let (w, h) = (4u32, 4u32);
    let chunk = g.chunk(&[0x42; 64], 0);
    let image = g.image_bitmap(8, 4, w, h, 16, 0, chunk);
    let u = Bytes::default()
        .u64(image)
        .rect(Rect::new(0, 0, 4, 4))
        .u16(8)
        .u8(1)
        .raw(&[0; 17]);
    let (id, addr) = g.drawable(0, 3, Rect::new(0, 0, 4, 4), 0, &u.0);
    let base = g.header + ram::CMD_RING;
    g.mem.set_u64_at(Backing::Ram, base + ring::ITEMS, addr);
    g.mem
        .set_u32_at(Backing::Ram, base + ring::ITEMS + 8, CMD_DRAW);
    g.mem.set_u32_at(Backing::Ram, base + ring::PROD, 1);
    port(&g, IO_NOTIFY_CMD, 0);
    // UPDATE_AREA is synchronous and drains the ring first.
    let area = Bytes::default().rect(Rect::new(0, 0, 4, 4)).u32(0);
    let ar = g
        .mem
        .range(Backing::Ram, g.header + ram::UPDATE_AREA, 20)
        .unwrap();
    g.mem.write(ar, 0, &area.0);
    port(&g, IO_UPDATE_AREA, 0);
    assert_eq!(g.head_pixel(3, 3), 0x42_4242);
    assert_eq!(g.releases(), vec![id]);
    assert_eq!(
        *recorder.0.lock().unwrap(),
        vec![
            "primary Some((32, 16))".to_string(),
            format!("draw copy {:?}", Rect::new(0, 0, 4, 4))
        ]
    );
    // A legacy VGA register write (the VGA calls the switch's hook) makes
    // the worker leave native mode (revision 4).
    assert!(g.qxl.vga.qxl_owns_screen());
    let generation = g.qxl.vga.switch.generation();
    g.qxl.vga.switch.legacy_write();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while g.qxl.vga.qxl_owns_screen() {
        assert!(std::time::Instant::now() < deadline, "still native");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_ne!(g.qxl.vga.switch.generation(), generation);
    // A machine reset goes back to VGA mode.
    g.qxl.control.reset();
    assert!(!g.qxl.vga.qxl_owns_screen());
    g.qxl.control.stop();
    handle.join().unwrap();
}

#[test]
fn vga_port_writes_leave_native_mode_on_revision_4_only() {
    for (revision, back_to_vga) in [(4, true), (5, false)] {
        let mut g = Guest::new(QxlConfig {
            revision,
            ..small_config()
        });
        g.boot();
        g.create_primary(16, 16);
        g.core().vga_port_written();
        assert_eq!(
            g.core().mode() == Mode::Vga,
            back_to_vga,
            "revision {revision}"
        );
        assert_eq!(g.qxl.vga.qxl_owns_screen(), !back_to_vga);
    }
}

/// The ROM BAR, to read (as "RAM").
fn rom(g: &Guest) -> BarMemory {
    let rom = match g.qxl.pci.lock().unwrap().bar_backing(BAR_ROM) {
        BarBacking::Memory { memory, .. } => memory,
        _ => unreachable!(),
    };
    BarMemory::new(rom.clone(), rom)
}

#[test]
fn client_monitors_config_reaches_the_rom_and_the_guest() {
    let mut g = Guest::new(small_config());
    g.boot();
    g.ack();
    g.core().set_client_monitors(&[(0, 0, 1280, 720)]);
    assert_eq!(
        g.ack(),
        INTERRUPT_CLIENT_MONITORS_CONFIG,
        "the mask has bit 5"
    );
    let rom = rom(&g);
    let all = rom.range(Backing::Ram, 0, 8192).unwrap();
    let mut cfg = vec![0u8; 1028];
    rom.read(all, defs::rom::CLIENT_MONITORS_CONFIG as u64, &mut cfg);
    assert_eq!(
        rom.u32_at(Backing::Ram, defs::rom::CLIENT_MONITORS_CONFIG_CRC as u64),
        super::rom::crc32_le(&cfg)
    );
    assert_eq!(
        rom.u32_at(Backing::Ram, defs::rom::CLIENT_MONITORS_CONFIG as u64 + 16),
        1280,
        "right"
    );
    // Unchanged: no interrupt; kept across a reset.
    g.core().set_client_monitors(&[(0, 0, 1280, 720)]);
    assert_eq!(g.ack(), 0);
    g.io(IO_RESET, 0);
    assert_eq!(
        rom.u32_at(Backing::Ram, defs::rom::CLIENT_MONITORS_CONFIG as u64 + 16),
        1280
    );
    // A guest that did not enable the bit (mask 0 after reset) is not interrupted.
    g.core().set_client_monitors(&[(0, 0, 800, 600)]);
    assert_eq!(g.core().int_pending(), 0);
    g.set_ram_u32(ram::INT_MASK, 0x27);
    g.core().set_client(true, &[0b100]);
    assert_eq!(g.core().int_pending(), 0, "CLIENT is not in Linux's mask");
    g.set_ram_u32(ram::INT_MASK, 0x37);
    g.core().set_client(false, &[]);
    assert_eq!(g.core().int_pending(), INTERRUPT_CLIENT);
}

#[test]
fn keep_data_loads_the_primary_from_guest_memory() {
    let mut g = Guest::new(small_config());
    g.boot();
    let r = g.mem.range(Backing::Vram, 0, 64).unwrap();
    g.mem.write(r, 4 * 5, &[1, 2, 3, 0]);
    g.create_primary(8, 2);
    assert_eq!(g.head_pixel(5, 0), 0x03_0201);
    let _ = Surface::new(1, 1);
}

/// Writes a guest monitors config of `heads` (id, x, y, width, height) and
/// tells the device (`IO_MONITORS_CONFIG_ASYNC`).
fn monitors_config(g: &mut Guest, max_allowed: u16, heads: &[(u32, u32, u32, u32, u32)]) {
    let mut b = Bytes::default().u16(heads.len() as u16).u16(max_allowed);
    for &(id, x, y, w, h) in heads {
        b = b.u32(id).u32(0).u32(w).u32(h).u32(x).u32(y).u32(0);
    }
    let addr = g.put(&b.0);
    g.mem
        .set_u64_at(Backing::Ram, g.header + ram::MONITORS_CONFIG, addr);
    g.io(IO_MONITORS_CONFIG_ASYNC, 0);
    g.ack();
}

#[test]
fn guest_monitors_config_becomes_the_display_layout() {
    let mut g = Guest::new(small_config());
    g.boot();
    g.create_primary(64, 16);
    assert_eq!(g.qxl.display.layout().max, 2, "the card's heads");
    let sub = g.qxl.display.subscribe();
    monitors_config(&mut g, 4, &[(0, 0, 0, 32, 16), (1, 32, 0, 32, 16)]);
    assert_eq!(sub.try_next(), Some(DisplayEvent::MonitorsChanged));
    let monitor = |id, x, w| Monitor {
        id,
        x,
        y: 0,
        width: w,
        height: 16,
    };
    assert_eq!(
        g.qxl.display.monitors(),
        [monitor(0, 0, 32), monitor(1, 32, 32)]
    );
    // Hostile: more heads than the card offers, a head outside the surface,
    // a zero size: cut to the card's heads, clipped, the VM goes on.
    monitors_config(
        &mut g,
        0,
        &[(0, 0, 0, 0, 0), (1, 60, 0, 99999, 16), (2, 0, 0, 64, 16)],
    );
    assert_eq!(
        g.qxl.display.monitors(),
        [
            Monitor {
                width: 0,
                height: 0,
                ..monitor(0, 0, 0)
            },
            monitor(1, 60, 4)
        ]
    );
    assert!(!g.core().guest_bug());
    // A repeated id, and one that is not an output of the card: dropped.
    monitors_config(&mut g, 0, &[(1, 0, 0, 8, 8), (1, 8, 0, 8, 8)]);
    assert_eq!(g.qxl.display.layout().guest.len(), 1);
    monitors_config(&mut g, 0, &[(0, 0, 0, 8, 8), (7, 8, 0, 8, 8)]);
    assert_eq!(g.qxl.display.layout().guest.len(), 1);
    // The client's monitors are cut to the card's heads too.
    g.core()
        .set_client_monitors(&[(0, 0, 8, 8), (8, 0, 8, 8), (16, 0, 8, 8)]);
    let count = rom(&g).u32_at(Backing::Ram, defs::rom::CLIENT_MONITORS_CONFIG as u64);
    assert_eq!(count & 0xffff, 2);
    // Back in VGA mode, one monitor shows the whole head again.
    g.io(IO_RESET, 0);
    assert_eq!(g.qxl.display.layout().guest, []);
}
