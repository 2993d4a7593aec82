//! The events of a libspice `SPICE_REPLAY 1` recording as owned Rust values
//! (libspice-server's record format, docs/replay-format.md §3–§5).
//!
//! The shapes follow the recorded QXL structures closely (rectangles keep
//! QXL's top/left/bottom/right order, chunk lists keep their chunk
//! boundaries, null pointers are `None`) so that [`super::reader`] and
//! [`super::writer`] are exact inverses and [`super::guest`] can lay every
//! structure out in device memory the way a guest driver would.

/// A `QXLRect` as recorded: top, left, bottom, right.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QRect {
    pub top: i32,
    pub left: i32,
    pub bottom: i32,
    pub right: i32,
}

impl QRect {
    pub fn new(left: i32, top: i32, right: i32, bottom: i32) -> QRect {
        QRect {
            top,
            left,
            bottom,
            right,
        }
    }
}

/// A `QXLPoint` (or, for the 16-bit variants, a `QXLPoint16`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QPoint {
    pub x: i32,
    pub y: i32,
}

/// A QXLDataChunk list: one byte vector per chunk (at least one).
pub type Chunks = Vec<Vec<u8>>;

/// Total bytes of a chunk list.
pub fn chunks_len(chunks: &Chunks) -> u64 {
    chunks.iter().map(|c| c.len() as u64).sum()
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The recorder's counter (informative; not trusted).
    pub counter: u32,
    /// `CLOCK_MONOTONIC` nanoseconds when the recorder saw it.
    pub timestamp: u64,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A command taken from the command or cursor ring (WHAT = 0).
    Command(Command),
    /// A message of the QXL device to the display worker (WHAT = 1); see
    /// [`message`] for the numbers. Only primary creates carry a body.
    Device {
        message: u32,
        primary: Option<PrimaryCreate>,
    },
}

/// `RED_WORKER_MESSAGE_*` numbers (spice-server 0.12 – 0.15).
pub mod message {
    pub const UPDATE: u32 = 1;
    pub const WAKEUP: u32 = 2;
    pub const OOM: u32 = 3;
    pub const START: u32 = 8;
    pub const STOP: u32 = 9;
    pub const ADD_MEMSLOT: u32 = 16;
    pub const DEL_MEMSLOT: u32 = 17;
    pub const RESET_MEMSLOTS: u32 = 18;
    pub const DESTROY_SURFACES: u32 = 19;
    pub const CREATE_PRIMARY_SURFACE: u32 = 20;
    pub const DESTROY_PRIMARY_SURFACE: u32 = 21;
    pub const RESET_CURSOR: u32 = 22;
    pub const RESET_IMAGE_CACHE: u32 = 23;
    pub const DESTROY_SURFACE_WAIT: u32 = 24;
    pub const UPDATE_ASYNC: u32 = 26;
    pub const ADD_MEMSLOT_ASYNC: u32 = 27;
    pub const DESTROY_SURFACES_ASYNC: u32 = 28;
    pub const CREATE_PRIMARY_SURFACE_ASYNC: u32 = 29;
    pub const DESTROY_PRIMARY_SURFACE_ASYNC: u32 = 30;
    pub const DESTROY_SURFACE_WAIT_ASYNC: u32 = 31;
    pub const FLUSH_SURFACES_ASYNC: u32 = 32;
    pub const MONITORS_CONFIG_ASYNC: u32 = 35;
    pub const DRIVER_UNLOAD: u32 = 36;
    /// The highest number spice-server 0.15 has.
    pub const LAST: u32 = 40;
}

/// The body of a create-primary message (`QXLDevSurfaceCreate` + the dump of
/// the surface memory, lowest address first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryCreate {
    pub width: u32,
    pub height: u32,
    pub stride: i32,
    pub format: u32,
    pub position: u32,
    pub mouse_mode: u32,
    pub flags: u32,
    pub kind: u32,
    pub data: Vec<u8>,
}

/// QXL command types (the TYPE of a WHAT = 0 event).
pub mod command {
    pub const NOP: u32 = 0;
    pub const DRAW: u32 = 1;
    pub const UPDATE: u32 = 2;
    pub const CURSOR: u32 = 3;
    pub const MESSAGE: u32 = 4;
    pub const SURFACE: u32 = 5;
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// NOP or a type the recorder writes no body for.
    Empty(u32),
    Draw(Box<Drawable>),
    Update(UpdateCmd),
    Cursor(CursorCmd),
    /// The guest's debug text (no NUL).
    Message(Vec<u8>),
    Surface(SurfaceCmd),
}

impl Command {
    pub fn type_number(&self) -> u32 {
        match self {
            Command::Empty(t) => *t,
            Command::Draw(_) => command::DRAW,
            Command::Update(_) => command::UPDATE,
            Command::Cursor(_) => command::CURSOR,
            Command::Message(_) => command::MESSAGE,
            Command::Surface(_) => command::SURFACE,
        }
    }
}

/// `QXLDrawable` (native) or `QXLCompatDrawable`.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawable {
    pub bbox: QRect,
    /// `None`: no clip; else `(num_rects, the rectangles' chunk list)`.
    pub clip: Option<(u32, Chunks)>,
    pub effect: u8,
    pub mm_time: u32,
    pub layout: DrawableLayout,
    pub op: DrawOp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrawableLayout {
    Native {
        self_bitmap: u8,
        self_bitmap_area: QRect,
        surface_id: u32,
        surfaces_dest: [i32; 3],
        surfaces_rects: [QRect; 3],
    },
    /// Old (QXL revision 1) drivers; recognised so it can be skipped.
    Compat {
        bitmap_offset: u32,
        bitmap_area: QRect,
    },
}

/// Draw types (`QXLDrawable.type`).
pub mod draw {
    pub const NOP: u8 = 0;
    pub const FILL: u8 = 1;
    pub const OPAQUE: u8 = 2;
    pub const COPY: u8 = 3;
    pub const COPY_BITS: u8 = 4;
    pub const BLEND: u8 = 5;
    pub const BLACKNESS: u8 = 6;
    pub const WHITENESS: u8 = 7;
    pub const INVERS: u8 = 8;
    pub const ROP3: u8 = 9;
    pub const STROKE: u8 = 10;
    pub const TEXT: u8 = 11;
    pub const TRANSPARENT: u8 = 12;
    pub const ALPHA_BLEND: u8 = 13;
    pub const COMPOSITE: u8 = 14;
}

#[derive(Debug, Clone, PartialEq)]
pub enum Brush {
    None,
    Solid(u32),
    Pattern { image: Option<Image>, pos: QPoint },
}

#[derive(Debug, Clone, PartialEq)]
pub struct QMask {
    pub flags: u8,
    pub pos: QPoint,
    pub bitmap: Option<Image>,
}

/// COPY and BLEND.
#[derive(Debug, Clone, PartialEq)]
pub struct Blit {
    pub src: Option<Image>,
    pub src_area: QRect,
    pub rop_descriptor: u16,
    pub scale_mode: u8,
    pub mask: QMask,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DrawOp {
    Nop,
    Fill {
        brush: Brush,
        rop_descriptor: u16,
        mask: QMask,
    },
    Opaque {
        src: Option<Image>,
        src_area: QRect,
        brush: Brush,
        rop_descriptor: u16,
        scale_mode: u8,
        mask: QMask,
    },
    Copy(Blit),
    CopyBits {
        src_pos: QPoint,
    },
    Blend(Blit),
    Blackness(QMask),
    Whiteness(QMask),
    Invers(QMask),
    Rop3 {
        src: Option<Image>,
        src_area: QRect,
        brush: Brush,
        rop3: u8,
        scale_mode: u8,
        mask: QMask,
    },
    Stroke {
        /// The raw `QXLPathSeg` stream.
        path: Chunks,
        attr_flags: u8,
        /// `(style_nseg, nseg × 4 bytes of 28.4 fixed point)` when STYLED.
        style: Option<(u8, Vec<u8>)>,
        brush: Brush,
        fore_mode: u16,
        back_mode: u16,
    },
    Text {
        string: GlyphString,
        back_area: QRect,
        fore_brush: Brush,
        back_brush: Brush,
        fore_mode: u16,
        back_mode: u16,
    },
    Transparent {
        src: Option<Image>,
        src_area: QRect,
        src_color: u32,
        true_color: u32,
    },
    AlphaBlend {
        /// Absent in compat drawables.
        alpha_flags: Option<u16>,
        alpha: u8,
        src: Option<Image>,
        src_area: QRect,
    },
    Composite(Box<Composite>),
}

impl DrawOp {
    pub fn type_number(&self) -> u8 {
        match self {
            DrawOp::Nop => draw::NOP,
            DrawOp::Fill { .. } => draw::FILL,
            DrawOp::Opaque { .. } => draw::OPAQUE,
            DrawOp::Copy(_) => draw::COPY,
            DrawOp::CopyBits { .. } => draw::COPY_BITS,
            DrawOp::Blend(_) => draw::BLEND,
            DrawOp::Blackness(_) => draw::BLACKNESS,
            DrawOp::Whiteness(_) => draw::WHITENESS,
            DrawOp::Invers(_) => draw::INVERS,
            DrawOp::Rop3 { .. } => draw::ROP3,
            DrawOp::Stroke { .. } => draw::STROKE,
            DrawOp::Text { .. } => draw::TEXT,
            DrawOp::Transparent { .. } => draw::TRANSPARENT,
            DrawOp::AlphaBlend { .. } => draw::ALPHA_BLEND,
            DrawOp::Composite(_) => draw::COMPOSITE,
        }
    }
}

/// `QXLString`: the raw `QXLRasterGlyph` stream.
#[derive(Debug, Clone, PartialEq)]
pub struct GlyphString {
    pub data_size: u32,
    pub length: u16,
    pub flags: u16,
    pub chunks: Chunks,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Composite {
    pub flags: u32,
    pub src: Option<Image>,
    /// 24 bytes (a `SpiceTransform`) when present.
    pub src_transform: Option<Vec<u8>>,
    pub mask: Option<Image>,
    pub mask_transform: Option<Vec<u8>>,
    pub src_origin: QPoint,
    pub mask_origin: QPoint,
}

/// Image descriptor types.
pub mod image_type {
    pub const BITMAP: u8 = 0;
    pub const QUIC: u8 = 1;
    pub const SURFACE: u8 = 104;
}

/// `QXLBitmap.flags` bits.
pub const BITMAP_DIRECT: u8 = 1;
pub const BITMAP_TOP_DOWN: u8 = 4;

/// `QXLImage`.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub id: u64,
    pub flags: u8,
    pub width: u32,
    pub height: u32,
    pub body: ImageBody,
}

impl Image {
    pub fn type_number(&self) -> u8 {
        match self.body {
            ImageBody::Bitmap(_) => image_type::BITMAP,
            ImageBody::Quic { .. } => image_type::QUIC,
            ImageBody::Surface(_) => image_type::SURFACE,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImageBody {
    Bitmap(Bitmap),
    Quic { data_size: u32, chunks: Chunks },
    Surface(u32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bitmap {
    pub format: u8,
    /// `BITMAP_*` bits; with `BITMAP_DIRECT` the data is one flat blob.
    pub flags: u8,
    pub x: u32,
    pub y: u32,
    pub stride: u32,
    pub palette: Option<Palette>,
    /// `y * stride` bytes: one element when DIRECT, else the chunk list.
    pub data: Chunks,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Palette {
    pub unique: u64,
    pub ents: Vec<u32>,
}

/// `QXLUpdateCmd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateCmd {
    pub area: QRect,
    pub update_id: u32,
    pub surface_id: u32,
}

/// `QXLCursorCmd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorCmd {
    Set {
        pos: QPoint,
        visible: u8,
        shape: CursorShape,
    },
    Move {
        pos: QPoint,
    },
    Hide,
    Trail {
        length: u16,
        frequency: u16,
    },
}

/// `QXLCursor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorShape {
    pub unique: u64,
    pub kind: u16,
    pub width: u16,
    pub height: u16,
    pub hot_x: u16,
    pub hot_y: u16,
    /// As recorded (replay uses the chunk total, like spice's replayer).
    pub data_size: u32,
    pub chunks: Chunks,
}

/// `QXLSurfaceCmd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurfaceCmd {
    pub surface_id: u32,
    pub flags: u32,
    pub kind: SurfaceCmdKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SurfaceCmdKind {
    Create {
        format: u32,
        width: u32,
        height: u32,
        stride: i32,
        /// `height * |stride|` bytes, only with `QXL_SURF_FLAG_KEEP_DATA`.
        data: Option<Vec<u8>>,
    },
    Destroy,
}
