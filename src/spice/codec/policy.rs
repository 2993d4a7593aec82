//! Which encoding each image gets, with libspice's options and meanings:
//!
//! * `image-compression`: `auto_glz` (default) / `auto_lz`: per image,
//!   QUIC for photographic content ([`classify`]), else GLZ / LZ; `quic`,
//!   `glz`, `lz`, `lz4` (LZ when the client lacks the LZ4 cap): always
//!   that one; `off`: bitmaps. The client's PREFERRED_COMPRESSION
//!   overrides it for its connection, as in spice-server.
//! * `jpeg-wan-compression`: `always` / `never` / `auto` (only when the
//!   client's link is slow): JPEG replaces QUIC for photographic images in
//!   updates (never in the first full picture).
//! * `zlib-glz-wan-compression`: the same for wrapping GLZ in zlib.
//! * `streaming-video`: `off` / `all` / `filter`: which areas redrawn at
//!   video rates become MJPEG streams (see `spice::video_stream`).
//!
//! An encoding that does not pay (no smaller than the raw bitmap) falls
//! back to the raw bitmap; tiny images (under 54 bytes, as spice-server)
//! and images some encoder refuses go raw too.

use std::sync::{Arc, Mutex};

use super::classify::{self, Content};
use super::glz::{self, GlzDictionary, GlzImage};
use super::image::{Image, ImageData};
use super::{jpeg, lz, lz4, parallel, pixel_bytes, quic, Bitmap, BitmapFormat, CodecError};

/// `SpiceImageCompression` (wire values of PREFERRED_COMPRESSION).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageCompression {
    Off = 1,
    AutoGlz = 2,
    AutoLz = 3,
    Quic = 4,
    Glz = 5,
    Lz = 6,
    Lz4 = 7,
}

impl ImageCompression {
    pub fn from_wire(v: u8) -> Option<ImageCompression> {
        Some(match v {
            1 => ImageCompression::Off,
            2 => ImageCompression::AutoGlz,
            3 => ImageCompression::AutoLz,
            4 => ImageCompression::Quic,
            5 => ImageCompression::Glz,
            6 => ImageCompression::Lz,
            7 => ImageCompression::Lz4,
            _ => return None,
        })
    }

    pub fn parse(s: &str) -> Option<ImageCompression> {
        by_name(&IMAGE_COMPRESSION_NAMES, s)
    }

    /// The `image-compression=` name.
    pub fn name(self) -> &'static str {
        name_of(&IMAGE_COMPRESSION_NAMES, self)
    }
}

/// The values of one option and their `--spice` names.
type Names<T> = [(&'static str, T)];

fn by_name<T: Copy>(names: &Names<T>, s: &str) -> Option<T> {
    names.iter().find(|(name, _)| *name == s).map(|&(_, v)| v)
}

fn name_of<T: PartialEq>(names: &Names<T>, value: T) -> &'static str {
    names
        .iter()
        .find(|(_, v)| *v == value)
        .map_or("?", |(name, _)| name)
}

/// "a, b, c": the names, for error messages.
fn choices<T>(names: &Names<T>) -> String {
    let names: Vec<&str> = names.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

const IMAGE_COMPRESSION_NAMES: [(&str, ImageCompression); 7] = [
    ("auto_glz", ImageCompression::AutoGlz),
    ("auto_lz", ImageCompression::AutoLz),
    ("quic", ImageCompression::Quic),
    ("glz", ImageCompression::Glz),
    ("lz", ImageCompression::Lz),
    ("lz4", ImageCompression::Lz4),
    ("off", ImageCompression::Off),
];

/// `SpiceWanCompression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WanCompression {
    Auto,
    Never,
    Always,
}

impl WanCompression {
    pub fn parse(s: &str) -> Option<WanCompression> {
        by_name(&WAN_NAMES, s)
    }

    pub fn name(self) -> &'static str {
        name_of(&WAN_NAMES, self)
    }

    pub fn enabled(self, low_bandwidth: bool) -> bool {
        match self {
            WanCompression::Always => true,
            WanCompression::Never => false,
            WanCompression::Auto => low_bandwidth,
        }
    }
}

const WAN_NAMES: [(&str, WanCompression); 3] = [
    ("auto", WanCompression::Auto),
    ("never", WanCompression::Never),
    ("always", WanCompression::Always),
];

/// `SpiceVideoStreaming`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamingVideo {
    Off,
    All,
    Filter,
}

impl StreamingVideo {
    pub fn parse(s: &str) -> Option<StreamingVideo> {
        by_name(&STREAMING_NAMES, s)
    }

    pub fn name(self) -> &'static str {
        name_of(&STREAMING_NAMES, self)
    }
}

const STREAMING_NAMES: [(&str, StreamingVideo); 3] = [
    ("off", StreamingVideo::Off),
    ("all", StreamingVideo::All),
    ("filter", StreamingVideo::Filter),
];

/// The compression options of `--spice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionOptions {
    pub image: ImageCompression,
    pub jpeg: WanCompression,
    pub zlib_glz: WanCompression,
    pub streaming: StreamingVideo,
}

impl Default for CompressionOptions {
    fn default() -> Self {
        CompressionOptions {
            image: ImageCompression::AutoGlz,
            jpeg: WanCompression::Auto,
            zlib_glz: WanCompression::Auto,
            streaming: StreamingVideo::Filter,
        }
    }
}

/// The names of the compression options (as `--spice` spells them).
pub const OPTION_NAMES: [&str; 4] = [
    "image-compression",
    "jpeg-wan-compression",
    "zlib-glz-wan-compression",
    "streaming-video",
];

impl CompressionOptions {
    /// Sets one option by its `--spice` name and value (one-line errors).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn pick<T: Copy>(names: &Names<T>, key: &str, value: &str) -> Result<T, String> {
            by_name(names, value)
                .ok_or_else(|| format!("{key}: '{value}' is not one of {}", choices(names)))
        }
        match key {
            "image-compression" => self.image = pick(&IMAGE_COMPRESSION_NAMES, key, value)?,
            "jpeg-wan-compression" => self.jpeg = pick(&WAN_NAMES, key, value)?,
            "zlib-glz-wan-compression" => self.zlib_glz = pick(&WAN_NAMES, key, value)?,
            "streaming-video" => self.streaming = pick(&STREAMING_NAMES, key, value)?,
            _ => return Err(format!("unknown option '{key}'")),
        }
        Ok(())
    }

    /// The options by their `--spice` names.
    pub fn named(&self) -> [(&'static str, &'static str); 4] {
        [
            (OPTION_NAMES[0], self.image.name()),
            (OPTION_NAMES[1], self.jpeg.name()),
            (OPTION_NAMES[2], self.zlib_glz.name()),
            (OPTION_NAMES[3], self.streaming.name()),
        ]
    }
}

/// Images smaller than this many bytes go raw (spice-server's limit).
pub const MIN_SIZE_TO_COMPRESS: usize = 54;
/// QUIC needs at least this many rows and columns (spice-server's limit).
const MIN_QUIC_SIDE: u32 = 3;

/// What one image will be coded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Raw,
    Quic,
    Lz,
    Glz,
    Lz4,
    Jpeg,
}

/// Per-connection facts the choice depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientTraits {
    pub lz4: bool,
    pub low_bandwidth: bool,
}

/// The methods in the order of [`Stats`]' arrays.
pub const STATS_METHODS: [&str; 6] = ["raw", "quic", "lz", "glz", "lz4", "jpeg"];

/// Counters per method (images, raw bytes in, bytes out), in the order of
/// [`STATS_METHODS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub images: [u64; 6],
    pub bytes_in: [u64; 6],
    pub bytes_out: [u64; 6],
}

/// A display channel's image coder: options, what the client can take,
/// and the session's GLZ window (shared by its display channels).
pub struct Compressor {
    pub options: CompressionOptions,
    pub client: ClientTraits,
    pub jpeg_quality: u8,
    glz: Option<Arc<Mutex<GlzDictionary>>>,
    /// This channel's id in the GLZ window.
    owner: u32,
    pub stats: Stats,
}

/// One image to encode: id, size, packed top-down rows of `0x00RRGGBB`
/// pixels (as `Surface::copy_rect` gives them), whether a lossy encoding is
/// acceptable for it.
pub struct Request {
    pub id: u64,
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u32>,
    pub lossy_ok: bool,
}

impl Request {
    fn bitmap(&self) -> Result<Bitmap<'_>, CodecError> {
        Bitmap::rgb32(self.width, self.height, pixel_bytes(&self.pixels))
    }
}

impl Compressor {
    pub fn new(options: CompressionOptions, client: ClientTraits) -> Compressor {
        Compressor {
            options,
            client,
            jpeg_quality: jpeg::DEFAULT_QUALITY,
            glz: None,
            owner: 0,
            stats: Stats::default(),
        }
    }

    /// Uses the session's GLZ window, as display channel `owner`.
    pub fn set_glz(&mut self, glz: Option<Arc<Mutex<GlzDictionary>>>, owner: u32) {
        self.glz = glz;
        self.owner = owner;
    }

    /// The client's PREFERRED_COMPRESSION (unknown values are ignored).
    pub fn set_preferred(&mut self, wire: u8) -> bool {
        match ImageCompression::from_wire(wire) {
            Some(c) => {
                self.options.image = c;
                true
            }
            None => false,
        }
    }

    /// Picks the encoding of one 32-bit image.
    pub fn choose(&self, bitmap: &Bitmap, lossy_ok: bool) -> Method {
        if bitmap.data.len() < MIN_SIZE_TO_COMPRESS {
            return Method::Raw;
        }
        let quic_ok = bitmap.width >= MIN_QUIC_SIDE
            && bitmap.height >= MIN_QUIC_SIDE
            && quic::quic_type(bitmap.format).is_some();
        let jpeg_ok = lossy_ok
            && self.options.jpeg.enabled(self.client.low_bandwidth)
            && matches!(
                bitmap.format,
                BitmapFormat::Rgb32 | BitmapFormat::Rgb24 | BitmapFormat::Rgb16
            );
        let photo = |m: Method| if jpeg_ok { Method::Jpeg } else { m };
        let glz_or_lz = || {
            if self.glz.is_some() && bitmap.format == BitmapFormat::Rgb32 {
                Method::Glz
            } else {
                Method::Lz
            }
        };
        match self.options.image {
            ImageCompression::Off => Method::Raw,
            ImageCompression::Quic => {
                if quic_ok {
                    photo(Method::Quic)
                } else {
                    Method::Raw
                }
            }
            ImageCompression::AutoGlz | ImageCompression::AutoLz => {
                let content = if bitmap.format == BitmapFormat::Rgb32 {
                    classify::classify(bitmap.data, bitmap.width, bitmap.height)
                } else {
                    Content::Synthetic
                };
                if quic_ok && content == Content::Photographic {
                    photo(Method::Quic)
                } else if content == Content::Noise {
                    Method::Lz
                } else if self.options.image == ImageCompression::AutoGlz {
                    glz_or_lz()
                } else {
                    Method::Lz
                }
            }
            ImageCompression::Glz => glz_or_lz(),
            ImageCompression::Lz => Method::Lz,
            ImageCompression::Lz4 => {
                if self.client.lz4 {
                    Method::Lz4
                } else {
                    Method::Lz
                }
            }
        }
    }

    /// Encodes a batch of images (in parallel when large), in order.
    pub fn compress(&mut self, mut requests: Vec<Request>) -> Vec<Image> {
        let methods: Vec<Method> = requests
            .iter()
            .map(|r| match r.bitmap() {
                Ok(b) => self.choose(&b, r.lossy_ok),
                Err(_) => Method::Raw,
            })
            .collect();
        let mut data: Vec<Option<ImageData>> = requests.iter().map(|_| None).collect();
        // GLZ images go through the shared window in one batch, which
        // keeps their pixels; the ones it refuses come back.
        let glz_jobs: Vec<usize> = (0..requests.len())
            .filter(|&k| methods[k] == Method::Glz)
            .collect();
        if let (false, Some(dict)) = (glz_jobs.is_empty(), self.glz.clone()) {
            let images = glz_jobs
                .iter()
                .map(|&k| GlzImage {
                    width: requests[k].width,
                    height: requests[k].height,
                    pixels: std::mem::take(&mut requests[k].pixels),
                })
                .collect();
            let zlib = self.options.zlib_glz.enabled(self.client.low_bandwidth);
            let encoded = dict
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .encode_batch(self.owner, images);
            for (&k, r) in glz_jobs.iter().zip(encoded) {
                match r {
                    // An image that took an id must be sent as GLZ.
                    Ok(glz) => {
                        data[k] = Some(match zlib.then(|| glz::zlib_wrap(&glz)).flatten() {
                            Some((glz_size, data)) => ImageData::ZlibGlzRgb { glz_size, data },
                            None => ImageData::GlzRgb(glz),
                        });
                    }
                    Err(refused) => requests[k].pixels = refused.pixels,
                }
            }
        }
        // Everything else (and GLZ refusals: as LZ) in parallel.
        let others: Vec<usize> = (0..requests.len()).filter(|&k| data[k].is_none()).collect();
        let weight = others
            .iter()
            .map(|&k| u64::from(requests[k].width) * u64::from(requests[k].height))
            .sum();
        let quality = self.jpeg_quality;
        let encoded = parallel::map(&others, weight, |&k| {
            let r = &requests[k];
            let method = if methods[k] == Method::Glz {
                Method::Lz
            } else {
                methods[k]
            };
            encode_one(r, method, quality)
        });
        for (&k, d) in others.iter().zip(encoded) {
            data[k] = Some(d);
        }
        requests
            .into_iter()
            .zip(data)
            .map(|(r, d)| {
                let d = d.unwrap_or(ImageData::Bitmap32 { pixels: Vec::new() });
                let d = match d {
                    // Compression that does not pay: the raw pixels.
                    ImageData::Bitmap32 { pixels } if pixels.is_empty() => {
                        ImageData::Bitmap32 { pixels: r.pixels }
                    }
                    other
                        if !matches!(
                            other,
                            ImageData::GlzRgb(_) | ImageData::ZlibGlzRgb { .. }
                        ) && other.payload_len() >= r.pixels.len() * 4 =>
                    {
                        ImageData::Bitmap32 { pixels: r.pixels }
                    }
                    other => other,
                };
                self.count(&d, u64::from(r.width) * u64::from(r.height) * 4);
                Image {
                    id: r.id,
                    flags: 0,
                    width: r.width,
                    height: r.height,
                    data: d,
                }
            })
            .collect()
    }

    fn count(&mut self, d: &ImageData, raw: u64) {
        let m = match d {
            ImageData::Quic(_) => 1,
            ImageData::LzRgb(_) => 2,
            ImageData::GlzRgb(_) | ImageData::ZlibGlzRgb { .. } => 3,
            ImageData::Lz4(_) => 4,
            ImageData::Jpeg(_) | ImageData::JpegAlpha { .. } => 5,
            _ => 0,
        };
        self.stats.images[m] += 1;
        self.stats.bytes_in[m] += raw;
        self.stats.bytes_out[m] += d.payload_len() as u64;
    }
}

/// Encodes one image with a non-GLZ method; any failure gives an empty
/// bitmap marker (replaced by the raw pixels).
fn encode_one(r: &Request, method: Method, jpeg_quality: u8) -> ImageData {
    let raw = || ImageData::Bitmap32 { pixels: Vec::new() };
    let Ok(b) = r.bitmap() else {
        return raw();
    };
    let result = match method {
        Method::Raw | Method::Glz => return raw(),
        Method::Quic => quic::encode(&b).map(ImageData::Quic),
        Method::Lz => lz::encode(&b).map(ImageData::LzRgb),
        Method::Lz4 => lz4::encode(&b).map(ImageData::Lz4),
        Method::Jpeg => {
            jpeg::encode(&b, jpeg_quality, jpeg::Chroma::Subsampled).map(ImageData::Jpeg)
        }
    };
    result.unwrap_or_else(|e| {
        tracing::debug!("spice: {method:?} failed ({e}); sending the bitmap");
        raw()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spice::codec::{reference, testimages};

    fn req(img: &testimages::TestImage, id: u64, lossy_ok: bool) -> Request {
        Request {
            id,
            width: img.width,
            height: img.height,
            pixels: GlzImage::of(&Bitmap::rgb32(img.width, img.height, &img.bgrx).unwrap())
                .unwrap()
                .pixels,
            lossy_ok,
        }
    }

    #[test]
    fn options_parse_with_libspice_names() {
        assert_eq!(
            ImageCompression::parse("auto_glz"),
            Some(ImageCompression::AutoGlz)
        );
        assert_eq!(ImageCompression::parse("lz4"), Some(ImageCompression::Lz4));
        assert_eq!(ImageCompression::parse("zip"), None);
        assert_eq!(ImageCompression::from_wire(6), Some(ImageCompression::Lz));
        assert_eq!(ImageCompression::from_wire(0), None);
        assert_eq!(ImageCompression::from_wire(8), None);
        assert_eq!(
            WanCompression::parse("always"),
            Some(WanCompression::Always)
        );
        assert_eq!(
            StreamingVideo::parse("filter"),
            Some(StreamingVideo::Filter)
        );
        assert!(WanCompression::Auto.enabled(true) && !WanCompression::Auto.enabled(false));
    }

    #[test]
    fn choices_follow_the_mode_and_the_content() {
        let photo = testimages::photo(64, 64, 1);
        let desk = testimages::desktop(64, 64, 1);
        let pb = Bitmap::rgb32(64, 64, &photo.bgrx).unwrap();
        let db = Bitmap::rgb32(64, 64, &desk.bgrx).unwrap();
        let mut c = Compressor::new(CompressionOptions::default(), ClientTraits::default());
        assert_eq!(c.choose(&pb, true), Method::Quic);
        assert_eq!(c.choose(&db, true), Method::Lz, "no GLZ window yet");
        c.set_glz(
            GlzDictionary::new(1 << 20).map(|d| Arc::new(Mutex::new(d))),
            0,
        );
        assert_eq!(c.choose(&db, true), Method::Glz);
        c.options.jpeg = WanCompression::Always;
        assert_eq!(c.choose(&pb, true), Method::Jpeg);
        assert_eq!(c.choose(&pb, false), Method::Quic);
        c.options.image = ImageCompression::Lz4;
        assert_eq!(c.choose(&pb, true), Method::Lz);
        c.client.lz4 = true;
        assert_eq!(c.choose(&pb, true), Method::Lz4);
        assert!(c.set_preferred(1));
        assert_eq!(c.choose(&pb, true), Method::Raw);
        assert!(!c.set_preferred(99));
        let tiny = Bitmap::rgb32(3, 3, &photo.bgrx[..36]).unwrap();
        c.options.image = ImageCompression::Quic;
        assert_eq!(c.choose(&tiny, true), Method::Raw);
    }

    #[test]
    fn batches_decode_exactly_and_noise_goes_raw() {
        let mut c = Compressor::new(CompressionOptions::default(), ClientTraits::default());
        c.set_glz(
            GlzDictionary::new(1 << 22).map(|d| Arc::new(Mutex::new(d))),
            0,
        );
        let imgs = [
            testimages::photo(300, 200, 1),
            testimages::desktop(300, 200, 2),
            testimages::noise(100, 50, 3),
            testimages::desktop(300, 200, 2),
        ];
        let out = c.compress(
            imgs.iter()
                .enumerate()
                .map(|(k, i)| req(i, k as u64, false))
                .collect(),
        );
        let mut window = reference::GlzWindow::default();
        let kinds: Vec<u8> = out.iter().map(|i| i.data.image_type()).collect();
        // Noise: LZ without the window (it only drops the X bytes).
        assert_eq!(kinds, vec![1, 102, 101, 102]);
        for (img, o) in imgs.iter().zip(&out) {
            let decoded = match &o.data {
                ImageData::Quic(d) => reference::quic_decode(d).unwrap(),
                ImageData::GlzRgb(d) => window.decode(d).unwrap().bgrx,
                ImageData::LzRgb(d) => reference::lz_decode(d, None).unwrap().data,
                ImageData::Bitmap32 { pixels } => pixel_bytes(pixels).to_vec(),
                other => panic!("{:?}", other.image_type()),
            };
            let want: Vec<u8> = img
                .bgrx
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2], 0])
                .collect();
            let got: Vec<u8> = decoded
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2], 0])
                .collect();
            assert_eq!(got, want, "{}", img.name);
        }
        // Images of one batch cannot refer to each other; in a later
        // batch the repeated desktop costs almost nothing.
        let again = c.compress(vec![req(&imgs[1], 9, false)]);
        let d = match &again[0].data {
            ImageData::GlzRgb(d) => d,
            other => panic!("{:?}", other.image_type()),
        };
        assert_eq!(window.decode(d).unwrap().bgrx.len(), imgs[1].bgrx.len());
        assert!(d.len() * 20 < out[1].data.payload_len(), "{}", d.len());
        assert_eq!(c.stats.images, [0, 1, 1, 3, 0, 0]);
    }
}
