//! A bounded set of damaged rectangles.
//!
//! Damage that has not been sent yet is kept here, not as a queue of
//! updates: a new rectangle that covers old ones replaces them, and when
//! there are too many rectangles the two whose merge wastes least area are
//! merged. So however fast a producer draws and however slow a client
//! reads, the region stays at most [`Region::MAX_RECTS`] rectangles, and
//! what is finally sent is read from the current picture.

use devices::display::Rect;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Region {
    rects: Vec<Rect>,
}

impl Region {
    pub const MAX_RECTS: usize = 32;

    pub fn new() -> Self {
        Region::default()
    }

    pub fn is_empty(&self) -> bool {
        self.rects.is_empty()
    }

    pub fn rects(&self) -> &[Rect] {
        &self.rects
    }

    pub fn clear(&mut self) {
        self.rects.clear();
    }

    /// Adds a rectangle (empty ones are ignored).
    pub fn add(&mut self, rect: Rect) {
        if rect.is_empty() || self.rects.iter().any(|r| r.contains(&rect)) {
            return;
        }
        self.rects.retain(|r| !rect.contains(r));
        self.rects.push(rect);
        while self.rects.len() > Self::MAX_RECTS {
            self.merge_cheapest_pair();
        }
    }

    pub fn add_region(&mut self, other: &Region) {
        for rect in &other.rects {
            self.add(*rect);
        }
    }

    /// Keeps only the parts inside `bounds`.
    pub fn clip(&mut self, bounds: Rect) {
        for r in &mut self.rects {
            *r = r.intersect(&bounds);
        }
        self.rects.retain(|r| !r.is_empty());
    }

    /// Removes `rect` from the region (the pieces around it stay).
    pub fn subtract(&mut self, rect: Rect) {
        let kept: Vec<Rect> = self.rects.iter().flat_map(|r| subtract(*r, rect)).collect();
        self.rects.clear();
        kept.into_iter().for_each(|r| self.add(r));
    }

    /// Takes up to `max_pixels` of damage: a whole rectangle, or the top
    /// band of a large one (the rest stays queued). What it takes leaves
    /// the other rectangles too, so no pixel is taken twice.
    pub fn take(&mut self, max_pixels: u64) -> Option<Rect> {
        let rect = *self.rects.first()?;
        let width = rect.width().max(1) as u64;
        let rows = (max_pixels / width).max(1);
        let taken = if rows >= rect.height() as u64 {
            self.rects.remove(0);
            rect
        } else {
            let split = rect.top + rows as i32;
            self.rects[0].top = split;
            Rect::new(rect.left, rect.top, rect.right, split)
        };
        if self.rects.iter().any(|r| !r.intersect(&taken).is_empty()) {
            self.subtract(taken);
        }
        Some(taken)
    }

    fn merge_cheapest_pair(&mut self) {
        let mut best = (0, 1, u64::MAX);
        for i in 0..self.rects.len() {
            for j in i + 1..self.rects.len() {
                let (a, b) = (self.rects[i], self.rects[j]);
                let waste = a.union(&b).area().saturating_sub(a.area() + b.area());
                if waste < best.2 {
                    best = (i, j, waste);
                }
            }
        }
        let (i, j, _) = best;
        let merged = self.rects[i].union(&self.rects[j]);
        self.rects.swap_remove(j);
        self.rects.swap_remove(i);
        self.add(merged);
    }
}

/// `a` minus `b`: up to four rectangles.
pub fn subtract(a: Rect, b: Rect) -> Vec<Rect> {
    let i = a.intersect(&b);
    if i.is_empty() {
        return vec![a];
    }
    [
        Rect::new(a.left, a.top, a.right, i.top),
        Rect::new(a.left, i.bottom, a.right, a.bottom),
        Rect::new(a.left, i.top, i.left, i.bottom),
        Rect::new(i.right, i.top, a.right, i.bottom),
    ]
    .into_iter()
    .filter(|r| !r.is_empty())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spice::codec::testimages::Rng;

    #[test]
    fn subtract_leaves_exactly_the_outside() {
        let mut rng = Rng(7);
        let mut coord = || (rng.next() % 40) as i32;
        for _ in 0..2000 {
            let (x0, y0, x1, y1) = (coord(), coord(), coord(), coord());
            let a = Rect::new(x0.min(x1), y0.min(y1), x0.max(x1), y0.max(y1));
            let (x0, y0, x1, y1) = (coord(), coord(), coord(), coord());
            let b = Rect::new(x0.min(x1), y0.min(y1), x0.max(x1), y0.max(y1));
            let pieces = subtract(a, b);
            assert!(pieces.len() <= 4);
            for y in 0..40 {
                for x in 0..40 {
                    let p = Rect::new(x, y, x + 1, y + 1);
                    let inside = pieces.iter().filter(|r| r.contains(&p)).count();
                    let expected = a.contains(&p) && !b.contains(&p);
                    assert_eq!(inside, usize::from(expected), "{a:?} - {b:?} at {x},{y}");
                }
            }
        }
    }

    #[test]
    fn covered_rects_collapse() {
        let mut region = Region::new();
        region.add(Rect::new(10, 10, 20, 20));
        region.add(Rect::new(12, 12, 15, 15));
        region.add(Rect::new(0, 0, 5, 5));
        assert_eq!(region.rects().len(), 2);
        region.add(Rect::new(0, 0, 100, 100));
        assert_eq!(region.rects(), &[Rect::new(0, 0, 100, 100)]);
        region.add(Rect::new(5, 5, 5, 9));
        assert_eq!(region.rects().len(), 1);
    }

    #[test]
    fn stays_bounded_and_covers_everything() {
        let mut region = Region::new();
        let mut added = Vec::new();
        for i in 0..10_000 {
            let x = (i * 37) % 1000;
            let y = (i * 91) % 700;
            let r = Rect::new(x, y, x + 3, y + 2);
            region.add(r);
            added.push(r);
            assert!(region.rects().len() <= Region::MAX_RECTS);
        }
        for r in added {
            // Every damaged pixel is still covered.
            for y in r.top..r.bottom {
                for x in r.left..r.right {
                    let p = Rect::new(x, y, x + 1, y + 1);
                    assert!(region.rects().iter().any(|c| c.contains(&p)));
                }
            }
        }
    }

    #[test]
    fn take_splits_large_rects_into_bands() {
        let mut region = Region::new();
        region.add(Rect::new(0, 0, 100, 50));
        assert_eq!(region.take(1000), Some(Rect::new(0, 0, 100, 10)));
        assert_eq!(region.take(1000), Some(Rect::new(0, 10, 100, 20)));
        assert_eq!(region.take(1_000_000), Some(Rect::new(0, 20, 100, 50)));
        assert_eq!(region.take(1000), None);
        // A band is at least one row.
        region.add(Rect::new(0, 0, 5000, 2));
        assert_eq!(region.take(10), Some(Rect::new(0, 0, 5000, 1)));
    }

    #[test]
    fn take_never_gives_a_pixel_twice() {
        let mut region = Region::new();
        region.add(Rect::new(0, 0, 100, 100));
        region.add(Rect::new(50, 50, 150, 150));
        let mut taken = Vec::new();
        while let Some(r) = region.take(u64::MAX) {
            taken.push(r);
        }
        let area: u64 = taken.iter().map(|r| r.area()).sum();
        assert_eq!(area, 100 * 100 * 2 - 50 * 50, "{taken:?}");
    }

    #[test]
    fn clip_drops_outside_parts() {
        let mut region = Region::new();
        region.add(Rect::new(-10, -10, 10, 10));
        region.add(Rect::new(200, 200, 300, 300));
        region.clip(Rect::new(0, 0, 100, 100));
        assert_eq!(region.rects(), &[Rect::new(0, 0, 10, 10)]);
    }

    #[test]
    fn subtract_removes_a_rect_from_the_region() {
        let mut region = Region::new();
        region.add(Rect::new(0, 0, 100, 10));
        region.add(Rect::new(40, 40, 60, 60));
        region.subtract(Rect::new(30, 0, 70, 100));
        let mut rects = region.rects().to_vec();
        rects.sort_by_key(|r| (r.left, r.top));
        assert_eq!(rects, [Rect::new(0, 0, 30, 10), Rect::new(70, 0, 100, 10)]);
    }
}
