//! QXL constants: port numbers, interrupt bits, magics, and the offsets of
//! the ROM and RAM header fields the device keeps (spice-protocol's
//! `qxl_dev.h`; docs/qxl.md §2, §3, §7 and Appendix A). The structures a
//! driver writes (commands, images, surface and monitor configs) are
//! [`super::abi`]'s. Nothing here is SPICE code; these are the numbers of
//! the device's ABI.

/// PCI identity.
pub const VENDOR_REDHAT: u16 = 0x1b36;
pub const DEVICE_QXL: u16 = 0x0100;
pub const SUBSYSTEM_VENDOR: u16 = 0x1af4;
pub const SUBSYSTEM_QEMU: u16 = 0x1100;
/// VGA-compatible controller (QEMU's `qxl-vga`).
pub const CLASS_VGA: u32 = 0x03_00_00;

/// BAR indices (`QXL_*_RANGE_INDEX`).
pub const BAR_RAM: usize = 0;
pub const BAR_VRAM: usize = 1;
pub const BAR_ROM: usize = 2;
pub const BAR_IO: usize = 3;
pub const BAR_VRAM64: usize = 4;

/// Size of the I/O BAR for revisions 3 and later.
pub const IO_BAR_SIZE: u64 = 32;
/// Size of the ROM BAR.
pub const ROM_BAR_SIZE: u64 = 8192;

// ---- I/O ports (offsets in the I/O BAR) ---------------------------------------------------
pub const IO_NOTIFY_CMD: u8 = 0;
pub const IO_NOTIFY_CURSOR: u8 = 1;
pub const IO_UPDATE_AREA: u8 = 2;
pub const IO_UPDATE_IRQ: u8 = 3;
pub const IO_NOTIFY_OOM: u8 = 4;
pub const IO_RESET: u8 = 5;
pub const IO_SET_MODE: u8 = 6;
pub const IO_LOG: u8 = 7;
pub const IO_MEMSLOT_ADD: u8 = 8;
pub const IO_MEMSLOT_DEL: u8 = 9;
pub const IO_DETACH_PRIMARY: u8 = 10;
pub const IO_ATTACH_PRIMARY: u8 = 11;
pub const IO_CREATE_PRIMARY: u8 = 12;
pub const IO_DESTROY_PRIMARY: u8 = 13;
pub const IO_DESTROY_SURFACE_WAIT: u8 = 14;
pub const IO_DESTROY_ALL_SURFACES: u8 = 15;
pub const IO_UPDATE_AREA_ASYNC: u8 = 16;
pub const IO_MEMSLOT_ADD_ASYNC: u8 = 17;
pub const IO_CREATE_PRIMARY_ASYNC: u8 = 18;
pub const IO_DESTROY_PRIMARY_ASYNC: u8 = 19;
pub const IO_DESTROY_SURFACE_ASYNC: u8 = 20;
pub const IO_DESTROY_ALL_SURFACES_ASYNC: u8 = 21;
pub const IO_FLUSH_SURFACES_ASYNC: u8 = 22;
pub const IO_FLUSH_RELEASE: u8 = 23;
pub const IO_MONITORS_CONFIG_ASYNC: u8 = 24;
/// Number of defined ports (`QXL_IO_RANGE_SIZE`).
pub const IO_RANGE_SIZE: u8 = 25;

/// Whether a port is one of the `*_ASYNC` variants (completed with `INTERRUPT_IO_CMD`).
pub fn is_async_port(port: u8) -> bool {
    matches!(
        port,
        IO_UPDATE_AREA_ASYNC..=IO_FLUSH_SURFACES_ASYNC | IO_MONITORS_CONFIG_ASYNC
    )
}

/// The synchronous port an async port does the work of.
pub fn sync_equivalent(port: u8) -> u8 {
    match port {
        IO_UPDATE_AREA_ASYNC => IO_UPDATE_AREA,
        IO_MEMSLOT_ADD_ASYNC => IO_MEMSLOT_ADD,
        IO_CREATE_PRIMARY_ASYNC => IO_CREATE_PRIMARY,
        IO_DESTROY_PRIMARY_ASYNC => IO_DESTROY_PRIMARY,
        IO_DESTROY_SURFACE_ASYNC => IO_DESTROY_SURFACE_WAIT,
        IO_DESTROY_ALL_SURFACES_ASYNC => IO_DESTROY_ALL_SURFACES,
        other => other,
    }
}

/// Ports that are processed even in VGA mode (docs/qxl.md §5.2 step 3).
pub fn allowed_in_vga_mode(port: u8) -> bool {
    matches!(
        port,
        IO_RESET
            | IO_SET_MODE
            | IO_MEMSLOT_ADD
            | IO_MEMSLOT_DEL
            | IO_CREATE_PRIMARY
            | IO_UPDATE_IRQ
            | IO_LOG
            | IO_MEMSLOT_ADD_ASYNC
            | IO_CREATE_PRIMARY_ASYNC
    )
}

// ---- interrupts ---------------------------------------------------------------------------
pub const INTERRUPT_DISPLAY: u32 = 1 << 0;
pub const INTERRUPT_CURSOR: u32 = 1 << 1;
pub const INTERRUPT_IO_CMD: u32 = 1 << 2;
pub const INTERRUPT_ERROR: u32 = 1 << 3;
pub const INTERRUPT_CLIENT: u32 = 1 << 4;
pub const INTERRUPT_CLIENT_MONITORS_CONFIG: u32 = 1 << 5;

// ---- ROM (BAR 2) --------------------------------------------------------------------------
pub const ROM_MAGIC: u32 = 0x4F52_5851; // "QXRO"
pub mod rom {
    pub const MAGIC: usize = 0;
    pub const ID: usize = 4;
    pub const UPDATE_ID: usize = 8;
    pub const COMPRESSION_LEVEL: usize = 12;
    pub const LOG_LEVEL: usize = 16;
    pub const MODE: usize = 20;
    pub const MODES_OFFSET: usize = 24;
    pub const NUM_PAGES: usize = 28;
    pub const PAGES_OFFSET: usize = 32;
    pub const DRAW_AREA_OFFSET: usize = 36;
    pub const SURFACE0_AREA_SIZE: usize = 40;
    pub const RAM_HEADER_OFFSET: usize = 44;
    pub const MM_CLOCK: usize = 48;
    pub const N_SURFACES: usize = 52;
    pub const FLAGS: usize = 56;
    pub const SLOTS_START: usize = 64;
    pub const SLOTS_END: usize = 65;
    pub const SLOT_GEN_BITS: usize = 66;
    pub const SLOT_ID_BITS: usize = 67;
    pub const SLOT_GENERATION: usize = 68;
    pub const CLIENT_PRESENT: usize = 69;
    pub const CLIENT_CAPABILITIES: usize = 70;
    pub const CLIENT_MONITORS_CONFIG_CRC: usize = 128;
    pub const CLIENT_MONITORS_CONFIG: usize = 132;
    /// `sizeof(QXLRom)`; the mode list follows.
    pub const SIZE: usize = 1160;
    /// Bytes of the client monitors config struct the CRC covers.
    pub const CLIENT_MONITORS_CONFIG_SIZE: usize = 1028;
    pub const MODE_SIZE: usize = 32;
}

// ---- RAM header (BAR 0 + ram_header_offset) -----------------------------------------------
pub const RAM_MAGIC: u32 = 0x4152_5851; // "QXRA"
pub mod ram {
    pub const MAGIC: u64 = 0;
    pub const INT_PENDING: u64 = 4;
    pub const INT_MASK: u64 = 8;
    pub const LOG_BUF: u64 = 12;
    pub const LOG_BUF_SIZE: usize = 4096;
    pub const CMD_RING: u64 = 4108;
    pub const CURSOR_RING: u64 = 4640;
    pub const RELEASE_RING: u64 = 5172;
    pub const UPDATE_AREA: u64 = 5256;
    pub const UPDATE_SURFACE: u64 = 5272;
    pub const MEM_SLOT: u64 = 5276;
    pub const CREATE_SURFACE: u64 = 5292;
    pub const FLAGS: u64 = 5332;
    pub const MONITORS_CONFIG: u64 = 5340;
    /// `sizeof(QXLRam)` (spice-protocol; Linux's copy adds 64 unused bytes).
    pub const SIZE: u64 = 5348;
    /// The header's slot at the end of BAR 0: sizeof rounded up to pages.
    pub const RESERVED: u64 = 8192;
}

/// Ring header fields, relative to a ring.
pub mod ring {
    pub const NUM_ITEMS: u64 = 0;
    pub const PROD: u64 = 4;
    pub const NOTIFY_ON_PROD: u64 = 8;
    pub const CONS: u64 = 12;
    pub const NOTIFY_ON_CONS: u64 = 16;
    pub const ITEMS: u64 = 20;
}
pub const COMMAND_RING_SIZE: u32 = 32;
pub const CURSOR_RING_SIZE: u32 = 32;
pub const RELEASE_RING_SIZE: u32 = 8;
/// `QXLCommand`: u64 data, u32 type, u32 padding.
pub const COMMAND_SIZE: u64 = 16;

// ---- memslots -----------------------------------------------------------------------------
pub const NUM_MEMSLOTS: usize = 8;
pub const SLOTS_START: u8 = 1;
pub const SLOT_GEN_BITS: u8 = 8;
pub const SLOT_ID_BITS: u8 = 8;
pub const NUM_SURFACES: u32 = 1024;

// ---- commands -----------------------------------------------------------------------------
pub const CMD_NOP: u32 = 0;
pub const CMD_DRAW: u32 = 1;
pub const CMD_UPDATE: u32 = 2;
pub const CMD_CURSOR: u32 = 3;
pub const CMD_MESSAGE: u32 = 4;
pub const CMD_SURFACE: u32 = 5;

/// Release ids are pushed in chains of at most this many per ring slot
/// before a slot is pushed anyway (QEMU's `QXL_FREE_BUNCH_SIZE`).
pub const RELEASE_BUNCH: u32 = 32;

// ---- surfaces -----------------------------------------------------------------------------
pub const SURF_FLAG_KEEP_DATA: u32 = 1;
pub const SURF_TYPE_PRIMARY: u32 = 0;
pub const SURFACE_FMT_1_A: u32 = 1;
pub const SURFACE_FMT_8_A: u32 = 8;
pub const SURFACE_FMT_16_555: u32 = 16;
pub const SURFACE_FMT_32_XRGB: u32 = 32;
pub const SURFACE_FMT_16_565: u32 = 80;
pub const SURFACE_FMT_32_ARGB: u32 = 96;

/// Bits per pixel of a surface format; `None` for formats that do not exist.
pub fn surface_format_bpp(format: u32) -> Option<u32> {
    match format {
        SURFACE_FMT_1_A | SURFACE_FMT_8_A | SURFACE_FMT_16_555 | SURFACE_FMT_32_XRGB
        | SURFACE_FMT_16_565 | SURFACE_FMT_32_ARGB => Some(format & 0x3f),
        _ => None,
    }
}

/// Largest surface `height * |stride|` spice accepts.
pub const MAX_SURFACE_BYTES: u64 = 0x7FFF_FFFF;
