//! The interface between the event loop and the channels: every channel
//! kind is one [`ChannelKind`] (its number, how many the server offers, its
//! capabilities, how to open one), and every open channel is a
//! [`SpiceChannel`] the loop drives without knowing its kind. Channels of
//! one session talk to each other only through the [`SessionView`] (what
//! the main channel decided) and the [`Changes`] the loop hands them.
//!
//! Adding a channel costs one file that implements both and one line in
//! the loop's list of kinds (`server::CHANNELS`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use devices::display::Display;
use mio::Waker;

use super::agent::Agent;
use super::audio::AudioHub;
use super::channel::{ChannelError, Outbox};
use super::codec::policy::CompressionOptions;
use super::config::MousePolicy;
use super::display_feed::FeedState;
use super::image_cache::SessionImages;
use super::inputs_channel::{InputSink, KeyboardLeds};
use super::mm_clock::MmClock;
use super::net_test::LinkEstimate;
use super::wire::Caps;

/// One kind of channel the server offers.
pub struct ChannelKind {
    /// The `SPICE_CHANNEL_*` number.
    pub channel_type: u8,
    /// For logs: "display" (then the id follows when there can be several).
    pub name: &'static str,
    /// How many channels of this kind the server offers (ids `0..n`).
    pub count: fn(&ServerContext) -> usize,
    /// Our capabilities for this kind, sent in the link reply.
    pub caps: fn() -> Caps,
    /// Starts one (queuing what the client gets first).
    pub open: fn(&Opening, &mut Outbox) -> Box<dyn SpiceChannel>,
}

impl ChannelKind {
    /// "main", "display 1", ...: the name a channel of this kind is logged by.
    pub fn channel_name(&self, id: u8, server: &ServerContext) -> String {
        match (self.count)(server) {
            1 => self.name.to_string(),
            _ => format!("{} {id}", self.name),
        }
    }
}

/// What channels may see of the server when they open.
pub struct ServerContext {
    pub displays: Vec<Arc<Display>>,
    pub input: Arc<dyn InputSink>,
    /// An absolute pointing device is available now.
    pub client_mouse_allowed: bool,
    /// Which mouse modes `mouse=` allows.
    pub mouse: MousePolicy,
    /// The compression options display channels opened now get.
    pub compression: CompressionOptions,
    /// The guest's keyboard LEDs as last reported.
    pub guest_leds: KeyboardLeds,
    /// When the server started: ping timestamps and the multimedia
    /// clock ([`Self::clock`]) count from here.
    pub epoch: Instant,
    /// Wakes the event loop (for channels on threads of their own).
    pub waker: Arc<Waker>,
    /// Every channel except main, in the order clients should open them.
    pub channels: Vec<(u8, u8)>,
    /// The guest agent's port (`None` with `agent=off` or no port).
    pub agent: Option<Arc<Mutex<Agent>>>,
    /// The sound card's audio (`None` without one): offers the playback
    /// and record channels.
    pub audio: Option<Arc<AudioHub>>,
}

impl ServerContext {
    /// The multimedia clock (main channel and video streams share it).
    pub fn clock(&self) -> MmClock {
        MmClock::new(self.epoch)
    }
}

/// What the main channel decides for its session and the other channels
/// follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionView {
    /// `mouse_mode::SERVER` or `CLIENT`.
    pub mouse_mode: u16,
    /// What the session's network test found (`None` until it is over).
    pub client_link: Option<LinkEstimate>,
}

/// One client's session: its id, what its channels share, and what its
/// main channel decided.
pub struct Session {
    pub id: u32,
    /// Its caches and GLZ windows.
    pub images: Arc<SessionImages>,
    /// Whether its client keeps the caches we name by hashed ids (cursor
    /// shapes, pictures).
    pub client_caches: bool,
    pub view: SessionView,
}

/// Everything a channel gets when it opens.
pub struct Opening<'a> {
    pub id: u8,
    /// The client's capabilities for this channel.
    pub client_caps: &'a Caps,
    pub session: &'a Session,
    pub server: &'a ServerContext,
    pub now: Instant,
    /// Nanoseconds since the server started (ping timestamps).
    pub now_ns: u64,
}

/// What a channel handles a message or produces output with.
pub struct Context<'a> {
    pub out: &'a mut Outbox,
    pub now: Instant,
    pub now_ns: u64,
}

/// What happened since the last pass of the loop.
pub struct Changes<'a> {
    /// Each display's events, by display index.
    pub displays: &'a [FeedState],
    pub guest_leds: KeyboardLeds,
    pub client_mouse_allowed: bool,
    /// The session's view, when its main channel changed it.
    pub view: Option<SessionView>,
}

/// An open channel, as the event loop drives it.
pub trait SpiceChannel: Send {
    /// Handles one client message; an error closes the connection.
    fn receive(&mut self, msg_type: u16, body: &[u8], cx: &mut Context)
        -> Result<(), ChannelError>;

    /// Takes in what changed since the last pass (display events, the
    /// guest's LEDs, the session's decisions).
    fn update(&mut self, _changes: &Changes, _out: &mut Outbox) {}

    /// Whether [`Self::pump`] has something to send given room.
    fn has_work(&self) -> bool {
        false
    }

    /// Queues output, as much as the channel's own limits allow; called
    /// every pass and whenever a write made room.
    fn pump(&mut self, _cx: &mut Context) {}

    /// The socket took some of the queued bytes.
    fn written(&mut self) {}

    /// When the channel needs a pump without any event.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// Whether the client failed to finish starting the channel in time.
    fn overdue(&self, _now: Instant) -> bool {
        false
    }

    /// Why the channel must close, when it found out after `receive`
    /// returned (a channel on its own thread).
    fn failed(&mut self) -> Option<ChannelError> {
        None
    }

    /// The main channel writes its decisions for the session here.
    fn decide(&self, _view: &mut SessionView) {}

    /// Adds what the channel sent to the server's totals.
    fn add_sent(&self, _sent: &mut SentTotals) {}

    /// Whether the channel bounds its own output (by ACKs and the outbox
    /// size), so that its requests are read even while replies queue up.
    fn bounds_own_output(&self) -> bool {
        false
    }

    /// Whether it counts as a display client (status, replay pacing).
    fn is_display(&self) -> bool {
        false
    }

    /// The connection is gone: undo what the client still holds (keys).
    fn closed(&mut self) {}
}

/// What the display and cursor channels sent since the server started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SentTotals {
    /// Images and their bytes per encoding, in the order of
    /// [`super::codec::policy::STATS_METHODS`].
    pub images: [u64; 6],
    pub image_bytes: [u64; 6],
    /// Draws sent as ids of the client's pixmap cache (no image data).
    pub images_from_cache: u64,
    /// Video streams started, their frames and bytes.
    pub streams: u64,
    pub stream_frames: u64,
    pub stream_bytes: u64,
    /// Due stream frames not sent because they showed what the last did.
    pub stream_frames_unchanged: u64,
    /// Still stream pictures sent losslessly over their stream.
    pub stream_stills_made_exact: u64,
    /// Cursor shapes sent, and how many of them as ids of the client's
    /// cursor cache.
    pub cursor_shapes: u64,
    pub cursor_shapes_from_cache: u64,
    /// Playback packets sent and their payload bytes (Opus or raw PCM).
    pub audio_packets: u64,
    pub audio_bytes: u64,
}

impl SentTotals {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &SentTotals) {
        for m in 0..self.images.len() {
            self.images[m] += other.images[m];
            self.image_bytes[m] += other.image_bytes[m];
        }
        self.images_from_cache += other.images_from_cache;
        self.streams += other.streams;
        self.stream_frames += other.stream_frames;
        self.stream_bytes += other.stream_bytes;
        self.stream_frames_unchanged += other.stream_frames_unchanged;
        self.stream_stills_made_exact += other.stream_stills_made_exact;
        self.cursor_shapes += other.cursor_shapes;
        self.cursor_shapes_from_cache += other.cursor_shapes_from_cache;
        self.audio_packets += other.audio_packets;
        self.audio_bytes += other.audio_bytes;
    }
}
