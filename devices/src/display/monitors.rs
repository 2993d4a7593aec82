//! Monitors: the outputs a display device shows its head 0 on. A guest
//! with several outputs (QXL's heads) scans each one out from its own
//! rectangle of one surface, and a client opens a window per output.
//!
//! The device sets the guest's layout as the guest wrote it; readers get it
//! clipped to the surface as it is now ([`Layout::monitors`]), since the
//! surface and the layout change at different times.

/// One output: a rectangle of head 0. Width or height 0: the output is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Monitor {
    pub id: u32,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Monitor {
    pub fn is_on(&self) -> bool {
        self.width > 0 && self.height > 0
    }

    /// The part inside a surface of `width` x `height` (off when none is).
    pub fn clipped(self, width: u32, height: u32) -> Monitor {
        let w = width.saturating_sub(self.x).min(self.width);
        let h = height.saturating_sub(self.y).min(self.height);
        if w == 0 || h == 0 {
            return Monitor {
                width: 0,
                height: 0,
                ..self
            };
        }
        Monitor {
            width: w,
            height: h,
            ..self
        }
    }
}

/// The outputs a device offers and the guest's layout of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Outputs the device offers (at least 1).
    pub max: u32,
    /// The guest's monitors, at most `max`; empty: one output showing all
    /// of head 0 (a guest that never said, or VGA mode).
    pub guest: Vec<Monitor>,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            max: 1,
            guest: Vec::new(),
        }
    }
}

impl Layout {
    /// The monitors on a head 0 of `size` (none without a head), clipped to it.
    pub fn monitors(&self, size: Option<(u32, u32)>) -> Vec<Monitor> {
        let Some((width, height)) = size else {
            return Vec::new();
        };
        if self.guest.is_empty() {
            return vec![Monitor {
                id: 0,
                x: 0,
                y: 0,
                width,
                height,
            }];
        }
        self.guest
            .iter()
            .map(|m| m.clipped(width, height))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u32, x: u32, y: u32, width: u32, height: u32) -> Monitor {
        Monitor {
            id,
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn without_a_guest_layout_one_monitor_shows_the_head() {
        let layout = Layout::default();
        assert_eq!(layout.monitors(Some((800, 600))), [m(0, 0, 0, 800, 600)]);
        assert_eq!(layout.monitors(None), []);
    }

    #[test]
    fn monitors_are_clipped_to_the_head() {
        let layout = Layout {
            max: 4,
            guest: vec![
                m(0, 0, 0, 1024, 768),
                m(1, 1024, 0, 1024, 768),
                m(2, 1500, 700, 900, 900),
                m(3, u32::MAX, u32::MAX, u32::MAX, u32::MAX),
            ],
        };
        assert_eq!(
            layout.monitors(Some((2048, 768))),
            [
                m(0, 0, 0, 1024, 768),
                m(1, 1024, 0, 1024, 768),
                m(2, 1500, 700, 548, 68),
                m(3, u32::MAX, u32::MAX, 0, 0),
            ]
        );
        // The head shrank before the guest said its new layout.
        let now = layout.monitors(Some((1024, 768)));
        assert_eq!(now[0], m(0, 0, 0, 1024, 768));
        assert!(!now[1].is_on() && !now[2].is_on());
    }
}
