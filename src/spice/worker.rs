//! Channels on a thread of their own. The display channel encodes
//! pictures and video frames; on the event loop's thread that would hold
//! up input, pings and the main channel behind every large encode, so it
//! runs on a worker (as libspice's display worker does).
//!
//! The loop drives a [`Threaded`] proxy like any other channel. The proxy
//! passes the client's messages and the loop's changes to the worker as
//! commands, and moves what the worker framed into the connection's
//! outbox. The worker frames into a twin of that outbox (same numbering,
//! one count of unwritten bytes), so its ACK window and its limit on
//! queued bytes work as they would in the loop. At most [`MAX_PENDING`]
//! client messages wait for the worker; it handles at most
//! [`MAX_COMMANDS_PER_TURN`] commands before it pumps.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::Waker;

use super::channel::{ChannelError, Outbox};
use devices::display::Display;
use devices::thread_layer::{ThreadLayer, WorkerKind};

use super::display_feed::{DisplayFeed, FeedState};
use super::inputs_channel::KeyboardLeds;
use super::session::{Changes, Context, SentTotals, SessionView, SpiceChannel};

/// Commands not yet handled at most: a client that sends this many
/// messages while its worker is busy is disconnected rather than queued
/// for without bound.
const MAX_PENDING: usize = 4096;
/// Commands the worker takes in one turn at most, before it pumps.
const MAX_COMMANDS_PER_TURN: usize = 256;
/// The worker wakes at least this often (its channel's timeouts).
const IDLE_WAIT: Duration = Duration::from_millis(250);

enum Command {
    Message(u16, Vec<u8>),
    /// The channel's display has events (in its feed).
    DisplayEvents,
    Changes {
        guest_leds: KeyboardLeds,
        client_mouse_allowed: bool,
        view: Option<SessionView>,
    },
    /// The socket took some of the queued bytes.
    Room,
    /// The connection closed.
    Stop,
}

/// What the worker tells the proxy.
#[derive(Default)]
struct Shared {
    /// Commands sent and not yet handled (with their output handed over).
    pending: AtomicUsize,
    has_work: AtomicBool,
    /// The worker has work it may lack room for: tell it when bytes go out.
    wants_room: AtomicBool,
    overdue: AtomicBool,
    published: Mutex<Published>,
}

#[derive(Default)]
struct Published {
    /// Framed messages for the connection's outbox.
    framed: Vec<Vec<u8>>,
    sent: SentTotals,
    error: Option<ChannelError>,
}

impl Shared {
    fn published(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A channel running on its own thread, as the event loop sees it.
pub struct Threaded {
    commands: Sender<Command>,
    shared: Arc<Shared>,
    is_display: bool,
    /// What the worker was last told of the guest's LEDs and pointer.
    told: Option<(KeyboardLeds, bool)>,
}

/// How the worker reaches the loop and tells time.
pub struct WorkerSetup {
    /// The display whose shown head the channel follows, and its index
    /// in [`Changes::displays`]: the worker takes its events itself, so
    /// drawing never wakes the event loop.
    pub display: Option<(usize, Arc<Display>)>,
    /// Thread name.
    pub name: String,
    /// Wakes the event loop when there is output.
    pub waker: Arc<Waker>,
    /// When the server started (`Context::now_ns`).
    pub epoch: Instant,
}

impl Threaded {
    /// Starts `channel` on a thread of its own; `out` is the connection's
    /// outbox with what the channel queued when it started. A thread that
    /// cannot start fails the connection (logged), not the server.
    pub fn spawn(channel: Box<dyn SpiceChannel>, out: &Outbox, setup: WorkerSetup) -> Threaded {
        let (commands, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let is_display = channel.is_display();
        let feed = setup.display.map(|(index, display)| {
            let (tx, shared) = (commands.clone(), shared.clone());
            let notify = Box::new(move || {
                shared.pending.fetch_add(1, Ordering::SeqCst);
                if tx.send(Command::DisplayEvents).is_err() {
                    shared.pending.fetch_sub(1, Ordering::SeqCst);
                }
            });
            (index, DisplayFeed::shown_head(&display, notify))
        });
        let worker = Worker {
            channel,
            out: out.twin(),
            rx,
            shared: shared.clone(),
            waker: setup.waker,
            epoch: setup.epoch,
            feed,
            last: (KeyboardLeds::default(), false),
        };
        let started = std::thread::Builder::new()
            .name(setup.name.clone())
            .spawn(move || worker.run());
        if let Err(e) = started {
            tracing::error!("spice: cannot start thread {}: {e}", setup.name);
            shared.published().error = Some(ChannelError::Protocol("no thread for the channel"));
        }
        Threaded {
            commands,
            shared,
            is_display,
            told: None,
        }
    }

    fn send(&self, command: Command) {
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        if self.commands.send(command).is_err() {
            // The worker is gone (it failed to start, or died): nothing
            // waits, and the connection closes.
            self.shared.pending.fetch_sub(1, Ordering::SeqCst);
            let mut published = self.shared.published();
            if published.error.is_none() {
                published.error = Some(ChannelError::Protocol("the channel's thread stopped"));
            }
        }
    }
}

impl SpiceChannel for Threaded {
    fn receive(&mut self, msg_type: u16, body: &[u8], _: &mut Context) -> Result<(), ChannelError> {
        if self.shared.pending.load(Ordering::SeqCst) >= MAX_PENDING {
            return Err(ChannelError::Protocol(
                "too many messages while the channel is busy",
            ));
        }
        self.send(Command::Message(msg_type, body.to_vec()));
        Ok(())
    }

    fn update(&mut self, changes: &Changes, _: &mut Outbox) {
        // (Display events reach the worker through its own feed.)
        let told = Some((changes.guest_leds, changes.client_mouse_allowed));
        if changes.view.is_some() || told != self.told {
            self.told = told;
            self.send(Command::Changes {
                guest_leds: changes.guest_leds,
                client_mouse_allowed: changes.client_mouse_allowed,
                view: changes.view,
            });
        }
    }

    fn has_work(&self) -> bool {
        self.shared.pending.load(Ordering::SeqCst) > 0
            || self.shared.has_work.load(Ordering::SeqCst)
            || !self.shared.published().framed.is_empty()
    }

    fn pump(&mut self, cx: &mut Context) {
        let framed = std::mem::take(&mut self.shared.published().framed);
        cx.out.append_framed(framed);
    }

    fn written(&mut self) {
        if self.shared.wants_room.swap(false, Ordering::SeqCst) {
            self.send(Command::Room);
        }
    }

    // (No deadline for the loop: the worker keeps its channel's own.)

    fn overdue(&self, _: Instant) -> bool {
        self.shared.overdue.load(Ordering::SeqCst)
    }

    fn failed(&mut self) -> Option<ChannelError> {
        self.shared.published().error.take()
    }

    fn add_sent(&self, sent: &mut SentTotals) {
        let mine = self.shared.published().sent;
        sent.add(&mine);
    }

    fn bounds_own_output(&self) -> bool {
        true
    }

    fn is_display(&self) -> bool {
        self.is_display
    }
}

impl Drop for Threaded {
    fn drop(&mut self) {
        // (The display feed holds a sender too: the worker is told.)
        let _ = self.commands.send(Command::Stop);
    }
}

/// The worker thread's side.
struct Worker {
    channel: Box<dyn SpiceChannel>,
    out: Outbox,
    rx: Receiver<Command>,
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    epoch: Instant,
    feed: Option<(usize, DisplayFeed)>,
    /// What the channel was last told of the rest (for display events).
    last: (KeyboardLeds, bool),
}

impl Worker {
    /// Runs until the connection closes (`Stop`) or the channel fails.
    fn run(mut self) {
        let mut progressed = false;
        let mut layer = ThreadLayer::new(WorkerKind::Compute);
        loop {
            layer.before_work();
            let now = Instant::now();
            let wait = match self.channel.next_deadline() {
                Some(at) if at > now => (at - now).min(IDLE_WAIT),
                // Due already: at once if the last turn got somewhere (a
                // long encode outlasted the deadline), else the channel
                // waits for the client (ACKs, room) and a command wakes it.
                Some(_) if progressed => Duration::ZERO,
                _ => IDLE_WAIT,
            };
            let first = match self.rx.recv_timeout(wait) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let more = std::iter::from_fn(|| self.rx.try_recv().ok());
            let commands: Vec<Command> = first
                .into_iter()
                .chain(more.take(MAX_COMMANDS_PER_TURN))
                .collect();
            let handled = commands.len();
            for command in commands {
                if matches!(command, Command::Stop) {
                    return;
                }
                if let Err(e) = self.handle(command) {
                    // The connection closes: report it, and end (the
                    // rest of the commands are dropped with the thread).
                    self.shared.published().error = Some(e);
                    self.turn(handled, true);
                    return;
                }
            }
            progressed = self.turn(handled, false);
        }
    }

    fn handle(&mut self, command: Command) -> Result<(), ChannelError> {
        let mut cx = Context {
            out: &mut self.out,
            now: Instant::now(),
            now_ns: self.epoch.elapsed().as_nanos() as u64,
        };
        match command {
            Command::Message(msg_type, body) => self.channel.receive(msg_type, &body, &mut cx)?,
            Command::Changes {
                guest_leds,
                client_mouse_allowed,
                view,
            } => {
                self.last = (guest_leds, client_mouse_allowed);
                let changes = Changes {
                    displays: &[],
                    guest_leds,
                    client_mouse_allowed,
                    view,
                };
                self.channel.update(&changes, cx.out);
            }
            Command::DisplayEvents => {
                let Some((index, feed)) = &self.feed else {
                    return Ok(());
                };
                let mut displays = vec![FeedState::default(); index + 1];
                displays[*index] = feed.take();
                let changes = Changes {
                    displays: &displays,
                    guest_leds: self.last.0,
                    client_mouse_allowed: self.last.1,
                    view: None,
                };
                self.channel.update(&changes, cx.out);
            }
            Command::Room | Command::Stop => {}
        }
        Ok(())
    }

    /// Pumps, hands the output over and publishes the state, then counts
    /// the `handled` commands done (after all that, so that the proxy
    /// never sees neither pending commands nor their effects). Returns
    /// whether there was output.
    fn turn(&mut self, handled: usize, failed: bool) -> bool {
        let now = Instant::now();
        if self.channel.has_work() {
            // Set before pumping: bytes the loop writes after the pump
            // looked at the backlog bring a Room command.
            self.shared.wants_room.store(true, Ordering::SeqCst);
            self.channel.pump(&mut Context {
                out: &mut self.out,
                now,
                now_ns: self.epoch.elapsed().as_nanos() as u64,
            });
        }
        let has_work = self.channel.has_work();
        if !has_work {
            // Nothing left that would need room.
            self.shared.wants_room.store(false, Ordering::SeqCst);
        }
        let framed = self.out.hand_over();
        let mut sent = SentTotals::default();
        self.channel.add_sent(&mut sent);
        let produced = !framed.is_empty();
        let output = {
            let mut published = self.shared.published();
            // The loop needs waking only for output it has not been
            // told of (it takes everything handed over when it wakes).
            let news = published.framed.is_empty() && !framed.is_empty();
            published.framed.extend(framed);
            published.sent = sent;
            news
        };
        let overdue = self.channel.overdue(now);
        self.shared.has_work.store(has_work, Ordering::SeqCst);
        self.shared.overdue.store(overdue, Ordering::SeqCst);
        self.shared.pending.fetch_sub(handled, Ordering::SeqCst);
        // (Not for commands alone: whoever waits for the loop's status
        // wakes it often enough.)
        if output || overdue || failed {
            if let Err(e) = self.waker.wake() {
                tracing::warn!("spice: cannot wake the event loop: {e}");
            }
        }
        produced
    }
}

impl Drop for Worker {
    /// However the thread ends (a panic included), the proxy stops
    /// waiting for it, and a panic closes the connection.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut published = self.shared.published();
            if published.error.is_none() {
                published.error = Some(ChannelError::Protocol("the channel's thread failed"));
            }
        }
        self.shared.pending.store(0, Ordering::SeqCst);
        self.shared.has_work.store(false, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spice::channel::Encode;
    use crate::spice::wire::{next_frame, HeaderMode, Writer};

    /// Echoes each message back, and fills the outbox with 1 KiB
    /// messages up to 4 KiB of backlog while `fill` is on; message 99 is
    /// a protocol error.
    struct Echo {
        fill: bool,
    }

    struct Raw(Vec<u8>);

    impl Encode for Raw {
        const TYPE: u16 = 0;
        fn encode(&self, w: &mut Writer) {
            w.bytes(&self.0);
        }
    }

    impl SpiceChannel for Echo {
        fn receive(&mut self, t: u16, body: &[u8], cx: &mut Context) -> Result<(), ChannelError> {
            match t {
                99 => Err(ChannelError::UnknownType(99)),
                98 => panic!("a channel bug"),
                1 => {
                    self.fill = true;
                    Ok(())
                }
                _ => {
                    cx.out.push_raw(t, body.to_vec());
                    Ok(())
                }
            }
        }
        fn has_work(&self) -> bool {
            self.fill
        }
        fn pump(&mut self, cx: &mut Context) {
            while cx.out.queued_bytes() < 4096 {
                cx.out.push(&Raw(vec![7; 1024]));
            }
        }
    }

    fn start(out: &Outbox) -> (Threaded, mio::Poll) {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let setup = WorkerSetup {
            display: None,
            name: "test-worker".into(),
            waker,
            epoch: Instant::now(),
        };
        (
            Threaded::spawn(Box::new(Echo { fill: false }), out, setup),
            poll,
        )
    }

    /// Waits until the worker has handled everything sent.
    fn settle(t: &Threaded) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.shared.pending.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "the worker never caught up");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn cx(out: &mut Outbox) -> Context<'_> {
        Context {
            out,
            now: Instant::now(),
            now_ns: 0,
        }
    }

    #[test]
    fn messages_go_through_the_worker_in_order_and_keep_the_numbering() {
        let mut out = Outbox::new(HeaderMode::Full);
        out.push_raw(5, vec![1]); // queued by the channel's start
        let (mut t, _poll) = start(&out);
        for i in 0..50u16 {
            t.receive(100 + i, &[i as u8; 3], &mut cx(&mut out))
                .unwrap();
        }
        settle(&t);
        t.pump(&mut cx(&mut out));
        assert!(!t.has_work());
        let bytes = out.take_bytes();
        let mut at = 0;
        let mut seen = Vec::new();
        while let Some((h, body, used)) =
            next_frame(HeaderMode::Full, &bytes[at..], 1 << 20).unwrap()
        {
            seen.push((h.msg_type, body.to_vec()));
            at += used;
        }
        assert_eq!(seen.len(), 51);
        assert_eq!(seen[0], (5, vec![1]));
        for (i, (t, body)) in seen[1..].iter().enumerate() {
            assert_eq!((*t, body.as_slice()), (100 + i as u16, &[i as u8; 3][..]));
        }
        assert_eq!(out.queued_bytes(), 0);
    }

    #[test]
    fn an_error_on_the_worker_fails_the_connection() {
        let out = Outbox::new(HeaderMode::Mini);
        let (mut t, _poll) = start(&out);
        let mut sink = Outbox::new(HeaderMode::Mini);
        t.receive(99, &[], &mut cx(&mut sink)).unwrap();
        settle(&t);
        assert_eq!(t.failed(), Some(ChannelError::UnknownType(99)));
        assert_eq!(t.failed(), None, "reported once");
    }

    #[test]
    fn a_worker_that_panics_fails_the_connection_and_is_not_waited_for() {
        let out = Outbox::new(HeaderMode::Mini);
        let (mut t, _poll) = start(&out);
        let mut sink = Outbox::new(HeaderMode::Mini);
        t.receive(98, &[], &mut cx(&mut sink)).unwrap();
        settle(&t);
        assert!(!t.has_work());
        assert_eq!(
            t.failed(),
            Some(ChannelError::Protocol("the channel's thread failed"))
        );
        // Later messages find no worker: the connection fails again.
        t.receive(7, &[1], &mut cx(&mut sink)).unwrap();
        assert!(t.failed().is_some());
        assert!(!t.has_work());
    }

    #[test]
    fn the_worker_fills_the_room_each_write_makes() {
        let mut out = Outbox::new(HeaderMode::Mini);
        let (mut t, _poll) = start(&out);
        t.receive(1, &[], &mut cx(&mut out)).unwrap();
        settle(&t);
        t.pump(&mut cx(&mut out));
        assert!(out.queued_bytes() >= 4096, "filled up to its limit");
        let mut total = 0;
        for _ in 0..5 {
            // The socket takes everything: the worker hears of it and
            // fills the outbox again.
            total += out.take_bytes().len();
            assert_eq!(out.queued_bytes(), 0);
            t.written();
            settle(&t);
            t.pump(&mut cx(&mut out));
            assert!(out.queued_bytes() >= 4096);
        }
        assert!(total >= 5 * 4096);
    }
}
