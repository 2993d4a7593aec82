//! Saffron's device models. They know nothing of KVM or SPICE: they sit on
//! buses ([`bus`]), raise interrupts through [`interrupt`] traits, and hand
//! their output (frames, rings) to whoever consumes them through interfaces.

#![forbid(unsafe_code)]

pub mod acpi_pm;
pub mod audio;
pub mod block;
pub mod bus;
pub mod display;
pub mod hda;
pub mod i8042;
pub mod interrupt;
pub mod memory;
pub mod pci;
pub mod qxl;
pub mod ratelimit;
pub mod rtc;
pub mod serial;
pub mod system;
#[cfg(test)]
mod test_util;
pub mod thread_layer;
pub mod vga;
pub mod virtio;
