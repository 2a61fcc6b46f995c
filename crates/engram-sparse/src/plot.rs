//! A minimal PNG line chart (no plotting dependency): axes, grid, one polyline with markers per
//! series, and tick labels drawn with a 3×5 pixel font. Enough for an accuracy-vs-sparsity curve.

use crate::error::{invalid, Result};

/// One line of the chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// RGB colour.
    pub color: [u8; 3],
    /// Points `(x, y)`; drawn in the given order.
    pub points: Vec<(f64, f64)>,
}

/// A chart with fixed axis ranges.
#[derive(Debug, Clone)]
pub struct Chart {
    /// `(min, max)` of the x axis.
    pub x_range: (f64, f64),
    /// `(min, max)` of the y axis.
    pub y_range: (f64, f64),
    /// x positions of labelled ticks.
    pub x_ticks: Vec<f64>,
    /// y positions of labelled ticks.
    pub y_ticks: Vec<f64>,
    /// The lines.
    pub series: Vec<Series>,
}

const W: usize = 640;
const H: usize = 420;
const L: usize = 60;
const R: usize = 20;
const T: usize = 20;
const B: usize = 40;

// 3×5 glyphs, rows top to bottom, 3 bits each (MSB = left column).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        '%' => [5, 1, 2, 4, 5],
        _ => return None,
    })
}

struct Canvas(Vec<u8>);

impl Canvas {
    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < W && (y as usize) < H {
            let i = (y as usize * W + x as usize) * 3;
            self.0[i..i + 3].copy_from_slice(&c);
        }
    }
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3], thick: i64) {
        let n = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
        for s in 0..=n {
            let x = x0 + (x1 - x0) * s / n;
            let y = y0 + (y1 - y0) * s / n;
            for dx in 0..thick {
                for dy in 0..thick {
                    self.set(x + dx - thick / 2, y + dy - thick / 2, c);
                }
            }
        }
    }
    fn text(&mut self, s: &str, x: i64, y: i64, scale: i64) {
        for (k, ch) in s.chars().enumerate() {
            if let Some(g) = glyph(ch) {
                for (row, bits) in g.iter().enumerate() {
                    for col in 0..3 {
                        if bits >> (2 - col) & 1 == 1 {
                            for sx in 0..scale {
                                for sy in 0..scale {
                                    self.set(x + (k as i64 * 4 + col) * scale + sx, y + row as i64 * scale + sy, [0, 0, 0]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn fmt_tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

impl Chart {
    /// Renders the chart as an RGB PNG.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let (x0, x1) = self.x_range;
        let (y0, y1) = self.y_range;
        if !(x1 > x0 && y1 > y0) {
            return Err(invalid("chart ranges must be increasing"));
        }
        let px = |x: f64| L as i64 + ((x - x0) / (x1 - x0) * (W - L - R) as f64).round() as i64;
        let py = |y: f64| (H - B) as i64 - ((y - y0) / (y1 - y0) * (H - T - B) as f64).round() as i64;
        let mut c = Canvas(vec![255; W * H * 3]);
        let grey = [220, 220, 220];
        for &t in &self.x_ticks {
            c.line((px(t), py(y0)), (px(t), py(y1)), grey, 1);
            let s = fmt_tick(t);
            c.text(&s, px(t) - s.len() as i64 * 4, (H - B) as i64 + 8, 2);
        }
        for &t in &self.y_ticks {
            c.line((px(x0), py(t)), (px(x1), py(t)), grey, 1);
            let s = fmt_tick(t);
            c.text(&s, L as i64 - 8 - s.len() as i64 * 8, py(t) - 5, 2);
        }
        c.line((px(x0), py(y0)), (px(x1), py(y0)), [0, 0, 0], 2);
        c.line((px(x0), py(y0)), (px(x0), py(y1)), [0, 0, 0], 2);
        for s in &self.series {
            for w in s.points.windows(2) {
                c.line((px(w[0].0), py(w[0].1)), (px(w[1].0), py(w[1].1)), s.color, 2);
            }
            for &(x, y) in &s.points {
                for dx in -3..=3 {
                    for dy in -3..=3 {
                        c.set(px(x) + dx, py(y) + dy, s.color);
                    }
                }
            }
        }
        encode_png(&c.0, W as u32, H as u32)
    }
}

/// Encodes 8-bit RGB pixels (`width·height·3` bytes, row-major) as a PNG.
pub fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    if rgb.len() != width as usize * height as usize * 3 {
        return Err(invalid("pixel buffer does not match the image size"));
    }
    Ok(engram_core::png::encode_rgb(width, height, rgb)?)
}
