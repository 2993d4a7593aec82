//! The server's mirror of a client's caches, so that it never names an
//! entry the client does not hold (spice-gtk would wait for it forever):
//!
//! * [`PixmapCache`]: images the client keeps by id (`CACHE_ME`), in pixels,
//!   at most the `pixmap_cache_size` of the client's DISPLAY_INIT (bounded
//!   here too); least recently used entries are evicted, and each eviction
//!   must reach the client as `INVAL_LIST` ([`InvalList`]) before the id is
//!   used again.
//! * [`CursorCache`]: the same for cursor shapes, each counted as at least
//!   64×64 pixels, 256 of those (spice-server's count) and so at most 4 MiB
//!   of client memory whatever shapes a guest sets; evictions are the
//!   cursor channel's `INVAL_ONE`.
//!   There is no palette cache: the display channel sends pieces of the
//!   rendered 32-bit surface, never palette bitmaps, so no palette ever
//!   reaches the client.
//! * [`SessionImages`]: what a client session shares between its display
//!   channels (spice-gtk keeps one image cache and one GLZ window per
//!   session): GLZ windows and pixmap caches by the ids in DISPLAY_INIT.
//!
//! [`CachedImages`] is how a display channel sends an image once: the
//! first time with `CACHE_ME`, then as `FROM_CACHE` while the client still
//! has it. Guests give no ids to what the display channel sends (pieces of
//! the rendered picture), so an image's id is a keyed hash of its pixels
//! ([`CachedImages::content_id`]): a picture that comes back (a menu
//! closing, a window raised again, a slide shown twice) costs a few bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::channel::Encode;
use super::codec::glz::GlzDictionary;
use super::codec::image::{Image, ImageData, IMAGE_FLAG_CACHE_ME, IMAGE_FLAG_CACHE_REPLACE_ME};
use super::codec::pixel_bytes;
use super::protocol::display_msg;
use super::wire::Writer;

/// Most pixels we mirror for one client cache (1 GiB of 32-bit pixels on
/// the client; spice-gtk asks for 20 Mi pixels).
pub const MAX_PIXMAP_CACHE_PIXELS: u64 = 1 << 28;
/// Most entries we track for one cache (bounds our memory whatever the
/// client says).
pub const MAX_CACHE_ENTRIES: usize = 1 << 16;
/// spice-server's cursor cache size (entries).
pub const CURSOR_CACHE_ENTRIES: u64 = 256;
/// What a cursor shape costs in the cursor cache at least (pixels).
pub const CURSOR_MIN_COST: u64 = 64 * 64;

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    stamp: u64,
    lossy: bool,
}

/// Ids with sizes, least recently used evicted first.
#[derive(Debug)]
pub struct Lru {
    capacity: u64,
    used: u64,
    clock: u64,
    items: HashMap<u64, Entry>,
    order: BTreeMap<u64, u64>,
}

impl Lru {
    pub fn new(capacity: u64) -> Lru {
        Lru {
            capacity,
            used: 0,
            clock: 0,
            items: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether `id` is held (and if its copy is lossy); marks it used.
    pub fn touch(&mut self, id: u64) -> Option<bool> {
        let e = self.items.get_mut(&id)?;
        self.order.remove(&e.stamp);
        self.clock += 1;
        e.stamp = self.clock;
        self.order.insert(self.clock, id);
        Some(e.lossy)
    }

    pub fn contains(&self, id: u64) -> bool {
        self.items.contains_key(&id)
    }

    /// Adds `id`, evicting least recently used entries to make room; the
    /// evicted ids are returned (the client must be told). None (and
    /// nothing changes) if it can never fit or is already held.
    pub fn insert(&mut self, id: u64, size: u64, lossy: bool) -> Option<Vec<u64>> {
        if size > self.capacity || self.items.contains_key(&id) {
            return None;
        }
        let mut evicted = Vec::new();
        while self.used + size > self.capacity || self.items.len() >= MAX_CACHE_ENTRIES {
            let (_, old) = self.order.pop_first()?;
            if let Some(e) = self.items.remove(&old) {
                self.used -= e.size;
            }
            evicted.push(old);
        }
        self.clock += 1;
        self.items.insert(
            id,
            Entry {
                size,
                stamp: self.clock,
                lossy,
            },
        );
        self.order.insert(self.clock, id);
        self.used += size;
        Some(evicted)
    }

    pub fn set_lossy(&mut self, id: u64, lossy: bool) {
        if let Some(e) = self.items.get_mut(&id) {
            e.lossy = lossy;
        }
    }

    pub fn clear(&mut self) {
        self.items.clear();
        self.order.clear();
        self.used = 0;
    }
}

/// A client's image cache, sized in pixels.
pub type PixmapCache = Lru;

/// The pixmap cache of a DISPLAY_INIT size (untrusted: bounded).
pub fn pixmap_cache(client_pixels: i64) -> PixmapCache {
    Lru::new(
        u64::try_from(client_pixels)
            .unwrap_or(0)
            .min(MAX_PIXMAP_CACHE_PIXELS),
    )
}

/// A client's cursor shape cache, in pixels.
pub struct CursorCache(pub Lru);

impl Default for CursorCache {
    fn default() -> Self {
        CursorCache(Lru::new(CURSOR_CACHE_ENTRIES * CURSOR_MIN_COST))
    }
}

impl CursorCache {
    /// What a `width`×`height` shape costs.
    pub fn cost(width: u16, height: u16) -> u64 {
        (u64::from(width) * u64::from(height)).max(CURSOR_MIN_COST)
    }
}

/// `INVAL_LIST`: pixmap ids the client must drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalList {
    pub ids: Vec<u64>,
}

/// `SPICE_RES_TYPE_PIXMAP`.
const RES_TYPE_PIXMAP: u8 = 1;

impl Encode for InvalList {
    const TYPE: u16 = display_msg::INVAL_LIST;
    fn encode(&self, w: &mut Writer) {
        w.u16(self.ids.len() as u16);
        for &id in &self.ids {
            w.u8(RES_TYPE_PIXMAP).u64(id);
        }
    }
}

impl InvalList {
    /// At most this many ids per message (the count is a u16).
    pub const MAX_IDS: usize = u16::MAX as usize;
}

/// `INVAL_ALL_PIXMAPS` without waits (one display channel per cache user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalAllPixmaps;

impl Encode for InvalAllPixmaps {
    const TYPE: u16 = display_msg::INVAL_ALL_PIXMAPS;
    fn encode(&self, w: &mut Writer) {
        w.u8(0);
    }
}

/// A session's pixmap cache and the display connection using it.
struct SharedPixmapCache {
    cache: Arc<Mutex<PixmapCache>>,
    user: Option<u32>,
}

/// GLZ windows, and pixmap caches, a session may have (a client names
/// them by an 8-bit id in each display channel's init; libspice's clients
/// use one of each per session).
pub const MAX_PER_SESSION: usize = 4;

/// What a session's display channels share.
#[derive(Default)]
pub struct SessionImages {
    glz: Mutex<HashMap<u8, Arc<Mutex<GlzDictionary>>>>,
    pixmaps: Mutex<HashMap<u8, SharedPixmapCache>>,
    next_owner: AtomicU32,
}

impl SessionImages {
    /// The GLZ window with this id (created with the first asker's size),
    /// or None when the client's window is too small to use, or when the
    /// session already has [`MAX_PER_SESSION`] windows in use.
    pub fn glz(&self, id: u8, window_pixels: i64) -> Option<Arc<Mutex<GlzDictionary>>> {
        let mut map = self.glz.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = map.get(&id) {
            return Some(d.clone());
        }
        if map.len() >= MAX_PER_SESSION {
            // Windows no display connection holds any more.
            map.retain(|_, d| Arc::strong_count(d) > 1);
        }
        if map.len() >= MAX_PER_SESSION {
            tracing::warn!("spice: a session asked for more than {MAX_PER_SESSION} GLZ windows");
            return None;
        }
        let d = Arc::new(Mutex::new(GlzDictionary::new(window_pixels)?));
        map.insert(id, d.clone());
        Some(d)
    }

    /// The pixmap cache with this id (sized by the first asker) for display
    /// connection `owner`, or None while another connection uses it: one
    /// user at a time, so that no connection evicts an image another one
    /// is about to name (spice-server makes the channels wait for each
    /// other instead). None too when the session already has
    /// [`MAX_PER_SESSION`] caches in use.
    pub fn claim_pixmap_cache(
        &self,
        id: u8,
        pixels: i64,
        owner: u32,
    ) -> Option<Arc<Mutex<PixmapCache>>> {
        let mut map = self.pixmaps.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&id) && map.len() >= MAX_PER_SESSION {
            map.retain(|_, shared| shared.user.is_some());
            if map.len() >= MAX_PER_SESSION {
                tracing::warn!(
                    "spice: a session asked for more than {MAX_PER_SESSION} pixmap caches"
                );
                return None;
            }
        }
        let shared = map.entry(id).or_insert_with(|| SharedPixmapCache {
            cache: Arc::new(Mutex::new(pixmap_cache(pixels))),
            user: None,
        });
        match shared.user {
            Some(other) if other != owner => None,
            _ => {
                shared.user = Some(owner);
                Some(shared.cache.clone())
            }
        }
    }

    /// Display connection `owner` closed: its pixmap cache may be claimed
    /// again (the mirror stays, as the client's cache does).
    pub fn release_pixmap_cache(&self, owner: u32) {
        let mut map = self.pixmaps.lock().unwrap_or_else(|p| p.into_inner());
        for shared in map.values_mut() {
            if shared.user == Some(owner) {
                shared.user = None;
            }
        }
    }

    /// A number no other display connection of this session has (GLZ
    /// copies never cross connections).
    pub fn new_owner(&self) -> u32 {
        self.next_owner.fetch_add(1, Ordering::Relaxed)
    }
}

/// Sends images once: the first time with `CACHE_ME` (after the
/// evictions it causes, as an `INVAL_LIST`), then as `FROM_CACHE`.
pub struct CachedImages {
    cache: Arc<Mutex<PixmapCache>>,
    /// The key of [`CachedImages::content_id`].
    seed: u64,
}

/// Images smaller than this are not cached: their draw costs about what
/// the cache's `CACHE_ME` and eviction bookkeeping would.
pub const MIN_CACHED_PIXELS: u64 = 32 * 32;

/// What to send for one image.
#[derive(Debug, PartialEq, Eq)]
pub enum CacheStep {
    /// The client has it: send this (payload-less) image.
    Hit(Image),
    /// Encode and send it with these descriptor flags, after telling the
    /// client to drop `evicted`.
    Send { flags: u8, evicted: Vec<u64> },
}

impl CachedImages {
    pub fn new(cache: Arc<Mutex<PixmapCache>>) -> CachedImages {
        CachedImages {
            cache,
            seed: rand::random(),
        }
    }

    /// The id of a `width`×`height` picture of these pixels: a 64-bit hash
    /// keyed with a random seed, so no guest can make two pictures share an
    /// id on purpose; a lookup among the at most 65536 cached pictures
    /// matches a different picture by accident with a chance under 2^-48.
    pub fn content_id(&self, width: u32, height: u32, pixels: &[u32]) -> u64 {
        let seed = self.seed ^ (u64::from(width) << 32 | u64::from(height));
        xxhash_rust::xxh3::xxh3_64_with_seed(pixel_bytes(pixels), seed)
    }

    /// Decides for image `id` of `width`×`height`. `lossless_wanted`: a
    /// lossy cached copy will not do.
    pub fn step(&self, id: u64, width: u32, height: u32, lossless_wanted: bool) -> CacheStep {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.touch(id) {
            Some(lossy) if !(lossy && lossless_wanted) => CacheStep::Hit(Image {
                id,
                flags: 0,
                width,
                height,
                data: if lossless_wanted {
                    ImageData::FromCacheLossless
                } else {
                    ImageData::FromCache
                },
            }),
            Some(_) => CacheStep::Send {
                flags: IMAGE_FLAG_CACHE_REPLACE_ME,
                evicted: Vec::new(),
            },
            // Lossy until `sent` says how it was encoded: a lossless draw
            // before that (in the same batch) sends it again.
            None => match cache.insert(id, u64::from(width) * u64::from(height), true) {
                Some(evicted) => CacheStep::Send {
                    flags: IMAGE_FLAG_CACHE_ME,
                    evicted,
                },
                None => CacheStep::Send {
                    flags: 0,
                    evicted: Vec::new(),
                },
            },
        }
    }

    /// Starts over with an empty cache when an earlier display connection
    /// left entries: some may never have reached the client (still queued
    /// when it closed), and naming one of those would hang it. True if the
    /// client must be told to empty its cache (`INVAL_ALL_PIXMAPS`).
    pub fn take_over(&self) -> bool {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let left = !cache.is_empty();
        cache.clear();
        left
    }

    /// The image sent for a `Send` step turned out lossy (or lossless).
    pub fn sent(&self, id: u64, lossy: bool) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_lossy(id, lossy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_least_recently_used_to_fit() {
        let mut c = Lru::new(100);
        assert_eq!(c.insert(1, 40, false), Some(vec![]));
        assert_eq!(c.insert(2, 40, false), Some(vec![]));
        assert_eq!(c.touch(1), Some(false));
        assert_eq!(c.insert(3, 40, true), Some(vec![2]));
        assert_eq!(c.used(), 80);
        assert_eq!(c.insert(4, 101, false), None, "never fits");
        assert_eq!(c.insert(1, 10, false), None, "already held");
        assert_eq!(c.insert(5, 100, false), Some(vec![1, 3]));
        assert_eq!((c.len(), c.used()), (1, 100));
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn client_sizes_are_bounded() {
        assert_eq!(pixmap_cache(-1).capacity(), 0);
        assert_eq!(pixmap_cache(i64::MAX).capacity(), MAX_PIXMAP_CACHE_PIXELS);
        let mut c = pixmap_cache(i64::MAX);
        for id in 0..(MAX_CACHE_ENTRIES as u64 + 10) {
            c.insert(id, 1, false).unwrap();
        }
        assert_eq!(c.len(), MAX_CACHE_ENTRIES);
    }

    #[test]
    fn images_are_sent_once() {
        let images = CachedImages::new(Arc::new(Mutex::new(pixmap_cache(3 * 100 * 100))));
        let first = images.step(0x5_0000_0001, 100, 100, false);
        assert_eq!(
            first,
            CacheStep::Send {
                flags: IMAGE_FLAG_CACHE_ME,
                evicted: vec![]
            }
        );
        images.sent(0x5_0000_0001, false);
        match images.step(0x5_0000_0001, 100, 100, true) {
            CacheStep::Hit(img) => assert_eq!(img.data, ImageData::FromCacheLossless),
            other => panic!("{other:?}"),
        }
        // A lossy copy is replaced when lossless is needed.
        images.step(7, 100, 100, false);
        images.sent(7, true);
        assert!(matches!(images.step(7, 100, 100, false), CacheStep::Hit(_)));
        assert_eq!(
            images.step(7, 100, 100, true),
            CacheStep::Send {
                flags: IMAGE_FLAG_CACHE_REPLACE_ME,
                evicted: vec![]
            }
        );
        // Filling the cache evicts the least recently used.
        images.step(8, 100, 100, false);
        assert_eq!(
            images.step(9, 100, 100, false),
            CacheStep::Send {
                flags: IMAGE_FLAG_CACHE_ME,
                evicted: vec![0x5_0000_0001]
            }
        );
        // Too big for the cache: sent without caching.
        assert_eq!(
            images.step(10, 1000, 1000, false),
            CacheStep::Send {
                flags: 0,
                evicted: vec![]
            }
        );
    }

    #[test]
    fn invalidation_messages() {
        assert_eq!(
            InvalList {
                ids: vec![2, 0x100]
            }
            .body(),
            [2, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(InvalAllPixmaps.body(), [0]);
    }

    #[test]
    fn session_state_is_shared_and_bounded() {
        let s = SessionImages::default();
        assert!(s.glz(1, 0).is_none());
        let a = s.glz(1, 3 << 20).unwrap();
        let b = s.glz(1, 5).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let (first, second) = (s.new_owner(), s.new_owner());
        assert_ne!(first, second);
        // One display connection at a time uses a pixmap cache.
        let p = s.claim_pixmap_cache(1, 1000, first).unwrap();
        assert_eq!(p.lock().unwrap().capacity(), 1000);
        assert!(s.claim_pixmap_cache(1, 5, second).is_none());
        assert!(Arc::ptr_eq(&p, &s.claim_pixmap_cache(1, 5, first).unwrap()));
        s.release_pixmap_cache(first);
        assert!(Arc::ptr_eq(
            &p,
            &s.claim_pixmap_cache(1, 5, second).unwrap()
        ));
        assert!(
            s.claim_pixmap_cache(2, 5, first).is_some(),
            "another cache id"
        );
        // A client naming 256 windows and caches gets MAX_PER_SESSION of
        // each in use; released ones make room again.
        let held: Vec<_> = (0..=255u8).filter_map(|id| s.glz(id, 3 << 20)).collect();
        assert_eq!(held.len(), MAX_PER_SESSION);
        drop(held);
        drop((a, b));
        assert!(s.glz(200, 3 << 20).is_some(), "unused windows are dropped");
        s.release_pixmap_cache(first);
        s.release_pixmap_cache(second);
        let owners: Vec<u32> = (0..=255).map(|_| s.new_owner()).collect();
        let caches = (0..=255u8)
            .zip(&owners)
            .filter(|(id, owner)| s.claim_pixmap_cache(*id, 5, **owner).is_some())
            .count();
        assert_eq!(caches, MAX_PER_SESSION);
        assert!(s.claim_pixmap_cache(250, 5, first).is_none(), "all in use");
        for owner in &owners {
            s.release_pixmap_cache(*owner);
        }
        assert!(s.claim_pixmap_cache(250, 5, first).is_some());
    }

    #[test]
    fn content_ids_follow_the_pixels_and_the_size() {
        let cache = Arc::new(Mutex::new(pixmap_cache(1000)));
        let (a, b) = (CachedImages::new(cache.clone()), CachedImages::new(cache));
        let pixels: Vec<u32> = (0..64).collect();
        let id = a.content_id(8, 8, &pixels);
        assert_eq!(id, a.content_id(8, 8, &pixels.clone()));
        assert_ne!(id, a.content_id(16, 4, &pixels), "same bytes, other shape");
        let mut changed = pixels.clone();
        changed[63] ^= 1;
        assert_ne!(id, a.content_id(8, 8, &changed));
        assert_ne!(id, b.content_id(8, 8, &pixels), "keys differ per channel");
    }
}
