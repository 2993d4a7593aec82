//! `--cpu host[,-FEATURE|+FEATURE|FEATURE=on|off...]`: the guest sees the
//! host CPU's features as KVM offers them (QEMU's `-cpu host`), minus the
//! ones the user takes out. Taking out a feature also takes out the ones that
//! cannot work without it (no AVX without XSAVE, no AVX-512 without AVX), as
//! Linux's own CPUID dependency table does; taking out XSAVE also empties
//! CPUID leaf 0xD, which describes the XSAVE state. `+FEATURE` only checks
//! that the host offers it: saffron never shows a guest a feature KVM cannot
//! run.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

/// A CPUID output register, in the order eax, ebx, ecx, edx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

/// Where a feature's bits live: a CPUID leaf, its index, a register.
#[derive(Debug, PartialEq, Eq)]
struct Loc {
    leaf: u32,
    index: u32,
    reg: Reg,
}

/// One CPUID feature: its bits, and the feature it needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Feature {
    name: &'static str,
    loc: Loc,
    mask: u32,
    needs: Option<&'static str>,
}

const fn feature(name: &'static str, loc: Loc, mask: u32, needs: Option<&'static str>) -> Feature {
    Feature {
        name,
        loc,
        mask,
        needs,
    }
}

const fn loc(leaf: u32, index: u32, reg: Reg) -> Loc {
    Loc { leaf, index, reg }
}

const XSAVE: Option<&str> = Some("xsave");
const AVX: Option<&str> = Some("avx");
const AVX512F: Option<&str> = Some("avx512f");
const KVM_FEATURES: u32 = 0x4000_0001;
/// The registers the table uses.
const LEAF1_ECX: Loc = loc(1, 0, Reg::Ecx);
const LEAF7_EBX: Loc = loc(7, 0, Reg::Ebx);
const LEAF7_ECX: Loc = loc(7, 0, Reg::Ecx);
const XSAVE_EAX: Loc = loc(0xd, 1, Reg::Eax);
const EXT1_ECX: Loc = loc(0x8000_0001, 0, Reg::Ecx);
const EXT1_EDX: Loc = loc(0x8000_0001, 0, Reg::Edx);
const KVM_EAX: Loc = loc(KVM_FEATURES, 0, Reg::Eax);

/// The features `--cpu` knows, by QEMU's names.
#[rustfmt::skip]
const FEATURES: &[Feature] = &[
    feature("pclmulqdq", LEAF1_ECX, 1 << 1, None),
    feature("ssse3", LEAF1_ECX, 1 << 9, None),
    feature("fma", LEAF1_ECX, 1 << 12, AVX),
    feature("cx16", LEAF1_ECX, 1 << 13, None),
    feature("pcid", LEAF1_ECX, 1 << 17, None),
    feature("sse4.1", LEAF1_ECX, 1 << 19, None),
    feature("sse4.2", LEAF1_ECX, 1 << 20, None),
    feature("x2apic", LEAF1_ECX, 1 << 21, None),
    feature("movbe", LEAF1_ECX, 1 << 22, None),
    feature("popcnt", LEAF1_ECX, 1 << 23, None),
    feature("tsc-deadline", LEAF1_ECX, 1 << 24, None),
    feature("aes", LEAF1_ECX, 1 << 25, None),
    feature("xsave", LEAF1_ECX, 1 << 26, None),
    feature("avx", LEAF1_ECX, 1 << 28, XSAVE),
    feature("f16c", LEAF1_ECX, 1 << 29, AVX),
    feature("rdrand", LEAF1_ECX, 1 << 30, None),
    feature("fsgsbase", LEAF7_EBX, 1 << 0, None),
    feature("bmi1", LEAF7_EBX, 1 << 3, None),
    feature("hle", LEAF7_EBX, 1 << 4, None),
    feature("avx2", LEAF7_EBX, 1 << 5, AVX),
    feature("smep", LEAF7_EBX, 1 << 7, None),
    feature("bmi2", LEAF7_EBX, 1 << 8, None),
    feature("erms", LEAF7_EBX, 1 << 9, None),
    feature("invpcid", LEAF7_EBX, 1 << 10, None),
    feature("rtm", LEAF7_EBX, 1 << 11, None),
    feature("avx512f", LEAF7_EBX, 1 << 16, AVX),
    feature("avx512dq", LEAF7_EBX, 1 << 17, AVX512F),
    feature("rdseed", LEAF7_EBX, 1 << 18, None),
    feature("adx", LEAF7_EBX, 1 << 19, None),
    feature("smap", LEAF7_EBX, 1 << 20, None),
    feature("avx512ifma", LEAF7_EBX, 1 << 21, AVX512F),
    feature("clflushopt", LEAF7_EBX, 1 << 23, None),
    feature("clwb", LEAF7_EBX, 1 << 24, None),
    feature("avx512cd", LEAF7_EBX, 1 << 28, AVX512F),
    feature("sha-ni", LEAF7_EBX, 1 << 29, None),
    feature("avx512bw", LEAF7_EBX, 1 << 30, AVX512F),
    feature("avx512vl", LEAF7_EBX, 1 << 31, AVX512F),
    feature("avx512vbmi", LEAF7_ECX, 1 << 1, AVX512F),
    feature("umip", LEAF7_ECX, 1 << 2, None),
    feature("pku", LEAF7_ECX, 1 << 3, XSAVE),
    feature("vaes", LEAF7_ECX, 1 << 9, AVX),
    feature("vpclmulqdq", LEAF7_ECX, 1 << 10, AVX),
    feature("la57", LEAF7_ECX, 1 << 16, None),
    feature("rdpid", LEAF7_ECX, 1 << 22, None),
    feature("xsaveopt", XSAVE_EAX, 1 << 0, XSAVE),
    feature("xsavec", XSAVE_EAX, 1 << 1, XSAVE),
    feature("xgetbv1", XSAVE_EAX, 1 << 2, XSAVE),
    feature("xsaves", XSAVE_EAX, 1 << 3, XSAVE),
    feature("lahf-lm", EXT1_ECX, 1 << 0, None),
    feature("abm", EXT1_ECX, 1 << 5, None),
    feature("sse4a", EXT1_ECX, 1 << 6, None),
    feature("xop", EXT1_ECX, 1 << 11, AVX),
    feature("fma4", EXT1_ECX, 1 << 16, AVX),
    feature("topoext", EXT1_ECX, 1 << 22, None),
    feature("pdpe1gb", EXT1_EDX, 1 << 26, None),
    feature("rdtscp", EXT1_EDX, 1 << 27, None),
    feature("kvmclock", KVM_EAX, (1 << 0) | (1 << 3), None),
    feature("kvm-nopiodelay", KVM_EAX, 1 << 1, None),
    feature("kvm-asyncpf", KVM_EAX, 1 << 4, None),
    feature("kvm-steal-time", KVM_EAX, 1 << 5, None),
    feature("kvm-pv-eoi", KVM_EAX, 1 << 6, None),
    feature("kvm-pv-unhalt", KVM_EAX, 1 << 7, None),
    feature("kvm-pv-tlb-flush", KVM_EAX, 1 << 9, None),
    feature("kvm-pv-ipi", KVM_EAX, 1 << 11, None),
    feature("kvm-poll-control", KVM_EAX, 1 << 12, None),
    feature("kvm-pv-sched-yield", KVM_EAX, 1 << 13, None),
    feature("kvm-asyncpf-int", KVM_EAX, 1 << 14, None),
    feature("kvmclock-stable-bit", KVM_EAX, 1 << 24, None),
];

/// `--cpu`: the host's features less `removed`, checked to have `required`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuModel {
    removed: Vec<&'static Feature>,
    required: Vec<&'static Feature>,
}

impl CpuModel {
    /// Parses `host[,-F|+F|F=on|F=off...]`.
    pub fn parse(text: &str) -> Result<CpuModel, String> {
        let (name, flags) = text.split_once(',').unwrap_or((text, ""));
        if name != "host" {
            return Err(format!(
                "'{name}' is not a CPU model saffron has: only `host` (the host CPU's \
                 features, less any -FEATURE)"
            ));
        }
        let mut model = CpuModel::default();
        for part in flags.split(',').filter(|p| !p.is_empty()) {
            let (name, keep) = flag(part)?;
            let feature = lookup(name)?;
            if keep {
                model.required.push(feature);
            } else {
                model.removed.push(feature);
            }
        }
        model.removed = with_dependents(&model.removed);
        if let Some(both) = model.required.iter().find(|f| model.removed.contains(f)) {
            return Err(format!(
                "CPU feature '{}' is both kept and taken out",
                both.name
            ));
        }
        Ok(model)
    }

    /// Takes the removed features out of `cpuid`; an error naming a required
    /// feature the host (KVM) does not offer.
    pub fn apply(&self, cpuid: &mut CpuId) -> Result<(), String> {
        if let Some(missing) = self.required.iter().find(|f| !offers(cpuid, f)) {
            return Err(format!(
                "--cpu: this host's KVM does not offer the CPU feature '{}'",
                missing.name
            ));
        }
        let no_xsave = self.removed.iter().any(|f| f.name == "xsave");
        for entry in cpuid.as_mut_slice() {
            if no_xsave && entry.function == 0xd {
                (entry.eax, entry.ebx, entry.ecx, entry.edx) = (0, 0, 0, 0);
            }
            for feature in &self.removed {
                if at(entry, feature) {
                    *reg(entry, feature.loc.reg) &= !feature.mask;
                }
            }
        }
        Ok(())
    }
}

/// `-F`, `+F`, `F=off`, `F=on`: the feature's name and whether to keep it.
fn flag(part: &str) -> Result<(&str, bool), String> {
    if let Some(name) = part.strip_prefix('-') {
        return Ok((name, false));
    }
    if let Some(name) = part.strip_prefix('+') {
        return Ok((name, true));
    }
    match part.split_once('=') {
        Some((name, "off")) => Ok((name, false)),
        Some((name, "on")) => Ok((name, true)),
        _ => Err(format!(
            "'{part}' is not -FEATURE, +FEATURE, FEATURE=off or FEATURE=on"
        )),
    }
}

fn lookup(name: &str) -> Result<&'static Feature, String> {
    // QEMU spells some names with '_' or '.' too (sse4_1, lahf_lm).
    let wanted = name.replace('_', "-").replace("sse4-", "sse4.");
    FEATURES.iter().find(|f| f.name == wanted).ok_or_else(|| {
        let known: Vec<&str> = FEATURES.iter().map(|f| f.name).collect();
        format!("unknown CPU feature '{name}' (known: {})", known.join(" "))
    })
}

/// `removed` and every feature that needs one of them, directly or not.
fn with_dependents(removed: &[&'static Feature]) -> Vec<&'static Feature> {
    let mut all: Vec<&'static Feature> = Vec::new();
    for &feature in removed {
        if !all.contains(&feature) {
            all.push(feature);
        }
    }
    let mut grown = true;
    while grown {
        grown = false;
        for feature in FEATURES {
            let parent_out = feature
                .needs
                .is_some_and(|n| all.iter().any(|r| r.name == n));
            if parent_out && !all.contains(&feature) {
                all.push(feature);
                grown = true;
            }
        }
    }
    all
}

fn at(entry: &kvm_cpuid_entry2, feature: &Feature) -> bool {
    entry.function == feature.loc.leaf && entry.index == feature.loc.index
}

fn offers(cpuid: &CpuId, feature: &Feature) -> bool {
    cpuid.as_slice().iter().any(|e| {
        let value = [e.eax, e.ebx, e.ecx, e.edx][feature.loc.reg as usize];
        at(e, feature) && value & feature.mask == feature.mask
    })
}

fn reg(entry: &mut kvm_cpuid_entry2, reg: Reg) -> &mut u32 {
    match reg {
        Reg::Eax => &mut entry.eax,
        Reg::Ebx => &mut entry.ebx,
        Reg::Ecx => &mut entry.ecx,
        Reg::Edx => &mut entry.edx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, bits: [u32; 4]) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: bits[0],
            ebx: bits[1],
            ecx: bits[2],
            edx: bits[3],
            ..Default::default()
        }
    }

    fn host() -> CpuId {
        let all = u32::MAX;
        CpuId::from_entries(&[
            entry(1, 0, [0x800f12, 0, all, all]),
            entry(7, 0, [0, all, all, 0]),
            entry(0xd, 0, [0x7, 0x340, 0x340, 0]),
            entry(0xd, 1, [0xf, 0, 0, 0]),
            entry(0x8000_0001, 0, [0, 0, all, all]),
            entry(KVM_FEATURES, 0, [0x0100_7eff, 0, 0, 0]),
        ])
        .unwrap()
    }

    fn find(cpuid: &CpuId, function: u32, index: u32) -> kvm_cpuid_entry2 {
        *cpuid
            .as_slice()
            .iter()
            .find(|e| e.function == function && e.index == index)
            .unwrap()
    }

    #[test]
    fn plain_host_changes_nothing() {
        let mut cpuid = host();
        CpuModel::parse("host").unwrap().apply(&mut cpuid).unwrap();
        assert_eq!(cpuid.as_slice(), host().as_slice());
    }

    #[test]
    fn taking_out_xsave_takes_out_avx_and_the_xsave_leaf() {
        let mut cpuid = host();
        let model = CpuModel::parse("host,-xsave").unwrap();
        model.apply(&mut cpuid).unwrap();
        let leaf1 = find(&cpuid, 1, 0);
        assert_eq!(leaf1.ecx & (1 << 26 | 1 << 28 | 1 << 29 | 1 << 12), 0);
        assert_eq!(
            leaf1.ecx | (1 << 26 | 1 << 28 | 1 << 29 | 1 << 12),
            u32::MAX
        );
        let leaf7 = find(&cpuid, 7, 0);
        assert_eq!(
            leaf7.ebx & (1 << 5 | 1 << 16 | 1 << 30),
            0,
            "avx2, avx512 gone"
        );
        assert_ne!(leaf7.ebx & (1 << 3), 0, "bmi1 stays");
        assert_eq!(leaf7.ecx & (1 << 3), 0, "pku needs xsave");
        let xsave = [find(&cpuid, 0xd, 0), find(&cpuid, 0xd, 1)];
        assert!(xsave
            .iter()
            .all(|e| (e.eax, e.ebx, e.ecx, e.edx) == (0, 0, 0, 0)));
    }

    #[test]
    fn qemu_spellings_and_kvm_features() {
        let mut cpuid = host();
        let model = CpuModel::parse("host,sse4_1=off,kvm-pv-eoi=off,kvmclock=off,+aes").unwrap();
        model.apply(&mut cpuid).unwrap();
        assert_eq!(find(&cpuid, 1, 0).ecx & (1 << 19), 0);
        assert_eq!(
            find(&cpuid, KVM_FEATURES, 0).eax,
            0x0100_7eff & !(1 | 1 << 3 | 1 << 6)
        );
    }

    #[test]
    fn a_feature_the_host_lacks_cannot_be_required() {
        let mut cpuid = host();
        cpuid.as_mut_slice()[0].ecx &= !(1 << 25);
        let err = CpuModel::parse("host,+aes")
            .unwrap()
            .apply(&mut cpuid)
            .unwrap_err();
        assert!(err.contains("'aes'"), "{err}");
    }

    #[test]
    fn bad_models_and_features_are_refused() {
        for (text, says) in [
            ("qemu64", "only `host`"),
            ("host,-nosuch", "unknown CPU feature 'nosuch'"),
            ("host,xsave", "is not -FEATURE"),
            ("host,-avx,+avx2", "'avx2' is both kept and taken out"),
        ] {
            let err = CpuModel::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
