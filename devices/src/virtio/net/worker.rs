//! The card's I/O thread: it sleeps in epoll on its wake-up eventfd
//! (kicks, also as KVM ioeventfds; activation, reset, stop), the
//! backend's fd and a timer (a transmit queue looked at again after
//! frames went out, [`super::transfer::TX_LINGER`]), and runs
//! [`Transfer`] rounds with the transport lock held only for a round.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::timerfd::TimerFd;

use super::transfer::TX_LINGER;
use super::{NetStats, Progress, Transfer, VirtioNet, Wake};
use crate::bus::lock;
use crate::thread_layer::{ThreadLayer, WorkerKind};
use crate::virtio::pci::VirtioPciDevice;

/// The card on its PCI transport.
pub type Transport = Arc<Mutex<VirtioPciDevice<VirtioNet>>>;

/// A running I/O thread; dropping it stops the thread.
pub struct NetWorker {
    wake: Arc<Wake>,
    stats: Arc<NetStats>,
    thread: Option<JoinHandle<()>>,
}

impl NetWorker {
    /// Starts moving `transport`'s frames through `transfer`'s backend.
    pub fn spawn(name: &str, transport: Transport, transfer: Transfer) -> io::Result<Self> {
        let wake = lock(&transport).device().wake_handle();
        let stats = transfer.stats();
        let mut worker = Worker {
            transport,
            wake: wake.clone(),
            transfer,
            timer: TimerFd::new()?,
        };
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || worker.run())?;
        Ok(NetWorker {
            wake,
            stats,
            thread: Some(thread),
        })
    }

    pub fn stats(&self) -> Arc<NetStats> {
        self.stats.clone()
    }
}

impl Drop for NetWorker {
    fn drop(&mut self) {
        self.wake.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Worker {
    transport: Transport,
    wake: Arc<Wake>,
    transfer: Transfer,
    timer: TimerFd,
}

/// Epoll tokens.
const WAKE: u64 = 0;
const BACKEND: u64 = 1;
const TIMER: u64 = 2;

impl Worker {
    fn run(&mut self) {
        let epoll = match self.epoll() {
            Ok(epoll) => epoll,
            Err(e) => {
                tracing::error!("virtio-net: no epoll for the I/O thread: {e}");
                return;
            }
        };
        let mut watching = Some(EventSet::empty());
        let mut layer = ThreadLayer::new(WorkerKind::Network);
        while !self.wake.stopping() {
            layer.before_work();
            self.wake.clear();
            let progress = self.round();
            if !progress.more {
                self.wait(&epoll, progress, &mut watching);
            }
        }
    }

    fn epoll(&self) -> io::Result<Epoll> {
        let epoll = Epoll::new()?;
        let wake = EpollEvent::new(EventSet::IN, WAKE);
        epoll.ctl(ControlOperation::Add, self.wake.event().as_raw_fd(), wake)?;
        let backend = EpollEvent::new(EventSet::empty(), BACKEND);
        let fd = self.transfer.backend_fd().as_raw_fd();
        epoll.ctl(ControlOperation::Add, fd, backend)?;
        let timer = EpollEvent::new(EventSet::IN, TIMER);
        epoll.ctl(ControlOperation::Add, self.timer.as_raw_fd(), timer)?;
        Ok(epoll)
    }

    fn round(&mut self) -> Progress {
        let mut transport = lock(&self.transport);
        let negotiated = transport.driver_features();
        let transfer = &mut self.transfer;
        transport.with_device(|net, queues| transfer.pump(negotiated, net.link_up(), queues))
    }

    /// Sleeps until a wake-up or the backend is ready as `progress` wants.
    /// `watching` is what the backend's fd is watched for; `None` once the
    /// fd hung up or failed (epoll would report that at every wait, so the
    /// fd leaves the set; the next read finds the end).
    fn wait(&mut self, epoll: &Epoll, progress: Progress, watching: &mut Option<EventSet>) {
        let fd = self.transfer.backend_fd().as_raw_fd();
        let mut wanted = EventSet::empty();
        if progress.want_read {
            wanted |= EventSet::IN;
        }
        if progress.want_write {
            wanted |= EventSet::OUT;
        }
        if watching.is_some_and(|w| w != wanted) {
            let event = EpollEvent::new(wanted, BACKEND);
            if let Err(e) = epoll.ctl(ControlOperation::Modify, fd, event) {
                tracing::error!("virtio-net: cannot watch the backend: {e}");
            }
            *watching = Some(wanted);
        }
        // Lingering, a round must come soon (the driver will not kick):
        // without the timer, epoll's own timeout (1 ms) does it.
        let mut timeout = -1;
        if progress.linger {
            if let Err(e) = self.timer.reset(TX_LINGER, None) {
                tracing::error!("virtio-net: cannot arm the transmit timer: {e}");
                timeout = 1;
            }
        }
        let mut events = [EpollEvent::default(); 3];
        let n = match epoll.wait(timeout, &mut events) {
            Ok(n) => n,
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("virtio-net: epoll failed: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                0
            }
        };
        if events[..n].iter().any(|e| e.data() == TIMER) {
            let _ = self.timer.wait(); // (expired: does not block)
        }
        let broken = EventSet::HANG_UP | EventSet::ERROR;
        let hung_up = events[..n]
            .iter()
            .any(|e| e.data() == BACKEND && e.event_set().intersects(broken));
        if hung_up && watching.is_some() {
            let _ = epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
            *watching = None;
        }
    }
}
