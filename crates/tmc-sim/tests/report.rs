//! Structure of the HTML report, read as text: a chart (an `<svg>` with a `<title>`) for each of
//! the utilization heatmap, replicas per cluster, pending replicas, disruption and final
//! decisions; event markers on every time axis; balanced tags; and nothing that would fetch from
//! outside the file. `scripts/render-report.sh` renders it in a real browser.

use std::{collections::BTreeSet, path::Path};

use tmc_sim::{Run, load_sim_scenario, report::render_report, simulate};

fn run(name: &str) -> Run {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios").join(name).join("scenario.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let scenario = load_sim_scenario(&text).unwrap_or_else(|e| panic!("{e}"));
    simulate(&scenario, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"))
}

/// The text of the element `<tag id="id" ...>...</tag>` (the first such element).
fn element<'a>(html: &'a str, tag: &str, id: &str) -> &'a str {
    let open = format!("<{tag} id=\"{id}\"");
    let start = html.find(&open).unwrap_or_else(|| panic!("no {open}"));
    let close = format!("</{tag}>");
    let end = html[start..].find(&close).unwrap_or_else(|| panic!("{open} is not closed")) + start + close.len();
    &html[start..end]
}

/// Checks that every opening tag of the listed kinds is closed, in order.
fn assert_balanced(html: &str) {
    const CONTAINERS: [&str; 14] =
        ["html", "head", "body", "svg", "g", "text", "title", "defs", "pattern", "table", "tr", "td", "th", "div"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').unwrap_or_else(|| panic!("unterminated tag near {:?}", &rest[..rest.len().min(40)]));
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            if CONTAINERS.contains(&name) {
                let open = stack.pop();
                assert_eq!(open.as_deref(), Some(name), "</{name}> closes {open:?}");
            }
            continue;
        }
        let name = tag.split_whitespace().next().unwrap_or_default();
        if CONTAINERS.contains(&name) {
            stack.push(name.to_string());
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

#[test]
fn the_report_has_every_chart_with_a_title_and_event_markers() {
    let run = run("multi-region-webshop");
    let html = render_report(&run);
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    assert!(
        html.contains("<title>multi-region web shop, a zone outage and a node-pool upgrade - tmc-sim report</title>")
    );
    assert_balanced(&html);

    let event_times: BTreeSet<i64> = run.steps.iter().filter(|s| !s.events.is_empty()).map(|s| s.at).collect();
    assert_eq!(event_times.len(), 14, "every event of the webshop timeline has its own time");
    for (id, title, time_axis) in [
        ("heatmap", "Utilization per cluster over time", true),
        ("replicas", "Replicas per cluster over time (stacked)", true),
        ("pending", "Pending and unavailable replicas over time", true),
        ("moves", "Replicas moved and stopped per step", true),
        ("final", "Replicas per cluster at the end", false),
    ] {
        let svg = element(&html, "svg", id);
        assert!(svg.contains(&format!("<title>{title}</title>")), "{id}: title");
        assert!(svg.contains(&format!("aria-label=\"{title}\"")), "{id}: label");
        let markers = svg.matches("<g class=\"event-marker\">").count();
        if time_axis {
            assert_eq!(markers, event_times.len(), "{id}: one marker per event time");
            assert!(svg.contains(">45m</text>") && svg.contains(">0s</text>"), "{id}: time axis from 0 to the end");
        } else {
            assert_eq!(markers, 0, "{id}");
        }
    }
    // The heatmap: one row label per cluster that ever existed, cells with tooltips, the outage
    // and the drain shown.
    let heatmap = element(&html, "svg", "heatmap");
    for cluster in ["aws-eu-west-1a", "aws-eu-central-1a", "staging-eu", "edge-lab"] {
        assert!(heatmap.contains(&format!(">{cluster}</text>")), "heatmap row {cluster}");
    }
    assert!(heatmap.contains("url(#down)") && heatmap.contains("(down: no heartbeat)"));
    assert!(heatmap.contains("url(#drain)") && heatmap.contains("(draining)"));
    assert!(heatmap.matches("<rect class=\"cell\"").count() > 100);
    // Replicas: a band per cluster that held replicas, with a legend entry per region.
    let replicas = element(&html, "svg", "replicas");
    assert!(replicas.matches("<path class=\"band\"").count() >= 10);
    for region in ["eu-west-1", "us-east-1", "europe-west4", "us-central1", "eu-central", "eu-central-1"] {
        assert!(replicas.contains(&format!(">{region}</text>")), "legend {region}");
    }
    let pending = element(&html, "svg", "pending");
    assert!(pending.contains("<path class=\"pending\"") && pending.contains("<path class=\"unavailable\""));
    assert!(element(&html, "svg", "moves").contains("<rect class=\"moved\""));
    // Tables: events numbered as the markers, steps, incidents, final decisions.
    assert_eq!(element(&html, "table", "events").matches("<tr>").count(), 1 + 14);
    assert_eq!(element(&html, "table", "decisions").matches("<tr>").count(), 1 + 8);
    assert!(html.contains("<span class=\"phase PartiallyScheduled\">PartiallyScheduled</span>"));
    for heading in [
        "Utilization heatmap",
        "Replicas per cluster",
        "Pending and unavailable replicas",
        "Disruption",
        "Events",
        "Steps",
        "Incidents",
        "Final decisions",
    ] {
        assert!(html.contains(&format!("<h2>{heading}</h2>")), "section {heading}");
    }
}

#[test]
fn the_report_is_self_contained() {
    let html = render_report(&run("multi-region-webshop"));
    let lower = html.to_lowercase();
    for banned in ["http:", "https:", "//cdn", "<script", "<link", "<img", "<iframe", "@import", " src=", " href="] {
        assert!(!lower.contains(banned), "the report must not contain {banned:?}");
    }
    // `url(...)` only refers to patterns defined in the document.
    for (i, _) in lower.match_indices("url(") {
        let target = &lower[i + 4..];
        assert!(target.starts_with("#down)") || target.starts_with("#drain)"), "external url( at {i}");
    }
}

#[test]
fn names_are_escaped() {
    let text = "name: <b>&\"quoted\"</b>\nclusters:\n- {name: a, capacity: {cpu: \"1\"}}\nworkloads:\n- {name: w}\n";
    let scenario = load_sim_scenario(text).unwrap_or_else(|e| panic!("{e}"));
    let run = simulate(&scenario, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    let html = render_report(&run);
    assert!(html.contains("&lt;b&gt;&amp;&quot;quoted&quot;&lt;/b&gt;") && !html.contains("<b>"));
    assert_balanced(&html);
}
