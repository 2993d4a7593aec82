//! The VMM's side of device interrupts: irqfd for edge-triggered ISA lines,
//! and KVM_IRQ_LINE for level-triggered lines (shared between devices).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use devices::interrupt::{EdgeInterrupt, LevelInterrupt};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

/// An edge-triggered line backed by an irqfd: a write to the eventfd pulses the GSI.
pub struct IrqfdInterrupt {
    event: EventFd,
}

impl IrqfdInterrupt {
    pub fn new(vm: &VmFd, gsi: u32) -> Result<Arc<Self>, kvm_ioctls::Error> {
        let event = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|e| kvm_ioctls::Error::new(e.raw_os_error().unwrap_or(libc::EIO)))?;
        vm.register_irqfd(&event, gsi)?;
        Ok(Arc::new(IrqfdInterrupt { event }))
    }
}

impl EdgeInterrupt for IrqfdInterrupt {
    fn trigger(&self) {
        if let Err(e) = self.event.write(1) {
            tracing::warn!("lost an interrupt: {e}");
        }
    }
}

/// Level-triggered lines. Several devices may share one GSI; the line is
/// asserted while any of them asserts it.
pub struct LevelLines {
    vm: Arc<VmFd>,
    lines: Mutex<HashMap<u32, LineState>>,
}

#[derive(Default)]
struct LineState {
    sources: u32,
    asserted: u64,
}

impl LevelLines {
    pub fn new(vm: Arc<VmFd>) -> Arc<Self> {
        Arc::new(LevelLines {
            vm,
            lines: Mutex::new(HashMap::new()),
        })
    }

    /// A new source on `gsi` (up to 64 per line).
    pub fn source(self: &Arc<Self>, gsi: u32) -> Arc<dyn LevelInterrupt> {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let line = lines.entry(gsi).or_default();
        let bit = line.sources.min(63);
        line.sources += 1;
        Arc::new(LevelSource {
            lines: self.clone(),
            gsi,
            bit: 1 << bit,
        })
    }

    fn set(&self, gsi: u32, bit: u64, asserted: bool) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let line = lines.entry(gsi).or_default();
        let before = line.asserted != 0;
        if asserted {
            line.asserted |= bit;
        } else {
            line.asserted &= !bit;
        }
        let after = line.asserted != 0;
        if before != after {
            if let Err(e) = self.vm.set_irq_line(gsi, after) {
                tracing::warn!("cannot set interrupt line {gsi}: {e}");
            }
        }
    }
}

struct LevelSource {
    lines: Arc<LevelLines>,
    gsi: u32,
    bit: u64,
}

impl LevelInterrupt for LevelSource {
    fn set_level(&self, asserted: bool) {
        self.lines.set(self.gsi, self.bit, asserted);
    }
}
