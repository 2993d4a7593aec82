//! The command ring (CORB) and the response ring (RIRB) (docs/hda.md §3):
//! the guest queues verbs in a ring in its memory and moves the write
//! pointer; the controller runs them through the codec and writes each
//! response (and which codec sent it) into the response ring, raising an
//! interrupt every `RINTCNT` responses and when the command ring is empty.
//!
//! Both rings have 256 entries. Work per doorbell is bounded by the ring
//! size; a ring outside guest RAM sets the memory error bit and stops.

use vm_memory::{Bytes, GuestAddress};

use crate::virtio::GuestMemory;

pub const ENTRIES: u16 = 256;
/// CORBCTL / RIRBCTL bits.
pub const CORBCTL_RUN: u8 = 1 << 1;
pub const CORBCTL_CMEIE: u8 = 1 << 0;
pub const CORBSTS_CMEI: u8 = 1 << 0;
pub const RIRBCTL_RINTCTL: u8 = 1 << 0;
pub const RIRBCTL_DMAEN: u8 = 1 << 1;
pub const RIRBCTL_OIC: u8 = 1 << 2;
pub const RIRBSTS_RINTFL: u8 = 1 << 0;
pub const RIRBSTS_OIS: u8 = 1 << 2;
/// Read pointer reset bit (CORBRP) and write pointer reset bit (RIRBWP).
pub const POINTER_RESET: u16 = 1 << 15;
/// Size registers: 256 entries supported and selected.
pub const SIZE_256: u8 = 0x42;

/// The two rings' registers and state.
#[derive(Debug, Clone, Default)]
pub struct Rings {
    pub corb_base: u64,
    pub corb_wp: u16,
    /// Read pointer and its latched reset bit.
    pub corb_rp: u16,
    pub corb_ctl: u8,
    pub corb_sts: u8,
    pub rirb_base: u64,
    pub rirb_wp: u16,
    pub rintcnt: u16,
    pub rirb_ctl: u8,
    pub rirb_sts: u8,
    /// Responses written since the guest last cleared RINTFL.
    responses: u16,
}

impl Rings {
    /// Responses per interrupt (0 means 256).
    fn per_interrupt(&self) -> u16 {
        match self.rintcnt & 0xff {
            0 => ENTRIES,
            n => n,
        }
    }

    /// Whether the rings raise the controller interrupt (CIS).
    pub fn interrupting(&self) -> bool {
        self.rirb_sts & (RIRBSTS_RINTFL | RIRBSTS_OIS) != 0
            || (self.corb_sts & CORBSTS_CMEI != 0 && self.corb_ctl & CORBCTL_CMEIE != 0)
    }

    /// The guest cleared RIRB status bits.
    pub fn acknowledge(&mut self, bits: u8) {
        if bits & RIRBSTS_RINTFL != 0 {
            self.responses = 0;
        }
        self.rirb_sts &= !(bits & (RIRBSTS_RINTFL | RIRBSTS_OIS));
    }

    /// Runs queued verbs through `codec` until the ring is empty or the
    /// response interrupt is due.
    pub fn run(&mut self, memory: &GuestMemory, codec: &mut dyn FnMut(u32) -> Option<u32>) {
        let mut ran = false;
        while self.corb_ctl & CORBCTL_RUN != 0
            && self.corb_rp & 0xff != self.corb_wp & 0xff
            && self.responses < self.per_interrupt()
        {
            let rp = (self.corb_rp + 1) & 0xff;
            let mut verb = [0u8; 4];
            let at = self.corb_base.wrapping_add(4 * u64::from(rp));
            if memory.read_slice(&mut verb, GuestAddress(at)).is_err() {
                self.corb_sts |= CORBSTS_CMEI;
                self.corb_ctl &= !CORBCTL_RUN;
                break;
            }
            self.corb_rp = rp;
            let verb = u32::from_le_bytes(verb);
            ran = true;
            if let Some(response) = codec(verb) {
                self.respond(memory, response, verb >> 28);
            }
        }
        let empty = self.corb_rp & 0xff == self.corb_wp & 0xff;
        if ran && (self.responses >= self.per_interrupt() || empty) {
            self.interrupt();
        }
    }

    fn respond(&mut self, memory: &GuestMemory, response: u32, codec: u32) {
        if self.rirb_ctl & RIRBCTL_DMAEN == 0 {
            return;
        }
        let wp = (self.rirb_wp + 1) & 0xff;
        let mut entry = [0u8; 8];
        entry[..4].copy_from_slice(&response.to_le_bytes());
        entry[4..].copy_from_slice(&(codec & 0xf).to_le_bytes());
        let at = self.rirb_base.wrapping_add(8 * u64::from(wp));
        if memory.write_slice(&entry, GuestAddress(at)).is_err() {
            if self.rirb_ctl & RIRBCTL_OIC != 0 {
                self.rirb_sts |= RIRBSTS_OIS;
            }
            return;
        }
        self.rirb_wp = wp;
        self.responses += 1;
    }

    fn interrupt(&mut self) {
        if self.rirb_ctl & RIRBCTL_RINTCTL != 0 {
            self.rirb_sts |= RIRBSTS_RINTFL;
        }
    }
}
