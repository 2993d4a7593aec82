//! The loader script, run the way SeaBIOS runs it: allocate, patch, fix
//! checksums; the result must be the same tables as built for that place.

use super::*;
use crate::acpi::build_at;
use crate::layout::{MemoryLayout, MIB};

fn name(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8(field[..end].to_vec()).unwrap()
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

/// Runs `files.loader` with the RSDP at `rsdp_at` and the tables at `tables_at`.
fn run(files: &LoaderFiles, rsdp_at: u64, tables_at: u64) -> (Vec<u8>, Vec<u8>) {
    let (mut rsdp, mut tables) = (files.rsdp.clone(), files.tables.clone());
    for e in files.loader.chunks_exact(ENTRY_SIZE) {
        let command = u32::from_le_bytes(e[0..4].try_into().unwrap());
        let file = name(&e[4..60]);
        let pick = |f: &str| if f == RSDP_FILE { rsdp_at } else { tables_at };
        match command {
            ALLOCATE => assert!(file == RSDP_FILE || file == TABLES_FILE, "{file}"),
            ADD_POINTER => {
                let source = pick(&name(&e[60..116]));
                let offset = u32::from_le_bytes(e[116..120].try_into().unwrap()) as usize;
                let size = usize::from(e[120]);
                let dest = if file == RSDP_FILE {
                    &mut rsdp
                } else {
                    &mut tables
                };
                let mut value = [0u8; 8];
                value[..size].copy_from_slice(&dest[offset..offset + size]);
                let patched = u64::from_le_bytes(value) + source;
                dest[offset..offset + size].copy_from_slice(&patched.to_le_bytes()[..size]);
            }
            ADD_CHECKSUM => {
                let field = |at: usize| u32::from_le_bytes(e[at..at + 4].try_into().unwrap());
                let (offset, start, len) = (field(60) as usize, field(64) as usize, field(68));
                let dest = if file == RSDP_FILE {
                    &mut rsdp
                } else {
                    &mut tables
                };
                let s = sum(&dest[start..start + len as usize]);
                dest[offset] = dest[offset].wrapping_sub(s);
            }
            other => panic!("unknown command {other}"),
        }
    }
    (rsdp, tables)
}

#[test]
fn loaded_tables_equal_tables_built_in_place() {
    let layout = MemoryLayout::new(512 * MIB, 40).unwrap();
    let config = AcpiConfig {
        cpus: 2,
        layout: &layout,
    };
    let files = build(&config);
    assert_eq!(files.loader.len() % ENTRY_SIZE, 0);
    let tables_at = 0x1ff0_0000;
    let (rsdp, tables) = run(&files, 0xf5a40, tables_at);
    let expected = build_at(&config, tables_at);
    let at = (expected.rsdp_addr - tables_at) as usize;
    assert_eq!(&rsdp[..], &expected.bytes[at..at + RSDP_LEN]);
    let mut want = expected.bytes.clone();
    want[at..at + RSDP_LEN].fill(0);
    assert_eq!(tables.len(), want.len());
    let first_difference = tables.iter().zip(&want).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "every pointer patched, every checksum fixed"
    );
    assert_eq!(sum(&rsdp[..20]), 0);
    assert_eq!(sum(&rsdp), 0);
}
