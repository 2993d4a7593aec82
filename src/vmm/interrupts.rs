//! The VMM's side of device interrupts: irqfd for edge-triggered ISA lines,
//! KVM_IRQ_LINE for level-triggered lines (shared between devices), and
//! KVM_SIGNAL_MSI for message-signalled interrupts (MSI-X).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use devices::interrupt::{EdgeInterrupt, LevelInterrupt, MsiDelivery};
use kvm_bindings::kvm_msi;
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

/// MSI messages, injected with KVM_SIGNAL_MSI into the in-kernel local
/// APICs. On x86 a message must be addressed to 0xfee0_0000..0xfeef_ffff
/// (the APIC window); a guest that programs anything else gets nothing.
pub struct KvmMsi {
    vm: Arc<VmFd>,
    refused: AtomicU64,
}

impl KvmMsi {
    pub fn new(vm: Arc<VmFd>) -> Arc<Self> {
        Arc::new(KvmMsi {
            vm,
            refused: AtomicU64::new(0),
        })
    }

    fn refuse(&self, what: std::fmt::Arguments<'_>) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 8 || n.is_power_of_two() {
            tracing::warn!("MSI #{n} not delivered: {what}");
        }
    }
}

/// How the virtio PCI function in `slot` reaches the guest: MSI-X
/// through `msi`, or the slot's INTx line when the driver does not enable
/// MSI-X.
pub fn virtio_wiring(
    slot: u8,
    memory: &devices::virtio::GuestMemory,
    msi: &Arc<dyn MsiDelivery>,
    lines: &Arc<LevelLines>,
) -> devices::virtio::pci::Wiring {
    let gsi = firmware::layout::pci_irq_for(slot, 0);
    devices::virtio::pci::Wiring {
        memory: memory.clone(),
        msi: msi.clone(),
        intx: lines.source(gsi),
        intx_line: gsi as u8,
    }
}

/// Whether an MSI address targets the local APICs.
pub fn is_apic_message_address(address: u64) -> bool {
    address >> 20 == 0xfee
}

impl MsiDelivery for KvmMsi {
    fn deliver(&self, address: u64, data: u32) {
        if !is_apic_message_address(address) {
            self.refuse(format_args!("address {address:#x} is not the APIC window"));
            return;
        }
        let msi = kvm_msi {
            address_lo: address as u32,
            address_hi: (address >> 32) as u32,
            data,
            ..Default::default()
        };
        if let Err(e) = self.vm.signal_msi(msi) {
            self.refuse(format_args!("KVM_SIGNAL_MSI: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apic_window() {
        assert!(is_apic_message_address(0xfee0_0000));
        assert!(is_apic_message_address(0xfeef_f00c));
        assert!(!is_apic_message_address(0xfed0_0000));
        assert!(!is_apic_message_address(0x1_fee0_0000));
        assert!(!is_apic_message_address(0));
    }
}
