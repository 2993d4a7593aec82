//! virtio-serial from a hostile guest driver: the device set up as Linux
//! does (features, queues, DRIVER_OK), then operations from the fuzz input:
//! chains posted on any queue (addresses also past RAM, any lengths and
//! directions), guest memory written (control messages, data), kicks, and
//! the host side writing, reading and opening or closing its ports. The
//! device must never panic, and what waits for the host stays bounded.
#![no_main]

use devices::virtio::console::{VirtioConsole, F_MULTIPORT, GUEST_BYTES_LIMIT};
use devices::virtio::test_driver::{hostile_chain, Driver};
use libfuzzer_sys::fuzz_target;

const PORTS: &[&str] = &["com.redhat.spice.0", "org.qemu.guest_agent.0"];
/// Queues: port 0's pair, the control pair, then a pair per port.
const QUEUES: u16 = 4 + 2 * PORTS.len() as u16;

fuzz_target!(|data: &[u8]| {
    let console = VirtioConsole::new(PORTS).unwrap();
    let mut d = Driver::start(console, F_MULTIPORT);
    let mut ops = data.chunks_exact(8);
    let mut buf = vec![0u8; 64 << 10];
    while let Some(op) = ops.next() {
        let port = 1 + u32::from(op[1]) % PORTS.len() as u32;
        let q = u16::from(op[1]) % QUEUES;
        match op[0] % 8 {
            0 | 1 => {
                d.add(q, &hostile_chain(op));
                d.kick(q);
            }
            2 => d.hostile_write(op, ops.next()),
            3 => {
                let n = usize::from(u16::from_le_bytes([op[2], op[3]]));
                let written = d
                    .device
                    .with_device(|c, queues| c.write(port, &buf[..n], queues));
                assert!(written <= n);
            }
            4 => {
                let n = usize::from(u16::from_le_bytes([op[2], op[3]]));
                d.device
                    .with_device(|c, queues| c.read(port, &mut buf[..n], queues));
            }
            5 => d
                .device
                .with_device(|c, queues| c.set_host_open(port, op[2] & 1 == 1, queues)),
            6 => d.kick(q),
            _ => {
                d.take_used(q);
            }
        }
        let waiting = d.device.with_device(|c, _| c.pending_from_guest(port));
        assert!(
            waiting <= GUEST_BYTES_LIMIT + (256 << 10),
            "{waiting} bytes wait"
        );
    }
});
