//! Raster operations on whole 32-bit pixels: QXL/SPICE ROP descriptors
//! (docs/qxl.md §7.6) and Windows ternary ROP3 codes.

/// A ROP descriptor (`SpiceRopd`): which inputs to invert, one operation,
/// whether to invert the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ropd(pub u16);

impl Ropd {
    pub const INVERS_SRC: u16 = 1 << 0;
    pub const INVERS_BRUSH: u16 = 1 << 1;
    pub const INVERS_DEST: u16 = 1 << 2;
    pub const OP_PUT: u16 = 1 << 3;
    pub const OP_OR: u16 = 1 << 4;
    pub const OP_AND: u16 = 1 << 5;
    pub const OP_XOR: u16 = 1 << 6;
    pub const OP_BLACKNESS: u16 = 1 << 7;
    pub const OP_WHITENESS: u16 = 1 << 8;
    pub const OP_INVERS: u16 = 1 << 9;
    pub const INVERS_RES: u16 = 1 << 10;

    pub const PUT: Ropd = Ropd(Self::OP_PUT);

    /// Plain copy of the input: the fast path.
    pub fn is_plain_put(self) -> bool {
        self.op() == Self::OP_PUT
            && self.0 & (Self::INVERS_SRC | Self::INVERS_BRUSH | Self::INVERS_RES) == 0
    }

    fn op(self) -> u16 {
        for op in [
            Self::OP_PUT,
            Self::OP_OR,
            Self::OP_AND,
            Self::OP_XOR,
            Self::OP_BLACKNESS,
            Self::OP_WHITENESS,
            Self::OP_INVERS,
        ] {
            if self.0 & op != 0 {
                return op;
            }
        }
        Self::OP_PUT
    }

    /// Whether the result depends on the destination.
    pub fn reads_dest(self) -> bool {
        matches!(
            self.op(),
            Self::OP_OR | Self::OP_AND | Self::OP_XOR | Self::OP_INVERS
        )
    }

    /// `s` is the operation's input (inverted when the `input_invert` bit is
    /// set), `d` the destination (inverted when `dest_invert` is set).
    pub fn apply(self, s: u32, d: u32, input_invert: u16, dest_invert: u16) -> u32 {
        let s = if self.0 & input_invert != 0 { !s } else { s };
        let dd = if self.0 & dest_invert != 0 { !d } else { d };
        let r = match self.op() {
            Self::OP_OR => s | dd,
            Self::OP_AND => s & dd,
            Self::OP_XOR => s ^ dd,
            Self::OP_BLACKNESS => 0,
            Self::OP_WHITENESS => u32::MAX,
            Self::OP_INVERS => !d,
            _ => s,
        };
        if self.0 & Self::INVERS_RES != 0 {
            !r
        } else {
            r
        }
    }
}

/// A ternary raster operation: bit `(p << 2) | (s << 1) | d` of `code` is
/// the result for brush bit p, source bit s and destination bit d.
pub fn rop3(code: u8, p: u32, s: u32, d: u32) -> u32 {
    let mut r = 0;
    for i in 0..8 {
        if code & (1 << i) != 0 {
            let pp = if i & 4 != 0 { p } else { !p };
            let ss = if i & 2 != 0 { s } else { !s };
            let dd = if i & 1 != 0 { d } else { !d };
            r |= pp & ss & dd;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors() {
        let put = Ropd(Ropd::OP_PUT);
        assert_eq!(
            put.apply(0x12, 0x34, Ropd::INVERS_SRC, Ropd::INVERS_DEST),
            0x12
        );
        assert!(put.is_plain_put());
        let xor = Ropd(Ropd::OP_XOR);
        assert_eq!(
            xor.apply(0xff00, 0x0ff0, Ropd::INVERS_SRC, Ropd::INVERS_DEST),
            0xf0f0
        );
        let or_inv_src = Ropd(Ropd::OP_OR | Ropd::INVERS_SRC);
        assert_eq!(
            or_inv_src.apply(
                0xffff_00ff,
                0x0000_0f00,
                Ropd::INVERS_SRC,
                Ropd::INVERS_DEST
            ),
            0x0000_ff00 | 0x0f00
        );
        let and_res = Ropd(Ropd::OP_AND | Ropd::INVERS_RES);
        assert_eq!(
            and_res.apply(0xf0, 0xff, Ropd::INVERS_SRC, Ropd::INVERS_DEST),
            !0xf0
        );
        assert_eq!(Ropd(Ropd::OP_BLACKNESS).apply(1, 2, 1, 4), 0);
        assert_eq!(Ropd(Ropd::OP_WHITENESS).apply(1, 2, 1, 4), u32::MAX);
        assert_eq!(Ropd(Ropd::OP_INVERS).apply(1, 2, 1, 4), !2);
        assert_eq!(Ropd(0).apply(7, 2, 1, 4), 7, "no op bit means PUT");
        assert!(!Ropd(Ropd::OP_PUT | Ropd::INVERS_SRC).is_plain_put());
    }

    #[test]
    fn rop3_codes() {
        let (p, s, d) = (0xf0f0_f0f0, 0xcccc_cccc, 0xaaaa_aaaa);
        assert_eq!(rop3(0xcc, p, s, d), s, "SRCCOPY");
        assert_eq!(rop3(0xf0, p, s, d), p, "PATCOPY");
        assert_eq!(rop3(0x66, p, s, d), s ^ d, "SRCINVERT");
        assert_eq!(rop3(0x88, p, s, d), s & d, "SRCAND");
        assert_eq!(rop3(0x55, p, s, d), !d, "DSTINVERT");
        assert_eq!(rop3(0x00, p, s, d), 0, "BLACKNESS");
        assert_eq!(rop3(0xff, p, s, d), u32::MAX, "WHITENESS");
        assert_eq!(rop3(0x5a, p, s, d), p ^ d, "PATINVERT");
        assert_eq!(rop3(0xb8, p, s, d), (p & !s) | (d & s), "PSDPxax");
    }
}
