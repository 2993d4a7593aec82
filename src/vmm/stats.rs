//! VM-wide counters and the stats dump: `kill -USR2 <saffron pid>` prints
//! one line to stderr,
//!
//! ```text
//! saffron-stats exits_io=N exits_mmio=N exits_other=N qxl: port_writes=N ...
//! ```
//!
//! (VM exits of all vCPUs since start, and the QXL device's counters), for
//! benchmarks that compare two dumps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use devices::qxl::QxlControl;

/// VM exits of all vCPUs, by kind.
#[derive(Debug, Default)]
pub struct ExitTotals {
    pub io: AtomicU64,
    pub mmio: AtomicU64,
    pub other: AtomicU64,
}

impl ExitTotals {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the dump shows.
pub struct VmStats {
    pub exits: Arc<ExitTotals>,
    pub qxl: Option<QxlControl>,
}

impl VmStats {
    pub fn line(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut line = format!(
            "saffron-stats exits_io={} exits_mmio={} exits_other={}",
            g(&self.exits.io),
            g(&self.exits.mmio),
            g(&self.exits.other)
        );
        if let Some(qxl) = &self.qxl {
            line.push_str(" qxl: ");
            line.push_str(&qxl.stats().to_line());
        }
        line
    }
}

fn usr2_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the local set they are given.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        set
    }
}

/// Blocks SIGUSR2 in this thread and every thread it starts afterwards, so
/// that only the stats thread (which waits for it) receives it. Call before
/// starting any other thread.
pub fn block_dump_signal() {
    let set = usr2_set();
    // SAFETY: changes this thread's signal mask with a valid set; no old mask wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        tracing::debug!("cannot block SIGUSR2: no stats dump");
    }
}

/// Starts the thread that prints a dump on every SIGUSR2.
pub fn spawn_dump_thread(stats: VmStats) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("stats".into())
        .spawn(move || loop {
            let set = usr2_set();
            let mut signal = 0;
            // SAFETY: waits for a signal in a valid set (blocked in every
            // thread, see block_dump_signal) and writes its number to a local.
            let rc = unsafe { libc::sigwait(&set, &mut signal) };
            if rc != 0 {
                return;
            }
            eprintln!("{}", stats.line());
        })
        .map(|_| ())
}
