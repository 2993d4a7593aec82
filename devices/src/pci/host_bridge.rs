//! The host bridge at 00:00.0.

use super::{PciConfig, PciDevice, PciIdentity};

pub struct HostBridge {
    config: PciConfig,
}

impl Default for HostBridge {
    fn default() -> Self {
        HostBridge {
            config: PciConfig::new(PciIdentity {
                vendor: 0x1b36, // Red Hat, Inc.
                device: 0x0008, // PCIe host bridge
                revision: 0,
                class: 0x06_00_00,
                subsystem_vendor: 0x1af4,
                subsystem: 0x1100,
            }),
        }
    }
}

impl HostBridge {
    /// Intel's 440FX host bridge (as QEMU's `pc` machine shows it): the
    /// identity SeaBIOS looks for to know it may use fw_cfg. Its PAM
    /// registers are plain storage: the BIOS segment is RAM here.
    pub fn i440fx() -> Self {
        HostBridge {
            config: PciConfig::new(PciIdentity {
                vendor: 0x8086,
                device: 0x1237,
                revision: 2,
                class: 0x06_00_00,
                subsystem_vendor: 0x1af4,
                subsystem: 0x1100,
            }),
        }
    }
}

impl PciDevice for HostBridge {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
}
