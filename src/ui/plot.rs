//! `bench --plot`: the speed rows as an SVG of two panels side by side,
//! decode tokens/s against context and end-to-end time against context, one
//! line per scheme, under one legend that names the schemes (plotters, SVG
//! only). Nothing else knows plotters.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::views::BenchView;
use crate::bench::SpeedResult;

/// The whole drawing, pixels: two panels of 540 × 410 under a title and a legend line.
const SIZE: (u32, u32) = (1080, 480);
/// The legend's line under the title, pixels.
const LEGEND_HEIGHT: u32 = 30;
/// Series lines are drawn 2 px wide; axes and ticks 1 px.
pub const SERIES_STROKE_WIDTH: u32 = 2;
/// Room above the highest point of a panel, as a fraction of it.
const HEADROOM: f64 = 0.15;
/// An end-to-end time axis in milliseconds switches to seconds from here.
const SECONDS_FROM_MS: f64 = 2000.0;

/// Colours of the schemes' lines, in the order their rows come.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// One scheme's points, contexts ascending.
struct Series<'a> {
    kv: &'a str,
    rows: Vec<&'a SpeedResult>,
}

/// Renders the view's speed rows as an SVG document.
pub fn bench_svg(view: &BenchView) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let title = format!("llmctl bench: {} on {}", view.model, view.device);
        let root = root.titled(&title, ("sans-serif", 20)).map_err(draw_error)?;
        let series = series(&view.speed);
        let contexts = contexts(&view.speed);
        let (legend_line, panels) = root.split_vertically(LEGEND_HEIGHT);
        legend(&legend_line, &series)?;
        let (left, right) = panels.split_horizontally(SIZE.0 / 2);
        let decode = Panel { caption: "decode tokens/s".into(), y_desc: "tokens/s".into(), y_scale: 1.0 };
        decode.draw(&left, &series, &contexts, |r| r.decode_tokens_per_s)?;
        let e2e_max = view.speed.iter().map(|r| r.e2e_ms).fold(0.0, f64::max);
        let (unit, y_scale) = if e2e_max >= SECONDS_FROM_MS { ("s", 1e-3) } else { ("ms", 1.0) };
        let steps = view.speed.first().map_or(0, |r| r.generated_tokens);
        let caption = format!("end-to-end time: prefill, then {steps} decode steps");
        let e2e = Panel { caption, y_desc: format!("time ({unit})"), y_scale };
        e2e.draw(&right, &series, &contexts, |r| r.e2e_ms)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// Drawing into a string failed (plotters' error, as text).
#[derive(Debug, thiserror::Error)]
#[error("drawing the `--plot` chart failed: {0}")]
pub struct PlotError(String);

fn draw_error(error: impl std::fmt::Display) -> PlotError {
    PlotError(error.to_string())
}

/// A swatch of each scheme's colour and its name, in one centred line.
fn legend(area: &DrawingArea<SVGBackend<'_>, Shift>, series: &[Series<'_>]) -> Result<(), PlotError> {
    const SWATCH: i32 = 16;
    const GAP: i32 = 28;
    // Text widths as plotters measures them without fonts (an estimate, but the one it draws by).
    let style = ("sans-serif", 14).into_text_style(area).pos(Pos::new(HPos::Left, VPos::Center));
    let widths: Vec<i32> = series
        .iter()
        .map(|s| area.estimate_text_size(s.kv, &style).map(|(w, _)| w as i32).map_err(draw_error))
        .collect::<Result<_, _>>()?;
    let total = widths.iter().map(|w| SWATCH + 6 + w).sum::<i32>() + GAP * (widths.len() as i32 - 1).max(0);
    let (mut x, y) = ((SIZE.0 as i32 - total) / 2, LEGEND_HEIGHT as i32 / 2);
    for (i, (s, width)) in series.iter().zip(widths).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        area.draw(&Rectangle::new([(x, y - 5), (x + SWATCH, y + 5)], colour.filled())).map_err(draw_error)?;
        area.draw(&Text::new(s.kv, (x + SWATCH + 6, y), style.clone())).map_err(draw_error)?;
        x += SWATCH + 6 + width + GAP;
    }
    Ok(())
}

/// The rows grouped by scheme, in the order the schemes first come.
fn series(rows: &[SpeedResult]) -> Vec<Series<'_>> {
    let mut series: Vec<Series<'_>> = Vec::new();
    for row in rows {
        match series.iter_mut().find(|s| s.kv == row.kv) {
            Some(s) => s.rows.push(row),
            None => series.push(Series { kv: &row.kv, rows: vec![row] }),
        }
    }
    for s in &mut series {
        s.rows.sort_by_key(|r| r.context);
    }
    series
}

/// Every context measured, ascending, once.
fn contexts(rows: &[SpeedResult]) -> Vec<usize> {
    let mut contexts: Vec<usize> = rows.iter().map(|r| r.context).collect();
    contexts.sort_unstable();
    contexts.dedup();
    contexts
}

/// `200`, `2.5`, `0.125`: a tick's value without trailing zeros.
fn tick_label(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One chart: a value of each row against its context (a log₂ axis, ticked
/// at the contexts measured), a line and points per scheme.
struct Panel {
    caption: String,
    y_desc: String,
    /// The value's unit on the axis per unit of the row's figure.
    y_scale: f64,
}

impl Panel {
    fn draw(
        &self,
        area: &DrawingArea<SVGBackend<'_>, Shift>,
        series: &[Series<'_>],
        contexts: &[usize],
        value: impl Fn(&SpeedResult) -> f64,
    ) -> Result<(), PlotError> {
        let (first, last) = match (contexts.first(), contexts.last()) {
            (Some(&first), Some(&last)) => (first as f64, last as f64),
            _ => (1.0, 2.0),
        };
        // A margin of a quarter of a doubling on each side, so the end points sit inside the frame.
        let x_range = (first / 1.2)..(last * 1.2);
        let y_top = series.iter().flat_map(|s| &s.rows).map(|r| value(r) * self.y_scale).fold(0.0, f64::max);
        let y_top = if y_top > 0.0 { y_top * (1.0 + HEADROOM) } else { 1.0 };
        let key_points: Vec<f64> = contexts.iter().map(|&c| c as f64).collect();
        let mut chart = ChartBuilder::on(area)
            .caption(&self.caption, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range.log_scale().base(2.0).with_key_points(key_points), 0.0..y_top)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("context (tokens)")
            .y_desc(self.y_desc.as_str())
            .x_label_formatter(&|x| format!("{}", x.round() as u64))
            .y_label_formatter(&|y| tick_label(*y))
            .draw()
            .map_err(draw_error)?;
        for (i, s) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let points: Vec<(f64, f64)> = s.rows.iter().map(|r| (r.context as f64, value(r) * self.y_scale)).collect();
            let line = colour.stroke_width(SERIES_STROKE_WIDTH);
            chart.draw_series(LineSeries::new(points.clone(), line)).map_err(draw_error)?;
            // Points too, so that a single context (a line of one point) still shows.
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, colour.filled()))).map_err(draw_error)?;
        }
        Ok(())
    }
}
