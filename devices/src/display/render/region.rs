//! A region: a set of pixels as horizontal bands of disjoint spans, so that
//! every pixel is visited once even when the rectangles it was built from
//! overlap (XOR and invert must not apply twice).

use super::super::Rect;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Band {
    top: i32,
    bottom: i32,
    /// Sorted, disjoint, non-adjacent `[left, right)` spans.
    spans: Vec<(i32, i32)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Region {
    bands: Vec<Band>,
}

impl Region {
    pub fn from_rect(r: Rect) -> Region {
        if r.is_empty() {
            return Region::default();
        }
        Region {
            bands: vec![Band {
                top: r.top,
                bottom: r.bottom,
                spans: vec![(r.left, r.right)],
            }],
        }
    }

    /// The union of `rects`, each clipped to `bounds`.
    pub fn from_rects(rects: &[Rect], bounds: Rect) -> Region {
        let mut clipped: Vec<Rect> = rects
            .iter()
            .map(|r| r.intersect(&bounds))
            .filter(|r| !r.is_empty())
            .collect();
        if clipped.is_empty() {
            return Region::default();
        }
        clipped.sort_by_key(|r| r.top);
        let mut edges: Vec<i32> = clipped.iter().flat_map(|r| [r.top, r.bottom]).collect();
        edges.sort_unstable();
        edges.dedup();
        let mut bands: Vec<Band> = Vec::new();
        let mut active: Vec<Rect> = Vec::new();
        let mut next = 0;
        for pair in edges.windows(2) {
            let (y0, y1) = (pair[0], pair[1]);
            active.retain(|r| r.bottom > y0);
            while next < clipped.len() && clipped[next].top <= y0 {
                active.push(clipped[next]);
                next += 1;
            }
            let mut intervals: Vec<(i32, i32)> = active.iter().map(|r| (r.left, r.right)).collect();
            intervals.sort_unstable();
            let mut spans: Vec<(i32, i32)> = Vec::new();
            for (l, r) in intervals {
                match spans.last_mut() {
                    Some(last) if l <= last.1 => last.1 = last.1.max(r),
                    _ => spans.push((l, r)),
                }
            }
            if spans.is_empty() {
                continue;
            }
            match bands.last_mut() {
                Some(prev) if prev.bottom == y0 && prev.spans == spans => prev.bottom = y1,
                _ => bands.push(Band {
                    top: y0,
                    bottom: y1,
                    spans,
                }),
            }
        }
        Region { bands }
    }

    pub fn is_empty(&self) -> bool {
        self.bands.is_empty()
    }

    /// The smallest rectangle holding the region.
    pub fn extents(&self) -> Rect {
        let mut out = Rect::default();
        for b in &self.bands {
            if let (Some(first), Some(last)) = (b.spans.first(), b.spans.last()) {
                out = out.union(&Rect::new(first.0, b.top, last.1, b.bottom));
            }
        }
        out
    }

    /// The part of the region inside `r`.
    pub fn intersect_rect(&self, r: Rect) -> Region {
        let mut bands = Vec::new();
        for b in &self.bands {
            let (top, bottom) = (b.top.max(r.top), b.bottom.min(r.bottom));
            if top >= bottom {
                continue;
            }
            let spans: Vec<(i32, i32)> = b
                .spans
                .iter()
                .map(|&(l, rr)| (l.max(r.left), rr.min(r.right)))
                .filter(|(l, rr)| l < rr)
                .collect();
            if !spans.is_empty() {
                bands.push(Band { top, bottom, spans });
            }
        }
        Region { bands }
    }

    /// The region moved by (dx, dy).
    pub fn translate(&self, dx: i32, dy: i32) -> Region {
        Region {
            bands: self
                .bands
                .iter()
                .map(|b| Band {
                    top: b.top.saturating_add(dy),
                    bottom: b.bottom.saturating_add(dy),
                    spans: b
                        .spans
                        .iter()
                        .map(|&(l, r)| (l.saturating_add(dx), r.saturating_add(dx)))
                        .collect(),
                })
                .collect(),
        }
    }

    pub fn contains(&self, x: i32, y: i32) -> bool {
        let i = self.bands.partition_point(|b| b.bottom <= y);
        let Some(b) = self.bands.get(i) else {
            return false;
        };
        if y < b.top {
            return false;
        }
        let j = b.spans.partition_point(|s| s.1 <= x);
        b.spans.get(j).is_some_and(|s| s.0 <= x)
    }

    /// Calls `f(y, left, right)` for every row span, top to bottom (or
    /// bottom to top when `upwards`), left to right (or right to left).
    pub fn for_each_span(&self, upwards: bool, leftwards: bool, mut f: impl FnMut(i32, i32, i32)) {
        let mut rows = |b: &Band, y: i32| {
            if leftwards {
                b.spans.iter().rev().for_each(|&(l, r)| f(y, l, r));
            } else {
                b.spans.iter().for_each(|&(l, r)| f(y, l, r));
            }
        };
        if upwards {
            for b in self.bands.iter().rev() {
                for y in (b.top..b.bottom).rev() {
                    rows(b, y);
                }
            }
        } else {
            for b in &self.bands {
                for y in b.top..b.bottom {
                    rows(b, y);
                }
            }
        }
    }

    /// Number of pixels.
    pub fn area(&self) -> u64 {
        self.bands
            .iter()
            .map(|b| {
                let w: u64 = b.spans.iter().map(|s| (s.1 - s.0) as u64).sum();
                w * (b.bottom - b.top) as u64
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_rects_become_disjoint_spans() {
        let bounds = Rect::new(0, 0, 100, 100);
        let r = Region::from_rects(
            &[
                Rect::new(0, 0, 10, 10),
                Rect::new(5, 5, 20, 20),
                Rect::new(-5, -5, 2, 2),
            ],
            bounds,
        );
        assert_eq!(r.area(), 100 + 225 - 25);
        assert_eq!(r.extents(), Rect::new(0, 0, 20, 20));
        assert!(r.contains(0, 0) && r.contains(19, 19) && r.contains(9, 4));
        assert!(!r.contains(15, 2) && !r.contains(20, 19) && !r.contains(-1, 0));
        let mut count = 0;
        r.for_each_span(false, false, |_, l, r| count += r - l);
        assert_eq!(count as u64, r.area());
    }

    #[test]
    fn intersect_and_translate() {
        let r = Region::from_rect(Rect::new(0, 0, 10, 10));
        assert_eq!(
            r.intersect_rect(Rect::new(5, 5, 50, 50)).extents(),
            Rect::new(5, 5, 10, 10)
        );
        assert!(r.intersect_rect(Rect::new(10, 0, 20, 10)).is_empty());
        assert_eq!(r.translate(3, -2).extents(), Rect::new(3, -2, 13, 8));
        assert!(Region::from_rects(&[], Rect::new(0, 0, 1, 1)).is_empty());
        assert!(Region::from_rect(Rect::new(5, 5, 5, 9)).is_empty());
    }

    #[test]
    fn adjacent_identical_bands_merge() {
        let r = Region::from_rects(
            &[Rect::new(0, 0, 10, 5), Rect::new(0, 5, 10, 10)],
            Rect::new(0, 0, 100, 100),
        );
        assert_eq!(r.bands.len(), 1);
    }
}
