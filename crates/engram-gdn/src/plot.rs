//! A loss-curve PNG without a plotting stack: curves are rasterised into an RGB buffer and
//! written as a PNG (through `engram_core::png`). Axes carry tick marks at
//! round values; there is no text (no font dependency), the JSONL metrics hold the numbers.

use crate::Result;
use std::path::Path;

/// One named series of (x, y) points and its RGB colour.
pub struct Series<'a> {
    /// Points in data coordinates.
    pub points: &'a [(f64, f64)],
    /// Line colour.
    pub color: [u8; 3],
}

/// Draws the series (shared axes, y from the data range) into a `w×h` PNG at `path`.
pub fn line_chart(path: &Path, series: &[Series], w: usize, h: usize) -> Result<()> {
    let mut img = vec![255u8; w * h * 3];
    let (l, r, t, b) = (40usize, 10usize, 10usize, 30usize);
    let pts = series.iter().flat_map(|s| s.points.iter()).filter(|p| p.0.is_finite() && p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    y0 = y0.min(0.0);
    if y1 - y0 < 1e-12 {
        y1 = y0 + 1.0;
    }
    let (pw, ph) = ((w - l - r) as f64, (h - t - b) as f64);
    let to_px = |x: f64, y: f64| (l as f64 + (x - x0) / (x1 - x0) * pw, t as f64 + (1.0 - (y - y0) / (y1 - y0)) * ph);
    let put = |img: &mut Vec<u8>, x: i64, y: i64, c: [u8; 3]| {
        if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
            let i = (y as usize * w + x as usize) * 3;
            img[i..i + 3].copy_from_slice(&c);
        }
    };
    let grey = [200, 200, 200];
    let black = [0, 0, 0];
    // Horizontal grid and ticks at integer y values (loss in nats).
    let step = ((y1 - y0) / 8.0).max(0.25).ceil();
    let mut yv = (y0 / step).ceil() * step;
    while yv <= y1 {
        let (_, py) = to_px(x0, yv);
        for x in l..w - r {
            put(&mut img, x as i64, py.round() as i64, grey);
        }
        for x in l - 6..l {
            put(&mut img, x as i64, py.round() as i64, black);
        }
        yv += step;
    }
    for y in t..=h - b {
        put(&mut img, l as i64, y as i64, black);
    }
    for x in l..w - r {
        put(&mut img, x as i64, (h - b) as i64, black);
    }
    for s in series {
        let mut prev: Option<(f64, f64)> = None;
        for &(x, y) in s.points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
            let p = to_px(x, y);
            if let Some(q) = prev {
                let n = ((p.0 - q.0).abs().max((p.1 - q.1).abs()).ceil() as usize).max(1);
                for i in 0..=n {
                    let f = i as f64 / n as f64;
                    let (px, py) = (q.0 + (p.0 - q.0) * f, q.1 + (p.1 - q.1) * f);
                    put(&mut img, px.round() as i64, py.round() as i64, s.color);
                    put(&mut img, px.round() as i64, py.round() as i64 + 1, s.color);
                }
            } else {
                put(&mut img, p.0.round() as i64, p.1.round() as i64, s.color);
            }
            prev = Some(p);
        }
    }
    write_png(path, &img, w, h)
}

/// Writes 8-bit RGB pixels as a PNG.
pub fn write_png(path: &Path, rgb: &[u8], w: usize, h: usize) -> Result<()> {
    std::fs::write(path, engram_core::png::encode_rgb(w as u32, h as u32, rgb)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn png_is_well_formed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.png");
        let pts: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, 5.0 / (1.0 + i as f64))).collect();
        line_chart(&p, &[Series { points: &pts, color: [0, 0, 255] }], 320, 200).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..8], &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]);
        assert_eq!(&bytes[12..16], b"IHDR");
        // Decompress IDAT and check that some pixels are blue.
        let len = u32::from_be_bytes(bytes[33..37].try_into().unwrap()) as usize;
        let mut dec = flate2::read::ZlibDecoder::new(&bytes[41..41 + len]);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut dec, &mut raw).unwrap();
        assert_eq!(raw.len(), (320 * 3 + 1) * 200);
        assert!(raw.chunks(3).any(|c| c == [0, 0, 255]));
    }
}
