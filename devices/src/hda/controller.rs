//! The controller's registers (docs/hda.md §2): global registers, the
//! command rings, the immediate command interface, eight stream
//! descriptors (0..3 capture, 4..7 playback), and the interrupt they add
//! up to.
//!
//! Registers are decoded byte by byte, so any access size at any offset
//! reaches the right bytes (Linux mixes byte, word and dword accesses to
//! the same registers, and a dword write to SDnCTL also writes SDnSTS).

use std::sync::Arc;
use std::time::Instant;

use vm_memory::{Bytes, GuestAddress};

use super::codec::{Codec, Effect};
use super::corb::{self, Rings};
use super::stream::{self, byte_mask, Change, Stream};
use crate::audio::{AudioBackend, Direction, PcmFormat};
use crate::ratelimit::RateLimit;
use crate::virtio::GuestMemory;

/// Global register offsets.
mod reg {
    pub const GCAP: u64 = 0x00;
    pub const VMIN: u64 = 0x02;
    pub const VMAJ: u64 = 0x03;
    pub const OUTPAY: u64 = 0x04;
    pub const INPAY: u64 = 0x06;
    pub const GCTL: u64 = 0x08;
    pub const WAKEEN: u64 = 0x0c;
    pub const STATESTS: u64 = 0x0e;
    pub const GSTS: u64 = 0x10;
    pub const INTCTL: u64 = 0x20;
    pub const INTSTS: u64 = 0x24;
    pub const WALCLK: u64 = 0x30;
    pub const SSYNC: u64 = 0x34;
    pub const SSYNC_NEW: u64 = 0x38;
    pub const CORBLBASE: u64 = 0x40;
    pub const CORBUBASE: u64 = 0x44;
    pub const CORBWP: u64 = 0x48;
    pub const CORBRP: u64 = 0x4a;
    pub const CORBCTL: u64 = 0x4c;
    pub const CORBSTS: u64 = 0x4d;
    pub const CORBSIZE: u64 = 0x4e;
    pub const RIRBLBASE: u64 = 0x50;
    pub const RIRBUBASE: u64 = 0x54;
    pub const RIRBWP: u64 = 0x58;
    pub const RINTCNT: u64 = 0x5a;
    pub const RIRBCTL: u64 = 0x5c;
    pub const RIRBSTS: u64 = 0x5d;
    pub const RIRBSIZE: u64 = 0x5e;
    pub const IC: u64 = 0x60;
    pub const IR: u64 = 0x64;
    pub const ICS: u64 = 0x68;
    pub const DPLBASE: u64 = 0x70;
    pub const DPUBASE: u64 = 0x74;
    pub const STREAMS: u64 = 0x80;
}

/// Every global register: offset and width in bytes.
const GLOBAL_REGS: &[(u64, u64)] = &[
    (reg::GCAP, 2),
    (reg::VMIN, 1),
    (reg::VMAJ, 1),
    (reg::OUTPAY, 2),
    (reg::INPAY, 2),
    (reg::GCTL, 4),
    (reg::WAKEEN, 2),
    (reg::STATESTS, 2),
    (reg::GSTS, 2),
    (reg::INTCTL, 4),
    (reg::INTSTS, 4),
    (reg::WALCLK, 4),
    (reg::SSYNC, 4),
    (reg::SSYNC_NEW, 4),
    (reg::CORBLBASE, 4),
    (reg::CORBUBASE, 4),
    (reg::CORBWP, 2),
    (reg::CORBRP, 2),
    (reg::CORBCTL, 1),
    (reg::CORBSTS, 1),
    (reg::CORBSIZE, 1),
    (reg::RIRBLBASE, 4),
    (reg::RIRBUBASE, 4),
    (reg::RIRBWP, 2),
    (reg::RINTCNT, 2),
    (reg::RIRBCTL, 1),
    (reg::RIRBSTS, 1),
    (reg::RIRBSIZE, 1),
    (reg::IC, 4),
    (reg::IR, 4),
    (reg::ICS, 2),
    (reg::DPLBASE, 4),
    (reg::DPUBASE, 4),
];

/// A stream descriptor's registers: offset within it and width.
const STREAM_REGS: &[(u64, u64)] = &[
    (stream::reg::CTL, 3),
    (stream::reg::STS, 1),
    (stream::reg::LPIB, 4),
    (stream::reg::CBL, 4),
    (stream::reg::LVI, 2),
    (stream::reg::FIFOW, 2),
    (stream::reg::FIFOS, 2),
    (stream::reg::FMT, 2),
    (stream::reg::BDPL, 4),
    (stream::reg::BDPU, 4),
];

pub const STREAM_COUNT: usize = 8;
/// Descriptors 0..4 capture, 4..8 playback.
const FIRST_OUTPUT: usize = 4;
const STREAM_STRIDE: u64 = 0x20;
/// 4 playback and 4 capture streams, one SDO, 64-bit addressing.
const GCAP: u32 = 0x4401;
const GCTL_CRST: u32 = 1 << 0;
const GCTL_WRITABLE: u32 = 0x0000_0103;
const INTCTL_WRITABLE: u32 = 0xc000_00ff;
const INT_CIE: u32 = 1 << 30;
const INT_GIE: u32 = 1 << 31;
const ICS_BUSY: u32 = 1 << 0;
const ICS_VALID: u32 = 1 << 1;
/// The one codec's address.
const CODEC_MASK: u16 = 1;
/// WALCLK ticks per second.
const WALL_CLOCK_HZ: u128 = 24_000_000;

/// Which register holds byte `offset`: (its offset, its width).
fn register_at(offset: u64) -> Option<(u64, u64)> {
    let end = reg::STREAMS + STREAM_STRIDE * STREAM_COUNT as u64;
    let (base, rel, table) = if (reg::STREAMS..end).contains(&offset) {
        let start = offset - (offset - reg::STREAMS) % STREAM_STRIDE;
        (start, offset - start, STREAM_REGS)
    } else {
        (0, offset, GLOBAL_REGS)
    };
    table
        .iter()
        .find(|(at, width)| (*at..at + width).contains(&rel))
        .map(|&(at, width)| (base + at, width))
}

/// The controller's state.
pub struct Controller {
    memory: GuestMemory,
    backend: Arc<dyn AudioBackend>,
    pub codec: Codec,
    pub streams: Vec<Stream>,
    rings: Rings,
    gctl: u32,
    wakeen: u16,
    statests: u16,
    intctl: u32,
    ssync: u32,
    ic: u32,
    ir: u32,
    ics: u32,
    dp_base: u64,
    /// WALCLK counts from here.
    epoch: Instant,
    /// What the backend was told runs, per direction (output, input).
    active: [Option<PcmFormat>; 2],
    log: RateLimit,
    /// A stream was started (the pump should look).
    pub started: bool,
    /// The driver acknowledged a response while verbs wait in the CORB:
    /// they run after the card has shown the acknowledgement
    /// ([`Controller::run_waiting_commands`]), so that their response is
    /// a new interrupt, not the old one still pending.
    commands_waiting: bool,
}

impl Controller {
    pub fn new(memory: GuestMemory, backend: Arc<dyn AudioBackend>) -> Controller {
        Controller {
            memory,
            backend,
            codec: Codec::default(),
            streams: (0..STREAM_COUNT).map(Stream::new).collect(),
            rings: Rings::default(),
            gctl: 0,
            wakeen: 0,
            statests: 0,
            intctl: 0,
            ssync: 0,
            ic: 0,
            ir: 0,
            ics: 0,
            dp_base: 0,
            epoch: Instant::now(),
            active: [None, None],
            log: RateLimit::default(),
            started: false,
            commands_waiting: false,
        }
    }

    /// A guest read of `data.len()` bytes at `offset`.
    pub fn read(&mut self, offset: u64, data: &mut [u8], now: Instant) {
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            *byte = match register_at(at) {
                Some((base, _)) => (self.read_register(base, now) >> (8 * (at - base))) as u8,
                None => 0,
            };
        }
    }

    /// A guest write of `data` at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8], now: Instant) {
        // Gather the bytes per register, then write each register once
        // (an access is at most 8 bytes).
        let mut writes = [(0u64, 0u32, 0u32); 8];
        let mut count = 0;
        for (i, &byte) in data.iter().take(8).enumerate() {
            let at = offset + i as u64;
            let Some((base, _)) = register_at(at) else {
                continue;
            };
            let lane = (at - base) as u32;
            match writes[..count].iter_mut().find(|w| w.0 == base) {
                Some(w) => {
                    w.1 |= u32::from(byte) << (8 * lane);
                    w.2 |= 1 << lane;
                }
                None => {
                    writes[count] = (base, u32::from(byte) << (8 * lane), 1 << lane);
                    count += 1;
                }
            }
        }
        for &(base, value, bytes) in &writes[..count] {
            self.write_register(base, value, bytes, now);
        }
    }

    fn read_register(&self, base: u64, now: Instant) -> u32 {
        if base >= reg::STREAMS {
            let (n, rel) = stream_of(base);
            return self.streams[n].read(rel).unwrap_or(0);
        }
        let r = &self.rings;
        match base {
            reg::GCAP => GCAP,
            reg::VMAJ => 1,
            reg::OUTPAY => 0x3c,
            reg::INPAY => 0x1d,
            reg::GCTL => self.gctl,
            reg::WAKEEN => u32::from(self.wakeen),
            reg::STATESTS => u32::from(self.statests),
            reg::INTCTL => self.intctl,
            reg::INTSTS => self.intsts(),
            reg::WALCLK => self.wall_clock(now),
            reg::SSYNC | reg::SSYNC_NEW => self.ssync,
            reg::CORBLBASE => r.corb_base as u32,
            reg::CORBUBASE => (r.corb_base >> 32) as u32,
            reg::CORBWP => u32::from(r.corb_wp),
            reg::CORBRP => u32::from(r.corb_rp),
            reg::CORBCTL => u32::from(r.corb_ctl),
            reg::CORBSTS => u32::from(r.corb_sts),
            reg::CORBSIZE | reg::RIRBSIZE => u32::from(corb::SIZE_256),
            reg::RIRBLBASE => r.rirb_base as u32,
            reg::RIRBUBASE => (r.rirb_base >> 32) as u32,
            reg::RIRBWP => u32::from(r.rirb_wp),
            reg::RINTCNT => u32::from(r.rintcnt),
            reg::RIRBCTL => u32::from(r.rirb_ctl),
            reg::RIRBSTS => u32::from(r.rirb_sts),
            reg::IC => self.ic,
            reg::IR => self.ir,
            reg::ICS => self.ics,
            reg::DPLBASE => self.dp_base as u32,
            reg::DPUBASE => (self.dp_base >> 32) as u32,
            _ => 0,
        }
    }

    fn write_register(&mut self, base: u64, value: u32, bytes: u32, now: Instant) {
        let mask = byte_mask(bytes);
        let merge =
            |old: u32, writable: u32| (old & !(mask & writable)) | (value & mask & writable);
        if base >= reg::STREAMS {
            self.write_stream(base, value, bytes, now);
            return;
        }
        let low =
            |old: u64, writable: u32| (old & !0xffff_ffff) | u64::from(merge(old as u32, writable));
        let high =
            |old: u64| (old & 0xffff_ffff) | u64::from(merge((old >> 32) as u32, u32::MAX)) << 32;
        match base {
            reg::GCTL => self.write_gctl(merge(self.gctl, GCTL_WRITABLE)),
            reg::WAKEEN => self.wakeen = merge(u32::from(self.wakeen), 0x7fff) as u16,
            reg::STATESTS => self.statests &= !(value & mask) as u16,
            reg::INTCTL => self.intctl = merge(self.intctl, INTCTL_WRITABLE),
            reg::SSYNC | reg::SSYNC_NEW => self.ssync = merge(self.ssync, 0xff),
            reg::CORBLBASE => self.rings.corb_base = low(self.rings.corb_base, 0xffff_ff80),
            reg::CORBUBASE => self.rings.corb_base = high(self.rings.corb_base),
            reg::CORBWP => {
                self.rings.corb_wp = merge(u32::from(self.rings.corb_wp), 0xff) as u16;
                self.run_commands();
            }
            reg::CORBRP if mask & 0xff00 != 0 => {
                self.rings.corb_rp = if value & u32::from(corb::POINTER_RESET) != 0 {
                    corb::POINTER_RESET
                } else {
                    self.rings.corb_rp & 0xff
                };
            }
            reg::CORBCTL => {
                self.rings.corb_ctl = merge(u32::from(self.rings.corb_ctl), 0x03) as u8;
                self.run_commands();
            }
            reg::CORBSTS => self.rings.corb_sts &= !(value as u8 & corb::CORBSTS_CMEI),
            reg::RIRBLBASE => self.rings.rirb_base = low(self.rings.rirb_base, 0xffff_ff80),
            reg::RIRBUBASE => self.rings.rirb_base = high(self.rings.rirb_base),
            reg::RIRBWP if value & u32::from(corb::POINTER_RESET) != 0 => self.rings.rirb_wp = 0,
            reg::RINTCNT => self.rings.rintcnt = merge(u32::from(self.rings.rintcnt), 0xff) as u16,
            reg::RIRBCTL => {
                self.rings.rirb_ctl = merge(u32::from(self.rings.rirb_ctl), 0x07) as u8;
                self.run_commands();
            }
            reg::RIRBSTS => {
                self.rings.acknowledge(value as u8);
                self.commands_waiting = true;
            }
            reg::IC => self.ic = merge(self.ic, u32::MAX),
            reg::ICS => self.write_ics(value & mask),
            reg::DPLBASE => self.dp_base = low(self.dp_base, 0xffff_ff81),
            reg::DPUBASE => self.dp_base = high(self.dp_base),
            _ => {}
        }
    }

    fn write_gctl(&mut self, gctl: u32) {
        if gctl & GCTL_CRST == 0 {
            self.reset();
        } else {
            self.gctl = gctl;
        }
    }

    /// Controller reset: every register to its reset value, streams
    /// stopped, the codec reset and announcing itself in STATESTS.
    pub fn reset(&mut self) {
        for s in &mut self.streams {
            s.reset();
        }
        self.rings = Rings::default();
        self.codec = Codec::default();
        self.gctl = 0;
        self.wakeen = 0;
        self.statests = CODEC_MASK;
        self.intctl = 0;
        self.ssync = 0;
        self.ic = 0;
        self.ir = 0;
        self.ics = 0;
        self.dp_base = 0;
        self.epoch = Instant::now();
        self.update_active();
        self.send_volume(Direction::Output);
        self.send_volume(Direction::Input);
    }

    fn write_ics(&mut self, value: u32) {
        if value & ICS_VALID != 0 {
            self.ics &= !ICS_VALID;
        }
        if value & ICS_BUSY != 0 {
            if let Some(response) = self.command(self.ic) {
                self.ir = response;
                self.ics |= ICS_VALID;
            }
        }
    }

    fn write_stream(&mut self, base: u64, value: u32, bytes: u32, now: Instant) {
        let (n, rel) = stream_of(base);
        let change = self.streams[n].write(rel, value, bytes, &self.memory, now);
        if change != Change::None {
            self.started |= change == Change::Started;
            self.update_active();
        }
    }

    /// Runs the verbs that waited for an acknowledgement; whether there
    /// were any to look at (the interrupt state may have changed).
    pub fn run_waiting_commands(&mut self) -> bool {
        if !std::mem::take(&mut self.commands_waiting) {
            return false;
        }
        self.run_commands();
        true
    }

    fn run_commands(&mut self) {
        let mut rings = std::mem::take(&mut self.rings);
        rings.run(&self.memory.clone(), &mut |verb| self.command(verb));
        self.rings = rings;
    }

    /// One verb for the codec at its address; `None` when no codec
    /// answers (there is one, at address 0).
    fn command(&mut self, verb: u32) -> Option<u32> {
        if verb >> 28 != 0 {
            return None;
        }
        let (response, effect) = self.codec.verb(verb & 0x0fff_ffff);
        match effect {
            Effect::None => {}
            Effect::Stream(_) => self.update_active(),
            Effect::Volume(direction) => self.send_volume(direction),
            Effect::Reset => {
                self.update_active();
                self.send_volume(Direction::Output);
                self.send_volume(Direction::Input);
            }
        }
        Some(response)
    }

    fn send_volume(&self, direction: Direction) {
        let volume = self.codec.converter(direction).volume();
        self.backend.volume(direction, volume);
    }

    /// The running descriptor that feeds (or is fed by) the codec's
    /// converter of `direction`, if any.
    fn bound_stream(&self, direction: Direction) -> Option<usize> {
        let tag = self.codec.converter(direction).stream;
        let range = match direction {
            Direction::Output => FIRST_OUTPUT..STREAM_COUNT,
            Direction::Input => 0..FIRST_OUTPUT,
        };
        range
            .into_iter()
            .find(|&n| tag != 0 && self.streams[n].running() && self.streams[n].tag() == tag)
    }

    /// Tells the backend which streams run now.
    fn update_active(&mut self) {
        for (i, direction) in [Direction::Output, Direction::Input]
            .into_iter()
            .enumerate()
        {
            let now = self
                .bound_stream(direction)
                .and_then(|n| self.streams[n].format().pcm);
            if now == self.active[i] {
                continue;
            }
            if self.active[i].is_some() {
                self.backend.stopped(direction);
            }
            if let Some(format) = now {
                self.backend.started(direction, format);
                self.send_volume(direction);
            }
            self.active[i] = now;
        }
    }

    /// Whether a stream runs (the pump keeps ticking).
    pub fn running(&self) -> bool {
        self.streams.iter().any(Stream::running)
    }

    /// Moves the audio due by `now` for every running stream.
    pub fn tick(&mut self, now: Instant) {
        let bound = [
            self.bound_stream(Direction::Output),
            self.bound_stream(Direction::Input),
        ];
        for n in 0..STREAM_COUNT {
            let bytes = self.streams[n].due(now);
            if bytes == 0 {
                continue;
            }
            let capture = n < FIRST_OUTPUT;
            let to_backend = bound[usize::from(capture)] == Some(n);
            let backend = self.backend.clone();
            let mut io = |piece: &mut [u8]| match (capture, to_backend) {
                (false, true) => backend.output(piece),
                (true, true) => {
                    let got = backend.input(piece).min(piece.len());
                    piece[got..].fill(0);
                }
                (true, false) => piece.fill(0),
                (false, false) => {}
            };
            if let Err(e) = self.streams[n].transfer(&self.memory, bytes, capture, &mut io) {
                if let Some(dropped) = self.log.allow() {
                    tracing::warn!(
                        "HDA: stream {n} stopped moving data: {e} ({dropped} more not logged)"
                    );
                }
            }
            self.write_position(n);
        }
    }

    /// The DMA position buffer: each stream's LPIB, 8 bytes apart.
    fn write_position(&self, n: usize) {
        if self.dp_base & 1 == 0 {
            return;
        }
        let at = (self.dp_base & !0x7f).wrapping_add(8 * n as u64);
        let lpib = self.streams[n].lpib.to_le_bytes();
        let _ = self.memory.write_slice(&lpib, GuestAddress(at));
    }

    fn intsts(&self) -> u32 {
        let mut sis = 0;
        for (n, s) in self.streams.iter().enumerate() {
            if s.interrupting() {
                sis |= 1 << n;
            }
        }
        let cis = self.rings.interrupting() || self.statests & self.wakeen != 0;
        let mut status = sis | if cis { INT_CIE } else { 0 };
        if status != 0 {
            status |= INT_GIE;
        }
        status
    }

    /// The interrupt sources that are pending and enabled (INTSTS bits;
    /// none while interrupts are off globally). The card interrupts while
    /// any is.
    pub fn pending_sources(&self) -> u32 {
        if self.intctl & INT_GIE == 0 {
            return 0;
        }
        self.intsts() & self.intctl & (INT_CIE | 0xff)
    }

    fn wall_clock(&self, now: Instant) -> u32 {
        (now.saturating_duration_since(self.epoch).as_nanos() * WALL_CLOCK_HZ / 1_000_000_000)
            as u32
    }
}

/// The stream index and register offset of a stream register's address.
fn stream_of(base: u64) -> (usize, u64) {
    let rel = base - reg::STREAMS;
    (
        ((rel / STREAM_STRIDE) as usize).min(STREAM_COUNT - 1),
        rel % STREAM_STRIDE,
    )
}
