//! The display channel (type 2): shows one head of a [`Display`].
//!
//! Connect sequence (as spice-server): `SET_ACK`, wait for the client's
//! `DISPLAY_INIT`, then `INVAL_ALL_PALETTES`, `SURFACE_CREATE` (primary,
//! 32-bit xRGB), `MONITORS_CONFIG` (if the client takes it), one `DRAW_COPY`
//! of the whole picture (spicy-screenshot saves after the first draw, so it
//! must be complete) and `MARK` (clients show nothing before it).
//!
//! Afterwards damage is not queued as updates: it is added to a bounded
//! [`Region`], and whenever the socket has room and the client's ACK window
//! allows, the next piece of the region is read from the *current* picture
//! and sent as a lossless `DRAW_COPY`. A slow client therefore merges old
//! updates instead of buffering them, and producers never wait for it.
//!
//! Images go through the channel's [`Compressor`] (codec::policy): QUIC,
//! LZ, GLZ (the session's window, set up from DISPLAY_INIT), LZ4, JPEG or
//! raw, per the `--spice` options and the client's PREFERRED_COMPRESSION.
//! Updates are taken from the region a few rectangles at a time and
//! compressed together, on several cores when large. The first full
//! picture after a (re)sync is always lossless. A picture the client's
//! pixmap cache holds (the same pixels, sent before) goes as its id
//! ([`crate::spice::image_cache::CachedImages`]). Translating QXL
//! drawables into SPICE draw operations would add messages next to
//! [`DrawCopy`] and a second source of work next to the damage region.

use std::sync::Arc;
use std::time::{Duration, Instant};

use devices::display::{Display, Rect, Surface};

use super::channel::{AckWindow, BaseMessage, ChannelError, Encode, Outbox};
use super::codec::policy::{ClientTraits, CompressionOptions, Compressor, Request};
use super::display_feed::SHOWN_HEAD;
use super::image_cache::{
    CacheStep, CachedImages, InvalAllPixmaps, InvalList, SessionImages, MIN_CACHED_PIXELS,
};
use super::mm_clock::MmClock;
use super::net_test::LinkEstimate;
use super::protocol::{channel, display_cap, display_msg};
use super::region::Region;
use super::session::{Changes, ChannelKind, Context, SentTotals, SpiceChannel};
use super::video_stream::{StreamReport, VideoStreams};
use super::wire::{Caps, Reader, Writer};
use super::worker::{Threaded, WorkerSetup};

/// The client must send `DISPLAY_INIT` within this time.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Stop producing updates while this much is queued for the socket.
pub const OUTBOX_LOW_WATER: usize = 512 * 1024;
/// Largest incremental update message, in pixels (1 MiB of bitmap).
pub const MAX_UPDATE_PIXELS: u64 = 256 * 1024;
/// Largest first full-picture message in pixels; bigger pictures are sent
/// in bands (64 MiB: 4096×4096).
pub const MAX_FULL_IMAGE_PIXELS: u64 = 16 * 1024 * 1024;
/// Most update rectangles compressed together (in parallel).
pub const MAX_BATCH: u64 = 8;
/// Rounds of lossless updates start at most this often (see [`UpdatePacer`]).
pub const MIN_UPDATE_INTERVAL: Duration = Duration::from_millis(33);

/// `SPICE_SURFACE_FMT_32_xRGB`.
pub const SURFACE_FMT_32_XRGB: u32 = 32;
/// `SPICE_SURFACE_FLAGS_PRIMARY`.
pub const SURFACE_FLAG_PRIMARY: u32 = 1;
const ROPD_OP_PUT: u16 = 1 << 3;
const CLIP_NONE: u8 = 0;

/// `SURFACE_CREATE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurfaceCreate {
    pub surface_id: u32,
    pub width: u32,
    pub height: u32,
    pub format: u32,
    pub flags: u32,
}

impl Encode for SurfaceCreate {
    const TYPE: u16 = display_msg::SURFACE_CREATE;
    fn encode(&self, w: &mut Writer) {
        w.u32(self.surface_id)
            .u32(self.width)
            .u32(self.height)
            .u32(self.format)
            .u32(self.flags);
    }
}

/// `SURFACE_DESTROY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurfaceDestroy {
    pub surface_id: u32,
}

impl Encode for SurfaceDestroy {
    const TYPE: u16 = display_msg::SURFACE_DESTROY;
    fn encode(&self, w: &mut Writer) {
        w.u32(self.surface_id);
    }
}

/// One monitor of `MONITORS_CONFIG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub monitor_id: u32,
    pub surface_id: u32,
    pub width: u32,
    pub height: u32,
    pub x: u32,
    pub y: u32,
}

/// `MONITORS_CONFIG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorsConfig {
    pub max_allowed: u16,
    pub heads: Vec<Head>,
}

impl Encode for MonitorsConfig {
    const TYPE: u16 = display_msg::MONITORS_CONFIG;
    fn encode(&self, w: &mut Writer) {
        w.u16(self.heads.len() as u16).u16(self.max_allowed);
        for h in &self.heads {
            w.u32(h.monitor_id)
                .u32(h.surface_id)
                .u32(h.width)
                .u32(h.height)
                .u32(h.x)
                .u32(h.y)
                .u32(0);
        }
    }
}

/// A display message without a body (`MARK`, `RESET`, `INVAL_ALL_PALETTES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Empty<const TYPE: u16>;

impl<const T: u16> Encode for Empty<T> {
    const TYPE: u16 = T;
    fn encode(&self, _: &mut Writer) {}
}

pub type Mark = Empty<{ display_msg::MARK }>;
pub type StreamDestroyAll = Empty<{ display_msg::STREAM_DESTROY_ALL }>;
pub type InvalAllPalettes = Empty<{ display_msg::INVAL_ALL_PALETTES }>;

pub use super::codec::image::{Image, ImageData};

/// `DRAW_COPY` of an image to `dest` on a surface (clip none, whole image,
/// OP_PUT, no mask).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawCopy {
    pub surface_id: u32,
    pub dest: Rect,
    pub image: Image,
}

impl Encode for DrawCopy {
    const TYPE: u16 = display_msg::DRAW_COPY;
    fn encode(&self, w: &mut Writer) {
        w.u32(self.surface_id);
        w.rect(&self.dest);
        w.u8(CLIP_NONE);
        let src_bitmap = w.pointer_slot();
        w.rect(&Rect::new(
            0,
            0,
            self.image.width as i32,
            self.image.height as i32,
        ));
        w.u16(ROPD_OP_PUT).u8(0); // scale mode
        w.u8(0).i32(0).i32(0).u32(0); // empty mask
        w.patch_pointer(src_bitmap);
        self.image.encode(w);
    }
}

/// What a client may send on a display channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplayMessage {
    Base(BaseMessage),
    Init {
        pixmap_cache_id: u8,
        pixmap_cache_size: i64,
        glz_dictionary_id: u8,
        glz_window_size: i32,
    },
    PreferredCompression(u8),
    PreferredVideoCodecs(Vec<u8>),
    StreamReport(StreamReport),
    /// GL_DRAW_DONE (we never start GL).
    Ignored(u16),
}

impl DisplayMessage {
    pub fn decode(msg_type: u16, body: &[u8]) -> Result<DisplayMessage, ChannelError> {
        if let Some(base) = BaseMessage::decode(msg_type, body)? {
            return Ok(DisplayMessage::Base(base));
        }
        let bad = ChannelError::malformed(msg_type);
        let mut r = Reader::new(body);
        Ok(match msg_type {
            display_msg::INIT => DisplayMessage::Init {
                pixmap_cache_id: r.u8("pixmap_cache_id").map_err(&bad)?,
                pixmap_cache_size: r.i64("pixmap_cache_size").map_err(&bad)?,
                glz_dictionary_id: r.u8("glz_dictionary_id").map_err(&bad)?,
                glz_window_size: r.i32("glz_dictionary_window_size").map_err(&bad)?,
            },
            display_msg::STREAM_REPORT => {
                let id = r.u32("stream_id").map_err(&bad)?;
                let unique_id = r.u32("unique_id").map_err(&bad)?;
                r.u32("start_frame_mm_time").map_err(&bad)?;
                r.u32("end_frame_mm_time").map_err(&bad)?;
                let num_frames = r.u32("num_frames").map_err(&bad)?;
                let num_drops = r.u32("num_drops").map_err(&bad)?;
                let last_frame_delay = r.i32("last_frame_delay").map_err(&bad)?;
                r.u32("audio_delay").map_err(bad)?;
                DisplayMessage::StreamReport(StreamReport {
                    id,
                    unique_id,
                    num_frames,
                    num_drops,
                    last_frame_delay,
                })
            }
            display_msg::PREFERRED_COMPRESSION => {
                DisplayMessage::PreferredCompression(r.u8("image_compression").map_err(bad)?)
            }
            display_msg::GL_DRAW_DONE => DisplayMessage::Ignored(msg_type),
            display_msg::PREFERRED_VIDEO_CODEC_TYPE => {
                let n = r.u8("num_of_codecs").map_err(&bad)?;
                DisplayMessage::PreferredVideoCodecs(
                    r.bytes(n.into(), "codecs").map_err(bad)?.to_vec(),
                )
            }
            other => return Err(ChannelError::UnknownType(other)),
        })
    }
}

/// Channel caps the server advertises on display channels.
pub fn server_caps() -> Caps {
    Caps::from_bits(&[display_cap::MONITORS_CONFIG, display_cap::PREF_COMPRESSION])
}

/// What a display channel needs beyond its Display: the compression
/// options, the client session's shared image state, and the server's
/// multimedia clock (stream frames are stamped with it); whether the
/// client's pixmap cache may be used (not spice-html5's; see
/// `server::client_keeps_caches`).
#[derive(Clone)]
pub struct ImageSetup {
    pub compression: CompressionOptions,
    pub session: Arc<SessionImages>,
    pub client_caches: bool,
    pub clock: MmClock,
    /// What the session's network test found (`None`: not over yet).
    pub client_link: Option<LinkEstimate>,
}

impl Default for ImageSetup {
    fn default() -> Self {
        ImageSetup {
            compression: CompressionOptions::default(),
            session: Arc::default(),
            client_caches: true,
            clock: MmClock::default(),
            client_link: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `SET_ACK` sent; the client's `DISPLAY_INIT` has not arrived.
    AwaitingInit {
        since: Instant,
    },
    Running,
}

/// Paces rounds of lossless updates: a round starts when damage is
/// pending and the last one started at least [`MIN_UPDATE_INTERVAL`] ago,
/// and lasts until the damage is drained. An isolated change (a key's
/// echo) goes out at once; damage that keeps coming (a scrolling console,
/// a picture drawn in pieces) waits a little and merges, so what a later
/// draw covers is never encoded.
#[derive(Debug, Default)]
struct UpdatePacer {
    last_start: Option<Instant>,
    in_round: bool,
}

impl UpdatePacer {
    /// Whether pending damage may be sent now (starting a round if needed).
    fn may_send(&mut self, now: Instant) -> bool {
        if !self.in_round {
            if self.next_start().is_some_and(|at| now < at) {
                return false;
            }
            self.in_round = true;
            self.last_start = Some(now);
        }
        true
    }

    /// The pending damage has all been sent.
    fn drained(&mut self) {
        self.in_round = false;
    }

    /// When the next round may start, if one is waiting for its time.
    fn next_start(&self) -> Option<Instant> {
        match self.in_round {
            true => None,
            false => self.last_start.map(|t| t + MIN_UPDATE_INTERVAL),
        }
    }
}

/// The server side of one display channel connection.
pub struct DisplayChannel {
    display: Arc<Display>,
    /// Which display's events it takes (its channel id).
    feed: usize,
    head: u32,
    ack: AckWindow,
    phase: Phase,
    client_monitors_config: bool,
    /// Size of the primary surface the client has, if any.
    client_surface: Option<(u32, u32)>,
    /// The head may have changed size or lost events: re-check everything.
    needs_sync: bool,
    /// The monitors layout may differ from the one the client has.
    monitors_stale: bool,
    /// The `MONITORS_CONFIG` the client has.
    sent_monitors: Option<MonitorsConfig>,
    pending: Region,
    pacer: UpdatePacer,
    compressor: Box<Compressor>,
    session: Arc<SessionImages>,
    /// This connection's number in the session (GLZ, pixmap cache).
    owner: u32,
    /// Whether the client is one whose pixmap cache we use.
    client_caches: bool,
    /// Its pixmap cache as DISPLAY_INIT named it (id, pixels).
    pixmap_cache: Option<(u8, i64)>,
    /// That cache, once claimed (no other display connection of the
    /// session uses it; tried again at each sync).
    cached: Option<CachedImages>,
    /// Draws sent as ids of the client's pixmap cache.
    from_cache: u64,
    next_image_id: u64,
    streams: Box<VideoStreams>,
    clock: MmClock,
}

impl DisplayChannel {
    /// Queues `SET_ACK`; nothing else is sent before `DISPLAY_INIT`.
    pub fn start(
        display: Arc<Display>,
        head: u32,
        client_caps: &Caps,
        setup: ImageSetup,
        out: &mut Outbox,
        now: Instant,
    ) -> DisplayChannel {
        let traits = ClientTraits {
            lz4: client_caps.has(display_cap::LZ4_COMPRESSION),
            low_bandwidth: false,
        };
        // A client without MULTI_CODEC knows MJPEG only; one with it says so.
        let mjpeg =
            !client_caps.has(display_cap::MULTI_CODEC) || client_caps.has(display_cap::CODEC_MJPEG);
        let streams = Box::new(VideoStreams::new(
            setup.compression.streaming,
            mjpeg,
            client_caps.has(display_cap::STREAM_REPORT),
        ));
        let mut channel = DisplayChannel {
            display,
            feed: 0,
            head,
            ack: AckWindow::start(out),
            phase: Phase::AwaitingInit { since: now },
            client_monitors_config: client_caps.has(display_cap::MONITORS_CONFIG),
            client_surface: None,
            needs_sync: true,
            monitors_stale: true,
            sent_monitors: None,
            pending: Region::new(),
            pacer: UpdatePacer::default(),
            compressor: Box::new(Compressor::new(setup.compression, traits)),
            owner: setup.session.new_owner(),
            session: setup.session,
            client_caches: setup.client_caches,
            pixmap_cache: None,
            cached: None,
            from_cache: 0,
            next_image_id: 1,
            streams,
            clock: setup.clock,
        };
        if let Some(link) = setup.client_link {
            channel.set_client_link(link);
        }
        channel
    }

    pub fn head(&self) -> u32 {
        self.head
    }

    /// Whether the client failed to send `DISPLAY_INIT` in time.
    pub fn init_overdue(&self, now: Instant) -> bool {
        matches!(self.phase, Phase::AwaitingInit { since } if now.duration_since(since) > INIT_TIMEOUT)
    }

    pub fn handle(&mut self, msg_type: u16, body: &[u8]) -> Result<(), ChannelError> {
        match DisplayMessage::decode(msg_type, body)? {
            DisplayMessage::Base(base) => self.ack.on_message(&base),
            DisplayMessage::Init {
                pixmap_cache_id,
                pixmap_cache_size,
                glz_dictionary_id,
                glz_window_size,
            } => {
                if self.phase != Phase::Running {
                    self.phase = Phase::Running;
                    self.needs_sync = true;
                    let glz = self
                        .session
                        .glz(glz_dictionary_id, i64::from(glz_window_size));
                    if glz.is_none() {
                        tracing::debug!(
                            "display channel: GLZ window {glz_window_size} px is too small; no GLZ"
                        );
                    }
                    self.compressor.set_glz(glz, self.owner);
                    if self.client_caches {
                        self.pixmap_cache = Some((pixmap_cache_id, pixmap_cache_size));
                    }
                }
            }
            DisplayMessage::PreferredCompression(c) => {
                if !self.compressor.set_preferred(c) {
                    tracing::debug!("display channel: unknown preferred compression {c} ignored");
                }
            }
            DisplayMessage::StreamReport(report) => self.streams.report(report),
            DisplayMessage::PreferredVideoCodecs(_) | DisplayMessage::Ignored(_) => {}
        }
        Ok(())
    }

    /// The head changed size, appeared, went away, or events were lost.
    pub fn head_changed(&mut self) {
        self.needs_sync = true;
    }

    /// The guest's monitors layout changed.
    pub fn monitors_changed(&mut self) {
        self.monitors_stale = true;
    }

    /// Sends the monitors of the client's surface as `MONITORS_CONFIG` if
    /// the client takes it and does not have that one.
    fn send_monitors(&mut self, out: &mut Outbox) {
        self.monitors_stale = false;
        if !self.client_monitors_config || self.client_surface.is_none() {
            return;
        }
        let layout = self.display.layout();
        let config = MonitorsConfig {
            max_allowed: layout.max.min(u32::from(u16::MAX)) as u16,
            heads: layout
                .monitors(self.client_surface)
                .into_iter()
                .map(|m| Head {
                    monitor_id: m.id,
                    surface_id: 0,
                    width: m.width,
                    height: m.height,
                    x: m.x,
                    y: m.y,
                })
                .collect(),
        };
        if self.sent_monitors.as_ref() != Some(&config) {
            out.push(&config);
            self.sent_monitors = Some(config);
        }
    }

    /// Part of the head was redrawn.
    pub fn damage(&mut self, rect: Rect) {
        self.damage_at(rect, Instant::now());
    }

    pub fn damage_at(&mut self, rect: Rect, now: Instant) {
        if self.phase == Phase::Running && !self.needs_sync {
            self.streams.damage(rect, now, &mut self.pending);
        } else {
            self.pending.add(rect);
        }
    }

    /// Whether there is work that [`Self::pump`] would do given room.
    pub fn has_work(&self) -> bool {
        self.phase == Phase::Running
            && (self.needs_sync
                || self.monitors_stale
                || !self.pending.is_empty()
                || self.streams.has_work(Instant::now()))
    }

    /// When the video streams next need [`Self::pump`] without new damage
    /// (never while a sync is waiting: the sync ends them).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.phase != Phase::Running || self.needs_sync {
            return None;
        }
        let updates = if self.pending.is_empty() {
            None
        } else {
            self.pacer.next_start()
        };
        match (updates, self.streams.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Queues as many updates as the socket and the ACK window allow.
    pub fn pump(&mut self, out: &mut Outbox) {
        self.pump_at(out, Instant::now());
    }

    pub fn pump_at(&mut self, out: &mut Outbox, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        if self.needs_sync {
            if !self.ack.may_send(out) {
                return;
            }
            self.sync(out);
        }
        if self.monitors_stale && self.ack.may_send(out) {
            self.send_monitors(out);
        }
        if self.streams.has_work(now) {
            let display = self.display.clone();
            let (frames, exact) = match display.head(self.head) {
                Some(head) if self.client_surface == Some((head.width, head.height)) => {
                    let ack = &mut self.ack;
                    let frames = self
                        .streams
                        .pump(&head, now, &mut self.pending, out, &mut |o| {
                            o.queued_bytes() < OUTBOX_LOW_WATER && ack.may_send(o)
                        });
                    // Still pictures of streams, drawn exactly over them
                    // (in pieces as any update).
                    let mut exact = Vec::new();
                    for rect in self.streams.take_exact() {
                        let mut area = Region::new();
                        area.add(rect);
                        while let Some(piece) = area.take(MAX_UPDATE_PIXELS) {
                            exact.push((piece, self.request(&head, piece, false)));
                        }
                    }
                    (frames, exact)
                }
                // Gone or resized: sync (its event is on the way too).
                _ => {
                    self.needs_sync = true;
                    return;
                }
            };
            self.streams.send(frames, now, self.clock.at(now), out);
            self.send_draws(exact, out);
        }
        if self.pending.is_empty() || !self.pacer.may_send(now) {
            return;
        }
        self.send_pending(out);
        if self.pending.is_empty() {
            self.pacer.drained();
        }
    }

    /// Draws pending damage, as much as the socket and the ACK window take.
    fn send_pending(&mut self, out: &mut Outbox) {
        while !self.pending.is_empty()
            && out.queued_bytes() < OUTBOX_LOW_WATER
            && self.ack.may_send(out)
        {
            let display = self.display.clone();
            let Some(head) = display.head(self.head) else {
                // Gone: the HeadRemoved event will sync.
                self.pending.clear();
                break;
            };
            if self.client_surface != Some((head.width, head.height)) {
                // Resized since the last sync; its event is on the way.
                self.pending.clear();
                self.needs_sync = true;
                break;
            }
            self.pending.clip(head.bounds());
            let batch = self.ack.room(out).min(MAX_BATCH);
            let mut rects = Vec::new();
            while (rects.len() as u64) < batch {
                match self.pending.take(MAX_UPDATE_PIXELS) {
                    // Merging may have put part of a stream's area back:
                    // its frames draw that, later than a lossless draw.
                    Some(rect) => rects.extend(self.streams.outside(rect)),
                    None => break,
                }
            }
            if rects.is_empty() {
                break;
            }
            let draws = rects
                .into_iter()
                .map(|rect| (rect, self.request(&head, rect, true)))
                .collect();
            drop(head);
            self.send_draws(draws, out);
        }
    }

    /// Takes the client's pixmap cache if no other display connection of
    /// the session has it (any more). Entries an earlier connection left
    /// may never have reached the client (still queued when it closed):
    /// the client is told to empty its cache, and the mirror starts over.
    fn claim_pixmap_cache(&mut self, out: &mut Outbox) {
        let (None, Some((id, pixels))) = (&self.cached, self.pixmap_cache) else {
            return;
        };
        self.cached = self
            .session
            .claim_pixmap_cache(id, pixels, self.owner)
            .map(CachedImages::new);
        if self.cached.as_ref().is_some_and(|c| c.take_over()) {
            out.push(&InvalAllPixmaps);
        }
    }

    /// Queues a `DRAW_COPY` of each request's picture to its rect: as an
    /// id when the client's pixmap cache holds the picture, else
    /// compressed (in parallel) and, if it fits, kept in the cache; each
    /// after the cache evictions it causes.
    fn send_draws(&mut self, draws: Vec<(Rect, Request)>, out: &mut Outbox) {
        enum Plan {
            Cached(Image),
            Encode { cache_flags: u8, evicted: Vec<u64> },
        }
        let mut plans = Vec::with_capacity(draws.len());
        let mut requests = Vec::with_capacity(draws.len());
        for (rect, mut request) in draws {
            let area = u64::from(request.width) * u64::from(request.height);
            let step = match &self.cached {
                Some(cached) if area >= MIN_CACHED_PIXELS => {
                    let id = cached.content_id(request.width, request.height, &request.pixels);
                    let step = cached.step(id, request.width, request.height, !request.lossy_ok);
                    if matches!(step, CacheStep::Send { flags, .. } if flags != 0) {
                        request.id = id;
                    }
                    step
                }
                _ => CacheStep::Send {
                    flags: 0,
                    evicted: Vec::new(),
                },
            };
            plans.push((
                rect,
                match step {
                    CacheStep::Hit(image) => Plan::Cached(image),
                    CacheStep::Send { flags, evicted } => {
                        requests.push(request);
                        Plan::Encode {
                            cache_flags: flags,
                            evicted,
                        }
                    }
                },
            ));
        }
        let mut encoded = self.compressor.compress(requests).into_iter();
        for (rect, plan) in plans {
            let image = match plan {
                Plan::Cached(image) => {
                    self.from_cache += 1;
                    image
                }
                Plan::Encode {
                    cache_flags,
                    evicted,
                } => {
                    let mut image = encoded.next().expect("one image per request");
                    if let (true, Some(cached)) = (cache_flags != 0, &self.cached) {
                        image.flags |= cache_flags;
                        cached.sent(image.id, image.data.is_lossy());
                    }
                    for ids in evicted.chunks(InvalList::MAX_IDS) {
                        out.push(&InvalList { ids: ids.to_vec() });
                    }
                    image
                }
            };
            out.push(&DrawCopy {
                surface_id: 0,
                dest: rect,
                image,
            });
        }
    }

    /// Brings the client's primary surface in line with the head and
    /// sends the whole picture.
    fn sync(&mut self, out: &mut Outbox) {
        self.needs_sync = false;
        self.pending.clear();
        if self.streams.reset() {
            out.push(&StreamDestroyAll {});
        }
        self.claim_pixmap_cache(out);
        let display = self.display.clone();
        let Some(head) = display.head(self.head) else {
            if self.client_surface.take().is_some() {
                out.push(&SurfaceDestroy { surface_id: 0 });
            }
            return;
        };
        let size = (head.width, head.height);
        if self.client_surface != Some(size) {
            if self.client_surface.is_some() {
                out.push(&SurfaceDestroy { surface_id: 0 });
            }
            out.push(&InvalAllPalettes {});
            out.push(&SurfaceCreate {
                surface_id: 0,
                width: head.width,
                height: head.height,
                format: SURFACE_FMT_32_XRGB,
                flags: SURFACE_FLAG_PRIMARY,
            });
            self.client_surface = Some(size);
            self.sent_monitors = None;
        }
        self.send_monitors(out);
        let bounds = head.bounds();
        if bounds.area() <= MAX_FULL_IMAGE_PIXELS {
            let draw = (bounds, self.request(&head, bounds, false));
            drop(head);
            self.send_draws(vec![draw], out);
        } else {
            drop(head);
            self.pending.add(bounds);
        }
        out.push(&Mark {});
    }

    fn request(&mut self, head: &Surface, rect: Rect, lossy_ok: bool) -> Request {
        let id = self.next_image_id;
        self.next_image_id += 1;
        Request {
            id,
            width: rect.width() as u32,
            height: rect.height() as u32,
            pixels: head.copy_rect(rect),
            lossy_ok,
        }
    }

    /// Image counts and bytes per encoding so far.
    pub fn stats(&self) -> &super::codec::policy::Stats {
        &self.compressor.stats
    }

    /// Video streams started, frames and bytes sent so far.
    pub fn stream_stats(&self) -> super::video_stream::StreamStats {
        self.streams.stats
    }

    /// Draws sent as ids of the client's pixmap cache so far.
    pub fn from_cache(&self) -> u64 {
        self.from_cache
    }

    /// What the session's network test found: the `auto` settings of
    /// `jpeg-wan-compression` and `zlib-glz-wan-compression` follow whether
    /// the link is slow from the next image on, and video streams keep to
    /// its bit rate from their next frames on.
    pub fn set_client_link(&mut self, link: LinkEstimate) {
        self.compressor.client.low_bandwidth = link.low_bandwidth();
        self.streams.set_link(link.bits_per_second);
    }
}

/// The display channel kind: one per Display, showing its first head.
pub const KIND: ChannelKind = ChannelKind {
    channel_type: channel::DISPLAY,
    name: "display",
    count: |server| server.displays.len(),
    caps: server_caps,
    open: |o, out| {
        let setup = ImageSetup {
            compression: o.server.compression,
            session: o.session.images.clone(),
            client_caches: o.session.client_caches,
            clock: o.server.clock(),
            client_link: o.session.view.client_link,
        };
        let display = o.server.displays[usize::from(o.id)].clone();
        let mut channel =
            DisplayChannel::start(display, SHOWN_HEAD, o.client_caps, setup, out, o.now);
        channel.feed = usize::from(o.id);
        // Encoding runs on a thread of its own, not the event loop's.
        let worker = WorkerSetup {
            display: Some((
                usize::from(o.id),
                o.server.displays[usize::from(o.id)].clone(),
            )),
            name: format!("spice-display-{}", o.id),
            waker: o.server.waker.clone(),
            epoch: o.server.epoch,
        };
        Box::new(Threaded::spawn(Box::new(channel), out, worker))
    },
};

impl SpiceChannel for DisplayChannel {
    fn receive(&mut self, msg_type: u16, body: &[u8], _: &mut Context) -> Result<(), ChannelError> {
        self.handle(msg_type, body)
    }

    fn update(&mut self, changes: &Changes, _: &mut Outbox) {
        if let Some(feed) = changes.displays.get(self.feed) {
            if feed.head_changed {
                self.head_changed();
            }
            if feed.monitors_changed {
                self.monitors_changed();
            }
            for rect in feed.damage.rects() {
                self.damage(*rect);
            }
        }
        if let Some(link) = changes.view.and_then(|v| v.client_link) {
            self.set_client_link(link);
        }
    }

    fn has_work(&self) -> bool {
        DisplayChannel::has_work(self)
    }

    fn pump(&mut self, cx: &mut Context) {
        if DisplayChannel::has_work(self) {
            self.pump_at(cx.out, cx.now);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        DisplayChannel::next_deadline(self)
    }

    fn overdue(&self, now: Instant) -> bool {
        self.init_overdue(now)
    }

    fn add_sent(&self, sent: &mut SentTotals) {
        let images = self.stats();
        let streams = self.stream_stats();
        sent.add(&SentTotals {
            images: images.images,
            image_bytes: images.bytes_out,
            images_from_cache: self.from_cache,
            streams: streams.started,
            stream_frames: streams.frames,
            stream_bytes: streams.bytes,
            stream_frames_unchanged: streams.unchanged,
            stream_stills_made_exact: streams.still_exact,
            ..SentTotals::default()
        });
    }

    fn bounds_own_output(&self) -> bool {
        true
    }

    fn is_display(&self) -> bool {
        true
    }
}

impl Drop for DisplayChannel {
    fn drop(&mut self) {
        tracing::debug!(
            "display channel closed: {} images encoded, {} drawn from the client's pixmap cache",
            self.compressor.stats.images.iter().sum::<u64>(),
            self.from_cache
        );
        self.session.release_pixmap_cache(self.owner);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::spice::codec::policy::ImageCompression;
    use crate::spice::codec::reference;
    use crate::spice::wire::{next_frame, HeaderMode};
    use devices::display::Monitor;

    /// A minimal client-side canvas: applies the messages a
    /// [`DisplayChannel`] sends, decoding them independently of the encoder.
    #[derive(Default)]
    pub struct ClientCanvas {
        pub size: Option<(u32, u32)>,
        pub pixels: Vec<u8>,
        pub marked: bool,
        /// The last `MONITORS_CONFIG`: max allowed, and each head's
        /// id, width, height, x, y.
        pub monitors: Option<(u16, Vec<[u32; 5]>)>,
        pub draws: usize,
        /// Image types received.
        pub image_types: Vec<u8>,
        glz: reference::GlzWindow,
        /// Video streams: id → where their frames go.
        pub streams: std::collections::HashMap<u32, Rect>,
        /// Streams clipped to nothing (their frames draw nowhere).
        pub hidden_streams: std::collections::HashSet<u32>,
        pub stream_frames: usize,
        /// The multimedia time of the last frame.
        pub frame_mm_time: Option<u32>,
        /// The pixmap cache: id → BGRX pixels, and draws taken from it.
        pub cache: std::collections::HashMap<u64, Vec<u8>>,
        pub from_cache: usize,
    }

    impl ClientCanvas {
        /// Decodes an Image (bitmap, QUIC, LZ, GLZ, zlib-GLZ) to BGRX with
        /// the test decoders; the X byte is taken from the decoders (0).
        fn decode_image(&mut self, image: &[u8], iw: usize, ih: usize) -> Vec<u8> {
            let mut img = Reader::new(image);
            let id = img.u64("").unwrap();
            let ty = img.u8("").unwrap();
            self.image_types.push(ty);
            let flags = img.u8("").unwrap();
            let (w, h) = (img.u32("").unwrap() as usize, img.u32("").unwrap() as usize);
            assert_eq!((w, h), (iw, ih));
            if ty == 103 || ty == 106 {
                // As spice-gtk, which would wait forever for a missing id.
                self.from_cache += 1;
                let data = self.cache.get(&id).expect("a cached id").clone();
                assert_eq!(data.len(), w * h * 4);
                return data;
            }
            let rest = img.rest();
            let sized = |r: &[u8]| {
                let n = u32::from_le_bytes(r[..4].try_into().unwrap()) as usize;
                r[4..4 + n].to_vec()
            };
            let data = match ty {
                0 => {
                    let mut b = Reader::new(rest);
                    assert_eq!(b.u8("").unwrap(), 8, "32-bit");
                    assert_eq!(b.u8("").unwrap(), 4, "top-down");
                    b.u32("").unwrap();
                    b.u32("").unwrap();
                    let stride = b.u32("").unwrap() as usize;
                    assert_eq!(stride, w * 4);
                    assert_eq!(b.u32("").unwrap(), 0, "no palette");
                    b.bytes(stride * h, "pixels").unwrap().to_vec()
                }
                1 => reference::quic_decode(&sized(rest)).unwrap(),
                101 => reference::lz_decode(&sized(rest), None).unwrap().data,
                102 => self.glz.decode(&sized(rest)).unwrap().bgrx,
                107 => {
                    let n = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
                    let mut glz = Vec::new();
                    std::io::Read::read_to_end(
                        &mut flate2::read::ZlibDecoder::new(&rest[8..8 + n]),
                        &mut glz,
                    )
                    .unwrap();
                    self.glz.decode(&glz).unwrap().bgrx
                }
                other => panic!("image type {other}"),
            };
            assert_eq!(data.len(), w * h * 4);
            if flags & (1 | 4) != 0 {
                self.cache.insert(id, data.clone());
            }
            data
        }

        pub fn apply(&mut self, msg_type: u16, body: &[u8]) {
            let mut r = Reader::new(body);
            match msg_type {
                314 => {
                    let id = r.u32("").unwrap();
                    let (w, h) = (r.u32("").unwrap(), r.u32("").unwrap());
                    assert_eq!((id, r.u32("").unwrap(), r.u32("").unwrap()), (0, 32, 1));
                    self.size = Some((w, h));
                    self.pixels = vec![0; (w * h * 4) as usize];
                    self.marked = false;
                }
                315 => self.size = None,
                317 => {
                    let count = r.u16("").unwrap();
                    let max = r.u16("").unwrap();
                    let heads = (0..count)
                        .map(|_| {
                            let id = r.u32("").unwrap();
                            assert_eq!(r.u32("").unwrap(), 0, "surface");
                            let mut head = [id, 0, 0, 0, 0];
                            for v in &mut head[1..] {
                                *v = r.u32("").unwrap();
                            }
                            r.u32("").unwrap(); // flags
                            head
                        })
                        .collect();
                    self.monitors = Some((max, heads));
                }
                102 => self.marked = true,
                122 => {
                    assert_eq!(r.u32("").unwrap(), 0, "primary surface");
                    let id = r.u32("").unwrap();
                    assert_eq!(r.u8("").unwrap(), 1, "top-down");
                    assert_eq!(r.u8("").unwrap(), 1, "MJPEG");
                    r.u64("").unwrap();
                    let size = [r.u32("").unwrap(), r.u32("").unwrap()];
                    assert_eq!(size, [r.u32("").unwrap(), r.u32("").unwrap()]);
                    let top = r.i32("").unwrap();
                    let left = r.i32("").unwrap();
                    let bottom = r.i32("").unwrap();
                    let dest = Rect::new(left, top, r.i32("").unwrap(), bottom);
                    assert_eq!(size, [dest.width() as u32, dest.height() as u32]);
                    assert_eq!(r.u8("").unwrap(), 0, "clip none");
                    assert!(r.rest().is_empty());
                    assert!(self.streams.insert(id, dest).is_none(), "stream {id} twice");
                }
                123 => {
                    let id = r.u32("").unwrap();
                    self.frame_mm_time = Some(r.u32("").unwrap());
                    let n = r.u32("").unwrap() as usize;
                    let jpeg = r.bytes(n, "").unwrap();
                    assert!(r.rest().is_empty());
                    let dest = self.streams[&id];
                    let mut decoder = jpeg_decoder::Decoder::new(jpeg);
                    let rgb = decoder.decode().expect("a JPEG frame");
                    let info = decoder.info().unwrap();
                    assert_eq!(
                        (u32::from(info.width), u32::from(info.height)),
                        (dest.width() as u32, dest.height() as u32)
                    );
                    let (width, _) = self.size.expect("frame before surface");
                    self.stream_frames += 1;
                    // (A hidden stream's frames draw nowhere.)
                    let shown = !self.hidden_streams.contains(&id);
                    for (k, px) in rgb.chunks_exact(3).enumerate().filter(|_| shown) {
                        let (x, y) = (k % dest.width() as usize, k / dest.width() as usize);
                        let at =
                            ((dest.top as usize + y) * width as usize + dest.left as usize + x) * 4;
                        self.pixels[at..at + 4].copy_from_slice(&[px[2], px[1], px[0], 0]);
                    }
                }
                124 => {
                    let id = r.u32("").unwrap();
                    assert!(
                        self.streams.contains_key(&id),
                        "clip of unknown stream {id}"
                    );
                    match r.u8("").unwrap() {
                        0 => self.hidden_streams.remove(&id),
                        1 => {
                            assert_eq!(r.u32("").unwrap(), 0, "only hiding clips are sent");
                            self.hidden_streams.insert(id)
                        }
                        other => panic!("clip type {other}"),
                    };
                    assert!(r.rest().is_empty());
                }
                125 => {
                    let id = r.u32("").unwrap();
                    assert!(self.streams.remove(&id).is_some(), "unknown stream {id}");
                    self.hidden_streams.remove(&id);
                }
                126 => {
                    self.streams.clear();
                    self.hidden_streams.clear();
                }
                105 => {
                    for _ in 0..r.u16("").unwrap() {
                        assert_eq!(r.u8("").unwrap(), 1, "pixmap");
                        let id = r.u64("").unwrap();
                        assert!(self.cache.remove(&id).is_some(), "dropped {id} it had not");
                    }
                }
                106 => self.cache.clear(),
                319 => {}
                304 => {
                    let (width, _) = self.size.expect("draw before surface");
                    assert_eq!(r.u32("").unwrap(), 0);
                    let top = r.i32("").unwrap();
                    let left = r.i32("").unwrap();
                    let bottom = r.i32("").unwrap();
                    let right = r.i32("").unwrap();
                    assert_eq!(r.u8("").unwrap(), 0, "clip none");
                    let ptr = r.u32("").unwrap() as usize;
                    let src = [
                        r.i32("").unwrap(),
                        r.i32("").unwrap(),
                        r.i32("").unwrap(),
                        r.i32("").unwrap(),
                    ];
                    assert_eq!(src, [0, 0, bottom - top, right - left]);
                    assert_eq!(r.u16("").unwrap(), 8);
                    let (iw, ih) = ((right - left) as usize, (bottom - top) as usize);
                    let data = self.decode_image(&body[ptr..], iw, ih);
                    let stride = iw * 4;
                    for y in 0..ih {
                        let dst = ((top as usize + y) * width as usize + left as usize) * 4;
                        self.pixels[dst..dst + stride]
                            .copy_from_slice(&data[y * stride..(y + 1) * stride]);
                    }
                    self.draws += 1;
                }
                _ => {}
            }
        }

        pub fn apply_stream(&mut self, bytes: &[u8]) -> Vec<u16> {
            let mut at = 0;
            let mut types = Vec::new();
            while let Some((h, body, used)) =
                next_frame(HeaderMode::Mini, &bytes[at..], u32::MAX).unwrap()
            {
                self.apply(h.msg_type, body);
                types.push(h.msg_type);
                at += used;
            }
            assert_eq!(at, bytes.len());
            types
        }
    }

    fn paint(display: &Display, seed: u8) {
        display.draw(0, |s| {
            for y in 0..s.height {
                for (x, px) in s.row_mut(y).chunks_mut(4).enumerate() {
                    px.copy_from_slice(&[x as u8 ^ seed, y as u8, seed, 0]);
                }
            }
            Some(s.bounds())
        });
    }

    /// A display channel of head 0 for a client with the usual caps.
    fn open_channel(display: &Arc<Display>, setup: ImageSetup, out: &mut Outbox) -> DisplayChannel {
        DisplayChannel::start(
            display.clone(),
            0,
            &Caps(vec![0x3bf]),
            setup,
            out,
            Instant::now(),
        )
    }

    fn display_init() -> Vec<u8> {
        display_init_with_cache(20971520)
    }

    /// DISPLAY_INIT naming a pixmap cache of this many pixels.
    fn display_init_with_cache(pixels: i64) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(1).i64(pixels).u8(1).i32(3145728);
        w.into_bytes()
    }

    /// A 320×200 mixed picture served to a client that sent `init`, its
    /// first picture applied to a canvas.
    fn mixed_client(
        setup: ImageSetup,
        init: &[u8],
    ) -> (Arc<Display>, DisplayChannel, Outbox, ClientCanvas) {
        let display = Display::new();
        display.resize(0, 320, 200);
        paint_mixed(&display, 1);
        let mut out = Outbox::new(HeaderMode::Mini);
        let mut channel = open_channel(&display, setup, &mut out);
        channel.handle(101, init).unwrap();
        channel.pump(&mut out);
        let mut canvas = ClientCanvas::default();
        canvas.apply_stream(&out.take_bytes());
        (display, channel, out, canvas)
    }

    #[test]
    fn draw_copy_matches_the_validated_layout() {
        // The worked example of docs/spice-protocol.md §4.8: a 2×2 image at
        // (10,20), clip none.
        let message = DrawCopy {
            surface_id: 0,
            dest: Rect::new(10, 20, 12, 22),
            image: Image {
                id: 0x1_0000_0002,
                flags: 0,
                width: 2,
                height: 2,
                data: ImageData::Bitmap32 {
                    pixels: vec![0x00ff_0000, 0x0000_ff00, 0x0000_00ff, 0x00ff_ffff],
                },
            },
        };
        let body = message.body();
        let expected: Vec<u8> = [
            &[0, 0, 0, 0][..],
            &[20, 0, 0, 0, 10, 0, 0, 0, 22, 0, 0, 0, 12, 0, 0, 0],
            &[0],           // clip none
            &[57, 0, 0, 0], // src_bitmap at 21 + 4 + 16 + 2 + 1 + 13
            &[0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0],
            &[8, 0, 0],
            &[0; 13],
            &[2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0],
            &[8, 4, 2, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0],
            &[0, 0, 255, 0, 0, 255, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0],
        ]
        .concat();
        assert_eq!(body, expected);
    }

    #[test]
    fn fixed_messages() {
        assert_eq!(
            SurfaceCreate {
                surface_id: 0,
                width: 640,
                height: 480,
                format: 32,
                flags: 1
            }
            .body(),
            [0, 0, 0, 0, 0x80, 2, 0, 0, 0xe0, 1, 0, 0, 32, 0, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(SurfaceDestroy { surface_id: 3 }.body(), [3, 0, 0, 0]);
        let mc = MonitorsConfig {
            max_allowed: 1,
            heads: vec![Head {
                monitor_id: 0,
                surface_id: 0,
                width: 8,
                height: 6,
                x: 0,
                y: 0,
            }],
        }
        .body();
        assert_eq!(mc.len(), 4 + 28);
        assert_eq!(&mc[..4], &[1, 0, 1, 0]);
        assert_eq!(&mc[12..20], &[8, 0, 0, 0, 6, 0, 0, 0]);
        assert!(Mark {}.body().is_empty());
        assert_eq!(<Mark as Encode>::TYPE, 102);
        assert_eq!(<InvalAllPalettes as Encode>::TYPE, 108);
    }

    #[test]
    fn client_messages() {
        assert_eq!(
            DisplayMessage::decode(101, &display_init()),
            Ok(DisplayMessage::Init {
                pixmap_cache_id: 1,
                pixmap_cache_size: 20971520,
                glz_dictionary_id: 1,
                glz_window_size: 3145728
            })
        );
        assert!(DisplayMessage::decode(101, &display_init()[..13]).is_err());
        assert_eq!(
            DisplayMessage::decode(103, &[7]),
            Ok(DisplayMessage::PreferredCompression(7))
        );
        assert_eq!(
            DisplayMessage::decode(105, &[2, 1, 3]),
            Ok(DisplayMessage::PreferredVideoCodecs(vec![1, 3]))
        );
        assert!(DisplayMessage::decode(105, &[3, 1, 3]).is_err());
        assert!(DisplayMessage::decode(102, &[0; 31]).is_err());
        let mut report = [0u8; 32];
        report[0] = 2; // stream 2
        report[4] = 9; // unique id 9
        report[16] = 30; // frames
        report[20] = 4; // drops
        report[24..28].copy_from_slice(&(-20i32).to_le_bytes());
        assert_eq!(
            DisplayMessage::decode(102, &report),
            Ok(DisplayMessage::StreamReport(StreamReport {
                id: 2,
                unique_id: 9,
                num_frames: 30,
                num_drops: 4,
                last_frame_delay: -20,
            }))
        );
        assert_eq!(
            DisplayMessage::decode(104, &[]),
            Ok(DisplayMessage::Ignored(104))
        );
        assert_eq!(
            DisplayMessage::decode(200, &[]),
            Err(ChannelError::UnknownType(200))
        );
    }

    #[test]
    fn the_guest_monitors_layout_reaches_the_client() {
        let display = Display::new();
        display.set_max_monitors(4);
        display.resize(0, 64, 16);
        let mut out = Outbox::new(HeaderMode::Mini);
        let mut channel = open_channel(&display, ImageSetup::default(), &mut out);
        channel.handle(101, &display_init()).unwrap();
        channel.pump(&mut out);
        let mut canvas = ClientCanvas::default();
        canvas.apply_stream(&out.take_bytes());
        assert_eq!(canvas.monitors, Some((4, vec![[0, 64, 16, 0, 0]])));
        let monitor = |id, x| Monitor {
            id,
            x,
            y: 0,
            width: 32,
            height: 16,
        };
        display.set_guest_monitors(vec![monitor(0, 0), monitor(1, 32)]);
        channel.monitors_changed();
        assert!(channel.has_work());
        channel.pump(&mut out);
        assert_eq!(canvas.apply_stream(&out.take_bytes()), vec![317]);
        assert_eq!(
            canvas.monitors,
            Some((4, vec![[0, 32, 16, 0, 0], [1, 32, 16, 32, 0]]))
        );
        // The same layout again sends nothing; a smaller surface clips it.
        channel.monitors_changed();
        channel.pump(&mut out);
        assert!(out.is_empty());
        display.resize(0, 40, 16);
        channel.head_changed();
        channel.pump(&mut out);
        canvas.apply_stream(&out.take_bytes());
        assert_eq!(
            canvas.monitors,
            Some((4, vec![[0, 32, 16, 0, 0], [1, 8, 16, 32, 0]]))
        );
    }

    #[test]
    fn connect_sequence_and_pixel_exact_updates() {
        let display = Display::new();
        display.resize(0, 40, 30);
        paint(&display, 1);
        let mut out = Outbox::new(HeaderMode::Mini);
        let mut channel = open_channel(&display, ImageSetup::default(), &mut out);
        let mut canvas = ClientCanvas::default();
        assert_eq!(canvas.apply_stream(&out.take_bytes()), vec![3]);
        channel.pump(&mut out);
        assert!(out.is_empty(), "nothing before DISPLAY_INIT");
        channel.handle(101, &display_init()).unwrap();
        channel.pump(&mut out);
        assert_eq!(
            canvas.apply_stream(&out.take_bytes()),
            vec![108, 314, 317, 304, 102]
        );
        assert_eq!(canvas.monitors, Some((1, vec![[0, 40, 30, 0, 0]])));
        assert!(canvas.marked);
        assert_eq!(canvas.pixels, display.head(0).unwrap().pixels);

        // Damage → exact update from the current picture (colours only:
        // the byte the 32-bit format leaves unused is sent as 0).
        display.draw(0, |s| {
            s.row_mut(5)[8..12].copy_from_slice(&[9, 8, 7, 6]);
            Some(Rect::new(2, 5, 3, 6))
        });
        channel.damage(Rect::new(2, 5, 3, 6));
        channel.pump(&mut out);
        assert_eq!(canvas.apply_stream(&out.take_bytes()), vec![304]);
        let at = (5 * 40 + 2) * 4;
        assert_eq!(canvas.pixels[at..at + 4], [9, 8, 7, 0]);
        let colours =
            |p: &[u8]| -> Vec<u8> { p.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect() };
        assert_eq!(
            colours(&canvas.pixels),
            colours(&display.head(0).unwrap().pixels)
        );

        // Resize: destroy, create, full picture, mark.
        display.resize(0, 64, 48);
        paint(&display, 7);
        channel.head_changed();
        channel.damage(Rect::new(0, 0, 10, 10));
        channel.pump(&mut out);
        assert_eq!(
            canvas.apply_stream(&out.take_bytes()),
            vec![315, 108, 314, 317, 304, 102]
        );
        assert_eq!(canvas.size, Some((64, 48)));
        assert_eq!(canvas.pixels, display.head(0).unwrap().pixels);

        // Head removed: the surface goes away.
        display.remove_head(0);
        channel.head_changed();
        channel.pump(&mut out);
        assert_eq!(canvas.apply_stream(&out.take_bytes()), vec![315]);
    }

    /// Bitmaps only: message sizes are then known.
    fn raw_setup() -> ImageSetup {
        let mut setup = ImageSetup::default();
        setup.compression.image = ImageCompression::Off;
        setup
    }

    fn paint_mixed(display: &Display, seed: u32) {
        use crate::spice::codec::testimages;
        display.draw(0, |s| {
            let (w, h) = (s.width, s.height);
            let photo = testimages::photo(w / 2, h, seed);
            let desk = testimages::desktop(w - w / 2, h, seed);
            for y in 0..h {
                let row = s.row_mut(y);
                let (a, b) = row.split_at_mut((w / 2 * 4) as usize);
                let pw = (w / 2 * 4) as usize;
                a.copy_from_slice(&photo.bgrx[y as usize * pw..(y as usize + 1) * pw]);
                let dw = ((w - w / 2) * 4) as usize;
                b.copy_from_slice(&desk.bgrx[y as usize * dw..(y as usize + 1) * dw]);
            }
            Some(s.bounds())
        });
    }

    /// Every image compression mode: the client's picture is exact, the
    /// first picture and the updates use the expected image types, and
    /// pictures that come back are drawn from the client's pixmap cache
    /// (type 103).
    #[test]
    fn every_compression_mode_gives_the_exact_picture() {
        use crate::spice::codec::policy::ImageCompression as C;
        for (mode, caps, want) in [
            (C::AutoGlz, 0x3bf, &[1u8, 102, 103][..]),
            (C::AutoLz, 0x3bf, &[1, 101, 103]),
            (C::Quic, 0x3bf, &[1, 103]),
            (C::Glz, 0x3bf, &[102, 103]),
            (C::Lz, 0x3bf, &[101, 103]),
            (C::Off, 0x3bf, &[0, 103]),
        ] {
            let display = Display::new();
            display.resize(0, 320, 200);
            paint_mixed(&display, 1);
            let mut out = Outbox::new(HeaderMode::Mini);
            let mut setup = ImageSetup::default();
            setup.compression.image = mode;
            let mut channel = DisplayChannel::start(
                display.clone(),
                0,
                &Caps(vec![caps]),
                setup,
                &mut out,
                Instant::now(),
            );
            let mut canvas = ClientCanvas::default();
            channel.handle(101, &display_init()).unwrap();
            channel.pump(&mut out);
            canvas.apply_stream(&out.take_bytes());
            assert_eq!(
                canvas.pixels,
                display.head(0).unwrap().pixels,
                "{mode:?} first"
            );
            // Updates: a photo half and a desktop half, then the same again.
            let mut now = Instant::now();
            for seed in [2, 3, 2] {
                paint_mixed(&display, seed);
                channel.damage(Rect::new(0, 0, 160, 200));
                channel.damage(Rect::new(160, 0, 320, 200));
                now += MIN_UPDATE_INTERVAL;
                channel.pump_at(&mut out, now);
                canvas.apply_stream(&out.take_bytes());
                for _ in 0..4 {
                    channel.handle(2, &[]).unwrap();
                }
                assert_eq!(
                    canvas.pixels,
                    display.head(0).unwrap().pixels,
                    "{mode:?} {seed}"
                );
            }
            let mut types = canvas.image_types.clone();
            types.sort();
            types.dedup();
            assert_eq!(types, want, "{mode:?}");
            // The last update repeats the first: both halves from the cache.
            assert_eq!(
                (canvas.from_cache, channel.from_cache()),
                (2, 2),
                "{mode:?}"
            );
        }
    }

    /// A client cache that holds one half of the picture: every picture
    /// put in it pushes the last one out (INVAL_LIST first, which the
    /// canvas checks names held ids), and the picture stays exact.
    #[test]
    fn a_small_pixmap_cache_evicts_before_it_fills() {
        let (display, mut channel, mut out, mut canvas) =
            mixed_client(ImageSetup::default(), &display_init_with_cache(160 * 200));
        let mut now = Instant::now();
        for (seed, half) in [(2, 0), (2, 1), (3, 0), (2, 0)] {
            paint_mixed(&display, seed);
            channel.damage(Rect::new(half * 160, 0, half * 160 + 160, 200));
            now += MIN_UPDATE_INTERVAL;
            channel.pump_at(&mut out, now);
            let types = canvas.apply_stream(&out.take_bytes());
            channel.handle(2, &[]).unwrap();
            // Each picture evicts the one cached before it (none at first).
            let invals = types
                .iter()
                .filter(|&&t| t == display_msg::INVAL_LIST)
                .count();
            assert_eq!(
                invals,
                usize::from(canvas.draws > 2),
                "{seed} {half}: {types:?}"
            );
            let shown = display.head(0).unwrap().pixels.clone();
            for y in 0..200 {
                let row = (y * 320 + half as usize * 160) * 4;
                assert_eq!(
                    canvas.pixels[row..row + 640],
                    shown[row..row + 640],
                    "{seed} {half} row {y}"
                );
            }
        }
        assert_eq!(canvas.from_cache, 0, "nothing came back while it was held");
        assert_eq!(canvas.cache.len(), 1);
    }

    /// A display connection that takes over a session's pixmap cache
    /// empties the client's first: what the previous one queued may never
    /// have arrived. Until it closes, a second connection gets no cache.
    #[test]
    fn a_new_display_connection_starts_the_pixmap_cache_afresh() {
        let display = Display::new();
        display.resize(0, 320, 200);
        paint_mixed(&display, 1);
        let setup = ImageSetup::default();
        let connect = |out: &mut Outbox| {
            let mut channel = open_channel(&display, setup.clone(), out);
            channel.handle(101, &display_init()).unwrap();
            channel.pump(out);
            channel
        };
        let mut canvas = ClientCanvas::default();
        let mut out = Outbox::new(HeaderMode::Mini);
        let first = connect(&mut out);
        canvas.apply_stream(&out.take_bytes());
        assert_eq!(canvas.cache.len(), 1, "the first picture is cached");
        let mut out2 = Outbox::new(HeaderMode::Mini);
        let second = connect(&mut out2);
        assert!(second.cached.is_none(), "the cache is in use");
        drop(second);
        drop(first);
        let mut out3 = Outbox::new(HeaderMode::Mini);
        let _third = connect(&mut out3);
        let types = canvas.apply_stream(&out3.take_bytes());
        let inval_all = types
            .iter()
            .position(|&t| t == display_msg::INVAL_ALL_PIXMAPS);
        let draw = types.iter().position(|&t| t == display_msg::DRAW_COPY);
        assert!(inval_all.is_some() && inval_all < draw, "{types:?}");
        assert_eq!((canvas.from_cache, canvas.cache.len()), (0, 1));
        assert_eq!(canvas.pixels, display.head(0).unwrap().pixels);
    }

    /// A client whose pixmap cache we do not use (spice-html5) gets every
    /// picture whole, repeated or not, and nothing marked for caching.
    #[test]
    fn a_client_without_a_usable_cache_gets_whole_pictures() {
        let setup = ImageSetup {
            client_caches: false,
            ..ImageSetup::default()
        };
        let (display, mut channel, mut out, mut canvas) = mixed_client(setup, &display_init());
        let mut now = Instant::now();
        for seed in [2, 2, 1] {
            paint_mixed(&display, seed);
            channel.damage(display.head(0).unwrap().bounds());
            now += MIN_UPDATE_INTERVAL;
            channel.pump_at(&mut out, now);
            canvas.apply_stream(&out.take_bytes());
            channel.handle(2, &[]).unwrap();
            assert_eq!(canvas.pixels, display.head(0).unwrap().pixels, "{seed}");
        }
        assert_eq!((canvas.from_cache, canvas.cache.len()), (0, 0));
    }

    /// A change after a quiet spell is drawn at once; changes that follow
    /// within MIN_UPDATE_INTERVAL wait for it, merged into one draw.
    #[test]
    fn updates_are_paced_and_merged() {
        let display = Display::new();
        display.resize(0, 320, 200);
        let t0 = Instant::now();
        let mut out = Outbox::new(HeaderMode::Mini);
        let mut channel = DisplayChannel::start(
            display.clone(),
            0,
            &Caps(vec![0x3bf]),
            ImageSetup::default(),
            &mut out,
            t0,
        );
        let mut canvas = ClientCanvas::default();
        channel.handle(101, &display_init()).unwrap();
        channel.pump_at(&mut out, t0);
        canvas.apply_stream(&out.take_bytes());
        let area = Rect::new(0, 0, 320, 200);
        let mut step = |seed: u32, at: Instant, canvas: &mut ClientCanvas| {
            if seed > 0 {
                paint_mixed(&display, seed);
                channel.damage_at(area, at);
            }
            channel.pump_at(&mut out, at);
            canvas.apply_stream(&out.take_bytes());
            channel.handle(2, &[]).unwrap();
            (canvas.draws, channel.next_deadline())
        };
        let t1 = t0 + Duration::from_secs(1);
        let (first, deadline) = step(2, t1, &mut canvas);
        assert_eq!(deadline, None);
        assert_eq!(step(3, t1 + Duration::from_millis(5), &mut canvas).0, first);
        let (draws, deadline) = step(4, t1 + Duration::from_millis(20), &mut canvas);
        assert_eq!(draws, first, "drawn before its time");
        assert_eq!(deadline, Some(t1 + MIN_UPDATE_INTERVAL));
        let (draws, deadline) = step(0, t1 + MIN_UPDATE_INTERVAL, &mut canvas);
        assert_eq!(draws, first + 1, "the two changes in one draw");
        assert_eq!(deadline, None);
        assert!(canvas.pixels == display.head(0).unwrap().pixels);
        // Quiet for longer than the interval: at once again.
        let t2 = t1 + 3 * MIN_UPDATE_INTERVAL;
        assert_eq!(step(5, t2, &mut canvas).0, first + 2);
        assert!(canvas.pixels == display.head(0).unwrap().pixels);
    }

    #[test]
    fn slow_client_is_bounded_by_acks_and_outbox() {
        let display = Display::new();
        display.resize(0, 1024, 768);
        let mut out = Outbox::new(HeaderMode::Mini);
        // The test keeps the clock: however slow the machine, damage
        // never looks like the frames of a video stream.
        let mut now = Instant::now();
        let mut channel = DisplayChannel::start(
            display.clone(),
            0,
            &Caps::default(),
            raw_setup(),
            &mut out,
            now,
        );
        channel.handle(101, &display_init()).unwrap();
        channel.pump_at(&mut out, now);
        let first = out.queued_bytes();
        assert!(first > 1024 * 768 * 4);
        // The client never reads: damage keeps coming.
        for i in 0..2000 {
            let x = (i * 13) % 1000;
            if i % 200 == 0 {
                paint(&display, i as u8);
            }
            channel.damage_at(Rect::new(x, 0, x + 24, 768), now);
            channel.pump_at(&mut out, now);
        }
        // Nothing more was queued behind the unread picture.
        assert_eq!(out.queued_bytes(), first);
        assert!(channel.pending.rects().len() <= Region::MAX_RECTS);
        // The client reads but never ACKs: at most ~2 windows of messages.
        // Each round of damage is a strip elsewhere, one update interval
        // after the last: rounds that the pacer lets go, never a stream.
        let mut canvas = ClientCanvas::default();
        for i in 0..100 {
            canvas.apply_stream(&out.take_bytes());
            let x = (i * 37) % 1000;
            channel.damage_at(Rect::new(x, 0, x + 24, 768), now);
            now += MIN_UPDATE_INTERVAL;
            channel.pump_at(&mut out, now);
        }
        assert!(canvas.draws <= 41, "{} draws without ACK", canvas.draws);
        // ACKs let it finish, and the result is the current picture (the
        // paints above changed all of it, the strips only parts).
        channel.damage_at(Rect::new(0, 0, 1024, 768), now);
        channel.handle(1, &[1, 0, 0, 0]).unwrap();
        while channel.has_work() || !out.is_empty() {
            canvas.apply_stream(&out.take_bytes());
            for _ in 0..3 {
                channel.handle(2, &[]).unwrap();
            }
            now += MIN_UPDATE_INTERVAL;
            channel.pump_at(&mut out, now);
        }
        assert_eq!(canvas.pixels, display.head(0).unwrap().pixels);
    }

    #[test]
    fn init_timeout() {
        let display = Display::new();
        let mut out = Outbox::new(HeaderMode::Mini);
        let start = Instant::now();
        let mut channel = DisplayChannel::start(
            display,
            0,
            &Caps::default(),
            ImageSetup::default(),
            &mut out,
            start,
        );
        assert!(!channel.init_overdue(start + Duration::from_secs(29)));
        assert!(channel.init_overdue(start + Duration::from_secs(31)));
        channel.handle(101, &display_init()).unwrap();
        assert!(!channel.init_overdue(start + Duration::from_secs(31)));
        // No head yet: nothing but the (skipped) sync happens.
        channel.pump(&mut out);
        assert!(out.take_bytes().len() == 14);
    }

    /// PSNR (dB) of `rect` of two BGRX pictures `width` pixels wide.
    fn psnr(a: &[u8], b: &[u8], width: u32, rect: Rect) -> f64 {
        let crop = |p: &[u8]| -> Vec<u8> {
            (rect.top..rect.bottom)
                .flat_map(|y| {
                    let at = ((y as u32 * width + rect.left as u32) * 4) as usize;
                    p[at..at + rect.width() as usize * 4].to_vec()
                })
                .collect()
        };
        crate::spice::codec::jpeg::psnr(&crop(a), &crop(b), 4)
    }

    fn paint_rect(display: &Display, rect: Rect, bgrx: &[u8]) {
        display.draw(0, |s| {
            let w = rect.width() as usize * 4;
            for (k, y) in (rect.top..rect.bottom).enumerate() {
                let left = rect.left as usize * 4;
                s.row_mut(y as u32)[left..left + w].copy_from_slice(&bgrx[k * w..(k + 1) * w]);
            }
            Some(rect)
        });
    }

    /// A client that reads everything and ACKs every message.
    fn read_all(
        channel: &mut DisplayChannel,
        out: &mut Outbox,
        canvas: &mut ClientCanvas,
    ) -> Vec<u16> {
        let types = canvas.apply_stream(&out.take_bytes());
        for _ in 0..types.len().div_ceil(AckWindow::WINDOW as usize) {
            channel.handle(2, &[]).unwrap();
        }
        types
    }

    /// A running display channel of a head, a client that has its first
    /// picture, and the test's clock.
    struct StreamRig {
        display: Arc<Display>,
        channel: DisplayChannel,
        out: Outbox,
        canvas: ClientCanvas,
        t: Instant,
    }

    /// The area [`StreamRig::play`] draws in on a 256×160 head.
    const PLAY_AREA: Rect = Rect::new(0, 0, 200, 120);

    impl StreamRig {
        /// The multimedia clock starts at the rig's start.
        fn new(width: u32, height: u32, caps: u32, mut setup: ImageSetup) -> StreamRig {
            let display = Display::new();
            display.resize(0, width, height);
            paint(&display, 3);
            let t = Instant::now();
            setup.clock = MmClock::new(t);
            let mut out = Outbox::new(HeaderMode::Mini);
            let mut channel =
                DisplayChannel::start(display.clone(), 0, &Caps(vec![caps]), setup, &mut out, t);
            let mut canvas = ClientCanvas::default();
            channel.handle(1, &[1, 0, 0, 0]).unwrap();
            channel.handle(101, &display_init()).unwrap();
            channel.pump_at(&mut out, t);
            read_all(&mut channel, &mut out, &mut canvas);
            StreamRig {
                display,
                channel,
                out,
                canvas,
                t,
            }
        }

        /// `frames` different photos (or desktop pictures) drawn at
        /// [`PLAY_AREA`] at 30 fps; the message types the client got.
        fn play(&mut self, frames: u32, synthetic: bool) -> Vec<u16> {
            use crate::spice::codec::testimages;
            let area = PLAY_AREA;
            let mut types = Vec::new();
            let (w, h) = (area.width() as u32, area.height() as u32);
            for frame in 0..frames {
                self.t += Duration::from_millis(33);
                let picture = if synthetic {
                    testimages::desktop(w, h, frame)
                } else {
                    testimages::photo(w, h, frame)
                };
                paint_rect(&self.display, area, &picture.bgrx);
                self.channel.damage_at(area, self.t);
                self.channel.pump_at(&mut self.out, self.t);
                let settled = self.t + crate::spice::video_stream::SAME_FRAME;
                self.channel.pump_at(&mut self.out, settled);
                types.extend(read_all(&mut self.channel, &mut self.out, &mut self.canvas));
            }
            types
        }
    }

    /// Where the stream tests play 192x144 photos on a 320x240 head.
    const PHOTO_VIDEO: Rect = Rect::new(32, 16, 32 + 192, 16 + 144);

    #[test]
    fn a_photo_redrawn_at_video_rate_streams_as_mjpeg_then_ends_exact() {
        use crate::spice::codec::testimages;
        use crate::spice::video_stream::{FRAMES_TO_START_FILTERED, SAME_FRAME, STREAM_IDLE};
        let StreamRig {
            display,
            mut channel,
            mut out,
            mut canvas,
            t: t0,
        } = StreamRig::new(320, 240, 0x3bf, raw_setup());
        // 25 fps of different photos in one place, and text-like updates
        // elsewhere at the same rate.
        let video = PHOTO_VIDEO;
        let text = Rect::new(240, 200, 320, 240);
        let mut t = t0;
        let mut types = Vec::new();
        for frame in 0..60 {
            t += Duration::from_millis(40);
            let photo = testimages::photo(192, 144, frame);
            paint_rect(&display, video, &photo.bgrx);
            let desk = testimages::desktop(80, 40, frame);
            paint_rect(&display, text, &desk.bgrx);
            channel.damage_at(video, t);
            channel.damage_at(text, t);
            channel.pump_at(&mut out, t);
            // The event loop's next wake-up: the frame has settled.
            channel.pump_at(&mut out, t + SAME_FRAME);
            types.extend(read_all(&mut channel, &mut out, &mut canvas));
        }
        assert_eq!(
            channel.stream_stats().started,
            1,
            "one stream, not the text"
        );
        assert_eq!(canvas.streams.values().collect::<Vec<_>>(), vec![&video]);
        let start = types.iter().position(|&t| t == 122).expect("STREAM_CREATE");
        // Lossless draws until detection (the default `filter`), then a
        // frame every 40 ms.
        let frames = types.iter().filter(|&&t| t == 123).count() as u32;
        assert_eq!(frames, 60 - FRAMES_TO_START_FILTERED + 1);
        assert_eq!(canvas.stream_frames as u32, frames);
        // Stamped with the server's multimedia clock when sent.
        assert_eq!(
            canvas.frame_mm_time,
            Some((t + SAME_FRAME - t0).as_millis() as u32)
        );
        // The client takes stream reports; after that, frames and the text
        // area's lossless draws.
        assert_eq!(types[start + 1], 319);
        assert!(types[start + 2..].iter().all(|&t| t == 123 || t == 304));
        let picture = display.head(0).unwrap().pixels.clone();
        let quality = psnr(&canvas.pixels, &picture, 320, video);
        assert!(
            (30.0..99.0).contains(&quality),
            "stream frame PSNR {quality:.1} dB"
        );
        // Everything outside the stream is exact.
        let mut outside = canvas.pixels.clone();
        paint_rect_into(&mut outside, &picture, 320, video);
        assert_eq!(outside, picture);

        // The guest stops: after STREAM_IDLE the stream ends and its area
        // is sent again losslessly.
        t += STREAM_IDLE;
        assert!(channel.next_deadline().is_some_and(|d| d <= t));
        channel.pump_at(&mut out, t);
        let end = read_all(&mut channel, &mut out, &mut canvas);
        assert_eq!(end.first(), Some(&125), "{end:?}");
        assert!(end.contains(&304));
        assert!(canvas.streams.is_empty());
        assert_eq!(canvas.pixels, picture);
        assert_eq!(channel.next_deadline(), None);
    }

    /// A paused player that keeps redrawing its last frame: the client
    /// gets that picture exactly once it has stayed for STILL_TO_EXACT,
    /// drawn over the stream, which lives on; the next new frame streams
    /// at once.
    #[test]
    fn a_paused_video_becomes_exact_and_streams_again_when_it_plays() {
        use crate::spice::codec::testimages;
        use crate::spice::video_stream::{SAME_FRAME, STILL_TO_EXACT};
        let mut rig = StreamRig::new(320, 240, 0x3bf, raw_setup());
        let video = PHOTO_VIDEO;
        // Photo `frame` drawn into the video area 40 ms on; message types.
        let play = |rig: &mut StreamRig, frame: u32| {
            rig.t += Duration::from_millis(40);
            let photo = testimages::photo(192, 144, frame);
            paint_rect(&rig.display, video, &photo.bgrx);
            rig.channel.damage_at(video, rig.t);
            rig.channel.pump_at(&mut rig.out, rig.t);
            rig.channel.pump_at(&mut rig.out, rig.t + SAME_FRAME);
            read_all(&mut rig.channel, &mut rig.out, &mut rig.canvas)
        };
        let picture = |rig: &StreamRig| rig.display.head(0).unwrap().pixels.clone();
        for frame in 0..30 {
            play(&mut rig, frame);
        }
        assert_eq!(rig.canvas.streams.len(), 1);
        let stream = *rig.canvas.streams.keys().next().unwrap();
        assert!(psnr(&rig.canvas.pixels, &picture(&rig), 320, video) < 99.0);
        // Paused: frame 29 redrawn every 40 ms.
        let paused = rig.t;
        let mut frames_while_paused = 0;
        while rig.t < paused + STILL_TO_EXACT + Duration::from_secs(2) {
            let types = play(&mut rig, 29);
            frames_while_paused += types.iter().filter(|&&m| m == 123).count();
            if rig.canvas.pixels == picture(&rig) {
                assert!(rig.t >= paused + STILL_TO_EXACT);
                // The stream is hidden first: frames the client still
                // holds cannot draw over the exact picture.
                assert_eq!(types.first(), Some(&124), "{types:?}");
                assert!(types[1..].iter().all(|&m| m == 304), "{types:?}");
                break;
            }
        }
        assert_eq!(
            rig.canvas.pixels,
            picture(&rig),
            "the paused picture is exact"
        );
        assert!(rig.canvas.hidden_streams.contains(&stream));
        assert_eq!(rig.canvas.streams.keys().collect::<Vec<_>>(), vec![&stream]);
        assert_eq!(rig.channel.stream_stats().started, 1, "the stream lives on");
        assert!(frames_while_paused <= 6, "{frames_while_paused} frames");
        // Nothing more while paused.
        for _ in 0..50 {
            assert!(!play(&mut rig, 29).contains(&123));
        }
        assert_eq!(rig.canvas.pixels, picture(&rig));
        // Playing again: the stream is shown again, with a frame at once.
        let types = play(&mut rig, 30);
        let shown = types.iter().position(|&m| m == 124).expect("STREAM_CLIP");
        assert_eq!(types.get(shown + 1), Some(&123), "{types:?}");
        assert!(rig.canvas.hidden_streams.is_empty());
        assert!(psnr(&rig.canvas.pixels, &picture(&rig), 320, video) < 99.0);
        assert_eq!(rig.channel.stream_stats().started, 1);
    }

    /// Copies `rect` of `from` into `to` (BGRX pictures `width` wide).
    fn paint_rect_into(to: &mut [u8], from: &[u8], width: u32, rect: Rect) {
        for y in rect.top..rect.bottom {
            let a = ((y as u32 * width + rect.left as u32) * 4) as usize;
            let b = a + rect.width() as usize * 4;
            to[a..b].copy_from_slice(&from[a..b]);
        }
    }

    #[test]
    fn streams_follow_the_option_and_the_client() {
        use crate::spice::codec::policy::StreamingVideo;
        // (option, client caps, synthetic picture?) → streams started
        let cases = [
            (StreamingVideo::Filter, 0x3bf, false, 1),
            (StreamingVideo::Filter, 0x3bf, true, 0),
            (StreamingVideo::All, 0x3bf, true, 1),
            (StreamingVideo::Off, 0x3bf, false, 0),
            // MULTI_CODEC without CODEC_MJPEG: the client takes no MJPEG.
            (StreamingVideo::All, 0x1bf, false, 0),
            // No MULTI_CODEC: an old client, MJPEG only.
            (StreamingVideo::All, 0x0bf, false, 1),
        ];
        for (option, caps, synthetic, started) in cases {
            let mut setup = raw_setup();
            setup.compression.streaming = option;
            let mut rig = StreamRig::new(256, 160, caps, setup);
            rig.play(30, synthetic);
            assert_eq!(
                rig.channel.stream_stats().started,
                started,
                "{option:?} caps {caps:#x} synthetic {synthetic}"
            );
            assert_eq!(rig.canvas.pixels.len(), 256 * 160 * 4);
        }
    }

    #[test]
    fn a_resize_destroys_all_streams() {
        let mut rig = StreamRig::new(256, 160, 0x3bf, raw_setup());
        rig.play(25, false);
        assert_eq!(rig.canvas.streams.len(), 1);
        rig.display.resize(0, 320, 200);
        paint(&rig.display, 9);
        rig.channel.head_changed();
        // No stream deadline while a sync waits (the loop must not spin).
        assert_eq!(rig.channel.next_deadline(), None);
        rig.channel.pump_at(&mut rig.out, rig.t);
        let types = read_all(&mut rig.channel, &mut rig.out, &mut rig.canvas);
        assert_eq!(&types[..2], &[126, 315], "{types:?}");
        assert!(rig.canvas.streams.is_empty());
        assert_eq!(rig.canvas.pixels, rig.display.head(0).unwrap().pixels);
        assert_eq!(rig.channel.next_deadline(), None);
    }

    #[test]
    fn a_client_that_cannot_play_a_stream_gets_lossless_updates() {
        let mut rig = StreamRig::new(256, 160, 0x3bf, raw_setup());
        rig.play(25, false);
        assert_eq!(rig.canvas.streams.len(), 1);
        let (&id, _) = rig.canvas.streams.iter().next().unwrap();
        // (stream, num_drops, audio_delay): a report on a stream that is not
        // there is ignored; then "cannot play" (0 frames, all-ones drops).
        for (stream, drops, audio) in [(id + 7, u32::MAX, 0), (id, u32::MAX, u32::MAX)] {
            let mut report = Writer::new();
            report.u32(stream).u32(1).u32(0).u32(0).u32(0);
            report.u32(drops).i32(0).u32(audio);
            rig.channel.handle(102, &report.into_bytes()).unwrap();
        }
        let types = rig.play(40, false);
        assert_eq!(types.first(), Some(&125), "{types:?}");
        assert!(types.iter().all(|&t| t == 304 || t == 125), "{types:?}");
        assert!(rig.canvas.streams.is_empty());
        assert_eq!(rig.canvas.pixels, rig.display.head(0).unwrap().pixels);
        assert_eq!(rig.channel.stream_stats().started, 1);
    }
}
