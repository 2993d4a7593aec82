//! Who shows display head 0: the VGA fallback (legacy text/graphics or the
//! VBE linear framebuffer) or a native display device (QXL in native mode).
//!
//! One [`ScanoutSwitch`] per display, shared by the VGA and the native
//! device that draw into it (in the machine: QXL creates it and hands it to
//! the VGA with `Qxl::vga`; a VGA without QXL has one of its own). The
//! protocol:
//!
//! * **Native device takes the screen** (QXL: the guest creates a primary
//!   surface): call [`ScanoutSwitch::enter_native`] *before* resizing or
//!   drawing head 0. From then on the VGA leaves head 0 alone (its refresh
//!   does nothing and the VMM fetches no dirty logs for it).
//! * **Native device gives it back** (QXL: device reset, back to VGA mode):
//!   call [`ScanoutSwitch::leave_native`], and stop drawing. The VGA repaints
//!   head 0 completely, resized to its own mode, on its next refresh.
//! * **Race-free hand-over.** Every change bumps [`ScanoutSwitch::generation`].
//!   The VGA reads the generation when a refresh starts and checks
//!   [`ScanoutSwitch::vga_owns`] with it *inside* the `Display::draw` /
//!   `Display::resize_if` closures, i.e. under the display's lock. The native
//!   device flips the flag before it takes that lock to resize head 0, so a
//!   VGA refresh that started before the hand-over either finishes before the
//!   native device's resize or draws nothing.
//! * **Legacy writes.** The VGA calls [`ScanoutSwitch::legacy_write`] for a
//!   guest write to a legacy VGA register port (the ports QEMU's qxl-vga
//!   watches: `devices::vga::is_watched_port`), before it takes its own lock.
//!   While native mode is on, that runs the hook the native device set with
//!   [`ScanoutSwitch::set_legacy_write_hook`] (QXL revision ≤ 4 leaves native
//!   mode then, as in QEMU; revision 5 ignores it). The hook runs on the vCPU
//!   thread, so it must not block for long (QXL queues a request to its worker).
//!
//! All calls are atomics (the hook a short mutex), never the VGA's or the
//! display's locks, so a device may call them while holding its own.

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

impl std::fmt::Debug for ScanoutSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanoutSwitch")
            .field("native", &self.native.load(Ordering::SeqCst))
            .field("generation", &self.generation())
            .finish()
    }
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

    /// Does a native device own head 0 now?
    pub fn native(&self) -> bool {
        self.native.load(Ordering::SeqCst)
    }

    /// Is the VGA the one showing head 0?
    pub fn vga_active(&self) -> bool {
        !self.native()
    }

    /// Changes whenever ownership of head 0 changes hands.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// True when the VGA owned head 0 at `generation` and still does (no
    /// hand-over since): what the VGA checks under the display lock.
    pub fn vga_owns(&self, generation: u64) -> bool {
        self.vga_active() && self.generation() == generation
    }

    /// Sets the function called on legacy VGA port writes in native mode.
    pub fn set_legacy_write_hook(&self, hook: impl Fn() + Send + Sync + 'static) {
        *lock(&self.legacy_write_hook) = Some(Arc::new(hook));
    }

    /// The guest wrote a legacy VGA register port (called by the VGA before
    /// it locks itself); runs the hook while native mode is on.
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
        assert!(switch.vga_owns(g0));
        switch.enter_native();
        switch.enter_native();
        assert!(switch.native());
        assert_eq!(switch.generation(), g0 + 1, "repeated calls are one change");
        assert!(!switch.vga_owns(g0));
        assert!(!switch.vga_owns(g0 + 1), "native: the VGA owns nothing");
        switch.leave_native();
        assert!(switch.vga_active());
        assert_eq!(switch.generation(), g0 + 2);
        assert!(!switch.vga_owns(g0), "a refresh from before must not draw");
        assert!(switch.vga_owns(g0 + 2));
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
