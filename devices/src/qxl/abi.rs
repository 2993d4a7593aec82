//! The QXL command structures a guest driver writes into device memory,
//! described once (spice-protocol's `qxl_dev.h`, native layout; sizes in
//! docs/qxl.md Appendix A, fields in §7). Every field is a little-endian
//! byte-array type, so the structures are packed (alignment 1, no padding)
//! and read and written the same on any host. The parser reads them out of
//! guest memory with [`FromBytes`]; the replay driver writes them with
//! [`IntoBytes`]. Pointers are `QXLPHYSICAL`s (a memslot-encoded `U64`).
//!
//! Union members (the draw operations, brush contents, cursor command
//! variants) are separate structures laid over the union's bytes.

use zerocopy::little_endian::{I16, I32, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::display::Rect;

/// Derives for every structure here.
macro_rules! abi {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy, Debug)]
        #[repr(C)]
        pub struct $name { $($(#[$fmeta])* pub $field: $ty,)* }
    };
}

abi! {
    /// `QXLRect`.
    pub struct QxlRect {
        pub top: I32,
        pub left: I32,
        pub bottom: I32,
        pub right: I32,
    }
}

impl From<QxlRect> for Rect {
    fn from(r: QxlRect) -> Rect {
        Rect::new(r.left.get(), r.top.get(), r.right.get(), r.bottom.get())
    }
}

impl QxlRect {
    pub fn new(top: i32, left: i32, bottom: i32, right: i32) -> QxlRect {
        QxlRect {
            top: top.into(),
            left: left.into(),
            bottom: bottom.into(),
            right: right.into(),
        }
    }
}

abi! {
    /// `QXLPoint`.
    pub struct QxlPoint {
        pub x: I32,
        pub y: I32,
    }
}

abi! {
    /// `QXLPoint16`.
    pub struct QxlPoint16 {
        pub x: I16,
        pub y: I16,
    }
}

abi! {
    /// `QXLDataChunk` header; `data_size` bytes follow it.
    pub struct QxlDataChunk {
        pub data_size: U32,
        pub prev_chunk: U64,
        pub next_chunk: U64,
    }
}

abi! {
    /// `QXLClip`: `data` points at a [`QxlClipRects`] when `kind` is 1.
    pub struct QxlClip {
        pub kind: U32,
        pub data: U64,
    }
}

abi! {
    /// `QXLClipRects`: the count, then a chunk list of `QXLRect`s.
    pub struct QxlClipRects {
        pub num_rects: U32,
        pub chunk: QxlDataChunk,
    }
}

abi! {
    /// `QXLDrawable` (native, 191 bytes); `u` is the operation's union,
    /// read as one of the `Qxl*` operation structures by `kind`.
    pub struct QxlDrawable {
        /// `QXLReleaseInfo`: the id the device hands back.
        pub release_info: U64,
        pub surface_id: U32,
        pub effect: u8,
        pub kind: u8,
        pub self_bitmap: u8,
        pub self_bitmap_area: QxlRect,
        pub bbox: QxlRect,
        pub clip: QxlClip,
        pub mm_time: U32,
        pub surfaces_dest: [I32; 3],
        pub surfaces_rects: [QxlRect; 3],
        pub u: [u8; 68],
    }
}

abi! {
    /// `QXLBrush`: type 0 none, 1 solid (`pattern` holds the colour in
    /// its low 32 bits), 2 pattern (`pattern` is an image, at `pos`).
    pub struct QxlBrush {
        pub kind: U32,
        pub pattern: U64,
        pub pos: QxlPoint,
    }
}

abi! {
    /// `QXLQMask`: a 1-bit image (`bitmap`, none if 0) at `pos`.
    pub struct QxlQMask {
        pub flags: u8,
        pub pos: QxlPoint,
        pub bitmap: U64,
    }
}

abi! {
    /// `QXLFill`.
    pub struct QxlFill {
        pub brush: QxlBrush,
        pub rop_descriptor: U16,
        pub mask: QxlQMask,
    }
}

abi! {
    /// `QXLOpaque`.
    pub struct QxlOpaque {
        pub src_bitmap: U64,
        pub src_area: QxlRect,
        pub brush: QxlBrush,
        pub rop_descriptor: U16,
        pub scale_mode: u8,
        pub mask: QxlQMask,
    }
}

abi! {
    /// `QXLCopy`, also `QXLBlend`.
    pub struct QxlCopy {
        pub src_bitmap: U64,
        pub src_area: QxlRect,
        pub rop_descriptor: U16,
        pub scale_mode: u8,
        pub mask: QxlQMask,
    }
}

abi! {
    /// `QXLCopyBits`.
    pub struct QxlCopyBits {
        pub src_pos: QxlPoint,
    }
}

abi! {
    /// `QXLBlackness`, `QXLWhiteness`, `QXLInvers`: a mask only.
    pub struct QxlMaskOnly {
        pub mask: QxlQMask,
    }
}

abi! {
    /// `QXLRop3`.
    pub struct QxlRop3 {
        pub src_bitmap: U64,
        pub src_area: QxlRect,
        pub brush: QxlBrush,
        pub rop3: u8,
        pub scale_mode: u8,
        pub mask: QxlQMask,
    }
}

abi! {
    /// `QXLLineAttr`: `style` points at `style_nseg` 32-bit dash lengths.
    pub struct QxlLineAttr {
        pub flags: u8,
        pub join_style: u8,
        pub end_style: u8,
        pub style_nseg: u8,
        pub width: I32,
        pub miter_limit: I32,
        pub style: U64,
    }
}

abi! {
    /// `QXLStroke`: `path` points at a [`QxlPath`].
    pub struct QxlStroke {
        pub path: U64,
        pub attr: QxlLineAttr,
        pub brush: QxlBrush,
        pub fore_mode: U16,
        pub back_mode: U16,
    }
}

abi! {
    /// `QXLPath`: segments (flags, count, points) in a chunk list.
    pub struct QxlPath {
        pub data_size: U32,
        pub chunk: QxlDataChunk,
    }
}

abi! {
    /// `QXLPathSeg` header; `count` [`QxlPoint`]s follow.
    pub struct QxlPathSeg {
        pub flags: U32,
        pub count: U32,
    }
}

abi! {
    /// `QXLText`: `string` points at a [`QxlString`].
    pub struct QxlText {
        pub string: U64,
        pub back_area: QxlRect,
        pub fore_brush: QxlBrush,
        pub back_brush: QxlBrush,
        pub fore_mode: U16,
        pub back_mode: U16,
    }
}

abi! {
    /// `QXLString`: `length` glyphs in a chunk list.
    pub struct QxlString {
        pub data_size: U32,
        pub length: U16,
        pub flags: U16,
        pub chunk: QxlDataChunk,
    }
}

abi! {
    /// `QXLRasterGlyph` header; its bitmap follows.
    pub struct QxlRasterGlyph {
        pub render_pos: QxlPoint,
        pub glyph_origin: QxlPoint,
        pub width: U16,
        pub height: U16,
    }
}

abi! {
    /// `QXLTransparent`.
    pub struct QxlTransparent {
        pub src_bitmap: U64,
        pub src_area: QxlRect,
        pub src_color: U32,
        pub true_color: U32,
    }
}

abi! {
    /// `QXLAlphaBlend`.
    pub struct QxlAlphaBlend {
        pub alpha_flags: U16,
        pub alpha: u8,
        pub src_bitmap: U64,
        pub src_area: QxlRect,
    }
}

abi! {
    /// `QXLComposite`: `flags` packs the operator, filters, repeats and
    /// component alpha; transforms point at a [`QxlTransform`] or are 0.
    pub struct QxlComposite {
        pub flags: U32,
        pub src: U64,
        pub src_transform: U64,
        pub mask: U64,
        pub mask_transform: U64,
        pub src_origin: QxlPoint16,
        pub mask_origin: QxlPoint16,
    }
}

abi! {
    /// `QXLTransform`: a 2x3 matrix of 16.16 fixed-point numbers.
    pub struct QxlTransform {
        pub t: [I32; 6],
    }
}

abi! {
    /// `QXLImageDescriptor`.
    pub struct QxlImageDescriptor {
        pub id: U64,
        pub kind: u8,
        pub flags: u8,
        pub width: U32,
        pub height: U32,
    }
}

abi! {
    /// `QXLImage` with a `QXLBitmap`; `data` is the pixels (flag DIRECT)
    /// or a chunk list, `palette` a [`QxlPalette`] or 0.
    pub struct QxlBitmapImage {
        pub descriptor: QxlImageDescriptor,
        pub format: u8,
        pub flags: u8,
        pub x: U32,
        pub y: U32,
        pub stride: U32,
        pub palette: U64,
        pub data: U64,
    }
}

abi! {
    /// `QXLImage` naming a surface.
    pub struct QxlSurfaceImage {
        pub descriptor: QxlImageDescriptor,
        pub surface_id: U32,
    }
}

abi! {
    /// `QXLImage` with QUIC data in a chunk list.
    pub struct QxlQuicImage {
        pub descriptor: QxlImageDescriptor,
        pub data_size: U32,
        pub chunk: QxlDataChunk,
    }
}

abi! {
    /// `QXLPalette` header; `num_ents` 32-bit entries follow.
    pub struct QxlPalette {
        pub unique: U64,
        pub num_ents: U16,
    }
}

abi! {
    /// `QXLSurfaceCmd` with its `QXLSurfaceCreate` (kind 0 create, 1
    /// destroy).
    pub struct QxlSurfaceCmd {
        pub release_info: U64,
        pub surface_id: U32,
        pub kind: u8,
        pub flags: U32,
        pub format: U32,
        pub width: U32,
        pub height: U32,
        pub stride: I32,
        pub data: U64,
    }
}

abi! {
    /// `QXLUpdateCmd`.
    pub struct QxlUpdateCmd {
        pub release_info: U64,
        pub area: QxlRect,
        pub update_id: U32,
        pub surface_id: U32,
    }
}

/// Bytes of a whole `QXLCursorCmd` (its 128 bytes of device data, which
/// the device never reads, included).
pub const CURSOR_CMD_SIZE: usize = 150;

abi! {
    /// The part of `QXLCursorCmd` the device reads: `kind` 0 set (at
    /// `pos`, `visible`, `shape` a [`QxlCursor`]), 1 move, 2 hide, 3 trail
    /// (`pos.x` is the length, `pos.y` the frequency).
    pub struct QxlCursorCmd {
        pub release_info: U64,
        pub kind: u8,
        pub pos: QxlPoint16,
        pub visible: u8,
        pub shape: U64,
    }
}

abi! {
    /// `QXLCursor`: its header, then its data in a chunk list.
    pub struct QxlCursor {
        pub unique: U64,
        pub kind: U16,
        pub width: U16,
        pub height: U16,
        pub hot_x: U16,
        pub hot_y: U16,
        pub data_size: U32,
        pub chunk: QxlDataChunk,
    }
}

abi! {
    /// `QXLMessage` header; NUL-terminated text follows.
    pub struct QxlMessage {
        pub release_info: U64,
    }
}

abi! {
    /// `QXLSurfaceCreate`, in the RAM header for `QXL_IO_CREATE_PRIMARY`.
    pub struct QxlSurfaceCreate {
        pub width: U32,
        pub height: U32,
        pub stride: I32,
        pub format: U32,
        pub position: U32,
        pub mouse_mode: U32,
        pub flags: U32,
        pub kind: U32,
        pub mem: U64,
    }
}

abi! {
    /// The RAM header's `update_area` and `update_surface`, for
    /// `QXL_IO_UPDATE_AREA`.
    pub struct QxlUpdateArea {
        pub area: QxlRect,
        pub surface_id: U32,
    }
}

abi! {
    /// `QXLMonitorsConfig` header; `count` [`QxlHead`]s follow.
    pub struct QxlMonitorsConfig {
        pub count: U16,
        pub max_allowed: U16,
    }
}

abi! {
    /// `QXLHead`.
    pub struct QxlHead {
        pub id: U32,
        pub surface_id: U32,
        pub width: U32,
        pub height: U32,
        pub x: U32,
        pub y: U32,
        pub flags: U32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    /// The sizes and offsets docs/qxl.md gives.
    #[test]
    fn layouts_match_the_documented_sizes() {
        assert_eq!(size_of::<QxlDrawable>(), 191);
        assert_eq!(offset_of!(QxlDrawable, u), 123);
        assert_eq!(offset_of!(QxlDrawable, clip), 47);
        assert_eq!(size_of::<QxlDataChunk>(), 20);
        assert_eq!(size_of::<QxlBrush>(), 20);
        assert_eq!(size_of::<QxlQMask>(), 17);
        assert_eq!(size_of::<QxlBitmapImage>(), 48);
        assert_eq!(size_of::<QxlSurfaceImage>(), 22);
        assert_eq!(size_of::<QxlQuicImage>(), 22 + 20);
        assert_eq!(size_of::<QxlPalette>(), 10);
        assert_eq!(size_of::<QxlSurfaceCmd>(), 41);
        assert_eq!(size_of::<QxlUpdateCmd>(), 32);
        assert_eq!(size_of::<QxlCursorCmd>(), 22);
        assert_eq!(size_of::<QxlCursor>(), 42);
        assert_eq!(size_of::<QxlMessage>(), 8);
        assert_eq!(size_of::<QxlTransform>(), 24);
        assert_eq!(size_of::<QxlRasterGlyph>(), 20);
        assert_eq!(size_of::<QxlLineAttr>(), 20);
        assert_eq!(size_of::<QxlSurfaceCreate>(), 40);
        assert_eq!(offset_of!(QxlSurfaceCreate, flags), 24);
        assert_eq!(size_of::<QxlUpdateArea>(), 20);
        assert_eq!(size_of::<QxlHead>(), 28);
        // Every operation fits the drawable's union.
        for size in [
            size_of::<QxlFill>(),
            size_of::<QxlOpaque>(),
            size_of::<QxlCopy>(),
            size_of::<QxlRop3>(),
            size_of::<QxlStroke>(),
            size_of::<QxlText>(),
            size_of::<QxlTransparent>(),
            size_of::<QxlAlphaBlend>(),
            size_of::<QxlComposite>(),
        ] {
            assert!(size <= 68, "{size}");
        }
        assert_eq!(size_of::<QxlText>(), 68);
        assert_eq!(offset_of!(QxlOpaque, mask), 47);
        assert_eq!(offset_of!(QxlRop3, mask), 46);
        assert_eq!(offset_of!(QxlAlphaBlend, src_area), 11);
        assert_eq!(offset_of!(QxlComposite, mask_origin), 40);
    }

    #[test]
    fn a_rect_reads_top_left_bottom_right() {
        let bytes: Vec<u8> = [1i32, 2, 3, 4]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let r = QxlRect::read_from_bytes(&bytes).unwrap();
        assert_eq!(Rect::from(r), Rect::new(2, 1, 4, 3));
        assert_eq!(QxlRect::new(1, 2, 3, 4).as_bytes(), &bytes[..]);
    }
}
