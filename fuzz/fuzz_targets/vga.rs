//! The VGA and its VBE extension from a hostile guest: any port access of
//! any size (sequencer, graphics, attribute and CRT controller registers,
//! the DAC, VBE's index and data), bytes written anywhere in the legacy
//! window and the framebuffer, the native driver taking and giving back
//! the screen, and refreshes with any dirty-page log. Nothing may panic,
//! whatever mode, pitch, offset or resolution the registers describe.
#![no_main]

use std::time::{Duration, Instant};

use devices::display::{Display, ScanoutSwitch};
use devices::vga::{vbe, Dirty, Vga, VgaMemory, WINDOW_SIZE};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, VolatileMemory};

/// The smallest VBE memory, so modes easily reach past its end.
const VBE_SIZE: usize = 1 << 20;
/// Refreshes per input: each may draw a whole screen, and a few cover the
/// mode changes between them.
const MAX_REFRESHES: usize = 3;

/// The ports a guest reaches: VGA's 0x3b0-0x3df and VBE's.
fn port(selector: u8) -> u16 {
    match selector % 8 {
        0 => vbe::INDEX_PORT,
        1 | 2 => vbe::DATA_PORT,
        _ => 0x3b0 + u16::from(selector % 0x30),
    }
}

fuzz_target!(|data: &[u8]| {
    let window = devices::memory::allocate(WINDOW_SIZE).unwrap();
    let framebuffer = devices::memory::allocate(VBE_SIZE).unwrap();
    let display = Display::new();
    let switch = ScanoutSwitch::new();
    let memory = VgaMemory {
        window: window.clone(),
        framebuffer: framebuffer.clone(),
        vbe_size: VBE_SIZE,
    };
    let mut vga = Vga::new(memory, display, switch.clone()).unwrap();
    if data.first().is_some_and(|b| b & 1 != 0) {
        vga.preset_text_mode();
    }
    let mut now = Instant::now();
    let mut pages = vec![0u64; VBE_SIZE / 4096 / 64];
    let mut refreshes = 0;
    for op in data.chunks_exact(6).take(1000) {
        let value = [op[2], op[3], op[4], op[5]];
        match op[0] % 10 {
            0..=3 => {
                let size = [1, 2][usize::from(op[0] / 10 % 2)];
                vga.io_write(port(op[1]), &value[..size]);
            }
            4 => {
                let mut buf = [0u8; 2];
                let size = [1, 2][usize::from(op[0] / 10 % 2)];
                vga.io_read(port(op[1]), &mut buf[..size]);
            }
            5 => {
                let at = usize::from(u16::from_le_bytes([op[1], op[2]])) * 2 % WINDOW_SIZE;
                let _ = window.as_volatile_slice().write_slice(&value[..2], at);
            }
            6 => {
                let at = u32::from_le_bytes([op[1], op[2], op[3], 0]) as usize % VBE_SIZE;
                let _ = framebuffer.as_volatile_slice().write_slice(&value[2..], at);
            }
            7 => {
                let page = usize::from(op[1]) % (pages.len() * 64);
                pages[page / 64] |= 1 << (page % 64);
            }
            8 => match op[1] % 3 {
                0 => switch.enter_native(),
                1 => switch.leave_native(),
                _ => vga.reset(),
            },
            _ if refreshes < MAX_REFRESHES => {
                refreshes += 1;
                now += Duration::from_millis(u64::from(op[1]) * 8);
                let _ = vga.scanned_region();
                let dirty = match op[2] % 3 {
                    0 => Dirty::Clean,
                    1 => Dirty::All,
                    _ => Dirty::Pages(&pages),
                };
                vga.refresh(dirty, now);
                pages.fill(0);
            }
            _ => {}
        }
    }
});
