//! Output formats for a plan: an aligned table for people, JSON and YAML for machines.

use std::fmt::Write as _;

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
