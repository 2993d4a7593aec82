//! GLZ (`SPICE_IMAGE_TYPE_GLZ_RGB`, and `ZLIB_GLZ_RGB` when wrapped in
//! zlib): LZ whose copies may also come from earlier images the client
//! keeps in its GLZ window, so a picture that reappears (a window moved
//! back, a redrawn menu) costs a few bytes.
//!
//! Stream (spice-gtk decode-glz.c): BE u32 magic "LZ  ", BE u32 version,
//! one byte `type | top_down << 4`, BE u32 width, height, stride, BE u64
//! image id, BE u32 `win_head_dist` (the client may drop every image
//! older than `id - win_head_dist` once this one is decoded). Commands:
//! `c < 32` literal pixels (B, G, R) as in LZ; otherwise a copy of
//! `len = c >> 5` pixels (7: plus extra bytes as in LZ), bit 4 = "pixel
//! offset over 12 bits", low nibble + next byte = 12 bits of pixel offset,
//! then the image distance (0 = this image, offset biased by one; else the
//! copy starts at that pixel of image `id - distance`):
//! * short offset: `(n << 6) | dist bits 0..6`, then n more bytes of
//!   distance (8 bits each, from bit 6);
//! * long offset: `(n << 6) | (offset >= 2^17) << 5 | offset bits 12..17`,
//!   n bytes of distance (8 bits each), and offset bits 17..25 if flagged.
//!
//! The dictionary here mirrors the client's window exactly: ids start at
//! 0 for each client session and every encoded image enters the window;
//! the window holds at most the client's `glz_dictionary_window_size`
//! pixels (bounded by [`MAX_WINDOW_PIXELS`]); a copy only reads images
//! still inside the head this image announces. Copies from other images
//! are found through a hash of three pixels over the whole window. Only
//! RGB32 images are GLZ-coded (what Displays hold), given as [`GlzImage`]s
//! whose pixel words the window then keeps (no copy); a copy never reads
//! an image of another display channel (its message may not have reached
//! the client yet).

use std::collections::VecDeque;
use std::io::Write;

use super::lz::{
    common_prefix, hash_bits, keys, local_hash_bits, match_len, miss_step, put_length,
    put_literals, Unit, LZ_MAGIC, LZ_VERSION,
};
use super::{parallel, pixel_bytes, Bitmap, BitmapFormat, CodecError};

/// The most pixels we keep for one client (128 MiB of keys); spice
/// clients ask for less (spice-gtk: 3 Mi pixels by default), and the
/// format's own limit is 2^25.
pub const MAX_WINDOW_PIXELS: u64 = 1 << 25;
/// Below this, a window is useless: GLZ is not used.
pub const MIN_WINDOW_PIXELS: u64 = 1 << 12;
const MAX_PIXEL_OFFSET: usize = (1 << 25) - 1;
const MAX_IMAGE_DIST: u64 = (1 << 24) - 1;
const GLOBAL_HASH_LOG: u32 = 18;
/// Positions of a committed image entered in the global hash table: every
/// 8th (every 4th cost 5-15% more time per image for the same bytes on the
/// codec bench, and the mixed replay workload sent 4% more: denser entries
/// overwrite each other before a later image looks them up).
const GLOBAL_STRIDE: usize = 8;
/// Smallest images worth zlib-wrapping (as spice-server).
const MIN_SIZE_FOR_ZLIB: usize = 100;

/// A top-down 32-bit picture to GLZ-code: its pixels as `0x00RRGGBB`
/// words, the values GLZ compares (the window keeps them once encoded).
/// The unused top byte must be 0 (as `Surface::copy_rect` and
/// [`GlzImage::of`] give them): other values still decode right, but
/// equal colours then fail to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlzImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u32>,
}

impl GlzImage {
    /// The picture of an RGB32 bitmap (its unused byte cleared).
    pub fn of(bitmap: &Bitmap) -> Result<GlzImage, CodecError> {
        if bitmap.format != BitmapFormat::Rgb32 {
            return Err(CodecError::Unsupported {
                codec: "GLZ",
                format: bitmap.format,
            });
        }
        let mut pixels = keys(bitmap, Unit::Rgb, false);
        if !bitmap.top_down {
            let w = bitmap.width as usize;
            pixels = pixels.chunks_exact(w).rev().flatten().copied().collect();
        }
        Ok(GlzImage {
            width: bitmap.width,
            height: bitmap.height,
            pixels,
        })
    }

    fn pixel_count(&self) -> u64 {
        self.pixels.len() as u64
    }

    /// Whether its size and pixels agree (it came from untrusted sizes).
    fn is_valid(&self) -> bool {
        Bitmap::rgb32(self.width, self.height, pixel_bytes(&self.pixels)).is_ok()
    }
}

struct WindowImage {
    id: u64,
    owner: u32,
    width: u32,
    keys: Box<[u32]>,
}

/// One client's GLZ window as the server tracks it.
pub struct GlzDictionary {
    limit: u64,
    images: VecDeque<WindowImage>,
    pixels: u64,
    next_id: u64,
    /// Hash of 3 pixels → (image id's low 24 bits << 8 | 8 more bits of
    /// the hash, pixel index); index `u32::MAX` = empty. 8-byte entries
    /// keep the table (2 MiB) mostly in cache, and the 8 hash bits turn
    /// away most entries of other pixels without reading their image (a
    /// cache miss). An id is rebuilt as the latest one with those low bits
    /// (images further back are out of reach anyway, [`MAX_IMAGE_DIST`]);
    /// a stale entry can only name another image, and every candidate is
    /// checked against that image's pixels before it is used.
    table: Vec<(u32, u32)>,
}

/// Where a copy comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// This image, `distance` pixels back.
    Here { distance: usize },
    /// Pixel `pos` of the image `dist` images before this one.
    Earlier { dist: u64, pos: usize },
}

/// What an encoder may read, fixed for one batch.
struct EncodeView<'a> {
    dict: &'a GlzDictionary,
    owner: u32,
    /// Images from this id on are being encoded now.
    base: u64,
}

impl GlzDictionary {
    /// A window of the size the client asked for (pixels), or None if that
    /// is too small to use. Untrusted input: clamped to [`MAX_WINDOW_PIXELS`].
    pub fn new(client_window_pixels: i64) -> Option<GlzDictionary> {
        let limit = u64::try_from(client_window_pixels)
            .ok()?
            .min(MAX_WINDOW_PIXELS);
        if limit < MIN_WINDOW_PIXELS {
            return None;
        }
        Some(GlzDictionary {
            limit,
            images: VecDeque::new(),
            pixels: 0,
            next_id: 0,
            table: vec![(0, u32::MAX); 1 << GLOBAL_HASH_LOG],
        })
    }

    pub fn window_limit(&self) -> u64 {
        self.limit
    }

    /// Pixels currently held (by the client too).
    pub fn window_pixels(&self) -> u64 {
        self.pixels
    }

    /// Whether an image of this many pixels may be GLZ-coded.
    fn accepts(&self, pixels: u64) -> bool {
        pixels < self.limit
    }

    /// The id the next image will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    fn image(&self, id: u64) -> Option<&WindowImage> {
        let front = self.images.front()?.id;
        let img = self
            .images
            .get(usize::try_from(id.checked_sub(front)?).ok()?)?;
        (img.id == id).then_some(img)
    }

    /// Encodes images one after the other into the window (on several
    /// threads when there are several), for display channel `owner`.
    /// Every image that comes back `Ok` has taken the next id and MUST be
    /// sent, in order; images the window cannot take (or whose size does
    /// not match their pixels) come back as `Err`, unchanged, and take no
    /// id.
    pub fn encode_batch(
        &mut self,
        owner: u32,
        images: Vec<GlzImage>,
    ) -> Vec<Result<Vec<u8>, GlzImage>> {
        // Plan ids and window heads; a batch never evicts its own images.
        let mut sizes: VecDeque<(u64, u64)> = self
            .images
            .iter()
            .map(|i| (i.id, i.keys.len() as u64))
            .collect();
        let mut total = self.pixels;
        let mut id = self.next_id;
        let base = self.next_id;
        let mut plan = Vec::with_capacity(images.len());
        for image in &images {
            if !image.is_valid() || !self.accepts(image.pixel_count()) {
                plan.push(None);
                continue;
            }
            let px = image.pixel_count();
            let mut evict = 0;
            let mut t = total;
            for &(img_id, size) in sizes.iter() {
                if t + px <= self.limit || img_id >= base {
                    break;
                }
                t -= size;
                evict += 1;
            }
            if t + px > self.limit {
                plan.push(None);
                continue;
            }
            sizes.drain(..evict);
            total = t + px;
            sizes.push_back((id, px));
            let head = sizes.front().map_or(id, |&(h, _)| h);
            plan.push(Some((id, head)));
            id += 1;
        }
        let view = EncodeView {
            dict: self,
            owner,
            base,
        };
        let jobs: Vec<(usize, u64, u64)> = plan
            .iter()
            .enumerate()
            .filter_map(|(k, p)| p.map(|(id, head)| (k, id, head)))
            .collect();
        let weight: u64 = jobs.iter().map(|&(k, ..)| images[k].pixel_count()).sum();
        let encoded = parallel::map(&jobs, weight, |&(k, id, head)| {
            view.encode_one(&images[k], id, head)
        });
        // Commit in order; the images not taken go back.
        let mut results: Vec<Result<Vec<u8>, GlzImage>> = images.into_iter().map(Err).collect();
        let mut last_head = None;
        for ((k, id, head), data) in jobs.into_iter().zip(encoded) {
            if let Err(image) = std::mem::replace(&mut results[k], Ok(data)) {
                // (No reallocation: copies come with their exact size.)
                self.commit(id, owner, image.width, image.pixels.into_boxed_slice());
            }
            last_head = Some(head);
        }
        if let Some(head) = last_head {
            while self.images.front().is_some_and(|i| i.id < head) {
                if let Some(old) = self.images.pop_front() {
                    self.pixels -= old.keys.len() as u64;
                }
            }
        }
        results
    }

    fn commit(&mut self, id: u64, owner: u32, width: u32, keys: Box<[u32]>) {
        debug_assert_eq!(id, self.next_id);
        let n = keys.len();
        // Every GLOBAL_STRIDE-th position: a later image that repeats a
        // stretch of this one finds it within that many pixels (and then
        // follows it), for a fraction of the hashing.
        for i in (0..n.saturating_sub(2)).step_by(GLOBAL_STRIDE) {
            let (slot, tag) = global_hash(&keys, i);
            self.table[slot] = (((id as u32) << 8) | u32::from(tag), i as u32);
        }
        self.pixels += n as u64;
        self.images.push_back(WindowImage {
            id,
            owner,
            width,
            keys,
        });
        self.next_id = id + 1;
    }
}

/// The global table slot of the 3 pixels at `i`, and 8 more bits of their
/// hash to tell them from other pixels in that slot.
fn global_hash(keys: &[u32], i: usize) -> (usize, u8) {
    let h = hash_bits(keys, i, GLOBAL_HASH_LOG + 8);
    (h >> 8, h as u8)
}

/// Bytes a copy takes besides its length extension bytes.
fn copy_cost(source: Source) -> usize {
    let (p, dist) = match source {
        Source::Here { distance } => (distance - 1, 0),
        Source::Earlier { dist, pos } => (pos, dist),
    };
    if p < 4096 {
        2 + match dist {
            0..64 => 1,
            64..16384 => 2,
            16384..4194304 => 3,
            _ => 4,
        }
    } else {
        3 + match dist {
            0 => 0,
            1..256 => 1,
            256..65536 => 2,
            _ => 3,
        } + usize::from(p >= 1 << 17)
    }
}

fn put_copy(len: usize, source: Source, out: &mut Vec<u8>) {
    let (p, dist) = match source {
        Source::Here { distance } => (distance - 1, 0u64),
        Source::Earlier { dist, pos } => (pos, dist),
    };
    if p < 4096 {
        put_length(len, (p & 0x0f) as u8, out);
        out.push((p >> 4) as u8);
        let d = dist as u32;
        match dist {
            0..64 => out.push(d as u8),
            64..16384 => out.extend_from_slice(&[0x40 | (d & 0x3f) as u8, (d >> 6) as u8]),
            16384..4194304 => {
                out.extend_from_slice(&[0x80 | (d & 0x3f) as u8, (d >> 6) as u8, (d >> 14) as u8])
            }
            _ => out.extend_from_slice(&[
                0xc0 | (d & 0x3f) as u8,
                (d >> 6) as u8,
                (d >> 14) as u8,
                (d >> 22) as u8,
            ]),
        }
    } else {
        put_length(len, 0x10 | (p & 0x0f) as u8, out);
        out.push((p >> 4) as u8);
        let n: u8 = match dist {
            0 => 0,
            1..256 => 1,
            256..65536 => 2,
            _ => 3,
        };
        let long = p >= 1 << 17;
        out.push((n << 6) | if long { 0x20 } else { 0 } | ((p >> 12) & 0x1f) as u8);
        out.extend_from_slice(&(dist as u32).to_le_bytes()[..n as usize]);
        if long {
            out.push((p >> 17) as u8);
        }
    }
}

impl EncodeView<'_> {
    fn encode_one(&self, image: &GlzImage, id: u64, head: u64) -> Vec<u8> {
        let keys = &image.pixels;
        let mut out = Vec::with_capacity(keys.len() / 2 + 64);
        out.extend_from_slice(&LZ_MAGIC.to_be_bytes());
        out.extend_from_slice(&LZ_VERSION.to_be_bytes());
        out.push(8 | (1 << 4)); // RGB32, top-down
        for v in [image.width, image.height, image.width * 4] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&((id - head) as u32).to_be_bytes());
        self.compress(keys, image.width, id, head, &mut out);
        out
    }

    /// The copy from pixel `pos` of image `img_id` for position `i`, if
    /// that image may be read and the pixels agree.
    fn earlier_match(
        &self,
        keys: &[u32],
        i: usize,
        (img_id, pos): (u64, usize),
        id: u64,
        head: u64,
    ) -> Option<(usize, Source)> {
        if img_id < head || img_id >= self.base || id - img_id > MAX_IMAGE_DIST {
            return None;
        }
        let img = self.dict.image(img_id)?;
        if img.owner != self.owner
            || pos > MAX_PIXEL_OFFSET
            || pos >= img.keys.len()
            || img.keys[pos] != keys[i]
        {
            return None;
        }
        let len = common_prefix(&keys[i..], &img.keys[pos..]);
        Some((
            len,
            Source::Earlier {
                dist: id - img_id,
                pos,
            },
        ))
    }

    /// The (image id, pixel) the global table holds for position `i`'s
    /// hash, if its hash bits agree: the id is the latest one below this
    /// batch with the stored low bits (checked against the image by
    /// [`Self::earlier_match`]).
    fn global_candidate(&self, keys: &[u32], i: usize) -> Option<(u64, usize)> {
        let (slot, tag) = global_hash(keys, i);
        let (id_tag, pos) = self.dict.table[slot];
        if pos == u32::MAX || id_tag as u8 != tag {
            return None;
        }
        let back = ((self.base as u32) << 8).wrapping_sub(id_tag & !0xff) >> 8;
        Some((self.base.checked_sub(u64::from(back))?, pos as usize))
    }

    /// The latest readable image of this channel with the same size: a
    /// redrawn area usually matches it pixel for pixel.
    fn aligned_image(&self, n: usize, width: u32, id: u64, head: u64) -> Option<u64> {
        self.dict
            .images
            .iter()
            .rev()
            .filter(|im| im.id < self.base && im.id >= head && id - im.id <= MAX_IMAGE_DIST)
            .find(|im| im.owner == self.owner && im.keys.len() == n && im.width == width)
            .map(|im| im.id)
    }

    fn compress(&self, keys: &[u32], width: u32, id: u64, head: u64, out: &mut Vec<u8>) {
        let n = keys.len();
        let bits = local_hash_bits(n);
        let mut local = vec![u32::MAX; 1 << bits];
        let mut literal_from = 0;
        let mut i = 0;
        let worth = |len: usize, s: Source| len * 3 >= copy_cost(s) + 2;
        let aligned = self.aligned_image(n, width, id, head);
        let mut follow: Option<(u64, usize)> = None;
        let mut misses = 0;
        while i < n {
            let mut best: Option<(usize, Source)> = None;
            let mut consider = |cand: (usize, Source)| {
                if !worth(cand.0, cand.1) {
                    return;
                }
                let better = match best {
                    None => true,
                    Some(b) => cand.0 * 3 - copy_cost(cand.1) > b.0 * 3 - copy_cost(b.1),
                };
                if better {
                    best = Some(cand);
                }
            };
            if i > 0 && keys[i] == keys[i - 1] {
                consider((match_len(keys, i, i - 1), Source::Here { distance: 1 }));
            }
            if i + 3 <= n {
                let h = hash_bits(keys, i, bits);
                let c = local[h];
                local[h] = i as u32;
                if c != u32::MAX {
                    let c = c as usize;
                    if i - c > 1 && i - c <= MAX_PIXEL_OFFSET && keys[c] == keys[i] {
                        consider((match_len(keys, i, c), Source::Here { distance: i - c }));
                    }
                }
                if let Some(m) = self
                    .global_candidate(keys, i)
                    .and_then(|cand| self.earlier_match(keys, i, cand, id, head))
                {
                    consider(m);
                }
            }
            // The same place in the last picture of this size, and where
            // the last copy from an earlier picture left off.
            for cand in [aligned.map(|a| (a, i)), follow].into_iter().flatten() {
                if let Some(m) = self.earlier_match(keys, i, cand, id, head) {
                    consider(m);
                }
            }
            match best {
                Some((len, source)) => {
                    put_literals(keys, literal_from, i, Unit::Rgb, out);
                    put_copy(len, source, out);
                    follow = match source {
                        Source::Earlier { dist, pos } => Some((id - dist, pos + len)),
                        Source::Here { .. } => follow.map(|(f, p)| (f, p + len)),
                    };
                    i += len;
                    for at in [i.saturating_sub(2), i.saturating_sub(1)] {
                        if at + 3 <= n && at > 0 {
                            local[hash_bits(keys, at, bits)] = at as u32;
                        }
                    }
                    literal_from = i;
                    misses = 0;
                }
                None => {
                    misses += 1;
                    let step = miss_step(misses);
                    follow = follow.map(|(f, p)| (f, p + step));
                    i += step;
                }
            }
        }
        put_literals(keys, literal_from, n, Unit::Rgb, out);
    }
}

/// Wraps a GLZ stream in zlib (level 3, as spice-server) when that makes
/// it smaller: `Some((glz_size, zlib_bytes))`.
pub fn zlib_wrap(glz: &[u8]) -> Option<(u32, Vec<u8>)> {
    if glz.len() < MIN_SIZE_FOR_ZLIB {
        return None;
    }
    let mut enc = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(glz.len() / 2),
        flate2::Compression::new(3),
    );
    enc.write_all(glz).ok()?;
    let z = enc.finish().ok()?;
    (z.len() < glz.len()).then_some((glz.len() as u32, z))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spice::codec::reference::GlzWindow;
    use crate::spice::codec::testimages;

    fn glz_image(img: &testimages::TestImage) -> GlzImage {
        GlzImage::of(&Bitmap::rgb32(img.width, img.height, &img.bgrx).unwrap()).unwrap()
    }

    fn encode(dict: &mut GlzDictionary, img: &testimages::TestImage) -> Vec<u8> {
        dict.encode_batch(0, vec![glz_image(img)])
            .pop()
            .unwrap()
            .unwrap()
    }

    fn no_pad(bgrx: &[u8]) -> Vec<u8> {
        bgrx.chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2], 0])
            .collect()
    }

    #[test]
    fn images_round_trip_and_reuse_earlier_ones() {
        let mut dict = GlzDictionary::new(3 << 20).unwrap();
        let mut client = GlzWindow::default();
        let a = testimages::photo(300, 200, 9);
        let first = encode(&mut dict, &a);
        let d = client.decode(&first).unwrap();
        assert_eq!((d.id, d.win_head_dist), (0, 0));
        assert_eq!(d.bgrx, no_pad(&a.bgrx));
        // The same picture again costs almost nothing.
        let again = encode(&mut dict, &a);
        let d = client.decode(&again).unwrap();
        assert_eq!(d.id, 1);
        assert_eq!(d.bgrx, no_pad(&a.bgrx));
        assert!(
            again.len() * 50 < first.len(),
            "{} vs {}",
            again.len(),
            first.len()
        );
        // Every test image, twice, interleaved.
        let set = testimages::rgb32_set();
        for img in set.iter().chain(set.iter()) {
            let s = encode(&mut dict, img);
            assert_eq!(
                client.decode(&s).unwrap().bgrx,
                no_pad(&img.bgrx),
                "{}",
                img.name
            );
        }
    }

    #[test]
    fn the_window_stays_within_the_client_size() {
        let limit = 100_000;
        let mut dict = GlzDictionary::new(limit).unwrap();
        let mut client = GlzWindow::default();
        for k in 0..40 {
            let img = testimages::photo(120 + k % 3, 100, k % 4);
            let s = encode(&mut dict, &img);
            let d = client.decode(&s).unwrap();
            assert_eq!(d.bgrx, no_pad(&img.bgrx));
            assert!(dict.window_pixels() <= limit as u64);
            assert_eq!(client.len(), dict.images.len());
        }
        // Too big for the window: refused, handed back, no id used.
        let big = glz_image(&testimages::photo(400, 300, 1));
        let id = dict.next_id();
        let back = dict.encode_batch(0, vec![big.clone()]).pop().unwrap();
        assert_eq!(back, Err(big));
        assert_eq!(dict.next_id(), id);
    }

    #[test]
    fn an_image_whose_size_does_not_match_its_pixels_is_refused() {
        let mut dict = GlzDictionary::new(1 << 20).unwrap();
        let mut bad = glz_image(&testimages::desktop(64, 32, 1));
        bad.height += 1;
        let good = glz_image(&testimages::desktop(64, 32, 2));
        let results = dict.encode_batch(0, vec![bad.clone(), good]);
        assert_eq!(results[0], Err(bad));
        let d = GlzWindow::default()
            .decode(results[1].as_ref().unwrap())
            .unwrap();
        assert_eq!(d.id, 0);
    }

    #[test]
    fn bottom_up_bitmaps_are_taken_top_down() {
        let img = testimages::desktop(40, 30, 3);
        let flipped: Vec<u8> = img
            .bgrx
            .chunks_exact(160)
            .rev()
            .flatten()
            .copied()
            .collect();
        let b = Bitmap::new(BitmapFormat::Rgb32, 40, 30, false, &flipped, None).unwrap();
        assert_eq!(GlzImage::of(&b).unwrap(), glz_image(&img));
    }

    #[test]
    fn batches_encode_in_parallel_and_decode_in_order() {
        let mut dict = GlzDictionary::new(1 << 22).unwrap();
        let mut client = GlzWindow::default();
        let imgs: Vec<_> = (0..6)
            .map(|k| testimages::desktop(256, 128, k % 2))
            .collect();
        let batch: Vec<_> = imgs.iter().map(glz_image).collect();
        for round in 0..2 {
            for (img, s) in imgs.iter().zip(dict.encode_batch(3, batch.clone())) {
                let d = client.decode(&s.unwrap()).unwrap();
                assert_eq!(d.bgrx, no_pad(&img.bgrx), "round {round}");
            }
        }
    }

    #[test]
    fn other_channels_images_are_not_referenced() {
        let mut dict = GlzDictionary::new(1 << 22).unwrap();
        let img = testimages::photo(200, 100, 5);
        let first = dict.encode_batch(1, vec![glz_image(&img)]);
        let first = first.into_iter().next().unwrap().unwrap();
        let other = dict.encode_batch(2, vec![glz_image(&img)]);
        let other = other.into_iter().next().unwrap().unwrap();
        assert!(other.len() * 2 > first.len());
        // Decodable without image 0.
        let mut client = GlzWindow::default();
        client.decode(&first).unwrap();
        assert!(client.decode(&other).is_ok());
    }

    #[test]
    fn client_window_sizes_are_bounded() {
        assert!(GlzDictionary::new(0).is_none());
        assert!(GlzDictionary::new(-5).is_none());
        assert!(GlzDictionary::new(100).is_none());
        assert_eq!(
            GlzDictionary::new(i64::MAX).unwrap().window_limit(),
            MAX_WINDOW_PIXELS
        );
    }

    #[test]
    fn zlib_wrap_inflates_back() {
        let img = testimages::desktop(200, 100, 2);
        let mut dict = GlzDictionary::new(1 << 20).unwrap();
        let glz = encode(&mut dict, &img);
        let (size, z) = zlib_wrap(&glz).unwrap();
        assert_eq!(size as usize, glz.len());
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&z[..]), &mut back).unwrap();
        assert_eq!(back, glz);
    }
}
