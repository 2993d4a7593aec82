//! Text mode: where the character cells are, how big the screen is (all from
//! the CRTC, sequencer and attribute registers), and drawing cells with the
//! font from plane 2, the 16-colour palette, blinking and the cursor.
//!
//! In Saffron's flat model of VGA memory the text page is ordinary memory in
//! the legacy window: cell `k` is the byte pair (character, attribute) at
//! `page + 2k` (0xB8000 colour, 0xB0000 mono), which is what a guest's
//! 16-bit stores there produce.

use super::registers::{
    VgaRegisters, AR_MODE, CR_CURSOR_END, CR_CURSOR_START, CR_H_DISP_END, CR_MAX_SCAN, CR_OFFSET,
    SR_CHAR_MAP, SR_CLOCKING,
};
use crate::display::{Rect, Surface, BYTES_PER_PIXEL};

/// Bytes of one text page (32 KiB at 0xB8000 or 0xB0000).
pub const TEXT_PAGE_BYTES: usize = 0x8000;
/// Window offsets of the colour and mono text pages.
pub const COLOR_PAGE_OFFSET: usize = 0x18000;
pub const MONO_PAGE_OFFSET: usize = 0x10000;
/// Cell addresses wrap inside the page.
const CELL_MASK: u32 = (TEXT_PAGE_BYTES / 2 - 1) as u32;
/// Bytes of plane 2 (the font plane): 8 banks of 8 KiB, 32 bytes per glyph.
pub const FONT_PLANE_BYTES: usize = 0x10000;
const GLYPH_STRIDE: usize = 32;

/// Everything that decides where each cell is drawn and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextLayout {
    pub cols: u32,
    pub rows: u32,
    /// Scan lines per cell, 1..=32.
    pub char_height: u32,
    /// 8 or 9 dots.
    pub glyph_width: u32,
    /// Each dot drawn twice (40-column modes).
    pub double_width: bool,
    /// First cell shown (CRTC start address) and cells from one row to the next.
    pub start: u32,
    pub pitch: u32,
    /// Window offset of the text page.
    pub page_offset: usize,
    /// 9th dot repeats the 8th for line-drawing characters 0xC0–0xDF.
    pub line_graphics: bool,
    /// Attribute bit 7 blinks (else it selects bright backgrounds).
    pub blink: bool,
    /// Plane-2 offsets of the fonts for attribute bit 3 set (A) and clear (B).
    pub font_a: usize,
    pub font_b: usize,
}

impl TextLayout {
    pub fn from_registers(regs: &VgaRegisters) -> Self {
        let char_height = u32::from(regs.cr[CR_MAX_SCAN] & 0x1f) + 1;
        let lines = regs.vertical_display_end() + 1;
        let map = regs.seq[SR_CHAR_MAP];
        let bank = |select: u8| usize::from(select) * 0x2000;
        TextLayout {
            cols: u32::from(regs.cr[CR_H_DISP_END]) + 1,
            rows: (lines / char_height).max(1),
            char_height,
            glyph_width: if regs.seq[SR_CLOCKING] & 0x01 != 0 {
                8
            } else {
                9
            },
            double_width: regs.seq[SR_CLOCKING] & 0x08 != 0,
            start: regs.start_address(),
            pitch: u32::from(regs.cr[CR_OFFSET]) * 2,
            page_offset: if regs.color() {
                COLOR_PAGE_OFFSET
            } else {
                MONO_PAGE_OFFSET
            },
            line_graphics: regs.ar[AR_MODE] & 0x04 != 0,
            blink: regs.ar[AR_MODE] & 0x08 != 0,
            font_a: bank(((map >> 5) & 1) | (((map >> 2) & 3) << 1)),
            font_b: bank(((map >> 4) & 1) | ((map & 3) << 1)),
        }
    }

    pub fn cell_width(&self) -> u32 {
        self.glyph_width * if self.double_width { 2 } else { 1 }
    }

    pub fn width(&self) -> u32 {
        self.cols * self.cell_width()
    }

    pub fn height(&self) -> u32 {
        self.rows * self.char_height
    }

    /// Byte offset, inside the text page, of the cell at (row, col).
    pub fn cell_offset(&self, row: u32, col: u32) -> usize {
        let address = self
            .start
            .wrapping_add(row.wrapping_mul(self.pitch))
            .wrapping_add(col);
        (address & CELL_MASK) as usize * 2
    }

    /// Where the cell at `address` (a CRTC address) is on screen, if visible.
    pub fn locate(&self, address: u32) -> Option<(u32, u32)> {
        let k = address.wrapping_sub(self.start) & CELL_MASK;
        let (row, col) = match (k.checked_div(self.pitch), k.checked_rem(self.pitch)) {
            (Some(row), Some(col)) => (row, col),
            _ => (0, k),
        };
        (row < self.rows && col < self.cols).then_some((row, col))
    }

    fn cell_rect(&self, row: u32, first_col: u32, last_col: u32) -> Rect {
        let w = self.cell_width() as i32;
        let h = self.char_height as i32;
        Rect::new(
            first_col as i32 * w,
            row as i32 * h,
            (last_col as i32 + 1) * w,
            (row as i32 + 1) * h,
        )
    }
}

/// The text cursor as it should appear now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextCursor {
    pub row: u32,
    pub col: u32,
    /// First and last lit scan line.
    pub first: u32,
    pub last: u32,
}

impl TextCursor {
    /// The cursor the registers describe (ignoring blinking); `None` when
    /// it is disabled, empty or off screen.
    pub fn from_registers(regs: &VgaRegisters, layout: &TextLayout) -> Option<Self> {
        let start = regs.cr[CR_CURSOR_START];
        if start & 0x20 != 0 {
            return None;
        }
        let first = u32::from(start & 0x1f);
        let last = u32::from(regs.cr[CR_CURSOR_END] & 0x1f).min(layout.char_height - 1);
        if first > last {
            return None;
        }
        let (row, col) = layout.locate(regs.cursor_address())?;
        Some(TextCursor {
            row,
            col,
            first,
            last,
        })
    }
}

/// One frame's inputs.
pub struct TextFrame<'a> {
    pub layout: &'a TextLayout,
    /// The 16 colours, 0x00RRGGBB.
    pub palette: [u32; 16],
    /// The text page (TEXT_PAGE_BYTES).
    pub page: &'a [u8],
    /// Plane 2 (FONT_PLANE_BYTES).
    pub font: &'a [u8],
    /// The cursor, `None` while hidden (including its blink-off phase).
    pub cursor: Option<TextCursor>,
    /// Blinking characters are in their visible phase.
    pub blink_on: bool,
}

/// What text mode last drew, so the next frame only redraws what changed.
#[derive(Default)]
pub struct TextScreen {
    layout: Option<TextLayout>,
    palette: [u32; 16],
    cells: Vec<u16>,
    cursor: Option<TextCursor>,
    blink_on: bool,
    has_blinking: bool,
}

impl TextScreen {
    /// Forgets what was drawn: the next render draws everything.
    pub fn invalidate(&mut self) {
        self.layout = None;
    }

    /// Are there blinking characters on screen (so the blink phase matters)?
    pub fn has_blinking(&self) -> bool {
        self.has_blinking
    }

    /// Draws the cells that differ from the last frame (all of them when
    /// anything global changed) into `surface`, which must be
    /// `layout.width()` × `layout.height()`; returns the damaged rectangles.
    pub fn render(&mut self, surface: &mut Surface, frame: &TextFrame) -> Vec<Rect> {
        let layout = frame.layout;
        let count = (layout.rows * layout.cols) as usize;
        if surface.width != layout.width() || surface.height != layout.height() {
            return Vec::new();
        }
        let full = self.layout.as_ref() != Some(layout)
            || self.palette != frame.palette
            || self.cells.len() != count;
        if full {
            self.cells = vec![0; count];
        }
        let blink_changed = self.blink_on != frame.blink_on && layout.blink;
        let cursor_changed = self.cursor != frame.cursor;
        let cursor_cell = |c: &Option<TextCursor>, row: u32, col: u32| {
            c.is_some_and(|c| c.row == row && c.col == col)
        };

        let mut damage: Vec<Rect> = Vec::new();
        let mut has_blinking = false;
        for row in 0..layout.rows {
            let mut span: Option<(u32, u32)> = None;
            for col in 0..layout.cols {
                let at = layout.cell_offset(row, col);
                let cell = u16::from_le_bytes([frame.page[at], frame.page[at + 1]]);
                let blinks = layout.blink && cell & 0x8000 != 0;
                has_blinking |= blinks;
                let index = (row * layout.cols + col) as usize;
                let redraw = full
                    || self.cells[index] != cell
                    || (blinks && blink_changed)
                    || (cursor_changed
                        && (cursor_cell(&self.cursor, row, col)
                            || cursor_cell(&frame.cursor, row, col)));
                if !redraw {
                    continue;
                }
                self.cells[index] = cell;
                draw_cell(surface, frame, row, col, cell);
                span = Some(span.map_or((col, col), |(first, _)| (first, col)));
            }
            if let Some((first, last)) = span {
                let rect = layout.cell_rect(row, first, last);
                match damage.last_mut() {
                    Some(prev)
                        if prev.left == rect.left
                            && prev.right == rect.right
                            && prev.bottom == rect.top =>
                    {
                        prev.bottom = rect.bottom
                    }
                    _ => damage.push(rect),
                }
            }
        }
        self.layout = Some(layout.clone());
        self.palette = frame.palette;
        self.cursor = frame.cursor;
        self.blink_on = frame.blink_on;
        self.has_blinking = has_blinking;
        damage
    }
}

fn draw_cell(surface: &mut Surface, frame: &TextFrame, row: u32, col: u32, cell: u16) {
    let layout = frame.layout;
    let [code, attr] = cell.to_le_bytes();
    let mut fg = frame.palette[usize::from(attr & 0x0f)];
    let bg = if layout.blink {
        frame.palette[usize::from((attr >> 4) & 0x07)]
    } else {
        frame.palette[usize::from(attr >> 4)]
    };
    if layout.blink && attr & 0x80 != 0 && !frame.blink_on {
        fg = bg;
    }
    let font_base = if attr & 0x08 != 0 {
        layout.font_a
    } else {
        layout.font_b
    };
    let glyph = font_base + usize::from(code) * GLYPH_STRIDE;
    let ninth_repeats = layout.line_graphics && (0xc0..=0xdf).contains(&code);
    let cursor = frame
        .cursor
        .filter(|c| c.row == row && c.col == col)
        .map(|c| c.first..=c.last);
    let scale = if layout.double_width { 2 } else { 1 };
    let x0 = (col * layout.cell_width()) as usize * BYTES_PER_PIXEL;
    let (fg, bg) = (fg.to_le_bytes(), bg.to_le_bytes());

    for line in 0..layout.char_height {
        // The font plane is 64 KiB; banks are ≤ 56 KiB and a glyph slot is
        // 32 bytes, so this stays inside, but stay safe if that ever changes.
        let mut bits = frame.font.get(glyph + line as usize).copied().unwrap_or(0);
        let mut ninth = ninth_repeats && bits & 1 != 0;
        if cursor.as_ref().is_some_and(|r| r.contains(&line)) {
            bits = 0xff;
            ninth = true;
        }
        let y = row * layout.char_height + line;
        let out = &mut surface.row_mut(y)[x0..];
        let mut px = 0;
        for dot in 0..layout.glyph_width {
            let on = if dot < 8 {
                bits & (0x80 >> dot) != 0
            } else {
                ninth
            };
            let colour = if on { &fg } else { &bg };
            for _ in 0..scale {
                out[px..px + 3].copy_from_slice(&colour[..3]);
                out[px + 3] = 0;
                px += BYTES_PER_PIXEL;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vga::font::FONT_8X16;

    fn mode3() -> VgaRegisters {
        let mut r = VgaRegisters::default();
        r.load_mode3();
        r
    }

    fn font_plane() -> Vec<u8> {
        let mut plane = vec![0u8; FONT_PLANE_BYTES];
        for (code, glyph) in FONT_8X16.iter().enumerate() {
            plane[code * GLYPH_STRIDE..code * GLYPH_STRIDE + 16].copy_from_slice(glyph);
        }
        plane
    }

    fn put(page: &mut [u8], layout: &TextLayout, row: u32, col: u32, text: &[u8], attr: u8) {
        for (i, &b) in text.iter().enumerate() {
            let at = layout.cell_offset(row, col + i as u32);
            page[at] = b;
            page[at + 1] = attr;
        }
    }

    /// The glyph as drawn at (row, col): '#' for fg pixels, '.' for bg.
    fn cell_art(
        surface: &Surface,
        layout: &TextLayout,
        row: u32,
        col: u32,
        fg: u32,
    ) -> Vec<String> {
        (0..layout.char_height)
            .map(|line| {
                (0..layout.cell_width())
                    .map(|dot| {
                        let x = col * layout.cell_width() + dot;
                        let y = row * layout.char_height + line;
                        if surface.pixel(x, y) & 0xffffff == fg {
                            '#'
                        } else {
                            '.'
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn mode3_layout() {
        let layout = TextLayout::from_registers(&mode3());
        assert_eq!((layout.cols, layout.rows, layout.char_height), (80, 25, 16));
        assert_eq!((layout.width(), layout.height()), (720, 400));
        assert_eq!(layout.pitch, 80);
        assert_eq!(layout.page_offset, COLOR_PAGE_OFFSET);
        assert_eq!(layout.cell_offset(1, 2), 82 * 2);
        assert_eq!(layout.locate(81), Some((1, 1)));
        assert_eq!(layout.locate(80 * 25), None);
    }

    #[test]
    fn renders_cells_with_the_font_and_palette() {
        let regs = mode3();
        let layout = TextLayout::from_registers(&regs);
        let mut page = vec![0u8; TEXT_PAGE_BYTES];
        put(&mut page, &layout, 2, 3, b"A\xc4", 0x1e); // yellow on blue
        let font = font_plane();
        let mut surface = Surface::new(720, 400).unwrap();
        let mut screen = TextScreen::default();
        let frame = TextFrame {
            layout: &layout,
            palette: regs.text_palette(),
            page: &page,
            font: &font,
            cursor: None,
            blink_on: true,
        };
        let damage = screen.render(&mut surface, &frame);
        assert_eq!(damage, vec![Rect::new(0, 0, 720, 400)]);
        let yellow = 0xffff55;
        let art = cell_art(&surface, &layout, 2, 3, yellow);
        for line in 0..16 {
            let expected: String = (0..8)
                .map(|bit| {
                    if FONT_8X16[b'A' as usize][line] & (0x80 >> bit) != 0 {
                        '#'
                    } else {
                        '.'
                    }
                })
                .chain(std::iter::once('.'))
                .collect();
            assert_eq!(art[line], expected, "line {line}");
        }
        assert_eq!(
            surface.pixel(3 * 9, 2 * 16) & 0xffffff,
            0x0000aa,
            "blue background"
        );
        // 0xC4 is horizontal line drawing: the 9th dot repeats the 8th.
        let line = &cell_art(&surface, &layout, 2, 4, yellow)[7];
        assert_eq!(line, "#########");
    }

    #[test]
    fn only_changed_cells_are_redrawn() {
        let regs = mode3();
        let layout = TextLayout::from_registers(&regs);
        let mut page = vec![0u8; TEXT_PAGE_BYTES];
        let font = font_plane();
        let mut surface = Surface::new(720, 400).unwrap();
        let mut screen = TextScreen::default();
        let palette = regs.text_palette();
        let mut frame = |page: &[u8], cursor| {
            let f = TextFrame {
                layout: &layout,
                palette,
                page,
                font: &font,
                cursor,
                blink_on: true,
            };
            screen.render(&mut surface, &f)
        };
        frame(&page, None);
        assert!(frame(&page, None).is_empty(), "nothing changed");
        put(&mut page, &layout, 5, 10, b"hi", 0x07);
        put(&mut page, &layout, 6, 10, b"yo", 0x07);
        assert_eq!(
            frame(&page, None),
            vec![Rect::new(90, 80, 108, 112)],
            "two rows with the same span merge"
        );
        let cursor = TextCursor {
            row: 24,
            col: 0,
            first: 14,
            last: 15,
        };
        assert_eq!(frame(&page, Some(cursor)), vec![Rect::new(0, 384, 9, 400)]);
        let moved = TextCursor { col: 1, ..cursor };
        assert_eq!(frame(&page, Some(moved)), vec![Rect::new(0, 384, 18, 400)]);
    }

    #[test]
    fn cursor_lines_use_the_foreground() {
        let mut regs = mode3();
        regs.cr[CR_CURSOR_START] = 14;
        regs.cr[CR_CURSOR_END] = 15;
        regs.cr[0x0f] = 81; // row 1, col 1
        let layout = TextLayout::from_registers(&regs);
        let cursor = TextCursor::from_registers(&regs, &layout).unwrap();
        assert_eq!(
            (cursor.row, cursor.col, cursor.first, cursor.last),
            (1, 1, 14, 15)
        );
        let mut page = vec![0u8; TEXT_PAGE_BYTES];
        put(&mut page, &layout, 1, 1, b" ", 0x07);
        let font = font_plane();
        let mut surface = Surface::new(720, 400).unwrap();
        TextScreen::default().render(
            &mut surface,
            &TextFrame {
                layout: &layout,
                palette: regs.text_palette(),
                page: &page,
                font: &font,
                cursor: Some(cursor),
                blink_on: true,
            },
        );
        let art = cell_art(&surface, &layout, 1, 1, 0xaaaaaa);
        assert_eq!(art[13], ".........");
        assert_eq!(art[14], "#########");
        assert_eq!(art[15], "#########");
        // Disabled (bit 5) or inverted shapes show no cursor.
        regs.cr[CR_CURSOR_START] = 0x20 | 14;
        assert_eq!(TextCursor::from_registers(&regs, &layout), None);
        regs.cr[CR_CURSOR_START] = 15;
        regs.cr[CR_CURSOR_END] = 14;
        assert_eq!(TextCursor::from_registers(&regs, &layout), None);
    }

    #[test]
    fn blinking_attribute_hides_text_in_the_off_phase() {
        let regs = mode3();
        let layout = TextLayout::from_registers(&regs);
        assert!(layout.blink);
        let mut page = vec![0u8; TEXT_PAGE_BYTES];
        put(&mut page, &layout, 0, 0, b"X", 0x9f); // blinking white on blue
        let font = font_plane();
        let mut surface = Surface::new(720, 400).unwrap();
        let mut screen = TextScreen::default();
        let mut render = |blink_on| {
            screen.render(
                &mut surface,
                &TextFrame {
                    layout: &layout,
                    palette: regs.text_palette(),
                    page: &page,
                    font: &font,
                    cursor: None,
                    blink_on,
                },
            )
        };
        render(true);
        assert_eq!(render(false), vec![Rect::new(0, 0, 9, 16)]);
        let lit = (0..9 * 16).filter(|i| surface.pixel(i % 9, i / 9) & 0xffffff == 0xffffff);
        assert_eq!(lit.count(), 0);
        assert_eq!(
            surface.pixel(0, 0) & 0xffffff,
            0x0000aa,
            "bit 7 is blink, bg is blue"
        );
    }

    #[test]
    fn hostile_geometry_stays_in_bounds() {
        let mut regs = mode3();
        regs.cr[0x11] = 0; // unlock
        regs.cr[CR_H_DISP_END] = 0xff;
        regs.cr[CR_MAX_SCAN] = 0x00; // 1-line cells
        regs.cr[0x12] = 0xff;
        regs.cr[0x07] = 0x42; // vde = 1023
        regs.cr[CR_OFFSET] = 0xff;
        regs.cr[0x0c] = 0xff;
        regs.cr[0x0d] = 0xff;
        regs.seq[SR_CHAR_MAP] = 0x3f; // highest font banks
        let layout = TextLayout::from_registers(&regs);
        assert_eq!((layout.cols, layout.rows), (256, 1024));
        let page = vec![0xffu8; TEXT_PAGE_BYTES];
        let font = font_plane();
        let mut surface = Surface::new(layout.width(), layout.height()).unwrap();
        let damage = TextScreen::default().render(
            &mut surface,
            &TextFrame {
                layout: &layout,
                palette: regs.text_palette(),
                page: &page,
                font: &font,
                cursor: None,
                blink_on: false,
            },
        );
        assert_eq!(damage.len(), 1);
        // A surface of the wrong size is left alone.
        let mut small = Surface::new(8, 8).unwrap();
        let damage = TextScreen::default().render(
            &mut small,
            &TextFrame {
                layout: &layout,
                palette: [0; 16],
                page: &page,
                font: &font,
                cursor: None,
                blink_on: false,
            },
        );
        assert!(damage.is_empty());
    }
}
