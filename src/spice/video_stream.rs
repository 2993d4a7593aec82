//! Video streams: a region the guest redraws at video rates is sent as
//! MJPEG frames (`STREAM_CREATE`, `STREAM_DATA`, `STREAM_DESTROY`) instead
//! of lossless images, as libspice's `streaming-video` does.
//!
//! Detection works on the damage the display channel receives (it sees
//! pictures, not QXL drawables). Damage rectangles that overlap, each at
//! most [`FRAME_MAX_GAP`] after the last, form a candidate (its area is
//! where its last [`RECENT_FRAMES`] frames were drawn: a guest's frame may
//! come as several bands); a candidate
//! of at least [`MIN_STREAM_AREA`] pixels redrawn [`FRAMES_TO_START`]
//! times in a row becomes a stream. With
//! `streaming-video=filter` (the default) its picture must also look like
//! a photo or noise to `codec::classify`: text and other synthetic
//! pictures are never streamed, however fast they change; with that
//! second signal [`FRAMES_TO_START_FILTERED`] frames suffice. `all`
//! streams any such candidate; `off` none.
//!
//! While a stream runs, damage inside its rectangle makes a frame due and
//! damage outside it stays lossless. A frame is the rectangle read from
//! the *current* picture when there is room to send it, so frames a slow
//! client cannot take are merged, never queued. Frames carry the server's
//! multimedia time; clients show them [`super::main_channel`]'s 400 ms
//! later, as with libspice. Their chroma is subsampled as libspice's
//! unless the picture loses too much by it (saturated colours with sharp
//! edges keep full chroma), judged on a stream's first frame and every
//! [`RATE_WINDOW`]th after it.
//!
//! A due frame that shows what the last frame sent did (a paused player
//! or a compositor redrawing the same picture) is not sent, except once
//! per [`UNCHANGED_FRAME_RESEND`]; once the picture has stayed for
//! [`STILL_TO_EXACT`], the stream is hidden ([`StreamClip`]: frames the
//! client still holds draw nowhere), its area goes losslessly instead
//! ([`VideoStreams::take_exact`]), and no frame follows until it changes,
//! when the stream is shown again. The stream lives on, so a player that
//! resumes streams again at once.
//!
//! A stream that is not redrawn for [`STREAM_IDLE`], or slows down to
//! less than video rate, ends: `STREAM_DESTROY`, then its area is sent
//! again losslessly, so the picture the client is left with is exact.
//!
//! Rate control: quality starts at [`START_QUALITY`] and the frame rate at
//! [`MAX_FPS`]. Every [`RATE_WINDOW`] frames, if frames had to wait for
//! room in the socket or the client's ACK window (or the client's stream
//! report counts dropped frames), quality goes down a step, and below
//! [`MIN_QUALITY`] the frame rate does instead; two clean windows in a row
//! give back the frame rate first, then quality up to [`MAX_QUALITY`].
//! Where the session's network test measured the link, the frame rate is
//! also kept where the streams' frames fit in [`LINK_SHARE`] of it (at
//! their average frame size so far), so that a slow link is not first
//! flooded and then backed off from.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use devices::display::{Rect, Surface};

use super::channel::{Encode, Outbox};
use super::codec::classify::{classify, Content};
use super::codec::policy::StreamingVideo;
use super::codec::{jpeg, parallel, pixel_bytes, Bitmap};
use super::protocol::display_msg;
use super::region::{subtract, Region};
use super::wire::Writer;

/// Smallest area streamed (libspice: 96×96).
pub const MIN_STREAM_AREA: u64 = 96 * 96;
/// Consecutive frames of a candidate are at most this far apart
/// (libspice's `RED_STREAM_DETECTION_MAX_DELTA`).
pub const FRAME_MAX_GAP: Duration = Duration::from_millis(200);
/// Damage closer together than this is part of the same frame (a frame
/// drawn as several rectangles).
pub const SAME_FRAME: Duration = Duration::from_millis(8);
/// Frames a candidate needs before it streams with `streaming-video=all`
/// (libspice: 20): fast change is the only evidence of video there.
pub const FRAMES_TO_START: u32 = 20;
/// The same with `streaming-video=filter`, where the picture must also
/// look photographic: two signals need fewer frames (a third of a second
/// at 30 fps). Each frame before the stream goes lossless, and a lossless
/// video frame costs several JPEG frames in bytes and CPU.
pub const FRAMES_TO_START_FILTERED: u32 = 10;

/// Frames a candidate needs before it streams in `mode`.
pub fn frames_to_start(mode: StreamingVideo) -> u32 {
    match mode {
        StreamingVideo::Filter => FRAMES_TO_START_FILTERED,
        _ => FRAMES_TO_START,
    }
}
/// A stream not redrawn for this long ends (libspice: 1 s).
pub const STREAM_IDLE: Duration = Duration::from_secs(1);
/// A running stream ends after this many slow frames in a row (each more
/// than [`FRAME_MAX_GAP`] after the one before).
pub const SLOW_FRAMES_TO_END: u32 = 3;
/// A due frame showing what the last one sent did is skipped, but one
/// goes at least this often (a client that dropped the last frame, e.g.
/// as late, is left with an older one for at most this long).
pub const UNCHANGED_FRAME_RESEND: Duration = Duration::from_secs(1);
/// A stream whose picture stayed the same this long while the guest kept
/// redrawing it (a paused player) has its area sent once losslessly, in
/// place of a resent frame (so at least [`UNCHANGED_FRAME_RESEND`] after
/// the last frame, which the client has shown by then); it then sends no
/// frames until the picture changes.
pub const STILL_TO_EXACT: Duration = Duration::from_secs(5);
/// Streams at once per display channel.
pub const MAX_STREAMS: usize = 4;
/// Candidates tracked at once (the least recently redrawn goes first).
pub const MAX_CANDIDATES: usize = 8;
/// A candidate's area is where its last this many frames were drawn.
pub const RECENT_FRAMES: usize = 8;
/// JPEG quality: first, lowest, highest, and a step. Even the lowest keeps
/// 30 dB on the real test pictures (with the chroma `jpeg::chroma_for`
/// picks); 80 gives about 32 dB on colourful screen content (full chroma)
/// and more on photos. The highest is libspice's (its MJPEG encoder's
/// quality steps end at 80): more costs CPU and bytes for little to see.
pub const START_QUALITY: u8 = 80;
pub const MIN_QUALITY: u8 = 70;
pub const MAX_QUALITY: u8 = 80;
pub const QUALITY_STEP: u8 = 10;
/// Frame rate bounds and step, in frames per second (at most libspice's
/// MJPEG rate, 25).
pub const MAX_FPS: u32 = 25;
pub const MIN_FPS: u32 = 5;
pub const FPS_STEP: u32 = 5;
/// The part of the measured link's bit rate the video streams may fill
/// together (the rest is for the other channels and the link's ups and
/// downs).
pub const LINK_SHARE: f64 = 0.7;
/// Quality goes up again only where the link fits this many frames per
/// second at the current frame size: a quality step makes frames larger,
/// and a stream just within the link would then have to slow down.
pub const LINK_FPS_FOR_QUALITY: u32 = MAX_FPS + MAX_FPS / 4;
/// Frames between rate-control decisions.
pub const RATE_WINDOW: u32 = 15;
/// The client's stream reports: frames per report and the longest wait.
pub const REPORT_WINDOW: u32 = 30;
pub const REPORT_TIMEOUT_MS: u32 = 1000;

/// `SPICE_VIDEO_CODEC_TYPE_MJPEG`.
pub const CODEC_MJPEG: u8 = 1;
/// `SPICE_STREAM_FLAGS_TOP_DOWN`.
pub const STREAM_FLAG_TOP_DOWN: u8 = 1;
const CLIP_NONE: u8 = 0;

/// `STREAM_CREATE`: an MJPEG stream of `rect`-sized top-down frames,
/// shown at `rect` on the primary surface, unclipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCreate {
    pub id: u32,
    pub rect: Rect,
}

impl Encode for StreamCreate {
    const TYPE: u16 = display_msg::STREAM_CREATE;
    fn encode(&self, w: &mut Writer) {
        let (width, height) = (self.rect.width() as u32, self.rect.height() as u32);
        w.u32(0) // surface
            .u32(self.id)
            .u8(STREAM_FLAG_TOP_DOWN)
            .u8(CODEC_MJPEG)
            .u64(0) // stamp
            .u32(width)
            .u32(height)
            .u32(width)
            .u32(height);
        w.rect(&self.rect);
        w.u8(CLIP_NONE);
    }
}

/// `STREAM_DATA`: one JPEG frame, shown at multimedia time `mm_time`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamData {
    pub id: u32,
    pub mm_time: u32,
    pub jpeg: Vec<u8>,
}

impl Encode for StreamData {
    const TYPE: u16 = display_msg::STREAM_DATA;
    fn encode(&self, w: &mut Writer) {
        w.u32(self.id)
            .u32(self.mm_time)
            .u32(self.jpeg.len() as u32)
            .bytes(&self.jpeg);
    }
}

/// `STREAM_DESTROY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDestroy {
    pub id: u32,
}

/// `STREAM_CLIP`: where the stream's frames may draw: everywhere (clip
/// none) or, hidden, nowhere (a rectangle list of none). A client draws a
/// frame when its multimedia time comes, clipped as things are then, so a
/// hidden stream's frames still queued there cannot cover what is drawn
/// over the stream meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamClip {
    pub id: u32,
    pub hidden: bool,
}

/// `SPICE_CLIP_TYPE_RECTS`.
const CLIP_RECTS: u8 = 1;

impl Encode for StreamClip {
    const TYPE: u16 = display_msg::STREAM_CLIP;
    fn encode(&self, w: &mut Writer) {
        w.u32(self.id);
        if self.hidden {
            w.u8(CLIP_RECTS);
            w.u32(0);
        } else {
            w.u8(CLIP_NONE);
        }
    }
}

impl Encode for StreamDestroy {
    const TYPE: u16 = display_msg::STREAM_DESTROY;
    fn encode(&self, w: &mut Writer) {
        w.u32(self.id);
    }
}

/// `STREAM_ACTIVATE_REPORT`: asks the client for a report every
/// `max_window_size` frames or `timeout_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamActivateReport {
    pub id: u32,
    pub unique_id: u32,
    pub max_window_size: u32,
    pub timeout_ms: u32,
}

impl Encode for StreamActivateReport {
    const TYPE: u16 = display_msg::STREAM_ACTIVATE_REPORT;
    fn encode(&self, w: &mut Writer) {
        w.u32(self.id)
            .u32(self.unique_id)
            .u32(self.max_window_size)
            .u32(self.timeout_ms);
    }
}

/// The client's `STREAM_REPORT` (the fields rate control uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamReport {
    pub id: u32,
    pub unique_id: u32,
    pub num_frames: u32,
    pub num_drops: u32,
    /// How long before its time the last frame arrived (ms; < 0: late,
    /// and the client dropped it).
    pub last_frame_delay: i32,
}

impl StreamReport {
    /// `num_frames` 0 with `num_drops` all ones: the client cannot play
    /// the stream at all.
    pub fn cannot_play(&self) -> bool {
        self.num_frames == 0 && self.num_drops == u32::MAX
    }
}

/// The picture of one due frame, taken from the current picture.
#[derive(Debug)]
pub struct Frame {
    stream: u32,
    quality: u8,
    chroma: jpeg::Chroma,
    rect: Rect,
    pixels: Vec<u32>,
    /// A keyed hash of `pixels`: the next frame with the same is unchanged.
    content: u64,
}

/// Damage that overlaps and keeps coming: maybe a video.
#[derive(Debug, Clone)]
struct Candidate {
    /// The damage of its last frames (at most [`RECENT_FRAMES`]), a frame's
    /// bands merged.
    recent: VecDeque<Rect>,
    frames: u32,
    last_frame: Instant,
}

impl Candidate {
    fn new(rect: Rect, now: Instant) -> Candidate {
        Candidate {
            recent: VecDeque::from([rect]),
            frames: 1,
            last_frame: now,
        }
    }

    /// Where its recent frames were drawn.
    fn area(&self) -> Rect {
        self.recent.iter().fold(Rect::new(0, 0, 0, 0), |a, r| {
            if a.is_empty() {
                *r
            } else {
                a.union(r)
            }
        })
    }

    fn hit(&mut self, rect: Rect, now: Instant) {
        let gap = now.saturating_duration_since(self.last_frame);
        if gap > FRAME_MAX_GAP {
            // Not a sequence any more: start again from this rectangle.
            *self = Candidate::new(rect, now);
        } else if gap >= SAME_FRAME {
            if self.recent.len() >= RECENT_FRAMES {
                self.recent.pop_front();
            }
            self.recent.push_back(rect);
            self.frames = self.frames.saturating_add(1);
            self.last_frame = now;
        } else if let Some(last) = self.recent.back_mut() {
            *last = last.union(&rect);
        }
    }
}

#[derive(Debug, Clone)]
struct Stream {
    id: u32,
    unique_id: u32,
    rect: Rect,
    last_damage: Instant,
    slow_frames: u32,
    /// Damage since the last frame: a frame is due (since `due_since`).
    due: bool,
    due_since: Instant,
    next_frame_at: Instant,
    quality: u8,
    /// Subsampled (as libspice) unless the picture loses too much by it
    /// ([`jpeg::chroma_for`]); decided again every [`RATE_WINDOW`] frames.
    chroma: jpeg::Chroma,
    fps: u32,
    /// Rate control: frames sent and frames that had to wait in this
    /// window, clean windows in a row.
    window_frames: u32,
    window_waits: u32,
    clean_windows: u32,
    frames: u64,
    bytes: u64,
    /// The average JPEG size of its frames (bytes; 0 before the first).
    frame_bytes: u64,
    /// How many frames a second of that size the link takes
    /// ([`LINK_SHARE`]; `u32::MAX` when it is not measured).
    link_fits: u32,
    /// The content hash of the last frame sent, and when it went.
    last_sent: Option<(u64, Instant)>,
    /// Since when due frames have shown the last frame's picture, and
    /// whether the client got that picture losslessly since.
    still_since: Option<Instant>,
    exact: bool,
}

impl Stream {
    /// When the due frame may be taken: not before the frame interval
    /// allows, and once the guest has stopped drawing it (no damage for
    /// [`SAME_FRAME`]: a frame drawn as several bands goes as one JPEG, not
    /// as a torn one and the rest); a guest that never pauses still gets a
    /// frame every interval.
    fn frame_ready_at(&self) -> Instant {
        let settled = (self.last_damage + SAME_FRAME).min(self.due_since + self.frame_interval());
        self.next_frame_at.max(settled)
    }

    /// A new stream: its first frame is due at once.
    fn new(id: u32, unique_id: u32, rect: Rect, now: Instant) -> Stream {
        Stream {
            id,
            unique_id,
            rect,
            last_damage: now,
            slow_frames: 0,
            due: true,
            due_since: now,
            next_frame_at: now,
            quality: START_QUALITY,
            chroma: jpeg::Chroma::Full,
            fps: MAX_FPS,
            window_frames: 0,
            window_waits: 0,
            clean_windows: 0,
            frames: 0,
            bytes: 0,
            frame_bytes: 0,
            link_fits: u32::MAX,
            last_sent: None,
            still_since: None,
            exact: false,
        }
    }

    fn frame_interval(&self) -> Duration {
        Duration::from_secs(1) / self.fps
    }

    /// A frame of `bytes` went: the average frame size, the frame rate the
    /// link allows for this stream's `bits_per_second` share (`None`:
    /// unmeasured or too fast to measure) and the frame rate within it.
    fn sent_frame(&mut self, bytes: u64, bits_per_second: Option<u64>) {
        self.frame_bytes = if self.frame_bytes == 0 {
            bytes
        } else {
            (self.frame_bytes * 7 + bytes) / 8
        };
        self.link_fits = bits_per_second.map_or(u32::MAX, |bps| {
            // (A float to integer cast saturates.)
            (bps as f64 * LINK_SHARE / 8.0 / self.frame_bytes.max(1) as f64) as u32
        });
        self.fps = self.fps.min(self.link_fps());
    }

    /// The frame rate the link allows.
    fn link_fps(&self) -> u32 {
        self.link_fits.clamp(MIN_FPS, MAX_FPS)
    }

    /// One rate-control decision: worse after trouble, better after calm.
    /// While the link holds the frame rate down, quality goes down to
    /// [`MIN_QUALITY`] (smaller frames, so more of them fit), and comes back
    /// up only with room to spare ([`LINK_FPS_FOR_QUALITY`]).
    fn adapt(&mut self, trouble: bool) {
        let link_bound = self.link_fits < MAX_FPS;
        if trouble {
            self.clean_windows = 0;
            if self.quality > MIN_QUALITY {
                self.quality = self.quality.saturating_sub(QUALITY_STEP).max(MIN_QUALITY);
            } else {
                self.fps = self.fps.saturating_sub(FPS_STEP).max(MIN_FPS);
            }
        } else if link_bound && self.quality > MIN_QUALITY {
            self.clean_windows = 0;
            self.quality = self.quality.saturating_sub(QUALITY_STEP).max(MIN_QUALITY);
        } else {
            self.clean_windows += 1;
            if self.clean_windows >= 2 {
                self.clean_windows = 0;
                if self.fps < self.link_fps() {
                    self.fps = (self.fps + FPS_STEP).min(self.link_fps());
                } else if self.link_fits >= LINK_FPS_FOR_QUALITY {
                    self.quality = (self.quality + QUALITY_STEP / 2).min(MAX_QUALITY);
                }
            }
        }
    }
}

/// The keyed hash of a frame's pixels (`rect`'s, top-down rows).
fn content_hash(seed: u64, rect: Rect, pixels: &[u32]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(pixel_bytes(pixels), seed ^ ((rect.width() as u64) << 32))
}

/// Totals over a display channel's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub started: u64,
    pub frames: u64,
    pub bytes: u64,
    /// Due frames not sent because they showed what the last one did.
    pub unchanged: u64,
    /// Still stream pictures sent losslessly.
    pub still_exact: u64,
}

/// The video streams of one display channel and their detection.
#[derive(Debug)]
pub struct VideoStreams {
    mode: StreamingVideo,
    /// The client takes MJPEG streams and (separately) stream reports.
    client_mjpeg: bool,
    client_reports: bool,
    candidates: Vec<Candidate>,
    streams: Vec<Stream>,
    next_unique_id: u32,
    /// The key of the frames' content hashes (random: no guest can make
    /// two different frames look the same).
    content_seed: u64,
    /// Areas of still streams to send losslessly ([`Self::take_exact`]).
    exact: Vec<Rect>,
    /// The client's link as the session's network test measured it (bits
    /// per second; `None`: not measured, or too fast to measure).
    link_bps: Option<u64>,
    pub stats: StreamStats,
}

impl VideoStreams {
    pub fn new(mode: StreamingVideo, client_mjpeg: bool, client_reports: bool) -> VideoStreams {
        VideoStreams {
            mode,
            client_mjpeg,
            client_reports,
            candidates: Vec::new(),
            streams: Vec::new(),
            next_unique_id: 1,
            content_seed: rand::random(),
            exact: Vec::new(),
            link_bps: None,
            stats: StreamStats::default(),
        }
    }

    /// The session's network test measured the client's link at
    /// `bits_per_second` (`None`: too fast to measure): the streams share
    /// [`LINK_SHARE`] of it from their next frames on.
    pub fn set_link(&mut self, bits_per_second: Option<u64>) {
        self.link_bps = bits_per_second;
    }

    fn enabled(&self) -> bool {
        self.client_mjpeg && self.mode != StreamingVideo::Off
    }

    /// Takes a damaged rectangle: parts inside streams make their frames
    /// due, the rest goes to `lossless`; detection sees all of it.
    pub fn damage(&mut self, rect: Rect, now: Instant, lossless: &mut Region) {
        if rect.is_empty() {
            return;
        }
        for stream in &mut self.streams {
            if stream.rect.intersect(&rect).is_empty() {
                continue;
            }
            let gap = now.saturating_duration_since(stream.last_damage);
            if gap > FRAME_MAX_GAP {
                stream.slow_frames += 1;
            } else if gap >= SAME_FRAME {
                stream.slow_frames = 0;
            }
            stream.last_damage = now;
            if !stream.due {
                stream.due = true;
                stream.due_since = now;
            }
        }
        for r in self.outside(rect) {
            lossless.add(r);
        }
        if self.enabled() {
            self.detect(rect, now);
        }
    }

    fn detect(&mut self, rect: Rect, now: Instant) {
        if self.streams.iter().any(|s| s.rect.contains(&rect)) {
            return;
        }
        match self
            .candidates
            .iter_mut()
            .find(|c| !c.area().intersect(&rect).is_empty())
        {
            Some(c) => c.hit(rect, now),
            None => {
                if self.candidates.len() >= MAX_CANDIDATES {
                    if let Some(oldest) =
                        (0..self.candidates.len()).min_by_key(|&i| self.candidates[i].last_frame)
                    {
                        self.candidates.swap_remove(oldest);
                    }
                }
                self.candidates.push(Candidate::new(rect, now));
            }
        }
    }

    /// The parts of `rect` outside every stream.
    pub fn outside(&self, rect: Rect) -> Vec<Rect> {
        self.streams.iter().fold(vec![rect], |pieces, s| {
            pieces.iter().flat_map(|r| subtract(*r, s.rect)).collect()
        })
    }

    /// Whether [`Self::pump`] has something to do at `now`.
    pub fn has_work(&self, now: Instant) -> bool {
        self.streams
            .iter()
            .any(|s| (s.due && now >= s.frame_ready_at()) || self.ended(s, now))
            || self
                .candidates
                .iter()
                .any(|c| c.frames >= frames_to_start(self.mode))
    }

    fn ended(&self, s: &Stream, now: Instant) -> bool {
        now.saturating_duration_since(s.last_damage) >= STREAM_IDLE
            || s.slow_frames >= SLOW_FRAMES_TO_END
            || !self.client_mjpeg
    }

    /// When [`Self::pump`] will next have something to do, if ever
    /// without more damage.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.streams
            .iter()
            .map(|s| {
                let idle = s.last_damage + STREAM_IDLE;
                if s.due {
                    idle.min(s.frame_ready_at())
                } else {
                    idle
                }
            })
            .min()
    }

    /// Ends streams that stopped (their areas go to `lossless`), starts
    /// streams for ready candidates, and takes the pictures of the frames
    /// that are due if `room` says the client can take more (at most
    /// [`MAX_STREAMS`] messages beyond it). `head` is the current picture;
    /// encode and send the frames with [`Self::send`] once it is released.
    pub fn pump(
        &mut self,
        head: &Surface,
        now: Instant,
        lossless: &mut Region,
        out: &mut Outbox,
        room: &mut dyn FnMut(&Outbox) -> bool,
    ) -> Vec<Frame> {
        self.end_stopped(now, lossless, out);
        if room(out) {
            // (Creates and destroys too only go when the client reads.)
            self.start_ready(head, now, lossless, out);
        }
        let mut frames = Vec::new();
        for s in &mut self.streams {
            if !s.due || now < s.frame_ready_at() {
                continue;
            }
            if !room(out) {
                // Look again a frame later (the event loop must not spin
                // on a deadline in the past while the client is slow).
                s.window_waits += 1;
                s.next_frame_at = now + s.frame_interval();
                continue;
            }
            let pixels = head.copy_rect(s.rect);
            let content = content_hash(self.content_seed, s.rect, &pixels);
            if let Some((_, at)) = s.last_sent.filter(|(last, _)| *last == content) {
                // The guest redrew the same picture (a paused player, a
                // compositor's repeated frame): the client has it, lossy
                // until it gets it exact once the picture has stayed.
                let still_since = *s.still_since.get_or_insert(now);
                let resend_due = now >= at + UNCHANGED_FRAME_RESEND;
                let skip = if s.exact || !resend_due {
                    self.stats.unchanged += 1;
                    true
                } else if now >= still_since + STILL_TO_EXACT {
                    // In place of a resent frame (the client has most
                    // likely shown the last frame by now; hidden, any
                    // frame still queued there draws nothing), and no
                    // frame follows until the picture changes.
                    s.exact = true;
                    out.push(&StreamClip {
                        id: s.id,
                        hidden: true,
                    });
                    self.exact.push(s.rect);
                    self.stats.still_exact += 1;
                    true
                } else {
                    // Resent (the client may have dropped it as late).
                    false
                };
                if skip {
                    s.due = false;
                    s.next_frame_at = now + s.frame_interval();
                    continue;
                }
            }
            if s.frames % u64::from(RATE_WINDOW) == 0 {
                let (w, h) = (s.rect.width() as u32, s.rect.height() as u32);
                s.chroma = jpeg::chroma_for(pixel_bytes(&pixels), w, h);
            }
            frames.push(Frame {
                stream: s.id,
                quality: s.quality,
                chroma: s.chroma,
                rect: s.rect,
                pixels,
                content,
            });
        }
        frames
    }

    fn end_stopped(&mut self, now: Instant, lossless: &mut Region, out: &mut Outbox) {
        let mut i = 0;
        while i < self.streams.len() {
            if !self.ended(&self.streams[i], now) {
                i += 1;
                continue;
            }
            self.end(i, lossless, out);
        }
    }

    /// Ends stream `i`: `STREAM_DESTROY`, its area back to `lossless`.
    fn end(&mut self, i: usize, lossless: &mut Region, out: &mut Outbox) {
        let s = self.streams.swap_remove(i);
        out.push(&StreamDestroy { id: s.id });
        if !s.exact || s.due {
            // (An exact still the client has needs nothing more.)
            lossless.add(s.rect);
        }
        self.candidates
            .retain(|c| c.area().intersect(&s.rect).is_empty());
        tracing::info!(
            "display: video stream {} ended: {} frames, {} KiB, last quality {} ({:?} chroma) at {} fps",
            s.id,
            s.frames,
            s.bytes / 1024,
            s.quality,
            s.chroma,
            s.fps
        );
    }

    fn start_ready(
        &mut self,
        head: &Surface,
        now: Instant,
        lossless: &mut Region,
        out: &mut Outbox,
    ) {
        let bounds = head.bounds();
        let start = frames_to_start(self.mode);
        let mut i = 0;
        while i < self.candidates.len() {
            let c = &mut self.candidates[i];
            if c.frames < start {
                i += 1;
                continue;
            }
            let rect = c.area().intersect(&bounds);
            let others = self
                .streams
                .iter()
                .filter(|s| s.rect.intersect(&rect).is_empty());
            let wanted = rect.area() >= MIN_STREAM_AREA
                && others.count() < MAX_STREAMS
                && (self.mode == StreamingVideo::All
                    || classify(
                        pixel_bytes(&head.copy_rect(rect)),
                        rect.width() as u32,
                        rect.height() as u32,
                    ) != Content::Synthetic);
            if !wanted {
                // Not video (yet): look again after as many frames more.
                c.frames = 0;
                i += 1;
                continue;
            }
            self.candidates.swap_remove(i);
            // Streams never overlap: one the new one touches (a player
            // moved or resized) ends, its area resent losslessly (except
            // where the new stream draws).
            while let Some(k) = self
                .streams
                .iter()
                .position(|s| !s.rect.intersect(&rect).is_empty())
            {
                self.end(k, lossless, out);
            }
            // The smallest id not in use (clients index an array by it).
            let id = (0..)
                .find(|id| self.streams.iter().all(|s| s.id != *id))
                .unwrap_or(0);
            let stream = Stream::new(id, self.next_unique_id, rect, now);
            self.next_unique_id = self.next_unique_id.wrapping_add(1);
            // The next frame covers the stream's area: lossless updates
            // of it would only be drawn over.
            lossless.subtract(rect);
            self.candidates
                .retain(|c| c.area().intersect(&rect).is_empty());
            out.push(&StreamCreate {
                id: stream.id,
                rect,
            });
            if self.client_reports {
                out.push(&StreamActivateReport {
                    id: stream.id,
                    unique_id: stream.unique_id,
                    max_window_size: REPORT_WINDOW,
                    timeout_ms: REPORT_TIMEOUT_MS,
                });
            }
            tracing::info!(
                "display: video stream {} started at {},{} {}x{}",
                stream.id,
                rect.left,
                rect.top,
                rect.width(),
                rect.height()
            );
            self.stats.started += 1;
            self.streams.push(stream);
        }
    }

    /// Encodes `frames` (on the encoder pool) and queues them, stamped
    /// with multimedia time `mm_time`.
    pub fn send(&mut self, frames: Vec<Frame>, now: Instant, mm_time: u32, out: &mut Outbox) {
        let pixels: u64 = frames.iter().map(|f| f.rect.area()).sum();
        // Each stream's share of the link (still pictures made exact send
        // nothing).
        let sending = self.streams.iter().filter(|s| !s.exact).count().max(1);
        let share = self.link_bps.map(|bps| bps / sending as u64);
        let jpegs = parallel::map(&frames, pixels, |f| {
            Bitmap::rgb32(
                f.rect.width() as u32,
                f.rect.height() as u32,
                pixel_bytes(&f.pixels),
            )
            .and_then(|b| jpeg::encode(&b, f.quality, f.chroma))
        });
        for (frame, jpeg) in frames.iter().zip(jpegs) {
            let Some(s) = self.streams.iter_mut().find(|s| s.id == frame.stream) else {
                continue;
            };
            s.due = false;
            let jpeg = jpeg.inspect(|jpeg| s.sent_frame(jpeg.len() as u64, share));
            // (At the frame rate the link allows from this frame on.)
            s.next_frame_at = now + s.frame_interval();
            let jpeg = match jpeg {
                Ok(jpeg) => jpeg,
                Err(e) => {
                    tracing::warn!("display: video stream {}: frame not encoded: {e}", s.id);
                    continue;
                }
            };
            s.frames += 1;
            s.bytes += jpeg.len() as u64;
            if s.last_sent.is_none_or(|(last, _)| last != frame.content) {
                if s.exact {
                    out.push(&StreamClip {
                        id: s.id,
                        hidden: false,
                    });
                }
                s.still_since = None;
                s.exact = false;
            }
            s.last_sent = Some((frame.content, now));
            self.stats.frames += 1;
            self.stats.bytes += jpeg.len() as u64;
            tracing::debug!(
                "display: video stream {} frame {}: {} bytes at quality {}",
                s.id,
                s.frames,
                jpeg.len(),
                s.quality
            );
            out.push(&StreamData {
                id: s.id,
                mm_time,
                jpeg,
            });
            s.window_frames += 1;
            if s.window_frames >= RATE_WINDOW {
                let trouble = s.window_waits > 0;
                s.adapt(trouble);
                s.window_frames = 0;
                s.window_waits = 0;
            }
        }
    }

    /// Areas of streams whose still picture the client is to get
    /// losslessly now (over the stream: no frame follows until the
    /// picture changes).
    pub fn take_exact(&mut self) -> Vec<Rect> {
        std::mem::take(&mut self.exact)
    }

    /// Forgets every stream (the surface is going away or being resent
    /// whole); returns whether the client had any, so that the caller
    /// sends `STREAM_DESTROY_ALL`.
    pub fn reset(&mut self) -> bool {
        self.candidates.clear();
        self.exact.clear();
        !std::mem::take(&mut self.streams).is_empty()
    }

    /// The client's report on a stream: more than a tenth of the frames
    /// dropped, or the last one late, count as trouble. A client that
    /// cannot play the stream gets no more streams (this one ends at the
    /// next pump, its area resent losslessly).
    pub fn report(&mut self, report: StreamReport) {
        let Some(s) = self
            .streams
            .iter_mut()
            .find(|s| s.id == report.id && s.unique_id == report.unique_id)
        else {
            return; // about a stream that has ended since
        };
        if report.cannot_play() {
            tracing::info!("display: the client cannot play video stream {}", s.id);
            self.client_mjpeg = false;
            self.candidates.clear();
            return;
        }
        let drops = u64::from(report.num_drops) * 10;
        if drops > u64::from(report.num_frames) || report.last_frame_delay < 0 {
            s.adapt(true);
        }
    }

    pub fn active(&self) -> usize {
        self.streams.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spice::channel::Encode;
    use crate::spice::codec::testimages::Rng;

    #[test]
    fn messages_match_the_protocol_layout() {
        let create = StreamCreate {
            id: 3,
            rect: Rect::new(10, 20, 110, 70),
        }
        .body();
        let expected: Vec<u8> = [
            &[0, 0, 0, 0, 3, 0, 0, 0][..],
            &[1, 1], // top-down, MJPEG
            &[0; 8], // stamp
            &[100, 0, 0, 0, 50, 0, 0, 0, 100, 0, 0, 0, 50, 0, 0, 0],
            &[20, 0, 0, 0, 10, 0, 0, 0, 70, 0, 0, 0, 110, 0, 0, 0],
            &[0], // clip none
        ]
        .concat();
        assert_eq!(create, expected);
        assert_eq!(<StreamCreate as Encode>::TYPE, 122);
        let data = StreamData {
            id: 3,
            mm_time: 0x01020304,
            jpeg: vec![0xff, 0xd8],
        }
        .body();
        assert_eq!(data, [3, 0, 0, 0, 4, 3, 2, 1, 2, 0, 0, 0, 0xff, 0xd8]);
        assert_eq!(<StreamData as Encode>::TYPE, 123);
        assert_eq!(StreamDestroy { id: 2 }.body(), [2, 0, 0, 0]);
        let hide = StreamClip {
            id: 2,
            hidden: true,
        };
        assert_eq!(hide.body(), [2, 0, 0, 0, 1, 0, 0, 0, 0]);
        let show = StreamClip {
            id: 2,
            hidden: false,
        };
        assert_eq!(show.body(), [2, 0, 0, 0, 0]);
        assert_eq!(<StreamClip as Encode>::TYPE, 124);
        assert_eq!(<StreamDestroy as Encode>::TYPE, 125);
        let report = StreamActivateReport {
            id: 1,
            unique_id: 2,
            max_window_size: 30,
            timeout_ms: 1000,
        };
        assert_eq!(
            report.body(),
            [1, 0, 0, 0, 2, 0, 0, 0, 30, 0, 0, 0, 0xe8, 3, 0, 0]
        );
        assert_eq!(<StreamActivateReport as Encode>::TYPE, 319);
    }

    #[test]
    fn rate_control_trades_quality_then_frame_rate_and_recovers() {
        let mut s = Stream::new(0, 1, Rect::new(0, 0, 100, 100), Instant::now());
        for _ in 0..20 {
            s.adapt(true);
            assert!((MIN_QUALITY..=MAX_QUALITY).contains(&s.quality));
            assert!((MIN_FPS..=MAX_FPS).contains(&s.fps));
        }
        assert_eq!((s.quality, s.fps), (MIN_QUALITY, MIN_FPS));
        // Calm: the frame rate comes back first, then quality.
        s.adapt(false);
        s.adapt(false);
        assert_eq!((s.quality, s.fps), (MIN_QUALITY, MIN_FPS + FPS_STEP));
        for _ in 0..100 {
            s.adapt(false);
        }
        assert_eq!((s.quality, s.fps), (MAX_QUALITY, MAX_FPS));
        assert_eq!(s.frame_interval(), Duration::from_secs(1) / MAX_FPS);
    }

    /// On a measured link, a stream's frames fit in [`LINK_SHARE`] of it:
    /// the frame rate drops at once, quality is traded for frame rate, and
    /// calm windows do not raise either past what the link takes.
    #[test]
    fn the_frame_rate_keeps_to_the_measured_link() {
        let link = Some(4_000_000); // 4 Mbit/s: 350 kB/s for video
        let mut s = Stream::new(0, 1, Rect::new(0, 0, 480, 270), Instant::now());
        s.sent_frame(35_000, link);
        assert_eq!((s.fps, s.link_fps()), (10, 10));
        // Calm: quality goes down (smaller frames) rather than up.
        s.adapt(false);
        assert_eq!(s.quality, MIN_QUALITY);
        // The smaller frames fit 14 a second: the rate comes up to that.
        for _ in 0..20 {
            s.sent_frame(24_000, link);
        }
        assert_eq!(s.link_fps(), 14);
        for _ in 0..10 {
            s.adapt(false);
        }
        assert_eq!((s.quality, s.fps), (MIN_QUALITY, 14));
        // Trouble still lowers the rate below the link's.
        s.adapt(true);
        assert_eq!(s.fps, 9);
        // A link too slow for the slowest rate: the slowest rate.
        s.sent_frame(1_000_000, Some(1_000_000));
        assert_eq!(s.fps, MIN_FPS);
        // Unmeasured (or too fast to measure): no limit.
        let mut u = Stream::new(0, 1, Rect::new(0, 0, 480, 270), Instant::now());
        u.sent_frame(1_000_000, None);
        assert_eq!((u.fps, u.link_fps()), (MAX_FPS, MAX_FPS));
        // Just within the link at 25 fps: quality stays (a step up would
        // make the frames too large for 25 a second); with room, it rises.
        let mut q = Stream::new(0, 1, Rect::new(0, 0, 480, 270), Instant::now());
        q.quality = MIN_QUALITY;
        q.sent_frame(13_000, link); // fits 26
        for _ in 0..10 {
            q.adapt(false);
        }
        assert_eq!((q.quality, q.fps), (MIN_QUALITY, MAX_FPS));
        for _ in 0..20 {
            q.sent_frame(10_000, link); // fits 35
        }
        for _ in 0..4 {
            q.adapt(false);
        }
        assert!(q.quality > MIN_QUALITY);
    }

    /// A stream that starts on a blank picture subsamples its chroma (as
    /// libspice); once saturated colour bands play, its next decision
    /// ([`RATE_WINDOW`] frames on) turns to full chroma.
    #[test]
    fn stream_chroma_follows_the_picture() {
        let mut streams = VideoStreams::new(StreamingVideo::All, true, false);
        let mut surface = Surface::new(320, 240).unwrap();
        let mut out = Outbox::new(crate::spice::wire::HeaderMode::Mini);
        let area = Rect::new(0, 0, 200, 150);
        let mut t = Instant::now();
        let mut lossless = Region::new();
        let mut chroma = Vec::new();
        for frame in 0..60u32 {
            surface.row_mut(149)[0] = frame as u8; // every frame differs
            if streams.active() == 1 && chroma.len() == 2 {
                for y in 0..150 {
                    for (x, p) in surface.row_mut(y)[..800].chunks_exact_mut(4).enumerate() {
                        p.copy_from_slice(&[0, 255 * (x as u8 & 1), 255 * (!x as u8 & 1), 0]);
                    }
                }
            }
            t += Duration::from_millis(40);
            streams.damage(area, t, &mut lossless);
            let frames = streams.pump(&surface, t, &mut lossless, &mut out, &mut |_| true);
            if let Some(f) = frames.first() {
                chroma.push(f.chroma);
            }
            streams.send(frames, t, frame, &mut out);
        }
        let window = RATE_WINDOW as usize;
        assert!(chroma.len() > window + 2, "{} frames", chroma.len());
        assert!(chroma[..window]
            .iter()
            .all(|c| *c == jpeg::Chroma::Subsampled));
        assert_eq!(chroma[window], jpeg::Chroma::Full);
    }

    /// A stream of the top left 200x150 of a 320x240 picture, started by
    /// frames 40 ms apart that each show a new picture.
    struct HeldVideo {
        streams: VideoStreams,
        surface: Surface,
        out: Outbox,
        lossless: Region,
        picture: u8,
        t: Instant,
    }

    impl HeldVideo {
        const AREA: Rect = Rect::new(0, 0, 200, 150);

        fn started() -> HeldVideo {
            let mut v = HeldVideo {
                streams: VideoStreams::new(StreamingVideo::All, true, false),
                surface: Surface::new(320, 240).unwrap(),
                out: Outbox::new(crate::spice::wire::HeaderMode::Mini),
                lossless: Region::new(),
                picture: 0,
                t: Instant::now(),
            };
            let t0 = v.t;
            while v.streams.active() == 0 {
                v.change();
                v.step();
                assert!(v.t < t0 + Duration::from_secs(5), "no stream");
            }
            v
        }

        /// The guest draws a new picture (it goes out at the next step).
        fn change(&mut self) {
            self.picture = self.picture.wrapping_add(1);
            self.surface.row_mut(10)[40] = self.picture;
        }

        /// 40 ms on, the guest redraws the area: the frames sent, and the
        /// areas to send exactly.
        fn step(&mut self) -> (usize, Vec<Rect>) {
            self.t += Duration::from_millis(40);
            let (t, streams) = (self.t, &mut self.streams);
            streams.damage(Self::AREA, t, &mut self.lossless);
            let frames = streams.pump(
                &self.surface,
                t,
                &mut self.lossless,
                &mut self.out,
                &mut |_| true,
            );
            let n = frames.len();
            streams.send(frames, t, 0, &mut self.out);
            self.out.take_bytes();
            (n, streams.take_exact())
        }
    }

    /// A picture redrawn unchanged (a paused player) keeps the stream but
    /// sends a frame only once per [`UNCHANGED_FRAME_RESEND`]; a changed
    /// picture goes at once.
    #[test]
    fn unchanged_frames_go_once_a_second() {
        let mut v = HeldVideo::started();
        let (frames, unchanged) = (v.streams.stats.frames, v.streams.stats.unchanged);
        // 2.48 s of the same picture, redrawn every 40 ms.
        for _ in 0..62 {
            v.step();
        }
        assert_eq!(v.streams.active(), 1, "the held picture keeps its stream");
        // The stream's first frame (taken once the guest stopped drawing),
        // then one a second.
        assert_eq!(v.streams.stats.frames - frames, 3, "one frame a second");
        // (Here a frame settles 8 ms after its damage, between steps: a
        // due frame is looked at every other step.)
        assert!(v.streams.stats.unchanged - unchanged >= 25);
        v.change();
        assert_eq!(v.step().0, 1, "a new picture goes at once");
    }

    /// A picture that stays for [`STILL_TO_EXACT`] while redrawn goes
    /// once losslessly (at least a resend interval after the last frame),
    /// then nothing while it stays; the stream lives on, and a changed
    /// picture streams again at once.
    #[test]
    fn a_still_picture_goes_exact_once() {
        let mut v = HeldVideo::started();
        // 12 s of the same picture, redrawn every 40 ms.
        let held = v.t;
        let (mut exact_at, mut last_frame) = (Vec::new(), v.t);
        for _ in 0..300 {
            let (frames, exact) = v.step();
            if frames > 0 {
                last_frame = v.t;
            }
            if !exact.is_empty() {
                assert_eq!(exact, vec![HeldVideo::AREA]);
                exact_at.push(v.t);
            }
        }
        assert_eq!(exact_at.len(), 1, "the still picture goes exact once");
        let exact = exact_at[0];
        assert!(exact >= held + STILL_TO_EXACT && exact < held + STILL_TO_EXACT * 2);
        assert!(last_frame < exact && exact >= last_frame + UNCHANGED_FRAME_RESEND);
        assert_eq!(v.streams.active(), 1, "the stream lives on");
        assert_eq!(v.streams.stats.still_exact, 1);
        // The picture changes: a frame at once, and lossy again until it
        // stays once more.
        v.change();
        assert_eq!(v.step().0, 1);
        for _ in 0..200 {
            v.step();
        }
        assert_eq!(v.streams.stats.still_exact, 2);
    }

    /// A client without room: the due frame waits, its deadline moves a
    /// frame ahead (the event loop never polls with a deadline in the
    /// past), and once there is room the frame goes.
    #[test]
    fn a_frame_without_room_waits_a_frame_interval() {
        let mut streams = VideoStreams::new(StreamingVideo::All, true, false);
        let surface = Surface::new(320, 240).unwrap();
        let mut out = Outbox::new(crate::spice::wire::HeaderMode::Mini);
        let area = Rect::new(0, 0, 200, 150);
        let t0 = Instant::now();
        let mut t = t0;
        let mut lossless = Region::new();
        while streams.active() == 0 {
            t += Duration::from_millis(40);
            streams.damage(area, t, &mut lossless);
            let frames = streams.pump(&surface, t, &mut lossless, &mut out, &mut |_| true);
            streams.send(frames, t, 0, &mut out);
            assert!(t < t0 + Duration::from_secs(5), "no stream");
        }
        t += Duration::from_millis(40);
        streams.damage(area, t, &mut lossless);
        assert!(streams.has_work(t));
        let frames = streams.pump(&surface, t, &mut lossless, &mut out, &mut |_| false);
        assert!(frames.is_empty());
        assert!(!streams.has_work(t));
        assert!(streams.next_deadline().is_some_and(|d| d > t));
        let later = t + Duration::from_secs(1) / MAX_FPS;
        assert!(streams.has_work(later));
        let frames = streams.pump(&surface, later, &mut lossless, &mut out, &mut |_| true);
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn a_frame_drawn_in_bands_goes_as_one_frame() {
        let mut streams = VideoStreams::new(StreamingVideo::All, true, false);
        let mut surface = Surface::new(320, 240).unwrap();
        let mut out = Outbox::new(crate::spice::wire::HeaderMode::Mini);
        // (Overlapping, so that detection sees one area.)
        let (top, bottom) = (Rect::new(0, 0, 200, 100), Rect::new(0, 50, 200, 150));
        let mut lossless = Region::new();
        let mut t = Instant::now();
        let mut drawn = 0u8;
        let mut pump = |streams: &mut VideoStreams, lossless: &mut Region, t: Instant| {
            // Every frame taken shows a new picture.
            drawn = drawn.wrapping_add(1);
            surface.row_mut(0)[0] = drawn;
            let frames = streams.pump(&surface, t, lossless, &mut out, &mut |_| true);
            let n = frames.len();
            streams.send(frames, t, 0, &mut out);
            n
        };
        // Frames 40 ms apart, each drawn as two bands 3 ms apart.
        let mut sent = Vec::new();
        for _ in 0..40 {
            t += Duration::from_millis(40);
            streams.damage(top, t, &mut lossless);
            let at_first_band = pump(&mut streams, &mut lossless, t);
            streams.damage(bottom, t + Duration::from_millis(3), &mut lossless);
            // (No deadline before the stream starts.)
            let settled = streams
                .next_deadline()
                .unwrap_or(t + Duration::from_millis(3));
            assert!(settled > t, "a frame waits for the guest to finish drawing");
            sent.push(at_first_band + pump(&mut streams, &mut lossless, settled));
        }
        assert_eq!(streams.active(), 1);
        assert!(
            sent[sent.len() - 10..].iter().all(|&n| n == 1),
            "one frame per guest frame: {sent:?}"
        );
        // A guest that never pauses (damage every 5 ms) still gets frames.
        let start = t + Duration::from_millis(40);
        let mut frames = 0;
        for k in 0..40 {
            let now = start + Duration::from_millis(5 * k);
            streams.damage(top, now, &mut lossless);
            frames += pump(&mut streams, &mut lossless, now);
        }
        assert!(frames >= 4, "{frames} frames in 200 ms of non-stop drawing");
    }

    /// Damage anywhere, at any rate (with a slow client now and then):
    /// candidates and streams stay bounded, streams never overlap, and
    /// nothing damaged is lost: after the pump every damaged pixel is in
    /// the lossless region or in a stream whose frame is due or taken.
    #[test]
    fn random_damage_stays_bounded_and_is_never_lost() {
        let mut streams = VideoStreams::new(StreamingVideo::All, true, true);
        let surface = Surface::new(640, 480).unwrap();
        let mut out = Outbox::new(crate::spice::wire::HeaderMode::Mini);
        let mut rng = Rng(11);
        let t0 = Instant::now();
        let mut lossless = Region::new();
        for step in 0..5000u64 {
            let now = t0 + Duration::from_millis(step * 11);
            let (x, y) = ((rng.next() % 600) as i32, (rng.next() % 440) as i32);
            let (w, h) = (1 + (rng.next() % 300) as i32, 1 + (rng.next() % 300) as i32);
            let rect = Rect::new(x, y, x + w, y + h);
            streams.damage(rect, now, &mut lossless);
            let room = !rng.next().is_multiple_of(4);
            let frames = streams.pump(&surface, now, &mut lossless, &mut out, &mut |_| room);
            let framed: Vec<Rect> = frames.iter().map(|f| f.rect).collect();
            // Streams with a frame due, or whose last frame sent shows
            // their area as it is now (the surface here never changes).
            let settled: Vec<Rect> = streams
                .streams
                .iter()
                .filter(|s| {
                    s.due
                        || s.last_sent.is_some_and(|(content, _)| {
                            let now = surface.copy_rect(s.rect);
                            content == content_hash(streams.content_seed, s.rect, &now)
                        })
                })
                .map(|s| s.rect)
                .collect();
            for py in (rect.top..rect.bottom).step_by(7) {
                for px in (rect.left..rect.right).step_by(7) {
                    let p = Rect::new(px, py, px + 1, py + 1);
                    let covered = lossless.rects().iter().any(|r| r.contains(&p))
                        || framed.iter().any(|r| r.contains(&p))
                        || settled.iter().any(|r| r.contains(&p));
                    assert!(covered, "{p:?} of {rect:?} lost");
                }
            }
            streams.send(frames, now, 0, &mut out);
            out.take_bytes();
            // The channel sends the lossless region (outside the streams).
            while let Some(r) = lossless.take(u64::MAX) {
                for piece in streams.outside(r) {
                    assert!(streams
                        .streams
                        .iter()
                        .all(|s| s.rect.intersect(&piece).is_empty()));
                }
            }
            assert!(streams.candidates.len() <= MAX_CANDIDATES);
            assert!(streams.streams.len() <= MAX_STREAMS);
            for (k, a) in streams.streams.iter().enumerate() {
                for b in &streams.streams[k + 1..] {
                    assert!(a.rect.intersect(&b.rect).is_empty(), "streams overlap");
                    assert_ne!(a.id, b.id, "stream ids are unique");
                }
            }
        }
        assert!(streams.stats.started > 1);
    }

    /// A player that moves: the old stream ends (destroyed, its area
    /// lossless again) and one stream plays at the new place.
    #[test]
    fn a_moved_video_replaces_its_stream() {
        let mut streams = VideoStreams::new(StreamingVideo::All, true, false);
        let surface = Surface::new(640, 480).unwrap();
        let mut out = Outbox::new(crate::spice::wire::HeaderMode::Mini);
        let t0 = Instant::now();
        let mut lossless = Region::new();
        let mut play = |area: Rect, from: u64, streams: &mut VideoStreams, out: &mut Outbox| {
            let mut types = Vec::new();
            for k in from..from + 30 {
                let now = t0 + Duration::from_millis(40 * k);
                streams.damage(area, now, &mut lossless);
                let frames = streams.pump(&surface, now, &mut lossless, out, &mut |_| true);
                streams.send(frames, now, 0, out);
                let bytes = out.take_bytes();
                let mut at = 0;
                while let Some((h, _, used)) = crate::spice::wire::next_frame(
                    crate::spice::wire::HeaderMode::Mini,
                    &bytes[at..],
                    u32::MAX,
                )
                .unwrap()
                {
                    types.push(h.msg_type);
                    at += used;
                }
            }
            types
        };
        let first = play(Rect::new(0, 0, 200, 150), 0, &mut streams, &mut out);
        assert_eq!(first.iter().filter(|&&t| t == 122).count(), 1);
        let moved = Rect::new(50, 40, 250, 190);
        let second = play(moved, 30, &mut streams, &mut out);
        let create = second.iter().position(|&t| t == 122).expect("a new stream");
        assert_eq!(second[create - 1], 125, "{second:?}");
        assert_eq!(streams.active(), 1);
        assert_eq!(streams.streams[0].rect, moved);
    }
}
