//! Who shows display head 0: the VGA (legacy text/graphics or the VBE linear
//! framebuffer) or a native display device (QXL in native mode).
//!
//! The machine has one [`ScanoutSwitch`], shared by the VGA and the QXL
//! device. Protocol for the native device:
//!
//! * When its driver takes over the screen (QXL: the guest creates the
//!   primary surface), call [`ScanoutSwitch::enter_native`] *before* drawing
//!   into head 0. From then on the VGA leaves head 0 alone (its refresh is a
//!   no-op and the VMM stops fetching its dirty logs).
//! * When it gives the screen back (QXL: device reset, primary destroyed,
//!   back to VGA mode), call [`ScanoutSwitch::leave_native`]. The VGA repaints
//!   head 0 completely (resizing it to its own mode) on its next refresh.
//! * Optionally, register [`ScanoutSwitch::set_legacy_write_hook`]: it runs
//!   when the guest writes a legacy VGA or VBE port while native mode is on
//!   (QEMU's qxl up to revision 4 leaves native mode then; revision 5 does
//!   not). The hook runs on the vCPU thread, before the VGA's own lock is
//!   taken, so it may lock the QXL device and call `leave_native`.
//!
//! Both calls are cheap (atomics) and never take the VGA's lock, so the QXL
//! device may call them while holding its own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::bus::lock;

type Hook = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub struct ScanoutSwitch {
    native: AtomicBool,
    /// Bumped on every hand-over, so the VGA knows to repaint everything.
    generation: AtomicU64,
    legacy_write_hook: Mutex<Option<Hook>>,
}

impl ScanoutSwitch {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A native device now owns head 0; the VGA stops scanning out.
    pub fn enter_native(&self) {
        if !self.native.swap(true, Ordering::SeqCst) {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The VGA owns head 0 again and repaints it.
    pub fn leave_native(&self) {
        if self.native.swap(false, Ordering::SeqCst) {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Is the VGA the one showing head 0?
    pub fn vga_active(&self) -> bool {
        !self.native.load(Ordering::SeqCst)
    }

    /// Changes whenever ownership of head 0 changes hands.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Sets the function called on legacy VGA/VBE port writes in native mode.
    pub fn set_legacy_write_hook(&self, hook: impl Fn() + Send + Sync + 'static) {
        *lock(&self.legacy_write_hook) = Some(Arc::new(hook));
    }

    /// Called by the VGA's port handler for every write, before it locks the VGA.
    pub fn legacy_write(&self) {
        if self.vga_active() {
            return;
        }
        let hook = lock(&self.legacy_write_hook).clone();
        if let Some(hook) = hook {
            hook();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn hand_over_and_back() {
        let switch = ScanoutSwitch::new();
        assert!(switch.vga_active());
        let g0 = switch.generation();
        switch.enter_native();
        switch.enter_native();
        assert!(!switch.vga_active());
        assert_eq!(switch.generation(), g0 + 1, "repeated calls are one change");
        switch.leave_native();
        assert!(switch.vga_active());
        assert_eq!(switch.generation(), g0 + 2);
    }

    #[test]
    fn hook_runs_only_in_native_mode() {
        let switch = ScanoutSwitch::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let weak = Arc::downgrade(&switch);
        switch.set_legacy_write_hook(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            // What a revision-4 QXL does: leave native mode.
            if let Some(s) = weak.upgrade() {
                s.leave_native();
            }
        });
        switch.legacy_write();
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        switch.enter_native();
        switch.legacy_write();
        switch.legacy_write();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(switch.vga_active());
    }
}
