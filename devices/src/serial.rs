//! The 16550 UART at COM1 (0x3f8, IRQ 4), built on vm-superio's model.
//!
//! Output goes to any `Write`; input is pushed by the VMM with
//! [`Serial::enqueue_input`], which reports how much fits in the receive FIFO.
//! [`Serial::input_space`] hands out an event that fires when the guest has
//! drained the FIFO, so an input thread can wait instead of dropping bytes.

use std::io::{self, Write};
use std::sync::Arc;

use vm_superio::serial::SerialEvents;
use vm_superio::Trigger;
use vmm_sys_util::eventfd::EventFd;

use crate::bus::BusDeviceMut;
use crate::interrupt::EdgeInterrupt;

pub const COM1_PORT: u64 = 0x3f8;
pub const COM1_IRQ: u32 = 4;
pub const PORT_COUNT: u64 = 8;

struct InterruptTrigger(Arc<dyn EdgeInterrupt>);

impl Trigger for InterruptTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.trigger();
        Ok(())
    }
}

/// Signals the input side once the guest has emptied the receive FIFO.
struct InputSpace(Arc<EventFd>);

impl SerialEvents for InputSpace {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        // Failing to signal only delays input until the next wake-up.
        let _ = self.0.write(1);
    }
}

pub struct Serial {
    uart: vm_superio::Serial<InterruptTrigger, InputSpace, Box<dyn Write + Send>>,
    input_space: Arc<EventFd>,
}

impl Serial {
    pub fn new(
        interrupt: Arc<dyn EdgeInterrupt>,
        output: Box<dyn Write + Send>,
    ) -> io::Result<Self> {
        let input_space = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
        let uart = vm_superio::Serial::with_events(
            InterruptTrigger(interrupt),
            InputSpace(input_space.clone()),
            output,
        );
        Ok(Serial { uart, input_space })
    }

    /// Puts bytes in the receive FIFO; returns how many fit (0 when it is full).
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(bytes).unwrap_or(0)
    }

    /// An event written each time the guest empties the receive FIFO.
    pub fn input_space(&self) -> Arc<EventFd> {
        self.input_space.clone()
    }

    pub fn flush_output(&mut self) -> io::Result<()> {
        self.uart.writer_mut().flush()
    }
}

impl BusDeviceMut for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let [byte] = data {
            *byte = self.uart.read(offset as u8);
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let [byte] = data {
            // Errors here are a failed write to the output sink or a failed
            // interrupt; the guest sees a working UART either way.
            if let Err(e) = self.uart.write(offset as u8, *byte) {
                tracing::debug!("serial: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::NoInterrupt;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct SharedOutput(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedOutput {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmits_and_receives() {
        let out = SharedOutput::default();
        let mut serial = Serial::new(Arc::new(NoInterrupt), Box::new(out.clone())).unwrap();
        for b in b"hi" {
            serial.write(0, &[*b]);
        }
        assert_eq!(out.0.lock().unwrap().as_slice(), b"hi");

        assert_eq!(serial.enqueue_input(b"ok"), 2);
        let mut lsr = [0u8];
        serial.read(5, &mut lsr);
        assert_eq!(lsr[0] & 1, 1, "data ready");
        let mut b = [0u8];
        serial.read(0, &mut b);
        assert_eq!(b, [b'o']);
        serial.read(0, &mut b);
        assert_eq!(b, [b'k']);
        assert_eq!(
            serial.input_space().read().unwrap(),
            1,
            "FIFO drained is signalled"
        );
    }

    #[test]
    fn full_fifo_takes_what_fits() {
        let mut serial = Serial::new(Arc::new(NoInterrupt), Box::new(io::sink())).unwrap();
        let taken = serial.enqueue_input(&[b'x'; 100]);
        assert!(taken > 0 && taken < 100);
        assert_eq!(serial.enqueue_input(b"y"), 0);
    }
}
