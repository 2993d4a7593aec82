//! A Linux kernel booted through the BIOS (`--kernel` with `--firmware`):
//! the fw_cfg items QEMU's `linuxboot_dma.bin` option ROM reads to load the
//! kernel's real-mode setup, its protected-mode part, the initrd and the
//! command line, then to jump to the setup (docs/seabios-platform.md §10).
//!
//! The kernel is a bzImage of boot protocol 2.02 or later (every kernel of
//! the last twenty years). Its setup header is checked and patched the way
//! a boot loader does: loader type, heap end, command line address, initrd
//! address and size.

use crate::fw_cfg::key::kernel as item;

/// Where the ROM puts the parts (QEMU's addresses for a modern bzImage).
const SETUP_ADDR: u32 = 0x1_0000;
const CMDLINE_ADDR: u32 = 0x2_0000;
const KERNEL_ADDR: u32 = 0x10_0000;
/// The setup must end before the command line.
const MAX_SETUP: usize = (CMDLINE_ADDR - SETUP_ADDR) as usize;
/// Low RAM the BIOS keeps for its own tables, below the top of low RAM:
/// the initrd ends below it.
const BIOS_RESERVE: u64 = 1 << 20;

/// Setup header fields (offsets in the bzImage, Documentation/x86/boot.rst).
mod hdr {
    pub const SETUP_SECTS: usize = 0x1f1;
    pub const MAGIC: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const HEAP_END_PTR: usize = 0x224;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    /// The header's end for protocol 2.03 (what we read).
    pub const END: usize = 0x230;

    pub const MAGIC_HDRS: u32 = 0x5372_6448; // "HdrS"
    pub const LOADED_HIGH: u8 = 0x01;
    pub const CAN_USE_HEAP: u8 = 0x80;
    /// "Undefined" boot loader: what QEMU says.
    pub const LOADER_UNDEFINED: u8 = 0xb0;
}

/// Oldest boot protocol handled: 2.02 has the 32-bit command line pointer.
const MIN_PROTOCOL: u16 = 0x202;

/// The option ROM that loads the kernel (from QEMU's data files) and its
/// fw_cfg name: SeaBIOS runs every `genroms/` file.
pub const ROM_NAME: &str = "linuxboot_dma.bin";
pub const ROM_FILE: &str = "genroms/linuxboot_dma.bin";
/// The `bootorder` line that makes SeaBIOS boot the ROM before any disk.
pub const BOOT_ORDER: &str = "/rom@genroms/linuxboot_dma.bin\n";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinuxBootError {
    #[error("the kernel is not a bzImage (no setup header): boot it directly, without --firmware")]
    NotBzImage,
    #[error("the kernel's boot protocol {0:#x} is older than 2.02: boot it directly")]
    OldProtocol(u16),
    #[error("the kernel does not load high (zImage): boot it directly")]
    NotLoadedHigh,
    #[error("the kernel's setup ({0} bytes) is larger than the file or than 64 KiB")]
    BadSetup(usize),
    #[error("the initrd ({size} bytes) does not fit below {max:#x} in low RAM: give the guest more memory")]
    InitrdTooLarge { size: u64, max: u64 },
    #[error("the kernel command line is longer than {0} bytes")]
    CmdlineTooLong(usize),
    #[error(
        "the kernel ({size} bytes) and initrd do not fit in low RAM: give the guest more memory"
    )]
    KernelTooLarge { size: u64 },
}

/// The fw_cfg items, as (selector, bytes).
pub type Items = Vec<(u16, Vec<u8>)>;

/// The items that boot `kernel` (a bzImage) with `initrd` and `cmdline`
/// in a machine whose low RAM ends at `low_ram_end`.
pub fn items(
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    low_ram_end: u64,
) -> Result<Items, LinuxBootError> {
    let protocol = check_header(kernel)?;
    let setup_len = setup_len(kernel, kernel.len())?;
    let mut setup = kernel[..setup_len].to_vec();
    // The command line goes up to the setup's heap, below 0x9_0000.
    let max_cmdline = (0x9_0000 - CMDLINE_ADDR) as usize - 1;
    if cmdline.len() > max_cmdline {
        return Err(LinuxBootError::CmdlineTooLong(max_cmdline));
    }
    setup[hdr::TYPE_OF_LOADER] = hdr::LOADER_UNDEFINED;
    setup[hdr::LOADFLAGS] |= hdr::CAN_USE_HEAP;
    put16(
        &mut setup,
        hdr::HEAP_END_PTR,
        (CMDLINE_ADDR - SETUP_ADDR - 0x200) as u16,
    );
    put32(&mut setup, hdr::CMD_LINE_PTR, CMDLINE_ADDR);

    let mut cmdline_bytes = cmdline.as_bytes().to_vec();
    cmdline_bytes.push(0);
    let mut items = vec![
        (item::CMDLINE_ADDR, le32(CMDLINE_ADDR)),
        (item::CMDLINE_SIZE, le32(cmdline_bytes.len() as u32)),
        (item::CMDLINE_DATA, cmdline_bytes),
    ];
    let body = &kernel[setup_len..];
    // The kernel is copied to KERNEL_ADDR: it must end below the initrd
    // (or below what the BIOS keeps).
    let mut free_end = low_ram_end.saturating_sub(BIOS_RESERVE);
    if let Some(initrd) = initrd {
        let addr = initrd_addr(&setup, protocol, initrd.len() as u64, low_ram_end)?;
        free_end = u64::from(addr);
        put32(&mut setup, hdr::RAMDISK_IMAGE, addr);
        put32(&mut setup, hdr::RAMDISK_SIZE, initrd.len() as u32);
        items.extend([
            (item::INITRD_ADDR, le32(addr)),
            (item::INITRD_SIZE, le32(initrd.len() as u32)),
            (item::INITRD_DATA, initrd.to_vec()),
        ]);
    }
    if u64::from(KERNEL_ADDR) + body.len() as u64 > free_end {
        return Err(LinuxBootError::KernelTooLarge {
            size: body.len() as u64,
        });
    }
    items.extend([
        (item::KERNEL_ADDR, le32(KERNEL_ADDR)),
        (item::KERNEL_SIZE, le32(body.len() as u32)),
        (item::KERNEL_DATA, body.to_vec()),
        (item::SETUP_ADDR, le32(SETUP_ADDR)),
        (item::SETUP_SIZE, le32(setup_len as u32)),
        (item::SETUP_DATA, setup),
    ]);
    Ok(items)
}

/// Bytes of the file [`check`] needs to see.
pub const HEADER_LEN: usize = hdr::END;

/// Whether a kernel file of `file_len` bytes that starts with `header`
/// (at least [`HEADER_LEN`] bytes) is a bzImage this module can boot.
pub fn check(header: &[u8], file_len: usize) -> Result<(), LinuxBootError> {
    check_header(header)?;
    setup_len(header, file_len).map(drop)
}

/// The boot protocol version, once the header says this is a bzImage we
/// can boot.
fn check_header(kernel: &[u8]) -> Result<u16, LinuxBootError> {
    if kernel.len() < hdr::END || get32(kernel, hdr::MAGIC) != hdr::MAGIC_HDRS {
        return Err(LinuxBootError::NotBzImage);
    }
    let protocol = u16::from_le_bytes([kernel[hdr::VERSION], kernel[hdr::VERSION + 1]]);
    if protocol < MIN_PROTOCOL {
        return Err(LinuxBootError::OldProtocol(protocol));
    }
    if kernel[hdr::LOADFLAGS] & hdr::LOADED_HIGH == 0 {
        return Err(LinuxBootError::NotLoadedHigh);
    }
    Ok(protocol)
}

/// Bytes of the real-mode setup: (setup_sects + 1) sectors, 4 when 0.
fn setup_len(header: &[u8], file_len: usize) -> Result<usize, LinuxBootError> {
    let sects = match header[hdr::SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let len = (sects + 1) * 512;
    if len > file_len || !(hdr::END..=MAX_SETUP).contains(&len) {
        return Err(LinuxBootError::BadSetup(len));
    }
    Ok(len)
}

/// The initrd goes as high as the kernel and the BIOS allow, page aligned.
fn initrd_addr(
    setup: &[u8],
    protocol: u16,
    size: u64,
    low_ram_end: u64,
) -> Result<u32, LinuxBootError> {
    let kernel_max = if protocol >= 0x203 {
        u64::from(get32(setup, hdr::INITRD_ADDR_MAX))
    } else {
        0x37ff_ffff
    };
    let max = kernel_max.min(low_ram_end.saturating_sub(BIOS_RESERVE + 1));
    let lowest = u64::from(KERNEL_ADDR);
    match max.checked_sub(size) {
        Some(top) if top & !0xfff >= lowest => Ok((top & !0xfff) as u32),
        _ => Err(LinuxBootError::InitrdTooLarge { size, max }),
    }
}

fn get32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn put16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn put32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn le32(value: u32) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bzImage-shaped file: `sects` setup sectors, then `body` bytes.
    fn bzimage(sects: u8, protocol: u16, body: usize) -> Vec<u8> {
        let mut k = vec![0u8; (usize::from(sects) + 1) * 512 + body];
        k[hdr::SETUP_SECTS] = sects;
        put32(&mut k, hdr::MAGIC, hdr::MAGIC_HDRS);
        put16(&mut k, hdr::VERSION, protocol);
        k[hdr::LOADFLAGS] = hdr::LOADED_HIGH;
        put32(&mut k, hdr::INITRD_ADDR_MAX, 0x7fff_ffff);
        k
    }

    fn find(items: &Items, selector: u16) -> &[u8] {
        &items.iter().find(|(k, _)| *k == selector).unwrap().1
    }

    #[test]
    fn splits_and_patches_a_bzimage() {
        let kernel = bzimage(27, 0x20f, 5000);
        let initrd = vec![7u8; 10_000];
        let items = items(&kernel, Some(&initrd), "console=ttyS0", 1 << 30).unwrap();
        let setup = find(&items, item::SETUP_DATA);
        assert_eq!(setup.len(), 28 * 512);
        assert_eq!(find(&items, item::KERNEL_DATA).len(), 5000);
        assert_eq!(find(&items, item::KERNEL_SIZE), 5000u32.to_le_bytes());
        assert_eq!(find(&items, item::CMDLINE_DATA), b"console=ttyS0\0");
        assert_eq!(get32(setup, hdr::CMD_LINE_PTR), CMDLINE_ADDR);
        assert_eq!(setup[hdr::TYPE_OF_LOADER], hdr::LOADER_UNDEFINED);
        assert_ne!(setup[hdr::LOADFLAGS] & hdr::CAN_USE_HEAP, 0);
        // The initrd: page aligned, ending below the BIOS's reserve.
        let addr = get32(setup, hdr::RAMDISK_IMAGE);
        assert_eq!(find(&items, item::INITRD_ADDR), addr.to_le_bytes());
        assert_eq!(get32(setup, hdr::RAMDISK_SIZE), 10_000);
        assert_eq!(addr % 4096, 0);
        assert!(u64::from(addr) + 10_000 <= (1 << 30) - BIOS_RESERVE);
        assert!(u64::from(addr) + 10_000 + 4096 > (1 << 30) - BIOS_RESERVE);
    }

    #[test]
    fn the_kernels_initrd_limit_holds() {
        let mut kernel = bzimage(4, 0x20f, 100);
        put32(&mut kernel, hdr::INITRD_ADDR_MAX, 0x37ff_ffff);
        let items = items(&kernel, Some(&[1; 4096]), "", 4 << 30).unwrap();
        let addr = get32(find(&items, item::SETUP_DATA), hdr::RAMDISK_IMAGE);
        assert!((0x37ff_0000..0x3800_0000).contains(&addr));
    }

    #[test]
    fn refuses_what_it_cannot_boot() {
        assert_eq!(
            items(&[0u8; 4096], None, "", 1 << 30),
            Err(LinuxBootError::NotBzImage)
        );
        assert_eq!(
            items(&bzimage(4, 0x201, 10), None, "", 1 << 30),
            Err(LinuxBootError::OldProtocol(0x201))
        );
        let mut zimage = bzimage(4, 0x20f, 10);
        zimage[hdr::LOADFLAGS] = 0;
        assert_eq!(
            items(&zimage, None, "", 1 << 30),
            Err(LinuxBootError::NotLoadedHigh)
        );
        let mut truncated = bzimage(30, 0x20f, 0);
        truncated.truncate(20 * 512);
        assert_eq!(
            items(&truncated, None, "", 1 << 30),
            Err(LinuxBootError::BadSetup(31 * 512))
        );
        assert!(matches!(
            items(&bzimage(4, 0x20f, 10), Some(&vec![0; 8 << 20]), "", 8 << 20),
            Err(LinuxBootError::InitrdTooLarge { .. })
        ));
        // 6 MiB of kernel and 1 MiB of initrd in 8 MiB of low RAM, less
        // the BIOS's megabyte: they would overlap.
        assert!(matches!(
            items(
                &bzimage(4, 0x20f, 6 << 20),
                Some(&[0; 1 << 20]),
                "",
                8 << 20
            ),
            Err(LinuxBootError::KernelTooLarge { .. })
        ));
        let long = "x".repeat(0x7_0000);
        assert!(matches!(
            items(&bzimage(4, 0x20f, 10), None, &long, 1 << 30),
            Err(LinuxBootError::CmdlineTooLong(_))
        ));
    }
}
