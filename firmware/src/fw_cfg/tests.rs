//! fw_cfg as SeaBIOS reads it: the port interface and DMA, and as a
//! hostile guest might.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;

const RAM: usize = 1 << 20;

fn device() -> FwCfg {
    let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
    let mut fw = FwCfg::new(memory, 2, 512 << 20);
    fw.add_file("etc/b", vec![1, 2, 3]).unwrap();
    fw.add_file("etc/a", b"hello".to_vec()).unwrap();
    fw
}

fn read_item(fw: &mut FwCfg, selector: u16, len: usize) -> Vec<u8> {
    fw.write(SELECTOR, &selector.to_le_bytes());
    (0..len)
        .map(|_| {
            let mut b = [0u8];
            fw.read(DATA, &mut b);
            b[0]
        })
        .collect()
}

#[test]
fn port_interface() {
    let mut fw = device();
    assert_eq!(read_item(&mut fw, key::SIGNATURE, 4), b"QEMU");
    assert_eq!(read_item(&mut fw, key::ID, 4), [3, 0, 0, 0]);
    assert_eq!(read_item(&mut fw, key::NB_CPUS, 2), [2, 0]);
    // Past the end and unknown selectors read as zero.
    assert_eq!(read_item(&mut fw, key::SIGNATURE, 6), b"QEMU\0\0");
    assert_eq!(read_item(&mut fw, 0x7777, 2), [0, 0]);
    let mut sig = [0u8; 4];
    fw.read(DMA_HIGH, &mut sig);
    assert_eq!(&sig, b"QEMU");
    // `rep insb` of 4 bytes arrives as one 4-byte read of the data port.
    fw.write(SELECTOR, &key::SIGNATURE.to_le_bytes());
    let mut string = [0u8; 4];
    fw.read(DATA, &mut string);
    assert_eq!(&string, b"QEMU");
}

#[test]
fn directory_is_sorted_and_big_endian() {
    let mut fw = device();
    let dir = read_item(&mut fw, key::FILE_DIR, 4 + 2 * 64);
    assert_eq!(&dir[..4], &[0, 0, 0, 2]);
    let entry = |i: usize| &dir[4 + i * 64..4 + (i + 1) * 64];
    assert_eq!(&entry(0)[..4], &[0, 0, 0, 5], "etc/a is 5 bytes");
    assert_eq!(&entry(0)[4..6], &[0, 0x21], "etc/a was added second");
    assert_eq!(&entry(0)[8..14], b"etc/a\0");
    assert_eq!(&entry(1)[4..6], &[0, 0x20]);
    assert_eq!(read_item(&mut fw, 0x21, 5), b"hello");
}

#[test]
fn file_names_are_checked() {
    let mut fw = device();
    assert_eq!(
        fw.add_file("etc/a", vec![]),
        Err(FwCfgError::Duplicate("etc/a".into()))
    );
    assert!(fw.add_file("", vec![]).is_err());
    assert!(fw.add_file(&"x".repeat(56), vec![]).is_err());
    assert!(fw.add_file(&"x".repeat(55), vec![]).is_ok());
}

/// Writes a DMA control block at `at` and starts it.
fn dma(fw: &mut FwCfg, at: u64, ctl: u32, length: u32, address: u64) -> u32 {
    let mut block = ctl.to_be_bytes().to_vec();
    block.extend_from_slice(&length.to_be_bytes());
    block.extend_from_slice(&address.to_be_bytes());
    fw.memory.write_slice(&block, GuestAddress(at)).unwrap();
    fw.write(DMA_HIGH, &((at >> 32) as u32).to_be_bytes());
    fw.write(DMA_LOW, &(at as u32).to_be_bytes());
    u32::from_be_bytes(fw.memory.read_obj::<[u8; 4]>(GuestAddress(at)).unwrap())
}

#[test]
fn dma_select_skip_read() {
    let mut fw = device();
    let select_a = (0x21 << 16) | control::SELECT;
    assert_eq!(dma(&mut fw, 0x1000, select_a | control::SKIP, 1, 0), 0);
    fw.memory
        .write_slice(&[0xff; 8], GuestAddress(0x2000))
        .unwrap();
    assert_eq!(dma(&mut fw, 0x1000, control::READ, 8, 0x2000), 0);
    let got = fw.memory.read_obj::<[u8; 8]>(GuestAddress(0x2000)).unwrap();
    assert_eq!(
        &got, b"ello\0\0\0\0",
        "skipped one byte, zeroes past the end"
    );
}

#[test]
fn hostile_dma_sets_the_error_bit() {
    let mut fw = device();
    let select = (u32::from(key::SIGNATURE) << 16) | control::SELECT;
    // Target outside RAM, wrapping, huge; writes; nothing is touched.
    for (length, address) in [(4, RAM as u64), (4, u64::MAX - 1), (u32::MAX, 0x2000)] {
        let status = dma(&mut fw, 0x1000, select | control::READ, length, address);
        assert_eq!(status, control::ERROR, "{length} at {address:#x}");
    }
    assert_eq!(
        dma(&mut fw, 0x1000, select | control::WRITE, 4, 0x2000),
        control::ERROR
    );
    assert_eq!(read_item(&mut fw, key::SIGNATURE, 4), b"QEMU");
    // A control block outside RAM is ignored.
    fw.write(DMA_HIGH, &0x10u32.to_be_bytes());
    fw.write(DMA_LOW, &0u32.to_be_bytes());
}
