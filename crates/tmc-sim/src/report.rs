//! The HTML report of a run: one self-contained file (inline CSS and SVG, no scripts, no external
//! resources) with a utilization heatmap, replicas per cluster, pending and unavailable replicas
//! and moves over time, the events marked on every time axis, the incidents, and the final
//! decisions.

use std::{collections::BTreeMap, fmt::Write as _};

use tmc_core::Phase;

use crate::{
    sim::Run,
    summary::{group_events, incident_events, recovery},
    timeline::format_seconds,
};

/// Width of every chart, in pixels.
const WIDTH: f64 = 1240.0;
/// Left edge of the plot area (labels go left of it).
const LEFT: f64 = 190.0;
/// Right edge of the plot area.
const RIGHT: f64 = 1200.0;

/// Region colours (Tableau 10), by order of first appearance.
const PALETTE: [(u8, u8, u8); 10] = [
    (78, 121, 167),
    (242, 142, 43),
    (89, 161, 79),
    (225, 87, 89),
    (118, 183, 178),
    (237, 201, 72),
    (176, 122, 161),
    (255, 157, 167),
    (156, 117, 95),
    (186, 176, 172),
];

/// Escapes text for HTML and SVG.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Maps virtual seconds to x pixels.
struct TimeScale {
    end: i64,
}

impl TimeScale {
    fn x(&self, t: i64) -> f64 {
        LEFT + (RIGHT - LEFT) * (t as f64) / (self.end.max(1) as f64)
    }

    /// Tick times: a round step giving 6 to 12 ticks.
    fn ticks(&self) -> Vec<i64> {
        const STEPS: [i64; 14] = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21_600];
        let step = STEPS.iter().copied().find(|s| self.end / s <= 12).unwrap_or(86_400.max(self.end / 10));
        (0..=self.end / step).map(|k| k * step).collect()
    }
}

/// Where each step's state holds: from its time to the next step's (the last to the end).
fn spans(run: &Run, end: i64) -> Vec<(i64, i64)> {
    let times: Vec<i64> = run.steps.iter().map(|s| s.at).collect();
    times.iter().enumerate().map(|(i, &t)| (t, times.get(i + 1).copied().unwrap_or(end).max(t))).collect()
}

/// Clusters ordered by (provider, region, name), with their region and colour.
struct ClusterOrder {
    /// (name, region, colour)
    rows: Vec<(String, String, String)>,
    /// (region, colour), in order.
    regions: Vec<(String, String)>,
}

fn cluster_order(run: &Run) -> ClusterOrder {
    // Every cluster that existed at some step, with its location from the first step it appears.
    let mut seen: BTreeMap<String, (String, String)> = BTreeMap::new();
    for snap in &run.snapshots {
        for c in &snap.input.clusters {
            seen.entry(c.name.clone()).or_insert_with(|| {
                (
                    c.location.provider.clone().unwrap_or_default(),
                    c.location.region.clone().unwrap_or_else(|| "(no region)".to_string()),
                )
            });
        }
    }
    if run.snapshots.is_empty() {
        for c in run.utilization.keys() {
            seen.insert(c.clone(), (String::new(), "(no region)".to_string()));
        }
    }
    let mut rows: Vec<(String, String, String)> =
        seen.into_iter().map(|(name, (provider, region))| (provider, region, name)).collect();
    rows.sort();
    let mut regions: Vec<(String, String)> = Vec::new();
    let mut per_region: BTreeMap<String, usize> = BTreeMap::new();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for (_, region, _) in &rows {
        *count.entry(region.clone()).or_insert(0) += 1;
    }
    let mut out = Vec::new();
    for (_, region, name) in rows {
        if !regions.iter().any(|(r, _)| *r == region) {
            let (r, g, b) = PALETTE[regions.len() % PALETTE.len()];
            regions.push((region.clone(), format!("rgb({r},{g},{b})")));
        }
        let k = regions.iter().position(|(r, _)| *r == region).unwrap_or(0);
        let (r, g, b) = PALETTE[k % PALETTE.len()];
        let i = per_region.entry(region.clone()).or_insert(0);
        let n = count.get(&region).copied().unwrap_or(1).max(1);
        // Shades of the region colour: from the colour itself towards white.
        let f = 0.55 * (*i as f64) / (n as f64);
        *i += 1;
        let mix = |c: u8| (f64::from(c) + (255.0 - f64::from(c)) * f).round() as u8;
        out.push((name, region, format!("rgb({},{},{})", mix(r), mix(g), mix(b))));
    }
    ClusterOrder { rows: out, regions }
}

/// Blue scale for utilization; red above 100 %.
fn heat(v: f64) -> String {
    if v > 100.0 {
        return "rgb(200,30,30)".to_string();
    }
    let f = (v / 100.0).clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    format!("rgb({},{},{})", lerp(240.0, 8.0), lerp(246.0, 48.0), lerp(252.0, 107.0))
}

/// The time axis (ticks, labels, grid) under a plot of height `h` starting at `top`, plus event
/// markers numbered as in the event table.
fn time_axis(svg: &mut String, scale: &TimeScale, top: f64, h: f64, events: &[(i64, usize, String)]) {
    axis_with(svg, scale, top, h, events, true);
}

fn axis_with(svg: &mut String, scale: &TimeScale, top: f64, h: f64, events: &[(i64, usize, String)], grid: bool) {
    let bottom = top + h;
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{RIGHT}" y2="{bottom}"/><line class="axis" x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}"/>"#
    );
    for t in scale.ticks() {
        let x = scale.x(t);
        if grid {
            let _ = write!(svg, r#"<line class="grid" x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}"/>"#);
        }
        let _ = write!(
            svg,
            r#"<line class="axis" x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            bottom + 4.0,
            bottom + 15.0,
            format_seconds(t)
        );
    }
    event_markers(svg, scale, top, h, events);
}

fn event_markers(svg: &mut String, scale: &TimeScale, top: f64, h: f64, events: &[(i64, usize, String)]) {
    // One marker per event time, labelled with the event numbers at that time.
    let mut by_time: BTreeMap<i64, Vec<(usize, &str)>> = BTreeMap::new();
    for (t, n, text) in events {
        by_time.entry(*t).or_default().push((*n, text));
    }
    for (t, list) in by_time {
        let x = scale.x(t);
        let numbers: Vec<String> = list.iter().map(|(n, _)| n.to_string()).collect();
        let label = if numbers.len() > 2 {
            format!("{}-{}", numbers[0], numbers[numbers.len() - 1])
        } else {
            numbers.join(",")
        };
        let titles: Vec<String> = list.iter().map(|(n, text)| format!("{n}. {text}")).collect();
        let _ = write!(
            svg,
            r#"<g class="event-marker"><title>{} {}</title><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text></g>"#,
            esc(&format_seconds(t)),
            esc(&titles.join("; ")),
            top - 4.0,
            top + h,
            top - 7.0,
            esc(&label)
        );
    }
}

/// `<svg>` with a title element and a heading-like caption inside the picture.
fn open_svg(svg: &mut String, id: &str, height: f64, title: &str) {
    let _ = write!(
        svg,
        r#"<svg id="{id}" class="chart" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
}

fn heatmap(run: &Run, order: &ClusterOrder, scale: &TimeScale, events: &[(i64, usize, String)]) -> String {
    let row_h = if order.rows.len() > 60 { 8.0 } else { 13.0 };
    let top = 30.0;
    let h = row_h * order.rows.len() as f64;
    let mut svg = String::new();
    open_svg(&mut svg, "heatmap", top + h + 60.0, "Utilization per cluster over time");
    svg.push_str(
        r##"<defs><pattern id="down" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#d9d9d9"/><line x1="0" y1="0" x2="0" y2="6" stroke="#555" stroke-width="2"/></pattern><pattern id="drain" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(-45)"><rect width="6" height="6" fill="#fde2c4"/><line x1="0" y1="0" x2="0" y2="6" stroke="#e8710a" stroke-width="2"/></pattern></defs>"##,
    );
    let spans = spans(run, scale.end);
    for (row, (name, _, _)) in order.rows.iter().enumerate() {
        let y = top + row_h * row as f64;
        let _ = write!(
            svg,
            r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + row_h - 2.5,
            esc(name)
        );
        for (step, &(t0, t1)) in run.steps.iter().zip(&spans) {
            let Some(per) = step.utilization.get(name) else { continue };
            let x0 = scale.x(t0);
            let w = (scale.x(t1) - x0).max(1.5);
            let dominant = per.iter().filter(|(r, _)| r.as_str() != "pods").map(|(_, v)| *v).fold(0.0, f64::max);
            let down = step.down.contains(name);
            let draining = step.draining.contains(name);
            let parts: Vec<String> = per.iter().map(|(r, v)| format!("{r} {v:.1}%")).collect();
            let fill = if down {
                "url(#down)".to_string()
            } else if draining {
                "url(#drain)".to_string()
            } else {
                heat(dominant)
            };
            let _ = write!(
                svg,
                r#"<rect class="cell" x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{fill}"><title>{} {}-{}: {}{}</title></rect>"#,
                row_h - 1.0,
                esc(name),
                format_seconds(t0),
                format_seconds(t1),
                esc(&parts.join(", ")),
                if down {
                    " (down: no heartbeat)"
                } else if draining {
                    " (draining)"
                } else {
                    ""
                }
            );
        }
    }
    axis_with(&mut svg, scale, top, h, events, false);
    // Legend: the colour scale and the patterns.
    let ly = top + h + 30.0;
    for k in 0..=10 {
        let v = f64::from(k) * 10.0;
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{ly:.1}" width="24" height="10" fill="{}"/>"#,
            LEFT + 24.0 * f64::from(k),
            heat(v)
        );
    }
    let _ = write!(
        svg,
        r#"<text class="tick" x="{LEFT}" y="{:.1}">0%</text><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">100% (highest resource, pods excluded)</text><rect x="{:.1}" y="{ly:.1}" width="24" height="10" fill="rgb(200,30,30)"/><text class="tick" x="{:.1}" y="{:.1}">over 100%</text><rect x="{:.1}" y="{ly:.1}" width="24" height="10" fill="url(#down)"/><text class="tick" x="{:.1}" y="{:.1}">down (no heartbeat)</text><rect x="{:.1}" y="{ly:.1}" width="24" height="10" fill="url(#drain)"/><text class="tick" x="{:.1}" y="{:.1}">draining</text>"#,
        ly + 22.0,
        LEFT + 264.0,
        ly + 22.0,
        LEFT + 420.0,
        LEFT + 448.0,
        ly + 9.0,
        LEFT + 560.0,
        LEFT + 588.0,
        ly + 9.0,
        LEFT + 720.0,
        LEFT + 748.0,
        ly + 9.0
    );
    svg.push_str("</svg>");
    svg
}

/// A y axis from 0 to `max` over a plot of height `h` at `top`, with about five labelled lines.
fn y_axis(svg: &mut String, top: f64, h: f64, max: u64, unit: &str) -> impl Fn(f64) -> f64 + use<> {
    let max = max.max(1);
    let raw = max as f64 / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(raw).max(1.0);
    let top_value = (max as f64 / step).ceil() * step;
    let y = move |v: f64| top + h - h * v / top_value;
    let mut v = 0.0;
    while v <= top_value + 1e-9 {
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" y1="{yy:.1}" x2="{RIGHT}" y2="{yy:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{v}</text>"#,
            LEFT - 6.0,
            y(v) + 4.0,
            yy = y(v)
        );
        v += step;
    }
    let _ = write!(
        svg,
        r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
        LEFT - 6.0,
        top - 8.0,
        esc(unit)
    );
    y
}

fn stacked_replicas(run: &Run, order: &ClusterOrder, scale: &TimeScale, events: &[(i64, usize, String)]) -> String {
    let top = 30.0;
    let h = 320.0;
    let legend_rows = order.regions.len().div_ceil(6) as f64;
    let mut svg = String::new();
    open_svg(&mut svg, "replicas", top + h + 40.0 + 18.0 * legend_rows, "Replicas per cluster over time (stacked)");
    let max = run.steps.iter().map(|s| s.replicas.values().sum::<u64>()).max().unwrap_or(0);
    let y = y_axis(&mut svg, top, h, max, "replicas");
    let spans = spans(run, scale.end);
    let mut below: Vec<u64> = vec![0; run.steps.len()];
    for (name, region, colour) in &order.rows {
        let values: Vec<u64> = run.steps.iter().map(|s| s.replicas.get(name).copied().unwrap_or(0)).collect();
        if values.iter().all(|&v| v == 0) {
            continue;
        }
        let mut upper = String::new();
        let mut lower: Vec<String> = Vec::new();
        for (i, &(t0, t1)) in spans.iter().enumerate() {
            let (x0, x1) = (scale.x(t0), scale.x(t1));
            let lo = below[i] as f64;
            let hi = lo + values[i] as f64;
            let cmd = if i == 0 { 'M' } else { 'L' };
            let _ = write!(upper, "{cmd}{x0:.1},{:.1} L{x1:.1},{:.1} ", y(hi), y(hi));
            lower.push(format!("L{x1:.1},{:.1} L{x0:.1},{:.1} ", y(lo), y(lo)));
        }
        lower.reverse();
        let last = values.last().copied().unwrap_or(0);
        let peak = values.iter().max().copied().unwrap_or(0);
        let _ = write!(
            svg,
            r#"<path class="band" d="{upper}{}Z" fill="{colour}"><title>{} ({}): {} replicas at the end, {} at most</title></path>"#,
            lower.concat(),
            esc(name),
            esc(region),
            last,
            peak
        );
        for (b, v) in below.iter_mut().zip(&values) {
            *b += v;
        }
    }
    time_axis(&mut svg, scale, top, h, events);
    let ly = top + h + 34.0;
    for (k, (region, colour)) in order.regions.iter().enumerate() {
        let x = LEFT + 165.0 * (k % 6) as f64;
        let yy = ly + 18.0 * (k / 6) as f64;
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{colour}"/><text class="tick" x="{:.1}" y="{yy:.1}">{}</text>"#,
            yy - 10.0,
            x + 16.0,
            esc(region)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn pending_chart(run: &Run, scale: &TimeScale, events: &[(i64, usize, String)]) -> String {
    let top = 30.0;
    let h = 200.0;
    let mut svg = String::new();
    open_svg(&mut svg, "pending", top + h + 50.0, "Pending and unavailable replicas over time");
    let max = run.steps.iter().map(|s| s.pending.max(s.unavailable)).max().unwrap_or(0);
    let y = y_axis(&mut svg, top, h, max, "replicas");
    let spans = spans(run, scale.end);
    for (class, label, value) in [
        ("pending", "pending (not placed)", (|s: &crate::sim::Step| s.pending) as fn(&crate::sim::Step) -> u64),
        ("unavailable", "unavailable (placed on a cluster without heartbeat)", |s: &crate::sim::Step| s.unavailable),
    ] {
        let mut d = String::new();
        for (i, (s, &(t0, t1))) in run.steps.iter().zip(&spans).enumerate() {
            let v = y(value(s) as f64);
            let cmd = if i == 0 { 'M' } else { 'L' };
            let _ = write!(d, "{cmd}{:.1},{v:.1} L{:.1},{v:.1} ", scale.x(t0), scale.x(t1));
        }
        let area = format!("{d}L{:.1},{:.1} L{LEFT},{:.1} Z", scale.x(scale.end), y(0.0), y(0.0));
        let _ = write!(
            svg,
            r#"<path class="{class}-area" d="{area}"/><path class="{class}" d="{d}"><title>{}</title></path>"#,
            esc(label)
        );
    }
    time_axis(&mut svg, scale, top, h, events);
    let ly = top + h + 38.0;
    let _ = write!(
        svg,
        r#"<rect class="pending-area" x="{LEFT}" y="{:.1}" width="12" height="12"/><text class="tick" x="{:.1}" y="{ly:.1}">pending (not placed)</text><rect class="unavailable-area" x="{:.1}" y="{:.1}" width="12" height="12"/><text class="tick" x="{:.1}" y="{ly:.1}">unavailable (placed on a cluster without heartbeat)</text>"#,
        ly - 10.0,
        LEFT + 16.0,
        LEFT + 200.0,
        ly - 10.0,
        LEFT + 216.0
    );
    svg.push_str("</svg>");
    svg
}

fn moves_chart(run: &Run, scale: &TimeScale, events: &[(i64, usize, String)]) -> String {
    let top = 30.0;
    let h = 150.0;
    let mut svg = String::new();
    open_svg(&mut svg, "moves", top + h + 50.0, "Replicas moved and stopped per step");
    let max = run.steps.iter().map(|s| s.churn.stopped.max(s.churn.moved)).max().unwrap_or(0);
    let y = y_axis(&mut svg, top, h, max, "replicas");
    for s in &run.steps {
        let x = scale.x(s.at);
        for (class, v, dx) in [("stopped", s.churn.stopped, -3.0), ("moved", s.churn.moved, 0.0)] {
            if v == 0 {
                continue;
            }
            let _ = write!(
                svg,
                r#"<rect class="{class}" x="{:.1}" y="{:.1}" width="6" height="{:.1}"><title>{}: {v} {class}</title></rect>"#,
                x + dx - 3.0,
                y(v as f64),
                y(0.0) - y(v as f64),
                esc(&s.time)
            );
        }
    }
    time_axis(&mut svg, scale, top, h, events);
    let ly = top + h + 38.0;
    let _ = write!(
        svg,
        r#"<rect class="stopped" x="{LEFT}" y="{:.1}" width="12" height="12"/><text class="tick" x="{:.1}" y="{ly:.1}">stopped</text><rect class="moved" x="{:.1}" y="{:.1}" width="12" height="12"/><text class="tick" x="{:.1}" y="{ly:.1}">moved (stopped here, started elsewhere)</text>"#,
        ly - 10.0,
        LEFT + 16.0,
        LEFT + 100.0,
        ly - 10.0,
        LEFT + 116.0
    );
    svg.push_str("</svg>");
    svg
}

fn final_chart(run: &Run, order: &ClusterOrder) -> String {
    let Some(last) = run.steps.last() else { return String::new() };
    let rows: Vec<&(String, String, String)> =
        order.rows.iter().filter(|(name, _, _)| last.replicas.contains_key(name)).collect();
    let row_h = 14.0;
    let top = 20.0;
    let h = row_h * rows.len() as f64;
    let mut svg = String::new();
    open_svg(&mut svg, "final", top + h + 30.0, "Replicas per cluster at the end");
    let max = last.replicas.values().copied().max().unwrap_or(0).max(1);
    for (i, (name, region, colour)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let n = last.replicas.get(name).copied().unwrap_or(0);
        let w = (RIGHT - LEFT - 60.0) * n as f64 / max as f64;
        let down = last.down.contains(name);
        let _ = write!(
            svg,
            r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect class="bar" x="{LEFT}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{colour}"><title>{} ({}): {n} replicas</title></rect><text class="tick" x="{:.1}" y="{:.1}">{n}{}</text>"#,
            LEFT - 6.0,
            y + row_h - 3.0,
            esc(name),
            row_h - 2.0,
            esc(name),
            esc(region),
            LEFT + w + 4.0,
            y + row_h - 3.0,
            if down { " (down)" } else { "" }
        );
    }
    svg.push_str("</svg>");
    svg
}

const STYLE: &str = r#"
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px 0; }
h2 { font-size: 17px; margin: 28px 0 6px 0; border-bottom: 1px solid #ddd; padding-bottom: 3px; }
p.note { color: #555; font-size: 13px; margin: 2px 0 8px 0; max-width: 1200px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card .v { font-size: 22px; font-weight: 600; }
.card .k { font-size: 12px; color: #666; }
.card.ok .v { color: #2a7d2a; }
.card.bad .v { color: #c01e1e; }
svg.chart { display: block; font-size: 11px; }
svg .axis { stroke: #444; stroke-width: 1; }
svg .grid { stroke: #e6e6e6; stroke-width: 1; }
svg .tick { fill: #555; font-size: 11px; }
svg .label { fill: #333; font-size: 10px; }
svg .event-marker line { stroke: #c01e1e; stroke-width: 1.2; stroke-dasharray: 4 3; }
svg .event-marker text { fill: #c01e1e; font-size: 10px; font-weight: 600; }
svg .band { stroke: #fff; stroke-width: 0.3; }
svg .pending { fill: none; stroke: #e8710a; stroke-width: 2; }
svg .pending-area { fill: #e8710a; fill-opacity: 0.25; }
svg .unavailable { fill: none; stroke: #c01e1e; stroke-width: 2; stroke-dasharray: 5 2; }
svg .unavailable-area { fill: #c01e1e; fill-opacity: 0.12; }
svg .moved { fill: #4e79a7; }
svg .stopped { fill: #b0b0b0; }
table { border-collapse: collapse; font-size: 12px; margin: 6px 0; }
th, td { border-bottom: 1px solid #eee; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f6f6; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.phase { border-radius: 3px; padding: 0 5px; font-size: 11px; }
.Scheduled { background: #dff0d8; color: #2a632a; }
.PartiallyScheduled { background: #fcf0d2; color: #7a5a00; }
.Unschedulable { background: #f8d7da; color: #8a1c24; }
td.msg { color: #666; max-width: 560px; }
"#;

fn card(out: &mut String, value: &str, key: &str, class: &str) {
    let _ = write!(
        out,
        r#"<div class="card {class}"><div class="v">{}</div><div class="k">{}</div></div>"#,
        esc(value),
        esc(key)
    );
}

/// Renders the report of `run` as one self-contained HTML document.
pub fn render_report(run: &Run) -> String {
    let info = &run.scenario;
    let title = info.name.clone().unwrap_or_else(|| "tmc-sim run".to_string());
    let end = if info.end > 0 { info.end } else { run.steps.last().map_or(60, |s| s.at).max(60) };
    let scale = TimeScale { end };
    let mut events: Vec<(i64, usize, String)> = Vec::new();
    for s in &run.steps {
        for e in &s.events {
            events.push((s.at, events.len() + 1, e.text()));
        }
    }
    let order = cluster_order(run);
    let t = &run.totals;
    let cfg = &info.controller;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{} - tmc-sim report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    let _ = writeln!(out, "<h1>{} - tmc-sim report</h1>", esc(&title));
    let _ = writeln!(
        out,
        r#"<p class="note">{} clusters, {} workloads, {} timeline events, {} steps over {}. Controller: heartbeat threshold {}, default not-ready toleration {}, NoExecute eviction {}.</p>"#,
        info.clusters,
        info.workloads,
        info.events,
        t.steps,
        format_seconds(end),
        format_seconds(cfg.heartbeat_threshold_seconds),
        cfg.default_not_ready_toleration_seconds.map_or_else(|| "none".to_string(), format_seconds),
        if cfg.no_execute_eviction { "on" } else { "off" }
    );
    out.push_str(r#"<div class="cards">"#);
    card(&mut out, &t.final_placed.to_string(), "replicas placed at the end", "");
    card(&mut out, &t.final_pending.to_string(), "pending at the end", if t.final_pending > 0 { "bad" } else { "ok" });
    card(&mut out, &t.max_pending.to_string(), "most pending at once", "");
    card(&mut out, &t.churn.moved.to_string(), "replicas moved", "");
    card(&mut out, &t.churn.stopped.to_string(), "replicas stopped", "");
    card(&mut out, &t.overcommit.to_string(), "overcommit (must be 0)", if t.overcommit > 0 { "bad" } else { "ok" });
    let worst = run.incidents.iter().filter_map(|i| i.time_to_recover).max();
    let unrecovered = run.incidents.iter().any(|i| i.time_to_recover.is_none());
    let recovery_text = if run.incidents.is_empty() {
        "-".to_string()
    } else if unrecovered {
        "not recovered".to_string()
    } else {
        worst.map_or_else(|| "-".to_string(), format_seconds)
    };
    card(&mut out, &recovery_text, "longest time to recover", if unrecovered { "bad" } else { "" });
    out.push_str("</div>\n");

    out.push_str("<h2>Utilization heatmap</h2>\n<p class=\"note\">Each row is a cluster (grouped by provider and region), each column the time until the next step. Colour: the highest utilization among the cluster's resources (outside usage plus placed replicas over capacity). Grey hatching: the cluster sends no heartbeat; orange hatching: it is being drained. Red dashed lines: timeline events, numbered as in the table below.</p>\n");
    out.push_str(&heatmap(run, &order, &scale, &events));
    out.push_str(
        "\n<h2>Replicas per cluster</h2>\n<p class=\"note\">Stacked: each band is a cluster, coloured by region.</p>\n",
    );
    out.push_str(&stacked_replicas(run, &order, &scale, &events));
    out.push_str("\n<h2>Pending and unavailable replicas</h2>\n");
    out.push_str(&pending_chart(run, &scale, &events));
    out.push_str("\n<h2>Disruption</h2>\n<p class=\"note\">A replica moves when it stops on one cluster and starts on another in the same step; scale-downs and deletions only stop replicas.</p>\n");
    out.push_str(&moves_chart(run, &scale, &events));

    out.push_str("\n<h2>Events</h2>\n<table id=\"events\"><tr><th>#</th><th>time</th><th>event</th></tr>\n");
    for (at, n, text) in &events {
        let _ =
            writeln!(out, "<tr><td class=\"n\">{n}</td><td>{}</td><td>{}</td></tr>", format_seconds(*at), esc(text));
    }
    out.push_str("</table>\n");

    out.push_str("<h2>Steps</h2>\n<table id=\"steps\"><tr><th>time</th><th>placed</th><th>pending</th><th>unavailable</th><th>evicted</th><th>moved</th><th>stopped</th><th>started</th><th>overcommit</th><th>what happened</th></tr>\n");
    for s in &run.steps {
        let mut what: Vec<String> = group_events(&s.events);
        what.extend(s.controller.iter().map(|c| format!("controller: {c}")));
        if what.is_empty() {
            what.push(if s.at == 0 { "start".to_string() } else { "controller: re-solve".to_string() });
        }
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&s.time),
            s.placed,
            s.pending,
            s.unavailable,
            s.evicted,
            s.churn.moved,
            s.churn.stopped,
            s.churn.started,
            s.overcommit,
            what.iter().map(|w| esc(w)).collect::<Vec<_>>().join("<br>")
        );
    }
    out.push_str("</table>\n");

    out.push_str("<h2>Incidents</h2>\n<p class=\"note\">An incident is a step whose events take healthy replicas away; it is over when every affected workload has its healthy replicas back.</p>\n");
    if run.incidents.is_empty() {
        out.push_str("<p>None.</p>\n");
    } else {
        out.push_str("<table id=\"incidents\"><tr><th>time</th><th>events</th><th>workloads</th><th>replicas hit</th><th>recovered after</th></tr>\n");
        for i in &run.incidents {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                esc(&i.time),
                esc(&incident_events(i)),
                i.affected_workloads,
                i.replicas_hit,
                esc(&recovery(i))
            );
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h2>Final decisions</h2>\n");
    out.push_str(&final_chart(run, &order));
    out.push_str("\n<table id=\"decisions\"><tr><th>workload</th><th>phase</th><th>placed</th><th>pending</th><th>decisions</th><th>why not fully placed</th></tr>\n");
    for p in &run.final_placements {
        let phase = match p.phase {
            Phase::Scheduled => "Scheduled",
            Phase::PartiallyScheduled => "PartiallyScheduled",
            Phase::Unschedulable => "Unschedulable",
        };
        let decisions: Vec<String> = p.decisions.iter().map(|(c, n)| format!("{c}={n}")).collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><span class=\"phase {phase}\">{phase}</span></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"msg\">{}</td></tr>",
            esc(&p.workload.0),
            p.placed,
            p.pending,
            esc(&decisions.join(" ")),
            esc(&p.message)
        );
    }
    out.push_str("</table>\n</body>\n</html>\n");
    out
}
