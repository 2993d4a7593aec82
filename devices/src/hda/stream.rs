//! A stream descriptor (docs/hda.md §2.2, §4): its registers, the buffer
//! descriptor list (BDL) it walks while it runs, and its pace.
//!
//! The BDL is read once when the stream starts (as QEMU does), at most 256
//! entries. Each transfer is bounded: at most [`MAX_BACKLOG`] of audio,
//! and a run of empty entries ends it. An entry outside guest RAM, an empty
//! list or a zero buffer length is a descriptor error: the stream stops
//! moving data (DESE), the VM goes on.

use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};

use crate::audio::PcmFormat;
use crate::virtio::GuestMemory;

/// Register offsets within a descriptor.
pub mod reg {
    pub const CTL: u64 = 0x00;
    pub const STS: u64 = 0x03;
    pub const LPIB: u64 = 0x04;
    pub const CBL: u64 = 0x08;
    pub const LVI: u64 = 0x0c;
    pub const FIFOW: u64 = 0x0e;
    pub const FIFOS: u64 = 0x10;
    pub const FMT: u64 = 0x12;
    pub const BDPL: u64 = 0x18;
    pub const BDPU: u64 = 0x1c;
}

pub const CTL_SRST: u32 = 1 << 0;
pub const CTL_RUN: u32 = 1 << 1;
pub const CTL_IOCE: u32 = 1 << 2;
pub const CTL_FEIE: u32 = 1 << 3;
pub const CTL_DEIE: u32 = 1 << 4;
const CTL_WRITABLE: u32 = 0x00ff_001f;
pub const STS_BCIS: u8 = 1 << 2;
pub const STS_FIFOE: u8 = 1 << 3;
pub const STS_DESE: u8 = 1 << 4;
pub const STS_FIFORDY: u8 = 1 << 5;
const STS_W1C: u8 = STS_BCIS | STS_FIFOE | STS_DESE;
const FIFO_SIZE: u16 = 0x100;
const MAX_BDL_ENTRIES: usize = 256;
/// The most audio one transfer catches up on; a stream that fell further
/// behind (the host was stalled) skips the rest.
pub const MAX_BACKLOG: Duration = Duration::from_millis(100);
/// Bytes moved through the bounce buffer at a time.
const CHUNK: usize = 4096;
/// Steps (pieces of entries) one transfer takes at most: a list of tiny
/// entries plays slowly rather than keeping the card busy.
const MAX_STEPS: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BdlEntry {
    address: u64,
    length: u32,
    ioc: bool,
}

/// Why a stream stopped moving data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DmaError {
    #[error("its buffer descriptor list at {0:#x} is outside guest RAM")]
    ListOutsideRam(u64),
    #[error("its buffer descriptor list has no data (length {cbl}, entries of 0 bytes)")]
    Empty { cbl: u32 },
    #[error("buffer {address:#x}+{length} is outside guest RAM")]
    BufferOutsideRam { address: u64, length: usize },
    #[error("its format {0:#06x} is not one the codec offers (16-bit PCM, 1 or 2 channels, up to 48 kHz)")]
    Format(u16),
}

/// What a stream's format word means for pacing and for the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFormat {
    pub bytes_per_second: u64,
    pub frame_bytes: usize,
    /// The format, when it is one the backend takes (16-bit PCM).
    pub pcm: Option<PcmFormat>,
    /// Within what the codec offers (16-bit PCM, 1 or 2 channels, at most
    /// 48 kHz); streams of other formats are refused.
    pub supported: bool,
}

impl StreamFormat {
    pub fn parse(word: u16) -> StreamFormat {
        let base = if word & (1 << 14) != 0 {
            44_100
        } else {
            48_000
        };
        let mult = u32::from((word >> 11) & 0x7) + 1;
        let div = u32::from((word >> 8) & 0x7) + 1;
        let rate = base * mult.min(4) / div;
        let sample_bytes = match (word >> 4) & 0x7 {
            0 => 1,
            1 => 2,
            _ => 4,
        };
        let channels = (word & 0xf) as u8 + 1;
        let frame_bytes = sample_bytes * usize::from(channels);
        let pcm =
            (word & (1 << 15) == 0 && sample_bytes == 2).then_some(PcmFormat { rate, channels });
        StreamFormat {
            bytes_per_second: u64::from(rate) * frame_bytes as u64,
            frame_bytes,
            pcm,
            supported: pcm.is_some() && channels <= 2 && rate <= 48_000,
        }
    }
}

/// One stream descriptor.
#[derive(Debug, Clone)]
pub struct Stream {
    /// 0..3 capture, 4..7 playback.
    pub index: usize,
    pub ctl: u32,
    pub sts: u8,
    pub lpib: u32,
    pub cbl: u32,
    pub lvi: u16,
    pub fifow: u16,
    pub fmt: u16,
    pub bdpl: u32,
    pub bdpu: u32,
    bdl: Vec<BdlEntry>,
    entry: usize,
    entry_offset: u32,
    /// When it started running, and the bytes moved since.
    started: Option<Instant>,
    moved: u64,
    /// Set by a descriptor error until the stream is started again.
    failed: bool,
}

/// What a register write did to the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    Started,
    Stopped,
}

impl Stream {
    pub fn new(index: usize) -> Stream {
        Stream {
            index,
            ctl: 0,
            sts: STS_FIFORDY,
            lpib: 0,
            cbl: 0,
            lvi: 0,
            fifow: 0,
            fmt: 0,
            bdpl: 0,
            bdpu: 0,
            bdl: Vec::new(),
            entry: 0,
            entry_offset: 0,
            started: None,
            moved: 0,
            failed: false,
        }
    }

    pub fn running(&self) -> bool {
        self.ctl & CTL_RUN != 0 && self.ctl & CTL_SRST == 0
    }

    /// The stream tag (1..15; 0 = none).
    pub fn tag(&self) -> u8 {
        ((self.ctl >> 20) & 0xf) as u8
    }

    pub fn format(&self) -> StreamFormat {
        StreamFormat::parse(self.fmt)
    }

    /// Whether it raises its interrupt status bit (SIS) now.
    pub fn interrupting(&self) -> bool {
        (self.sts & STS_BCIS != 0 && self.ctl & CTL_IOCE != 0)
            || (self.sts & STS_FIFOE != 0 && self.ctl & CTL_FEIE != 0)
            || (self.sts & STS_DESE != 0 && self.ctl & CTL_DEIE != 0)
    }

    /// A register's value (offsets as in [`reg`]); `None` for a hole.
    pub fn read(&self, offset: u64) -> Option<u32> {
        Some(match offset {
            reg::CTL => self.ctl,
            reg::STS => u32::from(self.sts),
            reg::LPIB => self.lpib,
            reg::CBL => self.cbl,
            reg::LVI => u32::from(self.lvi),
            reg::FIFOW => u32::from(self.fifow),
            reg::FIFOS => u32::from(FIFO_SIZE),
            reg::FMT => u32::from(self.fmt),
            reg::BDPL => self.bdpl,
            reg::BDPU => self.bdpu,
            _ => return None,
        })
    }

    /// A guest write of `value` to the bytes of register `offset` selected
    /// by `bytes` (bit n = byte n of the register).
    pub fn write(
        &mut self,
        offset: u64,
        value: u32,
        bytes: u32,
        memory: &GuestMemory,
        now: Instant,
    ) -> Change {
        let merged = |old: u32, writable: u32| {
            let mask = byte_mask(bytes) & writable;
            (old & !mask) | (value & mask)
        };
        match offset {
            reg::CTL => return self.write_ctl(merged(self.ctl, CTL_WRITABLE), memory, now),
            reg::STS => self.sts &= !(value as u8 & STS_W1C),
            reg::CBL => self.cbl = merged(self.cbl, u32::MAX),
            reg::LVI => self.lvi = merged(u32::from(self.lvi), 0xff) as u16,
            reg::FIFOW => self.fifow = merged(u32::from(self.fifow), 0x7) as u16,
            reg::FMT => self.fmt = merged(u32::from(self.fmt), 0x7f7f) as u16,
            reg::BDPL => self.bdpl = merged(self.bdpl, 0xffff_ff80),
            reg::BDPU => self.bdpu = merged(self.bdpu, u32::MAX),
            _ => {}
        }
        Change::None
    }

    fn write_ctl(&mut self, ctl: u32, memory: &GuestMemory, now: Instant) -> Change {
        let was_running = self.running();
        if ctl & CTL_SRST != 0 {
            self.reset();
            self.ctl = CTL_SRST;
            return if was_running {
                Change::Stopped
            } else {
                Change::None
            };
        }
        self.ctl = ctl;
        match (was_running, self.running()) {
            (false, true) => {
                self.start(memory, now);
                Change::Started
            }
            (true, false) => {
                self.started = None;
                Change::Stopped
            }
            _ => Change::None,
        }
    }

    /// Stream reset (SRST, or the controller's reset).
    pub fn reset(&mut self) {
        *self = Stream::new(self.index);
    }

    fn start(&mut self, memory: &GuestMemory, now: Instant) {
        self.lpib = 0;
        self.entry = 0;
        self.entry_offset = 0;
        self.started = Some(now);
        self.moved = 0;
        self.failed = false;
        self.bdl.clear();
        let base = u64::from(self.bdpu) << 32 | u64::from(self.bdpl);
        let count = (usize::from(self.lvi) + 1).min(MAX_BDL_ENTRIES);
        let mut raw = [0u8; 16];
        for i in 0..count {
            let at = base.wrapping_add(16 * i as u64);
            if memory.read_slice(&mut raw, GuestAddress(at)).is_err() {
                self.bdl.clear();
                break;
            }
            self.bdl.push(BdlEntry {
                address: u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default()),
                length: u32::from_le_bytes(raw[8..12].try_into().unwrap_or_default()),
                ioc: raw[12] & 1 != 0,
            });
        }
    }

    /// Bytes due since the stream started and not moved yet (whole
    /// frames), at most [`MAX_BACKLOG`] of them.
    pub fn due(&mut self, now: Instant) -> usize {
        let Some(started) = self.started.filter(|_| !self.failed) else {
            return 0;
        };
        let format = self.format();
        let frame = format.frame_bytes as u64;
        let elapsed = now.saturating_duration_since(started).as_nanos();
        let due = (elapsed * u128::from(format.bytes_per_second) / 1_000_000_000) as u64;
        let due = due / frame * frame;
        let max = (MAX_BACKLOG.as_millis() as u64 * format.bytes_per_second / 1000) / frame * frame;
        if due.saturating_sub(self.moved) > max {
            self.moved = due - max; // skip what the host missed
        }
        (due - self.moved.min(due)) as usize
    }

    /// Moves `bytes` between the guest's buffers and `io`: for playback
    /// `io` gets what the guest wrote, for capture it fills what the guest
    /// will read. Returns whether an entry with IOC was completed.
    pub fn transfer(
        &mut self,
        memory: &GuestMemory,
        bytes: usize,
        capture: bool,
        io: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, DmaError> {
        if self.failed {
            return Ok(false);
        }
        let result = self.walk(memory, bytes, capture, io);
        self.moved += bytes as u64;
        if result.is_err() {
            self.failed = true;
            self.sts |= STS_DESE;
        }
        result
    }

    fn walk(
        &mut self,
        memory: &GuestMemory,
        bytes: usize,
        capture: bool,
        io: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, DmaError> {
        if self.bdl.is_empty() {
            let base = u64::from(self.bdpu) << 32 | u64::from(self.bdpl);
            return Err(DmaError::ListOutsideRam(base));
        }
        if !self.format().supported {
            return Err(DmaError::Format(self.fmt));
        }
        let mut buf = [0u8; CHUNK];
        let mut left = bytes;
        let mut ioc = false;
        let mut empty_steps = 0;
        let mut steps = 0;
        while left > 0 && steps < MAX_STEPS {
            steps += 1;
            let entry = self.bdl[self.entry];
            let in_entry = entry.length.saturating_sub(self.entry_offset) as usize;
            let in_buffer = self.cbl.saturating_sub(self.lpib) as usize;
            let n = left.min(in_entry).min(in_buffer).min(CHUNK);
            if n == 0 {
                empty_steps += 1;
                if empty_steps > self.bdl.len() {
                    return Err(DmaError::Empty { cbl: self.cbl });
                }
            } else {
                empty_steps = 0;
                let address = entry.address.wrapping_add(u64::from(self.entry_offset));
                let piece = &mut buf[..n];
                let outside = || DmaError::BufferOutsideRam { address, length: n };
                if capture {
                    io(piece);
                    memory
                        .write_slice(piece, GuestAddress(address))
                        .map_err(|_| outside())?;
                } else {
                    memory
                        .read_slice(piece, GuestAddress(address))
                        .map_err(|_| outside())?;
                    io(piece);
                }
                left -= n;
                self.lpib += n as u32;
                self.entry_offset += n as u32;
            }
            if self.entry_offset >= entry.length {
                ioc |= entry.ioc && entry.length > 0;
                self.next_entry();
            }
            if self.lpib >= self.cbl {
                self.lpib = 0;
                self.entry = 0;
                self.entry_offset = 0;
            }
        }
        if ioc {
            self.sts |= STS_BCIS;
        }
        Ok(ioc)
    }

    fn next_entry(&mut self) {
        self.entry_offset = 0;
        self.entry += 1;
        if self.entry >= self.bdl.len() {
            self.entry = 0;
            self.lpib = 0;
        }
    }
}

/// The bits of a register selected by byte-enable bits.
pub fn byte_mask(bytes: u32) -> u32 {
    (0..4)
        .filter(|b| bytes & (1 << b) != 0)
        .fold(0, |m, b| m | 0xff << (8 * b))
}
