//! The disk's I/O thread.
//!
//! It sleeps until the driver kicks the queue, then takes up to
//! [`MAX_BATCH`] requests at a time while holding the transport's lock
//! only for that, serves them one after the other with no lock held (so a
//! slow disk or a long `fdatasync` never stalls a vCPU), and returns them
//! with one interrupt per batch. Requests are served in queue order, so a
//! flush covers every write the driver had completed before it.
//!
//! Data moves through one bounce buffer of [`CHUNK`] bytes, so a request's
//! memory cost does not depend on its size.

use std::io;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress};

use super::request::{self, DiskShape, Operation, Request, Segment};
use super::stats::{worth_logging, BlockStats};
use super::{Kick, VirtioBlock, STATUS_IOERR, STATUS_OK};
use crate::block::DiskImage;
use crate::bus::lock;
use crate::thread_layer::ThreadLayer;
use crate::virtio::pci::VirtioPciDevice;
use crate::virtio::GuestMemory;

/// The block device on its PCI transport.
pub type Transport = Arc<Mutex<VirtioPciDevice<VirtioBlock>>>;

/// Requests taken from the queue at a time.
pub const MAX_BATCH: usize = 32;
/// Bytes moved between the image and guest memory at a time.
pub const CHUNK: usize = 1 << 20;
/// Descriptors read from one chain (a longer one is refused).
const MAX_CHAIN: usize = 2 * super::limits::QUEUE_SIZE as usize;

/// A running I/O thread; dropping it stops the thread after the request in
/// hand and flushes the image.
pub struct BlockWorker {
    kick: Arc<Kick>,
    stats: Arc<BlockStats>,
    thread: Option<JoinHandle<()>>,
}

impl BlockWorker {
    /// Starts serving `transport`'s queue from `disk`.
    pub fn spawn(
        name: &str,
        transport: Transport,
        disk: Box<dyn DiskImage>,
        memory: GuestMemory,
    ) -> io::Result<Self> {
        let (kick, shape, serial) = {
            let t = lock(&transport);
            let device = t.device();
            let shape = DiskShape {
                size: device.size(),
                read_only: device.read_only(),
            };
            (device.kick_handle(), shape, *device.serial())
        };
        let server = RequestServer::new(name, disk, memory, shape, serial);
        let stats = server.stats();
        let mut worker = Worker {
            transport,
            kick: kick.clone(),
            server,
        };
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || worker.run())?;
        Ok(BlockWorker {
            kick,
            stats,
            thread: Some(thread),
        })
    }

    /// The disk's counters.
    pub fn stats(&self) -> Arc<BlockStats> {
        self.stats.clone()
    }
}

impl Drop for BlockWorker {
    fn drop(&mut self) {
        self.kick.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Batch = Vec<(u16, Vec<Descriptor>)>;

/// Tells the kick the batch is over when dropped.
struct BatchEnd<'a>(&'a Kick);

impl Drop for BatchEnd<'_> {
    fn drop(&mut self) {
        self.0.end_batch();
    }
}

struct Worker {
    transport: Transport,
    kick: Arc<Kick>,
    server: RequestServer,
}

/// Serves requests, one chain at a time (the I/O thread's work, usable
/// on its own by tests and fuzzing).
pub struct RequestServer {
    name: String,
    disk: Box<dyn DiskImage>,
    memory: GuestMemory,
    shape: DiskShape,
    serial: [u8; request::ID_SIZE as usize],
    buffer: Vec<u8>,
    stats: Arc<BlockStats>,
}

impl Worker {
    fn run(&mut self) {
        let mut layer = ThreadLayer::default();
        while self.kick.wait().is_some() {
            layer.before_work();
            self.drain();
        }
        self.server.final_flush();
    }

    /// Serves the queue until it is empty. A reset in the middle of a batch
    /// waits for the request in hand; the rest of the batch is dropped.
    fn drain(&mut self) {
        while !self.kick.stopping() {
            let (generation, batch) = self.take_batch();
            // Ends the batch even if serving panics, so a reset never waits forever.
            let busy = BatchEnd(&self.kick);
            let mut done = Vec::with_capacity(batch.len());
            for (head, chain) in &batch {
                if self.kick.generation() != generation {
                    break;
                }
                done.push((*head, self.server.serve(chain)));
            }
            drop(busy);
            if batch.is_empty() {
                return;
            }
            self.complete(generation, &done);
        }
    }

    /// Takes requests from the queue. Notifications stay off while a full
    /// batch may leave more behind (the thread comes back for them); a batch
    /// that is not full re-arms them first and then looks once more, so a
    /// request the driver adds meanwhile is either taken or kicked. Every
    /// return that is not a full batch leaves them armed: with EVENT_IDX the
    /// driver kicks only past the index armed last.
    fn take_batch(&self) -> (u64, Batch) {
        let mut transport = lock(&self.transport);
        let generation = self.kick.begin_batch();
        let batch = transport.with_device(|_, queues| {
            let mut batch = Batch::new();
            queues.disable_notification(0);
            loop {
                let before = batch.len();
                while batch.len() < MAX_BATCH {
                    let Some(chain) = queues.pop(0) else { break };
                    let head = chain.head_index();
                    batch.push((head, chain.take(MAX_CHAIN + 1).collect()));
                }
                if batch.len() >= MAX_BATCH || queues.failed() {
                    return batch;
                }
                // A round that found nothing ends it whatever the ring claims
                // (pop has failed the device if the claim was bogus).
                let found = batch.len() > before;
                if !queues.enable_notification(0) || !found {
                    return batch;
                }
            }
        });
        (generation, batch)
    }

    /// Returns served requests to the driver, unless it reset the device
    /// in the meantime.
    fn complete(&self, generation: u64, done: &[(u16, u32)]) {
        let mut transport = lock(&self.transport);
        if self.kick.generation() != generation {
            return;
        }
        transport.with_device(|_, queues| {
            for &(head, len) in done {
                queues.add_used(0, head, len);
            }
            queues.notify(0);
        });
    }
}

impl RequestServer {
    pub fn new(
        name: &str,
        disk: Box<dyn DiskImage>,
        memory: GuestMemory,
        shape: DiskShape,
        serial: [u8; request::ID_SIZE as usize],
    ) -> Self {
        RequestServer {
            name: name.to_string(),
            disk,
            memory,
            shape,
            serial,
            buffer: vec![0; CHUNK],
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<BlockStats> {
        self.stats.clone()
    }

    /// Makes what was written durable before the thread ends.
    fn final_flush(&mut self) {
        if let Err(e) = self.disk.flush() {
            tracing::error!("{}: final flush failed: {e}", self.name);
        }
    }

    /// Serves one request; the bytes written into its writable buffers.
    pub fn serve(&mut self, chain: &[Descriptor]) -> u32 {
        // A chain whose last descriptor still names a next one was cut
        // short (a loop, a bad index or indirect table): its end is unknown.
        let cut_short = chain.last().is_some_and(|d| d.has_next());
        let parsed = if chain.len() > MAX_CHAIN || cut_short {
            Err(request::Refusal {
                status_addr: None,
                status: STATUS_IOERR,
                reason: format!("a chain cut short or of more than {MAX_CHAIN} descriptors"),
            })
        } else {
            request::parse(chain, &self.memory, self.shape)
        };
        let (status_addr, status, written) = match parsed {
            Ok(request) => {
                let (status, written) = self.execute(&request);
                (Some(request.status), status, written)
            }
            Err(refusal) => {
                let n = self.stats.refused();
                if worth_logging(n) {
                    tracing::warn!("{}: request #{n} refused: {}", self.name, refusal.reason);
                }
                (refusal.status_addr, refusal.status, 0)
            }
        };
        match status_addr {
            Some(addr) if self.memory.write_obj(status, addr).is_ok() => written + 1,
            _ => 0,
        }
    }

    /// Does the I/O: (status, data bytes written to the guest).
    fn execute(&mut self, request: &Request) -> (u8, u32) {
        let result = match &request.operation {
            Operation::Read { offset } => self.read(*offset, request).map(|()| request.data_len),
            Operation::Write { offset } => self.write(*offset, request).map(|()| 0),
            Operation::Flush => self.disk.flush().map(|()| 0),
            Operation::GetId => self.get_id(request),
            Operation::Discard(ranges) => ranges
                .iter()
                .try_for_each(|r| self.disk.discard(r.offset, r.len))
                .map(|()| 0),
            Operation::WriteZeroes(ranges) => ranges
                .iter()
                .try_for_each(|r| self.disk.write_zeroes(r.offset, r.len, r.unmap))
                .map(|()| 0),
        };
        let operation = &request.operation;
        self.stats
            .served(operation, request.data_len, result.is_ok());
        match result {
            Ok(written) => (STATUS_OK, written as u32),
            Err(e) => {
                let n = self.stats.io_errors();
                if worth_logging(n) {
                    tracing::warn!("{}: I/O error #{n} in {operation:?}: {e}", self.name);
                }
                (STATUS_IOERR, 0)
            }
        }
    }

    fn read(&mut self, offset: u64, request: &Request) -> io::Result<()> {
        let mut cursor = Cursor::new(&request.data);
        let mut done = 0;
        while done < request.data_len {
            let n = (request.data_len - done).min(CHUNK as u64) as usize;
            self.disk.read_at(offset + done, &mut self.buffer[..n])?;
            cursor.copy_out(&self.memory, &self.buffer[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, request: &Request) -> io::Result<()> {
        let mut cursor = Cursor::new(&request.data);
        let mut done = 0;
        while done < request.data_len {
            let n = (request.data_len - done).min(CHUNK as u64) as usize;
            cursor.copy_in(&self.memory, &mut self.buffer[..n])?;
            self.disk.write_at(offset + done, &self.buffer[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    fn get_id(&self, request: &Request) -> io::Result<u64> {
        let n = request.data_len.min(self.serial.len() as u64) as usize;
        Cursor::new(&request.data).copy_out(&self.memory, &self.serial[..n])?;
        Ok(n as u64)
    }
}

/// A position in a request's data buffers.
struct Cursor<'a> {
    segments: &'a [Segment],
    index: usize,
    at: u32,
}

impl<'a> Cursor<'a> {
    fn new(segments: &'a [Segment]) -> Self {
        Cursor {
            segments,
            index: 0,
            at: 0,
        }
    }

    /// The next piece of at most `max` bytes.
    fn next_piece(&mut self, max: usize) -> io::Result<(GuestAddress, usize)> {
        while let Some(s) = self.segments.get(self.index) {
            if self.at < s.len {
                let n = ((s.len - self.at) as usize).min(max);
                let addr = GuestAddress(s.addr.0 + u64::from(self.at));
                self.at += n as u32;
                return Ok((addr, n));
            }
            self.index += 1;
            self.at = 0;
        }
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "past the buffers",
        ))
    }

    /// Copies `bytes` into the buffers from the cursor on.
    fn copy_out(&mut self, memory: &GuestMemory, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let (addr, n) = self.next_piece(bytes.len())?;
            memory
                .write_slice(&bytes[..n], addr)
                .map_err(io::Error::other)?;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Fills `buf` from the buffers from the cursor on.
    fn copy_in(&mut self, memory: &GuestMemory, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let (addr, n) = self.next_piece(buf.len())?;
            memory
                .read_slice(&mut buf[..n], addr)
                .map_err(io::Error::other)?;
            buf = &mut buf[n..];
        }
        Ok(())
    }
}
