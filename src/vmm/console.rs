//! The serial console on the user's terminal: guest output to stdout (or a
//! file), keyboard input to the UART, with the terminal in raw mode while the
//! VM runs. Ctrl-a x stops the VM; Ctrl-a Ctrl-a sends a literal Ctrl-a.

use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devices::bus::lock;
use devices::serial::Serial;
use vmm_sys_util::terminal::Terminal;

use super::exit::{ExitSignal, VmExit};

const ESCAPE: u8 = 0x01; // Ctrl-a

/// Guest output to our stdout, flushed on every write so prompts show at once.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = io::stdout().lock();
        out.write_all(buf)?;
        out.flush()?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

/// Standard input as a terminal, without taking the stdin lock (the console
/// input thread holds it while it reads).
struct StdinTerminal;

// SAFETY: `Terminal`'s contract is a file descriptor that may be a
// terminal; fd 0 is only ever changed with termios calls here.
unsafe impl Terminal for StdinTerminal {
    fn tty_fd(&self) -> RawFd {
        0
    }
}

/// Whether a [`RawTerminal`] put the terminal in raw mode and has not put
/// it back.
static RAW: AtomicBool = AtomicBool::new(false);

/// Puts the terminal in raw mode, and back when dropped.
pub struct RawTerminal;

impl RawTerminal {
    pub fn enter() -> Self {
        let raw = io::stdin().is_terminal() && StdinTerminal.set_raw_mode().is_ok();
        RAW.store(raw, Ordering::SeqCst);
        RawTerminal
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Puts the terminal back in canonical mode if saffron made it raw (also
/// from the panic hook, which ends the process without running drops).
pub fn restore_terminal() {
    if RAW.swap(false, Ordering::SeqCst) {
        let _ = StdinTerminal.set_canon_mode();
    }
}

/// Feeds stdin to the UART on a thread of its own, waiting for the guest to
/// drain the FIFO instead of dropping input.
pub fn spawn_input(serial: Arc<Mutex<Serial>>, exit: Arc<ExitSignal>) -> io::Result<()> {
    let space = lock(&serial).input_space();
    let interactive = io::stdin().is_terminal();
    std::thread::Builder::new()
        .name("console-input".into())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buf = [0u8; 256];
            let mut escape_pending = false;
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) => return, // EOF: the guest keeps running without input
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                let mut input = Vec::with_capacity(n);
                for &byte in &buf[..n] {
                    if interactive && escape_pending {
                        escape_pending = false;
                        match byte {
                            b'x' | b'X' => {
                                exit.request(VmExit::Stopped);
                                return;
                            }
                            ESCAPE => input.push(ESCAPE),
                            other => input.extend([ESCAPE, other]),
                        }
                    } else if interactive && byte == ESCAPE {
                        escape_pending = true;
                    } else {
                        input.push(byte);
                    }
                }
                let mut rest = &input[..];
                while !rest.is_empty() {
                    let taken = lock(&serial).enqueue_input(rest);
                    rest = &rest[taken..];
                    if !rest.is_empty() {
                        // Wait until the guest empties the FIFO (or time out and retry).
                        wait_readable(space.as_raw_fd(), Duration::from_millis(50));
                        let _ = space.read();
                    }
                }
            }
        })?;
    Ok(())
}

fn wait_readable(fd: i32, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
}
