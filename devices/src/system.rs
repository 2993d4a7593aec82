//! Requests from the guest to power off or reset the machine.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemEvent {
    PowerOff,
    Reset,
}

/// Receives the guest's power-off and reset requests (ACPI S5, the reset
/// register, the i8042 reset line).
pub trait SystemEvents: Send + Sync {
    fn request(&self, event: SystemEvent);
}
