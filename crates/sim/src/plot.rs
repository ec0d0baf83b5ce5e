//! The plot `--plot FILE.svg` writes: queue depth, running tasks and publish latency over
//! virtual time, one line per tier, and the backlog of the ingest and stitch queues
//! (plotters' SVG backend: no fonts or system libraries).

use crate::engine::{Sample, TIERS};
use plotters::prelude::*;

const COLOURS: [RGBColor; 3] = [
    RGBColor(200, 60, 40),
    RGBColor(40, 110, 200),
    RGBColor(90, 160, 60),
];

/// Draws `samples` into an SVG document.
pub fn svg(samples: &[Sample], title: &str) -> Result<String, String> {
    let mut doc = String::new();
    {
        let root = SVGBackend::with_string(&mut doc, (960, 1200)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 20))
            .map_err(|e| e.to_string())?;
        let panels = root.split_evenly((4, 1));
        let minutes = |s: &Sample| s.t / 60.0;
        let end = samples.last().map_or(1.0, minutes).max(1.0);
        type Pick = fn(&Sample, usize) -> Option<f64>;
        let tiers: Vec<&str> = TIERS.iter().map(|t| t.as_str()).collect();
        let functions = vec!["ingest", "stitch"];
        let series: [(&str, Pick, &[&str]); 4] = [
            ("queued items", |s, i| Some(s.depth[i] as f64), &tiers),
            ("worker tasks", |s, i| Some(f64::from(s.tasks[i])), &tiers),
            ("p95 publish latency, s", |s, i| s.p95[i], &tiers),
            (
                "messages waiting for a function",
                |s, i| Some(s.function_backlog[i] as f64),
                &functions,
            ),
        ];
        for (panel, (label, pick, names)) in panels.iter().zip(series) {
            let lines = names.len();
            let top = samples
                .iter()
                .flat_map(|s| (0..lines).filter_map(move |i| pick(s, i)))
                .fold(1.0, f64::max)
                * 1.1;
            let mut chart = ChartBuilder::on(panel)
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(70)
                .caption(label, ("sans-serif", 16))
                .build_cartesian_2d(0.0..end, 0.0..top)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("minutes")
                .draw()
                .map_err(|e| e.to_string())?;
            for (i, name) in names.iter().enumerate() {
                let colour = COLOURS[i];
                chart
                    .draw_series(LineSeries::new(
                        samples
                            .iter()
                            .filter_map(|s| pick(s, i).map(|v| (minutes(s), v))),
                        colour.stroke_width(2),
                    ))
                    .map_err(|e| e.to_string())?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(doc)
}
