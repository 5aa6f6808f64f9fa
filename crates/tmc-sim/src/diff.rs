//! `tmc-sim diff`: how decisions change between two scenarios (two fleets, or two policies), and
//! the replicas that would move.
//!
//! BEFORE is solved as it is. AFTER is solved with BEFORE's decisions as its `previous` (what the
//! controller would do when the change is applied: keep what is still valid, move what must
//! move); with `fresh`, AFTER is solved on its own instead, as if placed from scratch. Workloads
//! are aligned by `namespace/name`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use tmc_core::{Phase, PlacementInput, Plan, ValidationErrors, WorkloadKey, solve};

use crate::{
    metrics::{self, Churn},
    summary::Table,
};

/// What happened to one workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    /// Only in AFTER.
    Added,
    /// Only in BEFORE.
    Removed,
    /// In both, with other decisions or another phase.
    Changed,
    /// In both, the same.
    Unchanged,
}

/// One workload in both plans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadDiff {
    /// `namespace/name`.
    pub workload: WorkloadKey,
    /// Added, removed, changed or unchanged.
    pub status: Status,
    /// Phase in BEFORE.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phase_before: Option<Phase>,
    /// Phase in AFTER.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phase_after: Option<Phase>,
    /// Replicas per cluster in BEFORE (`a=2 b=1`, `-` for none).
    pub before: String,
    /// Replicas per cluster in AFTER.
    pub after: String,
    /// Replicas that stop, start and move.
    #[serde(flatten)]
    pub churn: Churn,
}

/// The comparison of two scenarios.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    /// Whether AFTER was solved with BEFORE's decisions as `previous`.
    pub carried_over: bool,
    /// Every workload of either scenario, by key.
    pub workloads: Vec<WorkloadDiff>,
    /// Churn summed over all workloads.
    pub total: Churn,
    /// Workloads per status: added, removed, changed, unchanged.
    pub added: u64,
    /// Workloads only in BEFORE.
    pub removed: u64,
    /// Workloads whose decisions or phase differ.
    pub changed: u64,
    /// Workloads with the same decisions and phase.
    pub unchanged: u64,
    /// Phases in BEFORE.
    pub phases_before: metrics::PhaseCounts,
    /// Phases in AFTER.
    pub phases_after: metrics::PhaseCounts,
}

/// Which scenario was invalid.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// BEFORE is invalid.
    #[error("BEFORE: {0}")]
    Before(ValidationErrors),
    /// AFTER is invalid (with BEFORE's decisions as previous, when carried over).
    #[error("AFTER: {0}")]
    After(ValidationErrors),
}

/// Compares the plans of `before` and `after` (see the module docs).
pub fn diff(before: &PlacementInput, after: &PlacementInput, fresh: bool) -> Result<Diff, DiffError> {
    let plan_before = solve(before).map_err(DiffError::Before)?;
    let mut after_input = after.clone();
    if !fresh {
        let keys: std::collections::BTreeSet<WorkloadKey> = after.workloads.iter().map(|w| w.key()).collect();
        after_input.previous = plan_before
            .placements
            .iter()
            .filter(|p| !p.decisions.is_empty() && keys.contains(&p.workload))
            .cloned()
            .collect();
    }
    let plan_after = solve(&after_input).map_err(DiffError::After)?;
    Ok(compare(&plan_before, &plan_after, !fresh))
}

fn compare(before: &Plan, after: &Plan, carried_over: bool) -> Diff {
    let mut keys: Vec<&WorkloadKey> = before.placements.iter().chain(&after.placements).map(|p| &p.workload).collect();
    keys.sort();
    keys.dedup();
    let mut out = Diff {
        carried_over,
        workloads: Vec::new(),
        total: Churn::default(),
        added: 0,
        removed: 0,
        changed: 0,
        unchanged: 0,
        phases_before: metrics::PhaseCounts::of(before),
        phases_after: metrics::PhaseCounts::of(after),
    };
    for key in keys {
        let (b, a) = (before.get(key), after.get(key));
        let cb = b.map(metrics::counts).unwrap_or_default();
        let ca = a.map(metrics::counts).unwrap_or_default();
        let status = match (b, a) {
            (None, _) => Status::Added,
            (_, None) => Status::Removed,
            (Some(b), Some(a)) if cb == ca && b.phase == a.phase => Status::Unchanged,
            _ => Status::Changed,
        };
        match status {
            Status::Added => out.added += 1,
            Status::Removed => out.removed += 1,
            Status::Changed => out.changed += 1,
            Status::Unchanged => out.unchanged += 1,
        }
        let churn = Churn::between(&cb, &ca);
        out.total.add(churn);
        out.workloads.push(WorkloadDiff {
            workload: key.clone(),
            status,
            phase_before: b.map(|p| p.phase),
            phase_after: a.map(|p| p.phase),
            before: metrics::format_counts(&cb),
            after: metrics::format_counts(&ca),
            churn,
        });
    }
    out
}

/// The diff as a table of the workloads that differ, and totals.
pub fn table(d: &Diff) -> String {
    let mut out = String::new();
    let phase = |p: Option<Phase>| p.map_or_else(|| "-".to_string(), |p| format!("{p:?}"));
    let mut t = Table::new(
        &["WORKLOAD", "STATUS", "BEFORE", "AFTER", "MOVED", "STOPPED", "STARTED", "DECISIONS"],
        &[false, false, false, false, true, true, true, false],
    );
    for w in d.workloads.iter().filter(|w| w.status != Status::Unchanged) {
        t.row(vec![
            w.workload.to_string(),
            format!("{:?}", w.status),
            phase(w.phase_before),
            phase(w.phase_after),
            w.churn.moved.to_string(),
            w.churn.stopped.to_string(),
            w.churn.started.to_string(),
            format!("{} -> {}", w.before, w.after),
        ]);
    }
    if d.added + d.removed + d.changed == 0 {
        out.push_str("no decision changes\n");
    } else {
        t.render(&mut out);
    }
    let _ = writeln!(
        out,
        "\n{} changed, {} added, {} removed, {} unchanged; {} replicas move, {} stop, {} start{}",
        d.changed,
        d.added,
        d.removed,
        d.unchanged,
        d.total.moved,
        d.total.stopped,
        d.total.started,
        if d.carried_over {
            " (AFTER solved with BEFORE's decisions as previous)"
        } else {
            " (both solved from scratch)"
        }
    );
    let ph = |p: &metrics::PhaseCounts| {
        format!(
            "{} Scheduled, {} PartiallyScheduled, {} Unschedulable",
            p.scheduled, p.partially_scheduled, p.unschedulable
        )
    };
    let _ = writeln!(out, "before: {}\nafter:  {}", ph(&d.phases_before), ph(&d.phases_after));
    out
}
