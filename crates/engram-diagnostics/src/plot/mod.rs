//! PNG plots drawn with a tiny raster renderer (no font files, no system libraries): the NIAH
//! heatmap, line charts (accuracy by distance, capacity curve) and grouped bar charts (state
//! rank, gate histograms).

pub mod canvas;
pub mod font;
pub mod png;

use canvas::{heat, Canvas, Rgb, BLACK, GRID, PALETTE};

/// One line of a line chart.
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points `(x, y)`.
    pub points: Vec<(f64, f64)>,
    /// Draw dashed (for a second quantity of the same model).
    pub dashed: bool,
    /// Colour index into the palette.
    pub color: usize,
}

const W: i64 = 760;
const H: i64 = 480;
const LEFT: i64 = 80;
const RIGHT: i64 = 30;
const TOP: i64 = 50;
const BOTTOM: i64 = 70;

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn title(c: &mut Canvas, t: &str) {
    c.text_centered(c.w / 2, 15, t, 2, BLACK);
}

/// A heatmap of values in `[0,1]`: rows top to bottom, columns left to right; each cell shows
/// its value in percent.
pub fn heatmap(title_text: &str, row_label: &str, col_label: &str, rows: &[String], cols: &[String], values: &[Vec<f64>]) -> Canvas {
    let mut c = Canvas::new(W, H);
    title(&mut c, title_text);
    let (x0, y0, x1, y1) = (LEFT + 20, TOP, W - RIGHT - 60, H - BOTTOM);
    let (nr, nc) = (rows.len().max(1) as i64, cols.len().max(1) as i64);
    let (cw, ch) = ((x1 - x0) / nc, (y1 - y0) / nr);
    for (i, row) in values.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let (cx, cy) = (x0 + j as i64 * cw, y0 + i as i64 * ch);
            c.rect(cx, cy, cx + cw, cy + ch, heat(v));
            c.frame(cx, cy, cx + cw + 1, cy + ch + 1, [255, 255, 255]);
            let label = if v.is_finite() { format!("{:.0}", 100.0 * v) } else { "-".into() };
            c.text_centered(cx + cw / 2, cy + ch / 2 - 7, &label, 2, BLACK);
        }
    }
    for (i, r) in rows.iter().enumerate() {
        let y = y0 + i as i64 * ch + ch / 2 - 4;
        c.text(x0 - Canvas::text_width(r, 1) - 6, y, r, 1, BLACK);
    }
    for (j, l) in cols.iter().enumerate() {
        c.text_centered(x0 + j as i64 * cw + cw / 2, y1 + 6, l, 1, BLACK);
    }
    c.text_centered((x0 + x1) / 2, y1 + 24, col_label, 1, BLACK);
    c.text(4, y0 - 14, row_label, 1, BLACK);
    // colour bar
    let bx = W - RIGHT - 40;
    for k in 0..(y1 - y0) {
        let v = 1.0 - k as f64 / (y1 - y0) as f64;
        c.rect(bx, y0 + k, bx + 14, y0 + k + 1, heat(v));
    }
    c.text(bx + 18, y0, "100%", 1, BLACK);
    c.text(bx + 18, y1 - 8, "0%", 1, BLACK);
    c
}

fn axes(c: &mut Canvas, xr: (f64, f64), yr: (f64, f64), xlog: bool, xlabel: &str, ylabel: &str) -> impl Fn(f64, f64) -> (i64, i64) {
    let (x0, y0, x1, y1) = (LEFT, TOP, W - RIGHT, H - BOTTOM);
    let fx = move |x: f64| if xlog { x.max(1e-12).log10() } else { x };
    let (ax, bx) = (fx(xr.0), fx(xr.1));
    let map = move |x: f64, y: f64| {
        let tx = if bx > ax { (fx(x) - ax) / (bx - ax) } else { 0.5 };
        let ty = if yr.1 > yr.0 { (y - yr.0) / (yr.1 - yr.0) } else { 0.5 };
        (x0 + (tx * (x1 - x0) as f64) as i64, y1 - (ty * (y1 - y0) as f64) as i64)
    };
    for k in 0..=5 {
        let y = yr.0 + (yr.1 - yr.0) * k as f64 / 5.0;
        let (_, py) = map(xr.0, y);
        c.rect(x0, py, x1, py + 1, GRID);
        let s = fmt_tick(y);
        c.text(x0 - Canvas::text_width(&s, 1) - 6, py - 3, &s, 1, BLACK);
    }
    let xticks: Vec<f64> = if xlog {
        let (lo, hi) = (xr.0.max(1e-12).log10().floor() as i32, xr.1.max(1e-12).log10().ceil() as i32);
        (lo..=hi).flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e))).filter(|v| *v >= xr.0 && *v <= xr.1).collect()
    } else {
        (0..=5).map(|k| xr.0 + (xr.1 - xr.0) * k as f64 / 5.0).collect()
    };
    for x in xticks {
        let (px, _) = map(x, yr.0);
        c.rect(px, y0, px + 1, y1, GRID);
        c.text_centered(px, y1 + 6, &fmt_tick(x), 1, BLACK);
    }
    c.frame(x0, y0, x1 + 1, y1 + 1, BLACK);
    c.text_centered((x0 + x1) / 2, y1 + 24, xlabel, 1, BLACK);
    c.text(4, y0 - 14, ylabel, 1, BLACK);
    map
}

fn legend(c: &mut Canvas, items: &[(String, Rgb, bool)]) {
    let mut y = H - 30;
    let mut x = LEFT;
    for (name, col, dashed) in items {
        let w = Canvas::text_width(name, 1) + 40;
        if x + w > W - RIGHT {
            x = LEFT;
            y += 12;
        }
        if *dashed {
            c.rect(x, y + 3, x + 8, y + 5, *col);
            c.rect(x + 14, y + 3, x + 22, y + 5, *col);
        } else {
            c.rect(x, y + 2, x + 22, y + 5, *col);
        }
        c.text(x + 28, y, name, 1, BLACK);
        x += w + 10;
    }
}

/// A line chart; `y_range` fixes the vertical axis (auto from the data when `None`).
pub fn line_chart(title_text: &str, xlabel: &str, ylabel: &str, series: &[Series], xlog: bool, y_range: Option<(f64, f64)>) -> Canvas {
    let mut c = Canvas::new(W, H);
    title(&mut c, title_text);
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    let (mut xmin, mut xmax) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    if !xmin.is_finite() {
        (xmin, xmax) = (1.0, 10.0);
    }
    if xlog {
        xmin = xmin.max(1e-3);
    }
    let yr = y_range.unwrap_or_else(|| {
        let ymax = pts.iter().map(|p| p.1).fold(0.0, f64::max);
        (0.0, if ymax > 0.0 { ymax * 1.1 } else { 1.0 })
    });
    let map = axes(&mut c, (xmin, xmax), yr, xlog, xlabel, ylabel);
    let mut items = Vec::new();
    for s in series {
        let col = PALETTE[s.color % PALETTE.len()];
        let good: Vec<(i64, i64)> = s.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()).map(|&(x, y)| map(x, y)).collect();
        for (k, w) in good.windows(2).enumerate() {
            if !s.dashed || k % 2 == 0 {
                c.line(w[0].0, w[0].1, w[1].0, w[1].1, 2, col);
            }
        }
        for &(px, py) in &good {
            c.rect(px - 3, py - 3, px + 4, py + 4, col);
        }
        items.push((s.name.clone(), col, s.dashed));
    }
    legend(&mut c, &items);
    c
}

/// Grouped bars: one group per label, one bar per series.
pub fn bar_chart(title_text: &str, ylabel: &str, labels: &[String], series: &[(String, Vec<f64>)], label_every: usize) -> Canvas {
    let mut c = Canvas::new(W, H);
    title(&mut c, title_text);
    let ymax = series.iter().flat_map(|s| s.1.iter().copied()).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let yr = (0.0, if ymax > 0.0 { ymax * 1.1 } else { 1.0 });
    let (x0, x1) = (LEFT, W - RIGHT);
    let n = labels.len().max(1) as i64;
    let map = axes(&mut c, (0.0, n as f64), yr, false, "", ylabel);
    // hide the numeric x ticks drawn by `axes` under the category labels
    c.rect(x0 - 20, H - BOTTOM + 2, x1 + 20, H - BOTTOM + 20, [255, 255, 255]);
    let gw = (x1 - x0) / n;
    let ns = series.len().max(1) as i64;
    let bw = ((gw - 4) / ns).max(1);
    let mut items = Vec::new();
    for (si, (name, vals)) in series.iter().enumerate() {
        let col = PALETTE[si % PALETTE.len()];
        for (i, &v) in vals.iter().enumerate() {
            if !v.is_finite() {
                continue;
            }
            let bx = x0 + i as i64 * gw + 2 + si as i64 * bw;
            let (_, py) = map(0.0, v);
            let (_, base) = map(0.0, 0.0);
            c.rect(bx, py, bx + bw - 1, base, col);
        }
        items.push((name.clone(), col, false));
    }
    for (i, l) in labels.iter().enumerate() {
        if label_every <= 1 || i % label_every == 0 {
            c.text_centered(x0 + i as i64 * gw + gw / 2, H - BOTTOM + 6, l, 1, BLACK);
        }
    }
    legend(&mut c, &items);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn charts_draw_something_where_expected() {
        let hm = heatmap("t", "T", "depth", &["64".into()], &["0".into(), "1".into()], &[vec![0.0, 1.0]]);
        // left cell red-ish, right cell green-ish, sampled away from the text
        let (x0, x1) = (LEFT + 20, W - RIGHT - 60);
        let cw = (x1 - x0) / 2;
        assert_eq!(hm.pixel(x0 + 5, TOP + 5), heat(0.0));
        assert_eq!(hm.pixel(x0 + cw + 5, TOP + 5), heat(1.0));
        let lc = line_chart("t", "x", "y", &[Series { name: "a".into(), points: vec![(1.0, 0.0), (10.0, 1.0)], dashed: false, color: 0 }], true, Some((0.0, 1.0)));
        assert_eq!(lc.pixel(W - RIGHT, TOP), PALETTE[0]);
        let bc = bar_chart("t", "y", &["a".into(), "b".into()], &[("s".into(), vec![1.0, 0.5])], 1);
        assert_eq!(bc.pixel(LEFT + 10, H - BOTTOM - 5), PALETTE[0]);
        assert!(bc.to_png().unwrap().len() > 100);
    }
}
