//! MSI-X: the vector table and pending-bit array a PCI function exposes in
//! a BAR, and the capability that points at them.
//!
//! Each table entry holds the message address and data the guest programmed
//! and a mask bit. A vector signalled while it (or the whole function) is
//! masked sets its pending bit instead, and is delivered when unmasked.
//! Entries start masked, as the PCI spec requires. Table accesses must be
//! 4 or 8 bytes and naturally aligned; others are ignored (reads give 0).

use crate::interrupt::MsiDelivery;

/// The MSI-X capability ID.
pub const CAPABILITY_ID: u8 = 0x11;
/// Bytes per table entry.
pub const ENTRY_SIZE: u64 = 16;
/// "No vector" in virtio's vector registers.
pub const NO_VECTOR: u16 = 0xffff;

const CONTROL_ENABLE: u16 = 1 << 15;
const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
const ENTRY_MASKED: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    address: u64,
    data: u32,
    control: u32,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            address: 0,
            data: 0,
            control: ENTRY_MASKED,
        }
    }
}

#[derive(Debug)]
pub struct MsixTable {
    entries: Vec<Entry>,
    pending: Vec<u64>,
    enabled: bool,
    function_masked: bool,
}

impl MsixTable {
    /// A table of `vectors` entries (1 to 2048).
    pub fn new(vectors: u16) -> Self {
        let vectors = vectors.clamp(1, 2048);
        MsixTable {
            entries: vec![Entry::default(); usize::from(vectors)],
            pending: vec![0; usize::from(vectors).div_ceil(64)],
            enabled: false,
            function_masked: false,
        }
    }

    pub fn vectors(&self) -> u16 {
        self.entries.len() as u16
    }

    /// Bytes the table takes in its BAR.
    pub fn table_size(&self) -> u64 {
        self.entries.len() as u64 * ENTRY_SIZE
    }

    /// Bytes the pending-bit array takes in its BAR (whole qwords).
    pub fn pba_size(&self) -> u64 {
        self.pending.len() as u64 * 8
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The capability body (after ID and next pointer): message control,
    /// table offset/BIR, PBA offset/BIR. Bits 14-15 of message control
    /// (body bytes 0-1) are the guest-writable ones: see [`WRITABLE`].
    pub fn capability_body(
        &self,
        table_bar: u8,
        table_offset: u32,
        pba_bar: u8,
        pba_offset: u32,
    ) -> Vec<u8> {
        let mut body = Vec::with_capacity(10);
        body.extend_from_slice(&(self.vectors() - 1).to_le_bytes());
        body.extend_from_slice(&(table_offset | u32::from(table_bar & 7)).to_le_bytes());
        body.extend_from_slice(&(pba_offset | u32::from(pba_bar & 7)).to_le_bytes());
        body
    }

    /// Follows the message control register the guest wrote (enable and
    /// function mask); unmasking delivers what became pending.
    pub fn set_message_control(&mut self, control: u16, delivery: &dyn MsiDelivery) {
        self.enabled = control & CONTROL_ENABLE != 0;
        self.function_masked = control & CONTROL_FUNCTION_MASK != 0;
        self.deliver_pending(delivery);
    }

    /// Signals `vector`: delivered now, or left pending while masked.
    /// Returns whether it was delivered. Vectors beyond the table are
    /// dropped.
    pub fn signal(&mut self, vector: u16, delivery: &dyn MsiDelivery) -> bool {
        let index = usize::from(vector);
        let Some(entry) = self.entries.get(index) else {
            return false;
        };
        if !self.enabled {
            return false;
        }
        if self.function_masked || entry.control & ENTRY_MASKED != 0 {
            self.pending[index / 64] |= 1 << (index % 64);
            return false;
        }
        delivery.deliver(entry.address, entry.data);
        true
    }

    fn deliver_pending(&mut self, delivery: &dyn MsiDelivery) {
        if !self.enabled || self.function_masked {
            return;
        }
        for index in 0..self.entries.len() {
            let bit = 1u64 << (index % 64);
            if self.pending[index / 64] & bit != 0
                && self.entries[index].control & ENTRY_MASKED == 0
            {
                self.pending[index / 64] &= !bit;
                delivery.deliver(self.entries[index].address, self.entries[index].data);
            }
        }
    }

    fn access_ok(offset: u64, len: usize) -> bool {
        matches!(len, 4 | 8) && offset.is_multiple_of(len as u64)
    }

    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !Self::access_ok(offset, data.len()) {
            return;
        }
        for (i, chunk) in data.chunks_mut(4).enumerate() {
            let dword = offset / 4 + i as u64;
            let Some(entry) = self.entries.get((dword / 4) as usize) else {
                return;
            };
            let value = match dword % 4 {
                0 => entry.address as u32,
                1 => (entry.address >> 32) as u32,
                2 => entry.data,
                _ => entry.control,
            };
            chunk.copy_from_slice(&value.to_le_bytes());
        }
    }

    pub fn write_table(&mut self, offset: u64, data: &[u8], delivery: &dyn MsiDelivery) {
        if !Self::access_ok(offset, data.len()) {
            return;
        }
        for (i, chunk) in data.chunks(4).enumerate() {
            let dword = offset / 4 + i as u64;
            let Some(entry) = self.entries.get_mut((dword / 4) as usize) else {
                return;
            };
            let value = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            match dword % 4 {
                0 => entry.address = (entry.address & !0xffff_ffff) | u64::from(value & !3),
                1 => entry.address = (entry.address & 0xffff_ffff) | (u64::from(value) << 32),
                2 => entry.data = value,
                _ => entry.control = value & ENTRY_MASKED,
            }
        }
        self.deliver_pending(delivery);
    }

    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !Self::access_ok(offset, data.len()) {
            return;
        }
        let mut bytes = Vec::with_capacity(self.pending.len() * 8);
        for q in &self.pending {
            bytes.extend_from_slice(&q.to_le_bytes());
        }
        let start = offset as usize;
        if let Some(src) = bytes.get(start..start + data.len()) {
            data.copy_from_slice(src);
        }
    }
}

/// The guest-writable bits of the capability body: enable and function
/// mask, the top two bits of message control.
pub const WRITABLE: [(usize, u32); 1] = [(1, 0xc0)];

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Log(Mutex<Vec<(u64, u32)>>);
    impl MsiDelivery for Log {
        fn deliver(&self, address: u64, data: u32) {
            self.0.lock().unwrap().push((address, data));
        }
    }

    fn program(t: &mut MsixTable, vector: u64, address: u64, data: u32, log: &Log) {
        let base = vector * ENTRY_SIZE;
        t.write_table(base, &address.to_le_bytes(), log);
        t.write_table(base + 8, &data.to_le_bytes(), log);
        t.write_table(base + 12, &0u32.to_le_bytes(), log);
    }

    fn taken(log: &Log) -> Vec<(u64, u32)> {
        std::mem::take(&mut *log.0.lock().unwrap())
    }

    #[test]
    fn entries_start_masked_and_read_back() {
        let log = Log::default();
        let mut t = MsixTable::new(3);
        let mut v = [0u8; 4];
        t.read_table(12, &mut v);
        assert_eq!(u32::from_le_bytes(v), 1, "masked at reset");
        program(&mut t, 1, 0xfee0_0000, 0x4041, &log);
        let mut q = [0u8; 8];
        t.read_table(16, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0xfee0_0000);
        t.read_table(24, &mut v);
        assert_eq!(u32::from_le_bytes(v), 0x4041);
        // Out of the table, misaligned, odd sizes: nothing happens.
        t.read_table(48, &mut v);
        assert_eq!(v, [0; 4]);
        t.write_table(18, &[1, 2, 3, 4], &log);
        t.write_table(16, &[1, 2], &log);
        t.write_table(48, &[1, 2, 3, 4], &log);
        t.read_table(16, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0xfee0_0000);
        assert!(taken(&log).is_empty());
    }

    #[test]
    fn masking_leaves_vectors_pending_until_unmasked() {
        let log = Log::default();
        let mut t = MsixTable::new(2);
        program(&mut t, 0, 0xfee0_0000, 0x30, &log);
        // Not enabled: dropped.
        assert!(!t.signal(0, &log));
        t.set_message_control(CONTROL_ENABLE, &log);
        assert!(t.signal(0, &log));
        assert_eq!(taken(&log), vec![(0xfee0_0000, 0x30)]);
        // Vector 1 is still masked: pending, visible in the PBA.
        assert!(!t.signal(1, &log));
        let mut pba = [0u8; 8];
        t.read_pba(0, &mut pba);
        assert_eq!(u64::from_le_bytes(pba), 0b10);
        program(&mut t, 1, 0xfee0_1000, 0x31, &log);
        assert_eq!(
            taken(&log),
            vec![(0xfee0_1000, 0x31)],
            "delivered on unmask"
        );
        t.read_pba(0, &mut pba);
        assert_eq!(u64::from_le_bytes(pba), 0);
        // Function mask.
        t.set_message_control(CONTROL_ENABLE | CONTROL_FUNCTION_MASK, &log);
        assert!(!t.signal(0, &log));
        assert!(taken(&log).is_empty());
        t.set_message_control(CONTROL_ENABLE, &log);
        assert_eq!(taken(&log), vec![(0xfee0_0000, 0x30)]);
        // A vector beyond the table.
        assert!(!t.signal(7, &log));
        assert!(taken(&log).is_empty());
    }

    #[test]
    fn capability_body() {
        let t = MsixTable::new(3);
        assert_eq!(
            t.capability_body(0, 0x4000, 0, 0x5000),
            vec![2, 0, 0x00, 0x40, 0, 0, 0x00, 0x50, 0, 0]
        );
        assert_eq!((t.table_size(), t.pba_size()), (48, 8));
    }
}
