//! The display worker (one thread per QXL device) and the front end that
//! vCPU threads use to reach it.
//!
//! vCPU side ([`Frontend`]): `QXL_IO_NOTIFY_CMD`/`CURSOR` only signal an
//! eventfd that wakes the worker (the VMM registers it as a KVM ioeventfd on
//! both ports, so these writes do not even exit to the VMM; see
//! `QxlPci::bar_events`); `QXL_IO_UPDATE_IRQ` re-evaluates the interrupt line at
//! once (so the guest's interrupt handler never sees a stale level); every
//! other port write is queued in order. Synchronous ports (reset, memslot
//! add/del, create/destroy primary, destroy surface(s), update area) wait
//! until the worker has carried them out, as in QEMU; async ones return at
//! once and complete later with `QXL_INTERRUPT_IO_CMD`. The queue is bounded:
//! a vCPU waits for room (the worker always makes progress).
//!
//! Worker side ([`Worker`]): owns the [`QxlCore`], sleeps in epoll on the
//! queue's and the notify eventfds, runs queued requests in order, then
//! drains the rings in bounded passes. It never waits for a
//! guest or a display client. (A panic here is a bug: saffron's panic
//! hook ends the VM with an error, as for any thread.)

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::defs::*;
use super::device::{QxlCore, RING_BUDGET};
use super::irq::IrqLine;
use super::memslots::BarLayout;
use super::observer::DrawableObserver;
use super::stats::QxlStats;
use crate::bus::lock;
use crate::thread_layer::ThreadLayer;

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
}

/// What the display client side last said; only the latest counts, so a
/// burst of them never fills the queue or makes the SPICE loop wait.
#[derive(Default)]
struct ClientState {
    monitors: Option<Vec<(u32, u32, u32, u32)>>,
    client: Option<(bool, Vec<u8>)>,
}

#[derive(Default)]
struct Queue {
    requests: VecDeque<Request>,
    latest: ClientState,
    stop: bool,
}

/// The vCPU threads' side.
pub struct Frontend {
    queue: Mutex<Queue>,
    /// Signalled when a request is queued (or the worker must stop).
    queue_event: EventFd,
    /// Signalled by `QXL_IO_NOTIFY_CMD` / `QXL_IO_NOTIFY_CURSOR`.
    notify_event: Arc<EventFd>,
    /// A vCPU waits here while the queue is full.
    room: Condvar,
    irq: Arc<IrqLine>,
    stats: Arc<QxlStats>,
    vga_kick_queued: AtomicBool,
    /// The guest's driver takes client monitors configs (its interrupt
    /// mask has the bit), as the worker last saw.
    takes_client_monitors: AtomicBool,
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
    pub(crate) fn new(irq: Arc<IrqLine>, stats: Arc<QxlStats>) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Frontend {
            queue: Mutex::new(Queue::default()),
            queue_event: EventFd::new(EFD_NONBLOCK)?,
            notify_event: Arc::new(EventFd::new(EFD_NONBLOCK)?),
            room: Condvar::new(),
            irq,
            stats,
            vga_kick_queued: AtomicBool::new(false),
            takes_client_monitors: AtomicBool::new(false),
        }))
    }

    /// The event `QXL_IO_NOTIFY_CMD`/`CURSOR` signal (for a KVM ioeventfd).
    pub(crate) fn notify_event(&self) -> Arc<EventFd> {
        self.notify_event.clone()
    }

    fn signal(event: &EventFd) {
        if let Err(e) = event.write(1) {
            tracing::warn!("QXL: cannot wake the display worker: {e}");
        }
    }

    /// Queues a request; false once the worker was told to stop.
    fn enqueue(&self, request: Request) -> bool {
        let mut q = lock(&self.queue);
        while q.requests.len() >= QUEUE_LIMIT && !q.stop {
            q = self.room.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if q.stop {
            return false;
        }
        q.requests.push_back(request);
        drop(q);
        Self::signal(&self.queue_event);
        true
    }

    /// A guest byte write to I/O port `port`; `bars` tells where the memory
    /// BARs are (needed by memslot adds).
    pub fn port_write(&self, port: u8, value: u8, bars: impl FnOnce() -> BarLayout) {
        match port {
            IO_NOTIFY_CMD | IO_NOTIFY_CURSOR => {
                // Only when the VMM has no ioeventfd on these ports.
                QxlStats::add(&self.stats.port_writes, 1);
                Self::signal(&self.notify_event);
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
                    let queued = self.enqueue(Request::Port {
                        port,
                        value,
                        bars,
                        done: Some(done),
                    });
                    if queued
                        && wait.recv_timeout(SYNC_TIMEOUT)
                            == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    {
                        tracing::error!("QXL: the display worker did not answer port {port}");
                    }
                } else {
                    let _ = self.enqueue(Request::Port {
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
            let _ = self.enqueue(Request::VgaPortWrite);
        }
    }

    /// Machine reset: waits until the device is back in its reset state.
    pub fn reset(&self) {
        let (done, wait) = sync_channel(1);
        if self.enqueue(Request::Reset { done }) {
            let _ = wait.recv_timeout(SYNC_TIMEOUT);
        }
    }

    pub fn set_observer(&self, observer: Option<Box<dyn DrawableObserver>>) {
        let _ = self.enqueue(Request::SetObserver(observer));
    }

    /// Whether the guest's driver takes client monitors configs (as the
    /// worker last saw).
    pub fn set_client_monitors(&self, heads: Vec<(u32, u32, u32, u32)>) -> bool {
        lock(&self.queue).latest.monitors = Some(heads);
        Self::signal(&self.queue_event);
        self.takes_client_monitors.load(Ordering::SeqCst)
    }

    pub fn set_client(&self, present: bool, capabilities: Vec<u8>) {
        lock(&self.queue).latest.client = Some((present, capabilities));
        Self::signal(&self.queue_event);
    }

    /// Ends the worker (after the requests already queued).
    pub fn stop(&self) {
        lock(&self.queue).stop = true;
        Self::signal(&self.queue_event);
        self.room.notify_all();
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

    /// An epoll set on the queue and notify events; `None` if the system
    /// refuses one (then the worker polls every millisecond).
    fn epoll(&self) -> Option<Epoll> {
        let epoll = Epoll::new().ok()?;
        for event in [&self.frontend.queue_event, &*self.frontend.notify_event] {
            epoll
                .ctl(
                    ControlOperation::Add,
                    event.as_raw_fd(),
                    EpollEvent::new(EventSet::IN, 0),
                )
                .ok()?;
        }
        Some(epoll)
    }

    fn run(mut self) {
        let epoll = self.epoll();
        if epoll.is_none() {
            tracing::warn!("QXL: no epoll for the display worker; polling instead");
        }
        let frontend = self.frontend.clone();
        let mut events = [EpollEvent::default(); 2];
        let mut more = false;
        let mut layer = ThreadLayer::default();
        loop {
            layer.before_work();
            // Reading an eventfd clears it; whatever is signalled after this
            // is seen by the next pass (the wait below returns at once).
            let notifies = frontend.notify_event.read().unwrap_or(0);
            let _ = frontend.queue_event.read();
            let (requests, latest, stop) = {
                let mut q = lock(&frontend.queue);
                let requests = std::mem::take(&mut q.requests);
                frontend.room.notify_all();
                (requests, std::mem::take(&mut q.latest), q.stop)
            };
            if stop && requests.is_empty() {
                return;
            }
            QxlStats::add(&frontend.stats.notifies, notifies);
            let idle = requests.is_empty() && notifies == 0 && !more;
            for request in requests {
                self.handle(request);
            }
            self.apply(latest);
            if notifies > 0 || more {
                more = self.core.process_rings(RING_BUDGET);
            }
            if idle {
                match &epoll {
                    Some(epoll) => {
                        if let Err(e) = epoll.wait(-1, &mut events) {
                            if e.kind() != std::io::ErrorKind::Interrupted {
                                tracing::warn!("QXL: display worker wait failed: {e}");
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                    None => std::thread::sleep(Duration::from_millis(1)),
                }
            }
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
        }
    }

    /// Applies the client side's latest state; notes whether the guest's
    /// driver takes client monitors configs.
    fn apply(&mut self, latest: ClientState) {
        if let Some(heads) = latest.monitors {
            self.core.set_client_monitors(&heads);
        }
        if let Some((present, capabilities)) = latest.client {
            self.core.set_client(present, &capabilities);
        }
        let takes = self.core.takes_client_monitors();
        self.frontend
            .takes_client_monitors
            .store(takes, Ordering::SeqCst);
    }
}
