//! The card driven the way Linux's snd-hda-intel drives it: reset, the
//! command rings, a playback and a capture stream; and driven badly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::audio::{Direction, PcmFormat, Volume};
use crate::pci::PciDevice;

const RAM: u64 = 1 << 20;
const CORB: u64 = 0x1000;
const RIRB: u64 = 0x1800;
const POSBUF: u64 = 0x2000;
const BDL: u64 = 0x3000;
const BUFFER: u64 = 0x10000;

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    played: Mutex<Vec<u8>>,
}

impl AudioBackend for Recorder {
    fn started(&self, d: Direction, f: PcmFormat) {
        self.events
            .lock()
            .unwrap()
            .push(format!("start {d:?} {f:?}"));
    }
    fn stopped(&self, d: Direction) {
        self.events.lock().unwrap().push(format!("stop {d:?}"));
    }
    fn output(&self, pcm: &[u8]) {
        self.played.lock().unwrap().extend_from_slice(pcm);
    }
    fn input(&self, buf: &mut [u8]) -> usize {
        let n = buf.len() / 2;
        buf[..n].fill(0x5a);
        n
    }
    fn volume(&self, d: Direction, v: Volume) {
        self.events
            .lock()
            .unwrap()
            .push(format!("volume {d:?} {v:?}"));
    }
}

#[derive(Default)]
struct Line(AtomicBool);

/// The MSIs the card sent.
#[derive(Default)]
struct Messages(Mutex<Vec<(u64, u32)>>);

impl MsiDelivery for Messages {
    fn deliver(&self, address: u64, data: u32) {
        self.0.lock().unwrap().push((address, data));
    }
}

impl LevelInterrupt for Line {
    fn set_level(&self, asserted: bool) {
        self.0.store(asserted, Ordering::SeqCst);
    }
}

struct Card {
    hda: Hda,
    memory: GuestMemory,
    backend: Arc<Recorder>,
    line: Arc<Line>,
    messages: Arc<Messages>,
    corb_wp: u16,
    rirb_rp: u16,
}

impl Card {
    fn new() -> Card {
        let memory = GuestMemory::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let backend = Arc::new(Recorder::default());
        let line = Arc::new(Line::default());
        let messages = Arc::new(Messages::default());
        let interrupts = HdaInterrupts {
            line: line.clone(),
            gsi: 11,
            msi: messages.clone(),
        };
        let hda = Hda::new(memory.clone(), backend.clone(), interrupts).unwrap();
        Card {
            hda,
            memory,
            backend,
            line,
            messages,
            corb_wp: 0,
            rirb_rp: 0,
        }
    }

    fn w8(&mut self, at: u64, v: u8) {
        self.hda.write_bar(0, at, &[v]);
    }
    fn w16(&mut self, at: u64, v: u16) {
        self.hda.write_bar(0, at, &v.to_le_bytes());
    }
    fn w32(&mut self, at: u64, v: u32) {
        self.hda.write_bar(0, at, &v.to_le_bytes());
    }
    fn r8(&mut self, at: u64) -> u8 {
        let mut b = [0];
        self.hda.read_bar(0, at, &mut b);
        b[0]
    }
    fn r16(&mut self, at: u64) -> u16 {
        let mut b = [0; 2];
        self.hda.read_bar(0, at, &mut b);
        u16::from_le_bytes(b)
    }
    fn r32(&mut self, at: u64) -> u32 {
        let mut b = [0; 4];
        self.hda.read_bar(0, at, &mut b);
        u32::from_le_bytes(b)
    }

    /// Link reset and command rings, as snd_hdac_bus_init_chip does.
    fn init(&mut self) {
        self.w8(0x08, 0);
        assert_eq!(self.r32(0x08) & 1, 0);
        self.w8(0x08, 1);
        assert_eq!(self.r32(0x08) & 1, 1);
        assert_eq!(self.r16(0x0e), 1, "codec 0 announces itself");
        self.w16(0x0e, 0xff);
        assert_eq!(self.r16(0x00), 0x4401);
        self.w32(0x40, CORB as u32);
        self.w32(0x44, 0);
        self.w8(0x4e, 2);
        self.w16(0x48, 0);
        self.w16(0x4a, 0x8000);
        assert_eq!(self.r16(0x4a), 0x8000);
        self.w16(0x4a, 0);
        assert_eq!(self.r16(0x4a), 0);
        self.w8(0x4c, 2);
        self.w32(0x50, RIRB as u32);
        self.w32(0x54, 0);
        self.w16(0x58, 0x8000);
        self.w16(0x5a, 1);
        self.w8(0x5c, 3);
        self.w32(0x20, 0xc000_0000);
        self.w32(0x70, POSBUF as u32 | 1);
        // Each reset (at creation, then the link reset) told the backend
        // the codec's volumes.
        let events = self.events();
        assert_eq!(events.len(), 4, "{events:?}");
        assert!(events.iter().all(|e| e.starts_with("volume")), "{events:?}");
    }

    /// Sends one verb through the rings and returns its response.
    fn verb(&mut self, nid: u8, verb: u32) -> u32 {
        let cmd = u32::from(nid) << 20 | verb;
        self.corb_wp = (self.corb_wp + 1) % 256;
        let at = CORB + 4 * u64::from(self.corb_wp);
        self.memory.write_obj(cmd, GuestAddress(at)).unwrap();
        self.w16(0x48, self.corb_wp);
        assert!(self.line.0.load(Ordering::SeqCst), "response interrupt");
        assert_eq!(
            self.r32(0x24) & 0xc000_0000,
            0xc000_0000,
            "INTSTS: GIS, CIS"
        );
        assert_eq!(self.r16(0x58), (self.rirb_rp + 1) % 256);
        self.rirb_rp = (self.rirb_rp + 1) % 256;
        let at = RIRB + 8 * u64::from(self.rirb_rp);
        let response: u32 = self.memory.read_obj(GuestAddress(at)).unwrap();
        let extended: u32 = self.memory.read_obj(GuestAddress(at + 4)).unwrap();
        assert_eq!(extended, 0, "solicited, codec 0");
        self.w8(0x5d, 1);
        assert!(!self.line.0.load(Ordering::SeqCst), "acknowledged");
        response
    }

    /// Sets up descriptor `n` with one BDL of `entries` (length, IOC).
    fn stream(&mut self, n: u64, tag: u32, fmt: u16, entries: &[(u32, bool)]) {
        let sd = 0x80 + 0x20 * n;
        self.w8(sd, 1);
        assert_eq!(self.r8(sd) & 1, 1, "SRST reads back");
        self.w8(sd, 0);
        assert_eq!(self.r8(sd) & 1, 0);
        let mut at = BUFFER;
        for (i, &(len, ioc)) in entries.iter().enumerate() {
            let e = BDL + 16 * i as u64;
            self.memory.write_obj(at, GuestAddress(e)).unwrap();
            self.memory.write_obj(len, GuestAddress(e + 8)).unwrap();
            self.memory
                .write_obj(u32::from(ioc), GuestAddress(e + 12))
                .unwrap();
            at += u64::from(len);
        }
        self.w32(sd, tag << 20);
        self.w32(sd + 8, (at - BUFFER) as u32);
        self.w16(sd + 0x12, fmt);
        self.w16(sd + 0xc, entries.len() as u16 - 1);
        self.w32(sd + 0x18, BDL as u32);
        self.w32(sd + 0x1c, 0);
        assert_ne!(self.r16(sd + 0x10), 0, "FIFOS");
    }

    /// Sets stream `n` running and returns the instant the controller
    /// took as its start, so that ticks measured from it move exactly
    /// the bytes a test expects however slow the machine is.
    fn run(&mut self, n: u64) -> Instant {
        let sd = 0x80 + 0x20 * n;
        let intctl = self.r32(0x20);
        self.w32(0x20, intctl | 1 << n);
        let ctl = self.r8(sd);
        let start = Instant::now();
        self.hda.controller.write(sd, &[ctl | 0x1e], start);
        self.hda.update_line();
        assert_ne!(self.r8(sd + 3) & 0x20, 0, "FIFORDY");
        start
    }

    fn events(&self) -> Vec<String> {
        std::mem::take(&mut *self.backend.events.lock().unwrap())
    }
}

#[test]
fn probe_reads_the_codec_through_the_rings() {
    let mut card = Card::new();
    card.init();
    assert_eq!(card.verb(0, 0xf0000), 0x1af4_0022);
    assert_eq!(card.verb(1, 0xf0004), 0x0002_0004);
    assert_eq!(card.verb(3, 0xf1c00), 0x0000_4010);
    // The immediate command interface answers too.
    card.w32(0x60, 0x000f_0000);
    card.w16(0x68, 1);
    assert_eq!(card.r16(0x68) & 3, 2);
    assert_eq!(card.r32(0x64), 0x1af4_0022);
    // A verb to an absent codec gets no response (how Linux finds none).
    let wp = card.r16(0x58);
    let next = card.corb_wp + 1;
    card.memory
        .write_obj(
            0x1000_0000u32 | 0xf0000,
            GuestAddress(CORB + 4 * u64::from(next)),
        )
        .unwrap();
    card.w16(0x48, next);
    assert_eq!(card.r16(0x4a), next, "the verb was taken");
    assert_eq!(card.r16(0x58), wp, "and not answered");
}

#[test]
fn with_msi_each_new_event_sends_one_message_and_intx_stays_low() {
    let mut card = Card::new();
    card.init();
    // The capability list leads to MSI at 0x60, past ICH's own registers.
    assert_eq!(card.hda.read_config(0x34 / 4) & 0xff, 0x60);
    assert_eq!(
        card.hda.read_config(0x60 / 4) & 0x00ff_00ff,
        0x0080_0005,
        "MSI, 64-bit"
    );
    card.hda.write_config(0x64, &0xfee0_0000u32.to_le_bytes());
    card.hda.write_config(0x68, &0u32.to_le_bytes());
    card.hda.write_config(0x6c, &0x41u32.to_le_bytes());
    card.hda.write_config(0x62, &[1]);
    let verb = |card: &mut Card| {
        card.corb_wp = (card.corb_wp + 1) % 256;
        let at = CORB + 4 * u64::from(card.corb_wp);
        card.memory.write_obj(0xf0000u32, GuestAddress(at)).unwrap();
        card.w16(0x48, card.corb_wp);
        std::mem::take(&mut *card.messages.0.lock().unwrap())
    };
    assert_eq!(verb(&mut card), [(0xfee0_0000, 0x41)]);
    assert!(!card.line.0.load(Ordering::SeqCst), "no INTx with MSI");
    // Not acknowledged yet: the second verb waits (RINTCNT is 1), and runs
    // when the driver acknowledges the first response: a new event.
    assert_eq!(verb(&mut card), []);
    card.w8(0x5d, 1);
    assert_eq!(
        std::mem::take(&mut *card.messages.0.lock().unwrap()),
        [(0xfee0_0000, 0x41)]
    );
    card.w8(0x5d, 1);
    assert_eq!(card.r32(0x24), 0, "acknowledged");
    assert_eq!(verb(&mut card), [(0xfee0_0000, 0x41)]);
    // MSI off again: the pending response holds the INTx line.
    card.hda.write_config(0x62, &[0]);
    assert!(card.line.0.load(Ordering::SeqCst));
}

#[test]
fn registers_decode_bytes_at_any_offset() {
    let mut card = Card::new();
    card.init();
    // GCAP's high byte alone, and a dword spanning VMIN, VMAJ and OUTPAY.
    assert_eq!(card.r8(0x01), 0x44);
    assert_eq!(card.r32(0x00), 0x0100_4401);
    // The upper half of the BAR mirrors the registers.
    assert_eq!(card.r16(0x2000), 0x4401);
    // A dword write to SD4CTL also clears SD4STS bits (W1C).
    card.stream(4, 5, 0x0011, &[(4, true), (1916, true)]);
    let start = card.run(4);
    card.hda.tick(start + Duration::from_millis(30));
    assert_ne!(card.r8(0x100 + 3) & 0x04, 0, "BCIS");
    let ctl = card.r32(0x100);
    card.w32(0x100, ctl);
    assert_eq!(card.r8(0x100 + 3) & 0x04, 0);
    assert_ne!(card.r8(0x100 + 3) & 0x20, 0, "FIFORDY stays");
}

#[test]
fn playback_moves_real_time_audio_to_the_backend() {
    let mut card = Card::new();
    card.init();
    // 48 kHz stereo S16: 192 bytes per ms. Two periods of 960 bytes
    // (5 ms), the first with Linux's 4-byte leading entry.
    card.stream(4, 5, 0x0011, &[(4, true), (956, false), (960, true)]);
    for i in 0..1920u64 {
        card.memory
            .write_obj((i % 251) as u8, GuestAddress(BUFFER + i))
            .unwrap();
    }
    card.verb(2, 0x70650);
    card.verb(2, 0x20011);
    assert!(card.events().is_empty(), "not running yet");
    let start = card.run(4);
    assert_eq!(
        card.events(),
        [
            "start Output PcmFormat { rate: 48000, channels: 2 }",
            "volume Output Volume { left: 65535, right: 65535, mute: false }"
        ]
    );
    // A tick 7.5 ms in moves 1440 bytes: past the first period's end.
    card.hda.tick(start + Duration::from_micros(7500));
    assert_eq!(card.backend.played.lock().unwrap().len(), 1440);
    assert_eq!(card.r32(0x104), 1440, "LPIB");
    let pos: u32 = card.memory.read_obj(GuestAddress(POSBUF + 8 * 4)).unwrap();
    assert_eq!(pos, 1440, "position buffer");
    assert!(card.line.0.load(Ordering::SeqCst), "period interrupt");
    assert_eq!(card.r32(0x24) & (1 << 4), 1 << 4, "SIS 4");
    card.w8(0x103, 0x1c);
    assert!(!card.line.0.load(Ordering::SeqCst));
    // 10 ms in: the buffer wrapped; the bytes are the guest's, in order.
    card.hda
        .tick(start + Duration::from_millis(10) + Duration::from_micros(2500));
    let played = card.backend.played.lock().unwrap().clone();
    assert_eq!(played.len(), 2400);
    assert!(played
        .iter()
        .enumerate()
        .all(|(i, &b)| b == ((i % 1920) % 251) as u8));
    assert_eq!(card.r32(0x104), 480);
    // Muting both sides reaches the backend; stopping too.
    card.w8(0x103, 0x1c);
    card.verb(2, 0x3b0ca);
    assert_eq!(
        card.events(),
        ["volume Output Volume { left: 65535, right: 65535, mute: true }"]
    );
    card.w8(0x100, 0);
    assert_eq!(card.events(), ["stop Output"]);
    assert!(!card.hda.tick(start + Duration::from_millis(20)));
}

#[test]
fn capture_fills_the_guest_buffer_with_silence_after_the_backend() {
    let mut card = Card::new();
    card.init();
    card.stream(0, 1, 0x0011, &[(960, true), (960, true)]);
    card.verb(4, 0x70610);
    let start = card.run(0);
    assert_eq!(
        card.events()[0],
        "start Input PcmFormat { rate: 48000, channels: 2 }"
    );
    card.memory
        .write_slice(&[0xee; 960], GuestAddress(BUFFER))
        .unwrap();
    card.hda.tick(start + Duration::from_millis(5));
    let mut got = [0u8; 960];
    card.memory
        .read_slice(&mut got, GuestAddress(BUFFER))
        .unwrap();
    // The backend had half of the piece; the rest is silence.
    assert!(got[..480].iter().all(|&b| b == 0x5a));
    assert!(got[480..].iter().all(|&b| b == 0));
    assert_ne!(card.r8(0x83) & 0x04, 0, "BCIS");
}

#[test]
fn a_stream_not_bound_to_the_codec_still_runs_silently() {
    let mut card = Card::new();
    card.init();
    card.stream(5, 6, 0x0011, &[(960, true), (960, true)]);
    let start = card.run(5);
    card.hda.tick(start + Duration::from_millis(5));
    assert_eq!(card.r32(0x124), 960, "LPIB moves");
    assert!(card.backend.played.lock().unwrap().is_empty());
    assert!(card.events().is_empty());
}

#[test]
fn hostile_lists_stop_the_stream_not_the_vm() {
    let mut card = Card::new();
    card.init();
    let start = Instant::now();
    // A buffer outside RAM.
    card.stream(4, 5, 0x0011, &[(960, true)]);
    card.memory
        .write_obj(RAM + 4096, GuestAddress(BDL))
        .unwrap();
    card.run(4);
    card.hda.tick(start + Duration::from_millis(5));
    assert_ne!(card.r8(0x103) & 0x10, 0, "DESE");
    assert!(
        card.line.0.load(Ordering::SeqCst),
        "descriptor error interrupt"
    );
    // Only empty entries, then a list outside RAM: both bounded.
    card.stream(6, 7, 0x0011, &[(0, true), (0, true)]);
    card.w32(0x148, 0x1_0000);
    card.run(6);
    card.hda.tick(start + Duration::from_millis(50));
    assert_ne!(card.r8(0x143) & 0x10, 0, "DESE");
    card.stream(7, 8, 0x0011, &[(960, true)]);
    card.w32(0x160 + 0x18, 0xffff_ff80);
    card.w32(0x160 + 0x1c, 0xffff_ffff);
    card.w16(0x160 + 0xc, 255);
    card.run(7);
    card.hda.tick(start + Duration::from_millis(50));
    assert_ne!(card.r8(0x163) & 0x10, 0, "DESE");
    // Huge sizes: a cyclic buffer of 4 GiB in one 4 GiB entry is paced
    // like any other (a tick moves at most the backlog).
    card.stream(5, 6, 0x0011, &[(u32::MAX, true)]);
    card.w32(0x128, u32::MAX);
    card.run(5);
    card.hda.tick(start + Duration::from_secs(3600));
    assert_eq!(card.r32(0x124), 19200, "100 ms at most");
    // A format beyond the codec's offer (16 channels of 32 bits at 192
    // kHz): refused, not paced at 12 MB/s.
    card.stream(4, 5, 0x1b3f, &[(960, true)]);
    card.run(4);
    card.hda.tick(start + Duration::from_secs(7200));
    assert_ne!(card.r8(0x103) & 0x10, 0, "DESE");
    // 1-byte entries: one tick takes a bounded number of steps.
    let tiny: Vec<(u32, bool)> = (0..256).map(|_| (1, false)).collect();
    card.stream(4, 5, 0x0011, &tiny);
    card.run(4);
    card.hda.tick(start + Duration::from_secs(9000));
    assert_eq!(card.r8(0x103) & 0x10, 0);
    assert!(card.r32(0x104) < 256, "the list wraps, slowly");
    // Commands from a ring outside RAM: memory error, no response.
    card.w32(0x40, 0xffff_ff80);
    card.w32(0x44, 0xffff_ffff);
    card.w16(0x48, 9);
    assert_eq!(card.r8(0x4d), 1, "CMEI");
    assert_eq!(card.r8(0x4c) & 2, 0, "the ring stopped");
}
