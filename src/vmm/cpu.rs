//! vCPU state at power-on: CPUID with a consistent topology, the MSRs Linux
//! expects, local APIC wiring, and (for the boot CPU) 64-bit long mode at the
//! kernel's entry point.

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, CpuId, Msrs};
use kvm_ioctls::VcpuFd;

use firmware::layout;

use super::boot::{BootEntry, BOOT_CS, BOOT_DS, BOOT_GDT, BOOT_TSS};

#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("cannot configure vCPU {cpu}: {what}: {source}")]
    Kvm {
        cpu: u8,
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("vCPU {cpu}: KVM accepted only {set} of {wanted} boot MSRs")]
    Msrs { cpu: u8, set: usize, wanted: usize },
}

/// Bits in CPUID leaf 1.
const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;
/// CPUID 1 ECX: VMX (Intel virtualization).
const ECX_VMX: u32 = 1 << 5;
/// CPUID 0x8000_0001 ECX: CmpLegacy (multi-core without HT).
const ECX_CMP_LEGACY: u32 = 1 << 1;
/// CPUID 0x8000_0001 ECX: SVM (AMD virtualization).
const ECX_SVM: u32 = 1 << 2;

/// Bits needed to number `count` things.
fn id_bits(count: u8) -> u32 {
    u32::from(count.max(1)).next_power_of_two().trailing_zeros()
}

/// Adapts the host-supported CPUID to vCPU `id` of a single-socket machine
/// with `count` single-threaded cores. Nested virtualization (VMX, SVM) is
/// hidden, as QEMU's default CPU models hide it: a guest that loads its own
/// hypervisor module on it takes paths of the host's KVM few guests take.
pub fn topology_cpuid(supported: &CpuId, id: u8, count: u8) -> CpuId {
    let mut cpuid = supported.clone();
    let apic_id = u32::from(id);
    let core_bits = id_bits(count);
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            0x1 => {
                entry.ebx = (apic_id << 24)
                    | (u32::from(count).next_power_of_two() << 16)
                    | (8 << 8) // CLFLUSH line size: 8 × 8 = 64 bytes
                    | (entry.ebx & 0xff);
                entry.ecx = (entry.ecx | ECX_HYPERVISOR) & !ECX_VMX;
                if count > 1 {
                    entry.edx |= EDX_HTT;
                } else {
                    entry.edx &= !EDX_HTT;
                }
            }
            0x4 => {
                // Deterministic cache parameters: cores per package, and which
                // caches each core has to itself (L1/L2) or shares (L3).
                let level = (entry.eax >> 5) & 0x7;
                let sharing = if level >= 3 {
                    (1u32 << core_bits) - 1
                } else {
                    0
                };
                entry.eax =
                    (entry.eax & 0x3fff) | (sharing << 14) | (((1u32 << core_bits) - 1) << 26);
            }
            0xb | 0x1f => {
                entry.edx = apic_id;
                match entry.index {
                    0 => {
                        entry.eax = 0;
                        entry.ebx = 1;
                        entry.ecx = 1 << 8; // SMT level
                    }
                    1 => {
                        entry.eax = core_bits;
                        entry.ebx = u32::from(count);
                        entry.ecx = (2 << 8) | 1; // core level
                    }
                    n => {
                        entry.eax = 0;
                        entry.ebx = 0;
                        entry.ecx = n;
                    }
                }
            }
            0x8000_0001 => {
                entry.ecx &= !ECX_SVM;
                if count > 1 {
                    entry.ecx |= ECX_CMP_LEGACY;
                }
            }
            0x8000_0008 => {
                entry.ecx = (entry.ecx & !0xf0ff) | (core_bits << 12) | (u32::from(count) - 1);
            }
            0x8000_001e => {
                entry.eax = apic_id;
                entry.ebx = apic_id & 0xff; // compute unit id, one thread each
                entry.ecx = 0; // node 0, one node
            }
            _ => {}
        }
    }
    cpuid
}

/// The host's physical address width as KVM reports it (CPUID 0x8000_0008).
pub fn phys_bits(supported: &CpuId) -> u8 {
    supported
        .as_slice()
        .iter()
        .find(|e| e.function == 0x8000_0008)
        .map(|e| (e.eax & 0xff) as u8)
        .filter(|b| *b >= 32)
        .unwrap_or(36)
}

mod msr {
    pub const IA32_TSC: u32 = 0x10;
    pub const IA32_SYSENTER_CS: u32 = 0x174;
    pub const IA32_SYSENTER_ESP: u32 = 0x175;
    pub const IA32_SYSENTER_EIP: u32 = 0x176;
    pub const IA32_MISC_ENABLE: u32 = 0x1a0;
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const SYSCALL_MASK: u32 = 0xc000_0084;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;

    pub const MISC_ENABLE_FAST_STRING: u64 = 1;
    /// MTRRs enabled, default memory type write-back.
    pub const MTRR_ENABLE_WB: u64 = (1 << 11) | 6;
}

fn boot_msrs() -> Vec<kvm_msr_entry> {
    [
        (msr::IA32_SYSENTER_CS, 0),
        (msr::IA32_SYSENTER_ESP, 0),
        (msr::IA32_SYSENTER_EIP, 0),
        (msr::STAR, 0),
        (msr::CSTAR, 0),
        (msr::KERNEL_GS_BASE, 0),
        (msr::SYSCALL_MASK, 0),
        (msr::LSTAR, 0),
        (msr::IA32_TSC, 0),
        (msr::IA32_MISC_ENABLE, msr::MISC_ENABLE_FAST_STRING),
        (msr::MTRR_DEF_TYPE, msr::MTRR_ENABLE_WB),
    ]
    .into_iter()
    .map(|(index, data)| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    })
    .collect()
}

/// State every vCPU needs: CPUID, MSRs, FPU, and LINT0/LINT1 wiring.
pub fn configure_common(vcpu: &VcpuFd, cpu: u8, cpuid: &CpuId) -> Result<(), CpuError> {
    let kvm = |what| move |source| CpuError::Kvm { cpu, what, source };
    vcpu.set_cpuid2(cpuid).map_err(kvm("CPUID"))?;

    let entries = boot_msrs();
    let msrs = Msrs::from_entries(&entries).map_err(|_| CpuError::Msrs {
        cpu,
        set: 0,
        wanted: entries.len(),
    })?;
    let set = vcpu.set_msrs(&msrs).map_err(kvm("MSRs"))?;
    if set != entries.len() {
        return Err(CpuError::Msrs {
            cpu,
            set,
            wanted: entries.len(),
        });
    }

    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm("FPU"))?;

    // LINT0 receives the PIC (ExtINT), LINT1 is NMI: what a BIOS leaves.
    const APIC_LVT0: usize = 0x350;
    const APIC_LVT1: usize = 0x360;
    const DELIVERY_EXTINT: u32 = 0x7;
    const DELIVERY_NMI: u32 = 0x4;
    let mut lapic = vcpu.get_lapic().map_err(kvm("LAPIC"))?;
    for (reg, mode) in [(APIC_LVT0, DELIVERY_EXTINT), (APIC_LVT1, DELIVERY_NMI)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[reg + i] as u8);
        let value = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (i, b) in value.to_le_bytes().iter().enumerate() {
            lapic.regs[reg + i] = *b as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(kvm("LAPIC"))
}

fn segment_from_gdt(entry: u64, selector: u16) -> kvm_segment {
    let base = ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000);
    let limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    kvm_segment {
        base,
        limit: if g == 1 { (limit << 12) | 0xfff } else { limit },
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

/// Puts the boot CPU in 64-bit mode at the kernel's entry, with the zero
/// page in RSI, as the 64-bit boot protocol describes.
pub fn configure_boot_cpu(vcpu: &VcpuFd, boot: &BootEntry) -> Result<(), CpuError> {
    let kvm = |what| {
        move |source| CpuError::Kvm {
            cpu: 0,
            what,
            source,
        }
    };
    let mut sregs = vcpu.get_sregs().map_err(kvm("special registers"))?;
    let code = segment_from_gdt(BOOT_GDT[usize::from(BOOT_CS / 8)], BOOT_CS);
    let data = segment_from_gdt(BOOT_GDT[usize::from(BOOT_DS / 8)], BOOT_DS);
    let tss = segment_from_gdt(BOOT_GDT[usize::from(BOOT_TSS / 8)], BOOT_TSS);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.gdt.base = layout::BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&BOOT_GDT) - 1) as u16;
    sregs.idt.base = layout::BOOT_IDT_START;
    sregs.idt.limit = 7;

    const CR0_PE: u64 = 1 << 0;
    const CR0_ET: u64 = 1 << 4;
    const CR0_PG: u64 = 1 << 31;
    const CR4_PAE: u64 = 1 << 5;
    const EFER_LME: u64 = 1 << 8;
    const EFER_LMA: u64 = 1 << 10;
    sregs.cr0 |= CR0_PE | CR0_ET | CR0_PG;
    sregs.cr3 = layout::PML4_START;
    sregs.cr4 |= CR4_PAE;
    sregs.efer |= EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).map_err(kvm("special registers"))?;

    let regs = kvm_regs {
        rflags: 0x2,
        rip: boot.entry,
        rsp: layout::BOOT_STACK_POINTER,
        rbp: layout::BOOT_STACK_POINTER,
        rsi: boot.zero_page,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm("registers"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn fake_supported() -> CpuId {
        let entries = [
            kvm_cpuid_entry2 {
                function: 0x1,
                ebx: 0x0001_0800,
                ecx: ECX_VMX,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0x8000_0001,
                ecx: ECX_SVM,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 0,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 1,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0x8000_0008,
                eax: 0x3030,
                ..Default::default()
            },
        ];
        CpuId::from_entries(&entries).unwrap()
    }

    #[test]
    fn topology_describes_each_cpu() {
        let cpuid = topology_cpuid(&fake_supported(), 2, 3);
        let leaf = |f: u32, i: u32| {
            *cpuid
                .as_slice()
                .iter()
                .find(|e| e.function == f && e.index == i)
                .unwrap()
        };
        assert_eq!(leaf(1, 0).ebx >> 24, 2, "APIC id");
        assert_eq!(
            (leaf(1, 0).ebx >> 16) & 0xff,
            4,
            "logical count, rounded up"
        );
        assert_ne!(leaf(1, 0).ecx & ECX_HYPERVISOR, 0);
        assert_eq!(leaf(0xb, 1).ebx, 3);
        assert_eq!(leaf(0xb, 1).eax, 2, "two bits of core id");
        assert_eq!(leaf(0xb, 0).edx, 2);
        assert_eq!(leaf(0x8000_0008, 0).ecx & 0xff, 2);
        assert_eq!(leaf(1, 0).ecx & ECX_VMX, 0, "no nested VMX");
        assert_eq!(leaf(0x8000_0001, 0).ecx, ECX_CMP_LEGACY, "no nested SVM");
    }

    #[test]
    fn phys_bits_from_cpuid() {
        assert_eq!(phys_bits(&fake_supported()), 0x30);
    }

    #[test]
    fn long_mode_code_segment() {
        let cs = segment_from_gdt(BOOT_GDT[2], BOOT_CS);
        assert_eq!((cs.l, cs.db, cs.type_, cs.present, cs.s), (1, 0, 0xb, 1, 1));
        assert_eq!(cs.limit, 0xffff_ffff);
    }
}
