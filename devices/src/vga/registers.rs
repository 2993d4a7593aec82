//! The legacy VGA register file behind ports 0x3B0–0x3DF: misc output,
//! sequencer, graphics controller, attribute controller (with its index/data
//! flip-flop), CRTC (with the CR0–7 write protect), input status (with a
//! retrace bit that toggles on every read, so polling loops end) and the DAC.
//!
//! Values are masked on write the way real VGA (and QEMU) mask them. The
//! register file only stores state; it tells its owner what a write changed
//! ([`Change`]) so the display knows what to repaint.

use super::dac::Dac;

/// Port numbers (absolute).
pub const ATTR_INDEX_DATA: u16 = 0x3c0;
pub const ATTR_DATA_READ: u16 = 0x3c1;
pub const MISC_WRITE_ST00: u16 = 0x3c2;
pub const SEQ_INDEX: u16 = 0x3c4;
pub const SEQ_DATA: u16 = 0x3c5;
pub const PEL_MASK: u16 = 0x3c6;
pub const DAC_READ_INDEX: u16 = 0x3c7;
pub const DAC_WRITE_INDEX: u16 = 0x3c8;
pub const DAC_DATA: u16 = 0x3c9;
pub const FEATURE_READ: u16 = 0x3ca;
pub const MISC_READ: u16 = 0x3cc;
pub const GR_INDEX: u16 = 0x3ce;
pub const GR_DATA: u16 = 0x3cf;
pub const CRTC_INDEX_MONO: u16 = 0x3b4;
pub const CRTC_DATA_MONO: u16 = 0x3b5;
pub const STATUS1_MONO: u16 = 0x3ba;
pub const CRTC_INDEX_COLOR: u16 = 0x3d4;
pub const CRTC_DATA_COLOR: u16 = 0x3d5;
pub const STATUS1_COLOR: u16 = 0x3da;

/// Sequencer registers.
pub const SR_CLOCKING: usize = 1;
pub const SR_PLANE_WRITE: usize = 2;
pub const SR_CHAR_MAP: usize = 3;
pub const SR_MEMORY_MODE: usize = 4;
/// Graphics controller registers.
pub const GR_MODE: usize = 5;
pub const GR_MISC: usize = 6;
/// Attribute controller registers.
pub const AR_MODE: usize = 0x10;
pub const AR_COLOR_SELECT: usize = 0x14;
/// Attribute index bit 5: palette address source; clear = screen blanked.
pub const AR_INDEX_PAS: u8 = 0x20;
/// CRTC registers.
pub const CR_H_DISP_END: usize = 0x01;
pub const CR_OVERFLOW: usize = 0x07;
pub const CR_MAX_SCAN: usize = 0x09;
pub const CR_CURSOR_START: usize = 0x0a;
pub const CR_CURSOR_END: usize = 0x0b;
pub const CR_START_HI: usize = 0x0c;
pub const CR_START_LO: usize = 0x0d;
pub const CR_CURSOR_HI: usize = 0x0e;
pub const CR_CURSOR_LO: usize = 0x0f;
pub const CR_V_SYNC_END: usize = 0x11;
pub const CR_V_DISP_END: usize = 0x12;
pub const CR_OFFSET: usize = 0x13;

const SEQ_MASKS: [u8; 8] = [0x03, 0x3d, 0x0f, 0x3f, 0x0e, 0x00, 0x00, 0xff];
const GR_MASKS: [u8; 16] = [
    0x0f, 0x0f, 0x0f, 0x1f, 0x03, 0x7b, 0x0f, 0x0f, 0xff, 0, 0, 0, 0, 0, 0, 0,
];
const AR_COUNT: usize = 0x15;
/// Input status 1 bits toggled on each read: display enable and vertical retrace.
const ST01_TOGGLE: u8 = 0x09;

/// What a port write changed, for the display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing visible (an index, a read pointer, a value rewritten unchanged).
    None,
    /// Cursor shape or position only.
    Cursor,
    /// Anything else that may change the picture: repaint it all.
    Picture,
}

/// The VGA registers.
#[derive(Clone)]
pub struct VgaRegisters {
    pub misc: u8,
    pub feature: u8,
    pub seq_index: u8,
    pub seq: [u8; 8],
    pub gr_index: u8,
    pub gr: [u8; 16],
    pub ar_index: u8,
    pub ar: [u8; AR_COUNT],
    /// False: the next write to 0x3C0 is an index; true: it is data.
    pub ar_flip_flop: bool,
    pub cr_index: u8,
    pub cr: [u8; 256],
    pub dac: Dac,
    status1: u8,
}

impl Default for VgaRegisters {
    fn default() -> Self {
        VgaRegisters {
            misc: 0,
            feature: 0,
            seq_index: 0,
            seq: [0; 8],
            gr_index: 0,
            gr: [0; 16],
            ar_index: 0,
            ar: [0; AR_COUNT],
            ar_flip_flop: false,
            cr_index: 0,
            cr: [0; 256],
            dac: Dac::default(),
            status1: 0,
        }
    }
}

fn changed<T: PartialEq>(slot: &mut T, value: T, kind: Change) -> Change {
    if *slot == value {
        Change::None
    } else {
        *slot = value;
        kind
    }
}

impl VgaRegisters {
    /// Colour emulation (CRTC at 0x3D4) rather than mono (0x3B4): misc bit 0.
    pub fn color(&self) -> bool {
        self.misc & 0x01 != 0
    }

    /// Is `port` in the CRTC/status range of the emulation not selected?
    fn wrong_range(&self, port: u16) -> bool {
        let mono = (0x3b0..=0x3bf).contains(&port);
        let color = (0x3d0..=0x3df).contains(&port);
        (mono && self.color()) || (color && !self.color())
    }

    pub fn read(&mut self, port: u16) -> u8 {
        if self.wrong_range(port) {
            return 0xff;
        }
        match port {
            ATTR_INDEX_DATA => {
                if self.ar_flip_flop {
                    0
                } else {
                    self.ar_index
                }
            }
            ATTR_DATA_READ => {
                let index = usize::from(self.ar_index & 0x1f);
                self.ar.get(index).copied().unwrap_or(0)
            }
            MISC_WRITE_ST00 => 0,
            SEQ_INDEX => self.seq_index,
            SEQ_DATA => self.seq[usize::from(self.seq_index & 7)],
            PEL_MASK => self.dac.pel_mask,
            DAC_READ_INDEX => self.dac.state(),
            DAC_WRITE_INDEX => self.dac.write_index(),
            DAC_DATA => self.dac.read_data(),
            FEATURE_READ => self.feature,
            MISC_READ => self.misc,
            GR_INDEX => self.gr_index,
            GR_DATA => self.gr[usize::from(self.gr_index & 0x0f)],
            CRTC_INDEX_MONO | CRTC_INDEX_COLOR => self.cr_index,
            CRTC_DATA_MONO | CRTC_DATA_COLOR => self.cr[usize::from(self.cr_index)],
            STATUS1_MONO | STATUS1_COLOR => {
                self.ar_flip_flop = false;
                self.status1 ^= ST01_TOGGLE;
                self.status1
            }
            _ => 0,
        }
    }

    pub fn write(&mut self, port: u16, value: u8) -> Change {
        if self.wrong_range(port) {
            return Change::None;
        }
        match port {
            ATTR_INDEX_DATA => {
                let data = self.ar_flip_flop;
                self.ar_flip_flop = !self.ar_flip_flop;
                if !data {
                    let index = value & 0x3f;
                    let pas_changed = (index ^ self.ar_index) & AR_INDEX_PAS != 0;
                    self.ar_index = index;
                    return if pas_changed {
                        Change::Picture
                    } else {
                        Change::None
                    };
                }
                let index = usize::from(self.ar_index & 0x1f);
                let masked = match index {
                    0x00..=0x0f => value & 0x3f,
                    0x10 => value & !0x10,
                    0x11 => value,
                    0x12 => value & !0xc0,
                    0x13 | 0x14 => value & !0xf0,
                    _ => return Change::None,
                };
                changed(&mut self.ar[index], masked, Change::Picture)
            }
            MISC_WRITE_ST00 => changed(&mut self.misc, value & !0x10, Change::Picture),
            SEQ_INDEX => {
                self.seq_index = value & 7;
                Change::None
            }
            SEQ_DATA => {
                let index = usize::from(self.seq_index & 7);
                changed(
                    &mut self.seq[index],
                    value & SEQ_MASKS[index],
                    Change::Picture,
                )
            }
            PEL_MASK => changed(&mut self.dac.pel_mask, value, Change::Picture),
            DAC_READ_INDEX => {
                self.dac.set_read_index(value);
                Change::None
            }
            DAC_WRITE_INDEX => {
                self.dac.set_write_index(value);
                Change::None
            }
            DAC_DATA => {
                if self.dac.write_data(value) {
                    Change::Picture
                } else {
                    Change::None
                }
            }
            GR_INDEX => {
                self.gr_index = value & 0x0f;
                Change::None
            }
            GR_DATA => {
                let index = usize::from(self.gr_index & 0x0f);
                changed(
                    &mut self.gr[index],
                    value & GR_MASKS[index],
                    Change::Picture,
                )
            }
            CRTC_INDEX_MONO | CRTC_INDEX_COLOR => {
                self.cr_index = value;
                Change::None
            }
            CRTC_DATA_MONO | CRTC_DATA_COLOR => self.write_crtc(value),
            STATUS1_MONO | STATUS1_COLOR => {
                self.feature = value & 0x10;
                Change::None
            }
            _ => Change::None,
        }
    }

    fn write_crtc(&mut self, value: u8) -> Change {
        let index = usize::from(self.cr_index);
        let protected = self.cr[CR_V_SYNC_END] & 0x80 != 0;
        if protected && index <= CR_OVERFLOW {
            // Only the line-compare bit 9 of the overflow register stays writable.
            if index == CR_OVERFLOW {
                let merged = (self.cr[index] & !0x10) | (value & 0x10);
                return changed(&mut self.cr[index], merged, Change::Picture);
            }
            return Change::None;
        }
        let kind = match index {
            CR_CURSOR_START | CR_CURSOR_END | CR_CURSOR_HI | CR_CURSOR_LO => Change::Cursor,
            _ => Change::Picture,
        };
        changed(&mut self.cr[index], value, kind)
    }

    /// Loads the register values of standard VGA mode 3 (80x25 colour text,
    /// 720x400, 9x16 cells) as a VGA BIOS would program them, with the
    /// display enabled (attribute PAS bit set).
    pub fn load_mode3(&mut self) {
        self.misc = 0x67;
        self.seq = [0x03, 0x00, 0x03, 0x00, 0x02, 0, 0, 0];
        const CRTC: [u8; 25] = [
            0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00, 0x00,
            0x00, 0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff,
        ];
        self.cr = [0; 256];
        self.cr[..CRTC.len()].copy_from_slice(&CRTC);
        self.gr = [0; 16];
        self.gr[..9].copy_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x00, 0xff]);
        self.ar = [
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d,
            0x3e, 0x3f, 0x0c, 0x00, 0x0f, 0x08, 0x00,
        ];
        self.ar_index = AR_INDEX_PAS;
        self.ar_flip_flop = false;
        self.dac.load_ega_palette();
    }

    /// The display is on: attribute index bit 5 (PAS) is set.
    pub fn display_enabled(&self) -> bool {
        self.ar_index & AR_INDEX_PAS != 0
    }

    /// Graphics (not text) mode: GR6 bit 0.
    pub fn graphics_mode(&self) -> bool {
        self.gr[GR_MISC] & 0x01 != 0
    }

    /// Vertical display end (lines − 1), with its overflow bits 8 and 9.
    pub fn vertical_display_end(&self) -> u32 {
        let overflow = self.cr[CR_OVERFLOW];
        u32::from(self.cr[CR_V_DISP_END])
            | (u32::from(overflow & 0x02) << 7)
            | (u32::from(overflow & 0x40) << 3)
    }

    /// CRTC start address (CR0C:CR0D).
    pub fn start_address(&self) -> u32 {
        (u32::from(self.cr[CR_START_HI]) << 8) | u32::from(self.cr[CR_START_LO])
    }

    /// Cursor location (CR0E:CR0F).
    pub fn cursor_address(&self) -> u32 {
        (u32::from(self.cr[CR_CURSOR_HI]) << 8) | u32::from(self.cr[CR_CURSOR_LO])
    }

    /// The 16 colours text mode uses, as 0x00RRGGBB: DAC entries selected by
    /// attribute palette registers 0–15 (with the colour select register).
    pub fn text_palette(&self) -> [u32; 16] {
        let mut palette = [0u32; 16];
        for (i, colour) in palette.iter_mut().enumerate() {
            let entry = self.ar[i];
            let mut index = if self.ar[AR_MODE] & 0x80 != 0 {
                (entry & 0x0f) | ((self.ar[AR_COLOR_SELECT] & 0x03) << 4)
            } else {
                entry & 0x3f
            };
            index |= (self.ar[AR_COLOR_SELECT] & 0x0c) << 4;
            *colour = self.dac.color(index);
        }
        palette
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode3() -> VgaRegisters {
        let mut r = VgaRegisters::default();
        r.load_mode3();
        r
    }

    #[test]
    fn attribute_flip_flop_alternates_and_status_read_resets_it() {
        let mut r = mode3();
        r.read(STATUS1_COLOR);
        r.write(ATTR_INDEX_DATA, 0x01);
        assert_eq!(r.write(ATTR_INDEX_DATA, 0xff), Change::Picture);
        assert_eq!(r.ar[1], 0x3f, "palette registers keep 6 bits");
        // Index written, then a status read resets the flip-flop: the next
        // write is an index again.
        r.write(ATTR_INDEX_DATA, 0x02);
        r.read(STATUS1_COLOR);
        r.write(ATTR_INDEX_DATA, 0x33);
        assert_eq!(r.ar_index, 0x33);
        assert_eq!(r.read(ATTR_INDEX_DATA), 0, "data phase reads 0");
        r.write(ATTR_INDEX_DATA, 0x07);
        assert_eq!(r.ar[0x13], 0x07);
        assert_eq!(r.read(ATTR_INDEX_DATA), 0x33);
        assert_eq!(r.read(ATTR_DATA_READ), 0x07);
        // Registers past 0x14 do not exist.
        r.write(ATTR_INDEX_DATA, 0x1f);
        assert_eq!(r.write(ATTR_INDEX_DATA, 0x55), Change::None);
        assert_eq!(r.read(ATTR_DATA_READ), 0);
    }

    #[test]
    fn pas_bit_blanks_the_display() {
        let mut r = mode3();
        assert!(r.display_enabled());
        r.read(STATUS1_COLOR);
        assert_eq!(r.write(ATTR_INDEX_DATA, 0x00), Change::Picture);
        assert!(!r.display_enabled());
    }

    #[test]
    fn retrace_bit_toggles_on_every_read() {
        let mut r = mode3();
        let a = r.read(STATUS1_COLOR);
        let b = r.read(STATUS1_COLOR);
        assert_ne!(a & 0x08, b & 0x08);
        assert_ne!(a & 0x01, b & 0x01);
    }

    #[test]
    fn crtc_follows_the_misc_colour_bit() {
        let mut r = VgaRegisters::default();
        // After reset MISC bit 0 is clear: only the mono CRTC decodes.
        r.write(CRTC_INDEX_COLOR, 0x0e);
        assert_eq!(r.read(CRTC_INDEX_COLOR), 0xff);
        r.write(CRTC_INDEX_MONO, 0x0e);
        r.write(CRTC_DATA_MONO, 0x12);
        assert_eq!(r.cursor_address(), 0x1200);
        r.write(MISC_WRITE_ST00, 0x67);
        assert_eq!(r.read(MISC_READ), 0x67);
        assert_eq!(r.read(CRTC_INDEX_MONO), 0xff);
        r.write(CRTC_INDEX_COLOR, 0x0f);
        assert_eq!(r.write(CRTC_DATA_COLOR, 0x34), Change::Cursor);
        assert_eq!(r.cursor_address(), 0x1234);
        assert_eq!(r.write(CRTC_DATA_COLOR, 0x34), Change::None, "unchanged");
    }

    #[test]
    fn crtc_write_protect_keeps_timing_registers() {
        let mut r = mode3();
        assert!(r.cr[CR_V_SYNC_END] & 0x80 != 0);
        r.write(CRTC_INDEX_COLOR, CR_H_DISP_END as u8);
        assert_eq!(r.write(CRTC_DATA_COLOR, 0x10), Change::None);
        assert_eq!(r.cr[CR_H_DISP_END], 0x4f);
        r.write(CRTC_INDEX_COLOR, CR_OVERFLOW as u8);
        r.write(CRTC_DATA_COLOR, 0xff);
        assert_eq!(r.cr[CR_OVERFLOW], 0x1f | 0x10, "only bit 4 is writable");
        // Clearing the protect bit unlocks them.
        r.write(CRTC_INDEX_COLOR, CR_V_SYNC_END as u8);
        r.write(CRTC_DATA_COLOR, 0x0e);
        r.write(CRTC_INDEX_COLOR, CR_H_DISP_END as u8);
        r.write(CRTC_DATA_COLOR, 0x27);
        assert_eq!(r.cr[CR_H_DISP_END], 0x27);
    }

    #[test]
    fn sequencer_and_graphics_writes_are_masked() {
        let mut r = mode3();
        r.write(SEQ_INDEX, 0xfc); // index & 7 = 4
        r.write(SEQ_DATA, 0xff);
        assert_eq!(r.seq[SR_MEMORY_MODE], 0x0e);
        r.write(GR_INDEX, 0xf5); // index & 0xf = 5
        r.write(GR_DATA, 0xff);
        assert_eq!(r.gr[GR_MODE], 0x7b);
        assert_eq!(r.read(GR_DATA), 0x7b);
    }

    #[test]
    fn mode3_geometry_and_palette() {
        let r = mode3();
        assert_eq!(r.vertical_display_end(), 399);
        assert_eq!(r.cr[CR_H_DISP_END] + 1, 80);
        let p = r.text_palette();
        assert_eq!(p[0], 0x000000);
        assert_eq!(p[1], 0x0000aa);
        assert_eq!(p[6], 0xaa5500, "brown is EGA colour 0x14");
        assert_eq!(p[7], 0xaaaaaa);
        assert_eq!(p[15], 0xffffff);
    }
}
