//! What QXL gives the VGA fallback (the VGA device lives in `devices::vga`),
//! as QEMU's `qxl-vga` does: one PCI function is both, the VGA core's video
//! memory *is* the start of QXL's BAR 0, and only one of them shows the
//! screen at a time.
//!
//! * **Video memory.** [`VgaLink::framebuffer`] is BAR 0's memory;
//!   `framebuffer_offset` (0) and `framebuffer_size` (the `vgamem` area,
//!   16 MiB by default) delimit what the VGA core may use: the Bochs VBE
//!   linear framebuffer starts at offset 0. The guest sees it at BAR 0's
//!   address (ask the PCI root after BAR assignment:
//!   `PciRoot::bar_region(slot, 0)`); that is the `lfb_base` for
//!   `screen_info`. Linux's qxl driver later reuses the area for its own
//!   objects, which is fine: QXL owns the screen by then.
//! * **Who shows the screen: [`VgaLink::switch`]**, the display's
//!   [`ScanoutSwitch`] (see there for the protocol). QXL enters native mode
//!   when the guest creates a primary surface (before it resizes head 0) and
//!   leaves it on reset and whenever it goes back to VGA mode; its legacy
//!   write hook is set here: on revision 4 a legacy VGA register write
//!   throws the device out of native mode, as in QEMU; on revision 5 it
//!   does nothing.
//! * **Both draw into head 0 of [`VgaLink::display`]**, the one `Display`
//!   of this device (the SPICE server shows it).
//! * **Dirty tracking.** BAR 0 is mapped without KVM dirty logging. If the
//!   VGA scan-out wants it, call [`super::Qxl::set_bar0_dirty_logging`]
//!   before the VMM assigns the BARs (the mapping's flags are read then).
//! * **Reset.** A machine reset reaches QXL through
//!   [`super::QxlControl::reset`]; the device then gives the screen back.

use std::sync::Arc;

use super::worker::Frontend;
use crate::display::{Display, ScanoutSwitch};
use crate::memory::DeviceMemory;

/// What the VGA device gets from QXL.
#[derive(Clone)]
pub struct VgaLink {
    pub framebuffer: DeviceMemory,
    pub framebuffer_offset: u64,
    pub framebuffer_size: u64,
    pub display: Arc<Display>,
    pub switch: Arc<ScanoutSwitch>,
}

impl VgaLink {
    /// True while QXL owns the screen (native mode).
    pub fn qxl_owns_screen(&self) -> bool {
        self.switch.native()
    }
}

/// Makes `switch` send legacy VGA register writes to the device's worker
/// (which applies the revision rule; one request queued at a time).
pub(crate) fn hook_legacy_writes(switch: &ScanoutSwitch, frontend: &Arc<Frontend>) {
    let frontend = Arc::downgrade(frontend);
    switch.set_legacy_write_hook(move || {
        if let Some(frontend) = frontend.upgrade() {
            frontend.vga_port_written();
        }
    });
}
