//! Linear scan-out: a packed-pixel picture in device memory (the VBE linear
//! framebuffer, or chain-4 256-colour VGA modes in the legacy window), the
//! pages of it that the guest dirtied turned into rectangles, and those
//! rectangles converted into a 32-bit BGRX display surface.
//!
//! Every read is checked against the memory it comes from: a layout that
//! would reach past the end is refused when it is built ([`LinearLayout::checked`]).

use vm_memory::VolatileMemory;

use crate::display::{Rect, Surface, BYTES_PER_PIXEL, MAX_DIMENSION};
use crate::memory::DeviceMemory;

/// Granularity of KVM's dirty log on x86.
pub const PAGE_SIZE: usize = 4096;
/// Largest picture scanned out (pixels): every mode a 16 MiB VBE
/// framebuffer allows (16000×1048 at 8 bpp) fits.
pub const MAX_PIXELS: u64 = 1 << 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// One byte per pixel through the DAC palette.
    Indexed8,
    /// x1r5g5b5 (VBE 15 bpp).
    Xrgb1555,
    /// r5g6b5.
    Rgb565,
    /// B, G, R bytes.
    Bgr888,
    /// B, G, R, X bytes (XRGB8888 little-endian), the surfaces' own format.
    Bgrx8888,
}

impl PixelFormat {
    /// The format of a VBE depth; `None` for 4 bpp (planar), which is not scanned out.
    pub fn from_vbe_bpp(bpp: u32) -> Option<Self> {
        match bpp {
            8 => Some(PixelFormat::Indexed8),
            15 => Some(PixelFormat::Xrgb1555),
            16 => Some(PixelFormat::Rgb565),
            24 => Some(PixelFormat::Bgr888),
            32 => Some(PixelFormat::Bgrx8888),
            _ => None,
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            PixelFormat::Indexed8 => 1,
            PixelFormat::Xrgb1555 | PixelFormat::Rgb565 => 2,
            PixelFormat::Bgr888 => 3,
            PixelFormat::Bgrx8888 => 4,
        }
    }
}

/// Where a linear picture is in its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearLayout {
    pub width: u32,
    pub height: u32,
    /// Byte offset of the top-left pixel.
    pub start: usize,
    /// Bytes from one line to the next.
    pub pitch: usize,
    pub format: PixelFormat,
}

impl LinearLayout {
    /// The layout if every pixel lies inside `memory_len` bytes and the
    /// picture is of a size the display accepts.
    pub fn checked(self, memory_len: usize) -> Option<Self> {
        if self.width == 0
            || self.height == 0
            || self.width > MAX_DIMENSION
            || self.height > MAX_DIMENSION
            || u64::from(self.width) * u64::from(self.height) > MAX_PIXELS
            || self.pitch < self.row_bytes()
        {
            return None;
        }
        let end = (self.height as usize - 1)
            .checked_mul(self.pitch)?
            .checked_add(self.start)?
            .checked_add(self.row_bytes())?;
        (end <= memory_len).then_some(self)
    }

    /// Bytes of one visible line.
    pub fn row_bytes(&self) -> usize {
        self.width as usize * self.format.bytes()
    }

    pub fn bounds(&self) -> Rect {
        Rect::new(0, 0, self.width as i32, self.height as i32)
    }

    /// The byte range `[first, end)` of the memory as a rectangle of the
    /// picture (empty when none of it is visible).
    fn bytes_to_rect(&self, first: usize, end: usize) -> Rect {
        let visible_end = self.start + (self.height as usize - 1) * self.pitch + self.row_bytes();
        let first = first.max(self.start);
        let end = end.min(visible_end);
        if first >= end {
            return Rect::default();
        }
        let (rel_first, rel_last) = (first - self.start, end - 1 - self.start);
        let (top, bottom) = (rel_first / self.pitch, rel_last / self.pitch);
        let bytes = self.format.bytes();
        let (left, right) = if top == bottom {
            let left = (rel_first % self.pitch) / bytes;
            let right = (rel_last % self.pitch) / bytes + 1;
            (left, right.min(self.width as usize))
        } else {
            (0, self.width as usize)
        };
        if left >= right {
            return Rect::default();
        }
        Rect::new(left as i32, top as i32, right as i32, bottom as i32 + 1)
    }

    /// Rectangles covering the visible pixels in the pages set in `bitmap`
    /// (bit `i` = page `i` of the memory, 4 KiB pages); adjacent ones merged.
    pub fn damage_from_pages(&self, bitmap: &[u64]) -> Vec<Rect> {
        let mut rects: Vec<Rect> = Vec::new();
        let mut add = |rect: Rect| {
            if rect.is_empty() {
                return;
            }
            match rects.last_mut() {
                Some(prev) if prev.bottom >= rect.top && prev.top <= rect.top => {
                    *prev = prev.union(&rect)
                }
                _ => rects.push(rect),
            }
        };
        let mut run: Option<(usize, usize)> = None;
        for (word_index, &word) in bitmap.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let page = word_index * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                run = match run {
                    Some((first, end)) if end == page => Some((first, page + 1)),
                    Some((first, end)) => {
                        add(self.bytes_to_rect(first * PAGE_SIZE, end * PAGE_SIZE));
                        Some((page, page + 1))
                    }
                    None => Some((page, page + 1)),
                };
            }
        }
        if let Some((first, end)) = run {
            add(self.bytes_to_rect(first * PAGE_SIZE, end * PAGE_SIZE));
        }
        rects
    }

    /// Number of pages set in `bitmap` that hold visible pixels.
    pub fn visible_pages(&self, bitmap: &[u64]) -> u32 {
        let first = self.start / PAGE_SIZE;
        let last = (self.start + (self.height as usize - 1) * self.pitch + self.row_bytes() - 1)
            / PAGE_SIZE;
        (first..=last)
            .filter(|page| {
                bitmap
                    .get(page / 64)
                    .is_some_and(|word| word & (1 << (page % 64)) != 0)
            })
            .count() as u32
    }
}

/// Converts `rect` of the picture in `memory` into the same place of
/// `surface` (which has the layout's size). `palette` is used for
/// [`PixelFormat::Indexed8`]; `scratch` is reused between calls.
pub fn copy_rect(
    surface: &mut Surface,
    memory: &DeviceMemory,
    layout: &LinearLayout,
    rect: Rect,
    palette: &[u32; 256],
    scratch: &mut Vec<u8>,
) {
    let rect = rect.intersect(&layout.bounds());
    if rect.is_empty() || surface.width != layout.width || surface.height != layout.height {
        return;
    }
    let bytes = layout.format.bytes();
    let (left, right) = (rect.left as usize, rect.right as usize);
    let len = (right - left) * bytes;
    scratch.resize(len, 0);
    for y in rect.top as usize..rect.bottom as usize {
        let offset = layout.start + y * layout.pitch + left * bytes;
        let Ok(source) = memory.get_slice(offset, len) else {
            // `checked` layouts never get here; draw nothing rather than panic.
            return;
        };
        let out = &mut surface.row_mut(y as u32)[left * BYTES_PER_PIXEL..right * BYTES_PER_PIXEL];
        if layout.format == PixelFormat::Bgrx8888 {
            source.copy_to(out);
            continue;
        }
        source.copy_to(&mut scratch[..]);
        convert_row(layout.format, &scratch[..], out, palette);
    }
}

fn convert_row(format: PixelFormat, input: &[u8], out: &mut [u8], palette: &[u32; 256]) {
    let put = |px: &mut [u8], rgb: u32| px.copy_from_slice(&(rgb & 0xff_ffff).to_le_bytes());
    let expand5 = |v: u16| u32::from(((v & 0x1f) << 3) | ((v & 0x1f) >> 2));
    let expand6 = |v: u16| u32::from(((v & 0x3f) << 2) | ((v & 0x3f) >> 4));
    let pixels = out.chunks_exact_mut(BYTES_PER_PIXEL);
    match format {
        PixelFormat::Indexed8 => {
            for (px, &index) in pixels.zip(input) {
                put(px, palette[usize::from(index)]);
            }
        }
        PixelFormat::Xrgb1555 => {
            for (px, v) in pixels.zip(input.chunks_exact(2)) {
                let v = u16::from_le_bytes([v[0], v[1]]);
                put(
                    px,
                    expand5(v >> 10) << 16 | expand5(v >> 5) << 8 | expand5(v),
                );
            }
        }
        PixelFormat::Rgb565 => {
            for (px, v) in pixels.zip(input.chunks_exact(2)) {
                let v = u16::from_le_bytes([v[0], v[1]]);
                put(
                    px,
                    expand5(v >> 11) << 16 | expand6(v >> 5) << 8 | expand5(v),
                );
            }
        }
        PixelFormat::Bgr888 => {
            for (px, v) in pixels.zip(input.chunks_exact(3)) {
                px[..3].copy_from_slice(v);
                px[3] = 0;
            }
        }
        PixelFormat::Bgrx8888 => out.copy_from_slice(input),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    fn layout(width: u32, height: u32, pitch: usize, format: PixelFormat) -> LinearLayout {
        LinearLayout {
            width,
            height,
            start: 0,
            pitch,
            format,
        }
    }

    fn bitmap(pages: &[usize]) -> Vec<u64> {
        let mut map = vec![0u64; 64];
        for &p in pages {
            map[p / 64] |= 1 << (p % 64);
        }
        map
    }

    #[test]
    fn checked_refuses_layouts_past_the_end() {
        let l = layout(1024, 768, 4096, PixelFormat::Bgrx8888);
        assert!(l.checked(768 * 4096).is_some());
        assert!(l.checked(768 * 4096 - 1).is_none());
        assert!(LinearLayout { start: 1, ..l }.checked(768 * 4096).is_none());
        assert!(LinearLayout {
            start: usize::MAX - 10,
            ..l
        }
        .checked(usize::MAX)
        .is_none());
        assert!(
            LinearLayout { pitch: 100, ..l }.checked(1 << 30).is_none(),
            "pitch < row"
        );
        assert!(layout(0, 10, 0, PixelFormat::Indexed8)
            .checked(1 << 20)
            .is_none());
        assert!(layout(16384, 16384, 16384, PixelFormat::Indexed8)
            .checked(usize::MAX)
            .is_none());
        // The last row only needs its visible bytes, not a whole pitch.
        let narrow = layout(8, 2, 100, PixelFormat::Indexed8);
        assert!(narrow.checked(108).is_some());
    }

    #[test]
    fn one_page_per_row_at_1024x32() {
        let l = layout(1024, 768, 4096, PixelFormat::Bgrx8888);
        assert_eq!(
            l.damage_from_pages(&bitmap(&[5])),
            vec![Rect::new(0, 5, 1024, 6)]
        );
        assert_eq!(
            l.damage_from_pages(&bitmap(&[5, 6, 7, 100])),
            vec![Rect::new(0, 5, 1024, 8), Rect::new(0, 100, 1024, 101)]
        );
        assert_eq!(l.visible_pages(&bitmap(&[5, 6, 7, 100, 800])), 4);
        assert!(
            l.damage_from_pages(&bitmap(&[800])).is_empty(),
            "below the picture"
        );
    }

    #[test]
    fn page_inside_a_row_damages_only_its_columns() {
        // 4000 px × 4 bytes = 16000 bytes per row: page 1 is columns 1024..2048 of row 0.
        let l = layout(4000, 10, 16000, PixelFormat::Bgrx8888);
        assert_eq!(
            l.damage_from_pages(&bitmap(&[1])),
            vec![Rect::new(1024, 0, 2048, 1)]
        );
        // Page 3 straddles rows 0 and 1: both rows, full width.
        assert_eq!(
            l.damage_from_pages(&bitmap(&[3])),
            vec![Rect::new(0, 0, 4000, 2)]
        );
        // A page in the invisible tail of a virtual line adds nothing.
        let wide = LinearLayout {
            width: 640,
            pitch: 16384,
            ..l
        };
        assert!(wide.damage_from_pages(&bitmap(&[2])).is_empty());
    }

    #[test]
    fn converts_every_format() {
        let memory = crate::memory::allocate(PAGE_SIZE).unwrap();
        let mut palette = [0u32; 256];
        palette[7] = 0x123456;
        let cases: [(PixelFormat, &[u8]); 5] = [
            (PixelFormat::Indexed8, &[7]),
            (PixelFormat::Xrgb1555, &0x7c00u16.to_le_bytes()), // red
            (PixelFormat::Rgb565, &0x07e0u16.to_le_bytes()),   // green
            (PixelFormat::Bgr888, &[0x33, 0x22, 0x11]),
            (PixelFormat::Bgrx8888, &[0x66, 0x55, 0x44, 0x00]),
        ];
        let expected = [0x123456, 0xff0000, 0x00ff00, 0x112233, 0x445566];
        for ((format, bytes), want) in cases.into_iter().zip(expected) {
            memory.as_volatile_slice().write_slice(bytes, 0).unwrap();
            let l = layout(1, 1, 4, format);
            let mut surface = Surface::new(1, 1).unwrap();
            copy_rect(
                &mut surface,
                &memory,
                &l,
                l.bounds(),
                &palette,
                &mut Vec::new(),
            );
            assert_eq!(surface.pixel(0, 0) & 0xffffff, want, "{format:?}");
        }
    }

    #[test]
    fn copies_only_the_rectangle() {
        let memory = crate::memory::allocate(16 * PAGE_SIZE).unwrap();
        let l = layout(16, 16, 64, PixelFormat::Bgrx8888);
        memory
            .as_volatile_slice()
            .write_slice(&[0xff; 16 * 64], 0)
            .unwrap();
        let mut surface = Surface::new(16, 16).unwrap();
        let palette = [0; 256];
        copy_rect(
            &mut surface,
            &memory,
            &l,
            Rect::new(2, 3, 4, 5),
            &palette,
            &mut Vec::new(),
        );
        assert_eq!(surface.pixel(2, 3), 0xffffffff);
        assert_eq!(surface.pixel(3, 4), 0xffffffff);
        assert_eq!(surface.pixel(4, 4), 0);
        assert_eq!(surface.pixel(2, 5), 0);
        // Rectangles outside are clipped, wrong-sized surfaces ignored.
        copy_rect(
            &mut surface,
            &memory,
            &l,
            Rect::new(-5, -5, 100, 100),
            &palette,
            &mut Vec::new(),
        );
        assert_eq!(surface.pixel(15, 15), 0xffffffff);
        let mut other = Surface::new(3, 3).unwrap();
        copy_rect(
            &mut other,
            &memory,
            &l,
            l.bounds(),
            &palette,
            &mut Vec::new(),
        );
        assert_eq!(other.pixel(0, 0), 0);
    }
}
