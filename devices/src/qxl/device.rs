//! The QXL device's state machine (docs/qxl.md §5, §7): port commands, modes,
//! memslots, the primary and off-screen surfaces, ring processing, command
//! execution, releases and interrupts.
//!
//! `QxlCore` is single-threaded and owned by the display worker; vCPU threads
//! reach it through the worker's queue (see `worker.rs`). That makes every
//! state change ordered, and lets tests drive it directly, step by step.
//!
//! Guest mistakes are handled in two ways. Structural ones (an I/O command
//! that breaks the rules, a corrupt ring, a command whose body cannot be
//! addressed, an unknown command type) latch the *guest bug* state as QEMU
//! does: `QXL_INTERRUPT_ERROR` is raised and everything but `QXL_IO_RESET`
//! (and `QXL_IO_UPDATE_IRQ`) is ignored until the guest resets the device.
//! A command that is readable but malformed (bad image, clip, surface id,
//! size) is refused: logged, `QXL_INTERRUPT_ERROR` raised, the command
//! released, and processing goes on, as spice-server does.

use std::sync::Arc;

use core::mem::size_of;

use zerocopy::FromBytes;

use super::abi::{QxlHead, QxlMonitorsConfig, QxlSurfaceCreate, QxlUpdateArea};
use super::commands::{CursorCmd, Rect, SurfaceCmd};
use super::config::QxlConfig;
use super::cursor;
use super::defs::*;
use super::draw::{DrawContext, DrawError};
use super::irq::IrqLine;
use super::memory::{Backing, BarMemory, GuestRange};
use super::memslots::{BarLayout, MemSlots};
use super::observer::DrawableObserver;
use super::parse::Parser;
use super::rings::{RawCommand, ReleaseRing, Ring};
use super::stats::QxlStats;
use super::surfaces::{OffscreenSurface, SurfaceInfo, SurfaceTable};
use crate::display::{Display, Monitor, ScanoutSwitch, MAX_DIMENSION};
use crate::memory::DeviceMemory;
use crate::ratelimit::RateLimit;

/// Commands processed per pass before queued I/O gets a turn.
pub const RING_BUDGET: usize = 256;
/// Commands drained (at most) before a synchronous I/O command completes.
const DRAIN_BUDGET: usize = 4096;
/// Most monitors accepted in a guest monitors config.
const MAX_MONITORS: u16 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The VGA/VBE emulation shows the screen; rings are not read.
    Vga,
    /// No primary surface; rings are read.
    Undefined,
    /// The primary surface is shown.
    Native,
}

pub struct QxlCore {
    config: QxlConfig,
    memory: Arc<BarMemory>,
    rom: DeviceMemory,
    rom_image: Vec<u8>,
    header: u64,
    irq: Arc<IrqLine>,
    display: Arc<Display>,
    /// Who shows head 0: native from primary creation until VGA mode.
    switch: Arc<ScanoutSwitch>,
    stats: Arc<QxlStats>,
    mode: Mode,
    guest_bug: bool,
    slots: MemSlots,
    primary: Option<SurfaceInfo>,
    surfaces: SurfaceTable,
    release: ReleaseRing,
    observer: Option<Box<dyn DrawableObserver>>,
    log: RateLimit,
}

impl QxlCore {
    pub fn new(
        config: QxlConfig,
        memory: Arc<BarMemory>,
        rom: DeviceMemory,
        irq: Arc<IrqLine>,
        display: Arc<Display>,
        switch: Arc<ScanoutSwitch>,
        stats: Arc<QxlStats>,
    ) -> Self {
        display.set_max_monitors(config.heads);
        let mut core = QxlCore {
            rom_image: super::rom::build(&config),
            header: config.ram_header_offset(),
            config,
            memory,
            rom,
            irq,
            display,
            switch,
            stats,
            mode: Mode::Vga,
            guest_bug: false,
            slots: MemSlots::default(),
            primary: None,
            surfaces: SurfaceTable::new(NUM_SURFACES),
            release: ReleaseRing::default(),
            observer: None,
            log: RateLimit::default(),
        };
        core.hard_reset();
        core
    }

    pub fn set_observer(&mut self, observer: Option<Box<dyn DrawableObserver>>) {
        self.observer = observer;
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn guest_bug(&self) -> bool {
        self.guest_bug
    }

    pub fn primary(&self) -> Option<&SurfaceInfo> {
        self.primary.as_ref()
    }

    pub fn slots(&self) -> &MemSlots {
        &self.slots
    }

    pub fn surface_count(&self) -> usize {
        self.surfaces.count()
    }

    fn cmd_ring(&self) -> Ring {
        Ring::command(self.header)
    }

    fn cursor_ring(&self) -> Ring {
        Ring::cursor(self.header)
    }

    fn release_ring(&self) -> Ring {
        Ring::release(self.header)
    }

    fn ram_u32(&self, field: u64) -> u32 {
        self.memory.u32_at(Backing::Ram, self.header + field)
    }

    fn raise(&self, bits: u32) {
        QxlStats::add(&self.stats.interrupts, 1);
        self.irq.raise(bits);
    }

    fn warn(&mut self, message: std::fmt::Arguments) {
        if let Some(dropped) = self.log.allow() {
            if dropped > 0 {
                tracing::warn!("QXL: {dropped} more guest errors not shown");
            }
            tracing::warn!("QXL: {message}");
        }
    }

    /// Latches the guest-bug state (see the module docs).
    fn set_guest_bug(&mut self, message: std::fmt::Arguments) {
        QxlStats::add(&self.stats.guest_bugs, 1);
        self.warn(format_args!("guest bug: {message}"));
        self.guest_bug = true;
        self.raise(INTERRUPT_ERROR);
    }

    /// A readable command that is malformed: refused, processing goes on.
    fn bad_command(&mut self, message: std::fmt::Arguments) {
        QxlStats::add(&self.stats.bad_commands, 1);
        self.warn(format_args!("bad command: {message}"));
        self.raise(INTERRUPT_ERROR);
    }

    // ---- reset and modes --------------------------------------------------------------

    /// Device reset (machine reset, `QXL_IO_RESET`).
    pub fn hard_reset(&mut self) {
        self.hide_cursor();
        self.primary = None;
        self.surfaces.drain();
        self.slots.clear();
        // The ROM, as built (the guest cannot write it, but a reset restores it anyway).
        if let Some(r) = self.rom_range() {
            self.memory_write_rom(r);
        }
        let mem = &self.memory;
        mem.set_u32_at(Backing::Ram, self.header + ram::MAGIC, RAM_MAGIC);
        mem.set_u32_at(Backing::Ram, self.header + ram::INT_PENDING, 0);
        mem.set_u32_at(Backing::Ram, self.header + ram::INT_MASK, 0);
        mem.set_u32_at(Backing::Ram, self.header + ram::UPDATE_SURFACE, 0);
        mem.set_u64_at(Backing::Ram, self.header + ram::MONITORS_CONFIG, 0);
        for ring in [self.cmd_ring(), self.cursor_ring(), self.release_ring()] {
            ring.init(mem);
        }
        self.release.reset(&self.memory, &self.release_ring());
        self.irq.deassert();
        if let Some(o) = self.observer.as_mut() {
            o.reset();
        }
        self.soft_reset();
    }

    /// Clears the guest bug and goes back to VGA mode.
    fn soft_reset(&mut self) {
        self.guest_bug = false;
        self.enter_vga_mode();
    }

    fn enter_vga_mode(&mut self) {
        self.mode = Mode::Vga;
        self.display.set_guest_monitors(Vec::new());
        self.switch.leave_native();
    }

    fn leave_vga_mode(&mut self) {
        if self.mode == Mode::Vga {
            self.mode = Mode::Undefined;
            self.switch.enter_native();
        }
    }

    fn rom_range(&self) -> Option<usize> {
        (self.rom.size() >= self.rom_image.len()).then_some(self.rom_image.len())
    }

    fn memory_write_rom(&self, len: usize) {
        self.rom_write(0, &self.rom_image[..len]);
    }

    /// Writes into the ROM BAR (read-only to the guest, not to us).
    fn rom_write(&self, offset: usize, bytes: &[u8]) {
        use vm_memory::VolatileMemory;
        if let Ok(slice) = self.rom.get_slice(offset, bytes.len()) {
            slice.copy_from(bytes);
        }
    }

    /// Whether the guest driver handles client-driven interrupts (QEMU's
    /// test: old Windows drivers used masks of 0 or all ones).
    /// Whether the guest's driver asked for client monitors configs.
    pub fn takes_client_monitors(&self) -> bool {
        self.guest_takes(INTERRUPT_CLIENT_MONITORS_CONFIG)
    }

    fn guest_takes(&self, bit: u32) -> bool {
        let mask = self.ram_u32(ram::INT_MASK);
        mask != 0 && mask != u32::MAX && mask & bit != 0
    }

    /// The display client's monitors (x, y, width, height; at most 64), e.g.
    /// a SPICE client's window sizes: written into the ROM with their CRC
    /// (heads and count first, CRC last, as the guest re-reads on a CRC
    /// mismatch), kept across resets, and announced with
    /// `QXL_INTERRUPT_CLIENT_MONITORS_CONFIG` when it changed.
    pub fn set_client_monitors(&mut self, heads: &[(u32, u32, u32, u32)]) {
        let max = self.config.heads as usize;
        if heads.len() > max {
            self.warn(format_args!(
                "client monitors config: {} monitors, the card offers {max}",
                heads.len()
            ));
        }
        let heads = &heads[..heads.len().min(max)];
        let (bytes, crc) = super::rom::client_monitors_config(heads);
        let at = rom::CLIENT_MONITORS_CONFIG;
        let crc_at = rom::CLIENT_MONITORS_CONFIG_CRC;
        let changed = self.rom_image[at..at + bytes.len()] != bytes[..];
        self.rom_image[at..at + bytes.len()].copy_from_slice(&bytes);
        self.rom_image[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        self.rom_write(at + 4, &bytes[4..]);
        self.rom_write(at, &bytes[..4]);
        self.rom_write(crc_at, &crc.to_le_bytes());
        if changed && self.guest_takes(INTERRUPT_CLIENT_MONITORS_CONFIG) {
            self.raise(INTERRUPT_CLIENT_MONITORS_CONFIG);
        }
    }

    /// Whether a display client is connected and its capability bits
    /// (`SPICE_DISPLAY_CAP_*`, bit n = byte n / 8, bit n % 8); announced with
    /// `QXL_INTERRUPT_CLIENT` when it changed.
    pub fn set_client(&mut self, present: bool, capabilities: &[u8]) {
        let mut caps = [0u8; 58];
        let n = capabilities.len().min(caps.len());
        caps[..n].copy_from_slice(&capabilities[..n]);
        let at = rom::CLIENT_CAPABILITIES;
        let changed = self.rom_image[rom::CLIENT_PRESENT] != u8::from(present)
            || self.rom_image[at..at + caps.len()] != caps[..];
        self.rom_image[rom::CLIENT_PRESENT] = u8::from(present);
        self.rom_image[at..at + caps.len()].copy_from_slice(&caps);
        self.rom_write(at, &caps);
        self.rom_write(rom::CLIENT_PRESENT, &[u8::from(present)]);
        if changed && self.guest_takes(INTERRUPT_CLIENT) {
            self.raise(INTERRUPT_CLIENT);
        }
    }

    /// A guest write to a legacy VGA port (revision 4: back to VGA mode).
    pub fn vga_port_written(&mut self) {
        if self.config.revision <= 4 && self.mode != Mode::Vga {
            if self.mode == Mode::Native {
                self.destroy_primary();
            }
            self.soft_reset();
        }
    }

    // ---- ports ------------------------------------------------------------------------

    /// A byte written to I/O port `port` of the device (docs/qxl.md §5.2).
    pub fn io_write(&mut self, port: u8, value: u8, bars: &BarLayout) {
        QxlStats::add(&self.stats.port_writes, 1);
        if self.guest_bug && port != IO_RESET && port != IO_UPDATE_IRQ {
            return;
        }
        if port >= IO_RANGE_SIZE {
            self.set_guest_bug(format_args!("write to unknown port {port}"));
            return;
        }
        if self.mode == Mode::Vga && !allowed_in_vga_mode(port) {
            if is_async_port(port) {
                self.raise(INTERRUPT_IO_CMD);
            }
            return;
        }
        self.io_command(sync_equivalent(port), value, bars);
        if !self.guest_bug && !matches!(port, IO_NOTIFY_CMD | IO_NOTIFY_CURSOR | IO_UPDATE_IRQ) {
            if let Some(o) = self.observer.as_mut() {
                o.io(port);
            }
        }
        // Accepted async commands always complete, also after an error, so
        // the guest never waits for a timeout.
        if is_async_port(port) {
            self.raise(INTERRUPT_IO_CMD);
        }
    }

    fn io_command(&mut self, port: u8, value: u8, bars: &BarLayout) {
        match port {
            IO_NOTIFY_CMD | IO_NOTIFY_CURSOR => {
                self.process_rings(RING_BUDGET);
            }
            IO_UPDATE_AREA => self.update_area(),
            IO_UPDATE_IRQ => self.irq.update(),
            IO_NOTIFY_OOM => {
                self.process_rings(DRAIN_BUDGET);
                self.push_releases();
            }
            IO_RESET => self.hard_reset(),
            IO_SET_MODE => self.set_guest_bug(format_args!(
                "QXL_IO_SET_MODE (qxl-1 compat mode {value}) is not supported"
            )),
            IO_LOG => self.guest_log(),
            IO_MEMSLOT_ADD => self.memslot_add(value, bars),
            IO_MEMSLOT_DEL => {
                if let Err(e) = self.slots.delete(value) {
                    self.set_guest_bug(format_args!("{e}"));
                }
            }
            IO_DETACH_PRIMARY | IO_ATTACH_PRIMARY => {
                self.set_guest_bug(format_args!("unexpected port {port}"));
            }
            IO_CREATE_PRIMARY => self.create_primary(value),
            IO_DESTROY_PRIMARY => {
                if value != 0 {
                    self.set_guest_bug(format_args!("QXL_IO_DESTROY_PRIMARY with value {value}"));
                } else if self.mode != Mode::Undefined {
                    self.process_rings(DRAIN_BUDGET);
                    self.destroy_primary();
                    self.mode = Mode::Undefined;
                }
            }
            IO_DESTROY_SURFACE_WAIT => {
                if u32::from(value) >= NUM_SURFACES {
                    self.set_guest_bug(format_args!("destroy surface wait: id {value}"));
                } else {
                    // Rendering is eager: once the rings are drained nothing
                    // pending refers to the surface.
                    self.process_rings(DRAIN_BUDGET);
                }
            }
            IO_DESTROY_ALL_SURFACES => {
                self.process_rings(DRAIN_BUDGET);
                self.destroy_primary();
                self.mode = Mode::Undefined;
                for s in self.surfaces.drain() {
                    self.release_command(s.create_release);
                }
                self.push_releases();
            }
            IO_FLUSH_SURFACES_ASYNC => {
                self.process_rings(DRAIN_BUDGET);
                self.push_releases();
            }
            IO_FLUSH_RELEASE => self.push_releases(),
            IO_MONITORS_CONFIG_ASYNC => self.monitors_config(),
            _ => {}
        }
    }

    fn guest_log(&mut self) {
        let Some(range) = self.memory.range(
            Backing::Ram,
            self.header + ram::LOG_BUF,
            ram::LOG_BUF_SIZE as u64,
        ) else {
            return;
        };
        let mut buf = vec![0u8; ram::LOG_BUF_SIZE];
        self.memory.read(range, 0, &mut buf);
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let text = String::from_utf8_lossy(&buf[..end]).trim_end().to_string();
        if self.log.allow().is_some() {
            tracing::info!("QXL guest: {text}");
        }
    }

    fn memslot_add(&mut self, id: u8, bars: &BarLayout) {
        let start = self
            .memory
            .u64_at(Backing::Ram, self.header + ram::MEM_SLOT);
        let end = self
            .memory
            .u64_at(Backing::Ram, self.header + ram::MEM_SLOT + 8);
        match self.slots.add(id, start, end, bars, &self.memory) {
            Ok(slot) => tracing::debug!(
                "QXL: memslot {id}: {:#x}..{end:#x} ({:?})",
                slot.guest_start,
                slot.backing
            ),
            Err(e) => self.set_guest_bug(format_args!("{e}")),
        }
    }

    /// `QXL_IO_CREATE_PRIMARY` (docs/qxl.md §5.5).
    fn create_primary(&mut self, value: u8) {
        if value != 0 {
            self.set_guest_bug(format_args!("QXL_IO_CREATE_PRIMARY with value {value}"));
            return;
        }
        let Some(create) = self
            .memory
            .read_struct::<QxlSurfaceCreate>(Backing::Ram, self.header + ram::CREATE_SURFACE)
        else {
            return;
        };
        let (width, height) = (create.width.get(), create.height.get());
        let stride = create.stride.get();
        let format = create.format.get();
        let flags = create.flags.get();
        let mem = create.mem.get();
        let bytes = u64::from(stride.unsigned_abs()) * u64::from(height);
        let vgamem = self.config.vgamem_size;
        if stride == i32::MIN || bytes > vgamem {
            self.set_guest_bug(format_args!(
                "requested primary ({width}x{height}, stride {stride}) larger than the {vgamem}-byte framebuffer"
            ));
            return;
        }
        if self.mode == Mode::Native {
            // QEMU flags this but carries on; replace the old primary.
            self.warn(format_args!("primary created while one exists"));
            self.destroy_primary();
        }
        self.leave_vga_mode();
        if stride % 4 != 0 {
            self.set_guest_bug(format_args!(
                "primary stride {stride} is not a multiple of 4"
            ));
            return;
        }
        let info = match SurfaceInfo::validate(&self.slots, format, width, height, stride, mem) {
            Ok(info) if info.is_32bit() => info,
            Ok(_) => {
                self.bad_command(format_args!(
                    "primary format {format} is not supported (32-bit only)"
                ));
                return;
            }
            Err(e) => {
                self.bad_command(format_args!("primary: {e}"));
                return;
            }
        };
        self.mode = Mode::Native;
        // Before the resize: the VGA checks the switch under the display lock.
        self.switch.enter_native();
        self.display.resize(0, width, height);
        if flags & SURF_FLAG_KEEP_DATA != 0 {
            self.load_primary(&info);
        } else {
            self.memory.zero(info.mem);
        }
        tracing::debug!("QXL: primary {width}x{height} stride {stride} format {format}");
        self.primary = Some(info);
        if let Some(o) = self.observer.as_mut() {
            o.primary(Some(&info));
        }
    }

    /// Copies the primary's guest memory into the display (KEEP_DATA).
    fn load_primary(&self, info: &SurfaceInfo) {
        let row_bytes = info.width as usize * 4;
        self.display.draw(0, |surface| {
            if (surface.width, surface.height) != (info.width, info.height) {
                return None;
            }
            for y in 0..info.height {
                self.memory
                    .read(info.mem, info.row_offset(y), surface.row_mut(y));
            }
            Some(surface.bounds())
        });
        QxlStats::add(
            &self.stats.surface_copy_bytes,
            row_bytes as u64 * u64::from(info.height),
        );
    }

    /// Copies `rect` of the displayed primary back into guest memory.
    fn write_back_primary(&self, rect: Rect) {
        let Some(info) = self.primary else { return };
        let Some(head) = self.display.head(0) else {
            return;
        };
        if (head.width, head.height) != (info.width, info.height) {
            return;
        }
        let r = rect.intersect(&info.bounds());
        if r.is_empty() {
            return;
        }
        let (from, to) = (r.left as usize * 4, r.right as usize * 4);
        for y in r.top..r.bottom {
            let row = &head.row(y as u32)[from..to];
            self.memory
                .write(info.mem, info.row_offset(y as u32) + from as u64, row);
        }
        QxlStats::add(&self.stats.surface_copy_bytes, r.area() * 4);
    }

    /// Destroys the primary (its final picture written back to guest memory).
    fn destroy_primary(&mut self) {
        if let Some(info) = self.primary {
            self.write_back_primary(info.bounds());
            self.primary = None;
            if let Some(o) = self.observer.as_mut() {
                o.primary(None);
            }
        }
        self.hide_cursor();
    }

    /// `QXL_IO_UPDATE_AREA`: everything queued is drawn; the primary's guest
    /// memory gets the area.
    fn update_area(&mut self) {
        let Some(update) = self
            .memory
            .read_struct::<QxlUpdateArea>(Backing::Ram, self.header + ram::UPDATE_AREA)
        else {
            return;
        };
        let area: Rect = update.area.into();
        let surface_id = update.surface_id.get();
        if surface_id >= NUM_SURFACES {
            self.set_guest_bug(format_args!("update area: surface id {surface_id}"));
            return;
        }
        if area.left == area.right || area.top == area.bottom {
            return;
        }
        if area.left > area.right || area.top > area.bottom || area.left < 0 || area.top < 0 {
            self.set_guest_bug(format_args!("update area: bad rectangle {area:?}"));
            return;
        }
        self.process_rings(DRAIN_BUDGET);
        if surface_id == 0 {
            self.write_back_primary(area);
        }
    }

    fn monitors_config(&mut self) {
        let addr = self
            .memory
            .u64_at(Backing::Ram, self.header + ram::MONITORS_CONFIG);
        if addr == 0 {
            return;
        }
        let parser = Parser::new(&self.memory, &self.slots, NUM_SURFACES);
        let head: QxlMonitorsConfig = match parser.read(addr, "monitors config") {
            Ok(h) => h,
            Err(e) => {
                self.bad_command(format_args!("{e}"));
                return;
            }
        };
        // Read once (CVE-2015-3247): count and max_allowed come from this copy.
        let (count, max_allowed) = (head.count.get(), head.max_allowed.get());
        if count == 0 || (max_allowed != 0 && count > max_allowed) {
            return;
        }
        let count = count.min(MAX_MONITORS);
        const HEAD: u64 = size_of::<QxlMonitorsConfig>() as u64;
        let len = size_of::<QxlHead>() * usize::from(count);
        let range = match parser.translate(addr, HEAD + len as u64, "monitors config") {
            Ok(r) => r,
            Err(e) => {
                self.bad_command(format_args!("{e}"));
                return;
            }
        };
        let mut bytes = vec![0u8; len];
        self.memory.read(range, HEAD, &mut bytes);
        let heads = <[QxlHead]>::ref_from_bytes(&bytes).unwrap_or(&[]);
        let monitors = self.checked_monitors(heads);
        tracing::debug!("QXL: monitors config {monitors:?}");
        self.display.set_guest_monitors(monitors);
    }

    /// The guest's heads as monitors: at most the outputs the card offers,
    /// ids among them and each once, each a rectangle of the primary
    /// surface, with a log line for what cannot be.
    fn checked_monitors(&mut self, heads: &[QxlHead]) -> Vec<Monitor> {
        let max = self.config.heads as usize;
        if heads.len() > max {
            self.warn(format_args!(
                "monitors config: {} heads, the card offers {max}; the rest are ignored",
                heads.len()
            ));
        }
        let mut monitors: Vec<Monitor> = Vec::with_capacity(max);
        for h in heads.iter().take(max) {
            let m = Monitor {
                id: h.id.get(),
                x: h.x.get(),
                y: h.y.get(),
                width: h.width.get(),
                height: h.height.get(),
            };
            // Clients number their windows by id: one head each, among
            // the card's outputs.
            if m.id as usize >= max || monitors.iter().any(|o| o.id == m.id) {
                self.warn(format_args!(
                    "monitors config: head id {} is a repeat or not an output of the card",
                    m.id
                ));
                continue;
            }
            // (Inside the primary surface is checked where the layout is
            // used: the guest may say it before it resizes the surface.)
            if m.clipped(MAX_DIMENSION, MAX_DIMENSION) != m {
                self.warn(format_args!(
                    "monitors config: head {m:?} is outside any surface; it is clipped"
                ));
            }
            monitors.push(m);
        }
        monitors
    }

    // ---- rings ------------------------------------------------------------------------

    /// Takes and executes commands from the command and cursor rings until
    /// both are empty (and re-armed), or `budget` commands were done.
    /// Returns true if work is left.
    pub fn process_rings(&mut self, budget: usize) -> bool {
        if self.mode == Mode::Vga || self.guest_bug {
            return false;
        }
        let mut done = 0;
        let mut events = 0;
        let more = 'outer: loop {
            let mut progressed = false;
            for (ring, event, is_cursor) in [
                (self.cmd_ring(), INTERRUPT_DISPLAY, false),
                (self.cursor_ring(), INTERRUPT_CURSOR, true),
            ] {
                while done < budget {
                    match ring.pop(&self.memory) {
                        Ok(None) => break,
                        Ok(Some((command, notify))) => {
                            if notify {
                                events |= event;
                            }
                            done += 1;
                            progressed = true;
                            QxlStats::add(&self.stats.commands, 1);
                            self.execute(command, is_cursor);
                            if self.release.pending() >= RELEASE_BUNCH {
                                events |= self.push_releases_quiet();
                            }
                        }
                        Err(e) => {
                            let name = if is_cursor { "cursor" } else { "command" };
                            self.set_guest_bug(format_args!("{name} ring: {e}"));
                        }
                    }
                    if self.guest_bug {
                        break 'outer false;
                    }
                }
                if done >= budget {
                    break 'outer true;
                }
            }
            if !progressed {
                let cmd_empty = self.cmd_ring().request_notification(&self.memory);
                let cursor_empty = self.cursor_ring().request_notification(&self.memory);
                if cmd_empty && cursor_empty {
                    break false;
                }
            }
        };
        events |= self.push_releases_quiet();
        if events != 0 {
            self.raise(events);
        }
        more
    }

    fn push_releases_quiet(&mut self) -> u32 {
        if self.release.push(&self.memory, &self.release_ring()) {
            INTERRUPT_DISPLAY
        } else {
            0
        }
    }

    fn push_releases(&mut self) {
        let events = self.push_releases_quiet();
        if events != 0 {
            self.raise(events);
        }
    }

    fn release_command(&mut self, info: GuestRange) {
        QxlStats::add(&self.stats.releases, 1);
        self.release
            .release(&self.memory, &self.release_ring(), info);
    }

    fn execute(&mut self, command: RawCommand, cursor_ring: bool) {
        if command.kind == CMD_NOP && !cursor_ring {
            return;
        }
        // Without 8 readable bytes there is no release id to give back.
        let info = match self.slots.translate(command.data, 8) {
            Ok(info) => info,
            Err(e) => {
                self.set_guest_bug(format_args!(
                    "command {} at {:#x}: {e}",
                    command.kind, command.data
                ));
                return;
            }
        };
        match (command.kind, cursor_ring) {
            (CMD_CURSOR, true) => self.execute_cursor(command.data),
            (CMD_DRAW, false) => self.execute_draw(command.data),
            (CMD_SURFACE, false) => {
                if self.execute_surface(command.data, info) {
                    return; // released when the surface is destroyed
                }
            }
            (CMD_UPDATE, false) => {
                let parser = Parser::new(&self.memory, &self.slots, NUM_SURFACES);
                match parser.update_cmd(command.data) {
                    Ok(update) => {
                        if let Some(o) = self.observer.as_mut() {
                            o.update(&update);
                        }
                    }
                    Err(e) => self.bad_command(format_args!("{e}")),
                }
            }
            (CMD_MESSAGE, false) => {
                let parser = Parser::new(&self.memory, &self.slots, NUM_SURFACES);
                if let Ok(text) = parser.message(command.data) {
                    if self.log.allow().is_some() {
                        tracing::info!("QXL guest message: {text}");
                    }
                }
            }
            (kind, on_cursor) => {
                let ring = if on_cursor { "cursor" } else { "command" };
                self.set_guest_bug(format_args!("command type {kind} on the {ring} ring"));
            }
        }
        self.release_command(info);
    }

    fn execute_draw(&mut self, addr: u64) {
        QxlStats::add(&self.stats.drawables, 1);
        let parser = Parser::new(&self.memory, &self.slots, NUM_SURFACES);
        let drawable = match parser.drawable(addr) {
            Ok(d) => d,
            Err(e) => {
                self.bad_command(format_args!("{e}"));
                return;
            }
        };
        let ctx = DrawContext {
            memory: &self.memory,
            surfaces: &self.surfaces,
            primary: self.primary.as_ref(),
            display: &self.display,
            stats: &self.stats,
        };
        match ctx.draw(&drawable) {
            Ok(pixels) => {
                QxlStats::add(&self.stats.pixels_drawn, pixels);
                if let Some(o) = self.observer.as_mut() {
                    o.drawable(&drawable, &self.memory);
                }
            }
            // Linux 6.1 draws its first full-screen update onto the 64x64
            // primary it creates first; spice-server drops such drawables
            // silently, and so do we (it is released, nothing is drawn).
            Err(e @ DrawError::BadBbox { .. }) => {
                QxlStats::add(&self.stats.dropped_drawables, 1);
                tracing::debug!("QXL: {} drawable dropped: {e}", drawable.op.name());
            }
            Err(e) => self.bad_command(format_args!("{} drawable: {e}", drawable.op.name())),
        }
    }

    /// Returns true when the command is kept (a created surface).
    fn execute_surface(&mut self, addr: u64, info: GuestRange) -> bool {
        let parser = Parser::new(&self.memory, &self.slots, NUM_SURFACES);
        let cmd = match parser.surface_cmd(addr) {
            Ok(c) => c,
            Err(e) => {
                self.bad_command(format_args!("{e}"));
                return false;
            }
        };
        match cmd {
            SurfaceCmd::Create {
                surface_id,
                format,
                width,
                height,
                stride,
                data,
                keep_data,
            } => {
                if surface_id == 0 || self.surfaces.get(surface_id).is_some() {
                    self.bad_command(format_args!("create of surface {surface_id}, which exists"));
                    return false;
                }
                let surface =
                    match SurfaceInfo::validate(&self.slots, format, width, height, stride, data) {
                        Ok(s) => s,
                        Err(e) => {
                            self.bad_command(format_args!("surface {surface_id}: {e}"));
                            return false;
                        }
                    };
                if !keep_data {
                    self.memory.zero(surface.mem);
                }
                self.surfaces.insert(
                    surface_id,
                    OffscreenSurface {
                        info: surface,
                        create_release: info,
                    },
                );
                if let Some(o) = self.observer.as_mut() {
                    o.surface(&cmd, Some(&surface));
                }
                true
            }
            SurfaceCmd::Destroy { surface_id } => {
                match self.surfaces.remove(surface_id) {
                    Some(s) => {
                        if let Some(o) = self.observer.as_mut() {
                            o.surface(&cmd, None);
                        }
                        // The create goes back first, then (by the caller) the destroy.
                        self.release_command(s.create_release);
                    }
                    None => self.bad_command(format_args!(
                        "destroy of surface {surface_id}, which does not exist"
                    )),
                }
                false
            }
        }
    }

    fn execute_cursor(&mut self, addr: u64) {
        QxlStats::add(&self.stats.cursor_commands, 1);
        let parser = Parser::new(&self.memory, &self.slots, NUM_SURFACES);
        let cmd = match parser.cursor_cmd(addr) {
            Ok(c) => c,
            Err(e) => {
                self.bad_command(format_args!("{e}"));
                return;
            }
        };
        match &cmd {
            CursorCmd::Set {
                x,
                y,
                visible,
                image,
            } => {
                let shape = Arc::new(cursor::to_shape(image));
                self.display.update_cursor(|c| {
                    c.shape = Some(shape);
                    c.x = i32::from(*x);
                    c.y = i32::from(*y);
                    c.visible = *visible;
                });
            }
            CursorCmd::Move { x, y } => self.display.update_cursor(|c| {
                c.x = i32::from(*x);
                c.y = i32::from(*y);
                c.visible = true;
            }),
            CursorCmd::Hide => self.display.update_cursor(|c| c.visible = false),
            CursorCmd::Trail { .. } => {}
        }
        if let Some(o) = self.observer.as_mut() {
            o.cursor(&cmd);
        }
    }

    fn hide_cursor(&self) {
        if self.display.cursor().visible {
            self.display.update_cursor(|c| c.visible = false);
        }
    }

    /// The value of `int_pending` (for tests and stats).
    pub fn int_pending(&self) -> u32 {
        self.ram_u32(ram::INT_PENDING)
    }
}
