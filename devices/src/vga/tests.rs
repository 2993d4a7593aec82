//! The VGA driven through its ports and memory, as a guest would.

use super::*;
use crate::display::DisplayEvent;
use vm_memory::Bytes;

const MIB: usize = 1 << 20;

struct Rig {
    vga: Vga,
    display: Arc<Display>,
    switch: Arc<ScanoutSwitch>,
    window: DeviceMemory,
    framebuffer: DeviceMemory,
    now: Instant,
}

impl Rig {
    fn new() -> Rig {
        Self::with_vbe_size(16 * MIB)
    }

    fn with_vbe_size(vbe_size: usize) -> Rig {
        let window = crate::memory::allocate(WINDOW_SIZE).unwrap();
        let framebuffer = crate::memory::allocate(vbe_size).unwrap();
        let display = Display::new();
        let switch = ScanoutSwitch::new();
        let vga = Vga::new(
            VgaMemory {
                window: window.clone(),
                framebuffer: framebuffer.clone(),
                vbe_size,
            },
            display.clone(),
            switch.clone(),
        )
        .unwrap();
        let now = vga.epoch;
        Rig {
            vga,
            display,
            switch,
            window,
            framebuffer,
            now,
        }
    }

    fn outb(&mut self, port: u16, value: u8) {
        self.vga.io_write(port, &[value]);
    }

    fn outw(&mut self, port: u16, value: u16) {
        self.vga.io_write(port, &value.to_le_bytes());
    }

    fn inw(&mut self, port: u16) -> u16 {
        let mut data = [0u8; 2];
        self.vga.io_read(port, &mut data);
        u16::from_le_bytes(data)
    }

    fn vbe(&mut self, index: u16, value: u16) {
        self.outw(vbe::INDEX_PORT, index);
        self.outw(vbe::DATA_PORT, value);
    }

    /// A refresh at a fixed time (the cursor stays in its visible phase).
    fn refresh(&mut self, dirty: Dirty) -> RefreshReport {
        self.vga.refresh(dirty, self.now)
    }

    fn write_text(&self, row: usize, col: usize, text: &[u8], attr: u8) {
        for (i, &b) in text.iter().enumerate() {
            let at = text::COLOR_PAGE_OFFSET + (row * 80 + col + i) * 2;
            self.window
                .as_volatile_slice()
                .write_slice(&[b, attr], at)
                .unwrap();
        }
    }

    /// Text mode 3 with the cursor turned off, so it does not cover cells.
    fn text_mode(&mut self) {
        self.vga.preset_text_mode();
        self.outw(0x3d4, 0x200a);
    }

    fn head_size(&self) -> (u32, u32) {
        let head = self.display.head(HEAD).unwrap();
        (head.width, head.height)
    }

    fn pixel(&self, x: u32, y: u32) -> u32 {
        self.display.head(HEAD).unwrap().pixel(x, y) & 0xff_ffff
    }
}

fn page_bitmap(pages: &[usize]) -> Vec<u64> {
    let mut map = vec![0u64; 4096 / 64];
    for &p in pages {
        map[p / 64] |= 1 << (p % 64);
    }
    map
}

/// Does the 9x16 cell at (row, col) show `code` in colour `fg`?
fn cell_shows(rig: &Rig, row: u32, col: u32, code: u8, fg: u32) -> bool {
    (0..16).all(|line| {
        (0..8).all(|dot| {
            let lit = font::FONT_8X16[code as usize][line as usize] & (0x80 >> dot) != 0;
            (rig.pixel(col * 9 + dot, row * 16 + line) == fg) == lit
        })
    })
}

#[test]
fn power_on_state_is_blank() {
    let mut rig = Rig::new();
    assert!(!rig.vga.regs.display_enabled());
    let report = rig.refresh(Dirty::All);
    assert!(report.full);
    assert!(rig.display.head(HEAD).is_some());
    assert_eq!(rig.vga.scanned_memory(), None);
}

#[test]
fn text_mode_shows_cells_and_only_dirty_pages_redraw() {
    let mut rig = Rig::new();
    rig.text_mode();
    rig.write_text(3, 5, b"SAFFRON", 0x0f);
    let report = rig.refresh(Dirty::Clean);
    assert!(report.full, "first refresh draws everything");
    assert_eq!(rig.head_size(), (720, 400));
    for (i, b) in "SAFFRON".bytes().enumerate() {
        assert!(
            cell_shows(&rig, 3, 5 + i as u32, b, 0xffffff),
            "{}",
            b as char
        );
    }
    assert_eq!(rig.vga.scanned_memory(), Some(ScanoutMemory::Window));

    let sub = rig.display.subscribe();
    // Written but not reported dirty: not shown yet (no page compare at all).
    rig.write_text(10, 0, b"X", 0x07);
    assert_eq!(rig.refresh(Dirty::Clean), RefreshReport::default());
    assert!(sub.try_next().is_none());
    // Reported dirty: exactly that cell.
    let bitmap = page_bitmap(&[0x18]);
    let report = rig.refresh(Dirty::Pages(&bitmap));
    assert_eq!(report.dirty_pages, 1);
    assert_eq!(report.rects, 1);
    assert_eq!(report.pixels, 9 * 16);
    assert_eq!(
        sub.try_next(),
        Some(DisplayEvent::Damage {
            head: HEAD,
            rect: Rect::new(0, 160, 9, 176)
        })
    );
    assert!(cell_shows(&rig, 10, 0, b'X', 0xaaaaaa));
    // Pages outside the text page are ignored.
    let bitmap = page_bitmap(&[0, 5, 0x17]);
    assert_eq!(rig.refresh(Dirty::Pages(&bitmap)), RefreshReport::default());
}

#[test]
fn cursor_follows_crtc_writes_and_blinks() {
    let mut rig = Rig::new();
    rig.vga.preset_text_mode();
    rig.refresh(Dirty::All);
    // vgacon style: outw(index | value << 8) to 0x3D4.
    let cell: u16 = 2 * 80 + 7;
    rig.outw(0x3d4, 0x0e | (cell & 0xff00));
    rig.outw(0x3d4, 0x0f | ((cell & 0xff) << 8));
    let report = rig.refresh(Dirty::Clean);
    assert_eq!(report.rects, 2, "old and new cursor cells");
    // Mode 3's cursor is lines 13..=14 of the cell.
    let (x, y) = (7 * 9, 2 * 16);
    assert_eq!(rig.pixel(x, y + 13), 0xaaaaaa);
    assert_eq!(rig.pixel(x + 8, y + 14), 0xaaaaaa);
    assert_eq!(rig.pixel(x, y + 12), 0);
    // Nothing changes while time stands still.
    assert_eq!(rig.refresh(Dirty::Clean), RefreshReport::default());
    // Half a blink period later the cursor is off: one cell redrawn.
    rig.now += CURSOR_BLINK;
    let report = rig.refresh(Dirty::Clean);
    assert_eq!((report.rects, report.pixels), (1, 9 * 16));
    assert_eq!(rig.pixel(x, y + 13), 0);
    // Cursor disabled (CR0A bit 5): stays off.
    rig.now += CURSOR_BLINK;
    rig.outw(0x3d4, 0x0a | (0x20 << 8));
    rig.refresh(Dirty::Clean);
    assert_eq!(rig.pixel(x, y + 13), 0);
}

#[test]
fn scrolling_with_the_start_address_redraws_everything() {
    let mut rig = Rig::new();
    rig.text_mode();
    rig.write_text(1, 0, b"line one", 0x07);
    rig.refresh(Dirty::All);
    assert!(cell_shows(&rig, 1, 0, b'l', 0xaaaaaa));
    // Start one row later: row 1 moves to the top.
    rig.outw(0x3d4, 0x0c);
    rig.outw(0x3d4, 0x0d | (80 << 8));
    let report = rig.refresh(Dirty::Clean);
    assert!(report.full);
    assert!(cell_shows(&rig, 0, 0, b'l', 0xaaaaaa));
}

#[test]
fn start_address_wraps_inside_the_text_page() {
    let mut rig = Rig::new();
    rig.text_mode();
    // Start at the last cell of the 32 KiB page: row 0 col 1 wraps to cell 0.
    rig.write_text(0, 0, b"W", 0x07);
    rig.outw(0x3d4, 0x0c | (0x3f << 8));
    rig.outw(0x3d4, 0x0d | (0xff << 8));
    rig.refresh(Dirty::All);
    assert!(cell_shows(&rig, 0, 1, b'W', 0xaaaaaa));
    // Hostile: every CRTC register at its maximum.
    rig.outw(0x3d4, 0x11); // unlock CR0-7
    for index in 0..0x19u16 {
        rig.outw(0x3d4, index | 0xff00);
    }
    rig.refresh(Dirty::All);
    let (w, h) = rig.head_size();
    assert!(w <= 256 * 9 && h <= 1024, "{w}x{h}");
}

#[test]
fn dac_and_attribute_writes_recolour_the_screen() {
    let mut rig = Rig::new();
    rig.text_mode();
    rig.write_text(0, 0, b"\xdb", 0x01); // full block in colour 1
    rig.refresh(Dirty::All);
    assert_eq!(rig.pixel(0, 0), 0x0000aa);
    // Reprogram DAC entry 1 (AR1 = 1): pure green.
    rig.outb(0x3c8, 1);
    for v in [0, 0x3f, 0] {
        rig.outb(0x3c9, v);
    }
    let report = rig.refresh(Dirty::Clean);
    assert!(report.full);
    assert_eq!(rig.pixel(0, 0), 0x00ff00);
    // Point attribute palette register 1 at DAC entry 4 (EGA red).
    rig.vga.io_read(0x3da, &mut [0]);
    rig.outb(0x3c0, 0x01);
    rig.outb(0x3c0, 0x04);
    rig.outb(0x3c0, 0x20); // PAS back on
    rig.refresh(Dirty::Clean);
    assert_eq!(rig.pixel(0, 0), 0xaa0000);
    // Clearing PAS blanks the screen.
    rig.vga.io_read(0x3da, &mut [0]);
    rig.outb(0x3c0, 0x00);
    rig.refresh(Dirty::Clean);
    assert_eq!(rig.pixel(0, 0), 0);
    assert_eq!(rig.vga.scanned_memory(), None);
}

#[test]
fn guest_can_load_its_own_font_the_vgacon_way() {
    let mut rig = Rig::new();
    rig.vga.preset_text_mode();
    rig.write_text(0, 0, b"A", 0x07);
    rig.refresh(Dirty::All);
    // Open plane 2 (as Linux's vgacon_do_font_op does).
    rig.outw(0x3c4, 0x0100);
    rig.outw(0x3c4, 0x0402);
    rig.outw(0x3c4, 0x0704);
    rig.outw(0x3c4, 0x0300);
    rig.outw(0x3ce, 0x0204);
    rig.outw(0x3ce, 0x0005);
    rig.outw(0x3ce, 0x0006);
    // The current font is readable at 0xA0000.
    let mut glyph = [0u8; 16];
    rig.window
        .as_volatile_slice()
        .read_slice(&mut glyph, usize::from(b'A') * 32)
        .unwrap();
    assert_eq!(glyph, font::FONT_8X16[b'A' as usize]);
    // Replace 'A' by a solid block, then close plane 2 again.
    rig.window
        .as_volatile_slice()
        .write_slice(&[0xff; 16], usize::from(b'A') * 32)
        .unwrap();
    rig.outw(0x3c4, 0x0100);
    rig.outw(0x3c4, 0x0302);
    rig.outw(0x3c4, 0x0304);
    rig.outw(0x3c4, 0x0300);
    rig.outw(0x3ce, 0x0004);
    rig.outw(0x3ce, 0x1005);
    rig.outw(0x3ce, 0x0e06);
    rig.refresh(Dirty::Clean);
    assert_eq!(rig.pixel(0, 0), 0xaaaaaa);
    assert_eq!(rig.pixel(7, 15), 0xaaaaaa);
}

#[test]
fn vbe_mode_set_through_ports_and_lfb_scanout_with_dirty_pages() {
    let mut rig = Rig::new();
    rig.vga.preset_text_mode();
    rig.refresh(Dirty::All);
    rig.outw(vbe::INDEX_PORT, vbe::INDEX_ID);
    assert_eq!(rig.inw(vbe::DATA_PORT), vbe::ID5);
    // Leftovers in the framebuffer are cleared by the mode set.
    rig.framebuffer
        .as_volatile_slice()
        .write_slice(&[0xff; 64], 0)
        .unwrap();
    rig.vbe(vbe::INDEX_ENABLE, 0);
    rig.vbe(vbe::INDEX_XRES, 800);
    rig.vbe(vbe::INDEX_YRES, 600);
    rig.vbe(vbe::INDEX_BPP, 32);
    rig.vbe(vbe::INDEX_ENABLE, vbe::ENABLED | vbe::LFB_ENABLED);
    assert_eq!(rig.vga.scanned_memory(), Some(ScanoutMemory::Framebuffer));
    let report = rig.refresh(Dirty::Clean);
    assert!(report.full);
    assert_eq!(rig.head_size(), (800, 600));
    assert_eq!(rig.pixel(0, 0), 0, "cleared on enable");

    // Guest draws a red pixel at (10, 100) and a blue one at (799, 599).
    let pitch = 800 * 4;
    let put = |x: usize, y: usize, bgrx: [u8; 4]| {
        rig.framebuffer
            .as_volatile_slice()
            .write_slice(&bgrx, y * pitch + x * 4)
            .unwrap();
    };
    put(10, 100, [0, 0, 0xff, 0]);
    put(799, 599, [0xff, 0, 0, 0]);
    let pages = [100 * pitch / 4096, (599 * pitch + 799 * 4) / 4096];
    let bitmap = page_bitmap(&pages);
    let sub = rig.display.subscribe();
    let report = rig.refresh(Dirty::Pages(&bitmap));
    assert_eq!(report.dirty_pages, 2);
    assert_eq!(report.rects, 2);
    assert_eq!(rig.pixel(10, 100), 0xff0000);
    assert_eq!(rig.pixel(799, 599), 0x0000ff);
    let events: Vec<_> = std::iter::from_fn(|| sub.try_next()).collect();
    assert_eq!(events.len(), 2);
    for event in events {
        let DisplayEvent::Damage { rect, .. } = event else {
            panic!("{event:?}")
        };
        assert!(rect.area() <= 3 * 800, "a few rows at most, got {rect:?}");
    }
    assert_eq!(rig.refresh(Dirty::Clean), RefreshReport::default());
}

#[test]
fn preset_linear_framebuffer_matches_the_request() {
    let mut rig = Rig::new();
    let mode = rig.vga.preset_linear_framebuffer(1024, 768).unwrap();
    assert_eq!((mode.width, mode.height, mode.bpp), (1024, 768, 32));
    assert_eq!((mode.line_length, mode.start), (4096, 0));
    rig.refresh(Dirty::All);
    assert_eq!(rig.head_size(), (1024, 768));
    assert_eq!(
        rig.vga.scanned_region(),
        Some((ScanoutMemory::Framebuffer, 0..768 * 4096))
    );
    assert!(matches!(
        rig.vga.preset_linear_framebuffer(4096, 4096),
        Err(VgaError::ModeDoesNotFit { .. })
    ));
    assert!(
        rig.vga.vbe_mode().is_none(),
        "a failed preset leaves text mode"
    );
    assert!(rig.vga.preset_linear_framebuffer(1023, 768).is_err());
}

#[test]
fn every_vbe_depth_scans_out() {
    let mut rig = Rig::new();
    rig.vga.preset_text_mode();
    for (bpp, bytes, expected) in [
        (8u16, vec![1u8], 0x0000aa),
        (15, 0x001fu16.to_le_bytes().to_vec(), 0x0000ff),
        (16, 0xf800u16.to_le_bytes().to_vec(), 0xff0000),
        (24, vec![0x11, 0x22, 0x33], 0x332211),
        (32, vec![0x44, 0x55, 0x66, 0], 0x665544),
    ] {
        rig.vbe(vbe::INDEX_ENABLE, 0);
        rig.vbe(vbe::INDEX_XRES, 640);
        rig.vbe(vbe::INDEX_YRES, 480);
        rig.vbe(vbe::INDEX_BPP, bpp);
        rig.vbe(vbe::INDEX_ENABLE, vbe::ENABLED | vbe::LFB_ENABLED);
        rig.framebuffer
            .as_volatile_slice()
            .write_slice(&bytes, 0)
            .unwrap();
        rig.refresh(Dirty::All);
        assert_eq!(rig.pixel(0, 0), expected, "{bpp} bpp");
    }
    // 4 bpp is planar: blank, no panic.
    rig.vbe(vbe::INDEX_BPP, 4);
    rig.refresh(Dirty::All);
    assert_eq!(rig.pixel(0, 0), 0);
}

#[test]
fn hostile_vbe_values_never_read_past_the_framebuffer() {
    // A small framebuffer keeps the pictures small (and the test fast); the
    // clamping is the same for every size.
    let mut rig = Rig::with_vbe_size(MIB);
    rig.vga.preset_text_mode();
    let values = [0u16, 1, 8, 9, 639, 4095, 12000, 16000, 0x8000, 0xffff];
    let mut bitmap = vec![u64::MAX; MIB / 4096 / 64 + 8];
    bitmap[3] = 0;
    for bpp in [0u16, 4, 8, 15, 16, 24, 32, 0xffff] {
        for &x in &values {
            rig.vbe(vbe::INDEX_ENABLE, 0);
            rig.vbe(vbe::INDEX_XRES, x);
            rig.vbe(vbe::INDEX_YRES, x);
            rig.vbe(vbe::INDEX_BPP, bpp);
            rig.vbe(vbe::INDEX_ENABLE, vbe::ENABLED | vbe::NOCLEARMEM);
            rig.vbe(vbe::INDEX_VIRT_WIDTH, 0xffff);
            rig.vbe(vbe::INDEX_X_OFFSET, x);
            rig.vbe(vbe::INDEX_Y_OFFSET, x);
            rig.refresh(Dirty::Pages(&bitmap));
            rig.refresh(Dirty::All);
            let (w, h) = rig.head_size();
            assert!(u64::from(w) * u64::from(h) <= scanout::MAX_PIXELS);
        }
    }
}

#[test]
fn mode_13h_scans_out_of_the_window() {
    let mut rig = Rig::new();
    rig.vga.preset_text_mode();
    // The register changes a BIOS makes for mode 13h (320x200, 256 colours).
    rig.outw(0x3c4, 0x0e04); // chain-4
    rig.outw(0x3ce, 0x4005); // 256-colour shift
    rig.outw(0x3ce, 0x0506); // graphics, A0000 64K
    rig.outw(0x3d4, 0x0011); // unlock CR0-7
    rig.outw(0x3d4, 0x4f01); // 80 chars → 640 dots → 320 pixels
    rig.outw(0x3d4, 0x4109); // 2 scan lines per row
    rig.outw(0x3d4, 0x2813); // offset 40 → 320 bytes
    rig.outw(0x3d4, 0x8f12); // vde 399 (with overflow bit 8 from mode 3)
    rig.outb(0x3c8, 200);
    for v in [0x3f, 0x3f, 0] {
        rig.outb(0x3c9, v);
    }
    rig.window
        .as_volatile_slice()
        .write_slice(&[200], 199 * 320 + 319)
        .unwrap();
    assert_eq!(rig.vga.scanned_memory(), Some(ScanoutMemory::Window));
    rig.refresh(Dirty::All);
    assert_eq!(rig.head_size(), (320, 200));
    assert_eq!(rig.pixel(319, 199), 0xffff00);
    // Start address past the window: blank, not out of bounds.
    rig.outw(0x3d4, 0xff0c);
    rig.refresh(Dirty::All);
    assert_eq!(rig.vga.scanned_memory(), None);
}

#[test]
fn planar_graphics_is_blank() {
    let mut rig = Rig::new();
    rig.vga.preset_text_mode();
    rig.outw(0x3ce, 0x0506);
    rig.refresh(Dirty::All);
    assert_eq!(rig.head_size(), (640, 400));
    assert_eq!(rig.pixel(0, 0), 0);
}

#[test]
fn native_device_takes_the_screen_and_gives_it_back() {
    let mut rig = Rig::new();
    rig.text_mode();
    rig.write_text(0, 0, b"V", 0x07);
    rig.refresh(Dirty::All);
    rig.switch.enter_native();
    // The native device owns head 0 now, at its own size.
    rig.display.resize(HEAD, 1920, 1080);
    rig.write_text(0, 0, b"Q", 0x07);
    assert_eq!(rig.vga.scanned_memory(), None);
    assert_eq!(rig.refresh(Dirty::All), RefreshReport::default());
    assert_eq!(rig.head_size(), (1920, 1080));
    rig.switch.leave_native();
    let report = rig.refresh(Dirty::Clean);
    assert!(report.full);
    assert_eq!(rig.head_size(), (720, 400));
    assert!(cell_shows(&rig, 0, 0, b'Q', 0xaaaaaa));
}

/// A native device takes head 0 while the VGA refreshes on another thread,
/// again and again: the VGA never draws into or resizes the native picture
/// (it checks the switch under the display lock, see display::switch).
#[test]
fn hand_over_races_with_refreshes() {
    let mut rig = Rig::new();
    rig.text_mode();
    rig.write_text(0, 0, b"VGA", 0x1f);
    let display = rig.display.clone();
    let switch = rig.switch.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refreshes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let refresher = {
        let (stop, refreshes) = (stop.clone(), refreshes.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                rig.vga.refresh(Dirty::All, rig.now);
                refreshes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    let wait_refreshes = |n: u64| {
        let start = refreshes.load(std::sync::atomic::Ordering::SeqCst);
        while refreshes.load(std::sync::atomic::Ordering::SeqCst) < start + n {
            std::thread::yield_now();
        }
    };
    for round in 0..200u32 {
        switch.leave_native();
        wait_refreshes(1 + u64::from(round % 3));
        // What QXL does on primary creation: flag, then resize, then draw.
        switch.enter_native();
        assert!(display.resize(HEAD, 64, 48));
        display.draw(HEAD, |surface| {
            surface.pixels.fill(0x42);
            Some(surface.bounds())
        });
        wait_refreshes(2);
        let head = display.head(HEAD).unwrap();
        assert_eq!((head.width, head.height), (64, 48), "round {round}");
        assert!(
            head.pixels.iter().all(|&b| b == 0x42),
            "round {round}: the VGA drew into the native picture"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    refresher.join().unwrap();
}

#[test]
fn legacy_writes_in_native_mode_reach_the_hook() {
    let rig = Rig::new();
    let switch = rig.switch.clone();
    let vga = Arc::new(Mutex::new(rig.vga));
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let locked = vga.clone();
    switch.set_legacy_write_hook(move || {
        // The VGA lock is not held while the hook runs.
        assert!(locked.try_lock().is_ok());
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let ports = VgaPorts {
        vga: vga.clone(),
        switch: switch.clone(),
        base: VGA_PORTS_BASE,
    };
    ports.write(0x3c2 - 0x3b0, &[0x67]);
    switch.enter_native();
    ports.write(0x3d4 - 0x3b0, &[0x0e]);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Only the ports QEMU's qxl-vga watches count: not 0x3D0, not the VBE ports.
    ports.write(0x3d0 - 0x3b0, &[0]);
    let vbe_ports = VgaPorts {
        vga: vga.clone(),
        switch: switch.clone(),
        base: VBE_PORTS_BASE,
    };
    vbe_ports.write(0, &[1, 0]);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A 16-bit write at 0x3D3 reaches 0x3D4.
    ports.write(0x3d3 - 0x3b0, &[0, 0x0e]);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    let mut misc = [0u8];
    ports.read(0x3cc - 0x3b0, &mut misc);
    assert_eq!(misc, [0x67]);
}

#[test]
fn construction_checks_memory_sizes() {
    let small = crate::memory::allocate(4096).unwrap();
    let window = crate::memory::allocate(WINDOW_SIZE).unwrap();
    let fb = crate::memory::allocate(MIB).unwrap();
    let new = |window: &DeviceMemory, fb: &DeviceMemory, vbe_size| {
        Vga::new(
            VgaMemory {
                window: window.clone(),
                framebuffer: fb.clone(),
                vbe_size,
            },
            Display::new(),
            ScanoutSwitch::new(),
        )
        .err()
    };
    assert_eq!(new(&small, &fb, MIB), Some(VgaError::WindowTooSmall(4096)));
    assert!(matches!(
        new(&window, &fb, 2 * MIB),
        Some(VgaError::FramebufferTooSmall { .. })
    ));
    assert_eq!(new(&window, &fb, 1000), Some(VgaError::BadVbeSize(1000)));
    assert_eq!(new(&window, &fb, MIB), None);
}
