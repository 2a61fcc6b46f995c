//! A heatmap of the accuracy matrix as an RGB PNG (encoded by `engram_core::png`), free of an
//! imaging stack. Each cell is coloured from dark blue
//! (0%) to yellow (100%) and carries its rounded percentage in a 3×5 pixel font.

use crate::error::{invalid, Result};
use std::path::Path;

const CELL: usize = 48;
const SCALE: usize = 4;

/// 3×5 glyphs for the digits 0–9, one row per 3 bits.
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// Colour of an accuracy in [0, 1]: linear blend through blue, teal, yellow.
fn colour(a: f64) -> [u8; 3] {
    let stops = [(0.0, [30.0, 20.0, 90.0]), (0.5, [30.0, 150.0, 140.0]), (1.0, [250.0, 230.0, 40.0])];
    let a = a.clamp(0.0, 1.0);
    let (lo, hi) = if a <= 0.5 { (stops[0], stops[1]) } else { (stops[1], stops[2]) };
    let f = (a - lo.0) / (hi.0 - lo.0);
    std::array::from_fn(|k| (lo.1[k] + f * (hi.1[k] - lo.1[k])).round() as u8)
}

/// RGB pixels of the heatmap, row-major, and its width and height.
pub fn render(rows: &[Vec<f64>]) -> Result<(Vec<u8>, usize, usize)> {
    let h_cells = rows.len();
    let w_cells = rows.first().map(|r| r.len()).unwrap_or(0);
    if h_cells == 0 || w_cells == 0 || rows.iter().any(|r| r.len() != w_cells) {
        return Err(invalid("heatmap needs a non-empty rectangular matrix"));
    }
    let (w, h) = (w_cells * CELL, h_cells * CELL);
    let mut px = vec![0u8; w * h * 3];
    for (i, row) in rows.iter().enumerate() {
        for (j, &a) in row.iter().enumerate() {
            let c = colour(a);
            for y in i * CELL..(i + 1) * CELL {
                for x in j * CELL..(j + 1) * CELL {
                    let border = x % CELL == 0 || y % CELL == 0;
                    let v = if border { [255, 255, 255] } else { c };
                    px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&v);
                }
            }
            let text = format!("{}", (a * 100.0).round() as i64);
            let ink = if a > 0.6 { [0, 0, 0] } else { [255, 255, 255] };
            let tw = text.len() * 4 * SCALE - SCALE;
            let (x0, y0) = (j * CELL + (CELL - tw) / 2, i * CELL + (CELL - 5 * SCALE) / 2);
            for (k, ch) in text.bytes().enumerate() {
                let g = DIGITS[(ch - b'0') as usize];
                for (gy, bits) in g.iter().enumerate() {
                    for gx in 0..3 {
                        if bits >> (2 - gx) & 1 == 1 {
                            for dy in 0..SCALE {
                                for dx in 0..SCALE {
                                    let x = x0 + (k * 4 + gx) * SCALE + dx;
                                    let y = y0 + gy * SCALE + dy;
                                    px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&ink);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok((px, w, h))
}

/// Encodes RGB pixels as PNG bytes.
pub fn encode_png(px: &[u8], w: usize, h: usize) -> Result<Vec<u8>> {
    if px.len() != w * h * 3 {
        return Err(invalid("pixel buffer size does not match width × height × 3"));
    }
    Ok(engram_core::png::encode_rgb(w as u32, h as u32, px)?)
}

/// Writes the heatmap of `rows` to `path`.
pub fn write_png(rows: &[Vec<f64>], path: &Path) -> Result<()> {
    let (px, w, h) = render(rows)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, encode_png(&px, w, h)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::ZlibDecoder;
    use std::io::Read;

    #[test]
    fn png_round_trips_through_its_own_chunks() {
        let (px, w, h) = render(&[vec![0.0, 1.0], vec![0.5, 0.97]]).unwrap();
        let png = encode_png(&px, w, h).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()) as usize, w);
        // IDAT starts after the 8-byte signature and the 25-byte IHDR chunk.
        let len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut raw = Vec::new();
        ZlibDecoder::new(&png[41..41 + len]).read_to_end(&mut raw).unwrap();
        assert_eq!(raw.len(), h * (w * 3 + 1));
        // Pixel (1,1) of cell (0,0) is the 0% colour; of cell (0,1), the 100% colour.
        let row1 = (w * 3 + 1) + 1;
        assert_eq!(&raw[row1 + 3..row1 + 6], &colour(0.0));
        assert_eq!(&raw[row1 + (CELL + 1) * 3..row1 + (CELL + 1) * 3 + 3], &colour(1.0));
        assert!(render(&[]).is_err());
    }
}
