//! PNG and SVG charts with plotters: the same curves, legend, spike shading, window and cursor
//! as the terminal chart, at slide quality. Text uses the DejaVu Sans font embedded from
//! `assets/` (no system font lookup: a fresh machine has none).

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::{temp_path, ExportError};
use crate::chart::palette;
use crate::chart::{clip_above, short_number, ChartModel, CurveKind};

/// Pixel size of the PNG (16:9, sharp on a slide).
pub const PNG_SIZE: (u32, u32) = (1600, 900);
const SVG_SIZE: (u32, u32) = (1200, 675);

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is ours and valid; if it were not, text would be missing, not the chart.
        let _ = register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// Curve colours by palette slot (`palette::slot`), chosen to read on white: the same hues in
/// the same slots as the terminal's (`tui::theme`), and no red (the spike shading's).
const PALETTE: [RGBColor; palette::SLOTS] = [
    RGBColor(170, 170, 170), // train loss, raw
    RGBColor(31, 119, 180),  // train loss, smoothed
    RGBColor(230, 140, 0),   // raw checkpoint eval
    RGBColor(44, 160, 44),   // averages: green
    RGBColor(214, 39, 140),  // magenta
    RGBColor(110, 70, 210),  // violet
    RGBColor(40, 40, 40),    // near black (the terminal's white)
    RGBColor(120, 85, 50),   // brown (the terminal's tan)
];

fn rgb(index: usize) -> RGBColor {
    PALETTE[palette::slot(index)]
}

fn draw_err(path: &Path) -> impl Fn(String) -> ExportError + '_ {
    move |msg| ExportError::Draw {
        path: path.to_path_buf(),
        msg,
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    model: &ChartModel,
    scale: f64,
) -> Result<(), String> {
    let px = |v: f64| (v * scale).round() as u32;
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (x0, x1) = match model.x_range() {
        Some((a, b)) if b > a => (a, b),
        Some((a, _)) => (a - 1.0, a + 1.0),
        None => (0.0, 1.0),
    };
    let (mut y0, mut y1) = model.y_range(x0, x1).unwrap_or((0.0, 1.0));
    let pad = if y1 > y0 { (y1 - y0) * 0.05 } else { 0.5 };
    y0 -= pad;
    y1 += pad;
    let y_desc = match (model.gain, model.log_y) {
        (true, _) => format!("{} ({})", model.y_label(), model.better_side()),
        (false, true) => format!("{}, log scale", model.y_label()),
        (false, false) => model.y_label(),
    };
    let mut chart = ChartBuilder::on(root)
        .caption(&model.title, (FAMILY, px(30.0)))
        .margin(px(20.0))
        .x_label_area_size(px(55.0))
        .y_label_area_size(px(80.0))
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| e.to_string())?;
    let log = model.log_y;
    let y_fmt = move |v: &f64| {
        if log {
            short_number(10f64.powf(*v))
        } else {
            short_number(*v)
        }
    };
    chart
        .configure_mesh()
        .x_desc(model.x_axis.label())
        .y_desc(y_desc)
        .x_label_formatter(&|v| short_number(*v))
        .y_label_formatter(&y_fmt)
        .label_style((FAMILY, px(18.0)))
        .axis_desc_style((FAMILY, px(20.0)))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(|e| e.to_string())?;

    // Spikes behind everything, then the window, then the curves, then the cursor.
    let spike_fill = RGBColor(255, 150, 150).mix(0.35).filled();
    let mut first_spike = true;
    for &(a, b) in &model.spikes {
        let (a, b) = (a.max(x0), b.min(x1));
        let anno = chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, y0), (b.max(a + (x1 - x0) * 0.002), y1)],
                spike_fill,
            )))
            .map_err(|e| e.to_string())?;
        if first_spike {
            anno.label("loss spike")
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], spike_fill));
            first_spike = false;
        }
    }
    if let Some((a, b)) = model.window {
        let fill = RGBColor(120, 160, 255).mix(0.18).filled();
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, y0), (b.max(a + (x1 - x0) * 0.002), y1)],
                fill,
            )))
            .map_err(|e| e.to_string())?
            .label("averaging window")
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], fill));
    }
    let mut clipped_max: Option<f64> = None;
    for c in &model.curves {
        let plotted = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
            pts.iter()
                .filter_map(|&(x, y)| Some((x, model.y_value(y)?)))
                .collect()
        };
        let pts = plotted(&c.points);
        // Lines: eval curves break where a checkpoint was not evaluated; train curves end at
        // the top edge where the warm-up is off the chart (never a flat line along it).
        let pieces: Vec<Vec<(f64, f64)>> = match c.kind {
            CurveKind::TrainRaw | CurveKind::TrainSmooth => {
                if let Some(m) = c
                    .points
                    .iter()
                    .filter(|p| p.0 >= x0 && p.0 <= x1)
                    .filter(|p| model.y_value(p.1).is_some_and(|y| y > y1))
                    .map(|p| p.1)
                    .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
                {
                    clipped_max = Some(clipped_max.map_or(m, |a| a.max(m)));
                }
                clip_above(&pts, y1)
            }
            _ => c.segments().into_iter().map(plotted).collect(),
        };
        let color = rgb(c.color);
        let (width, alpha) = match c.kind {
            CurveKind::TrainRaw => (1.0, 0.6),
            CurveKind::TrainSmooth => (2.0, 1.0),
            _ => (2.5, 1.0),
        };
        let style = ShapeStyle {
            color: color.mix(alpha),
            filled: false,
            stroke_width: px(width).max(1),
        };
        let mut first = true;
        for piece in pieces.iter().filter(|p| !p.is_empty()) {
            let anno = chart
                .draw_series(LineSeries::new(piece.iter().copied(), style))
                .map_err(|e| e.to_string())?;
            if first {
                anno.label(&c.name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
                first = false;
            }
        }
        if matches!(c.kind, CurveKind::EvalRaw | CurveKind::Average) {
            let r = px(3.5);
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, r, color.filled())))
                .map_err(|e| e.to_string())?;
        }
    }
    if let Some(m) = clipped_max {
        let text = format!(
            "↑ warm-up train loss above the chart (up to {})",
            short_number(m)
        );
        let at = (x0 + (x1 - x0) * 0.01, y1 - (y1 - y0) * 0.01);
        chart
            .draw_series(std::iter::once(Text::new(
                text,
                at,
                (FAMILY, px(16.0)).into_font().color(&RGBColor(90, 90, 90)),
            )))
            .map_err(|e| e.to_string())?;
    }
    if let Some(x) = model.cursor {
        let style = ShapeStyle {
            color: BLACK.mix(0.5),
            filled: false,
            stroke_width: px(1.0).max(1),
        };
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, y0), (x, y1)],
                style,
            )))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, px(18.0)))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// Draws the chart as a PNG of `size` pixels at `path` (atomically).
pub fn write_png(model: &ChartModel, path: &Path, size: (u32, u32)) -> Result<(), ExportError> {
    register();
    let tmp = temp_path(path);
    let result = {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        draw(&root, model, size.0 as f64 / SVG_SIZE.0 as f64)
    };
    finish(result, &tmp, path)
}

/// Draws the chart as an SVG at `path` (atomically).
pub fn write_svg(model: &ChartModel, path: &Path) -> Result<(), ExportError> {
    register();
    let tmp = temp_path(path);
    let result = {
        let root = SVGBackend::new(&tmp, SVG_SIZE).into_drawing_area();
        draw(&root, model, 1.0)
    };
    finish(result, &tmp, path)
}

fn finish(result: Result<(), String>, tmp: &Path, path: &Path) -> Result<(), ExportError> {
    let result = result.map_err(draw_err(path)).and_then(|()| {
        std::fs::rename(tmp, path).map_err(|source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hue in degrees of an RGB colour.
    fn hue(c: RGBColor) -> f64 {
        let (r, g, b) = (c.0 as f64, c.1 as f64, c.2 as f64);
        let (max, min) = (r.max(g).max(b), r.min(g).min(b));
        if max == min {
            return f64::NAN; // grey: no hue
        }
        let h = if max == r {
            (g - b) / (max - min)
        } else if max == g {
            2.0 + (b - r) / (max - min)
        } else {
            4.0 + (r - g) / (max - min)
        };
        (h * 60.0).rem_euclid(360.0)
    }

    #[test]
    fn averages_never_take_a_train_raw_or_spike_colour() {
        let roles = [palette::TRAIN_RAW, palette::TRAIN_SMOOTH, palette::EVAL_RAW];
        for i in palette::FIRST_AVERAGE..palette::FIRST_AVERAGE + 3 * palette::AVERAGES {
            let c = rgb(i);
            assert!(roles.iter().all(|&r| rgb(r) != c), "average {i}");
            // The spike shading is red (hue 0): no curve is within 25° of it.
            let h = hue(c);
            assert!(
                h.is_nan() || (25.0..335.0).contains(&h),
                "average {i}: hue {h}"
            );
        }
        let averages = &PALETTE[palette::FIRST_AVERAGE..];
        for (i, a) in averages.iter().enumerate() {
            assert!(!averages[i + 1..].contains(a), "two averages share {a:?}");
        }
    }
}
