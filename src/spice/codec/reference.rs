//! Test-only decoders for QUIC, LZ and GLZ, written from the client
//! decoders' behaviour (spice-common quic.c / lz_decompress_tmpl.c,
//! spice-gtk decode-glz-tmpl.c) and sharing no code with the encoders
//! except QUIC's fixed tables. They are strict: they fail where a client
//! would fail or hang (bad magic, copies outside the image, a reference to
//! an image the client no longer holds, data left over or missing).

#![allow(clippy::needless_range_loop)]

use std::collections::HashMap;

use super::quic::{CommonState, Family, Model, MELC_LEN, QUIC_MAGIC};
use super::{Bitmap, BitmapFormat, Palette};

pub struct LzDecoded {
    pub ty: u32,
    pub width: u32,
    pub height: u32,
    pub top_down: bool,
    /// Decoded units in the image's own layout (see `expected_lz_output`).
    pub data: Vec<u8>,
}

fn be32(s: &[u8], at: &mut usize) -> Result<u32, String> {
    let b = s.get(*at..*at + 4).ok_or("truncated header")?;
    *at += 4;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn byte(s: &[u8], at: &mut usize) -> Result<u8, String> {
    let b = *s.get(*at).ok_or("truncated stream")?;
    *at += 1;
    Ok(b)
}

/// Decodes `n` units of an LZ stream. `lit` = bytes per literal unit,
/// `bias` = shortest copy.
fn lz_units(s: &[u8], at: &mut usize, n: usize, lit: usize, bias: u32) -> Result<Vec<u32>, String> {
    let mut out: Vec<u32> = Vec::with_capacity(n);
    while out.len() < n {
        let ctrl = u32::from(byte(s, at)?);
        if ctrl >= 32 {
            let mut len = (ctrl >> 5) - 1;
            let mut ofs = (ctrl & 31) << 8;
            if len == 6 {
                loop {
                    let c = byte(s, at)?;
                    len += u32::from(c);
                    if c != 255 {
                        break;
                    }
                }
            }
            let code = byte(s, at)?;
            ofs += u32::from(code);
            if code == 255 && ofs - u32::from(code) == 31 << 8 {
                ofs = u32::from(byte(s, at)?) << 8;
                ofs += u32::from(byte(s, at)?);
                ofs += 8191;
            }
            let len = (len + bias) as usize;
            let ofs = ofs as usize + 1;
            if ofs > out.len() || out.len() + len > n {
                return Err(format!("copy of {len} from -{ofs} at {} of {n}", out.len()));
            }
            for _ in 0..len {
                out.push(out[out.len() - ofs]);
            }
        } else {
            let count = ctrl as usize + 1;
            if out.len() + count > n {
                return Err("literals past the end".into());
            }
            for _ in 0..count {
                let b = s.get(*at..*at + lit).ok_or("truncated literal")?;
                *at += lit;
                out.push(b.iter().fold(0, |v, &x| (v << 8) | u32::from(x)));
            }
        }
    }
    Ok(out)
}

/// Decodes a whole LZ stream; there must be nothing after it.
pub fn lz_decode(s: &[u8], palette: Option<&Palette>) -> Result<LzDecoded, String> {
    let mut at = 0;
    if be32(s, &mut at)? != 0x2020_5a4c || be32(s, &mut at)? != 0x0001_0001 {
        return Err("bad magic or version".into());
    }
    let ty = be32(s, &mut at)?;
    let width = be32(s, &mut at)?;
    let height = be32(s, &mut at)?;
    let stride = be32(s, &mut at)?;
    let top_down = be32(s, &mut at)? != 0;
    let pixels = width as usize * height as usize;
    let data = match ty {
        1..=5 => {
            if palette.is_none() {
                return Err("palette image without palette".into());
            }
            let ppb = [0, 8, 8, 2, 2, 1][ty as usize];
            if stride as usize != (width as usize).div_ceil(ppb) {
                return Err("bad palette stride".into());
            }
            lz_units(s, &mut at, stride as usize * height as usize, 1, 3)?
                .iter()
                .map(|&v| v as u8)
                .collect()
        }
        6 => {
            check_stride(stride, width, 2)?;
            lz_units(s, &mut at, pixels, 2, 2)?
                .iter()
                .flat_map(|&v| (v as u16).to_le_bytes())
                .collect()
        }
        7 => {
            check_stride(stride, width, 3)?;
            lz_units(s, &mut at, pixels, 3, 1)?
                .iter()
                .flat_map(|&v| [(v >> 16) as u8, (v >> 8) as u8, v as u8])
                .collect()
        }
        8..=10 => {
            check_stride(stride, width, 4)?;
            let rgb = if ty == 10 {
                vec![0; pixels]
            } else {
                lz_units(s, &mut at, pixels, 3, 1)?
            };
            let alpha = if ty == 8 {
                vec![0; pixels]
            } else {
                lz_units(s, &mut at, pixels, 1, 3)?
            };
            rgb.iter()
                .zip(&alpha)
                .flat_map(|(&v, &a)| [(v >> 16) as u8, (v >> 8) as u8, v as u8, a as u8])
                .collect()
        }
        11 => {
            check_stride(stride, width, 1)?;
            lz_units(s, &mut at, pixels, 1, 3)?
                .iter()
                .map(|&v| v as u8)
                .collect()
        }
        _ => return Err(format!("bad LZ type {ty}")),
    };
    if at != s.len() {
        return Err(format!("{} bytes left after the image", s.len() - at));
    }
    Ok(LzDecoded {
        ty,
        width,
        height,
        top_down,
        data,
    })
}

fn check_stride(stride: u32, width: u32, bpp: u32) -> Result<(), String> {
    if stride != width * bpp {
        return Err(format!("stride {stride} != {width}*{bpp}"));
    }
    Ok(())
}

/// What an exact LZ decode of `bitmap` holds (padding of 32-bit pixels
/// is 0, the x bit of RGB16 is 0, RGBA keeps alpha).
pub fn expected_lz_output(bitmap: &Bitmap) -> Vec<u8> {
    match bitmap.format {
        BitmapFormat::Rgb32 => bitmap
            .data
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2], 0])
            .collect(),
        BitmapFormat::Rgb16 => bitmap
            .data
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[1] & 0x7f])
            .collect(),
        _ => bitmap.data.to_vec(),
    }
}

// ---------------------------------------------------------------- QUIC

struct BitReader<'a> {
    words: &'a [u8],
    next_index: usize,
    word: u32,
    next: u32,
    avail: u32,
}

impl BitReader<'_> {
    fn read_word(&mut self) -> Result<u32, String> {
        let at = self.next_index * 4;
        let b = self.words.get(at..at + 4).ok_or("QUIC stream too short")?;
        self.next_index += 1;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn eat(&mut self, len: u32) -> Result<(), String> {
        assert!(len > 0 && len < 32);
        self.word <<= len;
        if self.avail >= len {
            self.avail -= len;
            self.word |= self.next >> self.avail;
        } else {
            let delta = len - self.avail;
            self.word |= self.next << delta;
            self.next = self.read_word()?;
            self.avail = 32 - delta;
            self.word |= self.next >> self.avail;
        }
        Ok(())
    }

    fn eat32(&mut self) -> Result<u32, String> {
        let v = self.word;
        self.eat(16)?;
        self.eat(16)?;
        Ok(v)
    }
}

struct DecChannel {
    errors: Vec<u8>,
    model: Model,
}

struct Dec<'a, 'b> {
    r: &'b mut BitReader<'a>,
    f: &'static Family,
    mask: u32,
}

impl Dec<'_, '_> {
    fn golomb(&mut self, l: usize) -> Result<u8, String> {
        let bits = self.r.word;
        let f = self.f;
        let alt_prefix = f.not_gr_cwlen[l] - f.not_gr_suffixlen[l];
        let prefix_mask = if alt_prefix == 0 {
            u32::MAX
        } else {
            u32::MAX >> alt_prefix
        };
        let (value, len) = if bits > prefix_mask {
            let zeros = bits.leading_zeros();
            let len = zeros + 1 + l as u32;
            let low = if l == 0 {
                0
            } else {
                (bits >> (32 - len)) & ((1 << l) - 1)
            };
            ((zeros << l) | low, len)
        } else {
            let len = f.not_gr_cwlen[l];
            let suffix = f.not_gr_suffixlen[l];
            let low = if suffix == 0 {
                0
            } else {
                (bits >> (32 - len)) & ((1 << suffix) - 1)
            };
            (f.n_gr_codewords[l] + low, len)
        };
        if value > self.mask {
            return Err(format!("code value {value} out of range"));
        }
        self.r.eat(len)?;
        Ok(value as u8)
    }

    fn run(&mut self, st: &mut CommonState) -> Result<usize, String> {
        let mut run = 0usize;
        loop {
            let ones = (!(self.r.word >> 24) as u8).leading_zeros();
            for _ in 0..ones {
                run += st.melcorder as usize;
                if st.melcstate < 31 {
                    st.melcstate += 1;
                    st.melclen = MELC_LEN[st.melcstate];
                    st.melcorder = 1 << st.melclen;
                }
            }
            if ones != 8 {
                self.r.eat(ones + 1)?;
                break;
            }
            self.r.eat(8)?;
        }
        if st.melclen > 0 {
            run += (self.r.word >> (32 - st.melclen)) as usize;
            self.r.eat(st.melclen)?;
        }
        if st.melcstate > 0 {
            st.melcstate -= 1;
            st.melclen = MELC_LEN[st.melcstate];
            st.melcorder = 1 << st.melclen;
        }
        Ok(run)
    }
}

/// Decodes channels `chans` (planes) of row `y` into `cur`.
#[allow(clippy::too_many_arguments)]
fn quic_row(
    d: &mut Dec,
    st: &mut CommonState,
    chans: &mut [&mut DecChannel],
    prev: &[Vec<u8>],
    cur: &mut [Vec<u8>],
    y: usize,
    width: u32,
) -> Result<(), String> {
    for ch in chans.iter_mut() {
        ch.errors[0] = if y == 0 { 0 } else { ch.errors[1] };
    }
    let n = chans.len();
    let plan = st.plan_segments(width);
    let final_trigger = st.wm_trigger;
    let unfold = |d: &Dec, v: u8| u32::from(d.f.unfold[v as usize]);
    for seg in plan.iter() {
        st.wm_trigger = seg.trigger;
        let waitmask = seg.waitmask;
        let mut i = seg.start;
        let end = seg.end;
        let update = |chans: &mut [&mut DecChannel], x: usize, f: &Family, trigger: u32| {
            for ch in chans.iter_mut() {
                let (c, v) = (ch.errors[x], ch.errors[x + 1]);
                ch.model.update(f, c, v, trigger);
            }
        };
        let mut stop;
        if i == 0 {
            for c in 0..n {
                let l = chans[c].model.best_code(chans[c].errors[0]);
                let v = d.golomb(l)?;
                chans[c].errors[1] = v;
                let base = if y == 0 { 0 } else { u32::from(prev[c][0]) };
                cur[c][0] = ((unfold(d, v) + base) & d.mask) as u8;
            }
            if st.waitcnt > 0 {
                st.waitcnt -= 1;
            } else {
                st.waitcnt = st.tabrand() & waitmask;
                update(chans, 0, d.f, st.wm_trigger);
            }
            i = 1;
            stop = i + st.waitcnt as usize;
        } else {
            stop = i + st.waitcnt as usize;
        }
        let mut run_index = 0usize;
        let same = |row: &[Vec<u8>], a: usize, b: usize| (0..n).all(|c| row[c][a] == row[c][b]);
        'seg: loop {
            let mut at_run = false;
            loop {
                let limit = if stop < end { stop + 1 } else { end };
                while i < limit {
                    if y > 0
                        && i > 2
                        && run_index != i
                        && same(prev, i - 1, i)
                        && same(cur, i - 1, i - 2)
                    {
                        at_run = true;
                        break;
                    }
                    for c in 0..n {
                        let l = chans[c].model.best_code(chans[c].errors[i]);
                        let v = d.golomb(l)?;
                        chans[c].errors[i + 1] = v;
                        let pred = if y == 0 {
                            u32::from(cur[c][i - 1])
                        } else {
                            (u32::from(cur[c][i - 1]) + u32::from(prev[c][i])) >> 1
                        };
                        cur[c][i] = ((unfold(d, v) + pred) & d.mask) as u8;
                    }
                    i += 1;
                }
                if at_run {
                    break;
                }
                if stop < end {
                    update(chans, stop, d.f, st.wm_trigger);
                    stop = i + (st.tabrand() & waitmask) as usize;
                } else {
                    st.waitcnt = (stop - end) as u32;
                    break 'seg;
                }
            }
            // A run.
            st.waitcnt = (stop - i) as u32;
            run_index = i;
            let run = d.run(st)?;
            if run > end - i {
                return Err("run past the row".into());
            }
            for _ in 0..run {
                for plane in cur.iter_mut().take(n) {
                    plane[i] = plane[i - 1];
                }
                i += 1;
            }
            if i == end {
                break 'seg;
            }
            stop = i + st.waitcnt as usize;
        }
    }
    st.wm_trigger = final_trigger;
    Ok(())
}

/// Decodes a QUIC stream to top-down pixels: RGB32/RGB24 as B,G,R,0;
/// RGBA as B,G,R,A; RGB16 as x1r5g5b5 (x = 0); gray as one byte.
pub fn quic_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(4) {
        return Err("QUIC size is not a multiple of 4".into());
    }
    let mut r = BitReader {
        words: s,
        next_index: 0,
        word: 0,
        next: 0,
        avail: 0,
    };
    r.word = r.read_word()?;
    r.next = r.word;
    if r.eat32()? != QUIC_MAGIC || r.eat32()? != 0 {
        return Err("bad QUIC magic or version".into());
    }
    let ty = r.eat32()?;
    let width = r.eat32()?;
    let height = r.eat32()?;
    if width == 0 || height == 0 || u64::from(width) * u64::from(height) > 1 << 28 {
        return Err("bad size".into());
    }
    let (planes, bpc) = match ty {
        1 => (1, 8),
        2 => (3, 5),
        3 | 4 => (3, 8),
        5 => (4, 8),
        _ => return Err(format!("bad QUIC type {ty}")),
    };
    let w = width as usize;
    let new_ch = || DecChannel {
        errors: vec![0; w + 1],
        model: Model::new(bpc),
    };
    let mut chans: Vec<DecChannel> = (0..4).map(|_| new_ch()).collect();
    let mut rgb_state = CommonState::new();
    let mut alpha_state = CommonState::new();
    let mut prev = vec![vec![0u8; w]; planes];
    let mut cur = vec![vec![0u8; w]; planes];
    let mut out = Vec::new();
    let mut d = Dec {
        r: &mut r,
        f: Family::get(bpc),
        mask: (1 << bpc) - 1,
    };
    for y in 0..height as usize {
        let (c012, c3) = chans.split_at_mut(3);
        if planes >= 3 {
            let [a, b, c] = c012 else { unreachable!() };
            let mut group = [a, b, c];
            quic_row(
                &mut d,
                &mut rgb_state,
                &mut group,
                &prev[..3],
                &mut cur[..3],
                y,
                width,
            )?;
        }
        if planes != 3 {
            let (ch, plane) = if planes == 1 {
                (&mut c012[0], 0)
            } else {
                (&mut c3[0], 3)
            };
            let mut group = [ch];
            let (p, c) = (&prev[plane..plane + 1], &mut cur[plane..plane + 1]);
            quic_row(&mut d, &mut alpha_state, &mut group, p, c, y, width)?;
        }
        for x in 0..w {
            match ty {
                1 => out.push(cur[0][x]),
                2 => {
                    let v = (u16::from(cur[0][x]) << 10)
                        | (u16::from(cur[1][x]) << 5)
                        | u16::from(cur[2][x]);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                5 => out.extend_from_slice(&[cur[2][x], cur[1][x], cur[0][x], cur[3][x]]),
                _ => out.extend_from_slice(&[cur[2][x], cur[1][x], cur[0][x], 0]),
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    // The stream holds at most the padding and one look-ahead word more.
    if r.next_index * 4 + 4 < s.len() {
        return Err(format!("{} unused bytes", s.len() - r.next_index * 4));
    }
    Ok(out)
}

/// What an exact QUIC decode of `bitmap` holds (see `quic_decode`).
pub fn expected_quic_output(bitmap: &Bitmap) -> Vec<u8> {
    let stride = bitmap.stride();
    let mut out = Vec::new();
    for y in 0..bitmap.height as usize {
        let row = if bitmap.top_down {
            y
        } else {
            bitmap.height as usize - 1 - y
        };
        let row = &bitmap.data[row * stride..(row + 1) * stride];
        match bitmap.format {
            BitmapFormat::Rgb32 => row
                .chunks_exact(4)
                .for_each(|p| out.extend([p[0], p[1], p[2], 0])),
            BitmapFormat::Rgb24 => row
                .chunks_exact(3)
                .for_each(|p| out.extend([p[0], p[1], p[2], 0])),
            BitmapFormat::Rgb16 => row
                .chunks_exact(2)
                .for_each(|p| out.extend([p[0], p[1] & 0x7f])),
            _ => out.extend_from_slice(row),
        }
    }
    out
}

// ---------------------------------------------------------------- GLZ

/// A client's GLZ window: decoded RGB32 images by id.
#[derive(Default)]
pub struct GlzWindow {
    images: HashMap<u64, Vec<u32>>,
}

#[allow(dead_code)]
pub struct GlzDecoded {
    pub id: u64,
    pub width: u32,
    pub height: u32,
    pub top_down: bool,
    pub win_head_dist: u32,
    /// B, G, R, 0 per pixel, in stream order.
    pub bgrx: Vec<u8>,
}

impl GlzWindow {
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Decodes one GLZ_RGB stream, adds it to the window and drops images
    /// before the window head it names.
    pub fn decode(&mut self, s: &[u8]) -> Result<GlzDecoded, String> {
        let mut at = 0;
        if be32(s, &mut at)? != 0x2020_5a4c || be32(s, &mut at)? != 0x0001_0001 {
            return Err("bad GLZ magic".into());
        }
        let tb = byte(s, &mut at)?;
        if tb & 0x0f != 8 {
            return Err(format!("GLZ type {} (only RGB32 here)", tb & 0x0f));
        }
        let top_down = tb >> 4 != 0;
        let width = be32(s, &mut at)?;
        let height = be32(s, &mut at)?;
        let stride = be32(s, &mut at)?;
        check_stride(stride, width, 4)?;
        let id = (u64::from(be32(s, &mut at)?) << 32) | u64::from(be32(s, &mut at)?);
        let win_head_dist = be32(s, &mut at)?;
        if self.images.contains_key(&id) {
            return Err(format!("image id {id} twice"));
        }
        let n = width as usize * height as usize;
        let mut out: Vec<u32> = Vec::with_capacity(n);
        while out.len() < n {
            let ctrl = u32::from(byte(s, &mut at)?);
            if ctrl >= 32 {
                let mut len = ctrl >> 5;
                let pixel_flag = (ctrl >> 4) & 1;
                let mut pixel_ofs = ctrl & 0x0f;
                if len == 7 {
                    loop {
                        let c = byte(s, &mut at)?;
                        len += u32::from(c);
                        if c != 255 {
                            break;
                        }
                    }
                }
                pixel_ofs += u32::from(byte(s, &mut at)?) << 4;
                let code = u32::from(byte(s, &mut at)?);
                let image_flag = code >> 6;
                let mut image_dist;
                if pixel_flag == 0 {
                    image_dist = code & 0x3f;
                    for i in 0..image_flag {
                        image_dist += u32::from(byte(s, &mut at)?) << (6 + 8 * i);
                    }
                } else {
                    let long = (code >> 5) & 1;
                    pixel_ofs += (code & 0x1f) << 12;
                    image_dist = 0;
                    for i in 0..image_flag {
                        image_dist += u32::from(byte(s, &mut at)?) << (8 * i);
                    }
                    if long == 1 {
                        pixel_ofs += u32::from(byte(s, &mut at)?) << 17;
                    }
                }
                let len = len as usize;
                if out.len() + len > n {
                    return Err("copy past the image".into());
                }
                if image_dist == 0 {
                    let ofs = pixel_ofs as usize + 1;
                    if ofs > out.len() {
                        return Err("copy before the image start".into());
                    }
                    for _ in 0..len {
                        out.push(out[out.len() - ofs]);
                    }
                } else {
                    let ref_id = id
                        .checked_sub(u64::from(image_dist))
                        .ok_or("reference before image 0")?;
                    let img = self.images.get(&ref_id).ok_or(format!(
                        "image {id} refers to {ref_id}, which the client does not hold"
                    ))?;
                    let from = pixel_ofs as usize;
                    let src = img
                        .get(from..from + len)
                        .ok_or("copy past the referenced image")?;
                    out.extend_from_slice(src);
                }
            } else {
                for _ in 0..=ctrl {
                    let b = s.get(at..at + 3).ok_or("truncated literal")?;
                    at += 3;
                    out.push(u32::from_le_bytes([b[0], b[1], b[2], 0]));
                }
                if out.len() > n {
                    return Err("literals past the image".into());
                }
            }
        }
        if at != s.len() {
            return Err(format!("{} bytes after the GLZ image", s.len() - at));
        }
        let bgrx = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.images.insert(id, out);
        let oldest = id - u64::from(win_head_dist);
        self.images.retain(|&k, _| k >= oldest);
        Ok(GlzDecoded {
            id,
            width,
            height,
            top_down,
            win_head_dist,
            bgrx,
        })
    }
}
