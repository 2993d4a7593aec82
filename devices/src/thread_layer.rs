//! A narrowing the VMM applies to each device thread once the VM is set up
//! (a seccomp layer: docs/seccomp.md), without the devices knowing what it is.
//!
//! Device threads start during set-up, before the VMM installs its
//! process-wide filter, and a thread can add a narrower layer on itself
//! only after that. So the VMM registers the layer here once the filter is
//! in place ([`register`]), and each device thread calls
//! [`ThreadLayer::before_work`] at the top of its loop: the first round
//! after registration applies it, before any work of that round.

use std::sync::OnceLock;

type Layer = Box<dyn Fn() + Send + Sync>;

static LAYER: OnceLock<Layer> = OnceLock::new();

/// Registers the layer (once per process; false if one already was).
pub fn register(layer: impl Fn() + Send + Sync + 'static) -> bool {
    LAYER.set(Box::new(layer)).is_ok()
}

/// One thread's state: whether it applied the layer.
#[derive(Debug, Default)]
pub struct ThreadLayer {
    applied: bool,
}

impl ThreadLayer {
    /// Applies the registered layer to the calling thread, the first time
    /// one is registered.
    pub fn before_work(&mut self) {
        if !self.applied {
            if let Some(layer) = LAYER.get() {
                layer();
                self.applied = true;
            }
        }
    }
}
