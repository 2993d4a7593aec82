//! The replay's guest driver: drives a real QXL device model (its PCI
//! function, ports, rings, memslots, worker thread and renderer) the way
//! Linux's `qxl` driver does, with the commands of a recording.
//!
//! * Probe: program the BARs like firmware, read the ROM (slot id and
//!   generation bits), `QXL_IO_RESET`, set the interrupt mask, add two
//!   memslots: slot A = BAR 0 up to the RAM header (primary surface area +
//!   command pages), slot B = the surface BAR.
//! * Commands: each recorded command is laid out by [`super::layout`] in
//!   one block of the command pages (first fit, waiting for releases when
//!   memory runs out, like a driver's OOM path), its pointers encoded as
//!   QXLPHYSICAL addresses of slot A (surface pixels: slot B), pushed on the
//!   command or cursor ring, and the device is kicked when the ring asks.
//! * Releases: the release ring is popped and every chain walked; a block
//!   is freed when its command comes back.
//! * Device messages are replayed as the port writes QEMU turns into them
//!   ([`Guest::device_message`]).
//!
//! Everything the device does is the device's own doing: a command the
//! recording got wrong is refused by the device's parser, exactly as for a
//! live guest, and shows up in its statistics.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use devices::bus::lock;
use devices::interrupt::LevelInterrupt;
use devices::pci::{BarBacking, PciDevice, COMMAND_BUS_MASTER, COMMAND_IO, COMMAND_MEMORY};
use devices::qxl::defs::{self, ram, ring, rom};
use devices::qxl::memory::{Backing, BarMemory};
use devices::qxl::{Qxl, QxlConfig, QxlError, QxlStatsSnapshot};

use super::heap::Heap;
use super::layout::{self, RingKind};
use super::model::{message, Command, PrimaryCreate, SurfaceCmdKind};

/// Where the replay's "firmware" puts the BARs (any free 32-bit window).
const BAR_WINDOW: u64 = 0x4000_0000;
/// How long an async port or a full ring may take before we give up.
const DEVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// Interrupt causes the driver wants.
const INT_MASK: u32 = defs::INTERRUPT_DISPLAY
    | defs::INTERRUPT_CURSOR
    | defs::INTERRUPT_IO_CMD
    | defs::INTERRUPT_ERROR;

/// The INTx line, as the driver's interrupt handler sees it.
#[derive(Default)]
struct GuestIrq {
    level: Mutex<bool>,
    changed: Condvar,
}

impl LevelInterrupt for GuestIrq {
    fn set_level(&self, asserted: bool) {
        *lock(&self.level) = asserted;
        self.changed.notify_all();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("cannot create the QXL device: {0}")]
    Device(#[from] QxlError),
    #[error("cannot start the QXL worker: {0}")]
    Worker(std::io::Error),
    #[error("the QXL device does not answer like a QXL device: {0}")]
    Probe(String),
}

/// A command the device has not released yet.
#[derive(Debug)]
struct Outstanding {
    /// Its block in the command pages (BAR 0 offset, length).
    block: (u64, u64),
    /// Its surface memory (surface BAR offset, length).
    surface: Option<(u64, u64)>,
    /// A surface create: the device keeps it until the surface goes.
    held: bool,
}

/// Counters of what the driver did.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuestCounters {
    pub commands_pushed: u64,
    pub releases: u64,
    pub port_writes: u64,
    pub kicks: u64,
    pub waits_for_memory: u64,
    pub device_resets_after_error: u64,
    pub error_interrupts: u64,
}

pub struct Guest {
    qxl: Qxl,
    worker: Option<JoinHandle<()>>,
    mem: BarMemory,
    irq: Arc<GuestIrq>,
    config: QxlConfig,
    header: u64,
    bar0: u64,
    bar1: u64,
    slot_id_bits: u32,
    slot_gen_bits: u32,
    slot_generation: u8,
    /// Our two memslot ids (command/primary memory, surface memory).
    slots: [u8; 2],
    slots_added: [bool; 2],
    commands: Heap,
    surfaces: Heap,
    outstanding: HashMap<u64, Outstanding>,
    next_id: u64,
    /// Interrupt causes taken but not yet waited for.
    pending: u32,
    primary: Option<(u32, u32)>,
    guest_bugs_seen: u64,
    pub counters: GuestCounters,
}

impl Guest {
    /// Creates the device, starts its worker and probes it.
    pub fn new(config: QxlConfig) -> Result<Guest, GuestError> {
        let irq = Arc::new(GuestIrq::default());
        let mut qxl = Qxl::new(config, irq.clone(), 11)?;
        let (bar0, bar1) = {
            let mut pci = lock(&qxl.pci);
            let bar0 = BAR_WINDOW.next_multiple_of(config.ram_size);
            let bar1 = (bar0 + config.ram_size).next_multiple_of(config.vram_size);
            let rom_bar = (bar1 + config.vram_size).next_multiple_of(defs::ROM_BAR_SIZE);
            let cfg = pci.config_mut();
            cfg.set_bar_address(defs::BAR_RAM, bar0);
            cfg.set_bar_address(defs::BAR_VRAM, bar1);
            cfg.set_bar_address(defs::BAR_ROM, rom_bar);
            cfg.set_bar_address(defs::BAR_IO, 0xc000);
            let command = COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER;
            pci.write_config(4, &command.to_le_bytes());
            (bar0, bar1)
        };
        let (ram, vram, rom_memory) = {
            let pci = lock(&qxl.pci);
            let memory = |bar| match pci.bar_backing(bar) {
                BarBacking::Memory { memory, .. } => Some(memory),
                BarBacking::Trapped => None,
            };
            (
                memory(defs::BAR_RAM),
                memory(defs::BAR_VRAM),
                memory(defs::BAR_ROM),
            )
        };
        let (Some(ram), Some(vram), Some(rom_memory)) = (ram, vram, rom_memory) else {
            return Err(GuestError::Probe("memory BARs missing".into()));
        };
        let mut rom_bytes = vec![0u8; rom::SIZE];
        {
            use vm_memory::VolatileMemory;
            let slice = rom_memory
                .get_slice(0, rom::SIZE)
                .map_err(|e| GuestError::Probe(format!("ROM: {e}")))?;
            slice.copy_to(&mut rom_bytes[..]);
        }
        let rom_u32 = |at: usize| {
            u32::from_le_bytes([
                rom_bytes[at],
                rom_bytes[at + 1],
                rom_bytes[at + 2],
                rom_bytes[at + 3],
            ])
        };
        if rom_u32(rom::MAGIC) != defs::ROM_MAGIC {
            return Err(GuestError::Probe("bad ROM magic".into()));
        }
        let header = u64::from(rom_u32(rom::RAM_HEADER_OFFSET));
        let vgamem = u64::from(rom_u32(rom::SURFACE0_AREA_SIZE));
        let pages_end = vgamem + u64::from(rom_u32(rom::NUM_PAGES)) * 4096;
        if header != config.ram_header_offset() || pages_end > header || vgamem == 0 {
            return Err(GuestError::Probe(format!(
                "ROM layout: header {header:#x}, surface area {vgamem:#x}, pages end {pages_end:#x}"
            )));
        }
        let slots_start = rom_bytes[rom::SLOTS_START];
        let slots_end = rom_bytes[rom::SLOTS_END];
        if slots_end < slots_start.saturating_add(2) {
            return Err(GuestError::Probe(format!(
                "memslots {slots_start}..{slots_end}: need two"
            )));
        }
        let worker = qxl.spawn_worker().map_err(GuestError::Worker)?;
        let mut guest = Guest {
            mem: BarMemory::new(ram, vram),
            worker,
            irq,
            header,
            bar0,
            bar1,
            slot_id_bits: u32::from(rom_bytes[rom::SLOT_ID_BITS]),
            slot_gen_bits: u32::from(rom_bytes[rom::SLOT_GEN_BITS]),
            slot_generation: rom_bytes[rom::SLOT_GENERATION],
            slots: [slots_start, slots_start + 1],
            slots_added: [false; 2],
            commands: Heap::new(vgamem, pages_end),
            surfaces: Heap::new(0, config.vram_size),
            outstanding: HashMap::new(),
            next_id: 0,
            pending: 0,
            primary: None,
            guest_bugs_seen: 0,
            counters: GuestCounters::default(),
            config,
            qxl,
        };
        guest.reset();
        Ok(guest)
    }

    /// The device's display (hand it to the SPICE server).
    pub fn display(&self) -> Arc<devices::display::Display> {
        self.qxl.display.clone()
    }

    pub fn control(&self) -> devices::qxl::QxlControl {
        self.qxl.control.clone()
    }

    /// A view of the device's BARs (for a recorder).
    pub fn memory_view(&self) -> BarMemory {
        BarMemory::new(self.mem.ram().clone(), self.mem.vram().clone())
    }

    pub fn stats(&self) -> QxlStatsSnapshot {
        self.qxl.control.stats()
    }

    /// The device's primary-surface area.
    pub fn vgamem(&self) -> u64 {
        self.config.vgamem_size
    }

    /// Bytes of command memory.
    pub fn command_memory(&self) -> u64 {
        self.commands.capacity()
    }

    // ---- ports and interrupts --------------------------------------------------------

    fn io(&mut self, port: u8, value: u8) {
        self.counters.port_writes += 1;
        lock(&self.qxl.pci).write_bar(defs::BAR_IO, u64::from(port), &[value]);
    }

    /// The interrupt handler: takes the pending causes and re-arms.
    fn take_interrupts(&mut self) {
        let bits = self.mem.swap_ram_u32(self.header + ram::INT_PENDING, 0);
        if bits != 0 {
            if bits & defs::INTERRUPT_ERROR != 0 {
                self.counters.error_interrupts += 1;
            }
            self.pending |= bits;
            self.io(defs::IO_UPDATE_IRQ, 0);
        }
    }

    /// Waits until one of `want` was raised (true) or `timeout` passed.
    fn wait_interrupt(&mut self, want: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.take_interrupts();
            if self.pending & want != 0 {
                self.pending &= !want;
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let level = lock(&self.irq.level);
            let _ = self
                .irq
                .changed
                .wait_timeout_while(level, deadline - now, |asserted| !*asserted);
        }
    }

    /// An async port: write it and wait for its completion interrupt.
    fn io_async(&mut self, port: u8, value: u8) -> Result<(), String> {
        self.pending &= !defs::INTERRUPT_IO_CMD;
        self.io(port, value);
        if self.wait_interrupt(defs::INTERRUPT_IO_CMD, DEVICE_TIMEOUT) {
            Ok(())
        } else {
            Err(format!("the device did not complete async port {port}"))
        }
    }

    /// A port, synchronous or async as `asynchronous` says.
    fn io_maybe_async(&mut self, sync: u8, asynchronous: Option<u8>) -> Result<(), String> {
        match asynchronous {
            Some(port) => self.io_async(port, 0),
            None => {
                self.io(sync, 0);
                Ok(())
            }
        }
    }

    // ---- addresses and memslots --------------------------------------------------------

    /// The QXLPHYSICAL of `offset` in our memslot `which` (0 or 1).
    fn address(&self, which: usize, offset: u64) -> Option<u64> {
        let id_shift = 64u32.checked_sub(self.slot_id_bits)?;
        let gen_shift = id_shift.checked_sub(self.slot_gen_bits)?;
        if offset >> gen_shift != 0 {
            return None;
        }
        Some(
            (u64::from(self.slots[which]) << id_shift)
                | (u64::from(self.slot_generation) << gen_shift)
                | offset,
        )
    }

    /// Adds our memslot `which` if it is not there yet.
    fn add_slot(&mut self, which: usize, asynchronous: bool) -> Result<(), String> {
        if self.slots_added[which] {
            return Ok(());
        }
        let (start, end) = if which == 0 {
            (self.bar0, self.bar0 + self.header)
        } else {
            (self.bar1, self.bar1 + self.config.vram_size)
        };
        self.mem
            .set_u64_at(Backing::Ram, self.header + ram::MEM_SLOT, start);
        self.mem
            .set_u64_at(Backing::Ram, self.header + ram::MEM_SLOT + 8, end);
        let id = self.slots[which];
        if asynchronous {
            self.io_async(defs::IO_MEMSLOT_ADD_ASYNC, id)?;
        } else {
            self.io(defs::IO_MEMSLOT_ADD, id);
        }
        self.slots_added[which] = true;
        Ok(())
    }

    fn ensure_slots(&mut self) -> Result<(), String> {
        self.add_slot(0, false)?;
        self.add_slot(1, false)
    }

    /// `QXL_IO_RESET`: the device forgets every command without releasing it.
    fn reset(&mut self) {
        self.io(defs::IO_RESET, 0);
        self.mem
            .set_u32_at(Backing::Ram, self.header + ram::INT_MASK, INT_MASK);
        self.outstanding.clear();
        self.commands.reset();
        self.surfaces.reset();
        self.slots_added = [false; 2];
        self.primary = None;
        self.pending = 0;
        self.guest_bugs_seen = self.stats().guest_bugs;
    }

    /// After an operation: if the device latched its error state (it then
    /// ignores everything but a reset), reset it like a driver would.
    fn check_device(&mut self) -> Result<(), String> {
        let bugs = self.stats().guest_bugs;
        if bugs == self.guest_bugs_seen {
            return Ok(());
        }
        self.counters.device_resets_after_error += 1;
        self.reset();
        Err("the device entered its error state; it was reset (surfaces are gone)".into())
    }

    // ---- device messages -----------------------------------------------------------------

    /// Replays one device message as the port write QEMU turns into it.
    /// Messages whose payload the format does not record are done with what
    /// is known (update area: the whole primary) or skipped (see the docs).
    pub fn device_message(
        &mut self,
        msg: u32,
        primary: Option<&PrimaryCreate>,
    ) -> Result<(), String> {
        use message::*;
        let result = match msg {
            UPDATE | UPDATE_ASYNC => match self.primary {
                Some((w, h)) => {
                    self.ensure_slots()?;
                    let area = self.header + ram::UPDATE_AREA;
                    let rect = [0i32, 0, h as i32, w as i32];
                    for (i, v) in rect.iter().enumerate() {
                        self.mem
                            .set_u32_at(Backing::Ram, area + 4 * i as u64, *v as u32);
                    }
                    self.mem
                        .set_u32_at(Backing::Ram, self.header + ram::UPDATE_SURFACE, 0);
                    self.io_maybe_async(
                        defs::IO_UPDATE_AREA,
                        (msg == UPDATE_ASYNC).then_some(defs::IO_UPDATE_AREA_ASYNC),
                    )
                }
                None => Ok(()),
            },
            OOM => {
                self.io(defs::IO_NOTIFY_OOM, 0);
                Ok(())
            }
            RESET_MEMSLOTS => {
                self.reset();
                Ok(())
            }
            ADD_MEMSLOT | ADD_MEMSLOT_ASYNC => {
                let which = usize::from(self.slots_added[0]);
                if which < 2 && !self.slots_added[which] {
                    self.add_slot(which, msg == ADD_MEMSLOT_ASYNC)
                } else {
                    Ok(())
                }
            }
            DESTROY_SURFACES | DESTROY_SURFACES_ASYNC => {
                self.ensure_slots()?;
                let r = self.io_maybe_async(
                    defs::IO_DESTROY_ALL_SURFACES,
                    (msg == DESTROY_SURFACES_ASYNC).then_some(defs::IO_DESTROY_ALL_SURFACES_ASYNC),
                );
                self.primary = None;
                self.collect_releases();
                r
            }
            CREATE_PRIMARY_SURFACE | CREATE_PRIMARY_SURFACE_ASYNC => match primary {
                Some(p) => self.create_primary(p, msg == CREATE_PRIMARY_SURFACE_ASYNC),
                None => Err("create primary without a body (refused at record time)".into()),
            },
            DESTROY_PRIMARY_SURFACE | DESTROY_PRIMARY_SURFACE_ASYNC => {
                let r = self.io_maybe_async(
                    defs::IO_DESTROY_PRIMARY,
                    (msg == DESTROY_PRIMARY_SURFACE_ASYNC)
                        .then_some(defs::IO_DESTROY_PRIMARY_ASYNC),
                );
                self.primary = None;
                r
            }
            FLUSH_SURFACES_ASYNC => self.io_async(defs::IO_FLUSH_SURFACES_ASYNC, 0),
            // WAKEUP: the driver kicks when the ring asks. Memslot deletes,
            // destroy-surface-wait and monitors configs carry no payload in
            // the format; the rest is not a port at all.
            _ => Ok(()),
        };
        self.check_device()?;
        result
    }

    fn create_primary(&mut self, p: &PrimaryCreate, asynchronous: bool) -> Result<(), String> {
        self.ensure_slots()?;
        let bytes = p.data.len() as u64;
        if bytes > self.config.vgamem_size {
            return Err(format!(
                "primary {}x{} ({bytes} bytes) does not fit the device's {}-byte surface area (--qxl vgamem=)",
                p.width, p.height, self.config.vgamem_size
            ));
        }
        let range = self
            .mem
            .range(Backing::Ram, 0, bytes)
            .ok_or("primary surface area out of range")?;
        self.mem.write(range, 0, &p.data);
        let mem = self.address(0, 0).ok_or("no address for the primary")?;
        let at = self.header + ram::CREATE_SURFACE;
        for (offset, v) in [
            (0, p.width),
            (4, p.height),
            (8, p.stride as u32),
            (12, p.format),
            (16, p.position),
            (20, p.mouse_mode),
            (24, p.flags),
            (28, p.kind),
        ] {
            self.mem.set_u32_at(Backing::Ram, at + offset, v);
        }
        self.mem.set_u64_at(Backing::Ram, at + 32, mem);
        let before = self.stats().bad_commands;
        self.io_maybe_async(
            defs::IO_CREATE_PRIMARY,
            asynchronous.then_some(defs::IO_CREATE_PRIMARY_ASYNC),
        )?;
        if self.stats().bad_commands == before {
            self.primary = Some((p.width, p.height));
        }
        Ok(())
    }

    // ---- commands ----------------------------------------------------------------------

    /// Lays out and pushes one command; returns its release id.
    pub fn command(&mut self, cmd: &Command) -> Result<u64, String> {
        self.ensure_slots()?;
        self.next_id += 1;
        let id = self.next_id;
        let mut prepared = layout::prepare(cmd, id).map_err(|e| e.to_string())?;
        let held = matches!(
            cmd,
            Command::Surface(s) if matches!(s.kind, SurfaceCmdKind::Create { .. })
        );
        let surface = match &prepared.surface_memory {
            Some((len, _)) => Some(self.allocate(*len, true)?),
            None => None,
        };
        let len = prepared.block.bytes.len() as u64;
        let block = match self.allocate(len, false) {
            Ok(b) => b,
            Err(e) => {
                if let Some((at, len)) = surface {
                    self.surfaces.free(at, len);
                }
                return Err(e);
            }
        };
        let surface_address = surface.and_then(|(at, _)| self.address(1, at));
        let linked = prepared.block.link(
            |offset| self.address(0, block.0 + offset as u64),
            surface_address,
        );
        let written = linked.is_some()
            && self
                .mem
                .range(Backing::Ram, block.0, len)
                .is_some_and(|r| self.mem.write(r, 0, &prepared.block.bytes));
        if let (Some((at, len)), Some((_, data))) = (surface, &prepared.surface_memory) {
            if let Some(r) = self.mem.range(Backing::Vram, at, len) {
                match data {
                    Some(pixels) => self.mem.write(r, 0, pixels),
                    None => self.mem.zero(r),
                };
            }
        }
        if !written {
            self.commands.free(block.0, block.1);
            if let Some((at, len)) = surface {
                self.surfaces.free(at, len);
            }
            return Err("cannot address the command in device memory".into());
        }
        self.outstanding.insert(
            id,
            Outstanding {
                block,
                surface,
                held,
            },
        );
        let data = self.address(0, block.0).unwrap_or(0);
        if let Err(e) = self.push(prepared.ring, data, prepared.kind) {
            if let Some(o) = self.outstanding.remove(&id) {
                self.free(&o);
            }
            return Err(e);
        }
        self.counters.commands_pushed += 1;
        self.check_device()?;
        Ok(id)
    }

    /// Device memory for a command (`surface`: in the surface BAR),
    /// waiting for releases while the device still holds commands.
    fn allocate(&mut self, len: u64, surface: bool) -> Result<(u64, u64), String> {
        let deadline = Instant::now() + DEVICE_TIMEOUT;
        loop {
            let heap = if surface {
                &mut self.surfaces
            } else {
                &mut self.commands
            };
            if let Some(block) = heap.alloc(len) {
                return Ok(block);
            }
            let capacity = heap.capacity();
            if len > capacity {
                let what = if surface { "surface" } else { "command" };
                return Err(format!(
                    "needs {len} bytes of {what} memory, the device has {capacity} (--qxl ram= / vram=)"
                ));
            }
            let waiting = self.outstanding.values().any(|o| !o.held);
            if (!waiting && !surface) || Instant::now() >= deadline {
                let what = if surface { "surface" } else { "command" };
                return Err(format!(
                    "no room for {len} bytes of {what} memory (in use: {} of {capacity})",
                    if surface {
                        self.surfaces.used()
                    } else {
                        self.commands.used()
                    }
                ));
            }
            self.counters.waits_for_memory += 1;
            // Linux's OOM path: ask the device to finish and release.
            if self.collect_releases() == 0 {
                self.io(defs::IO_NOTIFY_OOM, 0);
                self.wait_interrupt(defs::INTERRUPT_DISPLAY, Duration::from_millis(5));
            }
            if surface && Instant::now() >= deadline {
                break;
            }
        }
        Err("device memory exhausted".into())
    }

    fn free(&mut self, o: &Outstanding) {
        self.commands.free(o.block.0, o.block.1);
        if let Some((at, len)) = o.surface {
            self.surfaces.free(at, len);
        }
    }

    /// Puts a command on a ring (waiting while it is full) and kicks the
    /// device if it asked for it.
    fn push(&mut self, which: RingKind, data: u64, kind: u32) -> Result<(), String> {
        let (base, size, port, event) = match which {
            RingKind::Command => (
                self.header + ram::CMD_RING,
                defs::COMMAND_RING_SIZE,
                defs::IO_NOTIFY_CMD,
                defs::INTERRUPT_DISPLAY,
            ),
            RingKind::Cursor => (
                self.header + ram::CURSOR_RING,
                defs::CURSOR_RING_SIZE,
                defs::IO_NOTIFY_CURSOR,
                defs::INTERRUPT_CURSOR,
            ),
        };
        let get = |g: &Guest, field: u64| g.mem.u32_at(Backing::Ram, base + field);
        let deadline = Instant::now() + DEVICE_TIMEOUT;
        loop {
            let prod = get(self, ring::PROD);
            let cons = get(self, ring::CONS);
            if prod.wrapping_sub(cons) < size {
                break;
            }
            // Full: ask to be told when a slot frees up.
            self.mem.set_u32_at(
                Backing::Ram,
                base + ring::NOTIFY_ON_CONS,
                cons.wrapping_add(1),
            );
            if get(self, ring::CONS) != cons {
                continue;
            }
            if Instant::now() >= deadline {
                return Err("the device does not take commands (no primary surface?)".into());
            }
            self.kick(port);
            self.wait_interrupt(event, Duration::from_millis(20));
            self.collect_releases();
        }
        let prod = get(self, ring::PROD);
        let item = base + ring::ITEMS + u64::from(prod & (size - 1)) * defs::COMMAND_SIZE;
        self.mem.set_u64_at(Backing::Ram, item, data);
        self.mem.set_u32_at(Backing::Ram, item + 8, kind);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let prod = prod.wrapping_add(1);
        self.mem.set_u32_at(Backing::Ram, base + ring::PROD, prod);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if prod == get(self, ring::NOTIFY_ON_PROD) {
            self.kick(port);
        }
        Ok(())
    }

    fn kick(&mut self, port: u8) {
        self.counters.kicks += 1;
        self.io(port, 0);
    }

    /// Pops the release ring, frees what came back; returns how many.
    pub fn collect_releases(&mut self) -> usize {
        let base = self.header + ram::RELEASE_RING;
        let mut released = 0;
        loop {
            let cons = self.mem.u32_at(Backing::Ram, base + ring::CONS);
            let prod = self.mem.u32_at(Backing::Ram, base + ring::PROD);
            if cons == prod {
                self.mem.set_u32_at(
                    Backing::Ram,
                    base + ring::NOTIFY_ON_PROD,
                    cons.wrapping_add(1),
                );
                if self.mem.u32_at(Backing::Ram, base + ring::PROD) == prod {
                    break;
                }
                continue;
            }
            let item = base + ring::ITEMS + u64::from(cons & (defs::RELEASE_RING_SIZE - 1)) * 8;
            let mut id = self.mem.u64_at(Backing::Ram, item);
            self.mem
                .set_u32_at(Backing::Ram, base + ring::CONS, cons.wrapping_add(1));
            // Each released command's release info holds the next id.
            // Bounded by what can be in a chain (a corrupt chain cannot loop).
            let mut budget = self.outstanding.len();
            while id != 0 && budget > 0 {
                budget -= 1;
                let Some(o) = self.outstanding.remove(&id) else {
                    tracing::warn!("replay: the device released unknown id {id:#x}");
                    break;
                };
                id = self.mem.u64_at(Backing::Ram, o.block.0);
                self.free(&o);
                released += 1;
            }
        }
        self.counters.releases += released as u64;
        released
    }

    /// Whether the device gave command `id` back.
    pub fn is_released(&self, id: u64) -> bool {
        !self.outstanding.contains_key(&id)
    }

    /// Waits until every command but live surface creates came back.
    pub fn drain(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.collect_releases();
            if !self.outstanding.values().any(|o| !o.held) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            // The device pushes release chains at the end of each pass; ask
            // for the one it may still hold.
            self.io(defs::IO_FLUSH_RELEASE, 0);
            self.wait_interrupt(defs::INTERRUPT_DISPLAY, Duration::from_millis(2));
        }
    }

    /// Waits until command `id` came back.
    pub fn wait_released(&mut self, id: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.collect_releases();
            if self.is_released(id) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.io(defs::IO_FLUSH_RELEASE, 0);
            self.wait_interrupt(defs::INTERRUPT_DISPLAY, Duration::from_millis(2));
        }
    }

    /// Commands the device still holds (live surfaces included).
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.qxl.control.stop();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
