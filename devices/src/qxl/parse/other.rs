//! Surface, cursor, update and message commands (docs/qxl.md §7.8,
//! §7.10-§7.12).

use core::mem::{offset_of, size_of};

use super::{check_rect, invalid, ParseError, Parser, MAX_CURSOR_SIDE};
use crate::qxl::abi::{QxlCursor, QxlCursorCmd, QxlMessage, QxlSurfaceCmd, QxlUpdateCmd};
use crate::qxl::commands::{CursorCmd, CursorImage, SurfaceCmd, UpdateCmd};

const CURSOR_SET: u8 = 0;
const CURSOR_MOVE: u8 = 1;
const CURSOR_HIDE: u8 = 2;
const CURSOR_TRAIL: u8 = 3;

/// Bytes of cursor data a type needs: pixels (+ palette) + AND mask.
pub fn cursor_data_size(kind: u16, width: u16, height: u16) -> Option<u64> {
    let (w, h) = (u64::from(width), u64::from(height));
    let mask = h * w.div_ceil(8);
    Some(match kind {
        0 => w * h * 4,
        1 => 2 * mask,
        2 => h * w.div_ceil(2) + 16 * 4 + mask,
        3 => w * h + 256 * 4 + mask,
        4 => w * h * 2 + mask,
        5 => w * h * 3 + mask,
        6 => w * h * 4 + mask,
        _ => return None,
    })
}

impl Parser<'_> {
    pub fn surface_cmd(&self, addr: u64) -> Result<SurfaceCmd, ParseError> {
        let s: QxlSurfaceCmd = self.read(addr, "surface command")?;
        let surface_id = self.check_surface_id(s.surface_id.get(), "surface command")?;
        match s.kind {
            0 => Ok(SurfaceCmd::Create {
                surface_id,
                keep_data: s.flags.get() & crate::qxl::defs::SURF_FLAG_KEEP_DATA != 0,
                format: s.format.get(),
                width: s.width.get(),
                height: s.height.get(),
                stride: s.stride.get(),
                data: s.data.get(),
            }),
            1 => Ok(SurfaceCmd::Destroy { surface_id }),
            other => Err(invalid("surface command", format!("type {other}"))),
        }
    }

    pub fn cursor_cmd(&self, addr: u64) -> Result<CursorCmd, ParseError> {
        let c: QxlCursorCmd = self.read(addr, "cursor command")?;
        let (x, y) = (c.pos.x.get(), c.pos.y.get());
        match c.kind {
            CURSOR_SET => Ok(CursorCmd::Set {
                x,
                y,
                visible: c.visible != 0,
                image: self.cursor_image(c.shape.get())?,
            }),
            CURSOR_MOVE => Ok(CursorCmd::Move { x, y }),
            CURSOR_HIDE => Ok(CursorCmd::Hide),
            CURSOR_TRAIL => Ok(CursorCmd::Trail {
                length: x as u16,
                frequency: y as u16,
            }),
            other => Err(invalid("cursor command", format!("type {other}"))),
        }
    }

    fn cursor_image(&self, addr: u64) -> Result<CursorImage, ParseError> {
        const WHAT: &str = "cursor shape";
        // Header read once (CVE-2021-4207): everything below uses this copy.
        let h: QxlCursor = self.read(addr, WHAT)?;
        let (kind, width, height) = (h.kind.get(), h.width.get(), h.height.get());
        if width == 0 || height == 0 || width > MAX_CURSOR_SIDE || height > MAX_CURSOR_SIDE {
            return Err(invalid(WHAT, format!("size {width}x{height}")));
        }
        let expected = cursor_data_size(kind, width, height)
            .ok_or_else(|| invalid(WHAT, format!("cursor type {kind}")))?;
        let largest = cursor_data_size(6, MAX_CURSOR_SIDE, MAX_CURSOR_SIDE).unwrap_or(0);
        let chunk = addr
            .checked_add(offset_of!(QxlCursor, chunk) as u64)
            .filter(|a| a >> 48 == addr >> 48)
            .ok_or_else(|| invalid(WHAT, "address overflows its slot"))?;
        let data = self.chunks(chunk, largest, WHAT)?;
        if data.len() < expected {
            return Err(invalid(
                WHAT,
                format!(
                    "{} bytes of data, type {kind} {width}x{height} needs {expected}",
                    data.len()
                ),
            ));
        }
        let mut bytes = vec![0u8; expected as usize];
        if !data.read(self.memory, 0, &mut bytes) {
            return Err(invalid(WHAT, "unreadable"));
        }
        Ok(CursorImage {
            unique: h.unique.get(),
            kind,
            width,
            height,
            hot_x: h.hot_x.get(),
            hot_y: h.hot_y.get(),
            data: bytes,
        })
    }

    pub fn update_cmd(&self, addr: u64) -> Result<UpdateCmd, ParseError> {
        let u: QxlUpdateCmd = self.read(addr, "update command")?;
        Ok(UpdateCmd {
            area: check_rect(u.area.into(), "update command")?,
            update_id: u.update_id.get(),
            surface_id: self.check_surface_id(u.surface_id.get(), "update command")?,
        })
    }

    /// The text of a `QXLMessage` (for the log): up to 256 bytes, to the first NUL.
    pub fn message(&self, addr: u64) -> Result<String, ParseError> {
        let text_addr = addr
            .checked_add(size_of::<QxlMessage>() as u64)
            .filter(|a| a >> 48 == addr >> 48)
            .ok_or_else(|| invalid("message", "address overflows its slot"))?;
        for len in [256u64, 64, 16, 1] {
            if let Ok(range) = self.translate(text_addr, len, "message") {
                let mut bytes = vec![0u8; len as usize];
                self.memory.read(range, 0, &mut bytes);
                let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                return Ok(String::from_utf8_lossy(&bytes[..end]).into_owned());
            }
        }
        Err(invalid("message", "unreadable"))
    }
}
