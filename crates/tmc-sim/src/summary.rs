//! The summary of a run: a table per step and the totals, incidents, utilization and spread, for
//! people; the whole [`Run`] as JSON for machines.

use std::{collections::BTreeSet, fmt::Write as _};

use crate::{
    json::to_json,
    render::RenderError,
    sim::{Incident, Run, StepEvent},
    timeline::format_seconds,
};

/// How to print a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunFormat {
    /// Aligned tables.
    Table,
    /// The [`Run`] as JSON; the same scenario always gives the same bytes.
    Json,
}

/// Renders a run; the output ends with a newline.
pub fn render_run(run: &Run, format: RunFormat) -> Result<String, RenderError> {
    Ok(match format {
        RunFormat::Json => to_json(run)?,
        RunFormat::Table => table(run),
    })
}

/// A table with left-aligned text columns and right-aligned number columns; the last column is
/// free text and not padded.
pub(crate) struct Table {
    header: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str], right: &[bool]) -> Self {
        Table { header: header.iter().map(|s| s.to_string()).collect(), right: right.to_vec(), rows: Vec::new() }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self, out: &mut String) {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |out: &mut String, cells: &[String]| {
            let mut text = String::new();
            for (k, cell) in cells.iter().enumerate() {
                if k > 0 {
                    text.push_str("  ");
                }
                let pad = widths[k].saturating_sub(cell.chars().count());
                if k + 1 == n {
                    text.push_str(cell);
                } else if self.right.get(k).copied().unwrap_or(false) {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(out, &self.header);
        for row in &self.rows {
            line(out, row);
        }
    }
}

/// Events of a step, one line per run of events with the same label: `7 events (us-east-1
/// outage): clusterDown a, clusterDown b, +5 more`.
pub(crate) fn group_events(events: &[StepEvent]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let label = &events[i].label;
        let n = events[i..].iter().take_while(|e| e.label == *label && label.is_some()).count().max(1);
        if n <= 2 {
            out.extend(events[i..i + n].iter().map(StepEvent::text));
        } else {
            let shown: Vec<&str> = events[i..i + 2].iter().map(|e| e.event.as_str()).collect();
            out.push(format!(
                "{n} events ({}): {}, +{} more",
                label.as_deref().unwrap_or_default(),
                shown.join(", "),
                n - 2
            ));
        }
        i += n;
    }
    out
}

/// `12.5` for a percentage, `-` when absent.
fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
}

/// The events of an incident, shortened to the first three.
pub(crate) fn incident_events(i: &Incident) -> String {
    let shown: Vec<&str> = i.events.iter().take(3).map(String::as_str).collect();
    let more = i.events.len().saturating_sub(3);
    if more > 0 { format!("{}, +{more} more", shown.join(", ")) } else { shown.join(", ") }
}

/// `6m (at 16m)`, or `not by the end`.
pub(crate) fn recovery(i: &Incident) -> String {
    match (i.time_to_recover, i.recovered_at) {
        (Some(d), Some(at)) => format!("{} (at {})", format_seconds(d), format_seconds(at)),
        _ => "not by the end".to_string(),
    }
}

/// The resources shown as fleet utilization columns: cpu and memory first, then the others that
/// any step measured, `pods` last.
pub(crate) fn resources(run: &Run) -> Vec<String> {
    let mut all: BTreeSet<String> = BTreeSet::new();
    for s in &run.steps {
        all.extend(s.fleet_utilization.keys().cloned());
    }
    let mut out: Vec<String> = ["cpu", "memory"].iter().filter(|r| all.contains(**r)).map(|r| r.to_string()).collect();
    out.extend(all.iter().filter(|r| !matches!(r.as_str(), "cpu" | "memory" | "pods")).cloned());
    if all.contains("pods") {
        out.push("pods".to_string());
    }
    out
}

fn table(run: &Run) -> String {
    let mut out = String::new();
    let info = &run.scenario;
    let cfg = &info.controller;
    let _ = writeln!(
        out,
        "{}: {} clusters, {} workloads, {} timeline events, {} steps over {}",
        info.name.as_deref().unwrap_or("scenario"),
        info.clusters,
        info.workloads,
        info.events,
        run.totals.steps,
        format_seconds(info.end)
    );
    let _ = writeln!(
        out,
        "controller: heartbeat threshold {}, default not-ready toleration {}, NoExecute eviction {}\n",
        format_seconds(cfg.heartbeat_threshold_seconds),
        cfg.default_not_ready_toleration_seconds.map_or_else(|| "none".to_string(), format_seconds),
        if cfg.no_execute_eviction { "on" } else { "off" }
    );
    let resources = resources(run);
    let mut header: Vec<String> =
        ["TIME", "PLACED", "PENDING", "UNAVAIL", "EVICTED", "MOVED", "STOPPED", "STARTED", "OVERCOMMIT"]
            .map(String::from)
            .into();
    header.extend(resources.iter().map(|r| format!("{}%", r.to_uppercase())));
    header.push("WHAT HAPPENED".to_string());
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut right = vec![false];
    right.extend(std::iter::repeat_n(true, header.len() - 2));
    let mut steps = Table::new(&header_refs, &right);
    for s in &run.steps {
        let mut what: Vec<String> = group_events(&s.events);
        what.extend(s.controller.iter().map(|c| format!("controller: {c}")));
        if what.is_empty() {
            what.push("controller: re-solve".to_string());
        }
        if s.at == 0 && s.events.is_empty() {
            what = vec!["start".to_string()];
        }
        let mut cells = vec![
            s.time.clone(),
            s.placed.to_string(),
            s.pending.to_string(),
            s.unavailable.to_string(),
            s.evicted.to_string(),
            s.churn.moved.to_string(),
            s.churn.stopped.to_string(),
            s.churn.started.to_string(),
            s.overcommit.to_string(),
        ];
        cells.extend(resources.iter().map(|r| pct(s.fleet_utilization.get(r).copied())));
        let blank = cells.len();
        cells.push(what[0].clone());
        steps.row(cells);
        for more in &what[1..] {
            let mut cells = vec![String::new(); blank];
            cells.push(more.clone());
            steps.row(cells);
        }
    }
    steps.render(&mut out);
    let t = &run.totals;
    let _ = writeln!(
        out,
        "\ntotal: {} steps, {} events; evicted {}, moved {}, stopped {}, started {}; overcommit {}; max pending {}, max \
         unavailable {}",
        t.steps,
        t.events,
        t.evicted,
        t.churn.moved,
        t.churn.stopped,
        t.churn.started,
        t.overcommit,
        t.max_pending,
        t.max_unavailable
    );
    out.push_str(
        "(evicted: had to leave their cluster; moved: stopped on one cluster and started on another in the same step)\n",
    );
    let _ = writeln!(
        out,
        "end: {} placed, {} pending; {} Scheduled, {} PartiallyScheduled, {} Unschedulable",
        t.final_placed,
        t.final_pending,
        t.final_phases.scheduled,
        t.final_phases.partially_scheduled,
        t.final_phases.unschedulable
    );

    out.push_str("\nincidents (recovered: every affected workload has its healthy replicas back)\n");
    if run.incidents.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut table = Table::new(
            &["AT", "WORKLOADS", "REPLICAS HIT", "RECOVERED AFTER", "EVENTS"],
            &[false, true, true, false, false],
        );
        for i in &run.incidents {
            table.row(vec![
                i.time.clone(),
                i.affected_workloads.to_string(),
                i.replicas_hit.to_string(),
                recovery(i),
                incident_events(i),
            ]);
        }
        table.render(&mut out);
    }

    let _ = writeln!(out, "\nutilization per cluster (%: end / peak)");
    let mut cluster_resources: Vec<String> = resources.clone();
    cluster_resources.retain(|r| run.utilization.values().any(|m| m.contains_key(r)));
    let mut header: Vec<String> = vec!["CLUSTER".to_string()];
    header.extend(cluster_resources.iter().map(|r| r.to_uppercase()));
    header.push(String::new());
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut right = vec![false];
    right.extend(std::iter::repeat_n(true, cluster_resources.len()));
    right.push(false);
    let mut util = Table::new(&header_refs, &right);
    for (cluster, per) in &run.utilization {
        let mut cells = vec![cluster.clone()];
        cells.extend(cluster_resources.iter().map(|r| match per.get(r) {
            Some(v) => format!("{:.1} / {:.1}", v.last, v.max),
            None => "-".to_string(),
        }));
        let gone = run.steps.last().is_some_and(|s| !s.utilization.contains_key(cluster));
        cells.push(if gone { "(removed)".to_string() } else { String::new() });
        util.row(cells);
    }
    util.render(&mut out);

    let _ = writeln!(out, "\nspread (replicas per topology value: end, min-max over the run)");
    for (key, values) in &run.spread {
        let list: Vec<String> = values.iter().map(|(v, r)| format!("{v} {} ({}-{})", r.last, r.min, r.max)).collect();
        let _ = writeln!(out, "  {key}: {}", list.join(", "));
    }
    out
}
