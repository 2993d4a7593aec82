//! The card's I/O thread: it sleeps in `poll` on its wake-up eventfd
//! (kicks, activation, reset, stop) and the backend's fd, and runs
//! [`Transfer`] rounds with the transport lock held only for a round.

use std::io;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{NetStats, Progress, Transfer, VirtioNet, Wake};
use crate::bus::lock;
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
}

impl Worker {
    fn run(&mut self) {
        while !self.wake.stopping() {
            self.wake.clear();
            let progress = self.round();
            if !progress.more {
                self.wait(progress);
            }
        }
    }

    fn round(&mut self) -> Progress {
        let mut transport = lock(&self.transport);
        let negotiated = transport.driver_features();
        let transfer = &mut self.transfer;
        transport.with_device(|net, queues| transfer.pump(negotiated, net.link_up(), queues))
    }

    /// Sleeps until a wake-up or the backend is ready as `progress` wants.
    fn wait(&self, progress: Progress) {
        let mut events = PollFlags::empty();
        if progress.want_read {
            events |= PollFlags::POLLIN;
        }
        if progress.want_write {
            events |= PollFlags::POLLOUT;
        }
        let backend = self.transfer.backend_fd();
        let mut fds = vec![PollFd::new(self.wake.fd().as_fd(), PollFlags::POLLIN)];
        if !events.is_empty() {
            fds.push(PollFd::new(backend, events));
        }
        if let Err(e) = poll(&mut fds, PollTimeout::NONE) {
            if e != nix::errno::Errno::EINTR {
                tracing::error!("virtio-net: poll failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}
