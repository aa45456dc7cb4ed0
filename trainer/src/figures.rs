//! The study's figures, drawn with plotters: PNG everywhere, SVG for the line plots.
//!
//! Text uses DejaVu Sans, compiled in (the `dejavu` crate), so figures look the same on
//! every machine and need no system fonts.

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::history::EpochRecord;

const FONT: &str = "sans-serif";
/// Colours of the models' curves, in the order models are given.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if the font bytes do not parse, which a test would catch.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// Draws with `draw` into a PNG at `path` (written atomically) of `size` pixels.
fn png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    register_font();
    let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    let img = image::RgbImage::from_raw(size.0, size.1, buf).context("image buffer size")?;
    let mut encoded = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut encoded), image::ImageFormat::Png).context("encoding PNG")?;
    runio::fsutil::write_atomic(path, &encoded).with_context(|| format!("writing {}", path.display()))
}

/// Draws with `draw` into an SVG at `path` (written atomically).
fn svg(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    runio::fsutil::write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// `samples.png`: a 5x5 grid of images of `[rows, cols]` (raw pixels) from the data called
/// `data`, titled with their class's name.
pub fn samples(
    path: &Path,
    data: &str,
    pixels: &[u8],
    labels: &[u8],
    shape: [usize; 2],
    names: &[String],
) -> Result<()> {
    let [rows, cols] = shape;
    let n = labels.len().min(25).min(pixels.len() / (rows * cols).max(1));
    png(path, (760, 840), |root| {
        let (title, grid) = root.split_vertically(50);
        title.titled(&format!("{data}: the first 25 training images"), (FONT, 24).into_font()).map_err(err)?;
        for (i, cell) in grid.split_evenly((5, 5)).iter().enumerate().take(n) {
            let name = names.get(labels[i] as usize).map_or("?", String::as_str);
            let cell = cell.margin(4, 4, 8, 8);
            let (label, image) = cell.split_vertically(24);
            label
                .draw(&Text::new(
                    name,
                    (0, 2),
                    (FONT, 17).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Top)),
                ))
                .map_err(err)?;
            let (w, h) = image.dim_in_pixel();
            let scale = ((w as usize / cols).min(h as usize / rows)).max(1) as i32;
            let img = &pixels[i * rows * cols..(i + 1) * rows * cols];
            for (k, &p) in img.iter().enumerate() {
                // Dark ink on white, as the study's figure (matplotlib's "binary" map).
                let v = 255 - p;
                let (x, y) = ((k % cols) as i32 * scale, (k / cols) as i32 * scale);
                image
                    .draw(&Rectangle::new([(x, y), (x + scale, y + scale)], RGBColor(v, v, v).filled()))
                    .map_err(err)?;
            }
            let frame = [(0, 0), (cols as i32 * scale, rows as i32 * scale)];
            image.draw(&Rectangle::new(frame, BLACK.stroke_width(1))).map_err(err)?;
        }
        Ok(())
    })
}

/// The y axis for `values`: their range with 8% margins (0..1 when there are none).
/// The y range of a plot of `values`: their finite ones, padded by 8%. (Infinite or NaN
/// values are left out of the plot; a range that reached infinity made plotters compute
/// key points forever.)
fn y_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let finite = values.filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let pad = ((hi - lo) * 0.08).max(1e-3);
    if (lo - pad).is_finite() && (hi + pad).is_finite() { (lo - pad)..(hi + pad) } else { 0.0..1.0 }
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One series: a line with a marker at each epoch, and its legend entry.
fn line<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    name: &str,
) -> Result<()> {
    let points: Vec<(f64, f64)> = points.into_iter().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    chart
        .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
        .map_err(err)?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(err)?;
    Ok(())
}

/// One panel of [`curves`]: a train and a validation series against epoch.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    metric: &str,
    history: &[EpochRecord],
    train: impl Fn(&EpochRecord) -> f64,
    val: impl Fn(&EpochRecord) -> f64,
    legend: SeriesLabelPosition,
) -> Result<()> {
    let epochs = history.len().max(1) as f64;
    let y = y_range(history.iter().flat_map(|r| [train(r), val(r)]));
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0.5..epochs + 0.5, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(metric)
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .x_labels(history.len().min(20))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    type Metric<'f> = &'f dyn Fn(&EpochRecord) -> f64;
    let series: [(&str, RGBColor, Metric<'_>); 2] = [("train", PALETTE[0], &train), ("validation", PALETTE[1], &val)];
    for (name, color, f) in series {
        line(&mut chart, history.iter().map(|r| (r.epoch as f64, f(r))).collect(), color, name)?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(err)?;
    Ok(())
}

fn draw_curves<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, model: &str, history: &[EpochRecord]) -> Result<()> {
    let (title, body) = root.split_vertically(44);
    title.titled(&format!("{model}: training curves"), (FONT, 26).into_font()).map_err(err)?;
    let (left, right) = body.split_horizontally(body.dim_in_pixel().0 / 2);
    // Accuracy rises and loss falls: each legend goes in the corner its curves leave empty.
    panel(&left, "Accuracy", "accuracy", history, |r| r.accuracy, |r| r.val_accuracy, SeriesLabelPosition::LowerRight)?;
    panel(
        &right,
        "Loss",
        "categorical cross-entropy",
        history,
        |r| r.loss,
        |r| r.val_loss,
        SeriesLabelPosition::UpperRight,
    )
}

/// `curves.png` and `curves.svg`: accuracy and loss, train and validation, against epoch.
pub fn curves(dir: &Path, model: &str, history: &[EpochRecord]) -> Result<()> {
    let size = (1400, 560);
    png(&dir.join("curves.png"), size, |root| draw_curves(root, model, history))?;
    svg(&dir.join("curves.svg"), size, |root| draw_curves(root, model, history))
}

fn draw_val_accuracy<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    models: &[(&str, &[EpochRecord])],
) -> Result<()> {
    let epochs = models.iter().map(|(_, h)| h.len()).max().unwrap_or(1).max(1) as f64;
    let y = y_range(models.iter().flat_map(|(_, h)| h.iter().map(|r| r.val_accuracy)));
    let mut chart = ChartBuilder::on(root)
        .caption("Validation accuracy of all models", (FONT, 26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5..epochs + 0.5, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("validation accuracy")
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .x_labels((epochs as usize).min(20))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .bold_line_style(BLACK.mix(0.15))
        .light_line_style(BLACK.mix(0.05))
        .draw()
        .map_err(err)?;
    for (i, (name, history)) in models.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        line(&mut chart, history.iter().map(|r| (r.epoch as f64, r.val_accuracy)).collect(), color, name)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 17))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// `val_accuracy.png` and `.svg`: every model's validation accuracy on one plot.
pub fn val_accuracy(out: &Path, models: &[(&str, &[EpochRecord])]) -> Result<()> {
    let size = (1000, 620);
    png(&out.join("val_accuracy.png"), size, |root| draw_val_accuracy(root, models))?;
    svg(&out.join("val_accuracy.svg"), size, |root| draw_val_accuracy(root, models))
}

/// A light-to-dark blue scale like matplotlib's "Blues", `t` in 0..=1.
fn blues(t: f64) -> RGBColor {
    const STOPS: [(f64, [f64; 3]); 3] =
        [(0.0, [247.0, 251.0, 255.0]), (0.5, [107.0, 174.0, 214.0]), (1.0, [8.0, 48.0, 107.0])];
    let t = t.clamp(0.0, 1.0);
    let (a, b) = if t <= 0.5 { (STOPS[0], STOPS[1]) } else { (STOPS[1], STOPS[2]) };
    let u = (t - a.0) / (b.0 - a.0);
    let c = |k: usize| (a.1[k] + u * (b.1[k] - a.1[k])).round() as u8;
    RGBColor(c(0), c(1), c(2))
}

/// `confusion.png`: the confusion matrix (rows = true class) as a heat map, with counts in
/// the cells while they are large enough to read and the class names along the axes (or
/// class numbers, for many classes).
pub fn confusion(path: &Path, model: &str, m: &[Vec<u32>], names: &[String]) -> Result<()> {
    let n = m.len().max(1) as i32;
    // Ten classes get the study's 84-pixel cells; more get smaller ones.
    let cell = (840 / n).clamp(4, 84);
    let (left, top, bottom) = (130i32, 80i32, 80i32);
    let size = ((left + n * cell + 30) as u32, (top + n * cell + bottom) as u32);
    png(path, size, |root| {
        root.draw(&Text::new(
            format!("{model}: confusion matrix (test set)"),
            (size.0 as i32 / 2, 20),
            (FONT, 26).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(err)?;
        let max = m.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
        let font = (17 * cell / 84).clamp(6, 17);
        for (t, row) in m.iter().enumerate() {
            for (p, &count) in row.iter().enumerate() {
                let (x, y) = (left + p as i32 * cell, top + t as i32 * cell);
                let share = f64::from(count) / max;
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], blues(share).filled())).map_err(err)?;
                if cell >= 24 {
                    let ink = if share > 0.45 { WHITE } else { BLACK };
                    let style = (FONT, font).into_font().color(&ink).pos(Pos::new(HPos::Center, VPos::Center));
                    root.draw(&Text::new(count.to_string(), (x + cell / 2, y + cell / 2), style)).map_err(err)?;
                }
            }
        }
        root.draw(&Rectangle::new([(left, top), (left + n * cell, top + n * cell)], BLACK.stroke_width(1)))
            .map_err(err)?;
        let label = |h, v| (FONT, 14).into_font().color(&BLACK).pos(Pos::new(h, v));
        // A label every `every` classes, so that labels do not overlap.
        let every = (16 / cell).max(1) as usize;
        for (i, name) in names.iter().enumerate().step_by(every) {
            let name = if cell >= 40 { name.clone() } else { i.to_string() };
            let mid = |o: i32| o + i as i32 * cell + cell / 2;
            root.draw(&Text::new(name.clone(), (left - 8, mid(top)), label(HPos::Right, VPos::Center))).map_err(err)?;
            root.draw(&Text::new(name, (mid(left), top + n * cell + 8), label(HPos::Center, VPos::Top)))
                .map_err(err)?;
        }
        let axis = |h, v| (FONT, 18).into_font().color(&BLACK).pos(Pos::new(h, v));
        root.draw(&Text::new(
            "predicted class",
            (left + n * cell / 2, top + n * cell + 40),
            axis(HPos::Center, VPos::Top),
        ))
        .map_err(err)?;
        root.draw(&Text::new("true class", (12, top - 30), axis(HPos::Left, VPos::Center))).map_err(err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blues_runs_light_to_dark() {
        let RGBColor(r0, _, _) = blues(0.0);
        let RGBColor(r1, _, b1) = blues(1.0);
        assert!(r0 > 240 && r1 < 20 && b1 > 100);
    }
}
