//! How the VM ends: the first of power-off, reset, a user stop or a fatal
//! error wins, and the main thread is woken to act on it.

use std::sync::{Condvar, Mutex};

use devices::system::{SystemEvent, SystemEvents};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest powered off (ACPI S5).
    PowerOff,
    /// The guest asked for a reset (reset register, i8042, triple fault).
    Reset,
    /// The user stopped the VM (Ctrl-a x on the console, or the API).
    Stopped,
    /// Something went wrong that the VM cannot continue from.
    Error(String),
}

#[derive(Default)]
pub struct ExitSignal {
    reason: Mutex<Option<VmExit>>,
    changed: Condvar,
}

impl ExitSignal {
    pub fn request(&self, exit: VmExit) {
        let mut reason = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if reason.is_none() {
            tracing::info!("VM exit: {exit:?}");
            *reason = Some(exit);
            self.changed.notify_all();
        }
    }

    pub fn is_set(&self) -> bool {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Blocks until the VM ends.
    pub fn wait(&self) -> VmExit {
        let mut reason = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(exit) = reason.clone() {
                return exit;
            }
            reason = self.changed.wait(reason).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl SystemEvents for ExitSignal {
    fn request(&self, event: SystemEvent) {
        ExitSignal::request(
            self,
            match event {
                SystemEvent::PowerOff => VmExit::PowerOff,
                SystemEvent::Reset => VmExit::Reset,
            },
        )
    }
}
