//! The ACPI tables for a BIOS, through QEMU's table-loader interface
//! (docs/seabios-platform.md): the firmware chooses where the tables go.
//!
//! The tables are built as if placed at address 0, so every pointer holds
//! an offset into the blob. Three fw_cfg files carry them: the RSDP, the
//! tables, and the loader script, whose commands tell the firmware to
//! allocate both (the RSDP in the BIOS segment, where the OS looks for it),
//! add the tables' address to each pointer, and fix the checksums.

use crate::acpi::{self, AcpiConfig};

pub const RSDP_FILE: &str = "etc/acpi/rsdp";
pub const TABLES_FILE: &str = "etc/acpi/tables";
pub const LOADER_FILE: &str = "etc/table-loader";

/// Bytes of one loader command.
pub const ENTRY_SIZE: usize = 128;
const FILE_NAME: usize = 56;
const ALLOCATE: u32 = 1;
const ADD_POINTER: u32 = 2;
const ADD_CHECKSUM: u32 = 3;
const ZONE_HIGH: u8 = 1;
const ZONE_FSEG: u8 = 2;

/// Bytes of the RSDP (ACPI 2.0 and later).
const RSDP_LEN: usize = 36;
/// Offsets in a table header.
const HEADER_LEN: usize = 36;
const CHECKSUM: u32 = 9;

/// The three files for fw_cfg.
#[derive(Debug, Clone)]
pub struct LoaderFiles {
    pub rsdp: Vec<u8>,
    pub tables: Vec<u8>,
    pub loader: Vec<u8>,
}

/// Builds the tables of `config` and the script that places them.
pub fn build(config: &AcpiConfig) -> LoaderFiles {
    let built = acpi::build_at(config, 0);
    let at = built.rsdp_addr as usize;
    let rsdp = built.bytes[at..at + RSDP_LEN].to_vec();
    // The RSDP travels in its own file; its place in the blob stays blank.
    let mut tables = built.bytes;
    tables[at..at + RSDP_LEN].fill(0);
    let mut script = Script::default();
    script.allocate(RSDP_FILE, 16, ZONE_FSEG);
    script.allocate(TABLES_FILE, 64, ZONE_HIGH);
    let xsdt = read_u64(&rsdp, 24) as usize;
    script.pointer(RSDP_FILE, TABLES_FILE, 24, 8);
    for table in xsdt_entries(&tables, xsdt) {
        script.pointer(TABLES_FILE, TABLES_FILE, table.entry, 8);
        if tables.get(table.offset..table.offset + 4) == Some(b"FACP") {
            fadt_pointers(&mut script, &tables, table.offset);
        }
    }
    script.checksum(TABLES_FILE, &tables, xsdt);
    script.raw_checksum(RSDP_FILE, 8, 0, 20);
    script.raw_checksum(RSDP_FILE, 32, 0, RSDP_LEN as u32);
    LoaderFiles {
        rsdp,
        tables,
        loader: script.bytes,
    }
}

/// A table the XSDT names: where its entry is and where the table is.
struct Entry {
    entry: u32,
    offset: usize,
}

fn xsdt_entries(tables: &[u8], xsdt: usize) -> Vec<Entry> {
    let len = read_u32(tables, xsdt + 4) as usize;
    (xsdt + HEADER_LEN..xsdt + len)
        .step_by(8)
        .map(|at| Entry {
            entry: at as u32,
            offset: read_u64(tables, at) as usize,
        })
        .collect()
}

/// The FADT's pointers to the FACS and DSDT (32- and 64-bit forms; those
/// left zero mean "absent" and stay so), then its checksum.
fn fadt_pointers(script: &mut Script, tables: &[u8], fadt: usize) {
    let len = read_u32(tables, fadt + 4) as usize;
    for (field, size) in [(36, 4), (40, 4), (132, 8), (140, 8)] {
        let at = fadt + field;
        let value = if size == 4 {
            u64::from(read_u32(tables, at))
        } else {
            read_u64(tables, at)
        };
        if field + size <= len && value != 0 {
            script.pointer(TABLES_FILE, TABLES_FILE, at as u32, size as u8);
        }
    }
    script.checksum(TABLES_FILE, tables, fadt);
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default())
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default())
}

/// Loader commands, each [`ENTRY_SIZE`] bytes.
#[derive(Default)]
struct Script {
    bytes: Vec<u8>,
}

impl Script {
    fn entry(&mut self, command: u32) -> &mut [u8] {
        let start = self.bytes.len();
        self.bytes.resize(start + ENTRY_SIZE, 0);
        self.bytes[start..start + 4].copy_from_slice(&command.to_le_bytes());
        &mut self.bytes[start..]
    }

    fn allocate(&mut self, file: &str, align: u32, zone: u8) {
        let e = self.entry(ALLOCATE);
        put_name(&mut e[4..], file);
        e[60..64].copy_from_slice(&align.to_le_bytes());
        e[64] = zone;
    }

    /// Adds `source`'s address to the `size`-byte pointer at `offset` in `dest`.
    fn pointer(&mut self, dest: &str, source: &str, offset: u32, size: u8) {
        let e = self.entry(ADD_POINTER);
        put_name(&mut e[4..], dest);
        put_name(&mut e[60..], source);
        e[116..120].copy_from_slice(&offset.to_le_bytes());
        e[120] = size;
    }

    /// Fixes the checksum of the table at offset `table` of `file`
    /// (whose bytes are `bytes`).
    fn checksum(&mut self, file: &str, bytes: &[u8], table: usize) {
        let len = read_u32(bytes, table + 4);
        self.raw_checksum(file, table as u32 + CHECKSUM, table as u32, len);
    }

    fn raw_checksum(&mut self, file: &str, offset: u32, start: u32, length: u32) {
        let e = self.entry(ADD_CHECKSUM);
        put_name(&mut e[4..], file);
        e[60..64].copy_from_slice(&offset.to_le_bytes());
        e[64..68].copy_from_slice(&start.to_le_bytes());
        e[68..72].copy_from_slice(&length.to_le_bytes());
    }
}

fn put_name(field: &mut [u8], name: &str) {
    let n = name.len().min(FILE_NAME - 1);
    field[..n].copy_from_slice(&name.as_bytes()[..n]);
}

#[cfg(test)]
mod tests;
