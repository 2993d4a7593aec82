//! The PCI MSI capability (id 5) with one vector and 64-bit message
//! addresses, for functions with a single interrupt (the HDA controller, as
//! QEMU's `intel-hda` offers it). virtio's functions use MSI-X instead
//! (`virtio::msix`).
//!
//! Layout after the id and next bytes: message control (bit 0 enable, bit 7
//! 64-bit capable, one vector so no multiple-message bits), the address's
//! low and high dwords, the 16-bit data and two reserved bytes.

use super::{ConfigError, PciConfig};

pub const CAPABILITY_ID: u8 = 0x05;
const CONTROL_ENABLE: u32 = 1 << 0;
const CONTROL_64BIT: u8 = 1 << 7;

/// An MSI capability in a function's configuration space.
#[derive(Debug, Clone, Copy)]
pub struct Msi {
    offset: usize,
}

impl Msi {
    /// Appends the capability to `config`, disabled.
    pub fn add(config: &mut PciConfig) -> Result<Msi, ConfigError> {
        let mut body = [0u8; 14];
        body[0] = CONTROL_64BIT;
        // Guest-writable: the enable bit, the address (dword-aligned) and
        // the data.
        let writable = [
            (0, CONTROL_ENABLE),
            (2, 0xffff_fffc),
            (6, u32::MAX),
            (10, 0xffff),
        ];
        let offset = config.add_capability(CAPABILITY_ID, &body, &writable)?;
        Ok(Msi { offset })
    }

    /// The message (address, data) while the guest has MSI enabled.
    pub fn message(&self, config: &PciConfig) -> Option<(u64, u32)> {
        let reg = self.offset / 4;
        if config.read_reg(reg) >> 16 & CONTROL_ENABLE == 0 {
            return None;
        }
        let low = u64::from(config.read_reg(reg + 1));
        let high = u64::from(config.read_reg(reg + 2));
        let data = config.read_reg(reg + 3) & 0xffff;
        Some((high << 32 | low, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::PciIdentity;

    #[test]
    fn the_guest_programs_and_enables_one_message() {
        let mut config = PciConfig::new(PciIdentity::default());
        let msi = Msi::add(&mut config).unwrap();
        let at = msi.offset;
        assert_eq!(config.read_reg(at / 4) & 0xff, u32::from(CAPABILITY_ID));
        assert_eq!(config.read_reg(at / 4) >> 16, u32::from(CONTROL_64BIT));
        config.write(at + 4, &0xfee0_1003u32.to_le_bytes());
        config.write(at + 8, &0x0000_0001u32.to_le_bytes());
        config.write(at + 12, &0xdead_4041u32.to_le_bytes());
        assert_eq!(msi.message(&config), None, "not enabled yet");
        // Multiple-message bits and the read-only 64-bit bit stay as they are.
        config.write(at + 2, &[0x71, 0x00]);
        assert_eq!(msi.message(&config), Some((0x1_fee0_1000, 0x4041)));
        assert_eq!(config.read_reg(at / 4) >> 16, u32::from(CONTROL_64BIT) | 1);
        config.write(at + 2, &[0x00, 0x00]);
        assert_eq!(msi.message(&config), None);
    }
}
