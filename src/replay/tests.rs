//! Tests of the record format (round trip, every validation rule) and of
//! replaying through the real QXL device.

use std::io::Write;
use std::time::Duration;

use super::model::*;
use super::reader::{Item, Limits, ReadError, Reader};
use super::writer::{write_event, HEADER};
use super::{Pace, Player, PlayerOptions};
use devices::qxl::QxlConfig;

// ---- building recordings ----------------------------------------------------------------

fn file(events: &[Event]) -> Vec<u8> {
    let mut out = HEADER.to_vec();
    for e in events {
        write_event(&mut out, e);
    }
    out
}

fn ev(counter: u32, kind: EventKind) -> Event {
    Event {
        counter,
        timestamp: 1_000_000 * u64::from(counter),
        kind,
    }
}

fn device(counter: u32, message: u32) -> Event {
    ev(
        counter,
        EventKind::Device {
            message,
            primary: None,
        },
    )
}

fn cmd(counter: u32, c: Command) -> Event {
    ev(counter, EventKind::Command(c))
}

fn primary(counter: u32, w: u32, h: u32, pixel: impl Fn(u32, u32) -> u32) -> Event {
    let mut data = Vec::new();
    for y in 0..h {
        for x in 0..w {
            data.extend_from_slice(&pixel(x, y).to_le_bytes());
        }
    }
    ev(
        counter,
        EventKind::Device {
            message: message::CREATE_PRIMARY_SURFACE_ASYNC,
            primary: Some(PrimaryCreate {
                width: w,
                height: h,
                stride: (w * 4) as i32,
                format: 32,
                position: 0,
                mouse_mode: 1,
                flags: 1,
                kind: 0,
                data,
            }),
        },
    )
}

fn no_mask() -> QMask {
    QMask {
        flags: 0,
        pos: QPoint::default(),
        bitmap: None,
    }
}

fn bitmap32(w: u32, h: u32, flags: u8, pixel: impl Fn(u32, u32) -> u32) -> Image {
    let mut data = Vec::new();
    for y in 0..h {
        for x in 0..w {
            data.extend_from_slice(&pixel(x, y).to_le_bytes());
        }
    }
    // Two chunks when chunked, to exercise the lists.
    let data = if flags & BITMAP_DIRECT != 0 || data.len() < 8 {
        vec![data]
    } else {
        let half = (data.len() / 2) & !3;
        vec![data[..half].to_vec(), data[half..].to_vec()]
    };
    Image {
        id: 0,
        flags: 0,
        width: w,
        height: h,
        body: ImageBody::Bitmap(Bitmap {
            format: 8,
            flags,
            x: w,
            y: h,
            stride: w * 4,
            palette: None,
            data,
        }),
    }
}

fn native(surface_id: u32) -> DrawableLayout {
    DrawableLayout::Native {
        self_bitmap: 0,
        self_bitmap_area: QRect::default(),
        surface_id,
        surfaces_dest: [-1; 3],
        surfaces_rects: [QRect::default(); 3],
    }
}

fn clip_rects(rects: &[QRect]) -> Option<(u32, Chunks)> {
    let bytes = rects
        .iter()
        .flat_map(|r| {
            [r.top, r.left, r.bottom, r.right]
                .into_iter()
                .flat_map(i32::to_le_bytes)
        })
        .collect();
    Some((rects.len() as u32, vec![bytes]))
}

fn draw(counter: u32, surface: u32, bbox: QRect, clip: Option<(u32, Chunks)>, op: DrawOp) -> Event {
    cmd(
        counter,
        Command::Draw(Box::new(Drawable {
            bbox,
            clip,
            effect: 1,
            mm_time: 0,
            layout: native(surface),
            op,
        })),
    )
}

fn copy(image: Image, w: i32, h: i32) -> DrawOp {
    DrawOp::Copy(Blit {
        src: Some(image),
        src_area: QRect::new(0, 0, w, h),
        rop_descriptor: 8,
        scale_mode: 0,
        mask: no_mask(),
    })
}

fn fill(color: u32) -> DrawOp {
    DrawOp::Fill {
        brush: Brush::Solid(color),
        rop_descriptor: 8,
        mask: no_mask(),
    }
}

/// Every kind of event and sub-structure the format has.
fn every_kind() -> Vec<Event> {
    let img = bitmap32(3, 2, BITMAP_TOP_DOWN, |x, y| x + 10 * y);
    let mono = Image {
        id: 7,
        flags: 1,
        width: 8,
        height: 2,
        body: ImageBody::Bitmap(Bitmap {
            format: 1,
            flags: 0,
            x: 8,
            y: 2,
            stride: 1,
            palette: Some(Palette {
                unique: u64::MAX,
                ents: vec![0, 0xffff_ffff],
            }),
            data: vec![vec![0xaa], vec![0x55]],
        }),
    };
    let quic = Image {
        id: 9,
        flags: 0,
        width: 4,
        height: 4,
        body: ImageBody::Quic {
            data_size: 5,
            chunks: vec![vec![1, 2, 3], vec![4, 5]],
        },
    };
    let surf = Image {
        id: 1,
        flags: 0,
        width: 16,
        height: 16,
        body: ImageBody::Surface(3),
    };
    let mask = QMask {
        flags: 1,
        pos: QPoint { x: -2, y: 3 },
        bitmap: Some(mono.clone()),
    };
    let r = QRect::new(1, 2, 3, 4);
    let ops = vec![
        DrawOp::Nop,
        DrawOp::Fill {
            brush: Brush::Pattern {
                image: Some(img.clone()),
                pos: QPoint { x: 1, y: -1 },
            },
            rop_descriptor: 0x48,
            mask: mask.clone(),
        },
        DrawOp::Opaque {
            src: Some(img.clone()),
            src_area: r,
            brush: Brush::Solid(0x8000_0000),
            rop_descriptor: 2,
            scale_mode: 1,
            mask: no_mask(),
        },
        copy(img.clone(), 3, 2),
        DrawOp::CopyBits {
            src_pos: QPoint { x: 5, y: 6 },
        },
        DrawOp::Blend(Blit {
            src: Some(surf.clone()),
            src_area: r,
            rop_descriptor: 8,
            scale_mode: 0,
            mask: mask.clone(),
        }),
        DrawOp::Blackness(no_mask()),
        DrawOp::Whiteness(mask.clone()),
        DrawOp::Invers(no_mask()),
        DrawOp::Rop3 {
            src: Some(quic),
            src_area: r,
            brush: Brush::None,
            rop3: 0xcc,
            scale_mode: 0,
            mask: no_mask(),
        },
        DrawOp::Stroke {
            path: vec![vec![1, 0, 0, 0, 1, 0, 0, 0, 16, 0, 0, 0, 32, 0, 0, 0]],
            attr_flags: 8,
            style: Some((2, vec![16, 0, 0, 0, 32, 0, 0, 0])),
            brush: Brush::Solid(0xff),
            fore_mode: 8,
            back_mode: 8,
        },
        DrawOp::Text {
            string: GlyphString {
                data_size: 21,
                length: 1,
                flags: 1,
                chunks: vec![vec![0; 20], vec![0x80]],
            },
            back_area: r,
            fore_brush: Brush::Solid(1),
            back_brush: Brush::None,
            fore_mode: 8,
            back_mode: 8,
        },
        DrawOp::Transparent {
            src: Some(img.clone()),
            src_area: r,
            src_color: 0xffff_ffff,
            true_color: 3,
        },
        DrawOp::AlphaBlend {
            alpha_flags: Some(2),
            alpha: 200,
            src: None,
            src_area: r,
        },
        DrawOp::Composite(Box::new(Composite {
            flags: 3 | 1 << 8,
            src: Some(img.clone()),
            src_transform: Some((0..24).collect()),
            mask: Some(mono.clone()),
            mask_transform: None,
            src_origin: QPoint { x: -1, y: 2 },
            mask_origin: QPoint { x: 3, y: -4 },
        })),
    ];
    let mut events = vec![device(0, message::RESET_MEMSLOTS)];
    events.push(primary(1, 4, 2, |x, y| x * y));
    for op in ops {
        let n = events.len() as u32;
        events.push(draw(
            n,
            0,
            QRect::new(0, 0, 4, 2),
            clip_rects(&[QRect::new(0, 0, 2, 2), QRect::new(2, 0, 4, 1)]),
            op,
        ));
    }
    let n = events.len() as u32;
    events.push(cmd(
        n,
        Command::Draw(Box::new(Drawable {
            bbox: r,
            clip: None,
            effect: 0,
            mm_time: u32::MAX,
            layout: DrawableLayout::Compat {
                bitmap_offset: 4,
                bitmap_area: r,
            },
            op: DrawOp::AlphaBlend {
                alpha_flags: None,
                alpha: 1,
                src: Some(img.clone()),
                src_area: r,
            },
        })),
    ));
    let more = vec![
        Command::Update(UpdateCmd {
            area: r,
            update_id: 7,
            surface_id: 0,
        }),
        Command::Cursor(CursorCmd::Set {
            pos: QPoint { x: -3, y: 4 },
            visible: 1,
            shape: CursorShape {
                unique: 12345678901234,
                kind: 0,
                width: 2,
                height: 1,
                hot_x: 1,
                hot_y: 0,
                data_size: 8,
                chunks: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
            },
        }),
        Command::Cursor(CursorCmd::Move {
            pos: QPoint { x: 5, y: -6 },
        }),
        Command::Cursor(CursorCmd::Hide),
        Command::Cursor(CursorCmd::Trail {
            length: 3,
            frequency: 4,
        }),
        Command::Message(b"hello guest".to_vec()),
        Command::Surface(SurfaceCmd {
            surface_id: 3,
            flags: 1,
            kind: SurfaceCmdKind::Create {
                format: 32,
                width: 2,
                height: 2,
                stride: -8,
                data: Some(vec![9; 16]),
            },
        }),
        Command::Surface(SurfaceCmd {
            surface_id: 3,
            flags: 0,
            kind: SurfaceCmdKind::Destroy,
        }),
        Command::Empty(0),
    ];
    for c in more {
        let n = events.len() as u32;
        events.push(cmd(n, c));
    }
    let n = events.len() as u32;
    events.push(device(n, message::DESTROY_PRIMARY_SURFACE_ASYNC));
    events
}

fn read_all(bytes: &[u8]) -> (Vec<Item>, Option<ReadError>) {
    read_with(bytes, Limits::default())
}

fn read_with(bytes: &[u8], limits: Limits) -> (Vec<Item>, Option<ReadError>) {
    let mut reader = match Reader::new(bytes, limits) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut items = Vec::new();
    loop {
        match reader.next_item() {
            Ok(Some(i)) => items.push(i),
            Ok(None) => return (items, None),
            Err(e) => return (items, Some(e)),
        }
    }
}

fn events_of(items: Vec<Item>) -> Vec<Event> {
    items
        .into_iter()
        .map(|i| match i {
            Item::Event(e) => e,
            Item::Skipped { reason, .. } => panic!("skipped: {reason}"),
        })
        .collect()
}

/// The reason the single skipped event of `bytes` was skipped.
fn skip_reason(bytes: &[u8]) -> String {
    let (items, err) = read_all(bytes);
    assert!(err.is_none(), "{err:?}");
    let reasons: Vec<String> = items
        .iter()
        .filter_map(|i| match i {
            Item::Skipped { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 1, "{items:?}");
    reasons[0].clone()
}

fn format_error(bytes: &[u8]) -> String {
    match read_all(bytes).1 {
        Some(e @ ReadError::Format { .. }) => e.to_string(),
        other => panic!("expected a format error, got {other:?}"),
    }
}

/// Replaces the first occurrence of `from` with `to`.
fn edit(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("'{from}' not in the file"));
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(to.as_bytes());
    out.extend_from_slice(&bytes[at + from.len()..]);
    out
}

// ---- format -----------------------------------------------------------------------------

#[test]
fn every_kind_round_trips() {
    let events = every_kind();
    let bytes = file(&events);
    let (items, err) = read_all(&bytes);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(events_of(items), events);
    // Written exactly as spice prints it: 32-bit fields signed, ids unsigned.
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("\nsurfaces_dest -1\n"));
    assert!(text.contains("\nu.color -2147483648\n"));
    assert!(text.contains("\nents -1\n"));
    assert!(text.contains("\nunique 18446744073709551615\n"));
    assert!(text.contains("\nmm_time -1\n"));
    assert!(text.contains("\nbinary 0 clip_rects 32:"));
    assert!(text.contains("\ndata_chunks 1 24\nbinary 0 bitmap.data 12:"));
    assert!(text.contains("\nsrc_origin -1 2\nmask_origin 3 -4\n"));
    assert!(text.contains("event 1 1 29 1000000\n4 2 16 32\n0 1 1 0\nbinary 0 data 32:"));
}

// Rule 1: the header.
#[test]
fn rule01_header() {
    assert!(matches!(
        read_all(b"SPICE_REPLAY 2\n").1,
        Some(ReadError::Version(v)) if v == "2"
    ));
    for bad in [
        &b""[..],
        b"hello\n",
        b"SPICE_REPLAY 1",
        b"SPICE_REPLAY 1 \n",
        b"\x1f\x8b",
    ] {
        assert!(
            matches!(read_all(bad).1, Some(ReadError::NotARecording)),
            "{bad:?}"
        );
    }
    assert!(read_all(b"SPICE_REPLAY 1\n").1.is_none());
}

// Rule 2: lines are capped, printable ASCII, no CR.
#[test]
fn rule02_lines() {
    let long = format!("SPICE_REPLAY 1\nevent 0 1 2 {}\n", "1".repeat(300));
    assert!(format_error(long.as_bytes()).contains("longer than 256"));
    assert!(format_error(b"SPICE_REPLAY 1\nevent 0 1 2 5\r\n").contains("0x0d"));
    assert!(format_error(b"SPICE_REPLAY 1\nevent 0 1 2 \xff\n").contains("0xff"));
    // Exactly at the cap is fine.
    let limits = Limits {
        max_line: 16,
        ..Limits::default()
    };
    let (_, err) = read_with(b"SPICE_REPLAY 1\nevent 0 1 2 123\n", limits);
    assert!(err.is_none(), "{err:?}");
}

// Rule 3: keywords at their positions, field counts, no trailing garbage.
#[test]
fn rule03_keywords_and_fields() {
    let bytes = file(&every_kind());
    assert!(format_error(&edit(&bytes, "rect bbox", "rect bbax")).contains("rect bbox"));
    assert!(format_error(&edit(&bytes, "\neffect 1\n", "\neffect 1 2\n")).contains("effect"));
    assert!(format_error(&edit(&bytes, "\nupdate\n", "\nupdates\n")).contains("update"));
    assert!(format_error(&edit(&bytes, "\neffect 1\n", "\neffect  1\n")).contains("effect"));
    assert!(format_error(&edit(&bytes, "\ncursor_cmd\n", "\ncursor\n")).contains("cursor_cmd"));
    assert!(
        format_error(&edit(&bytes, "\nself_bitmap 0\n", "\nself_bitmop 0\n"))
            .contains("self_bitmap")
    );
}

// Rule 4: integers are plain decimal and fit their field.
#[test]
fn rule04_numbers() {
    let bytes = file(&every_kind());
    for (from, to) in [
        ("\neffect 1\n", "\neffect 256\n"),
        ("\neffect 1\n", "\neffect -1\n"),
        ("\neffect 1\n", "\neffect +1\n"),
        ("\neffect 1\n", "\neffect 01\n"),
        ("\neffect 1\n", "\neffect 0x1\n"),
        ("\nmm_time -1\n", "\nmm_time 4294967296\n"),
        ("\nmm_time -1\n", "\nmm_time -2147483649\n"),
        ("\nmm_time -1\n", "\nmm_time 99999999999999999999999\n"),
        ("rect bbox 0 0 2 4", "rect bbox 0 0 2 2147483648"),
        ("\npoint16 -3 4\n", "\npoint16 -32769 4\n"),
        ("\nheader.width 2\n", "\nheader.width 65536\n"),
        (
            "\nunique 18446744073709551615\n",
            "\nunique 18446744073709551616\n",
        ),
        ("\nunique 18446744073709551615\n", "\nunique -1\n"),
    ] {
        let e = format_error(&edit(&bytes, from, to));
        assert!(!e.is_empty(), "{to}");
    }
    // Both spellings of a 32-bit value are the same value.
    let a = events_of(read_all(&bytes).0);
    let b = events_of(read_all(&edit(&bytes, "\nmm_time -1\n", "\nmm_time 4294967295\n")).0);
    assert_eq!(a, b);
}

// Rule 5: event lines.
#[test]
fn rule05_events() {
    assert!(format_error(b"SPICE_REPLAY 1\nevent 0 2 1 5\n").contains("event kind 2"));
    assert!(format_error(b"SPICE_REPLAY 1\nevent 0 0 9 5\nsomething\n").contains("body"));
    // An unknown command type without a body is skipped; NOP is not.
    assert!(skip_reason(b"SPICE_REPLAY 1\nevent 0 0 9 5\n").contains("type 9"));
    let (items, err) = read_all(b"SPICE_REPLAY 1\nevent 0 0 0 5\nevent 1 1 2 6\n");
    assert!(err.is_none());
    assert_eq!(events_of(items).len(), 2);
    assert!(skip_reason(b"SPICE_REPLAY 1\nevent 0 1 41 5\n").contains("message 41"));
    // Timestamps never go backwards (clamped); counters are not trusted.
    let events = events_of(
        read_all(b"SPICE_REPLAY 1\nevent 0 1 2 500\nevent 7 1 2 100\nevent 8 1 2 600\n").0,
    );
    let ts: Vec<u64> = events.iter().map(|e| e.timestamp).collect();
    assert_eq!(ts, [500, 500, 600]);
}

// Rule 6: blobs.
#[test]
fn rule06_blobs() {
    let bytes = file(&every_kind());
    assert!(
        format_error(&edit(&bytes, "binary 0 clip_rects", "binary 0 clip_rekts"))
            .contains("clip_rects")
    );
    assert!(
        format_error(&edit(&bytes, "binary 0 clip_rects", "binary 2 clip_rects"))
            .contains("compression flag")
    );
    assert!(format_error(&edit(
        &bytes,
        "binary 0 clip_rects 32:",
        "binary 0 clip_rects -32:"
    ))
    .contains("size"));
    // One byte fewer in the size: the next byte is not the newline.
    assert!(format_error(&edit(
        &bytes,
        "binary 0 clip_rects 32:",
        "binary 0 clip_rects 31:"
    ))
    .contains("no newline"));
    // A size far beyond the file: truncation, and nothing that size allocated.
    let huge = edit(
        &bytes,
        "binary 0 clip_rects 32:",
        "binary 0 clip_rects 9000000000000:",
    );
    // The report names the blob and the size it claimed.
    let error = read_all(&huge).1.expect("an error");
    assert!(matches!(error, ReadError::Truncated { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("in its clip_rects blob of 9000000000000 bytes"),
        "{error}"
    );
    // A cut between blobs says nothing of a blob.
    let cut = bytes.len() - 1;
    let error = read_all(&bytes[..cut]).1.expect("an error");
    assert!(!error.to_string().contains("blob of"), "{error}");
}

#[test]
fn rule06_zlib_blobs() {
    use flate2::{write::ZlibEncoder, Compression};
    let compress = |data: &[u8]| {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let message = |size: usize, z: &[u8]| {
        let mut f = b"SPICE_REPLAY 1\nevent 0 0 4 1\n".to_vec();
        f.extend_from_slice(format!("binary 1 message {size}:{}:", z.len()).as_bytes());
        f.extend_from_slice(z);
        f.push(b'\n');
        f
    };
    let z = compress(b"hello");
    let events = events_of(read_all(&message(5, &z)).0);
    assert_eq!(
        events[0].kind,
        EventKind::Command(Command::Message(b"hello".to_vec()))
    );
    // A stream that inflates to more (or less) than announced: skipped.
    let bomb = compress(&vec![0u8; 1 << 20]);
    assert!(skip_reason(&message(10, &bomb)).contains("exactly 10"));
    assert!(skip_reason(&message(6, &z)).contains("exactly 6"));
    assert!(skip_reason(&message(5, b"not zlib")).contains("inflate"));
}

// Rule 7: chunk lists.
#[test]
fn rule07_chunks() {
    let bytes = file(&every_kind());
    assert!(
        skip_reason(&edit(&bytes, "data_chunks 0 32\n", "data_chunks 0 33\n"))
            .contains("chunks hold 32 bytes, the list says 33")
    );
    assert!(format_error(&edit(
        &bytes,
        "data_chunks 0 32\n",
        "data_chunks 70000 32\n"
    ))
    .contains("extra chunks"));
    assert!(
        format_error(&edit(&bytes, "data_chunks 0 32\n", "data_chunks -1 32\n"))
            .contains("extra chunks")
    );
    // Fewer blobs than announced: the next line is not a blob.
    assert!(
        format_error(&edit(&bytes, "data_chunks 0 32\n", "data_chunks 1 32\n")).contains("binary")
    );
}

// Rule 8: truncation anywhere ends cleanly after the last complete event.
#[test]
fn rule08_truncation_at_every_byte() {
    let events = every_kind();
    let bytes = file(&events);
    // Where each event ends.
    let mut ends = Vec::new();
    let mut out = HEADER.to_vec();
    for e in &events {
        write_event(&mut out, e);
        ends.push(out.len());
    }
    for cut in HEADER.len()..bytes.len() {
        let (items, err) = read_all(&bytes[..cut]);
        let complete = ends.iter().filter(|&&end| end <= cut).count();
        match err {
            None => assert!(
                cut == HEADER.len() || ends.contains(&cut),
                "cut {cut}: no error"
            ),
            Some(ReadError::Truncated { event, .. }) => {
                assert_eq!(items.len(), complete, "cut {cut}");
                assert_eq!(event as usize, complete + 1, "cut {cut}");
            }
            // A cut inside a number can leave a shorter valid-looking
            // number whose next line is wrong; never anything else.
            Some(ReadError::Format { .. }) => assert!(items.len() <= complete),
            Some(other) => panic!("cut {cut}: {other}"),
        }
    }
}

// Rule 9: a create-primary event without its body (refused at record time).
#[test]
fn rule09_bodiless_create() {
    let events = events_of(read_all(b"SPICE_REPLAY 1\nevent 0 1 20 5\nevent 1 1 2 6\n").0);
    assert_eq!(
        events[0].kind,
        EventKind::Device {
            message: 20,
            primary: None
        }
    );
    assert_eq!(events.len(), 2);
    // At the very end it may as well be a cut-off file.
    assert!(matches!(
        read_all(b"SPICE_REPLAY 1\nevent 0 1 29 5\n").1,
        Some(ReadError::Truncated { .. })
    ));
}

// Rule 10: the per-event data cap.
#[test]
fn rule10_event_cap() {
    let bytes = file(&every_kind());
    let limits = Limits {
        max_event_bytes: 20,
        ..Limits::default()
    };
    let (items, err) = read_with(&bytes, limits);
    assert!(err.is_none());
    let skipped: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            Item::Skipped { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(skipped.iter().any(|r| r.contains("more than 20 bytes")));
    // Events within the cap are still read.
    assert!(items.iter().any(|i| matches!(i, Item::Event(_))));
}

// Rule 11: the primary's data must be |stride| * height.
#[test]
fn rule11_primary_size() {
    let bytes = file(&[primary(0, 4, 2, |_, _| 0)]);
    let bad = edit(&bytes, "\n4 2 16 32\n", "\n4 3 16 32\n");
    assert!(skip_reason(&bad).contains("expected 48"));
    let bad = edit(&bytes, "\n4 2 16 32\n", "\n4 2 -16 32\n");
    assert!(read_all(&bad).1.is_none(), "negative strides are fine");
    assert!(format_error(&edit(&bytes, "\n4 2 16 32\n", "\n4 2 16\n")).contains("4 numbers"));
}

// Rule 12: surface create data.
#[test]
fn rule12_surface_data() {
    let bytes = file(&every_kind());
    let bad = edit(
        &bytes,
        "u.surface_create.height 2\n",
        "u.surface_create.height 3\n",
    );
    assert!(skip_reason(&bad).contains("needs 24"));
    let bad = edit(
        &bytes,
        "surface_cmd\nsurface_id 3\ntype 1",
        "surface_cmd\nsurface_id 3\ntype 7",
    );
    assert!(skip_reason(&bad).contains("surface command type 7"));
}

// Rule 13: drawables: clip consistency, clip and brush types.
#[test]
fn rule13_drawables() {
    let bytes = file(&every_kind());
    assert!(skip_reason(&edit(&bytes, "num_rects 2\n", "num_rects 3\n")).contains("3 rectangles"));
    let one = file(&[draw(
        0,
        0,
        QRect::new(0, 0, 1, 1),
        None,
        DrawOp::Fill {
            brush: Brush::None,
            rop_descriptor: 8,
            mask: no_mask(),
        },
    )]);
    assert!(skip_reason(&edit(
        &one,
        "rect bbox 0 0 1 1\ntype 0",
        "rect bbox 0 0 1 1\ntype 2"
    ))
    .contains("clip type 2"));
    assert!(
        skip_reason(&edit(&one, "\ntype 1\ntype 0\n", "\ntype 1\ntype 3\n"))
            .contains("brush type 3")
    );
    assert!(
        format_error(&edit(&one, "\ntype 1\ntype 0\n", "\ntype 15\ntype 0\n"))
            .contains("draw type 15")
    );
}

// Rule 15: images.
#[test]
fn rule15_images() {
    let bytes = file(&every_kind());
    assert!(
        skip_reason(&edit(&bytes, "bitmap.stride 12\n", "bitmap.stride 13\n"))
            .contains("expected 26")
    );
    assert!(
        format_error(&edit(&bytes, "descriptor.type 0\n", "descriptor.type 2\n"))
            .contains("image type 2")
    );
    assert!(
        skip_reason(&edit(&bytes, "quic.data_size 5\n", "quic.data_size 6\n"))
            .contains("QUIC image of 6 bytes")
    );
    // A palette of more than 256 entries.
    let mut ents = String::from("qp.num_ents 300\nunique 1\n");
    for _ in 0..300 {
        ents.push_str("ents 0\n");
    }
    let bad = edit(
        &bytes,
        "qp.num_ents 2\nunique 18446744073709551615\nents 0\nents -1\n",
        &ents,
    );
    let (items, err) = read_all(&bad);
    assert!(err.is_none());
    assert!(items
        .iter()
        .any(|i| matches!(i, Item::Skipped { reason, .. } if reason.contains("palette of 300"))));
}

// Rules 16–18: style, glyph string and transform sizes.
#[test]
fn rule16_to_18_shape_sizes() {
    let bytes = file(&every_kind());
    assert!(
        skip_reason(&edit(&bytes, "attr.style_nseg 2\n", "attr.style_nseg 3\n"))
            .contains("3 segments")
    );
    assert!(
        skip_reason(&edit(&bytes, "\ndata_size 21\n", "\ndata_size 22\n"))
            .contains("glyph string of 22")
    );
    let short = edit(&bytes, "binary 0 transform 24:", "binary 0 transform 23:");
    // The last byte of the transform now sits where the newline should be.
    assert!(format_error(&short).contains("newline"));
    let mut one = vec![0u8; 23];
    one.push(b'\n');
    let t: Vec<u8> = (0..24).collect();
    let mut from = b"binary 0 transform 24:".to_vec();
    from.extend_from_slice(&t);
    let mut to = b"binary 0 transform 23:".to_vec();
    to.extend_from_slice(&t[..23]);
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    let mut bad = bytes[..at].to_vec();
    bad.extend_from_slice(&to);
    bad.extend_from_slice(&bytes[at + from.len()..]);
    assert!(skip_reason(&bad).contains("transform of 23 bytes"));
}

// Rule 19: cursor commands.
#[test]
fn rule19_cursor() {
    let bytes = file(&every_kind());
    let bad = edit(&bytes, "cursor_cmd\ntype 2\n", "cursor_cmd\ntype 9\n");
    assert!(skip_reason(&bad).contains("cursor command type 9"));
}

// Rule 21: guest messages are capped.
#[test]
fn rule21_messages() {
    let limits = Limits {
        max_message: 4,
        ..Limits::default()
    };
    let (items, _) = read_with(&file(&every_kind()), limits);
    assert!(items.iter().any(
        |i| matches!(i, Item::Skipped { reason, .. } if reason.contains("message of 11 bytes"))
    ));
}

// ---- replay through the device ----------------------------------------------------------

fn small_qxl() -> QxlConfig {
    QxlConfig {
        ram_size: 32 << 20,
        vram_size: 8 << 20,
        vram64_size: None,
        vgamem_size: 8 << 20,
        revision: 4,
        initial_size: None,
        heads: 1,
    }
}

fn play(events: &[Event]) -> (Player, super::Summary) {
    play_bytes(&file(events))
}

fn play_bytes(bytes: &[u8]) -> (Player, super::Summary) {
    let dir = std::env::temp_dir().join(format!(
        "saffron-replay-test-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::write(&dir, bytes).unwrap();
    let mut player = Player::new(
        small_qxl(),
        PlayerOptions {
            pace: Pace::Fast,
            ..PlayerOptions::default()
        },
    )
    .unwrap();
    let summary = player.play(&dir, None).unwrap();
    let _ = std::fs::remove_file(&dir);
    (player, summary)
}

fn pixel(player: &Player, x: u32, y: u32) -> u32 {
    player.display().head(0).unwrap().pixel(x, y) & 0xff_ffff
}

/// The head's pixels, row by row.
fn picture(player: &Player) -> Vec<u32> {
    let display = player.display();
    let head = display.head(0).unwrap();
    let mut out = Vec::new();
    for y in 0..head.height {
        for x in 0..head.width {
            out.push(head.pixel(x, y) & 0xff_ffff);
        }
    }
    out
}

/// A session like a Linux guest's: reset, memslots, a primary with
/// contents, copies with clips, fills, copy-bits, an off-screen surface
/// drawn into and copied out, a cursor.
fn session() -> Vec<Event> {
    let mut e = vec![
        device(0, message::RESET_MEMSLOTS),
        device(1, message::ADD_MEMSLOT_ASYNC),
        device(2, message::ADD_MEMSLOT_ASYNC),
        primary(3, 64, 48, |x, y| (x * 4) << 16 | (y * 5) << 8),
    ];
    let k = e.len() as u32;
    e.push(draw(
        k,
        0,
        QRect::new(8, 8, 24, 16),
        None,
        copy(bitmap32(16, 8, BITMAP_TOP_DOWN, |x, _| 0x0000ff + x), 16, 8),
    ));
    let k = e.len() as u32;
    e.push(draw(
        k,
        0,
        QRect::new(30, 0, 40, 10),
        clip_rects(&[QRect::new(30, 0, 35, 10)]),
        fill(0x00ff00),
    ));
    let k = e.len() as u32;
    e.push(draw(
        k,
        0,
        QRect::new(0, 30, 16, 38),
        None,
        DrawOp::CopyBits {
            src_pos: QPoint { x: 8, y: 8 },
        },
    ));
    let k = e.len() as u32;
    e.push(cmd(
        k,
        Command::Surface(SurfaceCmd {
            surface_id: 5,
            flags: 0,
            kind: SurfaceCmdKind::Create {
                format: 32,
                width: 8,
                height: 8,
                stride: 32,
                data: None,
            },
        }),
    ));
    let k = e.len() as u32;
    e.push(draw(k, 5, QRect::new(0, 0, 8, 8), None, fill(0xabcdef)));
    let k = e.len() as u32;
    let from_surface = Image {
        id: 0,
        flags: 0,
        width: 8,
        height: 8,
        body: ImageBody::Surface(5),
    };
    e.push(draw(
        k,
        0,
        QRect::new(50, 40, 58, 48),
        None,
        copy(from_surface, 8, 8),
    ));
    let k = e.len() as u32;
    e.push(cmd(
        k,
        Command::Surface(SurfaceCmd {
            surface_id: 5,
            flags: 0,
            kind: SurfaceCmdKind::Destroy,
        }),
    ));
    let k = e.len() as u32;
    e.push(cmd(
        k,
        Command::Cursor(CursorCmd::Set {
            pos: QPoint { x: 10, y: 12 },
            visible: 1,
            shape: CursorShape {
                unique: 1,
                kind: 0,
                width: 2,
                height: 2,
                hot_x: 0,
                hot_y: 0,
                data_size: 16,
                chunks: vec![vec![0xff; 16]],
            },
        }),
    ));
    let k = e.len() as u32;
    e.push(cmd(
        k,
        Command::Update(UpdateCmd {
            area: QRect::new(0, 0, 64, 48),
            update_id: 1,
            surface_id: 0,
        }),
    ));
    e
}

#[test]
fn a_session_replays_through_the_device() {
    let (player, s) = play(&session());
    assert_eq!((s.skipped, s.failed), (0, 0), "{:?}", s.problems);
    assert_eq!(s.device.bad_commands, 0, "{s:?}");
    assert_eq!(s.draws, 5);
    assert_eq!(s.device.drawables, 5);
    assert_eq!(s.unreleased, 0, "every command came back");
    // Primary contents (KEEP_DATA) where nothing was drawn.
    assert_eq!(pixel(&player, 1, 1), 4 << 16 | 5 << 8);
    // The copy, the clipped fill, copy-bits of the copy, the surface.
    assert_eq!(pixel(&player, 8, 8), 0x0000ff);
    assert_eq!(pixel(&player, 23, 15), 0x0000ff + 15);
    assert_eq!(pixel(&player, 34, 5), 0x00ff00);
    assert_eq!(
        pixel(&player, 36, 5),
        ((36 * 4) << 16) | (25 << 8),
        "clipped away"
    );
    assert_eq!(pixel(&player, 0, 30), 0x0000ff);
    assert_eq!(pixel(&player, 55, 45), 0xabcdef);
    let cursor = player.display().cursor();
    assert!(cursor.visible && (cursor.x, cursor.y) == (10, 12));
}

#[test]
fn memory_is_reused_across_many_commands() {
    // 200 full-screen copies of 256 KiB each: 50 MiB through 24 MiB of
    // command memory, so blocks must come back and be reused.
    let mut e = vec![primary(0, 256, 256, |_, _| 0)];
    for i in 0..200u32 {
        e.push(draw(
            i + 1,
            0,
            QRect::new(0, 0, 256, 256),
            None,
            copy(
                bitmap32(256, 256, BITMAP_TOP_DOWN, move |x, y| x ^ y ^ i),
                256,
                256,
            ),
        ));
    }
    let (player, s) = play(&e);
    assert_eq!(
        (s.failed, s.device.bad_commands),
        (0, 0),
        "{:?}",
        s.problems
    );
    assert_eq!(s.device.drawables, 200);
    assert_eq!(pixel(&player, 3, 5), 3 ^ 5 ^ 199);
}

#[test]
fn hostile_events_are_refused_not_fatal() {
    let mut e = vec![primary(0, 32, 32, |_, _| 0x111111)];
    // Outside the primary (spice drops these silently; so does the device).
    e.push(draw(1, 0, QRect::new(0, 0, 64, 64), None, fill(0xff0000)));
    // An unknown surface, a destroy of one that never existed.
    e.push(draw(2, 77, QRect::new(0, 0, 4, 4), None, fill(0xff0000)));
    e.push(cmd(
        3,
        Command::Surface(SurfaceCmd {
            surface_id: 9,
            flags: 0,
            kind: SurfaceCmdKind::Destroy,
        }),
    ));
    // Surface ids past the device's 1024, absurd sizes.
    e.push(draw(4, 5000, QRect::new(0, 0, 4, 4), None, fill(0xff0000)));
    e.push(cmd(
        5,
        Command::Surface(SurfaceCmd {
            surface_id: 3,
            flags: 0,
            kind: SurfaceCmdKind::Create {
                format: 32,
                width: 100_000,
                height: 100_000,
                stride: 400_000,
                data: None,
            },
        }),
    ));
    // A bitmap larger than the device's command memory.
    e.push(draw(
        6,
        0,
        QRect::new(0, 0, 32, 32),
        None,
        copy(bitmap32(2048, 4000, BITMAP_TOP_DOWN, |_, _| 0), 32, 32),
    ));
    // A primary that does not fit the surface area; the old one stays.
    e.push(primary(7, 4000, 4000, |_, _| 0));
    // A source area outside its bitmap.
    e.push(draw(
        8,
        0,
        QRect::new(0, 0, 4, 4),
        None,
        copy(bitmap32(2, 2, BITMAP_TOP_DOWN, |_, _| 0xff0000), 40, 40),
    ));
    // And afterwards a good command still works.
    e.push(draw(9, 0, QRect::new(0, 0, 2, 2), None, fill(0x00ff00)));
    let (player, s) = play(&e);
    assert_eq!(s.device.dropped_drawables, 1);
    assert!(s.device.bad_commands >= 4, "{s:?}");
    assert_eq!(s.failed, 3, "{:?}", s.problems);
    assert!(s
        .problems
        .iter()
        .any(|p| p.contains("bytes of command memory")));
    assert!(s
        .problems
        .iter()
        .any(|p| p.contains("surface of 40000000000 bytes")));
    assert!(s.problems.iter().any(|p| p.contains("does not fit")));
    assert_eq!(pixel(&player, 0, 0), 0x00ff00);
    assert_eq!(pixel(&player, 10, 10), 0x111111);
}

#[test]
fn recording_a_replay_round_trips() {
    // Replay `session()` with a recorder on the device, then replay what
    // it wrote on a fresh device: the same picture and cursor.
    let path = std::env::temp_dir().join(format!(
        "saffron-record-test-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let source = file(&session());
    let (first, recorded) = {
        let input = path.with_extension("in");
        std::fs::write(&input, &source).unwrap();
        let mut player = Player::new(
            small_qxl(),
            PlayerOptions {
                pace: Pace::Fast,
                ..PlayerOptions::default()
            },
        )
        .unwrap();
        let recorder = super::Recorder::create(&path, player.guest().memory_view()).unwrap();
        player
            .guest()
            .control()
            .set_observer(Some(Box::new(recorder)));
        let s = player.play(&input, None).unwrap();
        assert_eq!(s.failed, 0);
        player.guest().control().set_observer(None);
        // The observer is dropped on the worker; wait for it to be done.
        player.guest().drain(Duration::from_secs(5));
        let _ = std::fs::remove_file(&input);
        let first = picture(&player);
        drop(player);
        (first, std::fs::read(&path).unwrap())
    };
    let _ = std::fs::remove_file(&path);
    let events = events_of(read_all(&recorded).0);
    assert!(events.len() >= 10, "{} events", events.len());
    let (second, s) = play_bytes(&recorded);
    assert_eq!(
        (s.skipped, s.failed, s.device.bad_commands),
        (0, 0, 0),
        "{s:?}"
    );
    assert_eq!(picture(&second), first);
    assert_eq!(second.display().cursor().x, 10);
}
