//! Saffron's built-in 8x16 text-mode font.
//!
//! The glyphs are our own design, kept readable in `font8x16.txt` (see the
//! format described at its top) and turned into a table of row bytes at
//! compile time: a malformed file fails the build. A VGA BIOS would copy its
//! ROM font into plane 2; a BIOS-less Saffron preloads this one instead, and
//! a guest may replace it by loading its own (see [`super::Vga`]).

/// Glyph height in scan lines.
pub const GLYPH_HEIGHT: usize = 16;
/// Number of glyphs (one per byte value, code page 437 positions).
pub const GLYPH_COUNT: usize = 256;

/// Row bytes of every glyph: `FONT_8X16[code][row]`, bit 7 = leftmost pixel.
pub static FONT_8X16: [[u8; GLYPH_HEIGHT]; GLYPH_COUNT] = parse(include_str!("font8x16.txt"));

const fn hex_digit(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => panic!("font8x16.txt: bad hex digit in a glyph header"),
    }
}

/// Index of the byte after the end of the line starting at `i`.
const fn next_line(text: &[u8], mut i: usize) -> usize {
    while i < text.len() && text[i] != b'\n' {
        i += 1;
    }
    if i < text.len() {
        i + 1
    } else {
        i
    }
}

/// Parses the font source (format in `font8x16.txt`); panics (a compile
/// error, since it runs in a `static` initialiser) on anything malformed.
const fn parse(source: &str) -> [[u8; GLYPH_HEIGHT]; GLYPH_COUNT] {
    let text = source.as_bytes();
    let mut glyphs = [[0u8; GLYPH_HEIGHT]; GLYPH_COUNT];
    let mut defined = [false; GLYPH_COUNT];
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\n' | b'#' => i = next_line(text, i),
            b'@' => {
                if i + 2 >= text.len() {
                    panic!("font8x16.txt: truncated glyph header");
                }
                let code = (hex_digit(text[i + 1]) * 16 + hex_digit(text[i + 2])) as usize;
                if defined[code] {
                    panic!("font8x16.txt: a glyph is defined twice");
                }
                defined[code] = true;
                i = next_line(text, i);
                let mut row = 0;
                while row < GLYPH_HEIGHT {
                    let mut bits = 0u8;
                    let mut col = 0;
                    while col < 8 {
                        if i + col >= text.len() {
                            panic!("font8x16.txt: truncated glyph");
                        }
                        bits = match text[i + col] {
                            b'#' => (bits << 1) | 1,
                            b'.' => bits << 1,
                            _ => panic!("font8x16.txt: glyph rows are 8 of '#' or '.'"),
                        };
                        col += 1;
                    }
                    if i + 8 < text.len() && text[i + 8] != b'\n' {
                        panic!("font8x16.txt: a glyph row is longer than 8 pixels");
                    }
                    glyphs[code][row] = bits;
                    i = next_line(text, i);
                    row += 1;
                }
            }
            _ => panic!("font8x16.txt: expected a glyph header, a comment or an empty line"),
        }
    }
    glyphs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(code: u8) -> Vec<String> {
        FONT_8X16[code as usize]
            .iter()
            .map(|row| {
                (0..8)
                    .map(|bit| if row & (0x80 >> bit) != 0 { '#' } else { '.' })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn glyphs_match_their_source() {
        let a = render(b'A');
        assert_eq!(a[0], "........");
        assert_eq!(a[2], "...#....");
        assert_eq!(a[7], "#######.");
        assert_eq!(a[11], "##...##.");
        assert_eq!(a[12], "........");
        assert_eq!(FONT_8X16[0xdb], [0xff; 16], "full block");
        assert_eq!(FONT_8X16[0xc4][7], 0xff, "horizontal line reaches column 7");
    }

    #[test]
    fn printable_ascii_is_complete_and_distinct() {
        let mut seen = std::collections::HashMap::new();
        for code in 0x21u8..0x7f {
            let glyph = FONT_8X16[code as usize];
            assert!(glyph.iter().any(|r| *r != 0), "{:?} is blank", code as char);
            if let Some(other) = seen.insert(glyph, code) {
                panic!("{:?} and {:?} look the same", other as char, code as char);
            }
        }
        assert_eq!(FONT_8X16[b' ' as usize], [0; 16]);
        assert_eq!(FONT_8X16[0], [0; 16]);
    }

    #[test]
    fn descenders_go_below_the_baseline() {
        for c in [b'g', b'j', b'p', b'q', b'y'] {
            assert_ne!(FONT_8X16[c as usize][13], 0, "{}", c as char);
        }
        for c in [b'a', b'x', b'A', b'0'] {
            assert_eq!(FONT_8X16[c as usize][13], 0, "{}", c as char);
        }
    }
}
