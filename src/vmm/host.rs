//! Is this host able to run a stock guest kernel? Opens /dev/kvm and explains,
//! in one sentence, why not when it cannot.

use std::path::Path;

use kvm_ioctls::{Cap, Kvm};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "/dev/kvm does not exist: this host has no KVM; run saffron on a host with \
         hardware virtualization, or inside the nested runner (tests/nested/run -- saffron run ...)"
    )]
    NoKvm,
    #[error("cannot open /dev/kvm ({0}); make sure you are in the 'kvm' group or run as root")]
    Open(#[source] kvm_ioctls::Error),
    #[error(
        "/dev/kvm here is PVM (kvm_pvm), which cannot run a stock guest kernel: run saffron inside \
         the nested runner (tests/nested/run -- saffron run ...), or pass --pvm-guest if the kernel \
         is PVM-aware"
    )]
    Pvm,
    #[error("this KVM lacks {0}, which saffron needs")]
    MissingCapability(&'static str),
}

/// Whether the host's KVM is PVM (a paravirtual KVM for hosts without VT-x/AMD-V).
pub fn is_pvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

/// Opens KVM and checks that it can run our guests.
pub fn open_kvm(allow_pvm: bool) -> Result<Kvm, HostError> {
    if !Path::new("/dev/kvm").exists() {
        return Err(HostError::NoKvm);
    }
    if is_pvm() && !allow_pvm {
        return Err(HostError::Pvm);
    }
    let kvm = Kvm::new().map_err(HostError::Open)?;
    for (cap, name) in [
        (
            Cap::Irqchip,
            "an in-kernel interrupt controller (KVM_CAP_IRQCHIP)",
        ),
        (Cap::Pit2, "an in-kernel PIT (KVM_CAP_PIT2)"),
        (Cap::Irqfd, "irqfd (KVM_CAP_IRQFD)"),
        (Cap::UserMemory, "user memory regions (KVM_CAP_USER_MEMORY)"),
        (Cap::ExtCpuid, "KVM_GET_SUPPORTED_CPUID (KVM_CAP_EXT_CPUID)"),
        (Cap::SignalMsi, "MSI injection (KVM_CAP_SIGNAL_MSI)"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(HostError::MissingCapability(name));
        }
    }
    Ok(kvm)
}
