//! A BIOS image (SeaBIOS) and where the machine shows it, plus what the
//! BIOS reads from CMOS.
//!
//! The whole image sits just below 4 GiB, where the CPU starts (its reset
//! vector is 16 bytes below 4 GiB, and jumps into the low copy); up to its
//! last 256 KiB also appear below 1 MiB, ending at 0x100000 (the option ROM
//! and BIOS segments). There the machine has RAM, filled with those bytes at
//! start: SeaBIOS copies itself there anyway and then treats the range as
//! shadow RAM (it sets the host bridge's PAM registers, which this machine
//! does not need). See docs/seabios-platform.md.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::layout::{MemoryLayout, GIB, KIB, MIB};

/// The option ROM and BIOS segments, RAM that starts as a copy of the
/// image's end.
pub const LOW_COPY: Range<u64> = 0xc_0000..0x10_0000;
/// Sizes a BIOS image may have.
pub const MIN_SIZE: u64 = 64 * KIB;
pub const MAX_SIZE: u64 = 16 * MIB;

#[derive(Debug, thiserror::Error)]
pub enum BiosError {
    #[error("cannot read the firmware {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the firmware {path} is {size} bytes: a BIOS image is a multiple of 64 KiB, 64 KiB to 16 MiB")]
    Size { path: String, size: u64 },
    #[error("no SeaBIOS found: install the seabios package, or give --firmware PATH")]
    NotInstalled,
}

/// A BIOS image in memory.
pub struct BiosImage {
    pub bytes: Vec<u8>,
}

impl BiosImage {
    pub fn load(path: &Path) -> Result<Self, BiosError> {
        let read_error = |source| BiosError::Read {
            path: path.display().to_string(),
            source,
        };
        // The size is checked before anything is read: a huge file is refused.
        let size = std::fs::metadata(path).map_err(read_error)?.len();
        if !(MIN_SIZE..=MAX_SIZE).contains(&size) || !size.is_multiple_of(MIN_SIZE) {
            return Err(BiosError::Size {
                path: path.display().to_string(),
                size,
            });
        }
        let bytes = std::fs::read(path).map_err(read_error)?;
        if bytes.len() as u64 != size {
            return Err(BiosError::Size {
                path: path.display().to_string(),
                size: bytes.len() as u64,
            });
        }
        Ok(BiosImage { bytes })
    }

    /// Where the whole image is mapped: it ends at 4 GiB.
    pub fn high_base(&self) -> u64 {
        4 * GIB - self.bytes.len() as u64
    }

    /// Where the low copy starts, and its bytes: the image's last 256 KiB
    /// (all of a smaller image), ending at 1 MiB.
    pub fn low_copy(&self) -> (u64, &[u8]) {
        let len = (LOW_COPY.end - LOW_COPY.start).min(self.bytes.len() as u64) as usize;
        let bytes = &self.bytes[self.bytes.len() - len..];
        (LOW_COPY.end - len as u64, bytes)
    }
}

/// Where data files are looked for: `$XDG_DATA_DIRS` (the XDG base
/// directory specification's default when unset), as installed packages
/// place them.
fn data_dirs() -> Vec<PathBuf> {
    let dirs = std::env::var("XDG_DATA_DIRS")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "/usr/local/share:/usr/share".to_string());
    dirs.split(':').map(PathBuf::from).collect()
}

/// A file of the installed SeaBIOS package (e.g. `bios-256k.bin`).
pub fn seabios_file(name: &str) -> Option<PathBuf> {
    data_dirs()
        .into_iter()
        .map(|dir| dir.join("seabios").join(name))
        .find(|path| path.is_file())
}

/// A file of QEMU's installed data files (e.g. `linuxboot_dma.bin`).
pub fn qemu_file(name: &str) -> Option<PathBuf> {
    data_dirs()
        .into_iter()
        .map(|dir| dir.join("qemu").join(name))
        .find(|path| path.is_file())
}

/// The BIOS `--firmware bios` boots.
pub fn default_bios() -> Result<PathBuf, BiosError> {
    seabios_file("bios-256k.bin").ok_or(BiosError::NotInstalled)
}

/// CMOS bytes a PC BIOS reads: memory sizes and the CPU count, as
/// (register, value).
pub fn cmos_fields(layout: &MemoryLayout, cpus: u8) -> Vec<(u8, u8)> {
    let low = layout.low_ram_end();
    let high = layout.ram_size() - low;
    // KiB above 1 MiB (at most 63 MiB), 64 KiB blocks above 16 MiB and above 4 GiB.
    let extended_kib = ((low.saturating_sub(MIB)) / KIB).min(0xffff);
    let above_16m = ((low.saturating_sub(16 * MIB)) >> 16).min(0xffff);
    let above_4g = (high >> 16).min(0xff_ffff);
    let base_kib: u64 = 640;
    vec![
        (0x15, base_kib as u8),
        (0x16, (base_kib >> 8) as u8),
        (0x17, extended_kib as u8),
        (0x18, (extended_kib >> 8) as u8),
        (0x30, extended_kib as u8),
        (0x31, (extended_kib >> 8) as u8),
        (0x34, above_16m as u8),
        (0x35, (above_16m >> 8) as u8),
        (0x5b, above_4g as u8),
        (0x5c, (above_4g >> 8) as u8),
        (0x5d, (above_4g >> 16) as u8),
        (0x5f, cpus.saturating_sub(1)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmos_memory_sizes() {
        let layout = MemoryLayout::new(5 * GIB, 40).unwrap();
        let fields: std::collections::HashMap<u8, u8> =
            cmos_fields(&layout, 4).into_iter().collect();
        let word = |lo: u8| u64::from(fields[&lo]) | u64::from(fields[&(lo + 1)]) << 8;
        assert_eq!(word(0x15), 640);
        assert_eq!(word(0x30), 0xffff, "capped");
        // 3 GiB below 4 GiB: (3G - 16M) / 64K blocks.
        assert_eq!(word(0x34), (3 * GIB - 16 * MIB) >> 16);
        let above = word(0x5b) | u64::from(fields[&0x5d]) << 16;
        assert_eq!(above, (2 * GIB) >> 16);
        assert_eq!(fields[&0x5f], 3);
    }

    #[test]
    fn image_sizes_and_aliases() {
        let dir = std::env::temp_dir().join(format!("saffron-bios-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bios.bin");
        let mut image: Vec<u8> = vec![0; 256 * 1024];
        image[256 * 1024 - 16] = 0xea; // the reset vector's far jump
        std::fs::write(&path, &image).unwrap();
        let bios = BiosImage::load(&path).unwrap();
        assert_eq!(bios.high_base(), 0xfffc_0000);
        let (at, bytes) = bios.low_copy();
        assert_eq!((at, bytes.len()), (0xc_0000, 256 * 1024));
        assert_eq!(bytes[bytes.len() - 16], 0xea);
        std::fs::write(&path, vec![0; 1000]).unwrap();
        assert!(BiosImage::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
