//! fw_cfg: how firmware (SeaBIOS) learns about the machine, QEMU's
//! interface (docs/seabios-platform.md has the layout).
//!
//! Items are byte strings under 16-bit selectors: a few fixed ones (the
//! signature, the feature bits, the CPU count, ...) and named files from
//! selector 0x20 on, listed in the file directory (selector 0x19). The guest
//! reads them a byte at a time (select at port 0x510, read port 0x511) or by
//! DMA (a control block in guest memory whose address is written, big
//! endian, to ports 0x514..0x51b). Everything is read-only to the guest.
//!
//! The guest controls every DMA field: addresses must lie in guest RAM,
//! lengths are bounded by the item (reads past its end give zeroes, as
//! QEMU's do, within RAM), and a bad request only sets the error bit.

use std::collections::BTreeMap;

use devices::bus::BusDeviceMut;
use vm_memory::{Bytes, GuestAddress, GuestMemory as _, GuestMemoryMmap, Permissions};

/// The I/O ports: selector (16-bit), data (8-bit), DMA address (2 x 32-bit).
pub const PORT_BASE: u16 = 0x510;
pub const PORT_COUNT: u64 = 0xc;
const SELECTOR: u64 = 0;
const DATA: u64 = 1;
const DMA_HIGH: u64 = 4;
const DMA_LOW: u64 = 8;

/// Fixed selectors.
pub mod key {
    pub const SIGNATURE: u16 = 0x00;
    pub const ID: u16 = 0x01;
    pub const RAM_SIZE: u16 = 0x03;
    pub const NOGRAPHIC: u16 = 0x04;
    pub const NB_CPUS: u16 = 0x05;
    pub const BOOT_MENU: u16 = 0x0e;
    pub const MAX_CPUS: u16 = 0x0f;
    pub const FILE_DIR: u16 = 0x19;
    pub const FILE_FIRST: u16 = 0x20;

    /// A kernel for the linuxboot option ROM: addresses and sizes are
    /// little-endian `u32`s (docs/seabios-platform.md §10).
    pub mod kernel {
        pub const KERNEL_ADDR: u16 = 0x07;
        pub const KERNEL_SIZE: u16 = 0x08;
        pub const INITRD_ADDR: u16 = 0x0a;
        pub const INITRD_SIZE: u16 = 0x0b;
        pub const KERNEL_DATA: u16 = 0x11;
        pub const INITRD_DATA: u16 = 0x12;
        pub const CMDLINE_ADDR: u16 = 0x13;
        pub const CMDLINE_SIZE: u16 = 0x14;
        pub const CMDLINE_DATA: u16 = 0x15;
        pub const SETUP_ADDR: u16 = 0x16;
        pub const SETUP_SIZE: u16 = 0x17;
        pub const SETUP_DATA: u16 = 0x18;
    }
}

/// `ID` bits: the port interface and DMA.
const FEATURE_TRADITIONAL: u32 = 1;
const FEATURE_DMA: u32 = 2;
/// What reading the DMA address port returns: "QEMU CFG".
const DMA_SIGNATURE: u64 = 0x5145_4d55_2043_4647;

/// DMA control bits.
mod control {
    pub const ERROR: u32 = 1;
    pub const READ: u32 = 2;
    pub const SKIP: u32 = 4;
    pub const SELECT: u32 = 8;
    pub const WRITE: u32 = 0x10;
}

/// Bytes of a file name in the directory (with its terminating NUL).
pub const FILE_NAME_LEN: usize = 56;
/// Files at most (selectors 0x20..0x1000 in QEMU; far more than we need).
pub const MAX_FILES: usize = 256;
/// Bytes DMA zero-fills past an item's end at a time.
const ZERO_CHUNK: usize = 64 << 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FwCfgError {
    #[error("fw_cfg file name '{0}' is empty or longer than 55 bytes")]
    BadName(String),
    #[error("fw_cfg file '{0}' exists already")]
    Duplicate(String),
    #[error("more than {MAX_FILES} fw_cfg files")]
    TooMany,
}

pub struct FwCfg {
    items: BTreeMap<u16, Vec<u8>>,
    files: Vec<(String, u16)>,
    selected: u16,
    offset: usize,
    dma_high: u32,
    memory: GuestMemoryMmap<()>,
}

impl FwCfg {
    /// A device with the fixed items for `cpus` CPUs and `ram_size` bytes.
    pub fn new(memory: GuestMemoryMmap<()>, cpus: u16, ram_size: u64) -> Self {
        let mut items = BTreeMap::new();
        items.insert(key::SIGNATURE, b"QEMU".to_vec());
        let features = FEATURE_TRADITIONAL | FEATURE_DMA;
        items.insert(key::ID, features.to_le_bytes().to_vec());
        items.insert(key::RAM_SIZE, ram_size.to_le_bytes().to_vec());
        items.insert(key::NOGRAPHIC, 0u16.to_le_bytes().to_vec());
        items.insert(key::NB_CPUS, cpus.to_le_bytes().to_vec());
        items.insert(key::MAX_CPUS, cpus.to_le_bytes().to_vec());
        items.insert(key::BOOT_MENU, 0u16.to_le_bytes().to_vec());
        let mut device = FwCfg {
            items,
            files: Vec::new(),
            selected: 0,
            offset: 0,
            dma_high: 0,
            memory,
        };
        device.update_directory();
        device
    }

    /// Sets a fixed item (`key` below 0x20).
    pub fn set_item(&mut self, key: u16, data: Vec<u8>) {
        if key < key::FILE_FIRST && key != key::FILE_DIR {
            self.items.insert(key, data);
        }
    }

    /// Adds the named file.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<(), FwCfgError> {
        if name.is_empty() || name.len() >= FILE_NAME_LEN || name.contains('\0') {
            return Err(FwCfgError::BadName(name.to_string()));
        }
        if self.files.iter().any(|(n, _)| n == name) {
            return Err(FwCfgError::Duplicate(name.to_string()));
        }
        if self.files.len() >= MAX_FILES {
            return Err(FwCfgError::TooMany);
        }
        let selector = key::FILE_FIRST + self.files.len() as u16;
        self.files.push((name.to_string(), selector));
        self.items.insert(selector, data);
        self.update_directory();
        Ok(())
    }

    /// The file directory: a count, then (size, selector, name) per file,
    /// sorted by name, all big endian.
    fn update_directory(&mut self) {
        let mut files = self.files.clone();
        files.sort();
        let mut dir = (files.len() as u32).to_be_bytes().to_vec();
        for (name, selector) in files {
            let size = self.items.get(&selector).map_or(0, Vec::len) as u32;
            dir.extend_from_slice(&size.to_be_bytes());
            dir.extend_from_slice(&selector.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut field = [0u8; FILE_NAME_LEN];
            field[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&field);
        }
        self.items.insert(key::FILE_DIR, dir);
    }

    fn select(&mut self, selector: u16) {
        self.selected = selector;
        self.offset = 0;
    }

    fn item(&self) -> &[u8] {
        self.items.get(&self.selected).map_or(&[], Vec::as_slice)
    }

    fn read_byte(&mut self) -> u8 {
        let byte = self.item().get(self.offset).copied().unwrap_or(0);
        self.offset = self.offset.saturating_add(1);
        byte
    }

    /// Runs the DMA request whose control block is at `addr`.
    fn dma(&mut self, addr: u64) {
        let block = GuestAddress(addr);
        let status = match self.memory.read_obj::<[u8; 16]>(block) {
            Ok(raw) => self.dma_transfer(&raw),
            Err(_) => return, // nowhere to report to
        };
        let _ = self.memory.write_obj(status.to_be_bytes(), block);
    }

    /// The transfer a control block asks for; its new control word.
    fn dma_transfer(&mut self, raw: &[u8; 16]) -> u32 {
        let word = |at: usize| u32::from_be_bytes(raw[at..at + 4].try_into().unwrap_or_default());
        let (ctl, length) = (word(0), word(4));
        let address = u64::from_be_bytes(raw[8..16].try_into().unwrap_or_default());
        if ctl & control::SELECT != 0 {
            self.select((ctl >> 16) as u16);
        }
        // As QEMU: a read wins over a write, which wins over a skip.
        let ok = if ctl & control::READ != 0 {
            self.dma_read(address, length as usize)
        } else if ctl & control::WRITE != 0 {
            false // nothing is writable
        } else {
            ctl & control::SKIP == 0 || self.skip(length as usize)
        };
        if ok {
            0
        } else {
            control::ERROR
        }
    }

    fn skip(&mut self, length: usize) -> bool {
        self.offset = self.offset.saturating_add(length);
        true
    }

    /// Copies `length` bytes of the item (zeroes past its end) to `address`.
    fn dma_read(&mut self, address: u64, length: usize) -> bool {
        let target = GuestAddress(address);
        if !self.memory.check_range(target, length, Permissions::Write) {
            return false;
        }
        let item = self.item();
        let start = self.offset.min(item.len());
        let copied = (item.len() - start).min(length);
        let data = item[start..start + copied].to_vec();
        if self.memory.write_slice(&data, target).is_err() {
            return false;
        }
        let zeroes = [0u8; ZERO_CHUNK];
        let mut done = copied;
        while done < length {
            let n = (length - done).min(ZERO_CHUNK);
            let at = GuestAddress(address + done as u64);
            if self.memory.write_slice(&zeroes[..n], at).is_err() {
                return false;
            }
            done += n;
        }
        self.offset = self.offset.saturating_add(length);
        true
    }
}

impl BusDeviceMut for FwCfg {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match (offset, data.len()) {
            // The data port is a byte wide: wider reads, and the string
            // reads (`rep insb`) that reach us as one access, take bytes
            // one after the other.
            (DATA, _) => data.iter_mut().for_each(|b| *b = self.read_byte()),
            (DMA_HIGH, 4) => data.copy_from_slice(&DMA_SIGNATURE.to_be_bytes()[..4]),
            (DMA_LOW, 4) => data.copy_from_slice(&DMA_SIGNATURE.to_be_bytes()[4..]),
            _ => {}
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (SELECTOR, 2) => self.select(u16::from_le_bytes([data[0], data[1]])),
            (DMA_HIGH, 4) => self.dma_high = u32::from_be_bytes(bytes4(data)),
            (DMA_LOW, 4) => {
                let low = u32::from_be_bytes(bytes4(data));
                let addr = (u64::from(self.dma_high) << 32) | u64::from(low);
                self.dma_high = 0;
                self.dma(addr);
            }
            _ => {}
        }
    }
}

fn bytes4(data: &[u8]) -> [u8; 4] {
    data.try_into().unwrap_or_default()
}

#[cfg(test)]
mod tests;
