//! The VGA fallback display: legacy VGA registers, the 0xA0000–0xBFFFF
//! window, text mode with a built-in font, chain-4 256-colour graphics and
//! the Bochs VBE linear framebuffer, scanned out into head 0 of a
//! [`Display`] while no native display driver owns it (see
//! [`crate::display::switch`]: the VGA checks the switch under the display's
//! lock, so a hand-over never mixes their pictures).
//!
//! Memory model. Nothing here is trapped: the legacy window is 128 KiB of
//! host memory the VMM maps at 0xA0000, and the linear framebuffer is device
//! memory the VMM maps where the caller says (with QXL: the start of its
//! BAR 0, `Qxl::vga`). So the VGA is modelled *flat*: the text page is
//! the (character, attribute) pairs at 0xB8000, mode 13h pixels are the
//! bytes at 0xA0000. Fonts live in a separate plane-2 buffer, loaded with
//! the built-in font; when the guest opens plane 2 at 0xA0000 the standard
//! way (sequencer map mask = plane 2, graphics controller on the 0xA0000
//! map, as Linux's vgacon does to load or read a font), the window is filled
//! with the font plane, and the font plane is taken back from the window
//! when it closes again. Planar 16-colour modes and VBE banked windows
//! need trapped memory and are not supported (shown blank, logged once).
//!
//! Scan-out. The VMM calls [`Vga::refresh`] periodically with the dirty page
//! bitmap (KVM dirty logging) of the memory the current mode shows
//! ([`Vga::scanned_memory`]); only those pages, register changes and the
//! blink timers turn into damage.

mod dac;
pub mod font;
pub mod registers;
pub mod scanout;
pub mod text;
pub mod vbe;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::VolatileMemory;

use crate::bus::{lock, BusDevice};
use crate::display::{Display, Rect, ScanoutSwitch};
use crate::memory::DeviceMemory;
use registers::{
    Change, VgaRegisters, CR_H_DISP_END, CR_MAX_SCAN, CR_OFFSET, GR_MISC, GR_MODE, SR_CLOCKING,
    SR_MEMORY_MODE, SR_PLANE_WRITE,
};
use scanout::{LinearLayout, PixelFormat, PAGE_SIZE};
use text::{TextCursor, TextFrame, TextLayout, TextScreen, FONT_PLANE_BYTES, TEXT_PAGE_BYTES};
use vbe::{Vbe, VbeEffect};

pub use scanout::PAGE_SIZE as DIRTY_PAGE_SIZE;
pub use vbe::VbeMode;

/// Size of the legacy window 0xA0000–0xBFFFF.
pub const WINDOW_SIZE: usize = 0x2_0000;
/// Guest address of the legacy window.
pub const WINDOW_BASE: u64 = 0xa_0000;
/// Legacy VGA ports: 0x3B0–0x3DF.
pub const VGA_PORTS_BASE: u16 = 0x3b0;
pub const VGA_PORTS_LEN: u16 = 0x30;
/// Bochs VBE ports: 0x1CE index, 0x1CF data, 0x1D0 data alias (+1 so a
/// 16-bit access at 0x1D0 is decoded too).
pub const VBE_PORTS_BASE: u16 = vbe::INDEX_PORT;
pub const VBE_PORTS_LEN: u16 = 4;
/// The display head the VGA scans out to.
pub const HEAD: u32 = 0;

/// Cursor blink half-period, and that of blinking characters.
const CURSOR_BLINK: Duration = Duration::from_millis(250);
const TEXT_BLINK: Duration = Duration::from_millis(500);
/// Size shown when the registers describe nothing sensible.
const FALLBACK_SIZE: (u32, u32) = (640, 480);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VgaError {
    #[error("the legacy window needs {WINDOW_SIZE} bytes of memory, got {0}")]
    WindowTooSmall(usize),
    #[error(
        "the framebuffer memory ({memory} bytes) is smaller than the VBE size ({vbe_size} bytes)"
    )]
    FramebufferTooSmall { memory: usize, vbe_size: usize },
    #[error("the VBE size must be a multiple of 64 KiB and at least 64 KiB, got {0}")]
    BadVbeSize(usize),
    #[error("{width}x{height} at 32 bpp does not fit in {vbe_size} bytes of framebuffer (or is not a multiple of 8 wide)")]
    ModeDoesNotFit {
        width: u16,
        height: u16,
        vbe_size: usize,
    },
}

/// The memory a VGA works on.
pub struct VgaMemory {
    /// Backs the legacy window (at least [`WINDOW_SIZE`] bytes).
    pub window: DeviceMemory,
    /// The linear framebuffer: its first `vbe_size` bytes hold VBE modes.
    pub framebuffer: DeviceMemory,
    pub vbe_size: usize,
}

/// Which memory a mode shows, so the VMM knows whose dirty log to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanoutMemory {
    Window,
    Framebuffer,
}

/// What changed in the scanned-out memory since the last refresh.
#[derive(Debug, Clone, Copy)]
pub enum Dirty<'a> {
    /// Nothing written.
    Clean,
    /// Unknown: treat everything as written.
    All,
    /// Bit `i` set = page `i` (4 KiB, from offset 0 of that memory) written.
    Pages(&'a [u64]),
}

/// What one refresh did, for statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// Visible pages reported dirty.
    pub dirty_pages: u32,
    /// Damage rectangles published.
    pub rects: u32,
    /// Pixels redrawn.
    pub pixels: u64,
    /// The whole picture was redrawn.
    pub full: bool,
}

/// What the registers say is on screen.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ScanMode {
    Text(TextLayout),
    Linear(ScanoutMemory, LinearLayout),
    /// Display disabled or a mode we do not draw: black.
    Blank(u32, u32),
}

impl ScanMode {
    fn size(&self) -> (u32, u32) {
        match self {
            ScanMode::Text(t) => (t.width(), t.height()),
            ScanMode::Linear(_, l) => (l.width, l.height),
            ScanMode::Blank(w, h) => (*w, *h),
        }
    }
}

/// Scan-out state: what was last shown.
struct Output {
    generation: u64,
    mode: Option<ScanMode>,
    repaint: bool,
    cursor_changed: bool,
    text: TextScreen,
    text_page: Vec<u8>,
    scratch: Vec<u8>,
    cursor_on: bool,
    blink_on: bool,
    unsupported_logged: bool,
}

pub struct Vga {
    regs: VgaRegisters,
    vbe: Vbe,
    window: DeviceMemory,
    framebuffer: DeviceMemory,
    vbe_size: usize,
    /// Plane 2: the fonts.
    font_plane: Vec<u8>,
    /// Plane 2 is currently open at 0xA0000 (a font load or read).
    font_window_open: bool,
    display: Arc<Display>,
    switch: Arc<ScanoutSwitch>,
    epoch: Instant,
    out: Output,
}

impl Vga {
    /// A VGA in its power-on state (registers zero, display blanked, no
    /// font loaded into plane 2 yet: see the `preset_*` methods).
    pub fn new(
        memory: VgaMemory,
        display: Arc<Display>,
        switch: Arc<ScanoutSwitch>,
    ) -> Result<Self, VgaError> {
        if memory.window.size() < WINDOW_SIZE {
            return Err(VgaError::WindowTooSmall(memory.window.size()));
        }
        if memory.vbe_size < 0x1_0000 || !memory.vbe_size.is_multiple_of(0x1_0000) {
            return Err(VgaError::BadVbeSize(memory.vbe_size));
        }
        if memory.framebuffer.size() < memory.vbe_size {
            return Err(VgaError::FramebufferTooSmall {
                memory: memory.framebuffer.size(),
                vbe_size: memory.vbe_size,
            });
        }
        Ok(Vga {
            regs: VgaRegisters::default(),
            vbe: Vbe::new(memory.vbe_size),
            window: memory.window,
            framebuffer: memory.framebuffer,
            vbe_size: memory.vbe_size,
            font_plane: vec![0; FONT_PLANE_BYTES],
            font_window_open: false,
            display,
            switch,
            epoch: Instant::now(),
            out: Output {
                generation: u64::MAX,
                mode: None,
                repaint: true,
                cursor_changed: false,
                text: TextScreen::default(),
                text_page: vec![0; TEXT_PAGE_BYTES],
                scratch: Vec::new(),
                cursor_on: true,
                blink_on: true,
                unsupported_logged: false,
            },
        })
    }

    /// Back to the power-on state (registers, VBE); memory is kept.
    pub fn reset(&mut self) {
        self.regs = VgaRegisters::default();
        self.vbe = Vbe::new(self.vbe_size);
        self.font_window_open = false;
        self.out.repaint = true;
    }

    /// What a VGA BIOS leaves behind for text mode 3 (80x25, 720x400): the
    /// registers, the built-in font in plane 2 and a blank page of grey-on-
    /// black spaces. Linux's vgacon can take it from there.
    pub fn preset_text_mode(&mut self) {
        self.reset();
        self.regs.load_mode3();
        self.font_plane.fill(0);
        for (code, glyph) in font::FONT_8X16.iter().enumerate() {
            self.font_plane[code * 32..code * 32 + font::GLYPH_HEIGHT].copy_from_slice(glyph);
        }
        let blank: Vec<u8> = [0x20, 0x07].repeat(TEXT_PAGE_BYTES / 2);
        self.write_window(text::COLOR_PAGE_OFFSET, &blank);
        self.out.repaint = true;
    }

    /// Text mode 3 underneath, and a `width`×`height`×32 VBE mode with the
    /// linear framebuffer enabled on top, as a BIOS leaves it after a VBE
    /// mode set: what the kernel's firmware framebuffer driver expects.
    pub fn preset_linear_framebuffer(
        &mut self,
        width: u16,
        height: u16,
    ) -> Result<VbeMode, VgaError> {
        self.preset_text_mode();
        let does_not_fit = VgaError::ModeDoesNotFit {
            width,
            height,
            vbe_size: self.vbe_size,
        };
        for (index, value) in [
            (vbe::INDEX_ENABLE, 0),
            (vbe::INDEX_XRES, width),
            (vbe::INDEX_YRES, height),
            (vbe::INDEX_BPP, 32),
            (
                vbe::INDEX_ENABLE,
                vbe::ENABLED | vbe::LFB_ENABLED | vbe::NOCLEARMEM,
            ),
        ] {
            self.vbe_write(vbe::INDEX_PORT, index);
            self.vbe_write(vbe::DATA_PORT, value);
        }
        match self.vbe.mode() {
            Some(mode)
                if mode.width == u32::from(width)
                    && mode.height == u32::from(height)
                    && mode.bpp == 32 =>
            {
                Ok(mode)
            }
            _ => {
                self.preset_text_mode();
                Err(does_not_fit)
            }
        }
    }

    /// The VBE mode, when the linear framebuffer is on.
    pub fn vbe_mode(&self) -> Option<VbeMode> {
        self.vbe.mode()
    }

    /// The bytes of the framebuffer VBE modes may use.
    pub fn vbe_size(&self) -> usize {
        self.vbe_size
    }

    // ---- port I/O ------------------------------------------------------------------------

    /// A guest read of `data.len()` bytes at `port`.
    pub fn io_read(&mut self, port: u16, data: &mut [u8]) {
        if (vbe::INDEX_PORT..=vbe::DATA_PORT_ALIAS + 1).contains(&port) {
            let value = match port {
                vbe::INDEX_PORT => self.vbe.index(),
                vbe::DATA_PORT | vbe::DATA_PORT_ALIAS => self.vbe.read_data(),
                _ => 0xffff,
            };
            let bytes = u32::from(value).to_le_bytes();
            for (i, b) in data.iter_mut().enumerate() {
                *b = bytes.get(i).copied().unwrap_or(0);
            }
            return;
        }
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.regs.read(port.wrapping_add(i as u16));
        }
    }

    /// A guest write of `data` at `port` (wider accesses to the VGA
    /// registers are one byte per port, as `outw(0x3d4, 0x0e | hi << 8)` means).
    pub fn io_write(&mut self, port: u16, data: &[u8]) {
        if (vbe::INDEX_PORT..=vbe::DATA_PORT_ALIAS + 1).contains(&port) {
            let value = u16::from_le_bytes([
                data.first().copied().unwrap_or(0),
                data.get(1).copied().unwrap_or(0),
            ]);
            self.vbe_write(port, value);
            return;
        }
        for (i, &b) in data.iter().enumerate() {
            self.vga_write(port.wrapping_add(i as u16), b);
        }
    }

    fn vbe_write(&mut self, port: u16, value: u16) {
        match port {
            vbe::INDEX_PORT => self.vbe.write_index(value),
            vbe::DATA_PORT | vbe::DATA_PORT_ALIAS => {
                let index = self.vbe.index();
                match self.vbe.write_data(value) {
                    VbeEffect::None => {}
                    VbeEffect::ModeChanged => self.out.repaint = true,
                    VbeEffect::EnabledClear(bytes) => {
                        self.clear_framebuffer(bytes);
                        self.out.repaint = true;
                    }
                }
                if index == vbe::INDEX_ENABLE {
                    self.regs.dac.eight_bit = self.vbe.dac_8bit();
                }
                if index == vbe::INDEX_BANK && self.vbe.bank_offset() != 0 {
                    self.log_unsupported("VBE banked window (only the linear framebuffer works)");
                }
            }
            _ => {}
        }
    }

    fn vga_write(&mut self, port: u16, value: u8) {
        match self.regs.write(port, value) {
            Change::None => {}
            Change::Cursor => self.out.cursor_changed = true,
            Change::Picture => {
                self.out.repaint = true;
                self.update_font_window();
            }
        }
    }

    /// Plane 2 is open at 0xA0000 when the guest writes only plane 2 with
    /// the graphics controller in text mode on the 0xA0000 map: the
    /// standard sequence to load or read a font.
    fn font_window_wanted(&self) -> bool {
        let map = (self.regs.gr[GR_MISC] >> 2) & 3;
        !self.regs.graphics_mode() && map <= 1 && self.regs.seq[SR_PLANE_WRITE] & 0x0f == 0x04
    }

    fn update_font_window(&mut self) {
        let wanted = self.font_window_wanted();
        if wanted == self.font_window_open {
            return;
        }
        self.font_window_open = wanted;
        if wanted {
            let plane = std::mem::take(&mut self.font_plane);
            self.write_window(0, &plane);
            self.font_plane = plane;
        } else {
            if let Ok(slice) = self.window.get_slice(0, FONT_PLANE_BYTES) {
                slice.copy_to(&mut self.font_plane[..]);
            }
            self.out.repaint = true;
        }
    }

    fn write_window(&self, offset: usize, bytes: &[u8]) {
        if let Ok(slice) = self.window.get_slice(offset, bytes.len()) {
            slice.copy_from(bytes);
        }
    }

    fn clear_framebuffer(&self, bytes: usize) {
        const CHUNK: usize = 64 * 1024;
        let zeros = vec![0u8; CHUNK];
        let end = bytes.min(self.vbe_size);
        let mut at = 0;
        while at < end {
            let len = CHUNK.min(end - at);
            if let Ok(slice) = self.framebuffer.get_slice(at, len) {
                slice.copy_from(&zeros[..len]);
            }
            at += len;
        }
    }

    fn log_unsupported(&mut self, what: &str) {
        if !self.out.unsupported_logged {
            self.out.unsupported_logged = true;
            tracing::warn!("VGA: the guest uses {what}, which Saffron does not display");
        }
    }

    // ---- scan-out ------------------------------------------------------------------------

    fn current_mode(&mut self) -> ScanMode {
        let regs = &self.regs;
        if let Some(m) = self.vbe.mode() {
            let layout = PixelFormat::from_vbe_bpp(m.bpp).and_then(|format| {
                LinearLayout {
                    width: m.width,
                    height: m.height,
                    start: m.start,
                    pitch: m.line_length,
                    format,
                }
                .checked(self.vbe_size)
            });
            return match layout {
                Some(layout) => ScanMode::Linear(ScanoutMemory::Framebuffer, layout),
                None => {
                    self.log_unsupported("a 4-bit planar VBE mode");
                    ScanMode::Blank(m.width.min(4096), m.height.min(4096))
                }
            };
        }
        let lines = regs.vertical_display_end() + 1;
        let screen_off = regs.seq[SR_CLOCKING] & 0x20 != 0;
        if !regs.graphics_mode() {
            let layout = TextLayout::from_registers(regs);
            if screen_off || !regs.display_enabled() {
                return ScanMode::Blank(layout.width(), layout.height());
            }
            return ScanMode::Text(layout);
        }
        let dots = (u32::from(regs.cr[CR_H_DISP_END]) + 1) * 8;
        if screen_off || !regs.display_enabled() {
            return ScanMode::Blank(dots, lines);
        }
        let chain4 = regs.seq[SR_MEMORY_MODE] & 0x08 != 0;
        let shift256 = regs.gr[GR_MODE] & 0x40 != 0;
        if chain4 && shift256 {
            // 256 colours, one byte per pixel, each drawn as two dots.
            let scan_lines = u32::from(regs.cr[CR_MAX_SCAN] & 0x1f) + 1;
            let double_scan = if regs.cr[CR_MAX_SCAN] & 0x80 != 0 {
                2
            } else {
                1
            };
            let map_base = match (regs.gr[GR_MISC] >> 2) & 3 {
                2 => 0x1_0000,
                3 => 0x1_8000,
                _ => 0,
            };
            let layout = LinearLayout {
                width: dots / 2,
                height: (lines / scan_lines / double_scan).max(1),
                start: map_base + regs.start_address() as usize * 4,
                pitch: usize::from(regs.cr[CR_OFFSET]) * 8,
                format: PixelFormat::Indexed8,
            }
            .checked(WINDOW_SIZE);
            if let Some(layout) = layout {
                return ScanMode::Linear(ScanoutMemory::Window, layout);
            }
        }
        self.log_unsupported("a planar or CGA graphics mode");
        ScanMode::Blank(dots, lines)
    }

    /// The memory whose dirty pages the next [`Vga::refresh`] wants
    /// (`None`: it needs none, e.g. while a native driver owns the screen).
    pub fn scanned_memory(&mut self) -> Option<ScanoutMemory> {
        self.scanned_region().map(|(memory, _)| memory)
    }

    /// Like [`Vga::scanned_memory`], with the bytes of that memory the
    /// picture comes from (for dirty tracking that must look at memory itself).
    pub fn scanned_region(&mut self) -> Option<(ScanoutMemory, std::ops::Range<usize>)> {
        if !self.switch.vga_active() {
            return None;
        }
        match self.current_mode() {
            ScanMode::Text(layout) => Some((
                ScanoutMemory::Window,
                layout.page_offset..layout.page_offset + TEXT_PAGE_BYTES,
            )),
            ScanMode::Linear(memory, l) => Some((
                memory,
                l.start..l.start + (l.height as usize - 1) * l.pitch + l.row_bytes(),
            )),
            ScanMode::Blank(..) => None,
        }
    }

    /// Brings display head 0 up to date. `dirty` describes the memory
    /// [`Vga::scanned_memory`] named (if the mode changed in between, the
    /// picture is redrawn anyway). Does nothing while a native device owns
    /// the screen.
    pub fn refresh(&mut self, dirty: Dirty, now: Instant) -> RefreshReport {
        // Generation first: if it is unchanged when we draw, so is the owner.
        let generation = self.switch.generation();
        if !self.switch.vga_active() {
            return RefreshReport::default();
        }
        let mut full = std::mem::take(&mut self.out.repaint) || generation != self.out.generation;
        self.out.generation = generation;

        let mode = self.current_mode();
        let (width, height) = mode.size();
        let (width, height) = if width == 0 || height == 0 {
            FALLBACK_SIZE
        } else {
            (width, height)
        };
        let head_size = self.display.head(HEAD).map(|s| (s.width, s.height));
        if head_size != Some((width, height)) {
            let owns = || self.switch.vga_owns(generation);
            if !self.display.resize_if(HEAD, width, height, owns)
                && !self
                    .display
                    .resize_if(HEAD, FALLBACK_SIZE.0, FALLBACK_SIZE.1, owns)
            {
                // Handed over meanwhile (or no size at all): the next refresh repaints.
                self.out.repaint = true;
                return RefreshReport::default();
            }
            full = true;
        }
        if self.out.mode.as_ref() != Some(&mode) {
            full = true;
            self.out.mode = Some(mode.clone());
        }
        match mode {
            ScanMode::Text(layout) => self.refresh_text(&layout, dirty, full, now, generation),
            ScanMode::Linear(memory, layout) => {
                self.refresh_linear(memory, &layout, dirty, full, generation)
            }
            ScanMode::Blank(..) => {
                if !full {
                    return RefreshReport::default();
                }
                let mut pixels = 0;
                let switch = &self.switch;
                self.display.draw(HEAD, |surface| {
                    if !switch.vga_owns(generation) {
                        return None;
                    }
                    surface.pixels.fill(0);
                    pixels = surface.pixels.len() as u64 / 4;
                    Some(surface.bounds())
                });
                RefreshReport {
                    rects: u32::from(pixels > 0),
                    pixels,
                    full: pixels > 0,
                    dirty_pages: 0,
                }
            }
        }
    }

    fn refresh_text(
        &mut self,
        layout: &TextLayout,
        dirty: Dirty,
        full: bool,
        now: Instant,
        generation: u64,
    ) -> RefreshReport {
        let since = now.saturating_duration_since(self.epoch);
        let cursor_on = (since.as_millis() / CURSOR_BLINK.as_millis()).is_multiple_of(2);
        let blink_on = (since.as_millis() / TEXT_BLINK.as_millis()).is_multiple_of(2);
        let first_page = layout.page_offset / PAGE_SIZE;
        let pages = TEXT_PAGE_BYTES / PAGE_SIZE;
        let dirty_pages = match dirty {
            Dirty::Clean => 0,
            Dirty::All => pages as u32,
            Dirty::Pages(bitmap) => (first_page..first_page + pages)
                .filter(|p| bitmap.get(p / 64).is_some_and(|w| w & (1 << (p % 64)) != 0))
                .count() as u32,
        };
        let cursor = TextCursor::from_registers(&self.regs, layout);
        let cursor_phase_matters = cursor.is_some() && cursor_on != self.out.cursor_on;
        let blink_matters = self.out.text.has_blinking() && blink_on != self.out.blink_on;
        let cursor_changed = std::mem::take(&mut self.out.cursor_changed);
        if !full && dirty_pages == 0 && !cursor_changed && !cursor_phase_matters && !blink_matters {
            return RefreshReport::default();
        }
        self.out.cursor_on = cursor_on;
        self.out.blink_on = blink_on;
        if full {
            self.out.text.invalidate();
        }
        if let Ok(slice) = self.window.get_slice(layout.page_offset, TEXT_PAGE_BYTES) {
            slice.copy_to(&mut self.out.text_page[..]);
        }
        let frame = TextFrame {
            layout,
            palette: self.regs.text_palette(),
            page: &self.out.text_page,
            font: &self.font_plane,
            cursor: cursor.filter(|_| cursor_on),
            blink_on,
        };
        let text = &mut self.out.text;
        let switch = &self.switch;
        let mut rects = Vec::new();
        self.display.draw_rects(HEAD, |surface| {
            if !switch.vga_owns(generation) {
                return Vec::new();
            }
            rects = text.render(surface, &frame);
            rects.clone()
        });
        RefreshReport {
            dirty_pages,
            rects: rects.len() as u32,
            pixels: rects.iter().map(Rect::area).sum(),
            full,
        }
    }

    fn refresh_linear(
        &mut self,
        memory: ScanoutMemory,
        layout: &LinearLayout,
        dirty: Dirty,
        full: bool,
        generation: u64,
    ) -> RefreshReport {
        let (rects, dirty_pages) = match (full, dirty) {
            (true, _) | (false, Dirty::All) => (vec![layout.bounds()], 0),
            (false, Dirty::Clean) => return RefreshReport::default(),
            (false, Dirty::Pages(bitmap)) => (
                layout.damage_from_pages(bitmap),
                layout.visible_pages(bitmap),
            ),
        };
        if rects.is_empty() {
            return RefreshReport {
                dirty_pages,
                ..Default::default()
            };
        }
        let source = match memory {
            ScanoutMemory::Window => &self.window,
            ScanoutMemory::Framebuffer => &self.framebuffer,
        };
        let palette = self.regs.dac.colors();
        let scratch = &mut self.out.scratch;
        let switch = &self.switch;
        let mut drawn = true;
        self.display.draw_rects(HEAD, |surface| {
            if !switch.vga_owns(generation) {
                drawn = false;
                return Vec::new();
            }
            for rect in &rects {
                scanout::copy_rect(surface, source, layout, *rect, &palette, scratch);
            }
            rects.clone()
        });
        if !drawn {
            return RefreshReport::default();
        }
        RefreshReport {
            dirty_pages,
            rects: rects.len() as u32,
            pixels: rects.iter().map(Rect::area).sum(),
            full,
        }
    }
}

/// Whether a guest write to `port` counts as a legacy VGA register write
/// for the [`ScanoutSwitch`]: the ports QEMU's qxl-vga watches (0x3B4,
/// 0x3B5, 0x3BA, 0x3C0–0x3CF, 0x3D4, 0x3D5, 0x3DA); not the VBE ports.
pub fn is_watched_port(port: u16) -> bool {
    matches!(
        port,
        0x3b4 | 0x3b5 | 0x3ba | 0x3c0..=0x3cf | 0x3d4 | 0x3d5 | 0x3da
    )
}

/// The VGA's I/O ports as a bus device (insert it once for
/// [`VGA_PORTS_BASE`] and once for [`VBE_PORTS_BASE`]). Writes to a
/// [watched port](is_watched_port) first tell the [`ScanoutSwitch`]
/// (without holding the VGA lock), see there.
pub struct VgaPorts {
    pub vga: Arc<Mutex<Vga>>,
    pub switch: Arc<ScanoutSwitch>,
    pub base: u16,
}

impl BusDevice for VgaPorts {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let port = self.base.wrapping_add(offset as u16);
        lock(&self.vga).io_read(port, data)
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let port = self.base.wrapping_add(offset as u16);
        // A wide write covers one register per byte.
        if (0..data.len() as u16).any(|i| is_watched_port(port.wrapping_add(i))) {
            self.switch.legacy_write();
        }
        lock(&self.vga).io_write(port, data)
    }
}

#[cfg(test)]
mod tests;
