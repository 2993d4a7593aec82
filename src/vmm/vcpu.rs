//! One thread per vCPU: run the guest, carry out its port and MMIO accesses
//! on the buses, and report how it stopped.
//!
//! Debugging aid: SIGUSR1 sent to a vCPU thread (`kill -USR1` on its thread id,
//! see /proc/PID/task) makes it log its registers and exit counts.

use std::sync::Arc;
use std::thread::JoinHandle;

use devices::bus::Bus;
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::exit::{ExitSignal, VmExit};
use super::stats::ExitTotals;

pub struct VcpuContext {
    pub io_bus: Arc<Bus>,
    pub mmio_bus: Arc<Bus>,
    pub exit: Arc<ExitSignal>,
    /// Exits of all vCPUs (the stats dump).
    pub totals: Arc<ExitTotals>,
    /// The filter each vCPU thread narrows itself with (docs/seccomp.md).
    pub seccomp: saffron::seccomp::SeccompMode,
}

extern "C" fn interrupt_kvm_run(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Lets SIGUSR1 interrupt KVM_RUN (the handler does nothing; KVM_RUN returns EINTR).
pub fn install_debug_signal() {
    if let Err(e) = vmm_sys_util::signal::register_signal_handler(libc::SIGUSR1, interrupt_kvm_run)
    {
        tracing::debug!("no SIGUSR1 register dumps: {e}");
    }
}

#[derive(Default)]
struct ExitCounts {
    io: u64,
    mmio: u64,
    other: u64,
}

fn dump_state(id: u8, vcpu: &VcpuFd, counts: &ExitCounts) {
    let regs = vcpu.get_regs().unwrap_or_default();
    let sregs = vcpu.get_sregs().unwrap_or_default();
    tracing::warn!(
        "vCPU {id}: rip {:#x} rsp {:#x} rflags {:#x} rax {:#x} rcx {:#x} rdx {:#x} cr3 {:#x} | exits: io {} mmio {} other {}",
        regs.rip, regs.rsp, regs.rflags, regs.rax, regs.rcx, regs.rdx, sregs.cr3, counts.io, counts.mmio, counts.other
    );
}

pub fn spawn(id: u8, mut vcpu: VcpuFd, ctx: Arc<VcpuContext>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("vcpu{id}"))
        .spawn(move || {
            let exit = match saffron::seccomp::restrict_vcpu_thread(ctx.seccomp) {
                Ok(()) => run(id, &mut vcpu, &ctx),
                Err(e) => VmExit::Error(format!("vCPU {id}: {e}")),
            };
            ctx.exit.request(exit);
        })
}

fn run(id: u8, vcpu: &mut VcpuFd, ctx: &VcpuContext) -> VmExit {
    let mut counts = ExitCounts::default();
    loop {
        if ctx.exit.is_set() {
            return VmExit::Stopped;
        }
        match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                counts.io += 1;
                ExitTotals::count(&ctx.totals.io);
                if !ctx.io_bus.read(u64::from(port), data) {
                    tracing::trace!("unhandled port read {port:#x}");
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                counts.io += 1;
                ExitTotals::count(&ctx.totals.io);
                if !ctx.io_bus.write(u64::from(port), data) {
                    tracing::trace!("unhandled port write {port:#x} {data:x?}");
                }
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                counts.mmio += 1;
                ExitTotals::count(&ctx.totals.mmio);
                if !ctx.mmio_bus.read(addr, data) {
                    tracing::debug!("unhandled MMIO read {addr:#x}");
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                counts.mmio += 1;
                ExitTotals::count(&ctx.totals.mmio);
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
                tracing::warn!("vCPU {id}: triple fault, resetting");
                dump_state(id, vcpu, &counts);
                if let Ok(events) = vcpu.get_vcpu_events() {
                    tracing::info!(
                        "vCPU {id} events: exception {} nr {} has_error {} error {:#x} | interrupt injected {} nr {} | nmi {}",
                        events.exception.injected, events.exception.nr, events.exception.has_error_code,
                        events.exception.error_code, events.interrupt.injected, events.interrupt.nr, events.nmi.injected
                    );
                }
                if let Ok(sregs) = vcpu.get_sregs() {
                    tracing::info!(
                        "vCPU {id}: cr0 {:#x} cr2 {:#x} cr4 {:#x} efer {:#x} idt {:#x}/{} gdt {:#x} tr {:#x}",
                        sregs.cr0, sregs.cr2, sregs.cr4, sregs.efer, sregs.idt.base, sregs.idt.limit, sregs.gdt.base, sregs.tr.base
                    );
                }
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
            Ok(VcpuExit::Intr) => {
                counts.other += 1;
                ExitTotals::count(&ctx.totals.other);
            }
            Ok(other) => {
                return VmExit::Error(format!("vCPU {id}: unexpected exit {other:?}"));
            }
            Err(e) if e.errno() == libc::EINTR => dump_state(id, vcpu, &counts),
            Err(e) if e.errno() == libc::EAGAIN => {}
            Err(e) => return VmExit::Error(format!("vCPU {id}: KVM_RUN failed: {e}")),
        }
    }
}
