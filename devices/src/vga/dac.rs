//! The VGA DAC: 256 palette entries of red, green and blue, written and read
//! three accesses at a time through ports 0x3C7–0x3C9, plus the pixel mask
//! at 0x3C6. Entries hold 6-bit values (8-bit when the Bochs VBE "8-bit DAC"
//! flag is set); they become 8-bit colours by bit replication.

/// DAC state as port 0x3C7 reads it.
const STATE_WRITE: u8 = 0x00;
const STATE_READ: u8 = 0x03;

#[derive(Clone)]
pub struct Dac {
    /// R, G, B of each entry, as the guest wrote them.
    pub palette: [u8; 768],
    pub pel_mask: u8,
    /// Entries are 8 bits wide (Bochs VBE ENABLE bit 5), else 6.
    pub eight_bit: bool,
    read_index: u8,
    write_index: u8,
    sub_index: usize,
    pending: [u8; 3],
    state: u8,
}

impl Default for Dac {
    fn default() -> Self {
        Dac {
            palette: [0; 768],
            pel_mask: 0xff,
            eight_bit: false,
            read_index: 0,
            write_index: 0,
            sub_index: 0,
            pending: [0; 3],
            state: STATE_WRITE,
        }
    }
}

/// A 6-bit DAC value as 8 bits (0x3F → 0xFF, 0x2A → 0xAA).
pub fn expand6(value: u8) -> u8 {
    let v = value & 0x3f;
    (v << 2) | (v >> 4)
}

impl Dac {
    pub fn state(&self) -> u8 {
        self.state
    }

    pub fn write_index(&self) -> u8 {
        self.write_index
    }

    pub fn set_read_index(&mut self, index: u8) {
        self.read_index = index;
        self.sub_index = 0;
        self.state = STATE_READ;
    }

    pub fn set_write_index(&mut self, index: u8) {
        self.write_index = index;
        self.sub_index = 0;
        self.state = STATE_WRITE;
    }

    /// Reads the next component of the entry at the read index.
    pub fn read_data(&mut self) -> u8 {
        let value = self.palette[usize::from(self.read_index) * 3 + self.sub_index];
        self.sub_index += 1;
        if self.sub_index == 3 {
            self.sub_index = 0;
            self.read_index = self.read_index.wrapping_add(1);
        }
        value
    }

    /// Writes the next component; returns whether an entry changed (after the blue one).
    pub fn write_data(&mut self, value: u8) -> bool {
        self.pending[self.sub_index] = value;
        self.sub_index += 1;
        if self.sub_index < 3 {
            return false;
        }
        self.sub_index = 0;
        let at = usize::from(self.write_index) * 3;
        self.write_index = self.write_index.wrapping_add(1);
        let entry = &mut self.palette[at..at + 3];
        let changed = entry != self.pending;
        entry.copy_from_slice(&self.pending);
        changed
    }

    /// The colour a pixel value shows, as 0x00RRGGBB (after the pixel mask).
    pub fn color(&self, pixel: u8) -> u32 {
        let at = usize::from(pixel & self.pel_mask) * 3;
        let component = |v: u8| u32::from(if self.eight_bit { v } else { expand6(v) });
        (component(self.palette[at]) << 16)
            | (component(self.palette[at + 1]) << 8)
            | component(self.palette[at + 2])
    }

    /// All 256 colours (see [`Dac::color`]).
    pub fn colors(&self) -> [u32; 256] {
        std::array::from_fn(|i| self.color(i as u8))
    }

    /// The 64-entry EGA-compatible palette a VGA BIOS loads for text modes:
    /// bits 0–2 are blue, green, red at 2/3 intensity, bits 3–5 add 1/3.
    pub fn load_ega_palette(&mut self) {
        for i in 0..64usize {
            let level = |primary: usize, secondary: usize| {
                (((i >> primary) & 1) * 0x2a + ((i >> secondary) & 1) * 0x15) as u8
            };
            self.palette[i * 3] = level(2, 5);
            self.palette[i * 3 + 1] = level(1, 4);
            self.palette[i * 3 + 2] = level(0, 3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_three_then_read_back() {
        let mut dac = Dac::default();
        dac.set_write_index(5);
        assert!(!dac.write_data(0x3f));
        assert!(!dac.write_data(0x00));
        assert!(dac.write_data(0x2a));
        assert_eq!(dac.write_index(), 6, "index advances after blue");
        assert_eq!(dac.color(5), 0xff00aa);
        dac.set_read_index(5);
        assert_eq!(dac.state(), STATE_READ);
        assert_eq!(
            [dac.read_data(), dac.read_data(), dac.read_data()],
            [0x3f, 0, 0x2a]
        );
        assert_eq!(dac.read_data(), 0, "entry 6 follows");
    }

    #[test]
    fn eight_bit_values_are_masked_in_six_bit_mode() {
        let mut dac = Dac::default();
        dac.set_write_index(0);
        for v in [0xaa, 0xaa, 0xaa] {
            dac.write_data(v);
        }
        assert_eq!(dac.color(0), 0xaaaaaa, "0xAA & 0x3F = 0x2A → 0xAA");
        dac.eight_bit = true;
        assert_eq!(dac.color(0), 0xaaaaaa);
        dac.set_write_index(0);
        for v in [0x12, 0x34, 0x56] {
            dac.write_data(v);
        }
        assert_eq!(dac.color(0), 0x123456);
    }

    #[test]
    fn index_wraps_and_pel_mask_applies() {
        let mut dac = Dac::default();
        dac.set_write_index(255);
        for v in [1, 2, 3, 4, 5, 6] {
            dac.write_data(v);
        }
        assert_eq!(dac.palette[765..768], [1, 2, 3]);
        assert_eq!(dac.palette[0..3], [4, 5, 6]);
        dac.pel_mask = 0x00;
        assert_eq!(dac.color(255), dac.color(0));
    }
}
