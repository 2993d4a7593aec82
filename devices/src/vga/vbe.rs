//! The Bochs VBE "DISPI" interface (ports 0x1CE index, 0x1CF/0x1D0 data):
//! resolution, depth, virtual size and panning offsets of a linear
//! framebuffer. Out-of-range values are clamped, never refused, the way
//! QEMU's VGA does it, so that whatever the guest writes, the visible area
//! `start + yres × line_length` stays inside the framebuffer memory.

pub const INDEX_PORT: u16 = 0x1ce;
pub const DATA_PORT: u16 = 0x1cf;
/// On x86 the data register is also decoded at 0x1D0.
pub const DATA_PORT_ALIAS: u16 = 0x1d0;

pub const INDEX_ID: u16 = 0x0;
pub const INDEX_XRES: u16 = 0x1;
pub const INDEX_YRES: u16 = 0x2;
pub const INDEX_BPP: u16 = 0x3;
pub const INDEX_ENABLE: u16 = 0x4;
pub const INDEX_BANK: u16 = 0x5;
pub const INDEX_VIRT_WIDTH: u16 = 0x6;
pub const INDEX_VIRT_HEIGHT: u16 = 0x7;
pub const INDEX_X_OFFSET: u16 = 0x8;
pub const INDEX_Y_OFFSET: u16 = 0x9;
pub const INDEX_VIDEO_MEMORY_64K: u16 = 0xa;
const REGISTER_COUNT: usize = 0xb;

pub const ID0: u16 = 0xb0c0;
pub const ID5: u16 = 0xb0c5;

pub const ENABLED: u16 = 0x01;
pub const GETCAPS: u16 = 0x02;
pub const DAC_8BIT: u16 = 0x20;
pub const LFB_ENABLED: u16 = 0x40;
pub const NOCLEARMEM: u16 = 0x80;

pub const MAX_XRES: u16 = 16000;
pub const MAX_YRES: u16 = 12000;
pub const MAX_BPP: u16 = 32;

/// What a data write asks the device to do besides storing registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VbeEffect {
    None,
    /// The mode (or where it is shown) changed: repaint.
    ModeChanged,
    /// The display was just enabled: repaint, and zero this many bytes at the
    /// start of the framebuffer first.
    EnabledClear(usize),
}

/// The linear framebuffer mode the registers describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VbeMode {
    pub width: u32,
    pub height: u32,
    /// 4, 8, 15, 16, 24 or 32.
    pub bpp: u32,
    /// Bytes from one line to the next.
    pub line_length: usize,
    /// Byte offset of the top-left visible pixel in the framebuffer.
    pub start: usize,
}

#[derive(Clone)]
pub struct Vbe {
    index: u16,
    regs: [u16; REGISTER_COUNT],
    /// Framebuffer bytes the modes may use.
    vbe_size: usize,
    line_length: usize,
    start: usize,
    bank_offset: usize,
}

impl Vbe {
    /// Registers after reset, for `vbe_size` bytes of framebuffer (at least 64 KiB).
    pub fn new(vbe_size: usize) -> Self {
        let mut regs = [0; REGISTER_COUNT];
        regs[usize::from(INDEX_ID)] = ID5;
        Vbe {
            index: 0,
            regs,
            vbe_size: vbe_size.max(64 * 1024),
            line_length: 0,
            start: 0,
            bank_offset: 0,
        }
    }

    fn reg(&self, index: u16) -> u16 {
        self.regs[usize::from(index)]
    }

    fn set(&mut self, index: u16, value: u16) {
        self.regs[usize::from(index)] = value;
    }

    pub fn enabled(&self) -> bool {
        self.reg(INDEX_ENABLE) & ENABLED != 0
    }

    pub fn dac_8bit(&self) -> bool {
        self.reg(INDEX_ENABLE) & DAC_8BIT != 0
    }

    /// Offset of the 64 KiB bank shown in the legacy window (banked modes).
    pub fn bank_offset(&self) -> usize {
        self.bank_offset
    }

    pub fn index(&self) -> u16 {
        self.index
    }

    pub fn write_index(&mut self, index: u16) {
        self.index = index;
    }

    /// The current mode, when enabled.
    pub fn mode(&self) -> Option<VbeMode> {
        self.enabled().then(|| VbeMode {
            width: u32::from(self.reg(INDEX_XRES)),
            height: u32::from(self.reg(INDEX_YRES)),
            bpp: u32::from(self.reg(INDEX_BPP)),
            line_length: self.line_length,
            start: self.start,
        })
    }

    pub fn read_data(&self) -> u16 {
        let getcaps = self.reg(INDEX_ENABLE) & GETCAPS != 0;
        match self.index {
            INDEX_XRES if getcaps => MAX_XRES,
            INDEX_YRES if getcaps => MAX_YRES,
            INDEX_BPP if getcaps => MAX_BPP,
            INDEX_VIDEO_MEMORY_64K => (self.vbe_size >> 16).min(usize::from(u16::MAX)) as u16,
            i if usize::from(i) < REGISTER_COUNT => self.reg(i),
            _ => 0,
        }
    }

    pub fn write_data(&mut self, value: u16) -> VbeEffect {
        match self.index {
            INDEX_ID => {
                if (ID0..=ID5).contains(&value) {
                    self.set(INDEX_ID, value);
                }
                VbeEffect::None
            }
            INDEX_XRES | INDEX_YRES | INDEX_BPP | INDEX_VIRT_WIDTH | INDEX_X_OFFSET
            | INDEX_Y_OFFSET => {
                self.set(self.index, value);
                self.fix_up();
                if self.enabled() {
                    VbeEffect::ModeChanged
                } else {
                    VbeEffect::None
                }
            }
            INDEX_BANK => {
                let banks = (self.vbe_size >> 16).max(1);
                let bank = usize::from(value) & (banks.next_power_of_two() - 1);
                let bank = bank.min(banks - 1);
                self.set(INDEX_BANK, bank as u16);
                self.bank_offset = bank << 16;
                VbeEffect::None
            }
            INDEX_ENABLE => self.write_enable(value),
            // VIRT_HEIGHT and VIDEO_MEMORY_64K are computed; others do not exist.
            _ => VbeEffect::None,
        }
    }

    fn write_enable(&mut self, value: u16) -> VbeEffect {
        let was_enabled = self.enabled();
        let mut effect = VbeEffect::ModeChanged;
        if value & ENABLED != 0 && !was_enabled {
            self.set(INDEX_VIRT_WIDTH, self.reg(INDEX_XRES));
            self.set(INDEX_X_OFFSET, 0);
            self.set(INDEX_Y_OFFSET, 0);
            self.set(INDEX_ENABLE, self.reg(INDEX_ENABLE) | ENABLED);
            self.fix_up();
            if value & NOCLEARMEM == 0 {
                let clear = usize::from(self.reg(INDEX_YRES)) * self.line_length;
                effect = VbeEffect::EnabledClear(clear.min(self.vbe_size));
            }
        } else {
            self.bank_offset = 0;
            if value & ENABLED == 0 && !was_enabled {
                effect = VbeEffect::None;
            }
        }
        self.set(INDEX_ENABLE, value);
        if value & ENABLED != 0 {
            self.fix_up();
        }
        effect
    }

    /// Clamps the registers to a mode that fits in the framebuffer.
    fn fix_up(&mut self) {
        if !self.enabled() {
            return;
        }
        let bits: u16 = match self.reg(INDEX_BPP) {
            bpp @ (4 | 8 | 16 | 24 | 32) => bpp,
            15 => 16,
            _ => {
                self.set(INDEX_BPP, 8);
                8
            }
        };
        let xres = (self.reg(INDEX_XRES) & !7).clamp(8, MAX_XRES);
        self.set(INDEX_XRES, xres);
        let virt_width = (self.reg(INDEX_VIRT_WIDTH) & !7).clamp(xres, MAX_XRES);
        self.set(INDEX_VIRT_WIDTH, virt_width);

        let line_length = usize::from(virt_width) * usize::from(bits) / 8;
        let max_y = self.vbe_size / line_length;
        let yres = usize::from(self.reg(INDEX_YRES))
            .clamp(1, usize::from(MAX_YRES))
            .min(max_y);
        self.set(INDEX_YRES, yres as u16);

        let x_offset = self.reg(INDEX_X_OFFSET).min(MAX_XRES);
        let y_offset = self.reg(INDEX_Y_OFFSET).min(MAX_YRES);
        self.set(INDEX_X_OFFSET, x_offset);
        self.set(INDEX_Y_OFFSET, y_offset);
        let x_bytes = |x: u16| usize::from(x) * usize::from(bits) / 8;
        let visible = yres * line_length;
        let mut start = x_bytes(x_offset) + usize::from(y_offset) * line_length;
        if start + visible > self.vbe_size {
            self.set(INDEX_Y_OFFSET, 0);
            start = x_bytes(x_offset);
            if start + visible > self.vbe_size {
                self.set(INDEX_X_OFFSET, 0);
                start = 0;
            }
        }
        self.set(INDEX_VIRT_HEIGHT, max_y.min(usize::from(u16::MAX)) as u16);
        self.line_length = line_length;
        self.start = start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn write(vbe: &mut Vbe, index: u16, value: u16) -> VbeEffect {
        vbe.write_index(index);
        vbe.write_data(value)
    }

    fn read(vbe: &mut Vbe, index: u16) -> u16 {
        vbe.write_index(index);
        vbe.read_data()
    }

    fn set_mode(vbe: &mut Vbe, x: u16, y: u16, bpp: u16, flags: u16) -> VbeEffect {
        write(vbe, INDEX_ENABLE, 0);
        write(vbe, INDEX_XRES, x);
        write(vbe, INDEX_YRES, y);
        write(vbe, INDEX_BPP, bpp);
        write(vbe, INDEX_ENABLE, ENABLED | flags)
    }

    /// The invariant every mode keeps: the visible area is inside the framebuffer.
    fn assert_fits(vbe: &Vbe) {
        if let Some(m) = vbe.mode() {
            let bits = if m.bpp == 15 { 16 } else { m.bpp as usize };
            let row_bytes = m.width as usize * bits / 8;
            assert!(m.width >= 8 && m.height >= 1, "{m:?}");
            assert!(row_bytes <= m.line_length, "{m:?}");
            let end = m.start + (m.height as usize - 1) * m.line_length;
            assert!(end + row_bytes <= vbe.vbe_size, "{m:?}");
            assert!(
                m.start + m.height as usize * m.line_length <= vbe.vbe_size,
                "{m:?}"
            );
        }
    }

    #[test]
    fn id_and_memory_size() {
        let mut vbe = Vbe::new(16 * MIB);
        assert_eq!(read(&mut vbe, INDEX_ID), ID5);
        write(&mut vbe, INDEX_ID, ID0 + 2);
        assert_eq!(read(&mut vbe, INDEX_ID), ID0 + 2);
        write(&mut vbe, INDEX_ID, 0x1234);
        assert_eq!(read(&mut vbe, INDEX_ID), ID0 + 2, "unknown ids are ignored");
        assert_eq!(read(&mut vbe, INDEX_VIDEO_MEMORY_64K), 256);
        assert_eq!(read(&mut vbe, 0x55), 0);
    }

    #[test]
    fn mode_set_1024x768x32() {
        let mut vbe = Vbe::new(16 * MIB);
        let effect = set_mode(&mut vbe, 1024, 768, 32, LFB_ENABLED);
        assert_eq!(effect, VbeEffect::EnabledClear(768 * 4096));
        let m = vbe.mode().unwrap();
        assert_eq!((m.width, m.height, m.bpp), (1024, 768, 32));
        assert_eq!((m.line_length, m.start), (4096, 0));
        assert_eq!(read(&mut vbe, INDEX_VIRT_WIDTH), 1024);
        assert_eq!(read(&mut vbe, INDEX_VIRT_HEIGHT), 4096);
        assert_eq!(
            set_mode(&mut vbe, 800, 600, 16, LFB_ENABLED | NOCLEARMEM),
            VbeEffect::ModeChanged
        );
        // Panning.
        write(&mut vbe, INDEX_Y_OFFSET, 600);
        assert_eq!(vbe.mode().unwrap().start, 600 * 1600);
    }

    #[test]
    fn getcaps_reports_maxima() {
        let mut vbe = Vbe::new(16 * MIB);
        write(&mut vbe, INDEX_ENABLE, GETCAPS);
        assert_eq!(read(&mut vbe, INDEX_XRES), MAX_XRES);
        assert_eq!(read(&mut vbe, INDEX_YRES), MAX_YRES);
        assert_eq!(read(&mut vbe, INDEX_BPP), 32);
        assert!(!vbe.enabled());
    }

    #[test]
    fn hostile_values_are_clamped_into_memory() {
        let mut vbe = Vbe::new(16 * MIB);
        assert_eq!(
            set_mode(&mut vbe, 0xffff, 0xffff, 0xffff, 0),
            VbeEffect::EnabledClear(16000 * 1048)
        );
        let m = vbe.mode().unwrap();
        assert_eq!(m.bpp, 8, "unknown depth becomes 8");
        assert_eq!(m.width, 16000);
        assert_eq!(m.height as usize, 16 * MIB / 16000);
        assert_fits(&vbe);

        set_mode(&mut vbe, 0, 0, 15, 0);
        let m = vbe.mode().unwrap();
        assert_eq!((m.width, m.height, m.line_length), (8, 1, 16));
        assert_fits(&vbe);

        // Offsets that would show memory past the end are reset.
        set_mode(&mut vbe, 1024, 768, 32, 0);
        write(&mut vbe, INDEX_VIRT_WIDTH, 2048);
        write(&mut vbe, INDEX_Y_OFFSET, 5000);
        assert_eq!(read(&mut vbe, INDEX_Y_OFFSET), 0);
        write(&mut vbe, INDEX_X_OFFSET, 0xffff);
        assert_eq!(read(&mut vbe, INDEX_X_OFFSET), MAX_XRES);
        assert_fits(&vbe);

        // Every combination stays inside.
        let values = [
            0u16, 1, 7, 8, 15, 100, 640, 1023, 4096, 12000, 16000, 0x8000, 0xffff,
        ];
        for bpp in [0u16, 4, 8, 15, 16, 24, 32, 33, 0xffff] {
            for &x in &values {
                for &y in &values {
                    set_mode(&mut vbe, x, y, bpp, NOCLEARMEM);
                    for &o in &values {
                        write(&mut vbe, INDEX_X_OFFSET, o);
                        write(&mut vbe, INDEX_Y_OFFSET, o);
                        write(&mut vbe, INDEX_VIRT_WIDTH, o);
                        assert_fits(&vbe);
                    }
                }
            }
        }
    }

    #[test]
    fn tiny_memory_still_fits() {
        let mut vbe = Vbe::new(0);
        set_mode(&mut vbe, 1024, 768, 32, 0);
        assert_fits(&vbe);
        assert_eq!(vbe.mode().unwrap().height, 16, "64 KiB / 4096");
    }

    #[test]
    fn bank_is_bounded_and_disable_resets_it() {
        let mut vbe = Vbe::new(16 * MIB);
        write(&mut vbe, INDEX_BANK, 0xffff);
        assert_eq!(vbe.bank_offset(), 255 << 16);
        set_mode(&mut vbe, 640, 480, 8, 0);
        write(&mut vbe, INDEX_BANK, 3);
        write(&mut vbe, INDEX_ENABLE, 0);
        assert_eq!(vbe.bank_offset(), 0);
        assert!(vbe.mode().is_none());
    }

    #[test]
    fn dac_width_latches_from_enable() {
        let mut vbe = Vbe::new(16 * MIB);
        set_mode(&mut vbe, 640, 480, 8, DAC_8BIT);
        assert!(vbe.dac_8bit());
        write(&mut vbe, INDEX_ENABLE, ENABLED);
        assert!(!vbe.dac_8bit());
    }
}
