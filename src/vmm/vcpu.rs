//! One thread per vCPU: run the guest, carry out its port and MMIO accesses
//! on the buses, and report how it stopped.

use std::sync::Arc;
use std::thread::JoinHandle;

use devices::bus::Bus;
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::exit::{ExitSignal, VmExit};

pub struct VcpuContext {
    pub io_bus: Arc<Bus>,
    pub mmio_bus: Arc<Bus>,
    pub exit: Arc<ExitSignal>,
}

pub fn spawn(id: u8, mut vcpu: VcpuFd, ctx: Arc<VcpuContext>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("vcpu{id}"))
        .spawn(move || {
            let exit = run(id, &mut vcpu, &ctx);
            ctx.exit.request(exit);
        })
}

fn run(id: u8, vcpu: &mut VcpuFd, ctx: &VcpuContext) -> VmExit {
    loop {
        if ctx.exit.is_set() {
            return VmExit::Stopped;
        }
        match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                if !ctx.io_bus.read(u64::from(port), data) {
                    tracing::trace!("unhandled port read {port:#x}");
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                if !ctx.io_bus.write(u64::from(port), data) {
                    tracing::trace!("unhandled port write {port:#x} {data:x?}");
                }
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                if !ctx.mmio_bus.read(addr, data) {
                    tracing::debug!("unhandled MMIO read {addr:#x}");
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                if !ctx.mmio_bus.write(addr, data) {
                    tracing::debug!("unhandled MMIO write {addr:#x} {data:x?}");
                }
            }
            Ok(VcpuExit::Hlt) => {
                // With the in-kernel LAPIC, HLT is handled by KVM; an exit
                // here means the CPU halted with interrupts off for good.
                tracing::info!("vCPU {id} halted");
                return VmExit::Stopped;
            }
            Ok(VcpuExit::Shutdown) => {
                // A triple fault resets a PC.
                tracing::info!("vCPU {id}: triple fault, resetting");
                return VmExit::Reset;
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => {
                return match kind {
                    kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => VmExit::PowerOff,
                    kvm_bindings::KVM_SYSTEM_EVENT_RESET => VmExit::Reset,
                    other => VmExit::Error(format!("vCPU {id}: unexpected system event {other}")),
                };
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                return VmExit::Error(format!(
                    "vCPU {id} could not enter the guest (hardware reason {reason:#x}, cpu {cpu})"
                ));
            }
            Ok(VcpuExit::InternalError) => {
                let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or_default();
                return VmExit::Error(format!(
                    "vCPU {id}: KVM internal error (emulation failure) at rip {rip:#x}"
                ));
            }
            Ok(VcpuExit::Intr) => {}
            Ok(other) => {
                return VmExit::Error(format!("vCPU {id}: unexpected exit {other:?}"));
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => return VmExit::Error(format!("vCPU {id}: KVM_RUN failed: {e}")),
        }
    }
}
