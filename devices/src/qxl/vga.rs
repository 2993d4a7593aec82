//! The contract between QXL and the VGA/VBE fallback (the VGA device lives
//! in `devices::vga`; this is QXL's side of it).
//!
//! As in QEMU's `qxl-vga`, one PCI function is both: the VGA core's video
//! memory *is* the start of QXL's BAR 0, and only one of them shows the
//! screen at a time.
//!
//! * **Video memory.** [`VgaLink::framebuffer`] is BAR 0's memory;
//!   `framebuffer_offset` (0) and `framebuffer_size` (the `vgamem` area,
//!   16 MiB by default) delimit what the VGA core may use: planar VGA
//!   memory and the Bochs VBE linear framebuffer start at offset 0. The
//!   guest sees it at BAR 0's address (ask the PCI root:
//!   `PciRoot::bar_region(slot, 0)`); that is the `lfb_base` for
//!   `screen_info`. Linux's qxl driver later reuses the area for its own
//!   objects, which is fine: QXL owns the screen by then.
//! * **Who shows the screen.** [`ScreenOwner::qxl_owns_screen`] is true from
//!   the moment the guest creates a QXL primary surface until the device
//!   goes back to VGA mode (reset, or on revision 4 a legacy VGA register
//!   write, see below). While it is true the VGA device must not draw into
//!   the display. To make the hand-over race-free, check it *inside* the
//!   `Display::draw` (or `resize`) closure you draw with: QXL flips the flag
//!   before it resizes head 0, under the same lock. [`ScreenOwner::generation`]
//!   changes on every hand-over: when it changed and QXL no longer owns the
//!   screen, repaint everything (resize head 0 to your mode).
//! * **Both draw into head 0 of [`VgaLink::display`]**, the one `Display`
//!   of this device (the SPICE server shows it).
//! * **Legacy port writes.** Call [`VgaLink::legacy_port_written`] for every
//!   guest *write* to 0x3b4, 0x3b5, 0x3ba, 0x3c0..=0x3cf, 0x3d4, 0x3d5,
//!   0x3da (not for reads, not for the VBE ports 0x1ce..0x1d0, not for the
//!   0xa0000 window). On revision 4 this throws the device out of native
//!   mode, as in QEMU; on revision 5 it does nothing. It is cheap (an atomic
//!   load) while VGA owns the screen.
//! * **Dirty tracking.** BAR 0 is mapped without KVM dirty logging. If the
//!   VGA scan-out wants it, call [`super::Qxl::set_bar0_dirty_logging`]
//!   before the VMM assigns the BARs (the mapping's flags are read then).
//! * **Reset.** A machine reset reaches QXL through
//!   [`super::QxlControl::reset`]; the device then gives the screen back
//!   (`qxl_owns_screen()` false, generation bumped).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::worker::Frontend;
use crate::display::Display;
use crate::memory::DeviceMemory;

/// Which device shows the screen.
#[derive(Debug, Default)]
pub struct ScreenOwner {
    qxl: AtomicBool,
    generation: AtomicU64,
}

impl ScreenOwner {
    /// True while QXL is in native mode (or has left VGA mode and not
    /// returned): the VGA device must not draw.
    pub fn qxl_owns_screen(&self) -> bool {
        self.qxl.load(Ordering::SeqCst)
    }

    /// Changes on every hand-over between QXL and VGA.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub(crate) fn set_qxl(&self, qxl: bool) {
        if self.qxl.swap(qxl, Ordering::SeqCst) != qxl {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// What the VGA device gets from QXL.
#[derive(Clone)]
pub struct VgaLink {
    pub framebuffer: DeviceMemory,
    pub framebuffer_offset: u64,
    pub framebuffer_size: u64,
    pub display: Arc<Display>,
    pub screen: Arc<ScreenOwner>,
    pub(crate) frontend: Arc<Frontend>,
}

impl VgaLink {
    pub fn qxl_owns_screen(&self) -> bool {
        self.screen.qxl_owns_screen()
    }

    /// A guest write to a legacy VGA register port (see the module docs).
    pub fn legacy_port_written(&self) {
        if self.screen.qxl_owns_screen() {
            self.frontend.vga_port_written();
        }
    }
}
