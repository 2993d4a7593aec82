//! How devices raise interrupts without knowing how the VMM delivers them.

/// An edge-triggered interrupt (ISA devices): each call delivers one interrupt.
pub trait EdgeInterrupt: Send + Sync {
    fn trigger(&self);
}

/// A level-triggered line (PCI INTx, the ACPI SCI): asserted while the device
/// has something pending.
pub trait LevelInterrupt: Send + Sync {
    fn set_level(&self, asserted: bool);
}

/// Message-signalled interrupts (MSI/MSI-X): the message the guest programmed.
pub trait MsiDelivery: Send + Sync {
    fn deliver(&self, address: u64, data: u32);
}

/// An interrupt that goes nowhere, for devices under test.
#[derive(Debug, Default)]
pub struct NoInterrupt;

impl EdgeInterrupt for NoInterrupt {
    fn trigger(&self) {}
}

impl LevelInterrupt for NoInterrupt {
    fn set_level(&self, _asserted: bool) {}
}

impl MsiDelivery for NoInterrupt {
    fn deliver(&self, _address: u64, _data: u32) {}
}
