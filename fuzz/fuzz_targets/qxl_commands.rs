//! QXL command processing fed by a hostile guest: the fuzz input becomes the
//! contents of the device's command memory and of surface memory, and a list
//! of ring entries (command type, ring, body offset) that are pushed and
//! processed; every few entries a random I/O port write (a monitors config is
//! read from the same memory). The device must never
//! panic, read out of bounds or allocate without bound.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use devices::interrupt::NoInterrupt;
use devices::pci::{BarBacking, PciDevice};
use devices::qxl::defs::{
    ram, ring, IO_CREATE_PRIMARY, IO_MEMSLOT_ADD, IO_MONITORS_CONFIG_ASYNC, IO_RESET,
};
use devices::qxl::memory::{Backing, BarMemory};
use devices::qxl::memslots::{make_address, BarLayout};
use devices::qxl::worker::Worker;
use devices::qxl::{Qxl, QxlConfig};
use libfuzzer_sys::fuzz_target;

const BAR0: u64 = 0xc000_0000;
const BAR1: u64 = 0xc400_0000;
/// Where the fuzz input goes in BAR 0 (the command pages) and its size.
const WINDOW: u64 = 8 << 20;
const WINDOW_LEN: u64 = 1 << 16;

struct Rig {
    _qxl: Qxl,
    worker: Worker,
    mem: BarMemory,
    header: u64,
    bars: BarLayout,
}

fn rig() -> &'static Mutex<Rig> {
    static RIG: OnceLock<Mutex<Rig>> = OnceLock::new();
    RIG.get_or_init(|| {
        let config = QxlConfig {
            ram_size: 16 << 20,
            vram_size: 4 << 20,
            vram64_size: None,
            vgamem_size: 8 << 20,
            revision: 4,
            initial_size: None,
            heads: 4,
        };
        let mut qxl = Qxl::new(config, Arc::new(NoInterrupt), 10).expect("device");
        let worker = qxl.take_worker().expect("worker");
        let vram = match qxl.pci.lock().unwrap().bar_backing(1) {
            BarBacking::Memory { memory, .. } => memory,
            BarBacking::Trapped => unreachable!(),
        };
        let mem = BarMemory::new(qxl.vga.framebuffer.clone(), vram);
        Mutex::new(Rig {
            _qxl: qxl,
            worker,
            mem,
            header: config.ram_header_offset(),
            bars: BarLayout {
                ram: Some(BAR0..BAR0 + (16 << 20)),
                vram: Some(BAR1..BAR1 + (4 << 20)),
                vram64: None,
            },
        })
    })
}

/// Rewrites words that look like "an address, please" into addresses inside
/// the window, so the fuzzer reaches deep structures quickly.
fn fix_addresses(data: &mut [u8]) {
    for word in data.chunks_exact_mut(8) {
        let v = u64::from_le_bytes(word.try_into().unwrap());
        if v >> 48 == 0xfffe {
            let a = make_address(1, 0, WINDOW + (v & 0xffff) % WINDOW_LEN);
            word.copy_from_slice(&a.to_le_bytes());
        } else if v >> 48 == 0xfffd {
            let a = make_address(2, 0, (v & 0xffff) % WINDOW_LEN);
            word.copy_from_slice(&a.to_le_bytes());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let mut rig = rig().lock().unwrap_or_else(|p| p.into_inner());
    let rig = &mut *rig;
    let (header, bars) = (rig.header, rig.bars.clone());
    let core = rig.worker.core();
    // A fresh device, as the Linux driver sets it up.
    core.io_write(IO_RESET, 0, &bars);
    for (id, start, end) in [(1u8, BAR0, BAR0 + header), (2, BAR1, BAR1 + (4 << 20))] {
        rig.mem
            .set_u64_at(Backing::Ram, header + ram::MEM_SLOT, start);
        rig.mem
            .set_u64_at(Backing::Ram, header + ram::MEM_SLOT + 8, end);
        core.io_write(IO_MEMSLOT_ADD, id, &bars);
    }
    let create = [64u32, 64, 256, 32, 0, 0, 1, 0];
    for (i, v) in create.iter().enumerate() {
        rig.mem.set_u32_at(
            Backing::Ram,
            header + ram::CREATE_SURFACE + 4 * i as u64,
            *v,
        );
    }
    rig.mem.set_u64_at(
        Backing::Ram,
        header + ram::CREATE_SURFACE + 32,
        make_address(2, 0, 1 << 20),
    );
    core.io_write(IO_CREATE_PRIMARY, 0, &bars);

    // Input: [n commands: (kind, flags, offset u16)] then memory contents.
    let n = usize::from(data[0] % 16) + 1;
    let table_len = (1 + 4 * n).min(data.len());
    let (table, rest) = data.split_at(table_len);
    let mut memory = rest.to_vec();
    memory.truncate(WINDOW_LEN as usize);
    fix_addresses(&mut memory);
    let window = rig
        .mem
        .range(Backing::Ram, WINDOW, memory.len() as u64)
        .unwrap();
    rig.mem.write(window, 0, &memory);
    let surfaces = rig
        .mem
        .range(Backing::Vram, 0, memory.len() as u64)
        .unwrap();
    rig.mem.write(surfaces, 0, &memory);

    for entry in table[1..].chunks_exact(4) {
        let (kind, flags, offset) = (entry[0], entry[1], u16::from_le_bytes([entry[2], entry[3]]));
        if flags & 0x80 != 0 {
            // An I/O port write instead of a command; a monitors config
            // is read from the window.
            let port = kind % 26;
            if port == IO_MONITORS_CONFIG_ASYNC {
                let at = make_address(1, 0, WINDOW + u64::from(offset) % WINDOW_LEN);
                rig.mem
                    .set_u64_at(Backing::Ram, header + ram::MONITORS_CONFIG, at);
            }
            core.io_write(port, flags & 0x7f, &bars);
            continue;
        }
        let cursor = flags & 1 != 0;
        let base = header
            + if cursor {
                ram::CURSOR_RING
            } else {
                ram::CMD_RING
            };
        let prod = rig.mem.u32_at(Backing::Ram, base + ring::PROD);
        let item = base + ring::ITEMS + u64::from(prod & 31) * 16;
        let addr = if flags & 2 != 0 {
            u64::from(offset) | (u64::from(kind) << 56)
        } else {
            make_address(1, 0, WINDOW + u64::from(offset) % WINDOW_LEN)
        };
        rig.mem.set_u64_at(Backing::Ram, item, addr);
        rig.mem
            .set_u32_at(Backing::Ram, item + 8, u32::from(kind % 7));
        rig.mem
            .set_u32_at(Backing::Ram, base + ring::PROD, prod.wrapping_add(1));
        // Let the guest consume releases now and then.
        if flags & 4 != 0 {
            let r = header + ram::RELEASE_RING;
            let p = rig.mem.u32_at(Backing::Ram, r + ring::PROD);
            rig.mem.set_u32_at(Backing::Ram, r + ring::CONS, p);
        }
        core.process_rings(64);
    }
});
