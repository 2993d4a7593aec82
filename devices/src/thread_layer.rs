//! A narrowing the VMM applies to each device thread (and to the SPICE
//! server's) once the VM is set up (a seccomp layer: docs/seccomp.md),
//! without the threads knowing what it is.
//!
//! Device threads start during set-up, before the VMM installs its
//! process-wide filter, and a thread can add a narrower layer on itself
//! only after that. So the VMM registers the layer here once the filter is
//! in place ([`register`]), and each device thread calls
//! [`ThreadLayer::before_work`] at the top of its loop: the first round
//! after registration applies it, before any work of that round.

use std::sync::OnceLock;

type Layer = Box<dyn Fn(WorkerKind) + Send + Sync>;

static LAYER: OnceLock<Layer> = OnceLock::new();

/// What a thread does, so that its layer fits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerKind {
    /// Moves frames to and from a network backend (a socket).
    Network,
    /// Serves clients over sockets and starts a thread for some of them
    /// (the SPICE loop).
    Server,
    /// Works on memory alone and hands its results to other threads
    /// through queues (the SPICE display workers and encoders).
    Compute,
    /// Any other device thread: disks, display, sound.
    #[default]
    Other,
}

/// Registers the layer (once per process; false if one already was).
pub fn register(layer: impl Fn(WorkerKind) + Send + Sync + 'static) -> bool {
    LAYER.set(Box::new(layer)).is_ok()
}

/// One thread's state: what it does, and whether it applied the layer.
#[derive(Debug, Default)]
pub struct ThreadLayer {
    kind: WorkerKind,
    applied: bool,
}

impl ThreadLayer {
    pub const fn new(kind: WorkerKind) -> Self {
        ThreadLayer {
            kind,
            applied: false,
        }
    }

    /// Applies the registered layer to the calling thread, the first time
    /// one is registered.
    pub fn before_work(&mut self) {
        if !self.applied {
            if let Some(layer) = LAYER.get() {
                layer(self.kind);
                self.applied = true;
            }
        }
    }
}
