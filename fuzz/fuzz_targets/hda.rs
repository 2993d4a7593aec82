//! The HDA sound card from a hostile guest driver: register accesses of
//! any size at any offset of its BAR (resets, command rings and stream
//! descriptors pointing anywhere, any formats and lengths), guest memory
//! written (CORB verbs, BDL entries), time passing and the pump moving
//! audio; and the record and playback channels' clients on the other
//! side of the audio hub. Nothing may panic, and what waits stays
//! bounded.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use devices::audio::AudioBackend;
use devices::hda::{Hda, HdaInterrupts};
use devices::interrupt::NoInterrupt;
use devices::pci::PciDevice;
use libfuzzer_sys::fuzz_target;
use saffron::spice::audio::{MAX_PLAYBACK_EVENTS, MAX_RECORD_EVENTS, PACKET_FRAMES, RECORD_RING};
use saffron::spice::AudioHub;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const RAM: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
    let hub = Arc::new(AudioHub::default());
    let interrupts = HdaInterrupts {
        line: Arc::new(NoInterrupt),
        gsi: 10,
        msi: Arc::new(NoInterrupt),
    };
    let mut hda = Hda::new(memory.clone(), hub.clone(), interrupts).unwrap();
    let start = Instant::now();
    let mut now = start;
    let mut ops = data.chunks_exact(8);
    for op in ops.by_ref().take(2000) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]])) % 0x4000;
        let value = [op[3], op[4], op[5], op[6]];
        match op[0] % 8 {
            0..=2 => {
                let size = [1, 2, 4][usize::from(op[7] % 3)];
                hda.write_bar(0, offset, &value[..size]);
            }
            3 => {
                let mut buf = [0u8; 8];
                let size = [1, 2, 4, 8][usize::from(op[7] % 4)];
                hda.read_bar(0, offset, &mut buf[..size]);
            }
            4 => {
                // Guest memory: verbs, BDL entries, anything.
                let at = (offset << 6) % RAM;
                let _ = memory.write_slice(&value, GuestAddress(at));
            }
            5 => {
                now += Duration::from_millis(u64::from(op[7]) * 4);
                hda.tick(now);
            }
            6 => {
                let n = usize::from(u16::from_le_bytes([op[1], op[2]])) % 20000;
                let format = devices::audio::PcmFormat {
                    rate: 48000,
                    channels: 2,
                };
                hub.recorded(format, &vec![op[3]; n & !3], 0);
            }
            _ => {
                let _ = hub.take_playback();
                let _ = hub.take_record();
            }
        }
    }
    hda.tick(now + Duration::from_secs(3600));
    let events = hub.take_playback();
    assert!(events.len() <= MAX_PLAYBACK_EVENTS + 3);
    assert!(hub.take_record().len() <= MAX_RECORD_EVENTS + 3);
    let queued: usize = events
        .iter()
        .map(|e| match e {
            saffron::spice::audio::PlaybackEvent::Data { pcm, .. } => pcm.len(),
            _ => 0,
        })
        .sum();
    assert!(queued <= 100 * PACKET_FRAMES * 64, "{queued} bytes queued");
    let mut buf = vec![0u8; RECORD_RING * 2];
    assert!(hub.input(&mut buf) <= RECORD_RING);
});
