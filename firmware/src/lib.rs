//! What the guest's firmware and boot code see: the physical memory layout,
//! the e820 map and the ACPI tables.

pub mod acpi;
pub mod e820;
pub mod layout;
