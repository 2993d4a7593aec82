//! The QXLRom (BAR 2): device parameters the guest driver reads at probe
//! time, followed by the mode list (docs/qxl.md §2). The guest cannot write it;
//! the device rewrites it on every reset.

use super::config::QxlConfig;
use super::defs::{
    rom, NUM_MEMSLOTS, NUM_SURFACES, ROM_BAR_SIZE, ROM_MAGIC, SLOTS_START, SLOT_GEN_BITS,
    SLOT_ID_BITS,
};

/// The resolutions QEMU offers, in its order (each gives four mode entries).
const RESOLUTIONS: [(u32, u32); 37] = [
    (640, 480),
    (800, 480),
    (800, 600),
    (832, 624),
    (960, 640),
    (1024, 600),
    (1024, 768),
    (1152, 864),
    (1152, 870),
    (1280, 720),
    (1280, 760),
    (1280, 768),
    (1280, 800),
    (1280, 960),
    (1280, 1024),
    (1360, 768),
    (1366, 768),
    (1400, 1050),
    (1440, 900),
    (1600, 900),
    (1600, 1200),
    (1680, 1050),
    (1920, 1080),
    (1920, 1200),
    (1920, 1440),
    (2000, 2000),
    (2048, 1536),
    (2048, 2048),
    (2560, 1440),
    (2560, 1600),
    (2560, 2048),
    (2800, 2100),
    (3200, 2400),
    (3840, 2160),
    (4096, 2160),
    (7680, 4320),
    (8192, 4320),
];

/// One `QXLMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    pub id: u32,
    pub x_res: u32,
    pub y_res: u32,
    pub bits: u32,
    pub stride: u32,
    pub orientation: u32,
}

/// The modes that fit in `vgamem` bytes: for each resolution 16 and 32 bpp,
/// in orientations 0 and 1; ids are the index in the full list.
pub fn modes(vgamem: u64) -> Vec<Mode> {
    let mut out = Vec::new();
    for (r, &(x, y)) in RESOLUTIONS.iter().enumerate() {
        for (k, (bits, orientation)) in [(16, 0), (32, 0), (16, 1), (32, 1)].iter().enumerate() {
            let stride = x * bits / 8;
            if u64::from(y) * u64::from(stride) <= vgamem {
                out.push(Mode {
                    id: (4 * r + k) as u32,
                    x_res: x,
                    y_res: y,
                    bits: *bits,
                    stride,
                    orientation: *orientation,
                });
            }
        }
    }
    out
}

/// Linux's `crc32_le(0, ...)`: reflected CRC-32, initial value 0, no final xor.
pub fn crc32_le(bytes: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ if crc & 1 != 0 { 0xEDB8_8320 } else { 0 };
        }
    }
    crc
}

/// The ROM's client monitors config (count, padding, 64 heads {top, left,
/// bottom, right}) for heads given as (x, y, width, height), at most 64;
/// returns the struct's bytes and their CRC.
pub fn client_monitors_config(heads: &[(u32, u32, u32, u32)]) -> (Vec<u8>, u32) {
    let mut bytes = vec![0u8; rom::CLIENT_MONITORS_CONFIG_SIZE];
    let count = heads.len().min(64);
    bytes[0..2].copy_from_slice(&(count as u16).to_le_bytes());
    for (i, &(x, y, w, h)) in heads.iter().take(count).enumerate() {
        let at = 4 + 16 * i;
        for (j, v) in [y, x, y.saturating_add(h), x.saturating_add(w)]
            .into_iter()
            .enumerate()
        {
            put32(&mut bytes, at + 4 * j, v);
        }
    }
    let crc = crc32_le(&bytes);
    (bytes, crc)
}

fn put32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// The ROM image for `config` (device id 0), `ROM_BAR_SIZE` bytes.
pub fn build(config: &QxlConfig) -> Vec<u8> {
    let mut buf = vec![0u8; ROM_BAR_SIZE as usize];
    put32(&mut buf, rom::MAGIC, ROM_MAGIC);
    put32(&mut buf, rom::MODES_OFFSET, rom::SIZE as u32);
    put32(&mut buf, rom::NUM_PAGES, config.num_pages());
    put32(&mut buf, rom::PAGES_OFFSET, config.vgamem_size as u32);
    put32(&mut buf, rom::DRAW_AREA_OFFSET, 0);
    put32(&mut buf, rom::SURFACE0_AREA_SIZE, config.vgamem_size as u32);
    put32(
        &mut buf,
        rom::RAM_HEADER_OFFSET,
        config.ram_header_offset() as u32,
    );
    put32(&mut buf, rom::N_SURFACES, NUM_SURFACES);
    buf[rom::SLOTS_START] = SLOTS_START;
    buf[rom::SLOTS_END] = (NUM_MEMSLOTS - 1) as u8;
    buf[rom::SLOT_GEN_BITS] = SLOT_GEN_BITS;
    buf[rom::SLOT_ID_BITS] = SLOT_ID_BITS;
    buf[rom::SLOT_GENERATION] = 0;
    // The client monitors config: one head of the preferred size, or none
    // (count 0, CRC 0: the CRC of all zeros).
    if let Some((w, h)) = config.initial_size {
        let (bytes, crc) = client_monitors_config(&[(0, 0, w, h)]);
        buf[rom::CLIENT_MONITORS_CONFIG..rom::CLIENT_MONITORS_CONFIG + bytes.len()]
            .copy_from_slice(&bytes);
        put32(&mut buf, rom::CLIENT_MONITORS_CONFIG_CRC, crc);
    }
    let list = modes(config.vgamem_size);
    put32(&mut buf, rom::SIZE, list.len() as u32);
    for (i, m) in list.iter().enumerate() {
        let at = rom::SIZE + 4 + i * rom::MODE_SIZE;
        // Millimetres: pretend 1280x1024 is a 14.8"x11.9" screen, as QEMU does.
        let x_mili = (0.293_687_5 * f64::from(m.x_res)) as u32;
        let y_mili = (0.293_687_5 * f64::from(m.y_res)) as u32;
        for (j, v) in [
            m.id,
            m.x_res,
            m.y_res,
            m.bits,
            m.stride,
            x_mili,
            y_mili,
            m.orientation,
        ]
        .into_iter()
        .enumerate()
        {
            put32(&mut buf, at + 4 * j, v);
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get32(buf: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(buf[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn default_rom_matches_qemu() {
        let rom = build(&QxlConfig::default());
        assert_eq!(get32(&rom, rom::MAGIC), 0x4F52_5851);
        assert_eq!(get32(&rom, rom::NUM_PAGES), 12286);
        assert_eq!(get32(&rom, rom::PAGES_OFFSET), 0x0100_0000);
        assert_eq!(get32(&rom, rom::SURFACE0_AREA_SIZE), 0x0100_0000);
        assert_eq!(get32(&rom, rom::RAM_HEADER_OFFSET), 0x03FF_E000);
        assert_eq!(get32(&rom, rom::N_SURFACES), 1024);
        assert_eq!(&rom[64..69], &[1, 7, 8, 8, 0]);
        assert_eq!(get32(&rom, rom::MODES_OFFSET), 1160);
        assert_eq!(get32(&rom, 1160), 128, "16 MiB fits 128 modes");
        // id 25 = 1024x768x32, id 89 = 1920x1080x32.
        let find = |id| {
            (0..128)
                .map(|i| 1164 + i * 32)
                .find(|&at| get32(&rom, at) == id)
                .unwrap()
        };
        let at = find(25);
        assert_eq!(
            (0..8).map(|j| get32(&rom, at + 4 * j)).collect::<Vec<_>>(),
            vec![25, 1024, 768, 32, 4096, 300, 225, 0]
        );
        let at = find(89);
        assert_eq!(
            (0..8).map(|j| get32(&rom, at + 4 * j)).collect::<Vec<_>>(),
            vec![89, 1920, 1080, 32, 7680, 563, 317, 0]
        );
    }

    #[test]
    fn mode_counts_follow_vgamem() {
        assert_eq!(modes(8 << 20).len(), 106);
        assert_eq!(modes(16 << 20).len(), 128);
        assert_eq!(modes(32 << 20).len(), 138);
        assert_eq!(modes(64 << 20).len(), 142);
    }

    #[test]
    fn preferred_size_is_a_client_monitor() {
        let config = QxlConfig {
            initial_size: Some((1280, 800)),
            ..QxlConfig::default()
        };
        let rom = build(&config);
        let cfg = &rom[rom::CLIENT_MONITORS_CONFIG..rom::CLIENT_MONITORS_CONFIG + 1028];
        assert_eq!(get32(&rom, rom::CLIENT_MONITORS_CONFIG_CRC), crc32_le(cfg));
        assert_eq!(&cfg[0..2], &[1, 0]);
        // top, left, bottom, right
        assert_eq!(
            (0..4).map(|j| get32(cfg, 4 + 4 * j)).collect::<Vec<_>>(),
            vec![0, 0, 800, 1280]
        );
        let plain = build(&QxlConfig::default());
        assert_eq!(get32(&plain, rom::CLIENT_MONITORS_CONFIG_CRC), 0);
    }

    #[test]
    fn crc_is_linux_crc32_le() {
        assert_eq!(crc32_le(&[0; 1028]), 0);
        // crc32_le(0, "123456789") as Linux computes it (= zlib crc32 of the
        // same bytes with init ~0 and final xor undone).
        assert_eq!(crc32_le(b"123456789"), 0x2DFD_2D88);
    }
}
