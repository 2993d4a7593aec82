//! Loading a Linux kernel (bzImage or ELF vmlinux), its initrd and command
//! line, and writing the 64-bit boot protocol's structures: the zero page
//! with the e820 map, identity page tables and a GDT.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use firmware::e820::E820Entry;
use firmware::layout::{self, MemoryLayout};
use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::{boot_params, setup_header};
use linux_loader::loader::{bzimage::BzImage, elf::Elf, load_cmdline, KernelLoader};
use vm_memory::{Bytes, GuestAddress};

use super::memory::GuestRam;

const BOOT_FLAG_MAGIC: u16 = 0xaa55;
const HDRS_MAGIC: u32 = 0x5372_6448; // "HdrS"
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
const XLF_KERNEL_64: u16 = 1 << 0;
const LOADFLAG_LOADED_HIGH: u8 = 1 << 0;
const KERNEL_ALIGNMENT: u32 = 0x100_0000;
/// The 64-bit entry point sits this far into a loaded bzImage.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a Linux kernel (neither a bzImage nor an ELF vmlinux)")]
    NotAKernel(String),
    #[error("{path} is a Linux kernel saffron cannot load: {reason}")]
    Unloadable { path: String, reason: String },
    #[error("{path} does not support the 64-bit boot protocol (boot protocol 2.12 or later with XLF_KERNEL_64)")]
    No64BitEntry { path: String },
    #[error("the initrd ({size} bytes) does not fit in guest memory below {limit:#x}")]
    InitrdTooLarge { size: u64, limit: u64 },
    #[error("the kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("the kernel command line is not valid: {0}")]
    BadCmdline(String),
    #[error("cannot write boot data to guest memory: {0}")]
    GuestMemory(String),
}

/// Where the boot CPU starts.
#[derive(Debug, Clone, Copy)]
pub struct BootEntry {
    pub entry: u64,
    pub zero_page: u64,
}

pub struct BootSpec<'a> {
    pub kernel: &'a Path,
    pub initrd: Option<&'a Path>,
    pub cmdline: &'a str,
    pub e820: &'a [E820Entry],
    pub rsdp_addr: u64,
    pub layout: &'a MemoryLayout,
    /// Describes a linear framebuffer (or VGA text) to the kernel's early console.
    pub screen: Option<linux_loader::loader::bootparam::screen_info>,
}

fn open(path: &Path) -> Result<File, BootError> {
    File::open(path).map_err(|source| BootError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Is this file a bzImage (the "HdrS" magic at 0x202)?
fn is_bzimage(file: &mut File) -> std::io::Result<bool> {
    let mut magic = [0u8; 4];
    file.seek(SeekFrom::Start(0x202))?;
    let is = file.read_exact(&mut magic).is_ok() && u32::from_le_bytes(magic) == HDRS_MAGIC;
    file.rewind()?;
    Ok(is)
}

fn is_elf(file: &mut File) -> std::io::Result<bool> {
    let mut magic = [0u8; 4];
    let is = file.read_exact(&mut magic).is_ok() && &magic == b"\x7fELF";
    file.rewind()?;
    Ok(is)
}

/// Checks that `path` looks like a kernel saffron can boot (a bzImage or an
/// ELF file), without loading it: bad input is reported before any VM exists.
pub fn probe_kernel(path: &Path) -> Result<(), BootError> {
    let mut file = open(path)?;
    let read_err = |source| BootError::Read {
        path: path.display().to_string(),
        source,
    };
    if is_bzimage(&mut file).map_err(read_err)? || is_elf(&mut file).map_err(read_err)? {
        Ok(())
    } else {
        Err(BootError::NotAKernel(path.display().to_string()))
    }
}

/// Loads the kernel and everything it needs; returns where to start the boot CPU.
pub fn load(ram: &GuestRam, spec: &BootSpec) -> Result<BootEntry, BootError> {
    let path = spec.kernel.display().to_string();
    let read_err = |source| BootError::Read {
        path: path.clone(),
        source,
    };
    let mut kernel = open(spec.kernel)?;
    let high = Some(GuestAddress(layout::HIGH_MEMORY_START));
    let unloadable = |e: linux_loader::loader::Error| BootError::Unloadable {
        path: path.clone(),
        reason: e.to_string(),
    };

    let (entry, kernel_end, mut hdr) = if is_bzimage(&mut kernel).map_err(read_err)? {
        let result = BzImage::load(ram, None, &mut kernel, high).map_err(unloadable)?;
        let hdr = result.setup_header.unwrap_or_default();
        if hdr.version < 0x020c || hdr.xloadflags & XLF_KERNEL_64 == 0 {
            return Err(BootError::No64BitEntry { path });
        }
        (
            result.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET,
            result.kernel_end,
            hdr,
        )
    } else if is_elf(&mut kernel).map_err(read_err)? {
        let result = Elf::load(ram, None, &mut kernel, high).map_err(unloadable)?;
        let hdr = setup_header {
            boot_flag: BOOT_FLAG_MAGIC,
            header: HDRS_MAGIC,
            kernel_alignment: KERNEL_ALIGNMENT,
            cmdline_size: layout::CMDLINE_MAX_SIZE as u32 - 1,
            ..Default::default()
        };
        (result.kernel_load.0, result.kernel_end, hdr)
    } else {
        return Err(BootError::NotAKernel(path));
    };

    // Command line.
    let max = if hdr.cmdline_size == 0 {
        255
    } else {
        hdr.cmdline_size as usize
    };
    let max = max.min(layout::CMDLINE_MAX_SIZE - 1);
    if spec.cmdline.len() > max {
        return Err(BootError::CmdlineTooLong {
            len: spec.cmdline.len(),
            max,
        });
    }
    let mut cmdline = Cmdline::new(max + 1).map_err(|e| BootError::BadCmdline(e.to_string()))?;
    cmdline
        .insert_str(spec.cmdline)
        .map_err(|e| BootError::BadCmdline(e.to_string()))?;
    load_cmdline(ram, GuestAddress(layout::CMDLINE_START), &cmdline)
        .map_err(|e| BootError::GuestMemory(e.to_string()))?;
    hdr.cmd_line_ptr = layout::CMDLINE_START as u32;
    hdr.cmdline_size = spec.cmdline.len() as u32 + 1;

    // Initrd: as high as the kernel allows, below the end of low RAM.
    if let Some(initrd_path) = spec.initrd {
        let bytes = std::fs::read(initrd_path).map_err(|source| BootError::Read {
            path: initrd_path.display().to_string(),
            source,
        })?;
        let size = bytes.len() as u64;
        let max_addr = if hdr.initrd_addr_max == 0 {
            0x37ff_ffff
        } else {
            u64::from(hdr.initrd_addr_max)
        };
        let limit = spec.layout.low_ram_end().min(max_addr + 1);
        let addr = limit
            .checked_sub(size)
            .map(|a| a & !0xfff)
            .filter(|a| *a >= kernel_end.next_multiple_of(0x1000))
            .ok_or(BootError::InitrdTooLarge { size, limit })?;
        ram.write_slice(&bytes, GuestAddress(addr))
            .map_err(|e| BootError::GuestMemory(e.to_string()))?;
        hdr.ramdisk_image = addr as u32;
        hdr.ramdisk_size = size as u32;
    }

    hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    hdr.loadflags |= LOADFLAG_LOADED_HIGH;

    let mut params = boot_params {
        hdr,
        acpi_rsdp_addr: spec.rsdp_addr,
        ..Default::default()
    };
    if let Some(screen) = spec.screen {
        params.screen_info = screen;
    }
    for (slot, entry) in params.e820_table.iter_mut().zip(spec.e820) {
        slot.addr = entry.addr;
        slot.size = entry.size;
        slot.r#type = entry.kind as u32;
    }
    params.e820_entries = spec.e820.len().min(params.e820_table.len()) as u8;
    ram.write_obj(params, GuestAddress(layout::ZERO_PAGE_START))
        .map_err(|e| BootError::GuestMemory(e.to_string()))?;

    write_page_tables(ram)?;
    write_gdt(ram)?;
    Ok(BootEntry {
        entry,
        zero_page: layout::ZERO_PAGE_START,
    })
}

/// Identity-maps the first 4 GiB with 2 MiB pages.
fn write_page_tables(ram: &GuestRam) -> Result<(), BootError> {
    const PRESENT_RW: u64 = 0x3;
    const HUGE: u64 = 0x80;
    let w = |value: u64, addr: u64| {
        ram.write_obj(value, GuestAddress(addr))
            .map_err(|e| BootError::GuestMemory(e.to_string()))
    };
    w(layout::PDPT_START | PRESENT_RW, layout::PML4_START)?;
    for gib in 0..4u64 {
        let pd = layout::PD_START + gib * 0x1000;
        w(pd | PRESENT_RW, layout::PDPT_START + gib * 8)?;
        for i in 0..512u64 {
            let addr = (gib << 30) | (i << 21);
            w(addr | PRESENT_RW | HUGE, pd + i * 8)?;
        }
    }
    Ok(())
}

/// GDT entries: null, null, 64-bit code (selector 0x10), data (0x18), TSS (0x20),
/// as the 64-bit boot protocol wants (__BOOT_CS = 0x10, __BOOT_DS = 0x18).
pub const BOOT_GDT: [u64; 5] = [
    0,
    0,
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;
pub const BOOT_TSS: u16 = 0x20;

/// Packs a segment descriptor from access/flags bits, base and limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let flags = flags as u64;
    let base = base as u64;
    let limit = limit as u64;
    ((base & 0xff00_0000) << (56 - 24))
        | ((flags & 0x0000_f0ff) << 40)
        | ((limit & 0x000f_0000) << (48 - 16))
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

fn write_gdt(ram: &GuestRam) -> Result<(), BootError> {
    for (i, entry) in BOOT_GDT.iter().enumerate() {
        ram.write_obj(*entry, GuestAddress(layout::BOOT_GDT_START + i as u64 * 8))
            .map_err(|e| BootError::GuestMemory(e.to_string()))?;
    }
    ram.write_obj(0u64, GuestAddress(layout::BOOT_IDT_START))
        .map_err(|e| BootError::GuestMemory(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware::layout::MIB;

    #[test]
    fn gdt_entries_match_known_descriptors() {
        assert_eq!(gdt_entry(0xa09b, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(0xc093, 0, 0xfffff), 0x00cf_9300_0000_ffff);
    }

    fn ram() -> (GuestRam, MemoryLayout) {
        let layout = MemoryLayout::new(128 * MIB, 46).unwrap();
        (super::super::memory::allocate_ram(&layout).unwrap(), layout)
    }

    #[test]
    fn rejects_files_that_are_not_kernels() {
        let (ram, layout) = ram();
        let dir = std::env::temp_dir().join(format!("saffron-boot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("not-a-kernel");
        std::fs::write(&path, b"hello, I am a text file").unwrap();
        let spec = BootSpec {
            kernel: &path,
            initrd: None,
            cmdline: "console=ttyS0",
            e820: &[],
            rsdp_addr: 0,
            layout: &layout,
            screen: None,
        };
        assert!(matches!(load(&ram, &spec), Err(BootError::NotAKernel(_))));
        // A truncated "bzImage": the magic is there but nothing else makes sense.
        let mut fake = vec![0u8; 0x300];
        fake[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
        std::fs::write(&path, &fake).unwrap();
        assert!(matches!(
            load(&ram, &spec),
            Err(BootError::Unloadable { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn page_tables_identity_map_4g() {
        let (ram, _) = ram();
        write_page_tables(&ram).unwrap();
        let pml4: u64 = ram.read_obj(GuestAddress(layout::PML4_START)).unwrap();
        assert_eq!(pml4 & !0xfff, layout::PDPT_START);
        let last_pd = layout::PD_START + 3 * 0x1000;
        let last: u64 = ram.read_obj(GuestAddress(last_pd + 511 * 8)).unwrap();
        assert_eq!(last & !0xfff, (3 << 30) | (511 << 21));
    }
}
