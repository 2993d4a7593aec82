//! Renderer tests: each operation on small canvases with known pixels.

use super::*;

struct Buf {
    w: i32,
    h: i32,
    bytes: Vec<u8>,
}

impl Buf {
    fn new(w: i32, h: i32, fill: Pixel) -> Buf {
        let mut bytes = Vec::new();
        for _ in 0..w * h {
            bytes.extend_from_slice(&fill.to_le_bytes());
        }
        Buf { w, h, bytes }
    }
    fn canvas(&mut self) -> Canvas<'_> {
        Canvas::new(
            &mut self.bytes,
            self.w as usize * 4,
            Rect::new(0, 0, self.w, self.h),
            false,
        )
        .unwrap()
    }
    fn px(&self, x: i32, y: i32) -> Pixel {
        let at = ((y * self.w + x) * 4) as usize;
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().unwrap())
    }
    fn source(&mut self) -> Snapshot {
        let (w, h) = (self.w, self.h);
        Snapshot::of_canvas(&self.canvas(), Rect::new(0, 0, w, h))
    }
}

/// A w x h source where pixel (x, y) = 0x00YYXX + base.
fn gradient(w: i32, h: i32, base: Pixel) -> Snapshot {
    let mut b = Buf::new(w, h, 0);
    {
        let mut c = b.canvas();
        for y in 0..h {
            for x in 0..w {
                c.set(x, y, base + ((y as u32) << 8) + x as u32);
            }
        }
    }
    b.source()
}

struct Bits {
    w: u32,
    h: u32,
    bits: Vec<u8>,
}

impl BitSource for Bits {
    fn width(&self) -> u32 {
        self.w
    }
    fn height(&self) -> u32 {
        self.h
    }
    fn read_bits(&self, x: u32, y: u32, out: &mut [u8]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.bits[(y * self.w + x) as usize + i];
        }
    }
}

fn rect_region(l: i32, t: i32, r: i32, b: i32) -> Region {
    Region::from_rect(Rect::new(l, t, r, b))
}

#[test]
fn fill_solid_respects_clip_and_applies_xor_once() {
    let mut b = Buf::new(8, 8, 0x0000_00ff);
    let clip = Region::from_rects(
        &[Rect::new(0, 0, 4, 4), Rect::new(2, 2, 6, 6)],
        Rect::new(1, 1, 8, 8),
    );
    fill(
        &mut b.canvas(),
        &clip,
        &Brush::Solid(0x0000_ff00),
        Ropd(Ropd::OP_XOR),
        None,
    );
    assert_eq!(b.px(0, 0), 0xff, "outside the bbox");
    assert_eq!(b.px(1, 1), 0xffff, "xor");
    assert_eq!(b.px(3, 3), 0xffff, "overlap is xored once");
    assert_eq!(b.px(5, 5), 0xffff);
    assert_eq!(b.px(6, 6), 0xff);
    assert_eq!(b.px(5, 1), 0xff);
    fill(
        &mut b.canvas(),
        &rect_region(0, 0, 8, 8),
        &Brush::Solid(0x123456),
        Ropd::PUT,
        None,
    );
    assert!((0..8).all(|i| b.px(i, 7 - i) == 0x123456));
}

#[test]
fn pattern_brush_tiles_from_its_origin() {
    let pat = gradient(2, 2, 0x10_0000);
    let mut b = Buf::new(4, 4, 0);
    let brush = Brush::Pattern {
        source: &pat,
        origin: (1, 0),
    };
    fill(
        &mut b.canvas(),
        &rect_region(0, 0, 4, 4),
        &brush,
        Ropd::PUT,
        None,
    );
    // (1,0) shows pattern (0,0); (0,0) shows pattern (1,0).
    let px = |x, y| b.px(x, y) & 0xff_ffff;
    assert_eq!(px(1, 0), 0x10_0000);
    assert_eq!(px(0, 0), 0x10_0001);
    assert_eq!(px(2, 1), 0x10_0101);
    assert_eq!(px(3, 3), 0x10_0100);
}

#[test]
fn copy_identity_offset_and_partial_source() {
    let src = gradient(4, 4, 0);
    let mut b = Buf::new(6, 6, 0xdead);
    let scaled = Scaled {
        source: &src,
        src_area: Rect::new(1, 1, 4, 4),
        dest: Rect::new(2, 3, 5, 6),
        filter: Filter::Nearest,
    };
    blit(
        &mut b.canvas(),
        &rect_region(2, 3, 5, 6),
        &scaled,
        Ropd::PUT,
        None,
    );
    assert_eq!(b.px(2, 3) & 0xffffff, 0x0101);
    assert_eq!(b.px(4, 5) & 0xffffff, 0x0303);
    assert_eq!(b.px(1, 3), 0xdead);
    // A source area reaching past the image: only the part that exists is drawn.
    let mut b = Buf::new(6, 6, 0xdead);
    let scaled = Scaled {
        source: &src,
        src_area: Rect::new(2, 2, 6, 6),
        dest: Rect::new(0, 0, 4, 4),
        filter: Filter::Nearest,
    };
    blit(
        &mut b.canvas(),
        &rect_region(0, 0, 4, 4),
        &scaled,
        Ropd::PUT,
        None,
    );
    assert_eq!(b.px(1, 1) & 0xffffff, 0x0303);
    assert_eq!(b.px(2, 2), 0xdead);
    assert_eq!(b.px(0, 3), 0xdead);
}

#[test]
fn copy_scaled_nearest_and_bilinear() {
    let src = gradient(2, 2, 0);
    let mut b = Buf::new(4, 4, 0);
    let scaled = Scaled {
        source: &src,
        src_area: Rect::new(0, 0, 2, 2),
        dest: Rect::new(0, 0, 4, 4),
        filter: Filter::Nearest,
    };
    blit(
        &mut b.canvas(),
        &rect_region(0, 0, 4, 4),
        &scaled,
        Ropd::PUT,
        None,
    );
    assert_eq!(b.px(0, 0) & 0xffffff, 0);
    assert_eq!(b.px(1, 1) & 0xffffff, 0);
    assert_eq!(b.px(2, 0) & 0xffffff, 1);
    assert_eq!(b.px(3, 3) & 0xffffff, 0x0101);

    let mut wb = Buf::new(2, 1, 0);
    wb.canvas().set(1, 0, 0x00ff_ffff);
    let src = wb.source();
    let mut b = Buf::new(4, 1, 0);
    let scaled = Scaled {
        source: &src,
        src_area: Rect::new(0, 0, 2, 1),
        dest: Rect::new(0, 0, 4, 1),
        filter: Filter::Bilinear,
    };
    blit(
        &mut b.canvas(),
        &rect_region(0, 0, 4, 1),
        &scaled,
        Ropd::PUT,
        None,
    );
    let red = |p: Pixel| (p >> 16) & 0xff;
    assert_eq!(red(b.px(0, 0)), 0, "left edge clamps");
    assert!((0x30..0x50).contains(&red(b.px(1, 0))), "{:#x}", b.px(1, 0));
    assert!((0xb0..0xd0).contains(&red(b.px(2, 0))), "{:#x}", b.px(2, 0));
    assert_eq!(red(b.px(3, 0)), 0xff);
}

#[test]
fn blend_opaque_rop3_transparent() {
    let src = gradient(2, 1, 0x00f0_0000);
    let dest = Rect::new(0, 0, 2, 1);
    let scaled = Scaled {
        source: &src,
        src_area: dest,
        dest,
        filter: Filter::Nearest,
    };
    let region = Region::from_rect(dest);

    let mut b = Buf::new(2, 1, 0x000f_0000);
    blit(&mut b.canvas(), &region, &scaled, Ropd(Ropd::OP_OR), None);
    assert_eq!(b.px(1, 0) & 0xffffff, 0xff_0001);

    let mut b = Buf::new(2, 1, 0x1234);
    opaque(
        &mut b.canvas(),
        &region,
        &scaled,
        &Brush::Solid(0x0000_00ff),
        Ropd(Ropd::OP_XOR),
        None,
    );
    assert_eq!(
        b.px(0, 0) & 0xffffff,
        0xf0_00ff,
        "brush xor source, destination ignored"
    );
    let mut b = Buf::new(2, 1, 0x1234);
    opaque(
        &mut b.canvas(),
        &region,
        &scaled,
        &Brush::None,
        Ropd(Ropd::OP_XOR),
        None,
    );
    assert_eq!(b.px(1, 0) & 0xffffff, 0xf0_0001);

    let mut b = Buf::new(2, 1, 0x0000_0f0f);
    rop3_blit(
        &mut b.canvas(),
        &region,
        &scaled,
        &Brush::Solid(0x00ff_ff00),
        0xb8,
        None,
    );
    // S ? D : P per bit.
    let (p, s, d) = (0x00ff_ff00u32, 0xff00_0000 | 0x00f0_0001, 0x0000_0f0f);
    assert_eq!(b.px(1, 0), (p & !s) | (d & s));

    let mut b = Buf::new(2, 1, 0x77);
    transparent(&mut b.canvas(), &region, &scaled, 0xaaf0_0000);
    assert_eq!(b.px(0, 0), 0x77, "key colour (low 24 bits) is skipped");
    assert_eq!(b.px(1, 0) & 0xffffff, 0xf0_0001);
}

#[test]
fn alpha_blend_half() {
    let white = Buf::new(1, 1, 0x00ff_ffff).source();
    let dest = Rect::new(0, 0, 1, 1);
    let scaled = Scaled {
        source: &white,
        src_area: dest,
        dest,
        filter: Filter::Nearest,
    };
    let mut b = Buf::new(1, 1, 0);
    alpha_blend(
        &mut b.canvas(),
        &Region::from_rect(dest),
        &scaled,
        128,
        false,
    );
    assert_eq!(b.px(0, 0) & 0xff, 128);
    // A premultiplied source with alpha 0 leaves the destination alone.
    let mut clear = Buf::new(1, 1, 0);
    let mut c = clear.canvas();
    c.alpha = true;
    let clear_src = Snapshot::of_canvas(&c, dest);
    let scaled = Scaled {
        source: &clear_src,
        src_area: dest,
        dest,
        filter: Filter::Nearest,
    };
    let mut b = Buf::new(1, 1, 0x0040_4040);
    alpha_blend(
        &mut b.canvas(),
        &Region::from_rect(dest),
        &scaled,
        255,
        true,
    );
    assert_eq!(b.px(0, 0) & 0xffffff, 0x40_4040);
}

#[test]
fn copy_bits_is_overlap_safe_in_every_direction() {
    for (dx, dy) in [(0, 1), (0, -1), (1, 0), (-1, 0), (2, 2), (-2, -2), (2, -1)] {
        let mut b = Buf::new(8, 8, 0);
        {
            let mut c = b.canvas();
            for y in 0..8 {
                for x in 0..8 {
                    c.set(x, y, (y * 8 + x) as u32);
                }
            }
        }
        let area = Rect::new(2, 2, 6, 6);
        copy_bits(&mut b.canvas(), &Region::from_rect(area), dx, dy);
        for y in 2..6 {
            for x in 2..6 {
                assert_eq!(
                    b.px(x, y),
                    ((y + dy) * 8 + x + dx) as u32,
                    "({dx},{dy}) at ({x},{y})"
                );
            }
        }
        assert_eq!(b.px(1, 1), 9, "outside untouched");
    }
    // A source outside the canvas is skipped.
    let mut b = Buf::new(4, 4, 5);
    copy_bits(&mut b.canvas(), &rect_region(0, 0, 4, 4), 3, 0);
    assert_eq!(b.px(0, 0), 5);
    for (dx, dy) in [(i32::MIN, 0), (0, i32::MIN), (i32::MAX, i32::MAX)] {
        copy_bits(&mut b.canvas(), &rect_region(0, 0, 4, 4), dx, dy);
    }
    assert_eq!(b.px(0, 0), 5);
}

#[test]
fn blackness_whiteness_invers_with_mask() {
    let mask = Bits {
        w: 2,
        h: 1,
        bits: vec![1, 0],
    };
    let mut b = Buf::new(4, 1, 0x0012_3456);
    let m = Mask {
        bits: &mask,
        invert: false,
        origin: (0, 0),
        anchor: (1, 0),
    };
    special(
        &mut b.canvas(),
        &rect_region(0, 0, 4, 1),
        Ropd::OP_BLACKNESS,
        Some(&m),
    );
    assert_eq!(b.px(1, 0), 0, "mask bit 1");
    assert_eq!(b.px(2, 0), 0x12_3456, "mask bit 0");
    assert_eq!(b.px(0, 0), 0x12_3456, "outside the mask");
    let m = Mask {
        bits: &mask,
        invert: true,
        origin: (0, 0),
        anchor: (1, 0),
    };
    special(
        &mut b.canvas(),
        &rect_region(0, 0, 4, 1),
        Ropd::OP_WHITENESS,
        Some(&m),
    );
    assert_eq!(b.px(1, 0), 0);
    assert_eq!(b.px(2, 0), u32::MAX);
    assert_eq!(
        b.px(0, 0),
        u32::MAX,
        "inverted: outside counts as 0, so drawn"
    );
    special(
        &mut b.canvas(),
        &rect_region(0, 0, 1, 1),
        Ropd::OP_INVERS,
        None,
    );
    assert_eq!(b.px(0, 0), 0);
}

#[test]
fn stroke_lines_dashes_and_pen() {
    let mut b = Buf::new(10, 5, 0);
    let line = Line {
        points: vec![
            Line::fixed_28_4(0, 2 << 4),
            Line::fixed_28_4(9 << 4, 2 << 4),
        ],
    };
    let style = LineStyle {
        width: 1,
        dashes: vec![],
        start_with_gap: false,
    };
    stroke(
        &mut b.canvas(),
        &rect_region(0, 0, 10, 5),
        std::slice::from_ref(&line),
        &style,
        &Brush::Solid(0xff),
        Ropd::PUT,
    );
    assert!((0..10).all(|x| b.px(x, 2) == 0xff));
    assert_eq!(b.px(0, 1), 0);

    let mut b = Buf::new(10, 5, 0);
    let dashed = LineStyle {
        width: 1,
        dashes: vec![2, 2],
        start_with_gap: false,
    };
    stroke(
        &mut b.canvas(),
        &rect_region(0, 0, 10, 5),
        std::slice::from_ref(&line),
        &dashed,
        &Brush::Solid(0xff),
        Ropd::PUT,
    );
    let row: Vec<bool> = (0..10).map(|x| b.px(x, 2) == 0xff).collect();
    assert_eq!(
        row,
        [true, true, false, false, true, true, false, false, true, true]
    );

    let mut b = Buf::new(10, 5, 0);
    let wide = LineStyle {
        width: 3,
        dashes: vec![],
        start_with_gap: false,
    };
    stroke(
        &mut b.canvas(),
        &rect_region(0, 0, 10, 5),
        &[line],
        &wide,
        &Brush::Solid(0xff),
        Ropd::PUT,
    );
    assert!((1..4).all(|y| b.px(5, y) == 0xff));
    assert_eq!(b.px(5, 0), 0);

    // An absurdly long line is clipped, not walked.
    let mut b = Buf::new(4, 4, 0);
    let far = Line {
        points: vec![(-(1 << 50), 1 << 16), (1 << 50, 1 << 16)],
    };
    stroke(
        &mut b.canvas(),
        &rect_region(0, 0, 4, 4),
        &[far],
        &style,
        &Brush::Solid(1),
        Ropd::PUT,
    );
    assert!((0..4).all(|x| b.px(x, 1) == 1));
}

#[test]
fn bezier_is_flattened_through_its_end_points() {
    let mut line = Line {
        points: vec![Line::fixed_28_4(0, 0)],
    };
    line.curve_to(
        Line::fixed_28_4(0, 160),
        Line::fixed_28_4(160, 160),
        Line::fixed_28_4(160, 0),
    );
    assert!(line.points.len() > 2);
    assert_eq!(*line.points.last().unwrap(), Line::fixed_28_4(160, 0));
}

#[test]
fn text_a1_and_a8() {
    let mut b = Buf::new(8, 2, 0);
    let glyph = GlyphBits {
        x: 1,
        y: 0,
        width: 3,
        height: 2,
        data: &[0b1010_0000, 0b0100_0000],
    };
    text(
        &mut b.canvas(),
        &rect_region(0, 0, 8, 2),
        &[glyph],
        GlyphDepth::A1,
        &Brush::Solid(0xffffff),
        Ropd::PUT,
    );
    let row0: Vec<bool> = (0..5).map(|x| b.px(x, 0) != 0).collect();
    assert_eq!(row0, [false, true, false, true, false]);
    assert!(b.px(2, 1) != 0 && b.px(1, 1) == 0);

    let mut b = Buf::new(2, 1, 0);
    let glyph = GlyphBits {
        x: 0,
        y: 0,
        width: 2,
        height: 1,
        data: &[255, 128],
    };
    text(
        &mut b.canvas(),
        &rect_region(0, 0, 2, 1),
        &[glyph],
        GlyphDepth::A8,
        &Brush::Solid(0xff),
        Ropd::PUT,
    );
    assert_eq!(b.px(0, 0) & 0xff, 0xff);
    assert_eq!(b.px(1, 0) & 0xff, 128);
    // A glyph pointing far outside is clipped.
    let glyph = GlyphBits {
        x: i32::MAX - 1,
        y: 0,
        width: 100,
        height: 1,
        data: &[0xff; 13],
    };
    text(
        &mut b.canvas(),
        &rect_region(0, 0, 2, 1),
        &[glyph],
        GlyphDepth::A1,
        &Brush::Solid(1),
        Ropd::PUT,
    );
}

#[test]
fn composite_over_with_mask_transform_and_repeat() {
    // Source: one opaque red pixel, repeated.
    let mut red = Buf::new(1, 1, 0);
    red.canvas().set(0, 0, 0xffff_0000);
    let mut c = red.canvas();
    c.alpha = true;
    let red = Snapshot::of_canvas(&c, Rect::new(0, 0, 1, 1));
    // Mask: alpha 0x80 in A8 form.
    let mut m = Buf::new(1, 1, 0x8000_0000);
    let mut mc = m.canvas();
    mc.alpha = true;
    let mask = Snapshot::of_canvas(&mc, Rect::new(0, 0, 1, 1));
    let mut b = Buf::new(2, 1, 0x0000_00ff);
    let params = CompositeParams {
        op: 0x03,
        src: Sampling {
            source: &red,
            transform: None,
            filter: Filter::Nearest,
            repeat: Repeat::Normal,
            origin: (0, 0),
        },
        mask: Some(Sampling {
            source: &mask,
            transform: None,
            filter: Filter::Nearest,
            repeat: Repeat::Normal,
            origin: (0, 0),
        }),
        component_alpha: false,
        dest: Rect::new(0, 0, 2, 1),
    };
    assert_eq!(
        composite(&mut b.canvas(), &rect_region(0, 0, 2, 1), &params),
        Ok(())
    );
    let p = b.px(1, 0);
    assert!(((p >> 16) & 0xff).abs_diff(0x80) <= 1, "{p:#x}");
    assert!((p & 0xff).abs_diff(0x7f) <= 1, "{p:#x}");

    // SRC with a 2x downscale transform and no repeat: outside is transparent.
    let src = gradient(4, 1, 0xff00_0000);
    let mut b = Buf::new(4, 1, 0x55);
    let params = CompositeParams {
        op: 0x01,
        src: Sampling {
            source: &src,
            transform: Some([2 << 16, 0, 0, 0, 1 << 16, 0]),
            filter: Filter::Nearest,
            repeat: Repeat::None,
            origin: (0, 0),
        },
        mask: None,
        component_alpha: false,
        dest: Rect::new(0, 0, 4, 1),
    };
    assert_eq!(
        composite(&mut b.canvas(), &rect_region(0, 0, 4, 1), &params),
        Ok(())
    );
    assert_eq!(
        b.px(0, 0),
        0xff00_0000,
        "pixel centre 0.5 maps to 1.0: pixel 0"
    );
    assert_eq!(b.px(1, 0) & 0xff, 2);
    assert_eq!(b.px(2, 0), 0, "past the image");
    // Unknown operators draw nothing.
    let bad = CompositeParams { op: 0x20, ..params };
    assert_eq!(
        composite(&mut b.canvas(), &rect_region(0, 0, 4, 1), &bad),
        Err(Refused::UnknownOperator)
    );
}

/// An image of any size, made up as it is read.
struct Endless(u32, u32);
impl PixelSource for Endless {
    fn width(&self) -> u32 {
        self.0
    }
    fn height(&self) -> u32 {
        self.1
    }
    fn has_alpha(&self) -> bool {
        false
    }
    fn read_row(&self, x: u32, y: u32, out: &mut [Pixel]) {
        for (i, p) in out.iter_mut().enumerate() {
            *p = 0xff00_0000 | (x + i as u32) ^ (y << 8);
        }
    }
}

#[test]
fn a_composite_that_visits_a_new_wide_row_per_pixel_stays_cheap() {
    // A transposing bilinear transform (a rotation): every destination
    // pixel of a row samples other source rows. It reads short spans, so
    // a source a million pixels wide costs what a narrow one does.
    let transposed = |source: &'static Endless| CompositeParams {
        op: 0x01,
        src: Sampling {
            source,
            transform: Some([0, 1 << 16, 0, 1 << 16, 0, 0]),
            filter: Filter::Bilinear,
            repeat: Repeat::Pad,
            origin: (0, 0),
        },
        mask: None,
        component_alpha: false,
        dest: Rect::new(0, 0, 256, 256),
    };
    static WIDE: Endless = Endless(1 << 20, 256);
    static NARROW: Endless = Endless(256, 256);
    for source in [&WIDE, &NARROW] {
        let mut b = Buf::new(256, 256, 0);
        let started = std::time::Instant::now();
        let result = composite(
            &mut b.canvas(),
            &rect_region(0, 0, 256, 256),
            &transposed(source),
        );
        assert_eq!(result, Ok(()));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(b.px(3, 5) & 0xffff, 5 ^ (3 << 8), "transposed");
    }
}
