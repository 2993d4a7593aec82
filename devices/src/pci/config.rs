//! A type-0 PCI configuration space: registers with per-bit write masks,
//! BARs that read back their size when probed, and a capability list.

pub const CONFIG_SPACE_SIZE: usize = 4096;
const REGS: usize = CONFIG_SPACE_SIZE / 4;

pub const COMMAND_IO: u16 = 1 << 0;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
const STATUS_CAP_LIST: u32 = 1 << 4;
const STATUS_INTERRUPT: u32 = 1 << 3;

const BAR0_REG: usize = 4;
const INTERRUPT_REG: usize = 15;
const CAPABILITY_REG: usize = 13;
const FIRST_CAPABILITY: usize = 0x40;
pub const BAR_COUNT: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Memory32,
    Memory64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub size: u64,
    pub kind: BarKind,
    pub prefetchable: bool,
}

/// The identity of a PCI function.
#[derive(Debug, Clone, Copy, Default)]
pub struct PciIdentity {
    pub vendor: u16,
    pub device: u16,
    pub revision: u8,
    /// Class, subclass and programming interface, e.g. 0x030000 for VGA.
    pub class: u32,
    pub subsystem_vendor: u16,
    pub subsystem: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("BAR {0} is already in use")]
    BarInUse(usize),
    #[error(
        "BAR sizes must be powers of two (I/O at least 4 bytes, memory at least 16), got {0:#x}"
    )]
    BadBarSize(u64),
    #[error("no room left for a {0}-byte capability")]
    NoCapabilitySpace(usize),
}

#[derive(Clone)]
pub struct PciConfig {
    regs: Box<[u32; REGS]>,
    write_masks: Box<[u32; REGS]>,
    bars: [Option<Bar>; BAR_COUNT],
    next_capability: usize,
    last_capability: Option<usize>,
}

impl PciConfig {
    pub fn new(id: PciIdentity) -> Self {
        let mut c = PciConfig {
            regs: Box::new([0; REGS]),
            write_masks: Box::new([0; REGS]),
            bars: [None; BAR_COUNT],
            next_capability: FIRST_CAPABILITY,
            last_capability: None,
        };
        c.regs[0] = u32::from(id.vendor) | (u32::from(id.device) << 16);
        c.regs[2] = u32::from(id.revision) | (id.class << 8);
        c.regs[11] = u32::from(id.subsystem_vendor) | (u32::from(id.subsystem) << 16);
        // Command: I/O, memory, bus master, INTx disable are writable.
        c.write_masks[1] =
            u32::from(COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE);
        // Cache line size and latency timer are writable; header type 0.
        c.write_masks[3] = 0x0000_ffff;
        // Interrupt line is writable (firmware scratch).
        c.write_masks[INTERRUPT_REG] = 0xff;
        c
    }

    /// Declares a BAR; a 64-bit memory BAR also takes the next slot.
    pub fn add_bar(&mut self, index: usize, bar: Bar) -> Result<(), ConfigError> {
        let min = if bar.kind == BarKind::Io { 4 } else { 16 };
        let max_index = if bar.kind == BarKind::Memory64 {
            BAR_COUNT - 1
        } else {
            BAR_COUNT
        };
        if !bar.size.is_power_of_two()
            || bar.size < min
            || (bar.kind == BarKind::Io && bar.size > 256)
        {
            return Err(ConfigError::BadBarSize(bar.size));
        }
        if index >= max_index
            || self.bars[index].is_some()
            || (bar.kind == BarKind::Memory64 && self.bars[index + 1].is_some())
            || (bar.kind != BarKind::Memory64 && bar.size > u64::from(u32::MAX))
        {
            return Err(ConfigError::BarInUse(index));
        }
        let flags = match bar.kind {
            BarKind::Io => 0x1,
            BarKind::Memory32 => 0x0,
            BarKind::Memory64 => 0x4,
        } | if bar.prefetchable { 0x8 } else { 0 };
        let reg = BAR0_REG + index;
        self.regs[reg] = flags;
        self.write_masks[reg] =
            !((bar.size - 1) as u32) & if bar.kind == BarKind::Io { !0x3 } else { !0xf };
        if bar.kind == BarKind::Memory64 {
            self.regs[reg + 1] = 0;
            self.write_masks[reg + 1] = !((bar.size - 1) >> 32) as u32;
            // The upper half is marked so it is not reused.
            self.bars[index + 1] = Some(Bar {
                size: 0,
                kind: BarKind::Memory64,
                prefetchable: false,
            });
        }
        self.bars[index] = Some(bar);
        Ok(())
    }

    /// The BAR declared at `index` (not the upper half of a 64-bit BAR).
    pub fn bar(&self, index: usize) -> Option<Bar> {
        self.bars
            .get(index)
            .copied()
            .flatten()
            .filter(|b| b.size != 0)
    }

    /// The address the guest programmed into a BAR.
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let bar = self.bar(index)?;
        let reg = BAR0_REG + index;
        Some(match bar.kind {
            BarKind::Io => u64::from(self.regs[reg] & !0x3),
            BarKind::Memory32 => u64::from(self.regs[reg] & !0xf),
            BarKind::Memory64 => {
                u64::from(self.regs[reg] & !0xf) | (u64::from(self.regs[reg + 1]) << 32)
            }
        })
    }

    /// Programs a BAR's address (as firmware would before the guest runs).
    pub fn set_bar_address(&mut self, index: usize, address: u64) {
        let Some(bar) = self.bar(index) else { return };
        let reg = BAR0_REG + index;
        let flags = self.regs[reg] & if bar.kind == BarKind::Io { 0x3 } else { 0xf };
        self.regs[reg] = (address as u32 & self.write_masks[reg]) | flags;
        if bar.kind == BarKind::Memory64 {
            self.regs[reg + 1] = (address >> 32) as u32 & self.write_masks[reg + 1];
        }
    }

    /// The guest address range a BAR decodes right now, if decoding is on.
    pub fn bar_range(&self, index: usize) -> Option<std::ops::Range<u64>> {
        let bar = self.bar(index)?;
        let enabled = match bar.kind {
            BarKind::Io => self.command() & COMMAND_IO != 0,
            _ => self.command() & COMMAND_MEMORY != 0,
        };
        let address = self.bar_address(index)?;
        (enabled && address != 0).then(|| address..address.saturating_add(bar.size))
    }

    pub fn command(&self) -> u16 {
        self.regs[1] as u16
    }

    pub fn set_command(&mut self, command: u16) {
        self.regs[1] = (self.regs[1] & 0xffff_0000) | u32::from(command);
    }

    /// Declares which INTx pin the function uses (1 = INTA) and the line it is wired to.
    pub fn set_interrupt(&mut self, pin: u8, line: u8) {
        self.regs[INTERRUPT_REG] =
            (self.regs[INTERRUPT_REG] & !0xffff) | u32::from(line) | (u32::from(pin) << 8);
    }

    pub fn interrupt_pin(&self) -> u8 {
        (self.regs[INTERRUPT_REG] >> 8) as u8
    }

    /// Reflects the INTx state in the status register (bit 3).
    pub fn set_interrupt_status(&mut self, pending: bool) {
        if pending {
            self.regs[1] |= STATUS_INTERRUPT << 16;
        } else {
            self.regs[1] &= !(STATUS_INTERRUPT << 16);
        }
    }

    pub fn intx_disabled(&self) -> bool {
        self.command() & COMMAND_INTX_DISABLE != 0
    }

    /// Keeps the device-specific registers below `offset` (dword-aligned)
    /// free of capabilities: the next one goes at `offset` or later.
    pub fn reserve_below(&mut self, offset: usize) {
        self.next_capability = self.next_capability.max(offset.next_multiple_of(4));
    }

    /// Appends a capability (`body` excludes the id/next bytes); returns its
    /// offset and marks `writable` bytes (offsets within body) as guest-writable.
    pub fn add_capability(
        &mut self,
        id: u8,
        body: &[u8],
        writable: &[(usize, u32)],
    ) -> Result<usize, ConfigError> {
        let len = (2 + body.len()).next_multiple_of(4);
        let offset = self.next_capability;
        if offset + len > 0x100 {
            return Err(ConfigError::NoCapabilitySpace(len));
        }
        let mut bytes = vec![id, 0];
        bytes.extend_from_slice(body);
        bytes.resize(len, 0);
        for (i, chunk) in bytes.chunks(4).enumerate() {
            self.regs[offset / 4 + i] = u32::from_le_bytes(chunk.try_into().unwrap_or_default());
        }
        for &(at, mask) in writable {
            let byte = offset + 2 + at;
            let shift = (byte % 4) * 8;
            self.write_masks[byte / 4] |= mask << shift;
        }
        match self.last_capability {
            Some(prev) => self.write_byte_raw(prev + 1, offset as u8),
            None => {
                self.regs[CAPABILITY_REG] = offset as u32;
                self.regs[1] |= STATUS_CAP_LIST << 16;
            }
        }
        self.last_capability = Some(offset);
        self.next_capability = offset + len;
        Ok(offset)
    }

    fn write_byte_raw(&mut self, offset: usize, value: u8) {
        let shift = (offset % 4) * 8;
        let reg = &mut self.regs[offset / 4];
        *reg = (*reg & !(0xff << shift)) | (u32::from(value) << shift);
    }

    /// Reads register `reg` (a dword index); out of range reads all ones.
    pub fn read_reg(&self, reg: usize) -> u32 {
        self.regs.get(reg).copied().unwrap_or(0xffff_ffff)
    }

    /// Raw access for device models that keep their own registers here.
    pub fn set_reg(&mut self, reg: usize, value: u32) {
        if let Some(r) = self.regs.get_mut(reg) {
            *r = value;
        }
    }

    /// A guest write of 1, 2 or 4 bytes at `offset`, honouring write masks.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        if !matches!(data.len(), 1 | 2 | 4)
            || !offset.is_multiple_of(data.len())
            || offset + data.len() > CONFIG_SPACE_SIZE
        {
            return;
        }
        let reg = offset / 4;
        let shift = (offset % 4) * 8;
        let mut value = 0u32;
        for (i, b) in data.iter().enumerate() {
            value |= u32::from(*b) << (8 * i);
        }
        let size_mask = if data.len() == 4 {
            u32::MAX
        } else {
            ((1u32 << (8 * data.len())) - 1) << shift
        };
        let mask = self.write_masks[reg] & size_mask;
        self.regs[reg] = (self.regs[reg] & !mask) | ((value << shift) & mask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PciConfig {
        PciConfig::new(PciIdentity {
            vendor: 0x1b36,
            device: 0x0100,
            revision: 4,
            class: 0x030000,
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        })
    }

    #[test]
    fn identity_registers() {
        let c = config();
        assert_eq!(c.read_reg(0), 0x0100_1b36);
        assert_eq!(c.read_reg(2), 0x0300_0004);
        assert_eq!(c.read_reg(11), 0x1100_1af4);
    }

    #[test]
    fn bar_sizing_and_programming() {
        let mut c = config();
        c.add_bar(
            0,
            Bar {
                size: 64 << 20,
                kind: BarKind::Memory32,
                prefetchable: false,
            },
        )
        .unwrap();
        c.add_bar(
            3,
            Bar {
                size: 32,
                kind: BarKind::Io,
                prefetchable: false,
            },
        )
        .unwrap();
        c.add_bar(
            4,
            Bar {
                size: 1 << 33,
                kind: BarKind::Memory64,
                prefetchable: true,
            },
        )
        .unwrap();
        // Size probe.
        c.write(0x10, &u32::MAX.to_le_bytes());
        assert_eq!(c.read_reg(4), 0xfc00_0000);
        c.write(0x1c, &u32::MAX.to_le_bytes());
        assert_eq!(c.read_reg(7), 0xffff_ffe1);
        c.write(0x20, &u32::MAX.to_le_bytes());
        c.write(0x24, &u32::MAX.to_le_bytes());
        assert_eq!(c.read_reg(8), 0x0000_000c);
        assert_eq!(c.read_reg(9), 0xffff_fffe);
        // Program and decode.
        c.write(0x10, &0xc000_0000u32.to_le_bytes());
        assert_eq!(c.bar_range(0), None, "memory decoding off");
        c.write(0x04, &[0x03, 0x00]);
        assert_eq!(c.bar_range(0), Some(0xc000_0000..0xc400_0000));
        c.write(0x20, &0u32.to_le_bytes());
        c.write(0x24, &4u32.to_le_bytes());
        assert_eq!(c.bar_address(4), Some(4 << 32));
        assert!(c.bar(5).is_none(), "upper half of a 64-bit BAR");
    }

    #[test]
    fn bad_bars_are_refused() {
        let mut c = config();
        assert!(c
            .add_bar(
                0,
                Bar {
                    size: 3000,
                    kind: BarKind::Memory32,
                    prefetchable: false
                }
            )
            .is_err());
        assert!(c
            .add_bar(
                5,
                Bar {
                    size: 4096,
                    kind: BarKind::Memory64,
                    prefetchable: false
                }
            )
            .is_err());
        c.add_bar(
            1,
            Bar {
                size: 4096,
                kind: BarKind::Memory32,
                prefetchable: false,
            },
        )
        .unwrap();
        assert!(c
            .add_bar(
                0,
                Bar {
                    size: 4096,
                    kind: BarKind::Memory64,
                    prefetchable: false
                }
            )
            .is_err());
    }

    #[test]
    fn read_only_registers_stay_put() {
        let mut c = config();
        c.write(0, &[0xff, 0xff, 0xff, 0xff]);
        c.write(0x0a, &[0x12, 0x34]);
        assert_eq!(c.read_reg(0), 0x0100_1b36);
        assert_eq!(c.read_reg(2), 0x0300_0004);
        c.write(0x3c, &[11]);
        assert_eq!(c.read_reg(15) & 0xff, 11);
        // Unaligned and odd-sized writes are ignored.
        c.write(0x3d, &[1, 2]);
        c.write(4095, &[1, 2, 3, 4]);
    }

    #[test]
    fn capability_chain() {
        let mut c = config();
        let a = c.add_capability(0x05, &[0; 12], &[]).unwrap();
        let b = c.add_capability(0x11, &[0; 10], &[(0, 0xffff)]).unwrap();
        assert_eq!(c.read_reg(13) & 0xff, a as u32);
        assert_eq!((c.read_reg(a / 4) >> 8) & 0xff, b as u32);
        assert_ne!(c.read_reg(1) & (STATUS_CAP_LIST << 16), 0);
        c.write(b + 2, &[0x34, 0x12]);
        assert_eq!(c.read_reg(b / 4) >> 16, 0x1234);
    }
}
