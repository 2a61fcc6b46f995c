//! An RGB raster with rectangles, thick lines and 5×7 text.

use super::font::glyph;

/// An RGB colour.
pub type Rgb = [u8; 3];

/// White.
pub const WHITE: Rgb = [255, 255, 255];
/// Black.
pub const BLACK: Rgb = [0, 0, 0];
/// Light grey for grid lines.
pub const GRID: Rgb = [225, 225, 225];
/// Series colours (colour-blind-safe Okabe–Ito).
pub const PALETTE: [Rgb; 6] = [[0, 114, 178], [213, 94, 0], [0, 158, 115], [204, 121, 167], [230, 159, 0], [86, 180, 233]];

/// A white canvas.
pub struct Canvas {
    /// Width in pixels.
    pub w: i64,
    /// Height in pixels.
    pub h: i64,
    px: Vec<u8>,
}

impl Canvas {
    /// A blank white canvas.
    pub fn new(w: i64, h: i64) -> Self {
        Canvas { w, h, px: vec![255; (w * h * 3) as usize] }
    }
    /// Sets one pixel (ignored outside the canvas).
    pub fn put(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && x < self.w && y < self.h {
            let i = ((y * self.w + x) * 3) as usize;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }
    /// Fills `[x0, x1) × [y0, y1)`.
    pub fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0.min(y1)..y0.max(y1) {
            for x in x0.min(x1)..x0.max(x1) {
                self.put(x, y, c);
            }
        }
    }
    /// Outlines a rectangle.
    pub fn frame(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        self.rect(x0, y0, x1, y0 + 1, c);
        self.rect(x0, y1 - 1, x1, y1, c);
        self.rect(x0, y0, x0 + 1, y1, c);
        self.rect(x1 - 1, y0, x1, y1, c);
    }
    /// A line `width` pixels thick (Bresenham with a square brush).
    pub fn line(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, width: i64, c: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        let r = width / 2;
        loop {
            self.rect(x - r, y - r, x - r + width.max(1), y - r + width.max(1), c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
    /// Width in pixels of `s` at `scale`.
    pub fn text_width(s: &str, scale: i64) -> i64 {
        s.chars().count() as i64 * 6 * scale
    }
    /// Draws `s` with its top-left corner at `(x, y)`.
    pub fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb) {
        for (i, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            let ox = x + i as i64 * 6 * scale;
            for (col, bits) in g.iter().enumerate() {
                for row in 0..7 {
                    if bits >> row & 1 == 1 {
                        self.rect(ox + col as i64 * scale, y + row * scale, ox + (col as i64 + 1) * scale, y + (row + 1) * scale, c);
                    }
                }
            }
        }
    }
    /// Draws `s` centred on `cx`.
    pub fn text_centered(&mut self, cx: i64, y: i64, s: &str, scale: i64, c: Rgb) {
        self.text(cx - Self::text_width(s, scale) / 2, y, s, scale, c);
    }
    /// Encodes the canvas as PNG.
    pub fn to_png(&self) -> std::io::Result<Vec<u8>> {
        super::png::encode_rgb(self.w as u32, self.h as u32, &self.px)
    }
    /// The pixel at `(x, y)`.
    pub fn pixel(&self, x: i64, y: i64) -> Rgb {
        let i = ((y * self.w + x) * 3) as usize;
        [self.px[i], self.px[i + 1], self.px[i + 2]]
    }
}

/// Red (0) → yellow (0.5) → green (1).
pub fn heat(v: f64) -> Rgb {
    let v = if v.is_finite() { v.clamp(0.0, 1.0) } else { return [200, 200, 200] };
    if v < 0.5 {
        let t = v / 0.5;
        [215, (48.0 + t * (190.0 - 48.0)) as u8, 39]
    } else {
        let t = (v - 0.5) / 0.5;
        [(215.0 - t * (215.0 - 26.0)) as u8, (190.0 - t * (190.0 - 152.0)) as u8, (39.0 + t * (80.0 - 39.0)) as u8]
    }
}
