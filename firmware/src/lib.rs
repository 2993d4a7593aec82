//! What the guest's firmware and boot code see: the physical memory layout,
//! the e820 map, the ACPI tables, and for a BIOS: fw_cfg, the ACPI table
//! loader and the BIOS image.

#![forbid(unsafe_code)]

pub mod acpi;
pub mod acpi_loader;
pub mod bios;
pub mod e820;
pub mod fw_cfg;
pub mod layout;
pub mod linuxboot;
