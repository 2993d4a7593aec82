//! The display worker (one thread per QXL device) and the front end that
//! vCPU threads use to reach it.
//!
//! vCPU side ([`Frontend`]): `QXL_IO_NOTIFY_CMD`/`CURSOR` only set a flag and
//! wake the worker; `QXL_IO_UPDATE_IRQ` re-evaluates the interrupt line at
//! once (so the guest's interrupt handler never sees a stale level); every
//! other port write is queued in order. Synchronous ports (reset, memslot
//! add/del, create/destroy primary, destroy surface(s), update area) wait
//! until the worker has carried them out, as in QEMU; async ones return at
//! once and complete later with `QXL_INTERRUPT_IO_CMD`. The queue is bounded:
//! a vCPU waits for room (the worker always makes progress).
//!
//! Worker side ([`Worker`]): owns the [`QxlCore`], runs queued requests in
//! order, then drains the rings in bounded passes. It never waits for a
//! guest or a display client. A panic while handling one request or pass
//! (a bug) is caught, logged, and turned into the guest-bug state, so the
//! VM keeps running.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::defs::*;
use super::device::{QxlCore, RING_BUDGET};
use super::irq::IrqLine;
use super::memslots::BarLayout;
use super::observer::DrawableObserver;
use super::stats::QxlStats;
use crate::bus::lock;

/// Requests queued at most before a vCPU waits for room.
const QUEUE_LIMIT: usize = 64;
/// A synchronous port write waits this long at most (only a broken worker takes it).
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) enum Request {
    Port {
        port: u8,
        value: u8,
        bars: BarLayout,
        done: Option<SyncSender<()>>,
    },
    VgaPortWrite,
    /// Machine reset.
    Reset {
        done: SyncSender<()>,
    },
    SetObserver(Option<Box<dyn DrawableObserver>>),
    ClientMonitors(Vec<(u32, u32, u32, u32)>),
    Client {
        present: bool,
        capabilities: Vec<u8>,
    },
}

#[derive(Default)]
struct Queue {
    requests: VecDeque<Request>,
    notify: bool,
    stop: bool,
}

#[derive(Default)]
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    room: Condvar,
}

/// The vCPU threads' side.
pub struct Frontend {
    shared: Arc<Shared>,
    irq: Arc<IrqLine>,
    stats: Arc<QxlStats>,
    vga_kick_queued: AtomicBool,
}

/// Whether a port write waits for the worker.
fn is_synchronous(port: u8) -> bool {
    matches!(
        port,
        IO_UPDATE_AREA
            | IO_RESET
            | IO_SET_MODE
            | IO_MEMSLOT_ADD
            | IO_MEMSLOT_DEL
            | IO_CREATE_PRIMARY
            | IO_DESTROY_PRIMARY
            | IO_DESTROY_SURFACE_WAIT
            | IO_DESTROY_ALL_SURFACES
    )
}

impl Frontend {
    pub(crate) fn new(irq: Arc<IrqLine>, stats: Arc<QxlStats>) -> Arc<Self> {
        Arc::new(Frontend {
            shared: Arc::new(Shared::default()),
            irq,
            stats,
            vga_kick_queued: AtomicBool::new(false),
        })
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn enqueue(&self, request: Request) {
        let mut q = lock(&self.shared.queue);
        while q.requests.len() >= QUEUE_LIMIT && !q.stop {
            q = self.shared.room.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if q.stop {
            return;
        }
        q.requests.push_back(request);
        drop(q);
        self.shared.wake.notify_one();
    }

    /// A guest byte write to I/O port `port`; `bars` tells where the memory
    /// BARs are (needed by memslot adds).
    pub fn port_write(&self, port: u8, value: u8, bars: impl FnOnce() -> BarLayout) {
        match port {
            IO_NOTIFY_CMD | IO_NOTIFY_CURSOR => {
                QxlStats::add(&self.stats.port_writes, 1);
                QxlStats::add(&self.stats.notifies, 1);
                let mut q = lock(&self.shared.queue);
                if !q.notify {
                    q.notify = true;
                    drop(q);
                    self.shared.wake.notify_one();
                }
            }
            IO_UPDATE_IRQ => {
                QxlStats::add(&self.stats.port_writes, 1);
                self.irq.update();
            }
            _ => {
                let bars = if matches!(port, IO_MEMSLOT_ADD | IO_MEMSLOT_ADD_ASYNC) {
                    bars()
                } else {
                    BarLayout::default()
                };
                if is_synchronous(port) {
                    let (done, wait) = sync_channel(1);
                    self.enqueue(Request::Port {
                        port,
                        value,
                        bars,
                        done: Some(done),
                    });
                    if wait.recv_timeout(SYNC_TIMEOUT)
                        == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    {
                        tracing::error!("QXL: the display worker did not answer port {port}");
                    }
                } else {
                    self.enqueue(Request::Port {
                        port,
                        value,
                        bars,
                        done: None,
                    });
                }
            }
        }
    }

    /// Legacy VGA register write while QXL owns the screen (one queued at a time).
    pub(crate) fn vga_port_written(&self) {
        if !self.vga_kick_queued.swap(true, Ordering::SeqCst) {
            self.enqueue(Request::VgaPortWrite);
        }
    }

    /// Machine reset: waits until the device is back in its reset state.
    pub fn reset(&self) {
        let (done, wait) = sync_channel(1);
        self.enqueue(Request::Reset { done });
        let _ = wait.recv_timeout(SYNC_TIMEOUT);
    }

    pub fn set_observer(&self, observer: Option<Box<dyn DrawableObserver>>) {
        self.enqueue(Request::SetObserver(observer));
    }

    pub fn set_client_monitors(&self, heads: Vec<(u32, u32, u32, u32)>) {
        self.enqueue(Request::ClientMonitors(heads));
    }

    pub fn set_client(&self, present: bool, capabilities: Vec<u8>) {
        self.enqueue(Request::Client {
            present,
            capabilities,
        });
    }

    /// Ends the worker (after the requests already queued).
    pub fn stop(&self) {
        lock(&self.shared.queue).stop = true;
        self.shared.wake.notify_all();
        self.shared.room.notify_all();
    }
}

/// The display worker: owns the device state.
pub struct Worker {
    core: QxlCore,
    frontend: Arc<Frontend>,
}

impl Worker {
    pub(crate) fn new(core: QxlCore, frontend: Arc<Frontend>) -> Self {
        Worker { core, frontend }
    }

    /// The device state (tests drive it directly).
    pub fn core(&mut self) -> &mut QxlCore {
        &mut self.core
    }

    /// Starts the worker thread.
    pub fn spawn(self, name: String) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run())
    }

    fn run(mut self) {
        let shared = self.frontend.shared();
        let mut more = false;
        loop {
            let (requests, notified) = {
                let mut q = lock(&shared.queue);
                while q.requests.is_empty() && !q.notify && !q.stop && !more {
                    q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                if q.stop && q.requests.is_empty() {
                    return;
                }
                let requests = std::mem::take(&mut q.requests);
                let notified = std::mem::take(&mut q.notify);
                shared.room.notify_all();
                (requests, notified)
            };
            for request in requests {
                self.guarded(|w| w.handle(request));
            }
            if notified || more {
                let mut result = false;
                self.guarded(|w| result = w.core.process_rings(RING_BUDGET));
                more = result;
            }
        }
    }

    /// Runs `f`; a panic inside it (a device bug) is logged and latched as a
    /// guest bug instead of killing the worker.
    fn guarded(&mut self, f: impl FnOnce(&mut Self)) {
        if catch_unwind(AssertUnwindSafe(|| f(self))).is_err() {
            tracing::error!(
                "QXL: internal error in the display worker; device stopped until reset"
            );
            self.core.internal_error();
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Port {
                port,
                value,
                bars,
                done,
            } => {
                self.core.io_write(port, value, &bars);
                if let Some(done) = done {
                    let _ = done.try_send(());
                }
            }
            Request::VgaPortWrite => {
                self.frontend.vga_kick_queued.store(false, Ordering::SeqCst);
                self.core.vga_port_written();
            }
            Request::Reset { done } => {
                self.core.hard_reset();
                let _ = done.try_send(());
            }
            Request::SetObserver(observer) => self.core.set_observer(observer),
            Request::ClientMonitors(heads) => self.core.set_client_monitors(&heads),
            Request::Client {
                present,
                capabilities,
            } => self.core.set_client(present, &capabilities),
        }
    }
}
