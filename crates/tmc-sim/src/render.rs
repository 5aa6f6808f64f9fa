//! Output formats for a plan: an aligned table for people, JSON and YAML for machines.

use std::{fmt::Write as _, time::Duration};

use serde::Serialize;
use tmc_core::{Phase, Plan, ReplicaSchedulingType};

/// How to print a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns, with explanations under unplaced workloads.
    Table,
    /// Pretty JSON with a top-level `placements` array.
    Json,
    /// The same document as YAML.
    Yaml,
}

/// Errors from serializing a plan.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// JSON serialization failed.
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// YAML serialization failed.
    #[error("cannot write YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
}

/// Renders `plan` in `format`; the output ends with a newline.
pub fn render(plan: &Plan, format: Format) -> Result<String, RenderError> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(plan)? + "\n",
        Format::Yaml => serde_saphyr::to_string(plan)?,
        Format::Table => table(plan),
    })
}

/// How long producing a plan took, printed by `tmc-sim place` next to the plan. Wall-clock time,
/// so it varies from run to run, unlike the plan.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timing {
    /// Milliseconds spent in the solver (`tmc_core::solve_validated`), with microsecond
    /// resolution; reading, validating and printing the scenario are not included.
    pub solve_ms: f64,
}

impl Timing {
    /// The timing of a solve that took `solve`.
    pub fn new(solve: Duration) -> Self {
        // Whole microseconds over 1000 print as a short decimal (`12.345`).
        Timing { solve_ms: solve.as_micros() as f64 / 1_000.0 }
    }
}

/// The document `tmc-sim place` prints as JSON or YAML: the plan's fields, then `timing`.
#[derive(Serialize)]
struct TimedPlan<'a> {
    #[serde(flatten)]
    plan: &'a Plan,
    timing: Timing,
}

/// Renders `plan` as [`render`] does, plus how long it took: JSON and YAML get a top-level
/// `timing` object (`{"solveMs": 12.345}`) after the plan's fields, the table a footer line with
/// the objective, bound, gap and solve time. Only `timing` and the footer's time vary between
/// runs.
pub fn render_timed(plan: &Plan, timing: Timing, format: Format) -> Result<String, RenderError> {
    let doc = TimedPlan { plan, timing };
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(&doc)? + "\n",
        Format::Yaml => serde_saphyr::to_string(&doc)?,
        Format::Table => {
            let mut out = table(plan);
            let _ = writeln!(
                out,
                "objective {} · bound {} · gap {} · solved in {}",
                number(plan.objective),
                number(plan.bound),
                percent(plan.gap),
                milliseconds(timing.solve_ms)
            );
            out
        }
    })
}

/// At most two decimals, without trailing zeros: `2888`, `2895.99`, `3.5`.
fn number(x: f64) -> String {
    let s = format!("{x:.2}");
    match s.split_once('.') {
        Some((int, frac)) => match frac.trim_end_matches('0') {
            "" => int.to_string(),
            frac => format!("{int}.{frac}"),
        },
        None => s,
    }
}

/// A fraction as a percentage with two decimals; a positive gap too small to show is `<0.01%`.
fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if p > 0.0 && p < 0.005 { "<0.01%".to_string() } else { format!("{p:.2}%") }
}

/// `12.3 ms`, or three decimals under a millisecond (`0.042 ms`).
fn milliseconds(ms: f64) -> String {
    if ms < 1.0 { format!("{ms:.3} ms") } else { format!("{ms:.1} ms") }
}

fn table(plan: &Plan) -> String {
    let rows: Vec<[String; 4]> = plan
        .placements
        .iter()
        .map(|p| {
            let decisions: Vec<String> = p.decisions.iter().map(|d| format!("{}={}", d.cluster, d.replicas)).collect();
            [
                p.workload.to_string(),
                format!("{:?}", p.phase),
                match p.replica_scheduling_type {
                    ReplicaSchedulingType::Divided => format!("{}/{}", p.placed, p.requested),
                    ReplicaSchedulingType::Duplicated => format!("{}x{}", p.decisions.len(), p.requested),
                },
                if decisions.is_empty() { "-".to_string() } else { decisions.join(" ") },
            ]
        })
        .collect();
    let header = ["WORKLOAD", "PHASE", "REPLICAS", "DECISIONS"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 4]| {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    };
    line(&mut out, header);
    for (row, p) in rows.iter().zip(&plan.placements) {
        line(&mut out, [&row[0], &row[1], &row[2], &row[3]]);
        if p.phase != Phase::Scheduled {
            let _ = writeln!(out, "    {}", p.message);
        }
    }
    let count = |phase| plan.placements.iter().filter(|p| p.phase == phase).count();
    let _ = writeln!(
        out,
        "\n{} workloads: {} Scheduled, {} PartiallyScheduled, {} Unschedulable",
        plan.placements.len(),
        count(Phase::Scheduled),
        count(Phase::PartiallyScheduled),
        count(Phase::Unschedulable)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_numbers() {
        assert_eq!(number(2888.0), "2888");
        assert_eq!(number(2895.993087828782), "2895.99");
        assert_eq!(number(3.5), "3.5");
        assert_eq!(number(0.0), "0");
        assert_eq!(percent(0.0027600507274603177), "0.28%");
        assert_eq!(percent(0.00003396331306962681), "<0.01%");
        assert_eq!(percent(0.0), "0.00%");
        assert_eq!(milliseconds(12.345), "12.3 ms");
        assert_eq!(milliseconds(0.042), "0.042 ms");
        assert_eq!(Timing::new(Duration::from_nanos(12_345_678)).solve_ms, 12.345);
    }

    #[test]
    fn timed_documents_are_the_plan_plus_timing() {
        let plan = Plan { objective: 3.0, bound: 4.0, gap: 0.25, placements: Vec::new() };
        let timing = Timing::new(Duration::from_micros(1_500));
        let json = render_timed(&plan, timing, Format::Json).expect("renders");
        let untimed = render(&plan, Format::Json).expect("renders");
        assert_eq!(
            json,
            untimed.replacen("[]\n}", "[],\n  \"timing\": {\n    \"solveMs\": 1.5\n  }\n}", 1),
            "the plan's bytes, then timing"
        );
        let yaml = render_timed(&plan, timing, Format::Yaml).expect("renders");
        let from_yaml: serde_json::Value = serde_saphyr::from_str(&yaml).expect("reads");
        let from_json: serde_json::Value = serde_json::from_str(&json).expect("reads");
        assert_eq!(from_yaml, from_json);
        let table = render_timed(&plan, timing, Format::Table).expect("renders");
        assert!(table.ends_with("\nobjective 3 · bound 4 · gap 25.00% · solved in 1.5 ms\n"), "{table}");
    }
}
